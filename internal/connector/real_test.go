package connector_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/wafake"
)

// Contract tests: the real *whatsmeow.Client against the protocol-level
// fake WhatsApp server (internal/wafake), with the device store in Postgres.

type realClients struct {
	mu   sync.Mutex
	byMe map[string]*whatsmeow.Client // by phone, once paired
	all  []*whatsmeow.Client
}

func (rc *realClients) add(cli *whatsmeow.Client) {
	rc.mu.Lock()
	rc.all = append(rc.all, cli)
	rc.mu.Unlock()
}

// of returns the newest client whose device is phone.
func (rc *realClients) of(phone string) *whatsmeow.Client {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i := len(rc.all) - 1; i >= 0; i-- {
		if id := rc.all[i].Store.ID; id != nil && id.User == phone {
			return rc.all[i]
		}
	}
	return nil
}

type realEnv struct {
	*env
	srv     *wafake.Server
	clients *realClients
}

func newRealEnv(t testing.TB, e *env) *realEnv {
	t.Helper()
	srv, err := wafake.NewServer(testenv.Logger(t).Level(1).With().Str("side", "fake").Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return &realEnv{env: e, srv: srv, clients: &realClients{}}
}

func (re *realEnv) factory(t testing.TB) *connector.WhatsmeowFactory {
	t.Helper()
	f, err := connector.NewWhatsmeowFactory(context.Background(), re.db, re.log.Level(1), func(cli *whatsmeow.Client) {
		re.srv.Configure(cli)
		re.clients.add(cli)
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// pair connects m by QR and scans the first code as phone.
func (re *realEnv) pair(t testing.TB, m int64, phone string) {
	t.Helper()
	r := re.mustRequest(m, event.VerbConnect, event.ConnectRequest{Method: event.ConnectQR})
	if r.Error != nil {
		t.Fatalf("connect: %+v", r.Error)
	}
	var code string
	testenv.Eventually(t, wait, func() bool {
		qrs := re.stored(bus.StreamQR, event.QRSubject(m))
		if len(qrs) == 0 {
			return false
		}
		p, _ := qrs[len(qrs)-1].Payload()
		code = p.(*event.QR).Code
		return code != ""
	}, "QR published for %d", m)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := re.srv.ScanQR(ctx, code, phone); err != nil {
		t.Fatalf("scan: %v", err)
	}
	// A fresh device uploads 812 prekeys before it is connected, which
	// under -race on a loaded 2-core machine has taken 13 s: a bound well
	// above that, not a timing assertion.
	testenv.Eventually(t, 4*wait, func() bool { return re.status(m) == event.StatusConnected }, "%d connected after pairing", m)
}

func (re *realEnv) whatsmeowDevices(t *testing.T, phone string) int {
	t.Helper()
	var n int
	if err := re.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM whatsmeow_device WHERE jid LIKE $1", phone+"%").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Pair by QR, receive (published, then receipted), send (the contact
// decrypts it; its delivery receipt becomes a receipt event), restart the
// connector (the session is restored from the Postgres device store).
func TestRealPairReceiveSendRestart(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, 2*time.Second))
	m := re.mentorados(1)[0]
	const me, them = "5511955550001", "5511966660001"
	a := re.start("a", re.factory(t), nil)
	re.pair(t, m, me)
	if d := re.desired(m); d != "connected" {
		t.Fatalf("desired %s", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	contact := re.srv.Contact(them)
	id, err := contact.SendText(ctx, me, "oi, tudo bem?")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := re.srv.WaitReceipt(ctx, id); err != nil {
		t.Fatalf("no receipt for inbound message: %v", err)
	}
	msgs := re.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage))
	if len(msgs) != 1 || msgs[0].ID != event.MessageEventID(m, id) {
		t.Fatalf("stored %+v", msgs)
	}
	p, _ := msgs[0].Payload()
	if in := p.(*event.Message); in.Text != "oi, tudo bem?" || in.Direction != event.DirectionIn || in.Phone != them {
		t.Fatalf("inbound %+v", in)
	}

	r := re.mustRequest(m, event.VerbSend, event.SendRequest{ClientID: "x1", Phone: them, Text: "tudo ótimo"})
	if r.Error != nil || r.Message == nil {
		t.Fatalf("send: %+v", r)
	}
	got, err := contact.WaitMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != r.Message.WAID || got.Text != "tudo ótimo" {
		t.Fatalf("contact got %+v, sent %+v", got, r.Message)
	}
	if err := contact.SendReceipt(ctx, me, got.ID, ""); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool {
		for _, env := range re.stored(bus.StreamEvents, event.EventSubject(m, event.TypeReceipt)) {
			p, _ := env.Payload()
			if rc := p.(*event.Receipt); rc.Kind == event.ReceiptDelivered && rc.MessageIDs[0] == got.ID {
				return true
			}
		}
		return false
	}, "delivery receipt event")

	a.stop(t)
	qrsBefore := len(re.stored(bus.StreamQR, event.QRSubject(m)))
	re.start("a2", re.factory(t), nil)
	testenv.Eventually(t, wait, func() bool { return re.status(m) == event.StatusConnected }, "restored after restart")
	if n := len(re.stored(bus.StreamQR, event.QRSubject(m))); n != qrsBefore {
		t.Fatalf("restore asked for a QR code (%d → %d)", qrsBefore, n)
	}
}

// With NATS down the handler fails, so whatsmeow sends no receipt; once
// NATS is back, WhatsApp's redelivery is published exactly once.
func TestRealNATSDownNoReceiptThenRedelivered(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := testenv.NATSServerAt(t, -1, dir)
	// A long lease TTL: this test is about the message path, not fencing.
	re := newRealEnv(t, newEnvAt(t, ns.ClientURL(), 30*time.Second))
	m := re.mentorados(1)[0]
	const me, them = "5511955550002", "5511966660002"
	a := re.start("a", re.factory(t), nil, func(c *connector.Config) { c.PublishTimeout = 300 * time.Millisecond })
	re.pair(t, m, me)

	port := srvPort(ns)
	ns.Shutdown()
	ns.WaitForShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	id, err := re.srv.Contact(them).SendText(ctx, me, "enquanto o NATS está fora")
	if err != nil {
		t.Fatal(err)
	}
	failures := func() float64 { return counterSum(t, a.c, "zapbus_connector_publish_failures_total", "message") }
	testenv.Eventually(t, wait, func() bool { return re.srv.Deliveries(id) >= 1 && failures() >= 1 }, "delivered and publish failed")
	if re.srv.ReceiptSent(id) {
		t.Fatal("receipt sent although the publish failed")
	}

	testenv.NATSServerAt(t, port, dir)
	testenv.Eventually(t, wait, func() bool { return a.bus.NC.IsConnected() && re.observer.NC.IsConnected() }, "NATS back")
	if err := re.srv.Redeliver(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := re.srv.WaitReceipt(ctx, id); err != nil {
		t.Fatalf("no receipt after redelivery: %v", err)
	}
	msgs := re.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage))
	if len(msgs) != 1 || msgs[0].ID != event.MessageEventID(m, id) {
		t.Fatalf("stored %d: %+v", len(msgs), msgs)
	}
	p, _ := msgs[0].Payload()
	if p.(*event.Message).Text != "enquanto o NATS está fora" {
		t.Fatalf("redelivered text %+v", p)
	}
	a.stop(t)
}

// The server's failures, as the fake sends them and as whatsmeow's own
// failure handlers report them (DangerousInternals), drive the runtime.
func TestRealFailures(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, 2*time.Second))
	ids := re.mentorados(7)
	phones := make([]string, len(ids))
	a := re.start("a", re.factory(t), nil)
	for i, m := range ids {
		phones[i] = fmt.Sprintf("55119555510%02d", i)
		re.pair(t, m, phones[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	state := func(m int64) event.StatusReply { s, _ := a.c.Status(m); return s }

	t.Run("515 reconnects at once", func(t *testing.T) {
		m, p := ids[0], phones[0]
		before := re.srv.Count("out:success")
		if err := re.srv.Account(p).Kick(wafake.Kick{Kind: wafake.Kick515}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, wait, func() bool { return re.srv.Count("out:success") > before && state(m).Status == event.StatusConnected }, "logged in again")
		for _, c := range re.connections(m) {
			if c.Status == event.StatusBackoff {
				t.Fatal("515 went through backoff")
			}
		}
	})
	t.Run("replaced is terminal", func(t *testing.T) {
		m, p := ids[1], phones[1]
		if err := re.srv.Account(p).Kick(wafake.Kick{Kind: wafake.KickReplaced, CloseAfter: true}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, wait, func() bool { return state(m).Status == event.StatusConflict }, "conflict")
		if re.desired(m) != "disconnected" {
			t.Fatal("desired state still connected after conflict")
		}
		if re.srv.Account(p).Connected() {
			t.Fatal("client reconnected after replaced")
		}
	})
	t.Run("401 logs out and deletes the device", func(t *testing.T) {
		m, p := ids[2], phones[2]
		if err := re.srv.Account(p).Kick(wafake.Kick{Kind: wafake.Kick401}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, wait, func() bool { return state(m).Status == event.StatusLoggedOut }, "logged out")
		if re.desired(m) != "none" || re.whatsmeowDevices(t, p) != 0 {
			t.Fatalf("device left behind: wa_devices=%s whatsmeow=%d", re.desired(m), re.whatsmeowDevices(t, p))
		}
	})
	t.Run("ban waits for the expiry then reconnects", func(t *testing.T) {
		m, p := ids[3], phones[3]
		if err := re.srv.Account(p).Kick(wafake.Kick{Kind: wafake.KickBan, BanExpiry: 2 * time.Second}); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, wait, func() bool { return state(m).Status == event.StatusBanned }, "banned")
		if s := state(m); s.RetryAt == nil || !strings.Contains(s.Reason, "banned") {
			t.Fatalf("ban state %+v", s)
		}
		testenv.Eventually(t, wait, func() bool { return state(m).Status == event.StatusConnected }, "connected after the ban")
	})
	t.Run("internals: connect failure 401", func(t *testing.T) {
		m, p := ids[4], phones[4]
		cli := re.clients.of(p)
		cli.DangerousInternals().HandleConnectFailure(ctx, &waBinary.Node{Tag: "failure", Attrs: waBinary.Attrs{"reason": "401"}})
		testenv.Eventually(t, wait, func() bool { return state(m).Status == event.StatusLoggedOut }, "logged out")
		if re.desired(m) != "none" || re.whatsmeowDevices(t, p) != 0 {
			t.Fatal("device left behind")
		}
	})
	t.Run("internals: connect failure 402", func(t *testing.T) {
		m, p := ids[5], phones[5]
		cli := re.clients.of(p)
		cli.DangerousInternals().HandleConnectFailure(ctx, &waBinary.Node{Tag: "failure", Attrs: waBinary.Attrs{"reason": "402", "code": "102", "expire": "3600"}})
		testenv.Eventually(t, wait, func() bool { return state(m).Status == event.StatusBanned }, "banned")
		if s := state(m); s.RetryAt == nil || s.RetryAt.Sub(s.Since) < 59*time.Minute {
			t.Fatalf("ban state %+v", s)
		}
	})
	t.Run("internals: connect failure 409 backs off", func(t *testing.T) {
		m, p := ids[6], phones[6]
		cli := re.clients.of(p)
		cli.DangerousInternals().HandleConnectFailure(ctx, &waBinary.Node{Tag: "failure", Attrs: waBinary.Attrs{"reason": "409"}})
		testenv.Eventually(t, wait, func() bool { return state(m).Status == event.StatusBackoff }, "backoff")
		if s := state(m); !strings.Contains(s.Reason, "409") {
			t.Fatalf("reason %q", s.Reason)
		}
		testenv.Eventually(t, wait, func() bool { return state(m).Status == event.StatusConnected }, "reconnected after backoff")
	})
	t.Run("internals: stream error replaced", func(t *testing.T) {
		m, p := ids[6], phones[6]
		cli := re.clients.of(p)
		cli.DangerousInternals().HandleStreamError(ctx, &waBinary.Node{Tag: "stream:error", Content: []waBinary.Node{{Tag: "conflict", Attrs: waBinary.Attrs{"type": "replaced"}}}})
		testenv.Eventually(t, wait, func() bool { return state(m).Status == event.StatusConflict }, "conflict")
	})
}

// counterSum reads a counter of the connector's registry for one label value.
func counterSum(t testing.TB, c *connector.Connector, name, label string) float64 {
	t.Helper()
	mfs, err := c.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
