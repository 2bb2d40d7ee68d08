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
	"net"
	"net/http"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/waconv"
)

// Config is the connector's configuration. Zero values take defaults.
type Config struct {
	// InstanceID names this connector in leases; unique per process.
	// Default: hostname plus random suffix.
	InstanceID string
	// HTTPAddr serves /healthz, /readyz and /metrics (default
	// 127.0.0.1:9101; "off" disables).
	HTTPAddr string
	// RestoreConcurrency bounds sessions restored at once (default 8).
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
	// Policy is the reconnect policy.
	Policy Policy
}

// DefaultHTTPAddr is where the connector serves health and metrics.
const DefaultHTTPAddr = "127.0.0.1:9101"

// WithDefaults fills zero values; leaseTTL comes from the bus configuration.
func (c Config) WithDefaults(leaseTTL time.Duration) Config {
	if c.InstanceID == "" {
		host, _ := os.Hostname()
		c.InstanceID = host + "-" + randomHex(4)
	}
	c.InstanceID = subjectToken.ReplaceAllString(c.InstanceID, "_")
	if c.HTTPAddr == "" {
		c.HTTPAddr = DefaultHTTPAddr
	}
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
	c.Policy = c.Policy.WithDefaults()
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	switch {
	case c.RestoreConcurrency < 0:
		return errors.New("connector: restore concurrency must be positive")
	case c.RestoreJitter < 0:
		return errors.New("connector: restore jitter must not be negative")
	case c.ShutdownTimeout < 0 || c.PublishTimeout < 0 || c.CommandTimeout < 0:
		return errors.New("connector: timeouts must not be negative")
	}
	return c.Policy.Validate()
}

var subjectToken = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// ConvertFunc turns a whatsmeow event of mentorado's session into envelopes.
type ConvertFunc func(ctx context.Context, mentorado int64, cli Client, evt any) ([]event.Envelope, error)

// WaconvConvert is the production conversion (internal/waconv), using the
// client's LID store when it is a real whatsmeow client.
func WaconvConvert(ctx context.Context, mentorado int64, cli Client, evt any) ([]event.Envelope, error) {
	conv := &waconv.Converter{Mentorado: mentorado}
	if wc, ok := cli.(*whatsmeow.Client); ok && wc.Store != nil && wc.Store.LIDs != nil {
		conv.LIDs = wc.Store.LIDs
	}
	return conv.Convert(ctx, evt)
}

// Option adjusts a Connector beyond its Config (tests, dev stack).
type Option func(*Connector)

// WithClock replaces the session clock (reconnect delays, ban waits).
func WithClock(c Clock) Option { return func(x *Connector) { x.clock = c } }

// WithRand replaces the jitter source (a float in [0,1)).
func WithRand(r func() float64) Option { return func(x *Connector) { x.rand = r } }

// WithHTTPListener makes Run serve /healthz, /readyz and /metrics on ln
// instead of listening on Config.HTTPAddr (cmd/connector listens before
// its dependencies are up, see internal/startup).
func WithHTTPListener(ln net.Listener) Option { return func(x *Connector) { x.httpLn = ln } }

// WithConvert replaces the event conversion.
func WithConvert(f ConvertFunc) Option { return func(x *Connector) { x.convert = f } }

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
	rand     func() float64
	convert  ConvertFunc
	metrics  *metrics

	kv     jetstream.KeyValue
	sends  jetstream.KeyValue
	runCtx context.Context

	mu       sync.Mutex
	owned    map[int64]*lease
	stopping bool
	claimMu  sync.Mutex

	ready    atomic.Bool
	httpLn   net.Listener // given by WithHTTPListener
	httpAddr atomic.Value // string, once listening
	runOnce  sync.Once
}

// lease is a session this connector owns.
type lease struct {
	sess       *session
	rev        uint64
	renewedAt  time.Time
	idleSince  time.Time
	inCommands int
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
		devices:  devices{pool: db.Pool},
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
	return c, nil
}

// InstanceID is the id this connector writes into its leases.
func (c *Connector) InstanceID() string { return c.cfg.InstanceID }

// Config returns the effective configuration.
func (c *Connector) Config() Config { return c.cfg }

