package bus

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// The consume contract, stated once for every durable consumer of zapbus
// (watermill's message/router.go is the model):
//
//   - a message is acked only after the handler returned without error and
//     without marking it poison: the next hop durably has it;
//   - a handler error means the batch was not applied: every message of it
//     is nak'd after a growing backoff (ConsumeOptions.RetryMin..RetryMax)
//     and comes back;
//   - a message the handler marks poison is dead-lettered to WA_DLQ with
//     the reason, then terminated; when dead-lettering fails it is nak'd
//     after RetryMin instead, so nothing is dropped without a dead letter;
//   - a batch is reported in progress every Heartbeat while it is handled
//     and while it waits behind the batch being handled, so it is
//     redelivered elsewhere only when this process died;
//   - at shutdown, messages pulled but not handled are nak'd, so another
//     consumer takes them at once instead of after AckWait.

// Handler is what Consume runs over a consumer's batches. T is what Prepare
// makes of a batch (e.g. the decoded events).
type Handler[T any] struct {
	// Prepare, when set, runs on the pulling goroutine as soon as a batch
	// is pulled, while the batch before it is still being handled, so
	// decoding overlaps applying.
	Prepare func(msgs []jetstream.Msg) T
	// Handle applies a batch. A non-nil error means nothing of it was
	// applied durably (a transient failure). Otherwise poison is nil or has
	// one entry per message: nil for applied (acked), or the reason the
	// message can never be applied (dead-lettered, then terminated).
	Handle func(ctx context.Context, msgs []jetstream.Msg, prepared T) (poison []error, err error)
}

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
	// a batch it holds is still being worked on (InProgress), which
	// restarts its AckWait: a batch whose handler takes longer than
	// AckWait is not redelivered to another consumer meanwhile. Use about
	// a third of the consumer's AckWait.
	Heartbeat time.Duration
	// OnHeartbeat, when set, is called after each heartbeat round.
	OnHeartbeat func()
	// RetryMin and RetryMax bound the backoff before a failed batch is
	// nak'd (defaults 200 ms and 10 s): it doubles with each failure in a
	// row and starts over after a success.
	RetryMin, RetryMax time.Duration
	// OnDeadLetter, when set, is called after each message dead-lettered.
	OnDeadLetter func()
}

func (o ConsumeOptions) withDefaults() ConsumeOptions {
	if o.Batch <= 0 {
		o.Batch = 256
	}
	if o.Linger <= 0 {
		o.Linger = 5 * time.Millisecond
	}
	if o.MaxWait <= 0 {
		o.MaxWait = time.Second
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 200 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Second
	}
	o.RetryMax = max(o.RetryMax, o.RetryMin)
	return o
}

// MaxTermReason bounds the reason sent with a Term (the full reason is in
// the dead letter's Zapbus-Error header).
const MaxTermReason = 200

// Consume pulls from the durable consumer cons continuously (with a
// prefetch buffer of two batches and one batch prepared ahead), hands
// batches to h and settles every message by the consume contract above,
// until ctx ends. Poison is dead-lettered through b. It returns ctx's
// error.
func Consume[T any](ctx context.Context, b *Bus, cons jetstream.Consumer, opt ConsumeOptions, h Handler[T]) error {
	opt = opt.withDefaults()
	c := &consumer[T]{b: b, opt: opt, h: h, backoff: opt.RetryMin, stream: StreamEvents}
	if info := cons.CachedInfo(); info != nil && info.Stream != "" {
		c.stream = info.Stream
	}
	type pulled struct {
		msgs     []jetstream.Msg
		prepared T
		stop     func() // ends the heartbeat kept while the batch waits
	}
	next := make(chan pulled, 1)
	go func() {
		defer close(next)
		batches := newBatcher(cons, opt)
		defer batches.Close() // naks what was prefetched but not taken
		for {
			msgs, err := batches.Next(ctx)
			if err != nil {
				return // ctx ended
			}
			// While the batch before this one is handled, keep this one
			// alive too: its AckWait runs from delivery.
			stop := keepInProgress(msgs, opt.Heartbeat, opt.Log, opt.OnHeartbeat)
			var prepared T
			if h.Prepare != nil {
				prepared = h.Prepare(msgs)
			}
			select {
			case next <- pulled{msgs: msgs, prepared: prepared, stop: stop}:
			case <-ctx.Done():
				stop()
				nakAll(msgs, opt.Log)
				return
			}
		}
	}()
	for f := range next {
		f.stop() // hand the heartbeat over to the handling loop
		if ctx.Err() != nil {
			nakAll(f.msgs, opt.Log) // shutting down: let another consumer take them now
			continue
		}
		stop := keepInProgress(f.msgs, opt.Heartbeat, opt.Log, opt.OnHeartbeat)
		decisions := c.handle(ctx, f.msgs, f.prepared)
		stop()
		settle(f.msgs, decisions, opt.Log)
	}
	return ctx.Err()
}

// consumer holds the state of one Consume: the backoff of failed batches.
type consumer[T any] struct {
	b       *Bus
	opt     ConsumeOptions
	h       Handler[T]
	stream  string
	backoff time.Duration
}

