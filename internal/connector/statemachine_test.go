package connector

// The session state machine alone: a session wired to in-memory fakes
// (publisher, wa_devices, client factory) and a hand-driven clock, no
// Postgres, no NATS. Events reach it the way whatsmeow delivers them,
// through the handler the session registers on its client.

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
)

// memPublisher keeps what a session publishes.
type memPublisher struct {
	mu   sync.Mutex
	envs []event.Envelope
	dlq  []string
}

var _ publisher = (*memPublisher)(nil)

func (p *memPublisher) Publish(_ context.Context, env event.Envelope) (*jetstream.PubAck, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.envs = append(p.envs, env)
	return &jetstream.PubAck{Sequence: uint64(len(p.envs))}, nil
}

func (p *memPublisher) PublishIfLatest(ctx context.Context, env event.Envelope, _ uint64) (*jetstream.PubAck, error) {
	return p.Publish(ctx, env)
}

func (p *memPublisher) DeadLetterFrom(_ context.Context, _, id, _ string, _ []byte, _ error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dlq = append(p.dlq, id)
	return nil
}

// connections lists the published connection events as "status: reason".
func (p *memPublisher) connections(t *testing.T) []string {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, env := range p.envs {
		if env.Type != event.TypeConnection {
			continue
		}
		pl, err := env.Payload()
		if err != nil {
			t.Fatal(err)
		}
		c := pl.(*event.Connection)
		out = append(out, string(c.Status)+": "+c.Reason)
	}
	return out
}

// memDevices is wa_devices for one mentorado.
type memDevices struct {
	mu      sync.Mutex
	desired string
	jid     types.JID
	deleted bool
	owners  map[string]int64 // phone → mentorado
}

var _ deviceStore = (*memDevices)(nil)

func (d *memDevices) setDesired(_ context.Context, _ int64, desired string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.desired = desired
	return nil
}

func (d *memDevices) paired(_ context.Context, _ int64, jid types.JID, _ string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.jid, d.desired = jid, desiredConnected
	return nil
}

func (d *memDevices) phoneOwner(_ context.Context, phone string, m int64) (int64, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	owner, ok := d.owners[phone]
	return owner, ok && owner != m, nil
}

func (d *memDevices) delete(context.Context, int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deleted, d.desired, d.jid = true, "", types.EmptyJID
	return nil
}

func (d *memDevices) state() (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.desired, d.deleted
}

// fakeClient is a whatsmeow client that only records calls; the test
// plays WhatsApp by calling its handler.
type fakeClient struct {
	mu          sync.Mutex
	handler     whatsmeow.EventHandlerWithSuccessStatus
	connects    int
	disconnects int
}

var _ Client = (*fakeClient)(nil)

func (c *fakeClient) Connect() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connects++
	return nil
}

func (c *fakeClient) Disconnect() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.disconnects++
}

func (c *fakeClient) Logout(context.Context) error { return nil }
func (c *fakeClient) IsConnected() bool            { return true }
func (c *fakeClient) IsLoggedIn() bool             { return true }
func (c *fakeClient) AddEventHandlerWithSuccessStatus(h whatsmeow.EventHandlerWithSuccessStatus) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handler = h
	return 1
}
func (c *fakeClient) RemoveEventHandler(uint32) bool { return true }
func (c *fakeClient) GetQRChannel(context.Context) (<-chan whatsmeow.QRChannelItem, error) {
	return nil, errors.New("not in this test")
}
func (c *fakeClient) PairPhone(context.Context, string, bool, whatsmeow.PairClientType, string) (string, error) {
	return "", errors.New("not in this test")
}
func (c *fakeClient) GetGroupInfo(context.Context, types.JID) (*types.GroupInfo, error) {
	return nil, whatsmeow.ErrNotInGroup
}
func (c *fakeClient) IsOnWhatsApp(context.Context, []string) ([]types.IsOnWhatsAppResponse, error) {
	return nil, nil
}
func (c *fakeClient) GenerateMessageID() types.MessageID { return "ID" }
func (c *fakeClient) SendMessage(context.Context, types.JID, *waE2E.Message, ...whatsmeow.SendRequestExtra) (whatsmeow.SendResponse, error) {
	return whatsmeow.SendResponse{}, nil
}

func (c *fakeClient) connectCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connects
}

