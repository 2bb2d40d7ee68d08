// Package web is the notifier's HTTP edge: the REST/JSON API (admin and
// mentorado-scoped), live event streams over SSE and websocket, the embedded
// dashboard, health, readiness and Prometheus metrics.
//
// Every mentorado-scoped handler receives the mentorado id from the
// authentication middleware and passes it to every query and every NATS
// command subject; nothing in a request body or path can name another tenant.
package web

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/webhook"
)

// Config holds the notifier's HTTP settings. Zero values take the defaults.
type Config struct {
	// AdminToken authorises /v1/admin/*. Required.
	AdminToken string
	// TicketKey signs short-lived stream tickets. Every notifier behind one
	// load balancer must share it; by default it is derived from AdminToken.
	TicketKey []byte
	// TicketTTL is how long a stream ticket can be used to open a stream (default 60 s).
	TicketTTL time.Duration
	// CommandTimeout bounds connect/disconnect/logout/status commands (default 10 s).
	CommandTimeout time.Duration
	// SendTimeout bounds send commands (default 30 s).
	SendTimeout time.Duration
	// MaxBodyBytes caps request bodies (default 1 MiB); larger bodies get 413.
	MaxBodyBytes int64
	// StreamBuffer is how many events may wait for one stream client
	// (default 256); a client that falls further behind is dropped. The
	// queue grows only as events wait, so idle clients hold none of it.
	StreamBuffer int
	// StreamWriteTimeout bounds one write to a stream client (default 10 s);
	// a client that does not take the bytes in time is dropped.
	StreamWriteTimeout time.Duration
	// Heartbeat is the SSE comment / websocket ping interval (default 15 s).
	Heartbeat time.Duration
	// ShutdownTimeout bounds graceful shutdown in Run/Serve (default 10 s).
	ShutdownTimeout time.Duration

	// BodyReadTimeout bounds reading an authenticated request body
	// (default 10 s); a body that trickles in slower gets 408.
	BodyReadTimeout time.Duration
	// SendRate and SendBurst limit sends per token: a token bucket of
	// SendBurst refilled at SendRate per second (defaults 5/s, burst 20).
	// A negative rate disables the limit.
	SendRate  float64
	SendBurst int
	// StreamOpenRate and StreamOpenBurst limit opening SSE / websocket
	// streams per token (defaults 1/s, burst 10). Negative disables.
	StreamOpenRate  float64
	StreamOpenBurst int
	// MaxStreamsPerMentorado caps concurrent streams of one mentorado on
	// one notifier (default 20). Negative disables.
	MaxStreamsPerMentorado int
	// ReplayBatch and ReplayMaxBytes bound what one replaying stream pulls
	// from WA_EVENTS at a time (defaults 32 events, 512 KiB); the next
	// batch is pulled only when the client has taken the previous one.
	ReplayBatch    int
	ReplayMaxBytes int
	// StreamAuthRecheck is how often open streams are checked against the
	// current tokens in Postgres (default 1 min), the backstop for a missed
	// revocation message.
	StreamAuthRecheck time.Duration

	// MediaLimits caps files per kind: sends of a larger file get 413, and
	// POST /v1/media accepts at most the largest limit (zero: the defaults).
	MediaLimits media.Limits
	// UploadTimeout bounds reading one POST /v1/media body (default 5 min);
	// JSON bodies keep BodyReadTimeout.
	UploadTimeout time.Duration

	// WebhookPolicy decides which webhook URLs the API accepts
	// (ZAPBUS_WEBHOOK_ALLOW_NETS, ZAPBUS_WEBHOOK_ALLOW_HTTP): by default
	// https URLs of public addresses only. The dispatcher must run with
	// the same policy.
	WebhookPolicy webhook.Policy
	// MaxWebhooks caps the webhook endpoints of one mentorado, and the
	// admin-level ones (default 20).
	MaxWebhooks int

	// SendLimits are the operator's sending maxima (ZAPBUS_SEND_*,
	// outbound.LimitsFromEnv): no mentorado setting, campaign pacing or
	// send TTL may go beyond them (zero: outbound.DefaultLimits).
	SendLimits outbound.Limits

	// CredentialKeys seal and open providers' credentials (issue #16,
	// secretbox.Load: ZAPBUS_CREDENTIALS_KEYS or
	// ZAPBUS_CREDENTIALS_KEYS_FILE). Nil: only whatsapp_web can be
	// configured; configuring meta or zapi answers 503.
	CredentialKeys *secretbox.Keyring

	// sendLimitsErr is a limit Flags could not parse.
	sendLimitsErr error
	// webhookPolicyErr is a policy setting Flags could not parse.
	webhookPolicyErr error
}

