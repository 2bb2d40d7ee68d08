// Command zapbench measures zapbus's real processes from outside, each
// figure next to a baseline measured in the same run, and writes a JSON
// report with a stable format (report.go) so runs can be compared.
//
//	zapbench [-out report.json] [-short] <scenario> [flags]
//	zapbench [-out report.json] [-short] all
//	zapbench list
//
// Each scenario lives in its own file and registers itself in init (see
// register). docs/performance.md gives every number with its command.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
)

// Scenario is one benchmark. Run measures and returns its result; it reads
// its own flags from args.
type Scenario struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, env *Env, args []string) (*Result, error)
}

// Env is what every scenario gets.
type Env struct {
	Short  bool      // CI-sized run
	Stdout io.Writer // human-readable progress and tables
	// PostgresDSN is a server DSN (no database): scenarios create and drop
	// their own databases. ZAPBUS_BENCH_POSTGRES or the local default.
	PostgresDSN string
	// NATSServer is the nats-server binary for scenarios that run a real
	// server process (ZAPBUS_NATS_SERVER, else nats-server on PATH).
	NATSServer string
}

var scenarios = map[string]Scenario{}

func register(s Scenario) {
	if _, dup := scenarios[s.Name]; dup {
		panic("zapbench: scenario registered twice: " + s.Name)
	}
	scenarios[s.Name] = s
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "zapbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("zapbench", flag.ContinueOnError)
	out := fs.String("out", "", "append the JSON report of this run to this file (one JSON object per line)")
	short := fs.Bool("short", false, "CI-sized run: fewer events, clients and sessions")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 || fs.Arg(0) == "list" {
		names := make([]string, 0, len(scenarios))
		for n := range scenarios {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			fmt.Fprintf(stdout, "%-10s %s\n", n, scenarios[n].Summary)
		}
		if fs.NArg() == 0 {
			return errors.New("name a scenario")
		}
		return nil
	}
	env := &Env{Short: *short, Stdout: stdout, PostgresDSN: envOr("ZAPBUS_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"), NATSServer: envOr("ZAPBUS_NATS_SERVER", "nats-server")}
	names := []string{fs.Arg(0)}
	if fs.Arg(0) == "all" {
		names = names[:0]
		for n := range scenarios {
			names = append(names, n)
		}
		slices.Sort(names)
	}
	var failed []string
	for _, name := range names {
		s, ok := scenarios[name]
		if !ok {
			return fmt.Errorf("unknown scenario %q (zapbench list)", name)
		}
		if err := runOne(ctx, s, env, fs.Args()[1:], *out); err != nil {
			if len(names) == 1 {
				return err
			}
			fmt.Fprintf(stdout, "FAILED %v\n", err)
			failed = append(failed, name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// runOne runs s and prints (and appends) its report. Under "all" the
// scenarios get no flags of their own: each runs with its defaults.
func runOne(ctx context.Context, s Scenario, env *Env, args []string, out string) error {
	res, err := s.Run(ctx, env, args)
	if err != nil {
		return fmt.Errorf("%s: %w", s.Name, err)
	}
	res.Scenario = s.Name
	res.Short = env.Short
	res.fill()
	perr := res.Print(env.Stdout)
	if out != "" {
		if err := res.Append(out); err != nil {
			return err
		}
	}
	if perr != nil {
		return fmt.Errorf("%s: %w", s.Name, perr)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
