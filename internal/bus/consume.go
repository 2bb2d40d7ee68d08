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
	Batch int // most messages handed to the handler at once (default 256)
	// Linger is how long a partial batch waits for one more message before
	// it is handed over (default 5 ms): an idle stream is applied at once,
	// a busy one fills whole batches from the prefetch buffer.
	Linger time.Duration
	// MaxWait bounds how long a partial batch is held after its first
	// message arrived, however steadily messages trickle in (default 1 s).
	MaxWait time.Duration
	Log     zerolog.Logger
	// OnFetchError is called when pulling fails, e.g. while NATS is down;
	// Consume waits a moment and tries again.
	OnFetchError func(error)
}

// Consume pulls from a durable consumer continuously (with a prefetch
// buffer of two batches), hands batches to h and applies its decisions,
// until ctx ends. It returns ctx's error, or an error when the handler
// breaks its contract.
func Consume(ctx context.Context, cons jetstream.Consumer, opt ConsumeOptions, h BatchHandler) error {
	if opt.Batch <= 0 {
		opt.Batch = 256
	}
	if opt.Linger <= 0 {
		opt.Linger = 5 * time.Millisecond
	}
	if opt.MaxWait <= 0 {
		opt.MaxWait = time.Second
	}
	backoff := 100 * time.Millisecond
	fail := func(err error) {
		if opt.OnFetchError != nil {
			opt.OnFetchError(err)
		}
		opt.Log.Warn().Err(err).Msg("pull failed; retrying")
		sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
	for ctx.Err() == nil {
		it, err := cons.Messages(jetstream.PullMaxMessages(2 * opt.Batch))
		if err != nil {
			fail(err)
			continue
		}
		err = consumeIter(ctx, it, opt, h, &backoff)
		it.Stop()
		if err != nil && ctx.Err() == nil {
			var contract *contractError
			if errors.As(err, &contract) {
				return err
			}
			fail(err)
		}
	}
	return ctx.Err()
}

type contractError struct{ msg string }

func (e *contractError) Error() string { return e.msg }

// consumeIter runs batches off one iterator until it fails or ctx ends.
func consumeIter(ctx context.Context, it jetstream.MessagesContext, opt ConsumeOptions, h BatchHandler, backoff *time.Duration) error {
	for {
		first, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				opt.Log.Debug().Err(err).Msg("pull heartbeat missed")
				continue // the iterator re-issues its pull requests
			}
			return err
		}
		*backoff = 100 * time.Millisecond
		msgs := make([]jetstream.Msg, 1, opt.Batch)
		msgs[0] = first
		hold := time.Now().Add(opt.MaxWait)
		for len(msgs) < opt.Batch {
			wait := min(opt.Linger, time.Until(hold))
			if wait <= 0 {
				break
			}
			m, err := it.Next(jetstream.NextMaxWait(wait))
			if err != nil {
				break // nothing more within the linger (or the iterator failed: the next round sees it)
			}
			msgs = append(msgs, m)
		}
		decisions := h(ctx, msgs)
		if len(decisions) != len(msgs) {
			return &contractError{fmt.Sprintf("bus: handler returned %d decisions for %d messages", len(decisions), len(msgs))}
		}
		Settle(msgs, decisions, opt.Log)
	}
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
