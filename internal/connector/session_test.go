package connector_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// Pairing by QR: codes go to wa.<m>.qr, scanning pairs, the 515 that
// follows is handled, the session ends connected with its device recorded,
// and inbound messages are published.
func TestPairByQRThenReceive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.start("a", nil, nil)

	r := e.mustRequest(m, event.VerbConnect, event.ConnectRequest{Method: event.ConnectQR})
	if r.Error != nil || r.Status == nil {
		t.Fatalf("connect reply %+v", r)
	}
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusQR }, "status qr")
	var qrs []event.Envelope
	testenv.Eventually(t, wait, func() bool { qrs = e.stored(bus.StreamQR, event.QRSubject(m)); return len(qrs) == 1 }, "one stored QR, got %d", len(qrs))
	p, _ := qrs[0].Payload()
	if q := p.(*event.QR); q.Code == "" || q.ExpiresAt.IsZero() {
		t.Fatalf("qr payload %+v", q)
	}

	if err := e.world.ScanQR(m, "5511987654321"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "status connected")
	var jid, phone string
	if err := e.db.Pool.QueryRow(context.Background(), "SELECT device_jid, phone FROM wa_devices WHERE mentorado_id = $1", m).Scan(&jid, &phone); err != nil {
		t.Fatal(err)
	}
	if phone != "5511987654321" || jid == "" {
		t.Fatalf("wa_devices jid=%q phone=%q", jid, phone)
	}
	if d := e.desired(m); d != "connected" {
		t.Fatalf("desired %s", d)
	}
	got := e.statuses(m)
	want := []event.Status{event.StatusConnecting, event.StatusQR, event.StatusPairing, event.StatusConnecting, event.StatusConnected}
	testenv.Eventually(t, wait, func() bool { got = e.statuses(m); return slices.Equal(got, want) }, "connection events %v, want %v", got, want)
	for _, c := range e.connections(m) {
		if c.Connector != "a" { // the connector's instance id, as in its leases
			t.Fatalf("connection event %s names connector %q, want a", c.Status, c.Connector)
		}
	}

	id, acked, err := e.world.InjectText(m, "5521912345678", "olá")
	if err != nil || !acked {
		t.Fatalf("inject: acked=%v err=%v", acked, err)
	}
	msgs := e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage))
	if len(msgs) != 1 || msgs[0].ID != event.MessageEventID(m, id) {
		t.Fatalf("stored messages %+v", msgs)
	}
}

// A number already paired to another mentorado is refused at pre-pair.
func TestPairRefusesNumberOfAnotherMentorado(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ids := e.mentorados(2)
	e.paired(ids[0], "5511911112222")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.world.Connected(ids[0]) }, "first restored")

	e.mustRequest(ids[1], event.VerbConnect, event.ConnectRequest{})
	testenv.Eventually(t, wait, func() bool { return e.status(ids[1]) == event.StatusQR }, "second shows qr")
	if err := e.world.ScanQR(ids[1], "5511911112222"); err == nil {
		t.Fatal("pairing an owned number succeeded")
	}
	testenv.Eventually(t, wait, func() bool { return e.status(ids[1]) == event.StatusDisconnected }, "second disconnected")
	if e.world.Paired(ids[1]) {
		t.Fatal("second mentorado got a device")
	}
	// The phone method is refused before any pairing starts.
	r := e.mustRequest(ids[1], event.VerbConnect, event.ConnectRequest{Method: event.ConnectPhone, Phone: "+55 11 91111-2222"})
	if r.Error == nil || r.Error.Code != event.CodeAlreadyPaired {
		t.Fatalf("phone connect reply %+v", r)
	}
}

// Phone pairing: the reply carries the code, which is also published.
func TestPairByPhoneCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.start("a", nil, nil)
	r := e.mustRequest(m, event.VerbConnect, event.ConnectRequest{Method: event.ConnectPhone, Phone: "11 98888-7777"})
	if r.Error != nil || r.Status == nil || r.Status.PairingCode == "" {
		t.Fatalf("reply %+v", r)
	}
	var qrs []event.Envelope
	testenv.Eventually(t, wait, func() bool { qrs = e.stored(bus.StreamQR, event.QRSubject(m)); return len(qrs) == 1 }, "one stored QR, got %d", len(qrs))
	p, _ := qrs[0].Payload()
	if q := p.(*event.QR); q.PairingCode != r.Status.PairingCode || q.Code != "" {
		t.Fatalf("qr payload %+v", q)
	}
	if err := e.world.EnterPairingCode(m); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "connected")
	if dev, _ := e.world.Device(m); dev.User != "5511988887777" {
		t.Fatalf("device %v", dev)
	}
}