// HTTPAddr is the address /metrics listens on, once Run started it.
func (c *Connector) HTTPAddr() string {
	s, _ := c.httpAddr.Load().(string)
	return s
}

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
	var srv *http.Server
	if c.httpLn != nil || c.cfg.HTTPAddr != "off" {
		ln := c.httpLn
		if ln == nil {
			if ln, err = net.Listen("tcp", c.cfg.HTTPAddr); err != nil {
				return fmt.Errorf("connector: listen on ZAPBUS_HTTP_ADDR %s: %w", c.cfg.HTTPAddr, err)
			}
		}
		c.httpAddr.Store(ln.Addr().String())
		srv = &http.Server{Handler: c.httpHandler(), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.log.Error().Err(err).Msg("http server")
			}
		}()
	}
	subs, err := c.subscribe()
	if err != nil {
		if srv != nil {
			_ = srv.Close()
		}
		return err
	}
	bg, cancelBG := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); c.renewLoop(bg) }()
	go func() { defer wg.Done(); c.watchLoop(bg) }()
	go func() { defer wg.Done(); c.scanLoop(bg) }()
	c.ready.Store(true)
	c.log.Info().Str("http", c.HTTPAddr()).Dur("lease_ttl", c.leaseTTL).Msg("connector running")

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
	if srv != nil {
		_ = srv.Shutdown(sctx)
	}
	cancelRun()
	c.log.Info().Msg("connector stopped")
	return nil
}

// releaseAll stops every owned session in parallel, then deletes the
// leases so peers take over at once.
func (c *Connector) releaseAll(ctx context.Context, reason string) {
	c.mu.Lock()
	all := make(map[int64]*lease, len(c.owned))
	for m, l := range c.owned {
		all[m] = l
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for m, l := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.release(ctx, m, l, reason)
		}()
	}
	wg.Wait()
}

// release stops a session and deletes its lease (revision-checked: a lease
// that moved on is not touched).
func (c *Connector) release(ctx context.Context, m int64, l *lease, reason string) {
	l.sess.stop(ctx, reason)
	c.mu.Lock()
	rev := l.rev
	if c.owned[m] == l {
		delete(c.owned, m)
	}
	c.mu.Unlock()
	if err := c.kv.Delete(ctx, leaseKey(m), jetstream.LastRevision(rev)); err != nil {
		c.log.Warn().Err(err).Int64("mentorado", m).Msg("release lease")
	}
	c.metrics.leases.Set(float64(c.ownedCount()))
}

// drop stops a session whose lease is gone (or about to be), without
// touching the lease.
func (c *Connector) drop(m int64, l *lease, reason string) {
	c.mu.Lock()
	if c.owned[m] == l {
		delete(c.owned, m)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.leaseTTL/4)
	defer cancel()
	l.sess.stop(ctx, reason)
	c.metrics.leases.Set(float64(c.ownedCount()))
}

func (c *Connector) ownedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.owned)
}

func leaseKey(m int64) string { return fmt.Sprintf("%d", m) }

// ownedElsewhere is returned by claim when another connector holds the lease.
type ownedElsewhere struct{ owner string }

func (e *ownedElsewhere) Error() string { return "session owned by connector " + e.owner }

var errStopping = errors.New("connector: shutting down")

// claim takes the lease of m and starts its session (not connected yet).
// It returns the existing lease when this connector already owns m.
func (c *Connector) claim(ctx context.Context, m int64) (*lease, error) {
	c.claimMu.Lock()
	defer c.claimMu.Unlock()
	c.mu.Lock()
	if l := c.owned[m]; l != nil {
		c.mu.Unlock()
		return l, nil
	}
	if c.stopping {
		c.mu.Unlock()
		return nil, errStopping
	}
	c.mu.Unlock()
	rev, err := c.kv.Create(ctx, leaseKey(m), []byte(c.cfg.InstanceID))
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := c.kv.Get(ctx, leaseKey(m))
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			// Expired between the two calls; try once more.
			rev, err = c.kv.Create(ctx, leaseKey(m), []byte(c.cfg.InstanceID))
		case gerr != nil:
			return nil, fmt.Errorf("read lease %d: %w", m, gerr)
		case string(e.Value()) == c.cfg.InstanceID:
			// Our own lease from before a restart with the same id: adopt it.
			rev, err = c.kv.Update(ctx, leaseKey(m), []byte(c.cfg.InstanceID), e.Revision())
		default:
			return nil, &ownedElsewhere{owner: string(e.Value())}
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, &ownedElsewhere{owner: "?"}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("take lease %d: %w", m, err)
	}
	row, _, err := c.devices.get(ctx, m)
	if err != nil {
		_ = c.kv.Delete(context.WithoutCancel(ctx), leaseKey(m), jetstream.LastRevision(rev))
		return nil, err
	}
	l := &lease{sess: newSession(c, m, row), rev: rev, renewedAt: time.Now(), idleSince: time.Now()}
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		l.sess.stop(ctx, "connector shutdown")
		_ = c.kv.Delete(context.WithoutCancel(ctx), leaseKey(m), jetstream.LastRevision(rev))
		return nil, errStopping
	}
	c.owned[m] = l
	c.mu.Unlock()
	l.sess.start()
	c.metrics.leases.Set(float64(c.ownedCount()))
	c.log.Debug().Int64("mentorado", m).Msg("lease taken")
	return l, nil
}

