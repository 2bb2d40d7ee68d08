package stage

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

func at(s float64) time.Time {
	return time.Unix(1_800_000_000, 0).Add(time.Duration(s * float64(time.Second)))
}

// TestOverlaps: a lease may change owner after a delete, an expiry marker
// or a full TTL without renewal; anything sooner is two holders.
func TestOverlaps(t *testing.T) {
	ttl := 3 * time.Second
	rec := []LeaseRecord{
		{Key: "1", Op: "put", Owner: "a", Revision: 1, At: at(0)},
		{Key: "1", Op: "put", Owner: "a", Revision: 2, At: at(1)},
		{Key: "1", Op: "delete", Revision: 3, At: at(1.5)},
		{Key: "1", Op: "put", Owner: "b", Revision: 4, At: at(1.6)}, // after a release: fine
		{Key: "1", Op: "put", Owner: "a", Revision: 5, At: at(4.7)}, // b silent for 3.1s: expired, fine
		{Key: "2", Op: "put", Owner: "a", Revision: 6, At: at(5)},
		{Key: "2", Op: "put", Owner: "b", Revision: 7, At: at(6)}, // a renewed 1s ago: overlap
		{Key: "2", Op: "purge", Revision: 8, At: at(7)},
		{Key: "2", Op: "put", Owner: "a", Revision: 9, At: at(7.1)}, // after the TTL marker: fine
	}
	got := Overlaps(rec, ttl)
	if len(got) != 1 || got[0].Key != "2" || got[0].From != "a" || got[0].To != "b" {
		t.Fatalf("overlaps %+v, want one on session 2 from a to b", got)
	}
}

// TestTakeover: the sessions one owner held at the kill, and when each
// moved to someone else.
func TestTakeover(t *testing.T) {
	rec := []LeaseRecord{
		{Key: "1", Op: "put", Owner: "a", Revision: 1, At: at(0)},
		{Key: "2", Op: "put", Owner: "a", Revision: 2, At: at(0)},
		{Key: "3", Op: "put", Owner: "b", Revision: 3, At: at(0)},
		{Key: "1", Op: "put", Owner: "b", Revision: 4, At: at(12)},
		{Key: "1", Op: "put", Owner: "b", Revision: 5, At: at(13)},
	}
	moved, missing := Takeover(rec, "a", at(10))
	if len(moved) != 1 || moved["1"] != 2*time.Second || len(missing) != 1 || missing[0] != "2" {
		t.Fatalf("moved %v missing %v", moved, missing)
	}
}

// TestProxyCut: through the proxy until Cut, which closes open
// connections and refuses new ones until Restore.
func TestProxyCut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := NewProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	echo := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && line != "ping\n" {
			t.Fatalf("echo %q", line)
		}
		return err
	}
	open, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := echo(open); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if err := echo(open); err == nil {
		t.Fatal("an open connection survived the cut")
	}
	if c, err := net.Dial("tcp", p.Addr()); err == nil {
		if echo(c) == nil {
			t.Fatal("a new connection went through during the cut")
		}
		c.Close()
	}
	p.Restore()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}

// TestChaosShort runs the short chaos scenario on a real staging stack:
// the binaries built, nats-server with nats.conf, every service its own
// process. About a minute (plus the build); skipped with -short.
func TestChaosShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole staging stack; runs without -short (CI runs it)")
	}
	if _, err := (&Config{Dir: t.TempDir()}).natsServer(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	out := &testenv.Buffer{}
	w := io.MultiWriter(out, tWriter{t})
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	pg := os.Getenv("DATABASE_URL")
	if pg == "" {
		pg = testenv.DefaultDatabaseURL
	}
	st, err := Start(ctx, Config{Dir: t.TempDir(), PostgresURL: pg, LeaseTTL: 3 * time.Second, Out: w})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	opts := ShortChaos(w)
	opts.UntimedFailover = true // the 2×TTL bound is the command's check; here it is reported
	rep, err := RunChaos(ctx, st, opts)
	if rep != nil {
		rep.Print(w)
	}
	if err != nil {
		dumpLogs(t, st)
		t.Fatal(err)
	}
	if !rep.OK() {
		dumpLogs(t, st)
		t.Fatal("chaos checks failed")
	}
	if rep.Takeover <= 0 || rep.Duplicates == 0 {
		t.Fatalf("the run did not exercise failover (%s) and duplicates (%d)", rep.Takeover, rep.Duplicates)
	}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// dumpLogs logs the tail of each process's log: warnings and errors.
func dumpLogs(t *testing.T, st *Stack) {
	for _, p := range append(st.all(), st.NATS, st.Fake) {
		b, err := os.ReadFile(p.Log)
		if err != nil {
			continue
		}
		var keep []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `"level":"warn"`) || strings.Contains(l, `"level":"error"`) || strings.HasPrefix(l, "----") {
				keep = append(keep, l)
			}
		}
		if len(keep) > 40 {
			keep = keep[len(keep)-40:]
		}
		t.Logf("%s log (warnings, errors, starts):\n%s", p.Name, strings.Join(keep, "\n"))
	}
}