// WithDefaults fills zero values.
func (c Config) WithDefaults() Config {
	if c.TicketTTL == 0 {
		c.TicketTTL = time.Minute
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = 10 * time.Second
	}
	if c.SendTimeout == 0 {
		c.SendTimeout = 30 * time.Second
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.StreamBuffer == 0 {
		c.StreamBuffer = 256
	}
	if c.StreamWriteTimeout == 0 {
		c.StreamWriteTimeout = 10 * time.Second
	}
	if c.Heartbeat == 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = 10 * time.Second
	}
	if c.BodyReadTimeout == 0 {
		c.BodyReadTimeout = 10 * time.Second
	}
	if c.SendRate == 0 {
		c.SendRate = 5
	}
	if c.SendBurst == 0 {
		c.SendBurst = 20
	}
	if c.StreamOpenRate == 0 {
		c.StreamOpenRate = 1
	}
	if c.StreamOpenBurst == 0 {
		c.StreamOpenBurst = 10
	}
	if c.MaxStreamsPerMentorado == 0 {
		c.MaxStreamsPerMentorado = 20
	}
	if c.ReplayBatch == 0 {
		c.ReplayBatch = 32
	}
	if c.ReplayMaxBytes == 0 {
		c.ReplayMaxBytes = 512 << 10
	}
	if c.StreamAuthRecheck == 0 {
		c.StreamAuthRecheck = time.Minute
	}
	if c.MediaLimits == (media.Limits{}) {
		c.MediaLimits = media.DefaultLimits()
	}
	if c.UploadTimeout == 0 {
		c.UploadTimeout = 5 * time.Minute
	}
	if c.MaxWebhooks == 0 {
		c.MaxWebhooks = 20
	}
	if c.SendLimits == (outbound.Limits{}) {
		c.SendLimits = outbound.DefaultLimits()
	}
	if len(c.TicketKey) == 0 && c.AdminToken != "" {
		k := sha256.Sum256([]byte("zapbus stream tickets\x00" + c.AdminToken))
		c.TicketKey = k[:]
	}
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case len(c.AdminToken) < 16:
		return errors.New("web: admin token must be at least 16 characters")
	case len(c.TicketKey) < 16:
		return errors.New("web: ticket key must be at least 16 bytes")
	case c.TicketTTL < time.Second:
		return errors.New("web: ticket TTL below one second")
	case c.CommandTimeout <= 0 || c.SendTimeout <= 0:
		return errors.New("web: command timeouts must be positive")
	case c.MaxBodyBytes < 1024:
		return errors.New("web: max body below 1 KiB")
	case c.StreamBuffer < 1:
		return errors.New("web: stream buffer must be at least 1")
	case c.StreamWriteTimeout <= 0 || c.Heartbeat <= 0:
		return errors.New("web: stream write timeout and heartbeat must be positive")
	case c.BodyReadTimeout <= 0:
		return errors.New("web: body read timeout must be positive")
	case c.SendRate > 0 && c.SendBurst < 1, c.StreamOpenRate > 0 && c.StreamOpenBurst < 1:
		return errors.New("web: a rate limit needs a burst of at least 1")
	case c.ReplayBatch < 1 || c.ReplayMaxBytes < 1024:
		return errors.New("web: replay batch must be at least 1 and replay max bytes at least 1 KiB")
	case c.StreamAuthRecheck < time.Second:
		return errors.New("web: stream auth recheck below one second")
	case c.UploadTimeout <= 0:
		return errors.New("web: upload timeout must be positive")
	case c.webhookPolicyErr != nil:
		return c.webhookPolicyErr
	case c.sendLimitsErr != nil:
		return c.sendLimitsErr
	case c.MaxWebhooks < 1:
		return errors.New("web: max webhooks must be at least 1")
	}
	return nil
}

// Server is the notifier HTTP server. Create it with New.
type Server struct {
	cfg     Config
	db      *store.DB
	bus     *bus.Bus
	media   media.Store // nil: the media routes answer 503
	log     zerolog.Logger
	mux     *http.ServeMux
	metrics *metrics
	routes  []route

	// streamsDone is closed when the server shuts down, ending every
	// long-lived stream so graceful shutdown does not wait for clients.
	streamsDone chan struct{}
	closeOnce   sync.Once

	// patterns are the registered mux patterns (routes and Mount).
	patterns map[string]bool
	// streams are the open streams, for revocation and the per-mentorado cap.
	streams     streamRegistry
	hub         *liveHub // live subscriptions shared by a mentorado's streams
	revokeSub   *nats.Subscription
	sends       *limiterSet
	streamOpens *limiterSet
	// providers are the mentorados' provider configurations (issue #16)
	// and provCache the active provider per mentorado for command routing.
	providers *provider.Configs
	provCache providerCache
	// readyChecks are what else /readyz waits for (RequireReady).
	readyChecks []func(context.Context) error
}