// claimAndRestore takes m when nobody owns it and connects it when its
// desired state is connected.
func (c *Connector) claimAndRestore(ctx context.Context, m int64) (bool, error) {
	l, err := c.claim(ctx, m)
	if err != nil {
		var oe *ownedElsewhere
		if errors.As(err, &oe) || errors.Is(err, errStopping) {
			return false, nil
		}
		return false, err
	}
	l.sess.post(l.sess.restore)
	return true, nil
}

// renewLoop refreshes every lease each TTL/3 and fences sessions whose
// lease could not be renewed for 2/3 of the TTL: they are disconnected
// before the lease can expire and be taken by a peer.
// renewConcurrency bounds lease renewals in flight at once.
const renewConcurrency = 16

// renew extends one lease with a revision-checked update, and drops the
// session when the lease turned out to be someone else's.
func (c *Connector) renew(ctx context.Context, m int64, l *lease) {
	c.mu.Lock()
	rev := l.rev
	c.mu.Unlock()
	start := time.Now()
	nrev, err := c.kv.Update(ctx, leaseKey(m), []byte(c.cfg.InstanceID), rev)
	if err == nil {
		c.mu.Lock()
		l.rev, l.renewedAt = nrev, start
		c.mu.Unlock()
		return
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		// An earlier renewal may have been applied after its context timed
		// out (buffered while NATS reconnected). Only this connector writes
		// its own id, so a newer revision holding it is still ours.
		if e, gerr := c.kv.Get(ctx, leaseKey(m)); gerr == nil && string(e.Value()) == c.cfg.InstanceID && e.Revision() > rev {
			c.mu.Lock()
			l.rev = e.Revision()
			c.mu.Unlock()
			return
		}
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
		c.log.Warn().Int64("mentorado", m).Err(err).Msg("lease lost")
		go c.drop(m, l, "lease lost")
		return
	}
	c.log.Warn().Int64("mentorado", m).Err(err).Msg("renew lease")
}

func (c *Connector) renewLoop(ctx context.Context) {
	tick := time.NewTicker(max(c.leaseTTL/12, 10*time.Millisecond))
	defer tick.Stop()
	renewEvery := c.leaseTTL / 3
	fenceAfter := c.leaseTTL * 2 / 3
	var lastRenew time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		c.mu.Lock()
		snapshot := make(map[int64]*lease, len(c.owned))
		for m, l := range c.owned {
			snapshot[m] = l
		}
		c.mu.Unlock()
		// Fencing first: it is in memory and must never wait on NATS.
		for m, l := range snapshot {
			c.mu.Lock()
			age := now.Sub(l.renewedAt)
			c.mu.Unlock()
			if age > fenceAfter {
				c.log.Warn().Int64("mentorado", m).Dur("since_renew", age).Msg("lease not renewed in time; fencing session")
				c.metrics.fenced.Inc()
				delete(snapshot, m)
				go c.drop(m, l, "lease lost: could not renew")
			}
		}
		if now.Sub(lastRenew) < renewEvery {
			continue
		}
		lastRenew = now
		// Renewals are independent KV round trips: run a bounded number at
		// once so a connector with thousands of sessions renews them all
		// well within the TTL.
		rctx, cancel := context.WithTimeout(ctx, renewEvery/2)
		var wg sync.WaitGroup
		sem := make(chan struct{}, renewConcurrency)
		for m, l := range snapshot {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				c.renew(rctx, m, l)
			}()
		}
		wg.Wait()
		cancel()
		c.releaseIdle(ctx, snapshot)
	}
}

