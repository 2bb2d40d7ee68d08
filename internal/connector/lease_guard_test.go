package connector_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/connector/sim"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// stallProxy forwards TCP to target and can stall every connection (both
// directions) without closing it: bytes written meanwhile wait in the
// proxy and the kernel and are delivered, in order, when it resumes — a
// network partition, a suspended VM or a long GC pause as NATS sees it.
type stallProxy struct {
	addr   string
	mu     sync.Mutex
	cond   *sync.Cond
	paused bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{addr: ln.Addr().String()}
	p.cond = sync.NewCond(&p.mu)
	var conns []net.Conn
	var cmu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		p.resume()
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, c, s)
			cmu.Unlock()
			go p.pipe(s, c)
			go p.pipe(c, s)
		}
	}()
	return p
}

func (p *stallProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.paused {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *stallProxy) pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

func (p *stallProxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
	p.cond.Broadcast()
}

// recordingFactory remembers the clients it made.
type recordingFactory struct {
	connector.Factory
	mu      sync.Mutex
	clients []connector.Client
}

func (f *recordingFactory) NewClient(ctx context.Context, p connector.ClientParams) (connector.Client, error) {
	c, err := f.Factory.NewClient(ctx, p)
	if err == nil {
		f.mu.Lock()
		f.clients = append(f.clients, c)
		f.mu.Unlock()
	}
	return c, err
}

func (f *recordingFactory) connected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.clients {
		if c.IsConnected() {
			n++
		}
	}
	return n
}

// TestStalledConnectorComesBack: connector a stalls past the lease TTL
// (its NATS traffic held, not dropped), b takes its sessions over, then
// a's traffic resumes — including the lease renewals a wrote while
// stalled. a must not get any session back: its stale renewals must fail
// (revision-checked), b keeps every lease and session, a holds no
// connected client and publishes nothing more for those sessions.
func TestStalledConnectorComesBack(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	e := newEnv(t, ttl)
	ids := e.mentorados(3)
	for i, m := range ids {
		e.paired(m, fmt.Sprintf("55219777%05d", i))
	}
	px := newStallProxy(t, strings.TrimPrefix(e.natsURL, "nats://"))
	fa := &recordingFactory{Factory: &sim.Factory{W: e.world}}
	direct := e.natsURL
	e.natsURL = "nats://" + px.addr
	a := e.start("a", fa, nil)
	e.natsURL = direct
	testenv.Eventually(t, wait, func() bool { return len(a.c.Owned()) == len(ids) }, "a owns all")
	testenv.Eventually(t, wait, func() bool { return fa.connected() == len(ids) }, "a's sessions connected")
	b := e.start("b", nil, nil)
	aMessages := counterSum(t, a.c, "zapbus_connector_events_published_total", "message")

	px.pause()
	testenv.Eventually(t, 3*ttl, func() bool { return len(b.c.Owned()) == len(ids) }, "b took over while a is stalled")
	testenv.Eventually(t, wait, e.allConnected(ids), "sessions connected on b")
	if n := len(a.c.Owned()); n != 0 {
		t.Fatalf("stalled a still holds %d sessions", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	kv, err := e.observer.JS.KeyValue(ctx, bus.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	revs := map[int64]uint64{}
	for _, m := range ids {
		en, err := kv.Get(ctx, fmt.Sprint(m))
		if err != nil || string(en.Value()) != "b" {
			t.Fatalf("lease %d before a resumes: %v %v", m, en, err)
		}
		revs[m] = en.Revision()
	}

	px.resume()
	// Everything a wrote while stalled reaches the server before this
	// sentinel, written last on a's connection, is acknowledged.
	akv, err := a.bus.JS.KeyValue(ctx, bus.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := akv.Put(ctx, "guard-sentinel", []byte("a")); err != nil {
		t.Fatalf("a's traffic after resuming: %v", err)
	}
	_ = akv.Delete(ctx, "guard-sentinel")
	// b renews every lease at least once more after a's writes landed.
	testenv.Eventually(t, wait, func() bool {
		for _, m := range ids {
			en, err := kv.Get(ctx, fmt.Sprint(m))
			if err != nil || en.Revision() <= revs[m]+1 {
				return false
			}
		}
		return true
	}, "b renewed after a resumed")
	for _, m := range ids {
		hist, err := kv.History(ctx, fmt.Sprint(m))
		if err != nil {
			t.Fatal(err)
		}
		for _, en := range hist {
			if en.Revision() > revs[m] && (en.Operation() != jetstream.KeyValuePut || string(en.Value()) != "b") {
				t.Errorf("lease %d after a resumed: revision %d %s %q (a stale renewal overwrote b's lease)", m, en.Revision(), en.Operation(), en.Value())
			}
		}
	}
	if got := b.c.Owned(); len(got) != len(ids) {
		t.Fatalf("b holds %d of %d sessions after a resumed", len(got), len(ids))
	}
	if n := len(a.c.Owned()); n != 0 {
		t.Fatalf("a took back %d sessions", n)
	}
	if n := fa.connected(); n != 0 {
		t.Fatalf("a has %d connected clients", n)
	}
	// New inbound messages are published by b alone.
	for _, m := range ids {
		if _, acked, err := e.world.InjectText(m, "5511988880000", "after the stall"); err != nil || !acked {
			t.Fatalf("inject into %d: acked %v, %v", m, acked, err)
		}
	}
	if got := counterSum(t, a.c, "zapbus_connector_events_published_total", "message"); got != aMessages {
		t.Fatalf("a published %v messages after losing its leases", got-aMessages)
	}
	for _, m := range ids {
		if s, ok := b.c.Status(m); !ok || s.Status != event.StatusConnected {
			t.Fatalf("session %d on b: %+v %v", m, s, ok)
		}
	}
	assertNoOverlap(t, e.world, ids)
	// What a wrote while stalled (its "disconnected: lease lost" from
	// fencing) reaches the server after b's "connected", but it is stored
	// only if no newer connection state was (bus.PublishIfLatest): the
	// last stored connection event, which live streams show last, is b's.
	for _, m := range ids {
		stored := e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeConnection))
		if len(stored) == 0 {
			t.Fatalf("session %d: no connection events", m)
		}
		p, err := stored[len(stored)-1].Payload()
		if err != nil {
			t.Fatal(err)
		}
		if c := p.(*event.Connection); c.Status != event.StatusConnected {
			t.Fatalf("session %d: last stored connection event is %s (%s), after b's connected", m, c.Status, c.Reason)
		}
	}
}
