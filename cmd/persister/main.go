// Command persister applies the WA_EVENTS stream to Postgres (see
// internal/persister). Several can run at once: they share one durable
// consumer.
//
//	persister                                  consume until interrupted
//	persister replay --since 2h [--mentorado ID] [--wait 1m]
//	persister replay --from-seq N [--mentorado ID] [--wait 1m]
//
// Start-up does not depend on order: the consumer serves /healthz (200) and
// /readyz (503, naming what it waits for) at once, and retries Postgres and
// then NATS with backoff (1s doubling to 30s, jittered, a log line per
// attempt) until they answer; it exits only on a permanent error (a
// malformed URL, a NATS server that is too old). replay is a one-shot
// command: it waits at most --wait (default 1m) for them, then fails
// naming what was unreachable.
//
// Settings come from the environment, overridable by flags:
//
//	DATABASE_URL (or DATABASE_URL_FILE)  Postgres, required
//	NATS_URL (or NATS_URL_FILE)          NATS, default nats://127.0.0.1:4222
//	ZAPBUS_NATS_PROVISION                auto (default): create missing streams only on a NATS server
//	                                     reached without credentials; true: always (tests, dev);
//	                                     false: only verify them (production: zapbus-admin provision)
//	ZAPBUS_HTTP_ADDR                     /metrics, /healthz, /readyz; default 127.0.0.1:9102 ("off" disables)
//	ZAPBUS_PERSISTER_BATCH               events per fetch, default 2000 (split into partitions)
//	ZAPBUS_PERSISTER_MAX_WAIT            longest a partial batch is held for more events, default 500ms
//	                                     (an idle stream is applied within milliseconds)
//	ZAPBUS_PERSISTER_ACK_WAIT            redelivery after this long without an ack, default 10s: how
//	                                     soon another persister takes over the batch of one that died
//	                                     (a batch still being applied is kept alive every ack-wait/3);
//	                                     1s to 1h, applied to the existing durable consumer at start
//	ZAPBUS_PERSISTER_PARTITIONS          transactions a batch is split into by mentorado, applied
//	                                     concurrently, default 4 (docs/decisions/0013-persister-partitions.md)
//	ZAPBUS_PERSISTER_CONSUMER            durable consumer name, default persister
//	ZAPBUS_LOG_LEVEL                     debug, info (default), warn, error
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/persister"
	"github.com/zapbus/zapbus/internal/redact"
	"github.com/zapbus/zapbus/internal/startup"
)

// DefaultHTTPAddr serves metrics and health.
const DefaultHTTPAddr = "127.0.0.1:9102"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A CPU profile of the whole run, for zapbench's profiling runs
	// (docs/performance.md); not a setting operators need.
	if path := os.Getenv("ZAPBUS_CPU_PROFILE"); path != "" {
		if f, err := os.Create(path); err == nil && pprof.StartCPUProfile(f) == nil {
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
	}
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "persister:", err)
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
	Persister          persister.Config
	Replay             *persister.ReplayOptions // set for the replay command
	ReplayWait         time.Duration            // how long replay waits for Postgres and NATS
}

