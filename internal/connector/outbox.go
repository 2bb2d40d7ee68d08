package connector

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
)

// maxOutbox bounds the connection and QR events a session keeps while
// NATS is unreachable; the oldest are dropped first (the newest state wins).
const maxOutbox = 512

// outbox publishes a session's own events (connection, QR) in order and
// retries while NATS is down, so the session goroutine never blocks on the
// network and a stopping session can still disconnect in time.
type outbox struct {
	c       *Connector
	log     zerolog.Logger
	mu      sync.Mutex
	q       []event.Envelope
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	abandon chan struct{}
	once    sync.Once
}

func newOutbox(c *Connector, log zerolog.Logger) *outbox {
	return &outbox{c: c, log: log, wake: make(chan struct{}, 1), done: make(chan struct{}), abandon: make(chan struct{})}
}

func (o *outbox) push(env event.Envelope) {
	o.mu.Lock()
	if len(o.q) >= maxOutbox {
		o.log.Warn().Str("id", o.q[0].ID).Msg("outbox full; dropping oldest event")
		o.q = o.q[1:]
	}
	o.q = append(o.q, env)
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
		env := o.q[0]
		o.mu.Unlock()
		if !o.publish(ctx, env) {
			return
		}
		o.mu.Lock()
		if len(o.q) > 0 && o.q[0].ID == env.ID {
			o.q = o.q[1:]
		}
		o.mu.Unlock()
	}
}

// publish retries until JetStream acknowledges env; false when giving up.
func (o *outbox) publish(ctx context.Context, env event.Envelope) bool {
	delay := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, o.c.cfg.PublishTimeout)
		_, err := o.c.bus.Publish(pctx, env)
		cancel()
		if err == nil {
			o.c.metrics.published.WithLabelValues(string(env.Type)).Inc()
			return true
		}
		o.c.metrics.publishFailures.WithLabelValues(string(env.Type)).Inc()
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
