// Package waconv turns whatsmeow events into zapbus event envelopes
// (internal/event). It is pure: no NATS, no database, no goroutines. The only
// outside call is the optional LID → phone lookup in whatsmeow's own LID
// store, which the connector passes in (cli.Store.LIDs).
//
// Identity rules, shared by every conversion:
//
//   - The counterpart of a message or receipt is the sender for inbound
//     traffic and the chat for outbound traffic (in a group, the sender is the
//     participant and an outbound counterpart is the group, which has no phone).
//   - Its phone comes from whichever of the JID and its alternate address is a
//     phone-number JID (s.whatsapp.net), else from the LID store; its LID from
//     whichever is in the lid server. The LID is kept when the phone is unknown.
//   - A contact's jid is its phone-number JID when the phone is known, else its
//     LID, so the same person reached by either address is one contact row.
//
// A failed LID lookup is returned as an error rather than published without
// the phone: envelope ids are deterministic, so a degraded envelope would win
// the JetStream duplicate window over a correct retry.
package waconv

import (
	"context"
	"fmt"
	"time"

	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
)

// LIDStore is the part of whatsmeow's store.LIDStore we need
// (cli.Store.LIDs satisfies it). GetPNForLID returns an empty JID and no
// error when the mapping is unknown.
type LIDStore interface {
	GetPNForLID(ctx context.Context, lid types.JID) (types.JID, error)
}

// Converter converts whatsmeow events of one mentorado's session.
type Converter struct {
	Mentorado int64
	LIDs      LIDStore         // may be nil: phones are then only taken from the events themselves
	Now       func() time.Time // occurred_at of events without a timestamp; time.Now when nil
}

// Convert returns the envelopes for a whatsmeow event: none (and no error)
// for events that map to nothing (every type Decide does not mark
// Publish), an error only for events that should map but cannot (missing
// ids, a failing LID lookup). Every envelope is validated. Convert never
// modifies evt.
func (c *Converter) Convert(ctx context.Context, evt any) ([]event.Envelope, error) {
	d, convert := route(c, evt)
	if d.Action != Publish {
		return nil, nil
	}
	return convert(ctx)
}

func (c *Converter) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// orNow returns t, or the current time when t is zero.
func (c *Converter) orNow(t time.Time) time.Time {
	if t.IsZero() {
		return c.now()
	}
	return t
}

// identity is what zapbus knows about a WhatsApp user.
type identity struct {
	jid   string // the address the event used, without device
	phone string // E.164 digits, when known
	lid   string // "<n>@lid", when known
}

// contactJID is the phone-number JID when the phone is known, else the LID,
// else the address the event used.
func (id identity) contactJID() string {
	switch {
	case id.phone != "":
		return phone.JID(id.phone)
	case id.lid != "":
		return id.lid
	}
	return id.jid
}

// identify resolves the phone and LID of a user from its JID and alternate
// addresses, falling back to the LID store for the phone.
func (c *Converter) identify(ctx context.Context, primary types.JID, alts ...types.JID) (identity, error) {
	var id identity
	var lid types.JID
	for i, j := range append([]types.JID{primary}, alts...) {
		j = canonical(j)
		if j.IsEmpty() {
			continue
		}
		if i == 0 {
			id.jid = j.String()
		}
		switch j.Server {
		case types.DefaultUserServer:
			if id.phone == "" {
				id.phone = phone.FromJID(j.String())
			}
		case types.HiddenUserServer:
			if lid.IsEmpty() {
				lid = j
			}
		}
	}
	if lid.IsEmpty() {
		return id, nil
	}
	id.lid = lid.String()
	if id.phone != "" || c.LIDs == nil {
		return id, nil
	}
	pn, err := c.LIDs.GetPNForLID(ctx, lid)
	if err != nil {
		return identity{}, fmt.Errorf("waconv: phone for %s: %w", lid, err)
	}
	if !pn.IsEmpty() {
		id.phone = phone.FromJID(canonical(pn).String())
	}
	return id, nil
}

// canonical drops the device part and maps hosted servers to the ordinary
// ones, as whatsmeow itself does for message sources.
func canonical(j types.JID) types.JID {
	j = j.ToNonAD()
	switch j.Server {
	case types.HostedServer, types.LegacyUserServer:
		j.Server = types.DefaultUserServer
	case types.HostedLIDServer:
		j.Server = types.HiddenUserServer
	}
	return j
}

// isUser reports whether j addresses a person (phone number or LID).
func isUser(j types.JID) bool {
	switch canonical(j).Server {
	case types.DefaultUserServer, types.HiddenUserServer:
		return !j.IsEmpty()
	}
	return false
}

// counterpart is the other party of a message or receipt: the sender of
// inbound traffic, the chat of outbound traffic. An outbound message to a
// group or broadcast list has no single counterpart.
func (c *Converter) counterpart(ctx context.Context, src *types.MessageSource) (identity, error) {
	if src.IsFromMe {
		if !isUser(src.Chat) {
			return identity{}, nil
		}
		return c.identify(ctx, src.Chat, src.RecipientAlt)
	}
	sender := src.Sender
	if sender.IsEmpty() && !src.IsGroup {
		sender = src.Chat
	}
	if !isUser(sender) {
		return identity{jid: canonical(sender).String()}, nil
	}
	return c.identify(ctx, sender, src.SenderAlt)
}

// skipChat reports chats whose traffic is not CRM conversation: status
// updates and newsletters (channels).
func skipChat(chat types.JID) bool {
	return chat.Server == types.NewsletterServer || (chat.Server == types.BroadcastServer && chat.User == types.StatusBroadcastJID.User)
}

func (c *Converter) contactEnvelope(occurred time.Time, ct *event.Contact) (event.Envelope, error) {
	env, err := event.New(c.Mentorado, event.ContactEventID(c.Mentorado, ct, occurred), occurred, ct)
	if err != nil {
		return event.Envelope{}, fmt.Errorf("waconv: contact %s: %w", ct.JID, err)
	}
	return env, nil
}
