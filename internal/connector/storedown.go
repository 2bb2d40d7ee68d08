package connector

import (
	"context"
	"time"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
)

// When Postgres (whatsmeow's device store) goes away, the messages that
// reach a connected session cannot be decrypted: whatsmeow cannot read the
// Signal session, sends the sender a retry receipt, acks the message and
// dispatches UndecryptableMessage. The sender's resends fail the same way
// while the store is down, and after a few of them nobody retries: the
// message would be lost. The chaos run over the staging stack saw this
// (600 messages of a 30 s cut were stuck).
//
// So a session that sees an undecryptable message checks the store; when
// it does not answer, the session disconnects from WhatsApp at once (the
// server keeps what arrives meanwhile, and the senders' resends, for when
// the device is back) and reconnects only once the store answers again.
// This does not count as a reconnect attempt: the store is ours, not the
// number's, and the session must not give up over it.

const (
	// storeCheckTimeout bounds the check made on an undecryptable message
	// (it runs on whatsmeow's event goroutine).
	storeCheckTimeout = 2 * time.Second
	// storeRecheck is how often a session waiting for the store checks it.
	storeRecheck = time.Second
)

// ReasonStoreDown is the connection reason while a session waits for its
// device store.
const ReasonStoreDown = "device store unavailable: waiting for Postgres"

// onUndecryptable runs on whatsmeow's event goroutine for a message that
// failed to decrypt. A message WhatsApp itself marks unavailable (a view
// once, a sender-key gap in a group) is not about our store.
func (s *session) onUndecryptable(ctx context.Context, gen int, u *events.UndecryptableMessage) {
	if u.IsUnavailable || s.d.storeCheck == nil {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, storeCheckTimeout)
	err := s.d.storeCheck(cctx)
	cancel()
	if err == nil {
		return // a decryption failure of its own: whatsmeow's retry handles it
	}
	s.log.Warn().Err(err).Msg("message undecryptable and the device store does not answer; leaving WhatsApp until it does")
	s.post(func(ctx context.Context) { s.storeDown(ctx, gen) })
}

// storeDown disconnects a connected session until the store answers.
func (s *session) storeDown(ctx context.Context, gen int) {
	if gen != s.gen || s.exit || s.cli == nil {
		return
	}
	switch s.status {
	case event.StatusConnected, event.StatusConnecting:
	default:
		return
	}
	s.d.metrics.reconnects.WithLabelValues("store_down").Inc()
	// Status first: the Disconnected event this may cause finds the
	// session in backoff and leaves it alone.
	s.retryAt = nil
	s.setStatus(event.StatusBackoff, ReasonStoreDown)
	s.cli.Disconnect()
	s.schedule(storeRecheck, s.awaitStore)
}

// awaitStore reconnects once the store answers, checking every storeRecheck.
func (s *session) awaitStore(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, storeCheckTimeout)
	err := s.d.storeCheck(cctx)
	cancel()
	if err != nil {
		s.schedule(storeRecheck, s.awaitStore)
		return
	}
	s.log.Info().Msg("device store answers again; reconnecting")
	s.reconnect(ctx)
}
