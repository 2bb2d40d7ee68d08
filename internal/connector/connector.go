// Package connector runs zapbus's WhatsApp sessions: one whatsmeow client
// per mentorado, owned by exactly one connector process at a time through a
// lease in the WA_LEASES KV bucket. Every session is a small state machine
// with its own reconnect policy (docs/decisions/0002-reconnect-policy.md);
// everything it receives is published to JetStream before whatsmeow acks
// it; commands arrive as NATS requests on wa.<mentorado>.cmd.<verb>.
//
// The client is behind the Client interface that *whatsmeow.Client
// satisfies; WhatsmeowFactory is the production factory and
// internal/connector/sim a simulated one for fast tests.
package connector

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/waconv"
)

// Config is the connector's configuration. Zero values take defaults.
type Config struct {
	// InstanceID names this connector in leases; unique per process.
	// Default: hostname plus random suffix.
	InstanceID string
	// RestoreConcurrency bounds the restore logins in flight at once
	// (default 8): a slot is held until the session is connected or failed.
	RestoreConcurrency int
	// RestoreJitter spreads each restore over [0, RestoreJitter) (default 2 s).
	RestoreJitter time.Duration
	// ScanInterval is how often unowned sessions that should be connected
	// are looked for (default: the lease TTL).
	ScanInterval time.Duration
	// IdleRelease gives back the lease of a session that is neither
	// connected nor wants to be after this long (default: the lease TTL).
	IdleRelease time.Duration
	// ShutdownTimeout bounds graceful shutdown (default 10 s).
	ShutdownTimeout time.Duration
	// PublishTimeout bounds one JetStream publish (default 5 s).
	PublishTimeout time.Duration
	// CommandTimeout bounds a command, including relaying it to the owner (default 20 s).
	CommandTimeout time.Duration
	// ConnectTimeout is how long a paired session may stay connecting (default 60 s).
	ConnectTimeout time.Duration
	// PairingCodeTTL is the expires_at of phone pairing codes (default 3 min).
	PairingCodeTTL time.Duration
	// PrePairTimeout bounds the check, while WhatsApp waits for the pairing
	// to complete, that the number is not paired to another mentorado
	// (default 10 s).
	PrePairTimeout time.Duration
	// Policy is the reconnect policy.
	Policy Policy
	// Media configures media downloads and sends.
	Media MediaConfig
	// History configures the import of the phone's history sync.
	History HistoryConfig
	// Sending configures the outbox workers and the TTL sweeper.
	Sending SendingConfig
}

// WithDefaults fills zero values; leaseTTL comes from the bus configuration.
func (c Config) WithDefaults(leaseTTL time.Duration) Config {
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = host + "-" + randomHex(4)
	}
	c.InstanceID = subjectToken.ReplaceAllString(c.InstanceID, "_")
	if c.RestoreConcurrency == 0 {
		c.RestoreConcurrency = 8
	}
	if c.RestoreJitter == 0 {
		c.RestoreJitter = 2 * time.Second
	}
	if c.ScanInterval == 0 {
		c.ScanInterval = leaseTTL
	}
	if c.IdleRelease == 0 {
		c.IdleRelease = leaseTTL
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 20 * time.Second
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = time.Minute
	}
	if c.PairingCodeTTL == 0 {
		c.PairingCodeTTL = 3 * time.Minute
	}
	if c.PrePairTimeout == 0 {
		c.PrePairTimeout = 10 * time.Second
	}
	c.Policy = c.Policy.WithDefaults()
	c.Media = c.Media.WithDefaults()
	c.History = c.History.WithDefaults()
	c.Sending = c.Sending.WithDefaults()
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	switch {
	case c.RestoreConcurrency < 0:
		return errors.New("connector: restore concurrency must be positive")
	case c.RestoreJitter < 0:
		return errors.New("connector: restore jitter must not be negative")
	case c.ShutdownTimeout < 0 || c.PublishTimeout < 0 || c.CommandTimeout < 0 || c.PrePairTimeout < 0:
		return errors.New("connector: timeouts must not be negative")
	}
	if err := c.Media.Validate(); err != nil {
		return err
	}
	if err := c.History.Validate(); err != nil {
		return err
	}
	return c.Policy.Validate()
}

var subjectToken = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// ConvertFunc turns a whatsmeow event of mentorado's session into envelopes.
type ConvertFunc func(ctx context.Context, mentorado int64, cli Client, evt any) ([]event.Envelope, error)

// WaconvConvert is the production conversion (internal/waconv), using the
// client's LID store when it is a real whatsmeow client.
func WaconvConvert(ctx context.Context, mentorado int64, cli Client, evt any) ([]event.Envelope, error) {
	conv := &waconv.Converter{Mentorado: mentorado, LIDs: lidStore(cli)}
	return conv.Convert(ctx, evt)
}

// Option adjusts a Connector beyond its Config (tests, dev stack).
type Option func(*Connector)

// WithClock replaces the session clock (reconnect delays, ban waits).
func WithClock(c Clock) Option { return func(x *Connector) { x.clock = c } }

