package waconv

import (
	"context"
	"fmt"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
)

// pushName records a changed push name.
func (c *Converter) pushName(ctx context.Context, evt *events.PushName) ([]event.Envelope, error) {
	push := event.Clean(evt.NewPushName)
	if push == "" || !isUser(evt.JID) {
		return nil, nil
	}
	who, err := c.identify(ctx, evt.JID, evt.JIDAlt)
	if err != nil {
		return nil, fmt.Errorf("waconv: push name: %w", err)
	}
	var ts = c.now()
	if evt.Message != nil {
		ts = c.orNow(evt.Message.Timestamp)
	}
	env, err := c.contactEnvelope(ts, &event.Contact{JID: who.contactJID(), Phone: who.phone, LID: who.lid, PushName: push})
	if err != nil {
		return nil, err
	}
	return []event.Envelope{env}, nil
}

// contact records an address-book entry synced from the phone. An entry
// without a name (a removal) maps to nothing: the contract has no way to
// clear a name.
func (c *Converter) contact(ctx context.Context, evt *events.Contact) ([]event.Envelope, error) {
	name := event.Clean(evt.Action.GetFullName())
	if name == "" {
		name = event.Clean(evt.Action.GetFirstName())
	}
	if name == "" || !isUser(evt.JID) {
		return nil, nil
	}
	var alts []types.JID
	for _, s := range []string{evt.Action.GetPnJID(), evt.Action.GetLidJID()} {
		if s == "" {
			continue
		}
		if j, err := types.ParseJID(s); err == nil {
			alts = append(alts, j)
		}
	}
	who, err := c.identify(ctx, evt.JID, alts...)
	if err != nil {
		return nil, fmt.Errorf("waconv: contact: %w", err)
	}
	env, err := c.contactEnvelope(c.orNow(evt.Timestamp), &event.Contact{JID: who.contactJID(), Phone: who.phone, LID: who.lid, Name: name})
	if err != nil {
		return nil, err
	}
	return []event.Envelope{env}, nil
}

// businessName records a changed verified business name.
func (c *Converter) businessName(ctx context.Context, evt *events.BusinessName) ([]event.Envelope, error) {
	business := event.Clean(evt.NewBusinessName)
	if business == "" || !isUser(evt.JID) {
		return nil, nil
	}
	var alts []types.JID
	ts := c.now()
	if m := evt.Message; m != nil {
		ts = c.orNow(m.Timestamp)
		if m.Sender.User == evt.JID.User {
			alts = append(alts, m.SenderAlt)
		}
	}
	who, err := c.identify(ctx, evt.JID, alts...)
	if err != nil {
		return nil, fmt.Errorf("waconv: business name: %w", err)
	}
	env, err := c.contactEnvelope(ts, &event.Contact{JID: who.contactJID(), Phone: who.phone, LID: who.lid, BusinessName: business})
	if err != nil {
		return nil, err
	}
	return []event.Envelope{env}, nil
}
