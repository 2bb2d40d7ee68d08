package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	// Heartbeat, when positive, is how often Consume tells JetStream that
	// the batch the handler holds is still being worked on (InProgress),
	// which restarts its AckWait: a batch whose handler takes longer than
	// AckWait is not redelivered to another consumer meanwhile. Use about a
	// third of the consumer's AckWait.
	Heartbeat time.Duration
}

// Consume pulls from a durable consumer continuously (with a prefetch
// buffer of two batches), hands batches to h and applies its decisions,
// until ctx ends. It returns ctx's error, or an error when the handler
// breaks its contract.
func Consume(ctx context.Context, cons jetstream.Consumer, opt ConsumeOptions, h BatchHandler) error {
	b := NewBatcher(cons, opt)
	defer b.Close()
	for {
		msgs, err := b.Next(ctx)
		if err != nil {
			return err
		}
		stop := KeepInProgress(msgs, b.opt.Heartbeat, b.opt.Log, nil)
		decisions := h(ctx, msgs)
		stop()
		if len(decisions) != len(msgs) {
			return fmt.Errorf("bus: handler returned %d decisions for %d messages", len(decisions), len(msgs))
		}
		Settle(msgs, decisions, b.opt.Log)
	}
}

// Batcher groups the messages of a continuous pull into batches: a batch is
// handed over when it is full, when no further message arrives within
// Linger, or MaxWait after its first message. Under load batches fill from
// the prefetch buffer (two batches); an idle stream's messages are handed
// over within Linger.
type Batcher struct {
	cons    jetstream.Consumer
	opt     ConsumeOptions
	it      jetstream.MessagesContext
	backoff time.Duration
}

// NewBatcher prepares a batcher; pulling starts with the first Next.
func NewBatcher(cons jetstream.Consumer, opt ConsumeOptions) *Batcher {
	if opt.Batch <= 0 {
		opt.Batch = 256
	}
	if opt.Linger <= 0 {
		opt.Linger = 5 * time.Millisecond
	}
	if opt.MaxWait <= 0 {
		opt.MaxWait = time.Second
	}
	return &Batcher{cons: cons, opt: opt, backoff: 100 * time.Millisecond}
}

// Next blocks until at least one message is available and returns a batch.
// Pull failures (NATS down, consumer gone) are retried with backoff; Next
// returns an error only when ctx ends.
func (b *Batcher) Next(ctx context.Context) ([]jetstream.Msg, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if b.it == nil {
			it, err := b.cons.Messages(jetstream.PullMaxMessages(2 * b.opt.Batch))
			if err != nil {
				b.fail(ctx, err)
				continue
			}
			b.it = it
		}
		first, err := b.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, jetstream.ErrNoHeartbeat) {
				b.opt.Log.Debug().Err(err).Msg("pull heartbeat missed")
				continue // the iterator re-issues its pull requests
			}
			b.it.Stop()
			b.it = nil
			b.fail(ctx, err)
			continue
		}
		b.backoff = 100 * time.Millisecond
		msgs := make([]jetstream.Msg, 1, b.opt.Batch)
		msgs[0] = first
		hold := time.Now().Add(b.opt.MaxWait)
		for len(msgs) < b.opt.Batch {
			wait := min(b.opt.Linger, time.Until(hold))
			if wait <= 0 {
				break
			}
			m, err := b.it.Next(jetstream.NextMaxWait(wait))
			if err != nil {
				break // nothing more within the linger; a failed iterator shows on the next call
			}
			msgs = append(msgs, m)
		}
		return msgs, nil
	}
}

func (b *Batcher) fail(ctx context.Context, err error) {
	if b.opt.OnFetchError != nil {
		b.opt.OnFetchError(err)
	}
	b.opt.Log.Warn().Err(err).Msg("pull failed; retrying")
	sleep(ctx, b.backoff)
	b.backoff = min(b.backoff*2, 5*time.Second)
}

// Close stops pulling and naks the messages already prefetched but not
// handed out, so another consumer gets them now instead of after AckWait.
func (b *Batcher) Close() {
	if b.it == nil {
		return
	}
	b.it.Drain()
	for {
		m, err := b.it.Next(jetstream.NextMaxWait(100 * time.Millisecond))
		if err != nil {
			break
		}
		_ = m.Nak()
	}
	b.it = nil
}

// KeepInProgress sends InProgress for every message of msgs each interval,
// until the returned stop is called (stop waits for a heartbeat under way,
// so the caller may settle the messages right after). Each round calls
// onBeat when not nil. A zero interval does nothing.
func KeepInProgress(msgs []jetstream.Msg, every time.Duration, log zerolog.Logger, onBeat func()) (stop func()) {
	if every <= 0 || len(msgs) == 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			var failed int
			var last error
			for _, m := range msgs {
				if err := m.InProgress(); err != nil {
					failed++
					last = err
				}
			}
			if failed > 0 {
				log.Warn().Err(last).Int("messages", failed).Msg("in-progress heartbeat failed")
			}
			if onBeat != nil {
				onBeat()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done); <-finished })
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