// WithSendingClock replaces the clock of the outbox workers' pacer and of
// the TTL sweeper (default: the session clock), so a test drives pacing
// with a fake clock while sessions reconnect on another.
func WithSendingClock(c Clock) Option { return func(x *Connector) { x.sendClock = c } }

// WithRand replaces the jitter source (a float in [0,1)).
func WithRand(r func() float64) Option { return func(x *Connector) { x.rand = r } }

// WithConvert replaces the event conversion.
func WithConvert(f ConvertFunc) Option { return func(x *Connector) { x.convert = f } }

// WithMedia gives the connector its media store: received files are
// downloaded into it and sent files read from it. Without one, media
// messages are published with their metadata and their files are neither
// downloaded nor sendable.
func WithMedia(s media.Store) Option { return func(x *Connector) { x.media = s } }

// Connector owns WhatsApp sessions.
type Connector struct {
	cfg      Config
	leaseTTL time.Duration
	db       *store.DB
	bus      *bus.Bus
	factory  Factory
	devices  devices
	log      zerolog.Logger
	clock    Clock
	// sendClock paces the outbox workers (nil: clock).
	sendClock Clock
	rand      func() float64
	convert   ConvertFunc
	metrics   *metrics
	media     media.Store

	kv     jetstream.KeyValue
	sends  jetstream.KeyValue
	runCtx context.Context

	mu       sync.Mutex
	owned    map[int64]*lease
	stopping bool
	claimMu  sync.Mutex

	ready   atomic.Bool
	runOnce sync.Once
}

// New builds a connector; Run starts it.
func New(cfg Config, db *store.DB, b *bus.Bus, f Factory, log zerolog.Logger, opts ...Option) (*Connector, error) {
	if db == nil || b == nil || f == nil {
		return nil, errors.New("connector: db, bus and factory are required")
	}
	ttl := b.Config().LeaseTTL
	cfg = cfg.WithDefaults(ttl)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Connector{
		cfg:      cfg,
		leaseTTL: ttl,
		db:       db,
		bus:      b,
		factory:  f,
		devices:  devices{queries: db.Devices()},
		log:      log.With().Str("component", "connector").Str("instance", cfg.InstanceID).Logger(),
		clock:    RealClock{},
		convert:  WaconvConvert,
		metrics:  newMetrics(),
		owned:    map[int64]*lease{},
		runCtx:   context.Background(),
	}
	c.rand = newLockedRand(uint64(time.Now().UnixNano())).Float64
	for _, o := range opts {
		o(c)
	}
	if c.sendClock == nil {
		c.sendClock = c.clock
	}
	return c, nil
}

// InstanceID is the id this connector writes into its leases.
func (c *Connector) InstanceID() string { return c.cfg.InstanceID }

// Config returns the effective configuration.
func (c *Connector) Config() Config { return c.cfg }

// Ready reports whether Run is serving commands.
func (c *Connector) Ready() bool { return c.ready.Load() }

// Owned lists the mentorados whose sessions this connector holds.
func (c *Connector) Owned() []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]int64, 0, len(c.owned))
	for m := range c.owned {
		out = append(out, m)
	}
	return out
}

// Status returns the state of a session this connector owns.
func (c *Connector) Status(m int64) (event.StatusReply, bool) {
	c.mu.Lock()
	l := c.owned[m]
	c.mu.Unlock()
	if l == nil {
		return event.StatusReply{}, false
	}
	return l.sess.snapshot().reply, true
}

// Run serves until ctx is done, then shuts down gracefully: it stops
// claiming sessions, disconnects its sessions in parallel, releases their
// leases and stops its subscriptions. Run may be called once.
func (c *Connector) Run(ctx context.Context) error {
	err := errors.New("connector: Run called twice")
	c.runOnce.Do(func() { err = c.run(ctx) })
	return err
}

func (c *Connector) run(ctx context.Context) error {
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	c.runCtx = runCtx
	var err error
	if c.kv, err = c.bus.KeyValue(ctx, bus.BucketLeases); err != nil {
		return fmt.Errorf("connector: lease bucket (run bus provisioning first): %w", err)
	}
	if c.sends, err = c.bus.KeyValue(ctx, bus.BucketSends); err != nil {
		return fmt.Errorf("connector: sends bucket: %w", err)
	}
	subs, err := c.subscribe()
	if err != nil {
		return err
	}
	bg, cancelBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(4)
	go func() { defer wg.Done(); c.sweepLoop(bg) }()
	go func() { defer wg.Done(); c.renewLoop(bg) }()
	go func() { defer wg.Done(); c.watchLoop(bg) }()
	go func() { defer wg.Done(); c.scanLoop(bg) }()
	c.ready.Store(true)
	c.log.Info().Dur("lease_ttl", c.leaseTTL).Msg("connector running")

	<-ctx.Done()

	c.log.Info().Msg("connector shutting down")
	c.ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), c.cfg.ShutdownTimeout)
	defer cancel()
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	cancelBG()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
	wg.Wait()
	c.releaseAll(sctx, "connector shutdown")
	cancelRun()
	c.log.Info().Msg("connector stopped")
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// natsConn is the connection commands are served on.
func (c *Connector) natsConn() bus.Core { return c.bus.Core() }
