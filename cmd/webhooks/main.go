// Command webhooks delivers events to webhook endpoints (see
// internal/webhook and docs/decisions/0017-webhooks.md): each endpoint in
// the webhooks table is a durable JetStream consumer on WA_EVENTS, whose
// events this process POSTs, signed the Standard Webhooks way, retried
// with backoff, dead-lettered after the last try. Any number of instances
// may run against the same database and stream: they share the work, and
// when one dies another takes its deliveries over (at least once, in order
// per endpoint).
//
// Start-up does not depend on order: the process serves /healthz (200) and
// /readyz (503, naming what it waits for) at once, and retries Postgres
// and then NATS with backoff (1s doubling to 30s, jittered, a log line per
// attempt) until they answer; it exits only on a permanent error (a
// malformed URL, a NATS server that is too old). SIGINT or SIGTERM stops
// it: deliveries in flight finish or are left unacked for another
// instance.
//
// Settings come from the environment, overridable by flags:
//
//	DATABASE_URL (or DATABASE_URL_FILE)  Postgres, required
//	NATS_URL (or NATS_URL_FILE)          NATS, default nats://127.0.0.1:4222
//	ZAPBUS_NATS_PROVISION                auto (default): create missing streams only on a NATS server
//	                                     reached without credentials; true: always (tests, dev);
//	                                     false: only verify them (production: zapbus-admin provision)
//	ZAPBUS_HTTP_ADDR                     /metrics, /healthz, /readyz; default 127.0.0.1:9103 ("off" disables)
//	ZAPBUS_WEBHOOK_ALLOW_NETS            networks webhook URLs may reach although private, loopback or
//	                                     link-local: comma-separated CIDRs or addresses, e.g.
//	                                     10.20.0.0/16,fd00::/8; default none (public addresses only)
//	ZAPBUS_WEBHOOK_ALLOW_HTTP            true: allow plain http:// URLs; default false (https only)
//	ZAPBUS_WEBHOOK_TIMEOUT               bound on one delivery attempt, connection included, default 10s
//	                                     (100ms to 5m)
//	ZAPBUS_WEBHOOK_BACKOFF               delays before each retry, comma-separated, e.g. 1s,5s,30s; default
//	                                     the engine's schedule, retrying for more than 24 hours
//	ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER      pause an endpoint whose attempts all failed for this long,
//	                                     default 24h (1m to 720h, or off)
//	ZAPBUS_WEBHOOK_LOG_KEEP              delivery attempts kept per endpoint, default 1000 (1 to 1000000)
//	ZAPBUS_WEBHOOK_RECONCILE_INTERVAL    how often the webhooks table is read again besides the change
//	                                     notifications, default 10s (100ms to 1h)
//	ZAPBUS_WEBHOOK_NAME                  this instance's name in logs and metrics, default the host name
//	ZAPBUS_LOG_LEVEL                     debug, info (default), warn, error
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/redact"
	"github.com/zapbus/zapbus/internal/startup"
	"github.com/zapbus/zapbus/internal/webhook"
)

// DefaultHTTPAddr serves metrics and health (connector 9101, persister 9102).
const DefaultHTTPAddr = "127.0.0.1:9103"

// NATSName is the connection name; bus.InboxPrefix makes it the inbox
// prefix _INBOX_webhooks that nats.conf's WEBHOOKS user may read.
const NATSName = "zapbus-webhooks"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "webhooks:", err)
		os.Exit(1)
	}
}

type settings struct {
	DatabaseURL        string
	NATSURL            string
	Provision          bool // ZAPBUS_NATS_PROVISION: create the streams at start (tests, dev)
	ProvisionIfMissing bool // ZAPBUS_NATS_PROVISION auto (default) on a server without credentials
	HTTPAddr           string
	LogLevel           zerolog.Level
	Webhook            webhook.Config
}

// Bounds of the settings.
const (
	minTimeout, maxTimeout     = 100 * time.Millisecond, 5 * time.Minute
	minAutoPause, maxAutoPause = time.Minute, 720 * time.Hour
	minReconcile, maxReconcile = 100 * time.Millisecond, time.Hour
	maxLogKeep                 = 1_000_000
	maxBackoffSteps            = 100
)

func loadSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	env := config.NewEnv(getenv)
	str, dur, integer := env.String, env.Duration, env.Int
	host, _ := os.Hostname()
	fs := flag.NewFlagSet("webhooks", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.DatabaseURL, "database-url", str("DATABASE_URL", ""), "Postgres URL (DATABASE_URL)")
	fs.StringVar(&s.NATSURL, "nats-url", str("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (NATS_URL)")
	fs.StringVar(&s.HTTPAddr, "http-addr", str("ZAPBUS_HTTP_ADDR", DefaultHTTPAddr), "metrics and health address, or off (ZAPBUS_HTTP_ADDR)")
	allowNets := fs.String("allow-nets", str("ZAPBUS_WEBHOOK_ALLOW_NETS", ""), "networks webhook URLs may reach although not public, comma-separated CIDRs (ZAPBUS_WEBHOOK_ALLOW_NETS)")
	allowHTTP := fs.String("allow-http", str("ZAPBUS_WEBHOOK_ALLOW_HTTP", "false"), "allow plain http:// webhook URLs (ZAPBUS_WEBHOOK_ALLOW_HTTP)")
	fs.DurationVar(&s.Webhook.Timeout, "timeout", dur("ZAPBUS_WEBHOOK_TIMEOUT", 10*time.Second), "bound on one delivery attempt (ZAPBUS_WEBHOOK_TIMEOUT)")
	backoff := fs.String("backoff", str("ZAPBUS_WEBHOOK_BACKOFF", ""), "delays before each retry, comma-separated; empty: the engine's default (ZAPBUS_WEBHOOK_BACKOFF)")
	autoPause := fs.String("auto-pause-after", str("ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER", "24h"), "pause an endpoint failing continuously for this long, or off (ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER)")
	fs.IntVar(&s.Webhook.LogKeep, "log-keep", integer("ZAPBUS_WEBHOOK_LOG_KEEP", 1000), "delivery attempts kept per endpoint (ZAPBUS_WEBHOOK_LOG_KEEP)")
	fs.DurationVar(&s.Webhook.ReconcileInterval, "reconcile-interval", dur("ZAPBUS_WEBHOOK_RECONCILE_INTERVAL", 10*time.Second), "how often the webhooks table is read again (ZAPBUS_WEBHOOK_RECONCILE_INTERVAL)")
	fs.StringVar(&s.Webhook.Name, "name", str("ZAPBUS_WEBHOOK_NAME", host), "this instance's name in logs and metrics (ZAPBUS_WEBHOOK_NAME)")
	level := fs.String("log-level", str("ZAPBUS_LOG_LEVEL", "info"), "log level (ZAPBUS_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	var perr error
	s.Provision, s.ProvisionIfMissing, perr = bus.ProvisionFromEnv(getenv, s.NATSURL)
	if perr != nil {
		return s, perr
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := env.Err(); err != nil {
		return s, err
	}
	var err error
	if s.Webhook.Policy.AllowNets, err = webhook.ParseAllowNets(*allowNets); err != nil {
		return s, fmt.Errorf("ZAPBUS_WEBHOOK_ALLOW_NETS: %w", err)
	}
	if s.Webhook.Policy.AllowHTTP, err = strconv.ParseBool(strings.TrimSpace(*allowHTTP)); err != nil {
		return s, fmt.Errorf("ZAPBUS_WEBHOOK_ALLOW_HTTP: %q is not true or false", *allowHTTP)
	}
	if s.Webhook.Backoff, err = ParseBackoff(*backoff); err != nil {
		return s, fmt.Errorf("ZAPBUS_WEBHOOK_BACKOFF: %w", err)
	}
	if *autoPause == "off" {
		s.Webhook.AutoPauseAfter = -1 // never (webhook.Config: negative)
	} else if s.Webhook.AutoPauseAfter, err = time.ParseDuration(*autoPause); err != nil ||
		s.Webhook.AutoPauseAfter < minAutoPause || s.Webhook.AutoPauseAfter > maxAutoPause {
		return s, fmt.Errorf("ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER: %q, want a duration from %s to %s, or off", *autoPause, minAutoPause, maxAutoPause)
	}
	switch {
	case s.DatabaseURL == "":
		return s, errors.New("DATABASE_URL is required")
	case s.NATSURL == "":
		return s, errors.New("NATS_URL is required")
	case s.HTTPAddr == "":
		return s, errors.New("ZAPBUS_HTTP_ADDR is empty (use off to disable)")
	case s.Webhook.Timeout < minTimeout || s.Webhook.Timeout > maxTimeout:
		return s, fmt.Errorf("ZAPBUS_WEBHOOK_TIMEOUT: %s, want %s to %s", s.Webhook.Timeout, minTimeout, maxTimeout)
	case s.Webhook.LogKeep < 1 || s.Webhook.LogKeep > maxLogKeep:
		return s, fmt.Errorf("ZAPBUS_WEBHOOK_LOG_KEEP: %d, want 1 to %d", s.Webhook.LogKeep, maxLogKeep)
	case s.Webhook.ReconcileInterval < minReconcile || s.Webhook.ReconcileInterval > maxReconcile:
		return s, fmt.Errorf("ZAPBUS_WEBHOOK_RECONCILE_INTERVAL: %s, want %s to %s", s.Webhook.ReconcileInterval, minReconcile, maxReconcile)
	case strings.TrimSpace(s.Webhook.Name) == "":
		return s, errors.New("ZAPBUS_WEBHOOK_NAME is empty")
	}
	lvl, err := config.LogLevel(*level)
	if err != nil {
		return s, err
	}
	s.LogLevel = lvl
	return s, nil
}

// ParseBackoff parses ZAPBUS_WEBHOOK_BACKOFF: comma-separated positive
// durations, non-decreasing. Empty returns nil (the engine's default).
func ParseBackoff(v string) ([]time.Duration, error) {
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	var out []time.Duration
	for _, f := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a positive duration", strings.TrimSpace(f))
		}
		if len(out) > 0 && d < out[len(out)-1] {
			return nil, fmt.Errorf("%s after %s: delays must not decrease", d, out[len(out)-1])
		}
		out = append(out, d)
	}
	if len(out) > maxBackoffSteps {
		return nil, fmt.Errorf("%d delays, want at most %d", len(out), maxBackoffSteps)
	}
	return out, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return runWith(ctx, args, getenv, stdout, os.Stderr)
}