// policyEnv is a connected session whose timers run on a fake clock.
func policyEnv(t *testing.T) (*env, int64, *fakeClock, *running) {
	t.Helper()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900000001")
	clk := newFakeClock()
	r := e.start("a", nil, []connector.Option{connector.WithClock(clk)})
	testenv.Eventually(t, wait, func() bool { s, ok := r.c.Status(m); return ok && s.Status == event.StatusConnected }, "restored")
	return e, m, clk, r
}

func waitState(t *testing.T, r *running, m int64, st event.Status, attempt int) event.StatusReply {
	t.Helper()
	var got event.StatusReply
	testenv.Eventually(t, wait, func() bool {
		s, ok := r.c.Status(m)
		got = s
		return ok && s.Status == st && (attempt == 0 || s.RetryAt != nil)
	}, "state %s (got %+v)", st, got)
	return got
}

// Disconnects back off min(3s·2^n, 30s) for at most 10 attempts, then the
// session reports disconnected and stops wanting to connect.
func TestPolicyBackoffAndAttemptLimit(t *testing.T) {
	t.Parallel()
	e, m, clk, r := policyEnv(t)
	e.world.FailConnect(m, errors.New("network unreachable"))
	if err := e.world.Kick(m, &events.Disconnected{}); err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{3, 6, 12, 24, 30, 30, 30, 30, 30, 30}
	for i, secs := range want {
		d := secs * time.Second
		testenv.Eventually(t, wait, func() bool {
			p := clk.Pending()
			return len(p) == 1 && p[0] == d
		}, "attempt %d: pending timers %v, want [%s]", i+1, clk.Pending(), d)
		s := waitState(t, r, m, event.StatusBackoff, i+1)
		if got := s.RetryAt.Sub(clk.Now()); got != d {
			t.Fatalf("attempt %d: retry_at in %s, want %s", i+1, got, d)
		}
		clk.Advance(d)
	}
	waitState(t, r, m, event.StatusDisconnected, 0)
	if p := clk.Pending(); len(p) != 0 {
		t.Fatalf("timers left after giving up: %v", p)
	}
	if d := e.desired(m); d != "disconnected" {
		t.Fatalf("desired %s after giving up", d)
	}
	// The session's state changes at once; its connection events reach
	// the stream through the session's outbox, a moment later.
	var conns []*event.Connection
	testenv.Eventually(t, wait, func() bool {
		conns = e.connections(m)
		return len(conns) > 0 && conns[len(conns)-1].Status == event.StatusDisconnected
	}, "the last stored connection event never became disconnected")
	if last := conns[len(conns)-1]; last.Reason == "" {
		t.Fatalf("last connection event %+v", last)
	}
	var attempts []int
	for _, c := range conns {
		if c.Status == event.StatusBackoff {
			attempts = append(attempts, c.Attempt)
		}
	}
	if !slices.Equal(attempts, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) {
		t.Fatalf("backoff attempts published %v", attempts)
	}
}

// A reconnect that succeeds resets the attempt counter.
func TestPolicyRecoversAndResets(t *testing.T) {
	t.Parallel()
	e, m, clk, r := policyEnv(t)
	e.world.FailConnect(m, errors.New("down"))
	_ = e.world.Kick(m, &events.Disconnected{})
	testenv.Eventually(t, wait, func() bool { p := clk.Pending(); return len(p) == 1 && p[0] == 3*time.Second }, "first backoff")
	clk.Advance(3 * time.Second)
	testenv.Eventually(t, wait, func() bool { p := clk.Pending(); return len(p) == 1 && p[0] == 6*time.Second }, "second backoff")
	e.world.FailConnect(m, nil)
	clk.Advance(6 * time.Second)
	waitState(t, r, m, event.StatusConnected, 0)
	_ = e.world.Kick(m, &events.Disconnected{})
	testenv.Eventually(t, wait, func() bool { p := clk.Pending(); return len(p) == 1 && p[0] == 3*time.Second }, "backoff starts over at 3s")
}

// 515 reconnects at once, without a backoff.
func TestPolicy515Immediate(t *testing.T) {
	t.Parallel()
	e, m, _, r := policyEnv(t)
	before := len(e.world.Intervals(m))
	if err := e.world.Kick(m, &events.ManualLoginReconnect{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return len(e.world.Intervals(m)) == before+1 && e.world.Connected(m) }, "reconnected")
	waitState(t, r, m, event.StatusConnected, 0)
	if slices.Contains(e.statuses(m), event.StatusBackoff) {
		t.Fatal("515 went through backoff")
	}
}

