package connector

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
)

// maxOutbox bounds the connection and QR events a session keeps while
// NATS is unreachable; the oldest are dropped first (the newest state wins).
const maxOutbox = 512

// outbox publishes a session's own events (connection, QR) in order and
// retries while NATS is down, so the session goroutine never blocks on the
// network and a stopping session can still disconnect in time.
type outbox struct {
	pub     publisher
	timeout time.Duration // of one publish attempt
	metrics *metrics
	log     zerolog.Logger
	mu      sync.Mutex
	q       []outItem
	// connSeq is the stream sequence of the last connection event this
	// outbox stored (0 before the first); only the outbox goroutine
	// touches it.
	connSeq uint64
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	abandon chan struct{}
	once    sync.Once
}

// outItem is a queued event; ifLatest ones are stored only if no other
// connection event was stored since this outbox's last (see
// bus.PublishIfLatest).
type outItem struct {
	env      event.Envelope
	ifLatest bool
}

func newOutbox(pub publisher, timeout time.Duration, m *metrics, log zerolog.Logger) *outbox {
	return &outbox{pub: pub, timeout: timeout, metrics: m, log: log, wake: make(chan struct{}, 1), done: make(chan struct{}), abandon: make(chan struct{})}
}

func (o *outbox) push(env event.Envelope) { o.add(outItem{env: env}) }

// pushIfLatest queues a connection event that is stored only if the last
// connection event on its subject is still this outbox's own: a session
// this connector no longer owns must not overwrite the new owner's state.
func (o *outbox) pushIfLatest(env event.Envelope) { o.add(outItem{env: env, ifLatest: true}) }

func (o *outbox) add(it outItem) {
	o.mu.Lock()
	if len(o.q) >= maxOutbox {
		o.log.Warn().Str("id", o.q[0].env.ID).Msg("outbox full; dropping oldest event")
		o.q = o.q[1:]
	}
	o.q = append(o.q, it)
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func (o *outbox) run(ctx context.Context) {
	defer close(o.done)
	for {
		o.mu.Lock()
		if len(o.q) == 0 {
			closed := o.closed
			o.mu.Unlock()
			if closed {
				return
			}
			select {
			case <-o.wake:
			case <-ctx.Done():
				return
			case <-o.abandon:
				return
			}
			continue
		}
		it := o.q[0]
		o.mu.Unlock()
		if !o.publish(ctx, it) {
			return
		}
		o.mu.Lock()
		if len(o.q) > 0 && o.q[0].env.ID == it.env.ID {
			o.q = o.q[1:]
		}
		o.mu.Unlock()
	}
}

// publish retries until JetStream acknowledges it (or, for an ifLatest
// item, says a newer connection event is stored); false when giving up.
func (o *outbox) publish(ctx context.Context, it outItem) bool {
	env := webEnvelope(it.env)
	delay := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, o.timeout)
		var ack *jetstream.PubAck
		var err error
		if it.ifLatest && o.connSeq > 0 {
			ack, err = o.pub.PublishIfLatest(pctx, env, o.connSeq)
		} else {
			ack, err = o.pub.Publish(pctx, env)
		}
		cancel()
		if errors.Is(err, bus.ErrNotLatest) {
			// Another owner's state, or this item's own earlier
			// attempt whose ack was lost: nothing left to publish.
			o.log.Info().Str("id", env.ID).Msg("a newer connection state is stored; not publishing this one")
			return true
		}
		if err == nil {
			if env.Type == event.TypeConnection {
				o.connSeq = ack.Sequence
			}
			o.metrics.published.WithLabelValues(string(env.Type)).Inc()
			return true
		}
		o.metrics.publishFailures.WithLabelValues(string(env.Type)).Inc()
		o.log.Warn().Err(err).Str("id", env.ID).Msg("publish session event failed; retrying")
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return false
		case <-o.abandon:
			return false
		}
		delay = min(2*delay, 2*time.Second)
	}
}

// close publishes what is queued, waiting at most until ctx is done.
func (o *outbox) close(ctx context.Context) {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	select {
	case <-o.done:
	case <-ctx.Done():
		o.once.Do(func() { close(o.abandon) })
	}
}
