// Package gateway is the provider gateway (issue #16,
// docs/decisions/0021-providers.md): the process that runs the stateless
// HTTP providers' drivers (Meta's WhatsApp Cloud API, Z-API; see
// internal/provider) for every mentorado whose active provider is one of
// them.
//
// It meets the rest of zapbus at the same two contracts as the connector:
//
//   - Commands: it serves zapbus.provider.<p>.wa.*.cmd.> for each driver in
//     the queue group "gateways" (the notifier sends there for mentorados on
//     meta or zapi; a connector relays there what it was given for one), and
//     answers with the same event.Reply the connector answers with.
//   - Events: it publishes what the providers' webhooks report (messages,
//     receipts, connection changes) to JetStream with the same ids, types and
//     payloads as the connector, Envelope.Provider saying which provider it
//     was. A webhook is answered 200 only after JetStream stored every event
//     it carried, so the provider retries whatever was not stored.
//
// The gateway holds no session state: any number of gateways may run, each
// command goes to one of them and each webhook delivery to whichever the
// proxy picks. It is the only zapbus service the providers must reach from
// the internet (TLS terminates at the proxy in front of it).
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/store"
)

// QueueGroup is the queue group every gateway serves commands in.
const QueueGroup = "gateways"

// Deps are what a gateway works with.
type Deps struct {
	DB      *store.DB
	Bus     *bus.Bus
	Configs *provider.Configs
	// Media is the media store (WA_MEDIA): received files are fetched into
	// it, files to send are read from it. Nil refuses media sends
	// (unavailable) and publishes received media messages without their
	// file.
	Media   media.Store
	Drivers []provider.Driver
	Log     zerolog.Logger
}

// Config tunes a gateway. Zero values take the defaults.
type Config struct {
	// MaxBody bounds a webhook delivery's body (default 1 MiB; larger: 413).
	MaxBody int64
	// PublishTimeout bounds publishing one webhook delivery's events
	// (default 10 s; then 503 and the provider retries).
	PublishTimeout time.Duration
	// CommandTimeout bounds one command (default 30 s).
	CommandTimeout time.Duration
	// MediaTimeout bounds fetching one received file (default 60 s).
	MediaTimeout time.Duration
	// MediaLimits are the largest files fetched and sent per kind (zero
	// fields: media.DefaultLimits), as the connector's.
	MediaLimits media.Limits
	// PairTimeout bounds a QR pairing started by a connect command
	// (default 3 min): QR codes are refreshed until the number is
	// connected or this passes.
	PairTimeout time.Duration
	// QRRefresh is how often a pairing checks the provider and refreshes
	// the QR when the provider does not say when its code expires
	// (default 15 s).
	QRRefresh time.Duration
	// RetryAfter is the retry_at hint of a backoff status published when
	// a provider is unreachable (default 30 s).
	RetryAfter time.Duration
	// ShutdownTimeout bounds Run's wait for in-flight commands after its
	// context ends (default 10 s).
	ShutdownTimeout time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time

	// CampaignPoll is how often the gateway looks for gateway-hosted
	// mentorados with campaigns to run, and how often their workers look
	// for campaign and settings changes (default outbound.DefaultPoll;
	// ZAPBUS_GATEWAY_CAMPAIGN_POLL). Negative: this gateway runs no
	// campaigns.
	CampaignPoll time.Duration
	// CampaignIdle is how long a campaign worker with no campaign to run
	// keeps its mentorado's lock before it stops (default 1 min;
	// ZAPBUS_GATEWAY_CAMPAIGN_IDLE).
	CampaignIdle time.Duration
	// SendLimits are the operator's sending maxima, as the connector's
	// (outbound.LimitsFromEnv, ZAPBUS_SEND_*); zero: outbound.DefaultLimits.
	SendLimits outbound.Limits
	// SendClock is the campaign pacer's clock (tests pass a fake one);
	// default the wall clock.
	SendClock outbound.Clock
}