// 401: device cleared everywhere, logged_out, no reconnect.
func TestPolicyLoggedOutStops(t *testing.T) {
	t.Parallel()
	e, m, clk, r := policyEnv(t)
	if err := e.world.Kick(m, &events.LoggedOut{OnConnect: true, Reason: events.ConnectFailureLoggedOut}); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, m, event.StatusLoggedOut, 0)
	if p := clk.Pending(); len(p) != 0 {
		t.Fatalf("timers after logout: %v", p)
	}
	if d := e.desired(m); d != "none" {
		t.Fatalf("wa_devices row still there (desired %s)", d)
	}
	if e.world.Paired(m) {
		t.Fatal("device still in the store")
	}
	clk.Advance(time.Hour)
	if e.world.Connected(m) {
		t.Fatal("reconnected after logout")
	}
}

// Stream replaced: conflict, desired state off, never reconnects — even
// when a Disconnected from the same socket arrives too.
func TestPolicyStreamReplacedStops(t *testing.T) {
	t.Parallel()
	e, m, clk, r := policyEnv(t)
	cli := e.world.Client(m)
	if err := e.world.Kick(m, &events.StreamReplaced{}); err != nil {
		t.Fatal(err)
	}
	waitState(t, r, m, event.StatusConflict, 0)
	// The server closed the socket first: whatsmeow may also report Disconnected.
	_, _ = e.world.Inject(m, &events.Disconnected{})
	_ = cli
	clk.Advance(time.Hour)
	if p := clk.Pending(); len(p) != 0 {
		t.Fatalf("timers after conflict: %v", p)
	}
	if s, _ := r.c.Status(m); s.Status != event.StatusConflict {
		t.Fatalf("status %s after conflict", s.Status)
	}
	if e.world.Connected(m) {
		t.Fatal("reconnected after stream replaced")
	}
	if d := e.desired(m); d != "disconnected" {
		t.Fatalf("desired %s", d)
	}
}

// Temporary ban: banned with retry_at = expiry, then reconnects.
func TestPolicyTemporaryBanWaits(t *testing.T) {
	t.Parallel()
	e, m, clk, r := policyEnv(t)
	if err := e.world.Kick(m, &events.TemporaryBan{Code: events.TempBanSentToTooManyPeople, Expire: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	s := waitState(t, r, m, event.StatusBanned, 1)
	if got := s.RetryAt.Sub(clk.Now()); got != 10*time.Minute {
		t.Fatalf("retry in %s", got)
	}
	testenv.Eventually(t, wait, func() bool { p := clk.Pending(); return len(p) == 1 && p[0] == 10*time.Minute }, "ban timer")
	clk.Advance(10*time.Minute - time.Second)
	if e.world.Connected(m) {
		t.Fatal("reconnected before the ban expired")
	}
	clk.Advance(time.Second)
	waitState(t, r, m, event.StatusConnected, 0)
}

// Keepalive failures beyond KeepAliveMaxFail drop the socket and back off.
func TestPolicyKeepAliveLoss(t *testing.T) {
	t.Parallel()
	e, m, clk, r := policyEnv(t)
	_ = e.world.Kick(m, &events.KeepAliveTimeout{ErrorCount: 1, LastSuccess: clk.Now().Add(-time.Minute)})
	clk.Advance(0)
	if s, _ := r.c.Status(m); s.Status != event.StatusConnected {
		t.Fatalf("one keepalive miss changed state to %s", s.Status)
	}
	_ = e.world.Kick(m, &events.KeepAliveTimeout{ErrorCount: 9, LastSuccess: clk.Now().Add(-4 * time.Minute)})
	waitState(t, r, m, event.StatusBackoff, 1)
	if e.world.Connected(m) {
		t.Fatal("socket kept after keepalive loss")
	}
}

// Commands: disconnect keeps the device, connect restores it, logout
// clears it.
func TestDisconnectConnectLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900000002")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")

	r := e.mustRequest(m, event.VerbDisconnect, nil)
	if r.Status == nil || r.Status.Status != event.StatusDisconnected || e.world.Connected(m) {
		t.Fatalf("disconnect reply %+v", r)
	}
	if d := e.desired(m); d != "disconnected" {
		t.Fatalf("desired %s", d)
	}
	e.mustRequest(m, event.VerbConnect, event.ConnectRequest{})
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "connected again")
	r = e.mustRequest(m, event.VerbLogout, nil)
	if r.Status == nil || r.Status.Status != event.StatusLoggedOut {
		t.Fatalf("logout reply %+v", r)
	}
	if e.world.Paired(m) || e.desired(m) != "none" {
		t.Fatal("device not cleared by logout")
	}
}