func loadSettings(args []string, getenv func(string) string, stderr io.Writer) (settings, error) {
	var s settings
	env := config.NewEnv(getenv)
	str, dur, integer := env.String, env.Duration, env.Int
	cmd := "persister"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
		if cmd != "replay" {
			return s, fmt.Errorf("unknown command %q (want replay, or none to consume)", cmd)
		}
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&s.DatabaseURL, "database-url", str("DATABASE_URL", ""), "Postgres URL (DATABASE_URL)")
	fs.StringVar(&s.NATSURL, "nats-url", str("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL (NATS_URL)")
	fs.StringVar(&s.HTTPAddr, "http-addr", str("ZAPBUS_HTTP_ADDR", DefaultHTTPAddr), "metrics and health address, or off (ZAPBUS_HTTP_ADDR)")
	fs.IntVar(&s.Persister.Batch, "batch", integer("ZAPBUS_PERSISTER_BATCH", persister.DefaultBatch), "events per fetch, split into partitions (ZAPBUS_PERSISTER_BATCH)")
	fs.DurationVar(&s.Persister.MaxWait, "max-wait", dur("ZAPBUS_PERSISTER_MAX_WAIT", 500*time.Millisecond), "how long a fetch waits to fill a batch (ZAPBUS_PERSISTER_MAX_WAIT)")
	fs.DurationVar(&s.Persister.AckWait, "ack-wait", dur("ZAPBUS_PERSISTER_ACK_WAIT", persister.DefaultAckWait), "redelivery after this long without an ack, e.g. when a persister died mid-batch (ZAPBUS_PERSISTER_ACK_WAIT)")
	fs.DurationVar(&s.Persister.OutboxInterval, "outbox-interval", dur("ZAPBUS_PERSISTER_OUTBOX_INTERVAL", persister.DefaultOutboxInterval), "how often lead events left unpublished (a crash, NATS down) are published again (ZAPBUS_PERSISTER_OUTBOX_INTERVAL)")
	fs.DurationVar(&s.Persister.CampaignInterval, "campaign-interval", dur("ZAPBUS_PERSISTER_CAMPAIGN_INTERVAL", persister.DefaultCampaignInterval), "how often campaign progress events are published for changed campaigns (ZAPBUS_PERSISTER_CAMPAIGN_INTERVAL)")
	fs.IntVar(&s.Persister.Partitions, "partitions", integer("ZAPBUS_PERSISTER_PARTITIONS", persister.DefaultPartitions), "concurrent transactions per batch, split by mentorado (ZAPBUS_PERSISTER_PARTITIONS)")
	fs.StringVar(&s.Persister.Consumer, "consumer", str("ZAPBUS_PERSISTER_CONSUMER", "persister"), "durable consumer name (ZAPBUS_PERSISTER_CONSUMER)")
	level := fs.String("log-level", str("ZAPBUS_LOG_LEVEL", "info"), "log level (ZAPBUS_LOG_LEVEL)")
	var since time.Duration
	var fromSeq uint64
	var mentorado int64
	if cmd == "replay" {
		fs.DurationVar(&since, "since", 0, "replay events stored in this last period, e.g. 2h")
		fs.Uint64Var(&fromSeq, "from-seq", 0, "replay from this WA_EVENTS sequence")
		fs.Int64Var(&mentorado, "mentorado", 0, "replay only this mentorado's events")
		fs.DurationVar(&s.ReplayWait, "wait", time.Minute, "how long to wait for Postgres and NATS before failing")
	}
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
	switch {
	case s.DatabaseURL == "":
		return s, errors.New("DATABASE_URL is required")
	case s.NATSURL == "":
		return s, errors.New("NATS_URL is required")
	case s.HTTPAddr == "":
		return s, errors.New("ZAPBUS_HTTP_ADDR is empty (use off to disable)")
	case s.Persister.Batch <= 0 || s.Persister.Batch > 10000:
		return s, fmt.Errorf("ZAPBUS_PERSISTER_BATCH: %d, want 1 to 10000", s.Persister.Batch)
	case s.Persister.MaxWait < time.Millisecond:
		return s, fmt.Errorf("ZAPBUS_PERSISTER_MAX_WAIT: %s, want at least 1ms", s.Persister.MaxWait)
	case s.Persister.AckWait < time.Second || s.Persister.AckWait > time.Hour:
		return s, fmt.Errorf("ZAPBUS_PERSISTER_ACK_WAIT: %s, want 1s to 1h", s.Persister.AckWait)
	case s.Persister.OutboxInterval < time.Second || s.Persister.OutboxInterval > time.Hour:
		return s, fmt.Errorf("ZAPBUS_PERSISTER_OUTBOX_INTERVAL: %s, want 1s to 1h", s.Persister.OutboxInterval)
	case s.Persister.CampaignInterval < 100*time.Millisecond || s.Persister.CampaignInterval > time.Minute:
		return s, fmt.Errorf("ZAPBUS_PERSISTER_CAMPAIGN_INTERVAL: %s, want 100ms to 1m", s.Persister.CampaignInterval)
	case s.Persister.Partitions < 1 || s.Persister.Partitions > 64:
		return s, fmt.Errorf("ZAPBUS_PERSISTER_PARTITIONS: %d, want 1 to 64", s.Persister.Partitions)
	case s.Persister.Consumer == "" || strings.ContainsAny(s.Persister.Consumer, ".*> \t"):
		return s, fmt.Errorf("ZAPBUS_PERSISTER_CONSUMER: %q is not a valid consumer name", s.Persister.Consumer)
	}
	lvl, err := config.LogLevel(*level)
	if err != nil {
		return s, err
	}
	s.LogLevel = lvl
	if err := s.Persister.Validate(); err != nil {
		return s, err
	}
	if cmd == "replay" {
		if (since > 0) == (fromSeq > 0) {
			return s, errors.New("replay: give exactly one of --since and --from-seq")
		}
		if s.ReplayWait <= 0 {
			return s, errors.New("replay: --wait must be positive")
		}
		if mentorado < 0 {
			return s, errors.New("replay: --mentorado must be positive")
		}
		s.Replay = &persister.ReplayOptions{Since: since, FromSeq: fromSeq, Mentorado: mentorado}
	}
	return s, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	return runWith(ctx, args, getenv, stdout, os.Stderr)
}

