package webhook

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/store"
)

// Config holds the dispatcher's settings. Zero values take the defaults.
type Config struct {
	// Policy decides which URLs may be called (SSRF protection).
	Policy Policy
	// Timeout bounds one delivery attempt, connection included (default 10 s).
	Timeout time.Duration
	// Backoff is the delay before each retry: Backoff[i] after the
	// (i+1)-th failed attempt, with ±20% jitter. The default spans more
	// than 24 hours: 5s 30s 2m 5m 10m 30m 1h 2h 4h 8h 8h (12 attempts).
	// After the last, the event is dead-lettered.
	Backoff []time.Duration
	// AutoPauseAfter pauses an endpoint whose attempts have all failed for
	// this long (default 24 h), with a webhook event.
	AutoPauseAfter time.Duration
	// ReconcileInterval is how often the webhooks table is read again
	// besides the NOTIFY signal (default 10 s).
	ReconcileInterval time.Duration
	// LogKeep is how many delivery attempts are kept per endpoint (default 1000).
	LogKeep int
	// Name identifies this dispatcher in logs and metrics.
	Name string
}

// Dispatcher delivers webhook events. Any number of dispatchers may run
// against the same database and stream.
type Dispatcher struct {
	cfg Config
	db  *store.DB
	bus *bus.Bus
	log zerolog.Logger
}

// New returns a dispatcher; Run starts it.
func New(cfg Config, db *store.DB, b *bus.Bus, log zerolog.Logger) (*Dispatcher, error) {
	return &Dispatcher{cfg: cfg, db: db, bus: b, log: log}, nil
}

// Run delivers until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	return errors.New("webhook: not implemented") // TODO(#13): helper A
}