// Send: validation errors are typed; the number is resolved by the server
// (9th digit); the outbound event is published with status sent; a retried
// client id does not send twice.
func TestSend(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ids := e.mentorados(2)
	m := ids[0]
	e.paired(m, "5511900000003")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")

	cases := []struct {
		m    int64
		req  event.SendRequest
		code string
	}{
		{m, event.SendRequest{Phone: "abc", Text: "x"}, event.CodeInvalidPhone},
		{m, event.SendRequest{Phone: "11987654321", Text: string(make([]rune, event.MaxTextRunes+1))}, event.CodeTextTooLong},
		{m, event.SendRequest{Phone: "11987654321", Text: " "}, event.CodeBadRequest},
		{ids[1], event.SendRequest{Phone: "11987654321", Text: "hi"}, event.CodeNotConnected},
	}
	e.world.NotOnWhatsApp("5511955554444")
	e.world.NotOnWhatsApp("551155554444")
	cases = append(cases, struct {
		m    int64
		req  event.SendRequest
		code string
	}{m, event.SendRequest{Phone: "11 95555-4444", Text: "hi"}, event.CodeNotOnWhatsApp})
	for _, tc := range cases {
		r := e.mustRequest(tc.m, event.VerbSend, tc.req)
		if r.Error == nil || r.Error.Code != tc.code {
			t.Errorf("send %+v: reply %+v, want %s", tc.req.Phone, r, tc.code)
		}
	}

	// The account uses the old 8-digit form: the server's answer decides.
	e.world.NotOnWhatsApp("5511987654321")
	req := event.SendRequest{ClientID: "c-1", Phone: "+55 11 98765-4321", Text: "olá"}
	r := e.mustRequest(m, event.VerbSend, req)
	if r.Error != nil || r.Message == nil {
		t.Fatalf("send reply %+v", r)
	}
	if r.Message.ChatJID != "551187654321@s.whatsapp.net" || r.Message.Status != event.MessageSent || r.Message.Direction != event.DirectionOut {
		t.Fatalf("message %+v", r.Message)
	}
	r2 := e.mustRequest(m, event.VerbSend, req)
	if r2.Message == nil || r2.Message.WAID != r.Message.WAID {
		t.Fatalf("retry reply %+v", r2)
	}
	if n := len(e.world.Sent(m)); n != 1 {
		t.Fatalf("sent %d messages, want 1", n)
	}
	msgs := e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage))
	if len(msgs) != 1 || msgs[0].ID != event.MessageEventID(m, r.Message.WAID) {
		t.Fatalf("stored %+v", msgs)
	}
	// A request for a mentorado nobody serves fails fast.
	_ = types.EmptyJID
}

// A request fails fast with no responders when no connector runs.
func TestNoConnectorNoResponders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	_, err := e.request(1, event.VerbStatus, nil)
	if !isNoResponders(err) {
		t.Fatalf("err %v, want no responders", err)
	}
}

// TestCommandForUnknownMentorado: a command naming an id that is not a
// mentorado gets a typed error, and no lease or session is created for it.
func TestCommandForUnknownMentorado(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ids := e.mentorados(1)
	r := e.start("a", nil, nil)
	unknown := ids[0] + 1000
	for _, verb := range []event.Verb{event.VerbStatus, event.VerbConnect} {
		reply := e.mustRequest(unknown, verb, event.ConnectRequest{Method: event.ConnectQR})
		if reply.Error == nil || reply.Error.Code != event.CodeUnknown {
			t.Errorf("%s for unknown mentorado: %+v, want %s", verb, reply, event.CodeUnknown)
		}
	}
	if owned := r.c.Owned(); len(owned) != 0 {
		t.Fatalf("connector owns %v after commands for an unknown mentorado", owned)
	}
	// A real one still works.
	if reply := e.mustRequest(ids[0], event.VerbStatus, nil); reply.Error != nil {
		t.Fatalf("status of a real mentorado: %+v", reply.Error)
	}
}

// TestUnconvertibleEventDeadLettered: a WhatsApp event the contract cannot
// express (here a receipt without message ids) is kept in WA_DLQ with the
// reason before WhatsApp is acked; nothing is dropped silently.
func TestUnconvertibleEventDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900000009")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")

	bad := &events.Receipt{
		MessageSource: types.MessageSource{Chat: types.NewJID("5511912345678", types.DefaultUserServer)},
		Type:          types.ReceiptTypeRead,
		Timestamp:     time.Now(),
	}
	acked, err := e.world.Inject(m, bad)
	if err != nil {
		t.Fatal(err)
	}
	if !acked {
		t.Fatal("handler refused an event it dead-lettered: WhatsApp would redeliver it forever")
	}
	ctx := context.Background()
	s, err := e.observer.JS.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := s.GetLastMsgForSubject(ctx, bus.DLQSubjectPrefix+"connector")
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	if !strings.Contains(raw.Header.Get(bus.HeaderError), "message_ids") ||
		raw.Header.Get(bus.HeaderOriginalSubject) != "whatsmeow:*events.Receipt" {
		t.Fatalf("dead letter headers %v", raw.Header)
	}
	// Offered again (WhatsApp redelivers when unsure): stored once.
	if acked, _ := e.world.Inject(m, bad); !acked {
		t.Fatal("second delivery not acked")
	}
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("%d dead letters, want 1", info.State.Msgs)
	}
}
