package waconv

import (
	"context"
	"fmt"
	"time"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
)

// maxTopicRunes bounds a group description (WhatsApp allows 2,048
// characters) so an oversized one cannot push a group event over
// event.MaxEnvelopeBytes.
const maxTopicRunes = 4096

// GroupSnapshot builds the group event of a group's full info: its
// subject, description and participants, each with the phone and LID
// known for them (the participant's own PhoneNumber and LID fields, then
// the LID store, as for message senders). left marks a group the
// mentorado's number is no longer in. occurred is the event's
// occurred_at: the time of the change WhatsApp reported, or when the info
// was fetched. The returned Group is the envelope's payload.
//
// It is the only way zapbus describes a group. whatsmeow reports a change
// (*events.GroupInfo) as a delta, so the connector fetches the group's
// info (Client.GetGroupInfo) and passes it here: this package stays pure.
func (c *Converter) GroupSnapshot(ctx context.Context, info *types.GroupInfo, left bool, occurred time.Time) (event.Envelope, *event.Group, error) {
	if info == nil {
		return event.Envelope{}, nil, fmt.Errorf("waconv: group snapshot: %w", &event.Error{Kind: event.ErrMissingField, Field: "data.jid"})
	}
	g := &event.Group{
		JID:          jidString(info.JID),
		Subject:      event.Clean(info.Name),
		Topic:        truncate(event.Clean(info.Topic), maxTopicRunes),
		Participants: []event.Participant{},
		Left:         left,
	}
	seen := map[string]bool{}
	for _, p := range info.Participants {
		if p.Error != 0 || len(g.Participants) == event.MaxParticipants {
			// An invitation that failed (CreateGroup answers them) is
			// not a member.
			continue
		}
		primary := p.JID
		if primary.IsEmpty() {
			primary = p.LID
		}
		if primary.IsEmpty() {
			primary = p.PhoneNumber
		}
		if !isUser(primary) {
			continue
		}
		who, err := c.identify(ctx, primary, p.PhoneNumber, p.LID)
		if err != nil {
			return event.Envelope{}, nil, fmt.Errorf("waconv: group %s: %w", info.JID, err)
		}
		if seen[who.jid] {
			continue
		}
		seen[who.jid] = true
		g.Participants = append(g.Participants, event.Participant{
			JID: who.jid, Phone: who.phone, LID: who.lid, Admin: p.IsAdmin || p.IsSuperAdmin,
		})
	}
	env, err := c.GroupEnvelope(g, c.orNow(occurred))
	if err != nil {
		return event.Envelope{}, nil, err
	}
	return env, g, nil
}

// GroupEnvelope wraps a group snapshot in its envelope (event.GroupEventID).
// The connector uses it to republish the last snapshot it published with
// Left set, when the mentorado's number leaves a group and its info can no
// longer be fetched.
func (c *Converter) GroupEnvelope(g *event.Group, occurred time.Time) (event.Envelope, error) {
	occurred = c.orNow(occurred)
	env, err := event.New(c.Mentorado, event.GroupEventID(c.Mentorado, g, occurred), occurred, g)
	if err != nil {
		return event.Envelope{}, fmt.Errorf("waconv: group %s: %w", g.JID, err)
	}
	return env, nil
}

// joinedGroup converts the notification that the mentorado's number joined
// (or created, or was added to) a group: it carries the group's full info.
// whatsmeow gives it no timestamp, so occurred_at is when it was seen.
func (c *Converter) joinedGroup(ctx context.Context, evt *events.JoinedGroup) ([]event.Envelope, error) {
	if evt.JID.Server != types.GroupServer {
		return nil, nil
	}
	env, _, err := c.GroupSnapshot(ctx, &evt.GroupInfo, false, c.now())
	if err != nil {
		return nil, err
	}
	return []event.Envelope{env}, nil
}

// LeftGroup reports whether a group change removed the mentorado's own
// number (any of own: its phone JID and its LID, device parts ignored) or
// deleted the group: then its info can no longer be fetched, and the
// connector publishes the last snapshot it knows with Left set.
func LeftGroup(evt *events.GroupInfo, own ...types.JID) bool {
	if evt.Delete != nil && evt.Delete.Deleted {
		return true
	}
	for _, j := range evt.Leave {
		j = canonical(j)
		for _, o := range own {
			if o = canonical(o); !o.IsEmpty() && j.User == o.User && j.Server == o.Server {
				return true
			}
		}
	}
	return false
}

// SnapshotChanged reports whether a group change touches what a group
// event carries (subject, description, participants and their admin
// rights, the group's existence). Other changes (who may send or edit,
// disappearing messages, the invite link) need no new snapshot.
func SnapshotChanged(evt *events.GroupInfo) bool {
	return evt.Name != nil || evt.Topic != nil || evt.Delete != nil ||
		len(evt.Join) > 0 || len(evt.Leave) > 0 || len(evt.Promote) > 0 || len(evt.Demote) > 0
}

// IsGroupChat reports whether a message event's chat is a group (what the
// connector describes on first sight).
func IsGroupChat(chat string) bool { return event.KindOfChat(chat) == event.ChatGroup }