func runWith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	s, err := loadSettings(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := zerolog.New(redact.Writer(stdout)).Level(s.LogLevel).With().Timestamp().Str("service", "webhooks").Logger()
	log.Info().Str("name", s.Webhook.Name).Stringer("allow_nets", prefixes(s.Webhook.Policy.AllowNets)).
		Bool("allow_http", s.Webhook.Policy.AllowHTTP).Dur("timeout", s.Webhook.Timeout).Msg("starting")

	// Serve /healthz and /readyz at once; /readyz says what start-up still
	// waits for until Postgres and NATS are up.
	st := startup.NewStatus("postgres", "nats")
	var front *startup.Front
	if s.HTTPAddr != "off" {
		front, err = startup.Listen(s.HTTPAddr, st, log)
		if err != nil {
			return fmt.Errorf("ZAPBUS_HTTP_ADDR: %w", err)
		}
		defer front.Close()
		log.Info().Str("http_addr", front.Addr().String()).Msg("serving /metrics, /healthz, /readyz")
	}
	db, b, err := startup.Waiter{Log: log, Status: st}.OpenServices(ctx, s.DatabaseURL, s.NATSURL, NATSName,
		bus.Config{Provision: s.Provision, ProvisionIfMissing: s.ProvisionIfMissing})
	if err != nil {
		return startup.Interrupted(ctx, err)
	}
	defer db.Close()
	defer b.Close()
	d, err := webhook.New(s.Webhook, db, b, log)
	if err != nil {
		return err
	}
	if front != nil {
		stop := front.ServeHealth(health(d, b))
		defer stop()
	}
	log.Info().Msg("delivering")
	err = d.Run(ctx)
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = nil
	}
	if err == nil {
		log.Info().Msg("stopped")
	}
	return err
}

// health is what the process serves once it runs. The dispatcher's own
// readiness and metrics are used when it has them (a Ready method, a
// Registry method: optional capabilities); otherwise /readyz follows the
// NATS connection. /metrics always has the Go runtime's and the process's
// metrics too.
func health(d *webhook.Dispatcher, b *bus.Bus) startup.Health {
	h := startup.Health{
		Ready: func(context.Context) error {
			if !b.NC.IsConnected() {
				return fmt.Errorf("not ready: nats %s", b.NC.Status())
			}
			return nil
		},
	}
	if r, ok := any(d).(interface{ Ready(context.Context) error }); ok {
		h.Ready = func(ctx context.Context) error {
			if err := r.Ready(ctx); err != nil {
				return fmt.Errorf("not ready: %w", err)
			}
			return nil
		}
	}
	runtime := prometheus.NewRegistry()
	runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h.Metrics = runtime
	if g, ok := any(d).(interface{ Registry() *prometheus.Registry }); ok {
		h.Metrics = firstWins{g.Registry(), runtime}
	}
	return h
}

// firstWins gathers from each in turn, leaving out a metric family an
// earlier one had (the dispatcher's registry may hold Go collectors too).
type firstWins []prometheus.Gatherer

func (gs firstWins) Gather() ([]*dto.MetricFamily, error) {
	var out []*dto.MetricFamily
	seen := map[string]bool{}
	for _, g := range gs {
		mfs, err := g.Gather()
		if err != nil {
			return nil, err
		}
		for _, mf := range mfs {
			if !seen[mf.GetName()] {
				seen[mf.GetName()] = true
				out = append(out, mf)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// prefixes prints a list of networks for the start-up log line.
type prefixes []netip.Prefix

func (p prefixes) String() string {
	if len(p) == 0 {
		return "none"
	}
	s := make([]string, len(p))
	for i, n := range p {
		s[i] = n.String()
	}
	return strings.Join(s, ",")
}