// deliver hands evt to the session as whatsmeow would and returns the ack.
func (c *fakeClient) deliver(evt any) bool {
	c.mu.Lock()
	h := c.handler
	c.mu.Unlock()
	return h(evt)
}

// fakeFactory makes fakeClients and records deleted devices.
type fakeFactory struct {
	mu      sync.Mutex
	clients []*fakeClient
	deleted []types.JID
}

var _ Factory = (*fakeFactory)(nil)

func (f *fakeFactory) NewClient(context.Context, ClientParams) (Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := &fakeClient{}
	f.clients = append(f.clients, c)
	return c, nil
}

func (f *fakeFactory) DeleteDevice(_ context.Context, jid types.JID) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, jid)
	return nil
}

func (f *fakeFactory) last() *fakeClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clients[len(f.clients)-1]
}

func (f *fakeFactory) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.clients)
}

// machine is a restored, paired session under test.
type machine struct {
	t       *testing.T
	s       *session
	clock   *FakeClock
	pub     *memPublisher
	devices *memDevices
	factory *fakeFactory
	metrics *metrics
}

const smMentorado = 7

var smJID = types.NewJID("5511999990000", types.DefaultUserServer)

func newMachine(t *testing.T, pol Policy) *machine {
	t.Helper()
	return newMachineWith(t, pol, nil)
}

// newMachineWith is newMachine with the session's deps adjusted by edit.
func newMachineWith(t *testing.T, pol Policy, edit func(*sessionDeps)) *machine {
	t.Helper()
	pol.Jitter = -1
	m := &machine{
		t:       t,
		clock:   NewFakeClock(),
		pub:     &memPublisher{},
		devices: &memDevices{desired: desiredConnected, jid: smJID},
		factory: &fakeFactory{},
		metrics: newMetrics(),
	}
	d := sessionDeps{
		cfg:       Config{Policy: pol}.WithDefaults(15 * time.Second),
		clock:     m.clock,
		log:       zerolog.New(zerolog.NewTestWriter(t)),
		metrics:   m.metrics,
		factory:   m.factory,
		devices:   m.devices,
		publisher: m.pub,
		convert: func(context.Context, int64, Client, any) ([]event.Envelope, error) {
			return nil, nil
		},
	}
	if edit != nil {
		edit(&d)
	}
	m.s = newSession(d, smMentorado, deviceRow{JID: smJID, Phone: smJID.User, Desired: desiredConnected})
	ctx, cancel := context.WithCancel(context.Background())
	m.s.start(ctx)
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		m.s.stop(sctx, "test over")
		cancel()
	})
	m.do(m.s.restore)
	return m
}

// do runs f on the session goroutine and waits for it.
func (m *machine) do(f func(context.Context)) {
	m.t.Helper()
	if _, err := call(context.Background(), m.s, func(ctx context.Context) struct{} { f(ctx); return struct{}{} }); err != nil {
		m.t.Fatal(err)
	}
}

// deliver hands evt to the current client and waits until the session
// goroutine has handled it.
func (m *machine) deliver(evt any) bool {
	m.t.Helper()
	ack := m.factory.last().deliver(evt)
	m.do(func(context.Context) {})
	return ack
}

func (m *machine) status() event.StatusReply { return m.s.snapshot().reply }