// handle runs the handler on one batch and decides each message's fate.
func (c *consumer[T]) handle(ctx context.Context, msgs []jetstream.Msg, prepared T) []decision {
	decisions := make([]decision, len(msgs))
	poison, err := c.h.Handle(ctx, msgs, prepared)
	if err != nil {
		delay := c.backoff
		c.backoff = min(c.backoff*2, c.opt.RetryMax)
		if ctx.Err() != nil {
			delay = 0 // shutting down: let another consumer take them now
		} else {
			c.opt.Log.Warn().Err(err).Int("events", len(msgs)).Dur("retry_in", delay).Msg("batch not applied; will retry")
			Sleep(ctx, delay)
		}
		for i := range decisions {
			decisions[i] = decision{action: actNak}
		}
		return decisions
	}
	c.backoff = c.opt.RetryMin
	for i, m := range msgs {
		var perr error
		if i < len(poison) {
			perr = poison[i]
		}
		if perr == nil {
			decisions[i] = decision{action: actAck}
			continue
		}
		if err := c.deadLetter(ctx, m, perr); err != nil {
			c.opt.Log.Error().Err(err).Uint64("seq", seqOf(m)).Msg("dead-letter failed; will retry")
			decisions[i] = decision{action: actNak, delay: c.opt.RetryMin}
			continue
		}
		decisions[i] = decision{action: actTerm, reason: truncate(perr.Error(), MaxTermReason)}
	}
	return decisions
}

func (c *consumer[T]) deadLetter(ctx context.Context, m jetstream.Msg, reason error) error {
	if c.b == nil {
		return errors.New("bus: consume without a bus cannot dead-letter")
	}
	seq := seqOf(m)
	c.opt.Log.Warn().Err(reason).Str("subject", m.Subject()).Uint64("seq", seq).Msg("dead-lettering event")
	if err := c.b.DeadLetter(ctx, c.stream, m.Subject(), seq, m.Data(), reason); err != nil {
		return err
	}
	if c.opt.OnDeadLetter != nil {
		c.opt.OnDeadLetter()
	}
	return nil
}

// seqOf is m's stream sequence, 0 when its metadata cannot be read.
func seqOf(m jetstream.Msg) uint64 {
	if md, err := m.Metadata(); err == nil {
		return md.Sequence.Stream
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

func nakAll(msgs []jetstream.Msg, log zerolog.Logger) {
	for _, m := range msgs {
		if err := m.Nak(); err != nil {
			log.Debug().Err(err).Msg("nak on shutdown")
		}
	}
}

// batcher groups the messages of a continuous pull into batches: a batch is
// handed over when it is full, when no further message arrives within
// Linger, or MaxWait after its first message. Under load batches fill from
// the prefetch buffer (two batches); an idle stream's messages are handed
// over within Linger.
type batcher struct {
	cons    jetstream.Consumer
	opt     ConsumeOptions
	it      jetstream.MessagesContext
	backoff time.Duration
}

// newBatcher prepares a batcher; pulling starts with the first Next.
func newBatcher(cons jetstream.Consumer, opt ConsumeOptions) *batcher {
	return &batcher{cons: cons, opt: opt.withDefaults(), backoff: 100 * time.Millisecond}
}

// Next blocks until at least one message is available and returns a batch.
// Pull failures (NATS down, consumer gone) are retried with backoff; Next
// returns an error only when ctx ends.
func (b *batcher) Next(ctx context.Context) ([]jetstream.Msg, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if b.it == nil {
			// A 5 s pull expiry (nats.go's default is 30 s, with a missed
			// heartbeat noticed only after that): when the server that
			// leads the consumer dies, the outstanding pull dies silently
			// and is replaced only when it expires. The 3-node cluster
			// test measured stalls of 16–23 s with the default and
			// 2.6–4 s with 5 s (docs/cluster.md).
			it, err := b.cons.Messages(jetstream.PullMaxMessages(2*b.opt.Batch), jetstream.PullExpiry(5*time.Second))
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

func (b *batcher) fail(ctx context.Context, err error) {
	if b.opt.OnFetchError != nil {
		b.opt.OnFetchError(err)
	}
	b.opt.Log.Warn().Err(err).Msg("pull failed; retrying")
	Sleep(ctx, b.backoff)
	b.backoff = min(b.backoff*2, 5*time.Second)
}

// Close stops pulling and naks the messages already prefetched but not
// handed out, so another consumer gets them now instead of after AckWait.
func (b *batcher) Close() {
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

// keepInProgress sends InProgress for every message of msgs each interval,
// until the returned stop is called (stop waits for a heartbeat under way,
// so the caller may settle the messages right after). Each round calls
// onBeat when not nil. A zero interval does nothing.
func keepInProgress(msgs []jetstream.Msg, every time.Duration, log zerolog.Logger, onBeat func()) (stop func()) {
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

// action is what to do with one consumed message.
type action int

const (
	actAck  action = iota // applied durably: remove from the consumer
	actNak                // transient failure: redeliver after delay
	actTerm               // poison, dead-lettered: never redeliver
)

// decision is the verdict on one message.
type decision struct {
	action action
	delay  time.Duration // for actNak
	reason string        // for actTerm
}

// settle applies decisions to messages. Acks are sent without waiting for
// confirmation: a lost ack means a redelivery, which idempotent handlers
// absorb.
func settle(msgs []jetstream.Msg, decisions []decision, log zerolog.Logger) {
	for i, m := range msgs {
		d := decisions[i]
		var err error
		switch d.action {
		case actAck:
			err = m.Ack()
		case actNak:
			if d.delay > 0 {
				err = m.NakWithDelay(d.delay)
			} else {
				err = m.Nak()
			}
		case actTerm:
			if d.reason != "" {
				err = m.TermWithReason(d.reason)
			} else {
				err = m.Term()
			}
		}
		if err != nil {
			log.Warn().Err(err).Int("action", int(d.action)).Msg("settle message")
		}
	}
}

// Sleep waits d, or less when ctx ends first: the pause of every retry
// loop around the bus (pulling here, the persister's replay).
func Sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
