package connector

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/sendkv"
)

// readClient marks messages read; *whatsmeow.Client has it.
type readClient interface {
	MarkRead(ctx context.Context, ids []types.MessageID, timestamp time.Time, chat, sender types.JID, receiptTypeExtra ...types.ReceiptType) error
}

var _ readClient = (*whatsmeow.Client)(nil)

// connectedClient returns the session's client, or not_connected.
func connectedClient(s *session) (*snapshot, error) {
	snap := s.snapshot()
	if snap.reply.Status != event.StatusConnected || snap.cli == nil {
		return nil, event.NewCommandError(event.CodeNotConnected, "session is %s", snap.reply.Status)
	}
	return snap, nil
}

// actionKey is the WA_SENDS key of an action's client id: its own
// namespace per verb, so a send and a reaction with the same client id do
// not answer for each other.
func actionKey(m int64, verb event.Verb, clientID string) (key, recordID string) {
	return sendkv.ActionKey(m, verb, clientID)
}

// act runs a react, edit or revoke command: it sends the protocol message
// WhatsApp uses for it and publishes the resulting message event (kind
// reaction, edit or revoke, TargetID the message acted on), which the
// persister applies to the target. A ClientID makes it idempotent.
func (c *Connector) act(ctx context.Context, s *session, verb event.Verb, req event.ActionRequest) (*event.Message, error) {
	if ce := req.Validate(verb); ce != nil {
		return nil, ce
	}
	chat, err := types.ParseJID(req.ChatJID)
	if err != nil || chat.IsEmpty() {
		return nil, event.NewCommandError(event.CodeBadRequest, "chat_jid is not a WhatsApp address")
	}
	var sender types.JID
	if req.SenderJID != "" {
		if sender, err = types.ParseJID(req.SenderJID); err != nil {
			return nil, event.NewCommandError(event.CodeBadRequest, "sender_jid is not a WhatsApp address")
		}
	}
	if verb == event.VerbEdit && !req.SentAt.IsZero() && c.clock.Now().Sub(req.SentAt) > event.EditWindow {
		return nil, event.NewCommandError(event.CodeEditExpired, "sent %s ago; WhatsApp allows edits for %s", c.clock.Now().Sub(req.SentAt).Round(time.Second), event.EditWindow)
	}
	if verb == event.VerbRevoke && !req.FromMe && chat.Server != types.GroupServer {
		return nil, event.NewCommandError(event.CodeNotEditable, "only your own messages can be deleted for everyone")
	}
	snap, err := connectedClient(s)
	if err != nil {
		return nil, err
	}
	cli := snap.cli

	var key, recordID string
	if req.ClientID != "" {
		key, recordID = actionKey(s.m, verb, req.ClientID)
		if done, err := c.sendReplay(ctx, key, recordID); done != nil || err != nil {
			return done, err
		}
	}

	id := cli.GenerateMessageID()
	target := messageKey(chat, sender, req.MessageID, req.FromMe)
	msg := &event.Message{
		WAID:      id,
		ChatJID:   chat.ToNonAD().String(),
		SenderJID: snap.jid.ToNonAD().String(),
		Direction: event.DirectionOut,
		TargetID:  req.MessageID,
		Timestamp: c.clock.Now().UTC(),
		Status:    event.MessageSent,
	}
	if msg.Phone, msg.LID, err = chatCounterpart(ctx, cli, chat); err != nil {
		return nil, err
	}
	var content *waE2E.Message
	switch verb {
	case event.VerbReact:
		msg.Kind, msg.Text = event.KindReaction, req.Emoji
		content = &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
			Key: target, Text: proto.String(req.Emoji), SenderTimestampMS: proto.Int64(c.clock.Now().UnixMilli()),
		}}
	case event.VerbEdit:
		msg.Kind, msg.Text = event.KindEdit, req.Text
		content = &waE2E.Message{EditedMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
			Key: target, Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(),
			EditedMessage: &waE2E.Message{Conversation: proto.String(req.Text)},
			TimestampMS:   proto.Int64(c.clock.Now().UnixMilli()),
		}}}}
	case event.VerbRevoke:
		msg.Kind = event.KindRevoke
		content = &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum(), Key: target}}
	}
	if err := c.checkRecordable(s.m, msg); err != nil {
		return nil, err
	}
	res, done, err := c.reserve(ctx, key, recordID, id, string(verb))
	if done != nil || err != nil {
		return done, err
	}
	// whatsmeow marks edits and revokes (the edit attribute) itself.
	sent, err := cli.SendMessage(ctx, chat, content, whatsmeow.SendRequestExtra{ID: id})
	if err != nil {
		res.release(ctx)
		return nil, sendError(string(verb), err)
	}
	if !sent.Timestamp.IsZero() {
		msg.Timestamp = sent.Timestamp.UTC()
	}
	res.sent(ctx, s, msg)
	if err := c.recordSent(ctx, s.m, msg); err != nil {
		return nil, event.NewCommandError(event.CodeInternal, "%s %s sent; recording it is retried in the background (retry with the same client_id to confirm): %v", verb, id, err)
	}
	s.groupSeen(msg.ChatJID)
	return msg, nil
}

