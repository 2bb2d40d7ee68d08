package connector

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/waconv"
)

// handler is registered on a client; it runs on whatsmeow goroutines.
// waconv.Decide says what each event is: published ones (messages,
// receipts, contacts) are stored before it returns, true (whatsmeow acks)
// only after every JetStream PubAck; state changes go to the session
// goroutine; the rest is counted and acked. ctx is the session's run
// context.
func (s *session) handler(ctx context.Context, gen int, cli Client, detach chan struct{}) whatsmeow.EventHandlerWithSuccessStatus {
	return func(evt any) bool {
		switch d := waconv.Decide(evt); d.Action {
		case waconv.Publish:
			if gi, ok := evt.(*events.GroupInfo); ok {
				// A delta: the session fetches the snapshot (groups.go).
				return s.onGroupInfo(ctx, cli, gi)
			}
			return s.publishInbound(ctx, cli, evt)
		case waconv.Media:
			s.onMediaRetry(evt)
		case waconv.StateChange:
			f := func(ctx context.Context) { s.onEvent(ctx, gen, evt) }
			select {
			case s.inbox <- f:
			case <-s.quit:
			case <-detach:
			}
		default:
			if u, ok := evt.(*events.UndecryptableMessage); ok {
				s.onUndecryptable(ctx, gen, u)
			}
			s.notHandled(evt, d)
		}
		return true
	}
}

// notHandled counts an event the registry ignores or does not know, and
// logs its type (never its content) once per session.
func (s *session) notHandled(evt any, d waconv.Decision) {
	typ := fmt.Sprintf("%T", evt)
	decision := "ignored"
	if d.Action == waconv.Unknown {
		decision = "unknown"
	}
	s.d.metrics.waEventsIgnored.WithLabelValues(typ, decision).Inc()
	if _, seen := s.ignoredSeen.LoadOrStore(typ, true); seen {
		return
	}
	ev := s.log.Debug().Str("event", typ).Str("decision", decision)
	if d.Reason != "" {
		ev = ev.Str("reason", d.Reason)
	}
	ev.Msg("whatsmeow event not handled (logged once per type)")
}

func (s *session) publishInbound(ctx context.Context, cli Client, evt any) bool {
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.PublishTimeout)
	defer cancel()
	envs, err := s.d.convert(ctx, s.m, cli, evt)
	if err != nil {
		var perm *event.Error
		if errors.As(err, &perm) {
			// A fact that cannot be expressed in the contract: retrying
			// would loop forever. Keep it in the dead-letter stream with
			// the reason, and ack WhatsApp only once that is stored.
			if derr := s.deadLetter(ctx, evt, err); derr != nil {
				s.log.Warn().Err(derr).Msg("dead-letter unconvertible event; not acking")
				return false
			}
			s.log.Error().Err(err).Str("event", fmt.Sprintf("%T", evt)).Msg("unconvertible event dead-lettered")
			s.d.metrics.dropped.Inc()
			return true
		}
		s.log.Warn().Err(err).Str("event", fmt.Sprintf("%T", evt)).Msg("convert failed; not acking")
		return false
	}
	for _, env := range envs {
		if err := s.publishEnv(ctx, env); err != nil {
			s.log.Warn().Err(err).Str("id", env.ID).Msg("publish failed; WhatsApp will redeliver")
			return false
		}
	}
	// The file of a media message: queued after its event, before the ack.
	if err := s.enqueueDownload(ctx, evt); err != nil {
		s.log.Warn().Err(err).Msg("queue media download failed; WhatsApp will redeliver")
		return false
	}
	// A history sync chunk the phone announced: queued before the ack.
	if err := s.enqueueHistory(ctx, evt); err != nil {
		s.log.Warn().Err(err).Msg("queue history sync failed; WhatsApp will redeliver")
		return false
	}
	// Groups met for the first time are described in the background.
	s.published(envs)
	// Who wrote gets conversational pacing.
	s.observeInbound(envs)
	return true
}

// publishEnv publishes one event of the session and counts it (published
// or failed, by type). Callers bound ctx and decide what a failure means.
func (s *session) publishEnv(ctx context.Context, env event.Envelope) error {
	if _, err := s.d.publisher.Publish(ctx, webEnvelope(env)); err != nil {
		s.d.metrics.publishFailures.WithLabelValues(string(env.Type)).Inc()
		return err
	}
	s.d.metrics.published.WithLabelValues(string(env.Type)).Inc()
	return nil
}

// deadLetter stores a whatsmeow event the contract cannot express in WA_DLQ
// as JSON, under an id derived from its content.
func (s *session) deadLetter(ctx context.Context, evt any, reason error) error {
	data, err := json.Marshal(evt)
	if err != nil {
		data = []byte(fmt.Sprintf("%+v", evt))
	}
	sum := sha256.Sum256(data)
	id := fmt.Sprintf("%d:%x", s.m, sum[:12])
	subject := fmt.Sprintf("whatsmeow:%T", evt)
	return s.d.publisher.DeadLetterFrom(ctx, "connector", id, subject, data, reason)
}
