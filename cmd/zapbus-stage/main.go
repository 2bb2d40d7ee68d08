// Command zapbus-stage runs the staging stack (internal/stage): nats-server
// with the repo's nats.conf (provisioned with zapbus-admin), the fake
// WhatsApp server (cmd/wafake), two connectors, two persisters and a
// notifier, each its own process, on this machine's Postgres. Dev only.
//
//	zapbus-stage [up]          start, print the URLs and tokens, run until Ctrl-C
//	zapbus-stage chaos [-short] start, run the chaos scenario, print the ledger comparison, stop;
//	                           exits 1 when a check fails
//
// up -mentorados N also creates and pairs N mentorados with fake phones and
// prints their tokens; -webhooks N runs N webhook dispatchers (default 1)
// (cmd/webhooks), allowed to call http receivers on loopback.
//
// Flags (both): -dir DIR (work directory; default a new temporary one),
// -postgres URL (a superuser URL; default $ZAPBUS_STAGE_POSTGRES or
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable),
// -lease-ttl (default 15s for up, 3s for chaos), -log-level.
// See docs/staging.md.
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
	"time"

	"github.com/zapbus/zapbus/internal/stage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "zapbus-stage:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	mode := "up"
	if len(args) > 0 && (args[0] == "up" || args[0] == "chaos") {
		mode, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("zapbus-stage "+mode, flag.ContinueOnError)
	fs.SetOutput(stdout)
	dir := fs.String("dir", "", "work directory for binaries, logs and NATS data (default: a new temporary directory, removed at exit)")
	pg := fs.String("postgres", getenv("ZAPBUS_STAGE_POSTGRES"), "Postgres superuser URL (ZAPBUS_STAGE_POSTGRES)")
	defTTL := 15 * time.Second
	if mode == "chaos" {
		defTTL = 3 * time.Second
	}
	ttl := fs.Duration("lease-ttl", defTTL, "session lease TTL")
	level := fs.String("log-level", "info", "services' log level")
	short := fs.Bool("short", false, "chaos: the short version (CI)")
	hooks := fs.Int("webhooks", 1, "webhook dispatchers (cmd/webhooks) to run, allowed to call http receivers on loopback")
	pair := fs.Int("mentorados", 0, "up: create and pair this many mentorados with fake phones, and print their tokens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (modes: up, chaos)", fs.Args())
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "zapbus-stage-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	cfg := stage.Config{Dir: *dir, PostgresURL: *pg, LeaseTTL: *ttl, LogLevel: *level, Webhooks: *hooks, Out: stdout}
	st, err := stage.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stdout, "stage: stopping every process")
		st.Close()
	}()
	if mode == "chaos" {
		opts := stage.ChaosOptions{Out: stdout}
		if *short {
			opts = stage.ShortChaos(stdout)
		}
		rep, err := stage.RunChaos(ctx, st, opts)
		if rep != nil {
			rep.Print(stdout)
		}
		if err != nil {
			return err
		}
		if !rep.OK() {
			return errors.New("chaos: checks failed (see the ledger comparison above)")
		}
		return nil
	}
	st.Print(stdout)
	for i := 1; i <= *pair; i++ {
		m, err := st.PairMentorado(ctx, fmt.Sprintf("Stage %d", i), fmt.Sprintf("55119%08d", 60000000+i))
		if err != nil {
			return fmt.Errorf("pair mentorado %d: %w", i, err)
		}
		fmt.Fprintf(stdout, "  mentorado %d: token %s, WhatsApp %s (fake phone) — a contact writes: curl -s -H 'Authorization: Bearer %s' -d '{\"account\":\"%s\",\"from\":\"5521988887777\",\"text\":\"Oi!\"}' %s/v1/inbound\n",
			m.ID, m.Token, m.Account, st.FakeToken, m.Account, st.FakeControl)
	}
	<-ctx.Done()
	return nil
}