// WithDefaults fills zero values.
func (c Config) WithDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxBody == 0 {
		c.MaxBody = 1 << 20
	}
	def(&c.PublishTimeout, 10*time.Second)
	def(&c.CommandTimeout, 30*time.Second)
	def(&c.MediaTimeout, time.Minute)
	def(&c.PairTimeout, 3*time.Minute)
	def(&c.QRRefresh, 15*time.Second)
	def(&c.RetryAfter, 30*time.Second)
	def(&c.ShutdownTimeout, 10*time.Second)
	def(&c.CampaignPoll, outbound.DefaultPoll)
	def(&c.CampaignIdle, time.Minute)
	if c.SendLimits == (outbound.Limits{}) {
		c.SendLimits = outbound.DefaultLimits()
	}
	if c.SendClock == nil {
		c.SendClock = realClock{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	switch {
	case c.MaxBody < 0:
		return errors.New("gateway: negative body limit")
	case c.PublishTimeout < 0 || c.CommandTimeout < 0 || c.MediaTimeout < 0 || c.PairTimeout < 0 ||
		c.QRRefresh < 0 || c.RetryAfter < 0 || c.ShutdownTimeout < 0 || c.CampaignIdle < 0:
		return errors.New("gateway: durations must not be negative")
	}
	return nil
}

// accounts is what the gateway needs of provider.Configs.
type accounts interface {
	Active(ctx context.Context, m int64) (event.Provider, error)
	Account(ctx context.Context, m int64, p event.Provider) (provider.Account, error)
}

var _ accounts = (*provider.Configs)(nil)

// Gateway serves the gateway-hosted providers' commands and webhooks.
type Gateway struct {
	cfg      Config
	db       *store.DB
	bus      *bus.Bus
	accounts accounts
	media    media.Store
	drivers  map[event.Provider]provider.Driver
	log      zerolog.Logger
	metrics  *metrics
	handler  http.Handler

	sends jetstream.KeyValue // WA_SENDS, opened when first needed

	// inflight counts commands and pairings running, for Run's drain.
	inflight sync.WaitGroup
	runCtx   context.Context

	mu      sync.Mutex
	states  map[stateKey]*connState // last connection state published per (mentorado, provider)
	pairing map[stateKey]context.CancelFunc
	running bool

	campaigns *campaignRunner
}

// New returns a gateway for deps.Drivers (at least one; one per provider).
func New(deps Deps, cfg Config) (*Gateway, error) {
	if deps.Configs == nil {
		return nil, errors.New("gateway: no provider configurations")
	}
	return newGateway(deps, cfg, deps.Configs)
}

func newGateway(deps Deps, cfg Config, accts accounts) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	switch {
	case deps.DB == nil:
		return nil, errors.New("gateway: no database")
	case deps.Bus == nil:
		return nil, errors.New("gateway: no bus")
	case len(deps.Drivers) == 0:
		return nil, errors.New("gateway: no drivers")
	}
	g := &Gateway{
		cfg:      cfg,
		db:       deps.DB,
		bus:      deps.Bus,
		accounts: accts,
		media:    deps.Media,
		drivers:  map[event.Provider]provider.Driver{},
		log:      deps.Log.With().Str("component", "gateway").Logger(),
		metrics:  newMetrics(),
		runCtx:   context.Background(),
		states:   map[stateKey]*connState{},
		pairing:  map[stateKey]context.CancelFunc{},
	}
	for _, d := range deps.Drivers {
		p := d.Provider()
		switch {
		case p == event.ProviderWeb || !p.Valid():
			return nil, fmt.Errorf("gateway: driver for %q: the gateway runs meta and zapi drivers only", p)
		case g.drivers[p] != nil:
			return nil, fmt.Errorf("gateway: two drivers for %s", p)
		}
		g.drivers[p] = d
	}
	g.campaigns = newCampaignRunner(g)
	g.handler = g.routes()
	return g, nil
}

// Handler serves the providers' webhooks, /healthz, /readyz and /metrics.
// Only /providers/ needs to be reachable from the internet.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Run serves commands until ctx ends, then stops taking new ones and
// waits (at most Config.ShutdownTimeout) for those in flight. Webhooks
// are served by Handler independently of Run.
func (g *Gateway) Run(ctx context.Context) error {
	g.mu.Lock()
	if g.running {
		g.mu.Unlock()
		return errors.New("gateway: already running")
	}
	g.running = true
	g.runCtx = ctx
	g.mu.Unlock()

	core := g.bus.Core()
	var subs []*nats.Subscription
	unsubscribe := func() {
		for _, s := range subs {
			_ = s.Drain()
		}
	}
	for p := range g.drivers {
		s, err := core.QueueSubscribe(event.ProviderCommandWildcard(p), QueueGroup, func(msg *nats.Msg) {
			g.inflight.Add(1)
			go func() {
				defer g.inflight.Done()
				g.onCommand(ctx, msg)
			}()
		})
		if err != nil {
			unsubscribe()
			return fmt.Errorf("gateway: subscribe %s commands: %w", p, err)
		}
		subs = append(subs, s)
	}
	if err := core.Flush(); err != nil {
		unsubscribe()
		return fmt.Errorf("gateway: subscribe: %w", err)
	}
	g.log.Info().Int("drivers", len(g.drivers)).Msg("serving provider commands")
	if g.cfg.CampaignPoll > 0 {
		// The campaigns of mentorados on this gateway's providers
		// (campaigns.go); stopped with the commands at shutdown.
		g.inflight.Add(1)
		go func() {
			defer g.inflight.Done()
			g.campaigns.run(ctx)
		}()
	}
	<-ctx.Done()
	unsubscribe()
	g.mu.Lock()
	for _, cancel := range g.pairing {
		cancel()
	}
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(g.cfg.ShutdownTimeout):
		g.log.Warn().Msg("commands still running at shutdown")
	}
	return nil
}

// CheckReady reports why the gateway cannot serve (nil when it can).
func (g *Gateway) CheckReady(ctx context.Context) error {
	switch {
	case !g.bus.Connected():
		return errors.New("nats disconnected")
	case g.db.Ready(ctx) != nil:
		return errors.New("postgres unreachable")
	}
	return nil
}

// publish stores env with its provider set, trying three times (the
// event id makes a retry that did reach the stream a duplicate JetStream
// drops).
func (g *Gateway) publish(ctx context.Context, p event.Provider, env event.Envelope) error {
	env.Provider = p
	var last error
	for range 3 {
		if _, last = g.bus.Publish(ctx, env); last == nil {
			g.metrics.published.WithLabelValues(string(p), string(env.Type)).Inc()
			return nil
		}
		g.metrics.publishFailures.WithLabelValues(string(p), string(env.Type)).Inc()
		if ctx.Err() != nil {
			break
		}
	}
	return last
}

// publishAll publishes envs, provider set, as one pipelined batch in
// order (bus.PublishAll), retrying the batch (ids make a retry store each
// event once) as publish retries one.
func (g *Gateway) publishAll(ctx context.Context, p event.Provider, envs []event.Envelope) error {
	for i := range envs {
		envs[i].Provider = p
	}
	var last error
	for range 3 {
		if last = g.bus.PublishAll(ctx, envs); last == nil {
			for _, env := range envs {
				g.metrics.published.WithLabelValues(string(p), string(env.Type)).Inc()
			}
			return nil
		}
		g.metrics.publishFailures.WithLabelValues(string(p), "batch").Inc()
		if ctx.Err() != nil {
			break
		}
	}
	return last
}

func (g *Gateway) now() time.Time { return g.cfg.Now().UTC() }