// wantConnections waits until the published connection events are want.
func (m *machine) wantConnections(want ...string) {
	m.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := m.pub.connections(m.t)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("connection events:\n got  %q\n want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStateMachineConnectsAndBacksOff(t *testing.T) {
	m := newMachine(t, Policy{MaxAttempts: 2})
	if got := m.status().Status; got != event.StatusConnecting {
		t.Fatalf("restored session is %s, want connecting", got)
	}
	m.deliver(&events.Connected{})
	m.wantConnections("connecting: ", "connected: ")

	// Connection lost: backoff 3 s, then a reconnect on the same client.
	m.deliver(&events.Disconnected{})
	st := m.status()
	if st.Status != event.StatusBackoff || st.RetryAt == nil || !st.RetryAt.Equal(m.clock.Now().Add(3*time.Second)) {
		t.Fatalf("after disconnect: %+v", st)
	}
	if got := m.clock.Pending(); !slices.Equal(got, []time.Duration{3 * time.Second}) {
		t.Fatalf("pending timers %v, want [3s]", got)
	}
	connects := m.factory.last().connectCount()
	m.clock.Advance(3 * time.Second)
	m.do(func(context.Context) {})
	if got := m.status().Status; got != event.StatusConnecting {
		t.Fatalf("after the backoff delay: %s, want connecting", got)
	}
	testWait(t, func() bool { return m.factory.last().connectCount() > connects }, "no reconnect after the backoff delay")

	// Two more failures: the second exceeds MaxAttempts and gives up.
	m.deliver(&events.Disconnected{})
	if st := m.status(); st.Status != event.StatusBackoff {
		t.Fatalf("second failure: %+v", st)
	}
	if got := m.clock.Pending(); !slices.Contains(got, 6*time.Second) {
		t.Fatalf("second backoff should wait 6s, pending %v", got)
	}
	m.clock.Advance(6 * time.Second)
	m.do(func(context.Context) {})
	m.deliver(&events.Disconnected{})
	st = m.status()
	if st.Status != event.StatusDisconnected || !strings.HasPrefix(st.Reason, "gave up after 2 attempts") {
		t.Fatalf("third failure: %+v", st)
	}
	if d, _ := m.devices.state(); d != desiredDisconnected {
		t.Fatalf("desired state %q after giving up, want disconnected", d)
	}
	m.wantConnections("connecting: ", "connected: ",
		"backoff: connection lost", "connecting: connection lost",
		"backoff: connection lost", "connecting: connection lost",
		"disconnected: gave up after 2 attempts: connection lost")
	if n := counterValue(t, m.metrics, "reconnects", map[string]string{"reason": "backoff"}); n != 2 {
		t.Fatalf("backoff reconnects counted %v, want 2", n)
	}
}

func TestStateMachineConnectedResetsAttempts(t *testing.T) {
	m := newMachine(t, Policy{})
	m.deliver(&events.Connected{})
	m.deliver(&events.Disconnected{})
	m.clock.Advance(3 * time.Second)
	m.deliver(&events.Connected{})
	m.deliver(&events.Disconnected{})
	// Attempt 1 again, not 2: the delay is the base delay.
	if got := m.clock.Pending(); !slices.Equal(got, []time.Duration{3 * time.Second}) {
		t.Fatalf("pending %v, want [3s]", got)
	}
}

func TestStateMachineLoggedOut(t *testing.T) {
	m := newMachine(t, Policy{})
	m.deliver(&events.Connected{})
	m.deliver(&events.LoggedOut{OnConnect: false})
	st := m.status()
	if st.Status != event.StatusLoggedOut || st.JID != "" || st.Reason != "logged out: device removed (stream error 401)" {
		t.Fatalf("after logout: %+v", st)
	}
	if _, deleted := m.devices.state(); !deleted {
		t.Fatal("wa_devices row not deleted")
	}
	if len(m.factory.deleted) != 1 || m.factory.deleted[0] != smJID {
		t.Fatalf("device store deletes %v", m.factory.deleted)
	}
	if got := m.clock.Pending(); len(got) != 0 {
		t.Fatalf("a logged-out session schedules nothing, pending %v", got)
	}
	// The dropped client's later events change nothing.
	if !m.factory.last().deliver(&events.Connected{}) {
		t.Fatal("an event of a dropped client must still be acked")
	}
	m.do(func(context.Context) {})
	if got := m.status().Status; got != event.StatusLoggedOut {
		t.Fatalf("stale Connected moved the session to %s", got)
	}
	m.wantConnections("connecting: ", "connected: ", "logged_out: logged out: device removed (stream error 401)")
}

func TestStateMachineStreamReplaced(t *testing.T) {
	m := newMachine(t, Policy{})
	m.deliver(&events.Connected{})
	m.deliver(&events.StreamReplaced{})
	if st := m.status(); st.Status != event.StatusConflict {
		t.Fatalf("after stream replaced: %+v", st)
	}
	if d, deleted := m.devices.state(); d != desiredDisconnected || deleted {
		t.Fatalf("desired %q deleted %v: a replaced stream keeps the device but stops wanting it", d, deleted)
	}
	if got := m.clock.Pending(); len(got) != 0 {
		t.Fatalf("no reconnect after stream replaced, pending %v", got)
	}
	m.wantConnections("connecting: ", "connected: ", "conflict: stream replaced: this device connected elsewhere")
}

func TestStateMachineTemporaryBan(t *testing.T) {
	m := newMachine(t, Policy{})
	m.deliver(&events.Connected{})
	m.deliver(&events.TemporaryBan{Code: events.TempBanSentToTooManyPeople, Expire: 2 * time.Hour})
	st := m.status()
	if st.Status != event.StatusBanned || st.RetryAt == nil || !st.RetryAt.Equal(m.clock.Now().Add(2*time.Hour)) {
		t.Fatalf("after ban: %+v", st)
	}
	connects := m.factory.last().connectCount()
	m.clock.Advance(2 * time.Hour)
	m.do(func(context.Context) {})
	if got := m.status().Status; got != event.StatusConnecting {
		t.Fatalf("after the ban expired: %s", got)
	}
	testWait(t, func() bool { return m.factory.last().connectCount() > connects }, "no reconnect after the ban")

	// A ban without an expiry waits the policy's default.
	m.deliver(&events.ConnectFailure{Reason: events.ConnectFailureTempBanned})
	if got := m.clock.Pending(); !slices.Contains(got, time.Hour) {
		t.Fatalf("default ban wait: pending %v, want 1h", got)
	}
}

func TestStateMachine515ReconnectsAtOnce(t *testing.T) {
	m := newMachine(t, Policy{})
	m.deliver(&events.Connected{})
	connects := m.factory.last().connectCount()
	m.deliver(&events.ManualLoginReconnect{})
	if got := m.status().Status; got != event.StatusConnecting {
		t.Fatalf("after 515: %s", got)
	}
	testWait(t, func() bool { return m.factory.last().connectCount() > connects }, "no reconnect after 515")
	if m.factory.count() != 1 {
		t.Fatalf("515 reconnects the same client, made %d", m.factory.count())
	}
}

func TestStateMachineKeepAlive(t *testing.T) {
	m := newMachine(t, Policy{})
	m.deliver(&events.Connected{})
	m.deliver(&events.KeepAliveTimeout{LastSuccess: m.clock.Now().Add(-time.Minute)})
	if got := m.status().Status; got != event.StatusConnected {
		t.Fatalf("a short keepalive gap must not reconnect, got %s", got)
	}
	m.deliver(&events.KeepAliveTimeout{LastSuccess: m.clock.Now().Add(-4 * time.Minute)})
	if st := m.status(); st.Status != event.StatusBackoff || st.Reason != "keepalive timeout" {
		t.Fatalf("after a long keepalive gap: %+v", st)
	}
}

func TestStateMachineCountsIgnoredEvents(t *testing.T) {
	m := newMachine(t, Policy{})
	m.deliver(&events.Connected{})
	type fromTheFuture struct{}
	for range 3 {
		if !m.deliver(&events.HistorySync{}) || !m.deliver(&fromTheFuture{}) {
			t.Fatal("ignored and unknown events are acked")
		}
	}
	if n := counterValue(t, m.metrics, "waEventsIgnored", map[string]string{"type": "*events.HistorySync", "decision": "ignored"}); n != 3 {
		t.Fatalf("ignored HistorySync counted %v, want 3", n)
	}
	if n := counterValue(t, m.metrics, "waEventsIgnored", map[string]string{"type": "*connector.fromTheFuture", "decision": "unknown"}); n != 3 {
		t.Fatalf("unknown event counted %v, want 3", n)
	}
	if got := m.status().Status; got != event.StatusConnected {
		t.Fatalf("ignored events changed the state to %s", got)
	}
	m.wantConnections("connecting: ", "connected: ")
}

// testWait polls cond until it holds, for what runs off the session
// goroutine (Connect calls).
func testWait(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// counterValue reads a counter of the session's metrics by its labels.
func counterValue(t *testing.T, m *metrics, field string, labels map[string]string) float64 {
	t.Helper()
	names := map[string]string{
		"reconnects":      "zapbus_connector_reconnects_total",
		"waEventsIgnored": "zapbus_connector_wa_events_ignored_total",
	}
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != names[field] {
			continue
		}
		for _, metric := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range metric.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return metric.GetCounter().GetValue()
			}
		}
	}
	return 0
}