// RequireReady makes /readyz also wait for check (nil when ready; its error
// text is the 503's message). The dev binary runs the connector in the same
// process and adds its check, so a client that waits for /readyz can send
// a command at once instead of meeting "no connector". Call it before Serve.
func (s *Server) RequireReady(check func(context.Context) error) {
	s.readyChecks = append(s.readyChecks, check)
}

// Option adds an optional part to a Server.
type Option func(*Server)

// WithMedia gives the server the media store: uploads, media sends and
// GET /v1/messages/{id}/media use it, and deleting a mentorado deletes its
// files. Without it those routes answer 503.
func WithMedia(st media.Store) Option { return func(s *Server) { s.media = st } }

// New builds a server on an open database and a provisioned bus.
func New(cfg Config, db *store.DB, b *bus.Bus, log zerolog.Logger, opts ...Option) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil || b == nil {
		return nil, errors.New("web: database and bus are required")
	}
	s := &Server{
		cfg:         cfg.WithDefaults(),
		db:          db,
		bus:         b,
		log:         log.With().Str("component", "web").Logger(),
		mux:         http.NewServeMux(),
		metrics:     newMetrics(),
		streamsDone: make(chan struct{}),
	}
	s.providers = provider.NewConfigs(db, s.cfg.CredentialKeys)
	for _, o := range opts {
		o(s)
	}
	if s.media != nil {
		// Per-tenant storage accounting (zapbus_media_stored_bytes and
		// _files), read from the media_objects ledger on each scrape.
		s.metrics.reg.MustRegister(media.NewUsageCollector(db.MediaObjects().Usage))
	}
	s.sends = newLimiterSet("send", s.cfg.SendRate, s.cfg.SendBurst)
	s.streamOpens = newLimiterSet("stream open", s.cfg.StreamOpenRate, s.cfg.StreamOpenBurst)
	s.hub = newLiveHub(s)
	s.patterns = make(map[string]bool)
	s.routes = s.routeTable()
	for _, rt := range s.routes {
		s.mux.Handle(rt.pattern(), rt.handler)
		s.patterns[rt.pattern()] = true
	}
	sub, err := b.Subscribe(RevokeSubject, s.onRevoke)
	if err != nil {
		return nil, fmt.Errorf("web: subscribe %s: %w", RevokeSubject, err)
	}
	s.revokeSub = sub
	go s.recheckLoop()
	return s, nil
}

// Mount adds an extra route (a ServeMux pattern such as
// "POST /v1/dev/sim/{phone}/text") served with the same logging, metrics and
// JSON 404/405 handling. Mounted routes are not authenticated unless h is
// wrapped with RequireMentorado or RequireAdmin, and they are not listed in
// the OpenAPI document. Call Mount before serving.
func (s *Server) Mount(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
	s.patterns[pattern] = true
}

// RequireMentorado wraps h so it runs only for a valid mentorado bearer
// token; h finds the mentorado with MentoradoFrom(r.Context()).
func (s *Server) RequireMentorado(h http.Handler) http.Handler { return s.mentoradoAuth(h.ServeHTTP) }

// RequireAdmin wraps h so it runs only with the admin bearer token.
func (s *Server) RequireAdmin(h http.Handler) http.Handler { return s.adminAuth(h.ServeHTTP) }

// Handler returns the root handler: middleware around the route mux.
func (s *Server) Handler() http.Handler { return s.middleware(s.mux) }

// Close ends every open stream and stops listening for revocations. It is
// idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.streamsDone)
		_ = s.revokeSub.Unsubscribe()
	})
}

// Run listens on addr and serves until ctx is cancelled, then shuts down.
func (s *Server) Run(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("web: listen %s: %w", addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is cancelled, then closes streams and shuts
// down gracefully within ShutdownTimeout.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          newStdLogger(s.log),
		// No WriteTimeout: streams are long-lived; stream writes set
		// their own deadline.
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info().Str("addr", ln.Addr().String()).Msg("notifier listening")
	select {
	case err := <-errc:
		s.Close()
		return fmt.Errorf("web: serve: %w", err)
	case <-ctx.Done():
	}
	s.Close()
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		_ = hs.Close()
		return fmt.Errorf("web: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("web: serve: %w", err)
	}
	return nil
}
