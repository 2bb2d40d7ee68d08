package outbound

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// ReasonTTLExpired is the status reason of a queued send whose TTL passed.
const ReasonTTLExpired = "ttl_expired"

// outboxStatus is the message status an outbox state shows.
func outboxStatus(state string) event.MessageStatus {
	switch state {
	case store.OutboxSent:
		return event.MessageSent
	case store.OutboxExpired:
		return event.MessageExpired
	case store.OutboxFailed:
		return event.MessageFailed
	}
	return event.MessageQueued // queued, sending
}

// outboxChat is where a queued request goes and the counterpart's phone:
// the chat it names, or the phone's JID.
func outboxChat(req event.SendRequest) (chat, num string) {
	if req.Chat != "" {
		return req.Chat, phone.FromJID(req.Chat)
	}
	return phone.JID(req.Phone), req.Phone
}

// outboxMessage is the message event of an outbox row in its state.
func outboxMessage(r store.OutboxRow) *event.Message {
	req := r.Request
	kind := req.Kind
	if kind == "" {
		kind = event.KindText
	}
	chat, num := outboxChat(req)
	msg := &event.Message{
		WAID:      r.WAMessageID,
		ChatJID:   chat,
		SenderJID: r.OwnJID,
		Phone:     num,
		Direction: event.DirectionOut,
		Kind:      kind,
		Text:      req.Text,
		Caption:   req.Caption,
		ReplyToID: req.ReplyTo,
		Timestamp: r.CreatedAt.UTC(),
		Status:    outboxStatus(r.State),
		ClientID:  r.ClientID,
	}
	if msg.Status == event.MessageFailed || msg.Status == event.MessageExpired {
		msg.StatusReason = r.Reason
	}
	return msg
}

// publishOutbox publishes row's message event in its state (queued,
// failed or expired) under OutboxEventID.
func publishOutbox(ctx context.Context, pub Publisher, r store.OutboxRow, at time.Time) error {
	msg := outboxMessage(r)
	env, err := event.New(r.MentoradoID, event.OutboxEventID(r.MentoradoID, r.WAMessageID, msg.Status), at, msg)
	if err != nil {
		return fmt.Errorf("outbound: %s event of %s: %w", msg.Status, r.WAMessageID, err)
	}
	if err := pub.Publish(ctx, env); err != nil {
		return fmt.Errorf("outbound: publish %s event of %s: %w", msg.Status, r.WAMessageID, err)
	}
	return nil
}

// Enqueue queues req for mentorado m under WhatsApp id waID (the session
// is connecting, in backoff, paced or behind queued sends): it stores the
// outbox row and publishes the message event with status queued. own is
// the mentorado's own JID (the message's sender). A retried request with
// the same client_id returns the message queued first (and publishes its
// queued event again while it is queued: the same event id, so a lost
// first publish is repaired and a kept one is deduplicated).
//
// The row is the commitment: once it is stored the send will happen (or
// expire, or fail). If the queued event cannot be published, Enqueue still
// returns the message (the caller answers 202) and logs the error through
// zerolog.Ctx(ctx); the thread then shows the message when its sent event
// comes. Answering an error would make the client retry a send that is
// already queued.
func Enqueue(ctx context.Context, db *store.DB, pub Publisher, m int64, own string, req event.SendRequest, waID string, now time.Time, s Settings) (*event.Message, error) {
	ttl := req.TTLSeconds
	if ttl <= 0 {
		ttl = s.QueueTTLSeconds
	}
	if ttl <= 0 {
		ttl = Defaults().QueueTTLSeconds
	}
	if own == "" {
		return nil, fmt.Errorf("outbound: enqueue: the mentorado's own JID is unknown")
	}
	row, _, err := db.Outbox().Insert(ctx, store.OutboxRow{
		MentoradoID: m, WAMessageID: waID, ClientID: req.ClientID, Request: req,
		ExpiresAt: now.Add(time.Duration(ttl) * time.Second), CreatedAt: now, OwnJID: own,
	})
	if err != nil {
		return nil, err
	}
	if row.State == store.OutboxQueued {
		if err := publishOutbox(ctx, pub, row, row.CreatedAt); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Int64("mentorado", m).Str("wa_id", row.WAMessageID).
				Msg("queued send stored but its queued event was not published; it will still be sent")
		}
	}
	return outboxMessage(row), nil
}