// messageKey names the message an action applies to. fromMe: the
// mentorado sent it; in a group, someone else's message also names its
// author (participant).
func messageKey(chat, sender types.JID, id string, fromMe bool) *waCommon.MessageKey {
	k := &waCommon.MessageKey{RemoteJID: proto.String(chat.ToNonAD().String()), FromMe: proto.Bool(fromMe), ID: proto.String(id)}
	if !fromMe && !sender.IsEmpty() && chat.Server != types.DefaultUserServer && chat.Server != types.HiddenUserServer {
		k.Participant = proto.String(sender.ToNonAD().String())
	}
	return k
}

// markRead sends read receipts for the listed messages of one chat, one
// receipt per author, then publishes a read receipt event from us for
// them, which the persister uses to zero the chat's unread count. Marking
// the same messages again sends the receipts again (harmless) and
// publishes the same event id, which the stream drops.
func (c *Connector) markRead(ctx context.Context, s *session, req event.ReadRequest) error {
	chat, err := types.ParseJID(req.ChatJID)
	if err != nil || chat.IsEmpty() {
		return event.NewCommandError(event.CodeBadRequest, "chat_jid is not a WhatsApp address")
	}
	if len(req.Messages) == 0 {
		return nil
	}
	if len(req.Messages) > 1000 {
		return event.NewCommandError(event.CodeBadRequest, "at most 1000 messages at once")
	}
	snap, err := connectedClient(s)
	if err != nil {
		return err
	}
	rc, ok := snap.cli.(readClient)
	if !ok {
		return event.NewCommandError(event.CodeUnavailable, "this session cannot send read receipts")
	}
	bySender := map[string][]types.MessageID{}
	var order []string
	var ids []string
	for _, r := range req.Messages {
		if r.ID == "" {
			return event.NewCommandError(event.CodeBadRequest, "a message without id")
		}
		if _, seen := bySender[r.SenderJID]; !seen {
			order = append(order, r.SenderJID)
		}
		bySender[r.SenderJID] = append(bySender[r.SenderJID], r.ID)
		ids = append(ids, r.ID)
	}
	now := c.clock.Now()
	for _, who := range order {
		var sender types.JID
		if who != "" {
			if sender, err = types.ParseJID(who); err != nil {
				return event.NewCommandError(event.CodeBadRequest, "sender_jid %q is not a WhatsApp address", who)
			}
		}
		if chat.Server == types.DefaultUserServer || chat.Server == types.HiddenUserServer {
			// In a direct chat the receipt goes to the chat itself.
			sender = types.EmptyJID
		}
		if err := rc.MarkRead(ctx, bySender[who], now, chat, sender); err != nil {
			if errors.Is(err, whatsmeow.ErrNotConnected) || errors.Is(err, whatsmeow.ErrNotLoggedIn) {
				return event.NewCommandError(event.CodeNotConnected, "%v", err)
			}
			return fmt.Errorf("mark read: %w", err)
		}
	}
	rcpt := &event.Receipt{MessageIDs: ids, ChatJID: chat.ToNonAD().String(), Kind: event.ReceiptRead, FromMe: true, Timestamp: now.UTC()}
	if chat.Server == types.DefaultUserServer {
		rcpt.Phone = phone.FromJID(chat.ToNonAD().String())
	}
	env, err := event.New(s.m, event.ReceiptEventID(s.m, event.ReceiptRead, true, ids), rcpt.Timestamp, rcpt)
	if err != nil {
		return event.NewCommandError(event.CodeBadRequest, "read receipt cannot be recorded: %v", err)
	}
	if err := c.publish(ctx, env); err != nil {
		return event.NewCommandError(event.CodeInternal, "read receipts sent but not recorded (retry): %v", err)
	}
	return nil
}