func runWith(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	s, err := loadSettings(args, getenv, stderr)
	if err != nil {
		return err
	}
	logOut := stdout
	if s.Replay != nil {
		logOut = stderr // stdout carries the summary
	}
	log := zerolog.New(redact.Writer(logOut)).Level(s.LogLevel).With().Timestamp().Str("service", "persister").Logger()

	if s.Replay != nil {
		return replay(ctx, s, log, stdout, stderr)
	}

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
	db, b, err := startup.Waiter{Log: log, Status: st}.OpenServices(ctx, s.DatabaseURL, s.NATSURL, "zapbus-persister", s.busConfig())
	if err != nil {
		return startup.Interrupted(ctx, err)
	}
	defer db.Close()
	defer b.Close()
	p, err := persister.New(s.Persister, db, b, log)
	if err != nil {
		return err
	}
	if front != nil {
		stop := front.ServeHealth(health(p))
		defer stop()
	}
	return p.Run(ctx)
}

// replay waits at most --wait for Postgres and NATS (a one-shot command
// fails clearly rather than hanging), re-applies the stream and prints a
// summary.
func replay(ctx context.Context, s settings, log zerolog.Logger, stdout, stderr io.Writer) error {
	db, b, err := startup.Waiter{Log: log, Timeout: s.ReplayWait}.OpenServices(ctx, s.DatabaseURL, s.NATSURL, "zapbus-persister", s.busConfig())
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer db.Close()
	defer b.Close()
	p, err := persister.New(s.Persister, db, b, log)
	if err != nil {
		return err
	}
	s.Replay.Progress = stderr
	st, err := p.Replay(ctx, *s.Replay)
	fmt.Fprintf(stdout, "replay: %d events applied, %d dead-lettered, up to seq %d, in %s\n",
		st.Applied, st.DeadLettered, st.LastSeq, st.Duration.Round(time.Millisecond))
	return err
}

func (s settings) busConfig() bus.Config {
	return bus.Config{Provision: s.Provision, ProvisionIfMissing: s.ProvisionIfMissing}
}

// health is what the persister serves once it runs; /readyz names what
// it waits for after "not ready: ".
func health(p *persister.Persister) startup.Health {
	return startup.Health{
		Ready: func(ctx context.Context) error {
			if err := p.Ready(ctx); err != nil {
				return fmt.Errorf("not ready: %w", err)
			}
			return nil
		},
		Metrics: p.Registry(),
	}
}