// Lookup finds mentorado m's outbox send with client id clientID: its
// message as queued (status queued, or the final status) and its outbox
// state; nil when there is none. A retried send checks it first.
func Lookup(ctx context.Context, db *store.DB, m int64, clientID string) (*event.Message, string, error) {
	if clientID == "" {
		return nil, "", nil
	}
	row, err := db.Outbox().ByClientID(ctx, m, clientID)
	if err != nil || row == nil {
		return nil, "", err
	}
	return outboxMessage(*row), row.State, nil
}

// FailQueued fails every queued send of m at once with reason (the user
// disconnected or logged out), publishing each failed event. Call it once
// the mentorado's worker has stopped: it fails the sends left in sending
// too (a crash between the claim and the send), so nothing goes out hours
// later to a number the user unpaired.
func FailQueued(ctx context.Context, db *store.DB, pub Publisher, m int64, reason string) (int, error) {
	return finishOutbox(ctx, db, store.OutboxFinish{
		Mentorado: m, States: []string{store.OutboxQueued, store.OutboxSending}, State: store.OutboxFailed, Reason: reason,
	}, pub, time.Now())
}

// Sweep expires queued sends past their TTL, across mentorados, publishing
// each expired event. Any number of connectors may run it (the rows are
// taken with FOR UPDATE SKIP LOCKED).
func Sweep(ctx context.Context, db *store.DB, pub Publisher, now time.Time) (int, error) {
	return finishOutbox(ctx, db, store.OutboxFinish{DueBefore: &now, State: store.OutboxExpired, Reason: ReasonTTLExpired}, pub, now)
}

// finishOutbox runs f in batches until none is left, publishing each row's
// event before its batch commits.
func finishOutbox(ctx context.Context, db *store.DB, f store.OutboxFinish, pub Publisher, now time.Time) (int, error) {
	f.Limit = 200
	total := 0
	for {
		n, err := db.Outbox().Finish(ctx, f, func(ctx context.Context, r store.OutboxRow) error {
			return publishOutbox(ctx, pub, r, now)
		})
		total += n
		if err != nil || n < f.Limit {
			return total, err
		}
	}
}

// Reasons a mentorado's bulk sending pauses or resumes (event.Sending).
const (
	ReasonTemporaryBan = "temporary_ban"
	ReasonSendErrors   = "send_errors"
	ReasonResumed      = "resumed"
)

// PauseBulk pauses mentorado m's bulk sending (reason temporary_ban, with
// until; or send_errors, with errs, the run of errors): it records the
// pause in send_settings, pauses m's running campaigns with reason and
// publishes a sending event. The session calls it on a temporary ban (its
// worker is not running then); the worker calls it itself after
// PauseAfterErrors consecutive send errors. The event is published before
// the pause commits: if it cannot be, nothing is paused and the error is
// returned.
func PauseBulk(ctx context.Context, db *store.DB, pub Publisher, m int64, reason string, until *time.Time, errs int, now time.Time) error {
	_, err := db.Outbox().SetBulkPause(ctx, m, reason, now, func(ctx context.Context) error {
		return publishSending(ctx, pub, m, &event.Sending{Bulk: event.BulkPaused, Reason: reason, Until: until, Errors: errs}, now)
	})
	return err
}

func publishSending(ctx context.Context, pub Publisher, m int64, s *event.Sending, at time.Time) error {
	env, err := event.New(m, event.SendingEventID(m, s.Bulk, at), at, s)
	if err != nil {
		return fmt.Errorf("outbound: sending event: %w", err)
	}
	if err := pub.Publish(ctx, env); err != nil {
		return fmt.Errorf("outbound: publish sending event: %w", err)
	}
	return nil
}
