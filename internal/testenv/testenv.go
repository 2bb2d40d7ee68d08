// Package testenv gives tests the real infrastructure they need, cheaply:
// an embedded JetStream server on a random port, a fresh Postgres database on
// the machine's server, and a zerolog logger that writes to t.Log.
//
// It is imported only from _test.go files and test helpers.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// DefaultDatabaseURL is the machine's Postgres server used when DATABASE_URL is unset.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresStartHint says how to bring the local server up.
const PostgresStartHint = "start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"

// NATSServer starts an embedded JetStream server on a random loopback port
// with its store in a temporary directory. It is shut down when the test ends.
func NATSServer(t testing.TB) *server.Server {
	t.Helper()
	return NATSServerAt(t, -1, t.TempDir())
}

// NATSServerAt starts an embedded JetStream server on port (-1 for random)
// with the given store directory, so a test can stop a server and start it
// again on the same port with the same data.
func NATSServerAt(t testing.TB, port int, storeDir string) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  storeDir,
		NoLog:     true,
		NoSigs:    true,
		// Tests publish bursts; keep the default max payload (1 MiB).
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("testenv: nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("testenv: nats server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// NATS starts an embedded JetStream server and returns its client URL.
func NATS(t testing.TB) string {
	t.Helper()
	return NATSServer(t).ClientURL()
}

// Postgres creates a fresh, empty database on the machine's Postgres server
// (DATABASE_URL, default DefaultDatabaseURL) and returns its URL. The database
// is dropped when the test ends. When the server is unreachable the test is
// skipped, or fails when CI=true, with a message saying how to start it.
func Postgres(t testing.TB) string {
	t.Helper()
	base := os.Getenv("DATABASE_URL")
	if base == "" {
		base = DefaultDatabaseURL
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		msg := fmt.Sprintf("testenv: Postgres unreachable at %s: %v; %s", redact(base), err, PostgresStartHint)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	defer admin.Close(context.Background())

	sweepStale(ctx, admin, t)
	// The creation time is in the name, so a later run can drop what a
	// crashed or timed-out test binary left behind.
	name := fmt.Sprintf("%s%d_%08x", dbPrefix, time.Now().Unix(), rand.Uint32())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: DATABASE_URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

const dbPrefix = "zapbus_test_"

// sweepStale drops test databases created more than two hours ago: no test
// runs that long, so their binary died before its cleanup ran.
func sweepStale(ctx context.Context, admin *pgx.Conn, t testing.TB) {
	rows, err := admin.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", dbPrefix+"%")
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-2 * time.Hour).Unix()
	for _, n := range names {
		ts, _, _ := strings.Cut(strings.TrimPrefix(n, dbPrefix), "_")
		created, err := strconv.ParseInt(ts, 10, 64)
		if err != nil || created > cutoff {
			continue // not ours to judge, or still young
		}
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{n}.Sanitize()+" WITH (FORCE)"); err == nil {
			t.Logf("testenv: dropped stale database %s", n)
		}
	}
}

// Logger returns a zerolog logger writing to t.Log at debug level.
func Logger(t testing.TB) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: tWriter{t}, NoColor: true, TimeFormat: "15:04:05.000"}).
		Level(zerolog.DebugLevel).With().Timestamp().Logger()
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Eventually polls cond every 10ms until it returns true or the deadline
// passes, then fails the test with msg. Use it instead of sleeping.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: timed out after %s: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "DATABASE_URL"
	}
	return u.Redacted()
}

// Buffer is a bytes.Buffer safe for one writer goroutine (a process's
// stdout, a logger) and a test reading it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Goroutines returns every goroutine's stack, for a test that gives up
// waiting for something to stop: the dump says what it was blocked on.
func Goroutines() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return b.String()
}
