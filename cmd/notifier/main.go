// Command notifier is zapbus's HTTP edge (see internal/web): the REST API,
// live SSE and websocket streams, the dashboard, health and metrics.
//
// Settings come from the environment, overridable by flags:
//
//	DATABASE_URL (or DATABASE_URL_FILE)              Postgres, required
//	NATS_URL (or NATS_URL_FILE)                      NATS, default nats://127.0.0.1:4222
//	ZAPBUS_NATS_PROVISION                            auto (default): create missing streams only on a NATS server
//	                                                 reached without credentials; true: always (tests, dev);
//	                                                 false: only verify them (production: zapbus-admin provision)
//	ZAPBUS_HTTP_ADDR                                 listen address, default 127.0.0.1:8080
//	ZAPBUS_ADMIN_TOKEN (or ZAPBUS_ADMIN_TOKEN_FILE)  admin bearer token, required, 16+ characters
//	ZAPBUS_TICKET_KEY (or ZAPBUS_TICKET_KEY_FILE)    stream ticket signing key shared by all
//	                                                 notifiers; default derived from the admin token
//	ZAPBUS_COMMAND_TIMEOUT                           connector command timeout, default 10s
//	ZAPBUS_SEND_TIMEOUT                              send command timeout, default 30s
//	ZAPBUS_STREAM_BUFFER                             events queued per stream client, default 256
//	ZAPBUS_SHUTDOWN_TIMEOUT                          graceful shutdown bound, default 10s
//	ZAPBUS_SEND_RATE, ZAPBUS_SEND_BURST              sends per token: per second and burst, default 5 and 20
//	ZAPBUS_STREAM_OPEN_RATE, ZAPBUS_STREAM_OPEN_BURST  stream opens per token, default 1/s and 10
//	ZAPBUS_MAX_STREAMS_PER_MENTORADO                 concurrent streams per tenant, default 20
//	                                                 (rates and the cap take "off"; each notifier counts its own)
//	ZAPBUS_REPLAY_BATCH, ZAPBUS_REPLAY_MAX_BYTES     events / bytes a resuming stream pulls at a time, default 32 and 524288
//	ZAPBUS_BODY_READ_TIMEOUT                         bound on reading an authenticated request body, default 10s
//	ZAPBUS_STREAM_AUTH_RECHECK                       how often open streams' tokens are checked again, default 1m
//	ZAPBUS_WEBHOOK_ALLOW_NETS                        networks webhook URLs may reach although private (CIDRs, comma-separated)
//	ZAPBUS_WEBHOOK_ALLOW_HTTP                        true: allow http:// webhook URLs, default false
//	ZAPBUS_MAX_WEBHOOKS                              webhook endpoints per mentorado, default 20
//	ZAPBUS_CREDENTIALS_KEYS (or ZAPBUS_CREDENTIALS_KEYS_FILE)  providers' credentials keyring,
//	                                                 "id:base64key[,id:base64key…]" (first seals); without
//	                                                 it meta and zapi cannot be configured (docs/operations.md)
//	ZAPBUS_LOG_LEVEL                                 debug, info (default), warn, error
//
// Start-up does not depend on order: the notifier listens at once, answers
// /healthz (200) and everything else (/readyz included) with 503 naming
// what it waits for, and retries Postgres and then NATS with backoff (1s
// doubling to 30s, jittered, a log line per attempt) until they answer;
// then the API takes over the same socket. It exits only on a permanent
// error (a malformed URL, a NATS server that is too old).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/redact"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/startup"
	"github.com/zapbus/zapbus/internal/web"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "notifier:", err)
		os.Exit(1)
	}
}

// DefaultHTTPAddr is where the notifier listens unless told otherwise.
const DefaultHTTPAddr = "127.0.0.1:8080"

// settings is the process configuration.
type settings struct {
	DatabaseURL        string
	NATSURL            string
	Provision          bool // ZAPBUS_NATS_PROVISION: create the streams at start (tests, dev)
	ProvisionIfMissing bool // ZAPBUS_NATS_PROVISION auto (default) on a server without credentials
	HTTPAddr           string
	LogLevel           zerolog.Level
	Web                web.Config
}

func loadSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	e := config.NewEnv(getenv)
	env := e.String

	var s settings
	fs := flag.NewFlagSet("notifier", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.DatabaseURL, "database-url", env("DATABASE_URL", ""), "Postgres URL (DATABASE_URL)")
	fs.StringVar(&s.NATSURL, "nats-url", env("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (NATS_URL)")
	fs.StringVar(&s.HTTPAddr, "http-addr", env("ZAPBUS_HTTP_ADDR", DefaultHTTPAddr), "listen address (ZAPBUS_HTTP_ADDR)")
	s.Web.Flags(fs, e)
	level := fs.String("log-level", env("ZAPBUS_LOG_LEVEL", "info"), "log level (ZAPBUS_LOG_LEVEL)")
	// Secrets come from the environment or files only, never from flags
	// (visible in process listings).
	s.Web.AdminToken = env("ZAPBUS_ADMIN_TOKEN", "")
	if k := env("ZAPBUS_TICKET_KEY", ""); k != "" {
		s.Web.TicketKey = []byte(k)
	}
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	// Provider credentials keyring (issue #16): without one only
	// whatsapp_web can be configured.
	switch keys, err := secretbox.Load(getenv); {
	case errors.Is(err, secretbox.ErrNoKey):
	case err != nil:
		return s, err
	default:
		s.Web.CredentialKeys = keys
	}
	var perr error
	s.Provision, s.ProvisionIfMissing, perr = bus.ProvisionFromEnv(getenv, s.NATSURL)
	if perr != nil {
		return s, perr
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := e.Err(); err != nil {
		return s, err
	}
	switch {
	case s.DatabaseURL == "":
		return s, errors.New("DATABASE_URL is required")
	case s.NATSURL == "":
		return s, errors.New("NATS_URL is required")
	case s.HTTPAddr == "":
		return s, errors.New("ZAPBUS_HTTP_ADDR is required")
	case s.Web.AdminToken == "":
		return s, errors.New("ZAPBUS_ADMIN_TOKEN (or ZAPBUS_ADMIN_TOKEN_FILE) is required")
	case len(s.Web.AdminToken) < 16:
		return s, errors.New("ZAPBUS_ADMIN_TOKEN: must be at least 16 characters")
	case s.Web.TicketKey != nil && len(s.Web.TicketKey) < 16:
		return s, errors.New("ZAPBUS_TICKET_KEY: must be at least 16 characters")
	}
	lvl, err := config.LogLevel(*level)
	if err != nil {
		return s, err
	}
	s.LogLevel = lvl
	if err := s.Web.Validate(); err != nil {
		return s, err
	}
	return s, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	s, err := loadSettings(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := zerolog.New(redact.Writer(stdout)).Level(s.LogLevel).With().Timestamp().Str("service", "notifier").Logger()
	if s.Web.CredentialKeys == nil {
		log.Warn().Msg("no credentials keyring (ZAPBUS_CREDENTIALS_KEYS or ZAPBUS_CREDENTIALS_KEYS_FILE): meta and zapi providers cannot be configured")
	} else {
		log.Info().Str("primary_key", s.Web.CredentialKeys.Primary()).Msg("credentials keyring loaded")
	}

	// Listen at once: /healthz answers and /readyz says what start-up
	// still waits for, until Postgres and NATS are up and the API takes
	// the socket over.
	st := startup.NewStatus("postgres", "nats")
	front, err := startup.Listen(s.HTTPAddr, st, log)
	if err != nil {
		return fmt.Errorf("ZAPBUS_HTTP_ADDR: listen: %w", err)
	}
	defer front.Close()
	fmt.Fprintf(stdout, "notifier listening on http://%s\n", front.Addr())
	w := startup.Waiter{Log: log, Status: st}
	db, b, err := w.OpenServices(ctx, s.DatabaseURL, s.NATSURL, "zapbus-notifier",
		bus.Config{Provision: s.Provision, ProvisionIfMissing: s.ProvisionIfMissing})
	if err != nil {
		return startup.Interrupted(ctx, err)
	}
	defer db.Close()
	defer b.Close()
	ms, err := b.MediaStore(ctx)
	if err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	srv, err := web.New(s.Web, db, b, log, web.WithMedia(ms))
	if err != nil {
		return err
	}
	return srv.Serve(ctx, front.Handoff())
}
