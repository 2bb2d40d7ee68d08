// Command connector runs zapbus's WhatsApp sessions (see internal/connector).
//
// Settings come from the environment, overridable by flags:
//
//	DATABASE_URL (or DATABASE_URL_FILE)  Postgres, required
//	NATS_URL (or NATS_URL_FILE)          NATS, default nats://127.0.0.1:4222
//	ZAPBUS_NATS_PROVISION                auto (default): create missing streams only on a NATS server
//	                                     reached without credentials; true: always (tests, dev);
//	                                     false: only verify them (production: zapbus-admin provision)
//	ZAPBUS_HTTP_ADDR                     health and metrics, default 127.0.0.1:9101
//	ZAPBUS_INSTANCE_ID                   lease owner name, default hostname-random
//	ZAPBUS_LEASE_TTL                     session lease TTL, default 15s
//	ZAPBUS_RESTORE_CONCURRENCY           sessions restored at once, default 8
//	ZAPBUS_RESTORE_JITTER                spread of each restore, default 2s
//	ZAPBUS_SHUTDOWN_TIMEOUT              graceful shutdown bound, default 10s
//	ZAPBUS_LOG_LEVEL                     debug, info (default), warn, error
//	ZAPBUS_MEDIA_CONCURRENCY             media downloads per connected session at once, default 2
//	ZAPBUS_MEDIA_MAX_ATTEMPTS            download attempts before a file fails for good, default 8
//	ZAPBUS_MEDIA_MAX_AGE                 a download not done this long after its message fails, default 72h
//	ZAPBUS_MEDIA_REUPLOAD_WAIT           wait for the sender's phone to re-upload expired media, default 60s
//	ZAPBUS_MEDIA_MAX_<KIND>              largest file per kind (IMAGE, VIDEO, AUDIO, PTT, DOCUMENT,
//	                                     STICKER), e.g. 16MiB; defaults in internal/media (Limits)
//	ZAPBUS_HISTORY_MAX_ATTEMPTS          attempts at a history sync chunk before it fails for good, default 8
//	ZAPBUS_HISTORY_MAX_AGE               a history sync chunk not imported this long after it was announced fails, default 72h
//	ZAPBUS_SEND_MAX_CHAT_PER_MINUTE,     the operator maxima of every mentorado's sending settings
//	ZAPBUS_SEND_MAX_CHAT_BURST,          (defaults and meaning in internal/outbound, DefaultLimits;
//	ZAPBUS_SEND_MIN_BULK_GAP_SECONDS,    docs/decisions/0020-outbox-pacing-campaigns.md)
//	ZAPBUS_SEND_MAX_DAILY_CAP,
//	ZAPBUS_SEND_MAX_QUEUE_TTL_SECONDS
//	ZAPBUS_SEND_SWEEP_INTERVAL           how often queued sends past their TTL expire, default 30s
//	ZAPBUS_WA_FAKE_ADDR                  STAGING ONLY: talk to the fake WhatsApp (cmd/wafake) at host:port
//	ZAPBUS_WA_FAKE_ROOT_KEY              STAGING ONLY: the fake's root public key (hex, cmd/wafake prints it)
//
// The fake switch needs both ZAPBUS_WA_FAKE_* settings: one without the
// other refuses to start, so a stray variable cannot half-enable it. With
// both, the whole process trusts the fake's root instead of WhatsApp's (it
// can no longer reach the real WhatsApp), warns at every start, and /readyz
// says "FAKE WhatsApp" (docs/staging.md).
//
// Start-up does not depend on order: the connector serves /healthz (200)
// and /readyz (503, naming what it waits for) at once, and retries
// Postgres and then NATS with backoff (1s doubling to 30s, jittered, a log
// line per attempt) until they answer; it exits only on a permanent error
// (a malformed URL, a NATS server that is too old).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/redact"
	"github.com/zapbus/zapbus/internal/startup"
	"github.com/zapbus/zapbus/internal/wafakeclient"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "connector:", err)
		os.Exit(1)
	}
}

// DefaultHTTPAddr is where the connector serves health and metrics.
const DefaultHTTPAddr = "127.0.0.1:9101"

// settings is the process configuration.
type settings struct {
	DatabaseURL        string
	NATSURL            string
	HTTPAddr           string // health and metrics; "off" disables
	Provision          bool   // ZAPBUS_NATS_PROVISION: create the streams at start (tests, dev)
	ProvisionIfMissing bool   // ZAPBUS_NATS_PROVISION auto (default) on a server without credentials
	LogLevel           zerolog.Level
	LeaseTTL           time.Duration
	Connector          connector.Config
	// Fake is the fake WhatsApp the sessions talk to when FakeWA is set
	// (staging and chaos runs only).
	Fake   wafakeclient.Config
	FakeWA bool
}

func loadSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	env := config.NewEnv(getenv)
	str, dur, integer := env.String, env.Duration, env.Int

	fs := flag.NewFlagSet("connector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.DatabaseURL, "database-url", str("DATABASE_URL", ""), "Postgres URL (DATABASE_URL)")
	fs.StringVar(&s.NATSURL, "nats-url", str("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (NATS_URL)")
	fs.StringVar(&s.HTTPAddr, "http-addr", str("ZAPBUS_HTTP_ADDR", DefaultHTTPAddr), "health and metrics address (ZAPBUS_HTTP_ADDR)")
	fs.StringVar(&s.Connector.InstanceID, "instance-id", str("ZAPBUS_INSTANCE_ID", ""), "lease owner name (ZAPBUS_INSTANCE_ID)")
	fs.DurationVar(&s.LeaseTTL, "lease-ttl", dur("ZAPBUS_LEASE_TTL", 15*time.Second), "session lease TTL (ZAPBUS_LEASE_TTL)")
	fs.IntVar(&s.Connector.RestoreConcurrency, "restore-concurrency", integer("ZAPBUS_RESTORE_CONCURRENCY", 8), "sessions restored at once (ZAPBUS_RESTORE_CONCURRENCY)")
	fs.DurationVar(&s.Connector.RestoreJitter, "restore-jitter", dur("ZAPBUS_RESTORE_JITTER", 2*time.Second), "spread of each restore (ZAPBUS_RESTORE_JITTER)")
	fs.DurationVar(&s.Connector.ShutdownTimeout, "shutdown-timeout", dur("ZAPBUS_SHUTDOWN_TIMEOUT", 10*time.Second), "graceful shutdown bound (ZAPBUS_SHUTDOWN_TIMEOUT)")
	level := fs.String("log-level", str("ZAPBUS_LOG_LEVEL", "info"), "log level (ZAPBUS_LOG_LEVEL)")
	fs.IntVar(&s.Connector.Media.Concurrency, "media-concurrency", integer("ZAPBUS_MEDIA_CONCURRENCY", 2), "media downloads per session at once (ZAPBUS_MEDIA_CONCURRENCY)")
	fs.IntVar(&s.Connector.Media.MaxAttempts, "media-max-attempts", integer("ZAPBUS_MEDIA_MAX_ATTEMPTS", 8), "download attempts per file (ZAPBUS_MEDIA_MAX_ATTEMPTS)")
	fs.DurationVar(&s.Connector.Media.MaxAge, "media-max-age", dur("ZAPBUS_MEDIA_MAX_AGE", 72*time.Hour), "give up downloads older than this (ZAPBUS_MEDIA_MAX_AGE)")
	fs.DurationVar(&s.Connector.Media.ReuploadWait, "media-reupload-wait", dur("ZAPBUS_MEDIA_REUPLOAD_WAIT", time.Minute), "wait for a re-upload of expired media (ZAPBUS_MEDIA_REUPLOAD_WAIT)")
	s.Connector.Media.Limits = media.LimitsFromEnv(env)
	fs.IntVar(&s.Connector.History.MaxAttempts, "history-max-attempts", integer("ZAPBUS_HISTORY_MAX_ATTEMPTS", 8), "attempts per history sync chunk (ZAPBUS_HISTORY_MAX_ATTEMPTS)")
	fs.DurationVar(&s.Connector.History.MaxAge, "history-max-age", dur("ZAPBUS_HISTORY_MAX_AGE", 72*time.Hour), "give up history sync chunks older than this (ZAPBUS_HISTORY_MAX_AGE)")
	fs.DurationVar(&s.Connector.Sending.SweepInterval, "send-sweep-interval", dur("ZAPBUS_SEND_SWEEP_INTERVAL", 30*time.Second), "how often queued sends past their TTL expire (ZAPBUS_SEND_SWEEP_INTERVAL)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	limits, lerr := outbound.LimitsFromEnv(getenv)
	if lerr != nil {
		return s, lerr
	}
	s.Connector.Sending.Limits = limits
	if s.Connector.Sending.SweepInterval <= 0 {
		return s, errors.New("ZAPBUS_SEND_SWEEP_INTERVAL: want a positive duration")
	}
	var perr error
	s.Provision, s.ProvisionIfMissing, perr = bus.ProvisionFromEnv(getenv, s.NATSURL)
	if perr != nil {
		return s, perr
	}
	if err := env.Err(); err != nil {
		return s, err
	}
	if s.DatabaseURL == "" {
		return s, errors.New("DATABASE_URL is required")
	}
	if s.NATSURL == "" {
		return s, errors.New("NATS_URL is required")
	}
	if s.LeaseTTL < time.Second {
		return s, fmt.Errorf("ZAPBUS_LEASE_TTL: %s is below one second", s.LeaseTTL)
	}
	if s.Connector.RestoreConcurrency <= 0 {
		return s, errors.New("ZAPBUS_RESTORE_CONCURRENCY: want a positive integer")
	}
	if s.Connector.Media.Concurrency <= 0 || s.Connector.Media.MaxAttempts <= 0 {
		return s, errors.New("ZAPBUS_MEDIA_CONCURRENCY and ZAPBUS_MEDIA_MAX_ATTEMPTS: want positive integers")
	}
	if s.Connector.History.MaxAttempts <= 0 || s.Connector.History.MaxAge <= 0 {
		return s, errors.New("ZAPBUS_HISTORY_MAX_ATTEMPTS and ZAPBUS_HISTORY_MAX_AGE: want positive values")
	}
	lvl, err := config.LogLevel(*level)
	if err != nil {
		return s, err
	}
	s.LogLevel = lvl
	s.Fake, s.FakeWA, err = wafakeclient.Parse(str("ZAPBUS_WA_FAKE_ADDR", ""), str("ZAPBUS_WA_FAKE_ROOT_KEY", ""))
	if err != nil {
		return s, err
	}
	if err := env.Err(); err != nil { // a ZAPBUS_WA_FAKE_*_FILE that does not read
		return s, err
	}
	if err := s.Connector.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	s, err := loadSettings(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := zerolog.New(redact.Writer(stdout)).Level(s.LogLevel).With().Timestamp().Str("service", "connector").Logger()
	var configure func(*whatsmeow.Client) // nil: the real WhatsApp
	if s.FakeWA {
		configure = wafakeclient.Install(s.Fake)
		// Warn (not info) so it shows at every log level operators run.
		log.Warn().Str("wa_fake_addr", s.Fake.Addr).Str("wa_fake_root_key", s.Fake.RootKeyHex()).
			Msg("FAKE WhatsApp: sessions talk to the fake server (cmd/wafake), not to WhatsApp; staging and chaos runs only")
	}

	// Serve /healthz and /readyz at once; /readyz says what start-up still
	// waits for until Postgres and NATS are up. The connector's health
	// and metrics take the socket over once it is built.
	st := startup.NewStatus("postgres", "nats")
	var front *startup.Front
	if s.HTTPAddr != "off" {
		front, err = startup.Listen(s.HTTPAddr, st, log)
		if err != nil {
			return fmt.Errorf("ZAPBUS_HTTP_ADDR: %w", err)
		}
		defer front.Close()
		log.Info().Str("http_addr", front.Addr().String()).Msg("serving /healthz, /readyz while starting")
	}
	w := startup.Waiter{Log: log, Status: st}
	db, b, err := w.OpenServices(ctx, s.DatabaseURL, s.NATSURL, "zapbus-connector",
		bus.Config{LeaseTTL: s.LeaseTTL, Provision: s.Provision, ProvisionIfMissing: s.ProvisionIfMissing})
	if err != nil {
		return startup.Interrupted(ctx, err)
	}
	defer db.Close()
	defer func() { _ = b.Drain() }()
	var factory *connector.WhatsmeowFactory
	if err := w.Wait(ctx, "whatsmeow store", func(ctx context.Context) (err error) {
		factory, err = connector.NewWhatsmeowFactory(ctx, db, log, configure)
		return err
	}); err != nil {
		return startup.Interrupted(ctx, err)
	}
	var files *media.ObjectStore
	if err := w.Wait(ctx, "media store", func(ctx context.Context) (err error) {
		files, err = b.MediaStore(ctx)
		return err
	}); err != nil {
		return startup.Interrupted(ctx, err)
	}
	c, err := connector.New(s.Connector, db, b, factory, log, connector.WithMedia(files))
	if err != nil {
		return err
	}
	if front != nil {
		health := startup.Health{Ready: c.CheckReady, Metrics: c.Registry()}
		var stop func()
		if s.FakeWA {
			stop = serveFakeHealth(front, health, s.Fake.Addr)
		} else {
			stop = front.ServeHealth(health)
		}
		defer stop()
		log.Info().Str("http", front.Addr().String()).Msg("serving /healthz, /readyz, /metrics")
	}
	return c.Run(ctx)
}

// serveFakeHealth is Front.ServeHealth for a connector on the fake
// WhatsApp: /readyz names the fake in its body, ready or not, and every
// health answer carries X-Zapbus-WhatsApp: fake, so nobody mistakes a
// staging connector for a production one.
func serveFakeHealth(front *startup.Front, h startup.Health, fakeAddr string) (stop func()) {
	inner := h.Handler()
	mark := "FAKE WhatsApp at " + fakeAddr + " (staging only)"
	mux := http.NewServeMux()
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Zapbus-WhatsApp", "fake")
		inner.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Zapbus-WhatsApp", "fake")
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := h.Ready(ctx); err != nil {
			http.Error(w, err.Error()+"; "+mark, http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready; "+mark+"\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln := front.Handoff()
	go func() { _ = srv.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
