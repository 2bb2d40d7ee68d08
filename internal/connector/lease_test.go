package connector_test

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/connector"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector/sim"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

func assertNoOverlap(t *testing.T, w *sim.World, ids []int64) {
	t.Helper()
	if v := w.Violations(); len(v) > 0 {
		t.Fatalf("two clients connected at once: %v", v)
	}
	for _, m := range ids {
		ivs := w.Intervals(m)
		sort.Slice(ivs, func(i, j int) bool { return ivs[i].Start.Before(ivs[j].Start) })
		for i := 1; i < len(ivs); i++ {
			prev := ivs[i-1]
			if prev.End.IsZero() || prev.End.After(ivs[i].Start) {
				t.Fatalf("mentorado %d: connection %+v overlaps %+v", m, prev, ivs[i])
			}
		}
		if n := w.MaxConcurrent(m); n > 1 {
			t.Fatalf("mentorado %d: %d clients connected at once", m, n)
		}
	}
}

// Two connectors, 50 sessions: each session is connected by exactly one of
// them at every moment; stopping one moves all its sessions to the other
// within 2× the lease TTL.
func TestTwoConnectorsShareAndHandOver(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	e := newEnv(t, ttl)
	ids := e.mentorados(50)
	for i, m := range ids {
		e.paired(m, fmt.Sprintf("55119%08d", i))
	}
	a := e.start("a", nil, nil)
	b := e.start("b", nil, nil)
	allConnected := func() bool {
		for _, m := range ids {
			if !e.world.Connected(m) {
				return false
			}
		}
		return true
	}
	testenv.Eventually(t, wait, allConnected, "all 50 connected")
	testenv.Eventually(t, wait, func() bool { return len(a.c.Owned())+len(b.c.Owned()) == 50 }, "50 leases held")
	for _, m := range a.c.Owned() {
		if slices.Contains(b.c.Owned(), m) {
			t.Fatalf("mentorado %d owned by both", m)
		}
	}
	t.Logf("a owns %d, b owns %d", len(a.c.Owned()), len(b.c.Owned()))

	// Commands reach the owner whichever connector NATS picks: one reply each.
	for _, m := range ids[:10] {
		for range 3 {
			if st := e.status(m); st != event.StatusConnected {
				t.Fatalf("status of %d via either connector: %q", m, st)
			}
		}
	}

	stopped := time.Now()
	movedFromA := len(a.c.Owned())
	a.stop(t)
	testenv.Eventually(t, 2*ttl, func() bool { return len(b.c.Owned()) == 50 && allConnected() }, "b took over all sessions")
	t.Logf("handover of %d sessions took %s", movedFromA, time.Since(stopped))
	assertNoOverlap(t, e.world, ids)
}

// A connector that cannot renew its leases (NATS unreachable for it)
// disconnects its sessions itself before the leases expire; a peer takes
// them over, and no session is ever connected twice.
func TestFencingBeforeTakeover(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	e := newEnv(t, ttl)
	ids := e.mentorados(5)
	for i, m := range ids {
		e.paired(m, fmt.Sprintf("55219%08d", i))
	}
	a := e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return len(a.c.Owned()) == 5 }, "a owns all")
	b := e.start("b", nil, nil)

	// Cut a off NATS: its renewals fail from now on.
	aconn := aConn(t, a)
	aconn.Close()

	testenv.Eventually(t, 3*ttl, func() bool { return len(b.c.Owned()) == 5 }, "b took over after expiry")
	testenv.Eventually(t, wait, e.allConnected(ids), "sessions connected on b")
	if n := len(a.c.Owned()); n != 0 {
		t.Fatalf("a still holds %d sessions", n)
	}
	assertNoOverlap(t, e.world, ids)
}

// A restarted connector restores every session marked connected.
func TestRestartRestoresSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ids := e.mentorados(6)
	for i, m := range ids[:5] {
		e.paired(m, fmt.Sprintf("55319%08d", i))
	}
	e.world.AddDevice(ids[5], "5531999999999") // paired but desired disconnected: stays off
	a := e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return len(a.c.Owned()) == 5 }, "restored 5")
	a.stop(t)
	for _, m := range ids {
		if e.world.Connected(m) {
			t.Fatalf("%d still connected after stop", m)
		}
		if d := e.desired(m); m != ids[5] && d != "connected" {
			t.Fatalf("shutdown changed desired state of %d to %s", m, d)
		}
	}
	a2 := e.start("a2", nil, nil)
	testenv.Eventually(t, wait, func() bool {
		for _, m := range ids[:5] {
			if s, ok := a2.c.Status(m); !ok || s.Status != event.StatusConnected {
				return false
			}
		}
		return true
	}, "restart restored every session")
	if e.world.Connected(ids[5]) {
		t.Fatal("restored a session whose desired state is disconnected")
	}
	assertNoOverlap(t, e.world, ids)
}

// With NATS down, an incoming message is not acked (handler failure); once
// NATS is back, the redelivered message is stored exactly once.
func TestNATSDownMessageRedeliveredOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := testenv.NATSServerAt(t, -1, dir)
	url := srv.ClientURL()
	e := newEnvAt(t, url, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5541900000001")
	a := e.start("a", nil, nil, func(c *connector.Config) { c.PublishTimeout = 500 * time.Millisecond })
	testenv.Eventually(t, wait, func() bool { s, ok := a.c.Status(m); return ok && s.Status == event.StatusConnected }, "connected")

	p := srvPort(srv)
	srv.Shutdown()
	srv.WaitForShutdown()

	id, acked, err := e.world.InjectText(m, "5541988887777", "while NATS is down")
	if err != nil {
		t.Fatal(err)
	}
	if acked {
		t.Fatal("message acked while NATS was down")
	}
	if e.world.Pending(m) != 1 {
		t.Fatalf("pending %d", e.world.Pending(m))
	}

	testenv.NATSServerAt(t, p, dir)
	testenv.Eventually(t, wait, func() bool { return e.observer.NC.IsConnected() }, "observer reconnected")
	// WhatsApp redelivers (the sim also does at every reconnect).
	testenv.Eventually(t, wait, func() bool { e.world.Redeliver(m); return e.world.Pending(m) == 0 }, "redelivery acked")
	var msgs []event.Envelope
	testenv.Eventually(t, wait, func() bool {
		msgs = e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage))
		return len(msgs) >= 1
	}, "message stored")
	if len(msgs) != 1 || msgs[0].ID != event.MessageEventID(m, id) {
		t.Fatalf("stored %d messages: %+v", len(msgs), msgs)
	}
	a.stop(t) // while NATS is up, so shutdown does not wait for it
}

func srvPort(s *server.Server) int { return s.Addr().(*net.TCPAddr).Port }

func aConn(t *testing.T, r *running) *nats.Conn {
	t.Helper()
	return r.bus.NC
}
