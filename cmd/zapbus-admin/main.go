// Command zapbus-admin holds the operator steps that need the NATS admin
// credential or run once per cluster:
//
//	zapbus-admin provision         create or update zapbus's streams and KV buckets
//	zapbus-admin providers keygen  print a new provider credentials key line (id:base64key)
//	zapbus-admin providers rekey   re-seal every provider's stored credentials with the
//	                               primary key (DATABASE_URL, ZAPBUS_CREDENTIALS_KEYS[_FILE])
//
// Services run with least-privilege NATS users (nats.conf) that cannot
// create or change streams: they only check at start that theirs exist.
// Run provision once per cluster before the services start, and again after
// an upgrade or to change retention (docs/operations.md). It is idempotent.
//
// Settings come from the environment, overridable by flags:
//
//	NATS_URL (or NATS_URL_FILE)  NATS with the admin user, default nats://127.0.0.1:4222
//	ZAPBUS_LEASE_TTL             WA_LEASES key TTL (must match the connectors'), default: keep (15s on creation)
//	ZAPBUS_EVENTS_MAX_AGE        WA_EVENTS retention, default: keep (7 days on creation)
//	ZAPBUS_EVENTS_MAX_BYTES      WA_EVENTS byte cap, default: keep (unlimited on creation)
//	ZAPBUS_DLQ_MAX_AGE           WA_DLQ retention, default: keep (30 days on creation)
//	ZAPBUS_SENDS_TTL             WA_SENDS TTL, default: keep (24h on creation)
//	ZAPBUS_REPLICAS              replicas of every stream and bucket (3 on a 3-node cluster), default: keep (1 on creation)
//	ZAPBUS_MEDIA_RETENTION       WA_MEDIA file retention: a duration, or 0 / forever; default: keep (forever on creation)
//
// -consumer NAME=FILTER (repeatable) also creates or updates a backend
// team's durable pull consumer on WA_EVENTS, e.g. -consumer backend=wa.*.evt.>
// or -consumer team42=wa.42.evt.>; nats.conf grants the team that consumer
// only (teams cannot create consumers themselves).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "zapbus-admin:", err)
		os.Exit(1)
	}
}

const usage = `usage: zapbus-admin provision [flags]
       zapbus-admin providers keygen
       zapbus-admin providers rekey

provision creates or updates zapbus's streams (WA_EVENTS, WA_QR, WA_DLQ), KV
buckets (WA_LEASES, WA_SENDS) and media object store (WA_MEDIA). Run it with
the NATS admin user.

providers keygen prints a new credentials key line (id:base64key) for
ZAPBUS_CREDENTIALS_KEYS; providers rekey re-seals every provider's stored
credentials with the keyring's primary key and prints how many it re-sealed
(DATABASE_URL, ZAPBUS_CREDENTIALS_KEYS or ZAPBUS_CREDENTIALS_KEYS_FILE; key
rotation: docs/operations.md).`

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "providers" {
		return runProviders(ctx, args[1:], getenv, stdout)
	}
	if len(args) == 0 || args[0] != "provision" {
		return errors.New(usage)
	}
	env := config.NewEnv(getenv)
	str, dur, integer := env.String, env.Duration, env.Int
	var cfg bus.Config
	fs := flag.NewFlagSet("provision", flag.ContinueOnError)
	fs.SetOutput(stdout)
	url := fs.String("nats-url", str("NATS_URL", "nats://127.0.0.1:4222"), "NATS URL with the admin credential (NATS_URL)")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", dur("ZAPBUS_LEASE_TTL", 0), "WA_LEASES key TTL; 0 keeps the server's (ZAPBUS_LEASE_TTL)")
	fs.DurationVar(&cfg.EventsMaxAge, "events-max-age", dur("ZAPBUS_EVENTS_MAX_AGE", 0), "WA_EVENTS retention; 0 keeps the server's (ZAPBUS_EVENTS_MAX_AGE)")
	maxBytes := fs.Int("events-max-bytes", integer("ZAPBUS_EVENTS_MAX_BYTES", 0), "WA_EVENTS byte cap, -1 unlimited; 0 keeps the server's (ZAPBUS_EVENTS_MAX_BYTES)")
	fs.DurationVar(&cfg.DLQMaxAge, "dlq-max-age", dur("ZAPBUS_DLQ_MAX_AGE", 0), "WA_DLQ retention; 0 keeps the server's (ZAPBUS_DLQ_MAX_AGE)")
	fs.DurationVar(&cfg.SendsTTL, "sends-ttl", dur("ZAPBUS_SENDS_TTL", 0), "WA_SENDS TTL; 0 keeps the server's (ZAPBUS_SENDS_TTL)")
	fs.IntVar(&cfg.Replicas, "replicas", integer("ZAPBUS_REPLICAS", 0), "replicas of every stream and bucket: 3 on a 3-node cluster (docs/cluster.md); 0 keeps the server's (ZAPBUS_REPLICAS)")
	fs.Func("media-retention", "WA_MEDIA retention: a duration (at least 1h), or 0 or forever to keep files; unset keeps the server's (ZAPBUS_MEDIA_RETENTION)", func(v string) error {
		d, err := parseRetention(v)
		cfg.MediaMaxAge = d
		return err
	})
	if v := str("ZAPBUS_MEDIA_RETENTION", ""); v != "" {
		d, err := parseRetention(v)
		if err != nil {
			return fmt.Errorf("ZAPBUS_MEDIA_RETENTION: %w", err)
		}
		cfg.MediaMaxAge = d
	}
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	type teamConsumer struct{ name, filter string }
	var consumers []teamConsumer
	fs.Func("consumer", "NAME=FILTER: a backend team's durable consumer on WA_EVENTS (repeatable)", func(v string) error {
		name, filter, ok := strings.Cut(v, "=")
		if !ok || name == "" || strings.ContainsAny(name, ".*> ") || !strings.HasPrefix(filter, "wa.") || !strings.Contains(filter, ".evt.") {
			return fmt.Errorf("want NAME=FILTER such as backend=wa.*.evt.>, got %q", v)
		}
		consumers = append(consumers, teamConsumer{name, filter})
		return nil
	})
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := env.Err(); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q\n%s", fs.Args(), usage)
	}
	cfg.EventsMaxBytes = int64(*maxBytes)
	cfg.Provision = true
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	log := zerolog.New(stdout).With().Timestamp().Str("service", "zapbus-admin").Logger()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	b, err := bus.Open(ctx, *url, "zapbus-admin", cfg, log)
	if err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	defer b.Close()
	for _, name := range bus.Requires("") {
		info, err := b.StreamInfo(ctx, name)
		if err != nil {
			return fmt.Errorf("provision: check %s: %w", name, err)
		}
		c := info.Config
		log.Info().Str("stream", name).Dur("max_age", c.MaxAge).Int("replicas", c.Replicas).Msg("provisioned")
	}
	for _, tc := range consumers {
		if err := b.ProvisionConsumer(ctx, tc.name, tc.filter); err != nil {
			return fmt.Errorf("provision: %w", err)
		}
		log.Info().Str("consumer", tc.name).Str("filter", tc.filter).Msg("provisioned")
	}
	return nil
}

// parseRetention reads a media retention: "0" or "forever" keep files
// forever (bus.MediaForever), else a positive Go duration such as 2160h.
func parseRetention(v string) (time.Duration, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "0", "forever":
		return bus.MediaForever, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("want a duration such as 2160h (90 days), or 0 or forever, got %q", v)
	}
	return d, nil
}
