// Command gateway is zapbus's provider gateway (internal/gateway, issue
// #16): it runs the Meta WhatsApp Cloud API and Z-API drivers for every
// mentorado whose active provider is one of them, serving their commands
// on zapbus.provider.<p>.wa.*.cmd.> and their webhooks over HTTP:
//
//	GET|POST /providers/meta/{mentorado}/webhook        Meta (verify handshake, signed deliveries)
//	POST     /providers/zapi/{mentorado}/webhook/{secret}  Z-API (or .../webhook with X-Zapbus-Webhook-Secret)
//	GET      /healthz, /readyz, /metrics
//
// It is the only zapbus service Meta and Z-API must reach from the
// internet: put it behind a TLS-terminating proxy that forwards only
// /providers/ (docs/operations.md).
//
// Settings come from the environment, overridable by flags:
//
//	DATABASE_URL (or DATABASE_URL_FILE)  Postgres, required
//	NATS_URL (or NATS_URL_FILE)          NATS (user "gateway"), default nats://127.0.0.1:4222
//	ZAPBUS_NATS_PROVISION                auto (default), true or false, as for the other services
//	ZAPBUS_GATEWAY_ADDR                  listen address, default 127.0.0.1:8090
//	ZAPBUS_CREDENTIALS_KEYS              the keyring that opens provider credentials, required
//	  (or ZAPBUS_CREDENTIALS_KEYS_FILE)  ("id:base64key[,…]", the same as the notifier's)
//	ZAPBUS_META_GRAPH_URL                Graph API root, default https://graph.facebook.com/v21.0
//	ZAPBUS_ZAPI_URL                      Z-API root, default https://api.z-api.io
//	ZAPBUS_GATEWAY_COMMAND_TIMEOUT       bound on one command, default 30s
//	ZAPBUS_GATEWAY_MAX_BODY              largest webhook body, default 1MiB
//	ZAPBUS_MEDIA_MAX_<KIND>              largest file per kind, as the connector's
//	ZAPBUS_SHUTDOWN_TIMEOUT              graceful shutdown bound, default 10s
//	ZAPBUS_LOG_LEVEL                     debug, info (default), warn, error
//
// Start-up does not depend on order: the gateway listens at once, answers
// /healthz (200) and everything else with 503 naming what it waits for,
// and retries Postgres and then NATS with backoff until they answer.
// Meta and Z-API retry a webhook answered 503, so nothing is lost while
// it starts.
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

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/gateway"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta"
	"github.com/zapbus/zapbus/internal/provider/zapi"
	"github.com/zapbus/zapbus/internal/redact"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/startup"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		os.Exit(1)
	}
}

// DefaultAddr is where the gateway listens unless told otherwise.
const DefaultAddr = "127.0.0.1:8090"

// NATSName is the gateway's connection name (inbox _INBOX_gateway).
const NATSName = "zapbus-gateway"

type settings struct {
	DatabaseURL        string
	NATSURL            string
	Provision          bool
	ProvisionIfMissing bool
	Addr               string
	MetaURL            string
	ZAPIURL            string
	Keys               *secretbox.Keyring
	LogLevel           zerolog.Level
	Gateway            gateway.Config
}

func loadSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	env := config.NewEnv(getenv)
	str, dur := env.String, env.Duration
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.DatabaseURL, "database-url", str("DATABASE_URL", ""), "Postgres URL (DATABASE_URL)")
	fs.StringVar(&s.NATSURL, "nats-url", str("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (NATS_URL)")
	fs.StringVar(&s.Addr, "addr", str("ZAPBUS_GATEWAY_ADDR", DefaultAddr), "listen address (ZAPBUS_GATEWAY_ADDR)")
	fs.StringVar(&s.MetaURL, "meta-graph-url", str("ZAPBUS_META_GRAPH_URL", meta.DefaultBaseURL), "Graph API root (ZAPBUS_META_GRAPH_URL)")
	fs.StringVar(&s.ZAPIURL, "zapi-url", str("ZAPBUS_ZAPI_URL", zapi.DefaultBaseURL), "Z-API root (ZAPBUS_ZAPI_URL)")
	fs.DurationVar(&s.Gateway.CommandTimeout, "command-timeout", dur("ZAPBUS_GATEWAY_COMMAND_TIMEOUT", 30*time.Second), "bound on one command (ZAPBUS_GATEWAY_COMMAND_TIMEOUT)")
	fs.DurationVar(&s.Gateway.ShutdownTimeout, "shutdown-timeout", dur("ZAPBUS_SHUTDOWN_TIMEOUT", 10*time.Second), "graceful shutdown bound (ZAPBUS_SHUTDOWN_TIMEOUT)")
	s.Gateway.MaxBody = env.Bytes("ZAPBUS_GATEWAY_MAX_BODY", 1<<20)
	s.Gateway.MediaLimits = media.LimitsFromEnv(env)
	level := fs.String("log-level", str("ZAPBUS_LOG_LEVEL", "info"), "log level (ZAPBUS_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if s.Provision, s.ProvisionIfMissing, err = bus.ProvisionFromEnv(getenv, s.NATSURL); err != nil {
		return s, err
	}
	if err := env.Err(); err != nil {
		return s, err
	}
	switch {
	case s.DatabaseURL == "":
		return s, errors.New("DATABASE_URL is required")
	case s.NATSURL == "":
		return s, errors.New("NATS_URL is required")
	case s.Addr == "":
		return s, errors.New("ZAPBUS_GATEWAY_ADDR is required")
	case s.MetaURL == "":
		return s, errors.New("ZAPBUS_META_GRAPH_URL is empty")
	case s.ZAPIURL == "":
		return s, errors.New("ZAPBUS_ZAPI_URL is empty")
	case s.Gateway.CommandTimeout <= 0:
		return s, errors.New("ZAPBUS_GATEWAY_COMMAND_TIMEOUT: want a positive duration")
	case s.Gateway.MaxBody < 64<<10 || s.Gateway.MaxBody > 64<<20:
		return s, fmt.Errorf("ZAPBUS_GATEWAY_MAX_BODY: %d bytes, want 64KiB to 64MiB", s.Gateway.MaxBody)
	}
	if s.Keys, err = secretbox.Load(getenv); err != nil {
		return s, fmt.Errorf("ZAPBUS_CREDENTIALS_KEYS: %w", err)
	}
	if s.LogLevel, err = config.LogLevel(*level); err != nil {
		return s, err
	}
	return s, s.Gateway.Validate()
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	s, err := loadSettings(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := zerolog.New(redact.Writer(stdout)).Level(s.LogLevel).With().Timestamp().Str("service", "gateway").Logger()

	st := startup.NewStatus("postgres", "nats")
	front, err := startup.Listen(s.Addr, st, log)
	if err != nil {
		return fmt.Errorf("ZAPBUS_GATEWAY_ADDR: listen: %w", err)
	}
	defer front.Close()
	fmt.Fprintf(stdout, "gateway listening on http://%s\n", front.Addr())
	w := startup.Waiter{Log: log, Status: st}
	db, b, err := w.OpenServices(ctx, s.DatabaseURL, s.NATSURL, NATSName,
		bus.Config{Provision: s.Provision, ProvisionIfMissing: s.ProvisionIfMissing})
	if err != nil {
		return startup.Interrupted(ctx, err)
	}
	defer db.Close()
	defer func() { _ = b.Drain() }()
	var files *media.ObjectStore
	if err := w.Wait(ctx, "media store", func(ctx context.Context) (err error) {
		files, err = b.MediaStore(ctx)
		return err
	}); err != nil {
		return startup.Interrupted(ctx, err)
	}
	g, err := gateway.New(gateway.Deps{
		DB:      db,
		Bus:     b,
		Configs: provider.NewConfigs(db, s.Keys),
		Media:   files,
		Drivers: []provider.Driver{
			meta.New(meta.Config{BaseURL: s.MetaURL, Log: log.With().Str("provider", "meta").Logger()}),
			zapi.New(zapi.Config{BaseURL: s.ZAPIURL, Log: log.With().Str("provider", "zapi").Logger()}),
		},
		Log: log,
	}, s.Gateway)
	if err != nil {
		return err
	}
	return serve(ctx, g, front, s.Gateway.ShutdownTimeout, log)
}

// serve runs the gateway's commands and its HTTP handler on front's
// socket until ctx ends, then stops both: no new webhooks, in-flight ones
// finish (their publishes are what the provider waits for), commands
// drain.
func serve(ctx context.Context, g *gateway.Gateway, front *startup.Front, shutdown time.Duration, log zerolog.Logger) error {
	srv := &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	httpErr := make(chan error, 1)
	ln := front.Handoff()
	go func() { httpErr <- srv.Serve(ln) }()
	rctx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- g.Run(rctx) }()
	log.Info().Msg("serving provider webhooks and commands")
	var err error
	select {
	case <-ctx.Done():
	case err = <-httpErr:
		err = fmt.Errorf("http: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdown)
	defer cancel()
	if serr := srv.Shutdown(sctx); serr != nil {
		_ = srv.Close()
	}
	stopRun()
	if rerr := <-runErr; rerr != nil && err == nil {
		err = rerr
	}
	log.Info().Msg("stopped")
	return err
}
