package waconv

import (
	"context"
	"fmt"
	"slices"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
)

// receipt converts delivered, read and played receipts. Retry, server-error,
// sender (our own devices got our message), inactive, peer and history-sync
// receipts say nothing about delivery to the counterpart and map to nothing.
func (c *Converter) receipt(ctx context.Context, evt *events.Receipt) ([]event.Envelope, error) {
	if skipChat(evt.Chat) {
		return nil, nil
	}
	var kind event.ReceiptKind
	fromMe := evt.IsFromMe
	switch evt.Type {
	case types.ReceiptTypeDelivered:
		kind = event.ReceiptDelivered
	case types.ReceiptTypeRead:
		kind = event.ReceiptRead
	case types.ReceiptTypeReadSelf:
		kind, fromMe = event.ReceiptRead, true
	case types.ReceiptTypePlayed:
		kind = event.ReceiptPlayed
	case types.ReceiptTypePlayedSelf:
		kind, fromMe = event.ReceiptPlayed, true
	default:
		return nil, nil
	}
	if len(evt.MessageIDs) == 0 {
		return nil, fmt.Errorf("waconv: %s receipt in %s: %w", kind, evt.Chat, &event.Error{Kind: event.ErrMissingField, Field: "data.message_ids"})
	}
	src := evt.MessageSource
	src.IsFromMe = fromMe
	who, err := c.counterpart(ctx, &src)
	if err != nil {
		return nil, fmt.Errorf("waconv: %s receipt: %w", kind, err)
	}
	ts := c.orNow(evt.Timestamp)
	r := &event.Receipt{
		MessageIDs: slices.Clone(evt.MessageIDs),
		ChatJID:    jidString(evt.Chat),
		Phone:      who.phone,
		Kind:       kind,
		FromMe:     fromMe,
		Timestamp:  ts,
	}
	env, err := event.New(c.Mentorado, event.ReceiptEventID(c.Mentorado, kind, fromMe, r.MessageIDs), ts, r)
	if err != nil {
		return nil, fmt.Errorf("waconv: %s receipt in %s: %w", kind, evt.Chat, err)
	}
	return []event.Envelope{env}, nil
}