// releaseIdle gives back leases of sessions that have been idle for IdleRelease.
func (c *Connector) releaseIdle(ctx context.Context, snapshot map[int64]*lease) {
	now := time.Now()
	for m, l := range snapshot {
		c.mu.Lock()
		if !l.sess.idle() || l.inCommands > 0 {
			l.idleSince = now
			c.mu.Unlock()
			continue
		}
		idleFor := now.Sub(l.idleSince)
		c.mu.Unlock()
		if idleFor >= c.cfg.IdleRelease {
			c.log.Debug().Int64("mentorado", m).Msg("releasing idle session")
			rctx, cancel := context.WithTimeout(ctx, c.cfg.ShutdownTimeout)
			c.release(rctx, m, l, "idle")
			cancel()
		}
	}
}

// watchLoop takes over sessions whose lease was deleted or expired.
func (c *Connector) watchLoop(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := c.kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			c.log.Warn().Err(err).Msg("watch leases")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			if e.Operation() != jetstream.KeyValueDelete && e.Operation() != jetstream.KeyValuePurge {
				continue
			}
			var m int64
			if _, err := fmt.Sscanf(e.Key(), "%d", &m); err != nil || m <= 0 {
				continue
			}
			go c.takeOver(ctx, m)
		}
		_ = w.Stop()
	}
}

// takeOver claims m when it should be connected.
func (c *Connector) takeOver(ctx context.Context, m int64) {
	row, found, err := c.devices.get(ctx, m)
	if err != nil || !found || row.Desired != desiredConnected || row.JID.IsEmpty() {
		return
	}
	if ok, err := c.claimAndRestore(ctx, m); err != nil {
		c.log.Warn().Err(err).Int64("mentorado", m).Msg("take over session")
	} else if ok {
		c.metrics.takeovers.Inc()
		c.log.Info().Int64("mentorado", m).Msg("took over session")
	}
}

// scanLoop restores at start-up and then periodically claims sessions that
// should be connected but have no lease (a dead connector's, after expiry).
func (c *Connector) scanLoop(ctx context.Context) {
	c.scan(ctx, true)
	t := time.NewTicker(c.cfg.ScanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.scan(ctx, false)
		}
	}
}

func (c *Connector) scan(ctx context.Context, startup bool) {
	ids, err := c.devices.wantConnected(ctx)
	if err != nil {
		c.log.Warn().Err(err).Msg("scan sessions")
		return
	}
	var todo []int64
	for _, m := range ids {
		c.mu.Lock()
		_, mine := c.owned[m]
		c.mu.Unlock()
		if mine {
			continue
		}
		if _, err := c.kv.Get(ctx, leaseKey(m)); errors.Is(err, jetstream.ErrKeyNotFound) {
			todo = append(todo, m)
		}
	}
	if len(todo) == 0 {
		if startup {
			c.metrics.restoreTotal.Set(0)
			c.log.Info().Msg("restore: nothing to restore")
		}
		return
	}
	if startup {
		c.metrics.restoreTotal.Set(float64(len(todo)))
		c.log.Info().Int("sessions", len(todo)).Int("concurrency", c.cfg.RestoreConcurrency).Msg("restore: starting")
	}
	sem := make(chan struct{}, c.cfg.RestoreConcurrency)
	var wg sync.WaitGroup
	var done, claimed atomic.Int64
	for _, m := range todo {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if j := c.cfg.RestoreJitter; j > 0 {
				select {
				case <-time.After(time.Duration(c.rand() * float64(j))):
				case <-ctx.Done():
					return
				}
			}
			ok, err := c.claimAndRestore(ctx, m)
			if err != nil {
				c.log.Warn().Err(err).Int64("mentorado", m).Msg("restore session")
			}
			if ok {
				claimed.Add(1)
			}
			n := done.Add(1)
			if startup {
				c.metrics.restoreDone.Inc()
				if n%50 == 0 || int(n) == len(todo) {
					c.log.Info().Int64("done", n).Int("total", len(todo)).Int64("claimed", claimed.Load()).Msg("restore: progress")
				}
			}
		}()
	}
	wg.Wait()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// natsConn is the connection commands are served on.
func (c *Connector) natsConn() bus.Core { return c.bus.Core() }
