package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// Action is what to do with one consumed message.
type Action int

// Actions.
const (
	Ack  Action = iota // applied durably: remove from the consumer
	Nak                // transient failure: redeliver after Delay
	Term               // poison: never redeliver (dead-letter it first)
	Skip               // leave alone: redelivered after AckWait
)

// Decision is the handler's verdict on one message.
type Decision struct {
	Action Action
	Delay  time.Duration // for Nak
	Reason string        // for Term
}

// BatchHandler handles a batch and returns one decision per message, in order.
type BatchHandler func(ctx context.Context, msgs []jetstream.Msg) []Decision

// ConsumeOptions tunes Consume.
type ConsumeOptions struct {
	Batch   int           // messages per fetch (default 256)
	MaxWait time.Duration // how long a fetch waits to fill a batch (default 1 s)
	Log     zerolog.Logger
	// OnFetchError is called when a fetch fails, e.g. while NATS is down;
	// Consume waits a moment and tries again.
	OnFetchError func(error)
}

// Consume fetches batches from a pull consumer, hands them to h and applies
// its decisions, until ctx ends. It returns ctx's error, or an error when
// the handler breaks its contract.
func Consume(ctx context.Context, cons jetstream.Consumer, opt ConsumeOptions, h BatchHandler) error {
	if opt.Batch <= 0 {
		opt.Batch = 256
	}
	if opt.MaxWait <= 0 {
		opt.MaxWait = time.Second
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		batch, err := cons.Fetch(opt.Batch, jetstream.FetchMaxWait(opt.MaxWait))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if opt.OnFetchError != nil {
				opt.OnFetchError(err)
			}
			opt.Log.Warn().Err(err).Msg("fetch failed; retrying")
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		msgs := make([]jetstream.Msg, 0, opt.Batch)
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.Canceled) {
			opt.Log.Debug().Err(err).Int("got", len(msgs)).Msg("fetch ended early")
		}
		if len(msgs) == 0 {
			continue
		}
		decisions := h(ctx, msgs)
		if len(decisions) != len(msgs) {
			return fmt.Errorf("bus: handler returned %d decisions for %d messages", len(decisions), len(msgs))
		}
		Settle(msgs, decisions, opt.Log)
	}
	return ctx.Err()
}

// Settle applies decisions to messages. Acks are sent without waiting for
// confirmation: a lost ack means a redelivery, which idempotent handlers
// absorb.
func Settle(msgs []jetstream.Msg, decisions []Decision, log zerolog.Logger) {
	for i, m := range msgs {
		d := decisions[i]
		var err error
		switch d.Action {
		case Ack:
			err = m.Ack()
		case Nak:
			if d.Delay > 0 {
				err = m.NakWithDelay(d.Delay)
			} else {
				err = m.Nak()
			}
		case Term:
			if d.Reason != "" {
				err = m.TermWithReason(d.Reason)
			} else {
				err = m.Term()
			}
		case Skip:
		}
		if err != nil {
			log.Warn().Err(err).Int("action", int(d.Action)).Msg("settle message")
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
