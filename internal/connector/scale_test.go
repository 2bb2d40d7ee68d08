package connector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
)

// scaleSessionsEnv overrides how many sessions TestRealHundredSessions runs.
const scaleSessionsEnv = "ZAPBUS_SCALE_SESSIONS"

// scaleConcurrency bounds the sessions paired (and messaged) at once, so a
// 2-core CI machine copes.
const scaleConcurrency = 10

// scaleWait bounds one step of one session (a command, a QR code, a login,
// a message, a receipt) while the other sessions keep the machine busy.
const scaleWait = 90 * time.Second

func scaleSessions(t *testing.T) int {
	t.Helper()
	v := os.Getenv(scaleSessionsEnv)
	if v == "" {
		return 100
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", scaleSessionsEnv, v)
	}
	return n
}

// scaleBoard follows the QR codes and connection events the connector
// publishes, for every mentorado at once, through one core NATS
// subscription each, so waiting costs no polling round trips. Exactly-once
// is asserted from the streams, not from here (a core subscriber also sees
// publishes that JetStream deduplicates).
type scaleBoard struct {
	mu      sync.Mutex
	changed chan struct{}
	qr      map[int64]string
	status  map[int64]event.Status
	bad     []string
}

func newScaleBoard(t *testing.T, nc *nats.Conn) *scaleBoard {
	t.Helper()
	b := &scaleBoard{changed: make(chan struct{}), qr: map[int64]string{}, status: map[int64]event.Status{}}
	for _, subject := range []string{"wa.*.qr", "wa.*.evt." + string(event.TypeConnection)} {
		sub, err := nc.Subscribe(subject, b.onMsg)
		if err != nil {
			t.Fatal(err)
		}
		if err := sub.SetPendingLimits(-1, -1); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *scaleBoard) onMsg(msg *nats.Msg) {
	env, p, err := event.Decode(msg.Data)
	b.mu.Lock()
	defer b.mu.Unlock()
	switch p := p.(type) {
	case *event.QR:
		if p.Code != "" {
			b.qr[env.MentoradoID] = p.Code
		}
	case *event.Connection:
		b.status[env.MentoradoID] = p.Status
	default:
		b.bad = append(b.bad, fmt.Sprintf("%s: %T %v", msg.Subject, p, err))
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// wait returns once cond (called with b.mu held) holds.
func (b *scaleBoard) wait(ctx context.Context, cond func() bool) error {
	for {
		b.mu.Lock()
		ok, ch := cond(), b.changed
		b.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// scaleRequest sends a command and decodes the reply; a command error is an error.
func scaleRequest(ctx context.Context, nc *nats.Conn, m int64, verb event.Verb, body any) (event.Reply, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return event.Reply{}, err
	}
	msg, err := nc.RequestWithContext(ctx, event.CommandSubject(m, verb), data)
	if err != nil {
		return event.Reply{}, fmt.Errorf("%s %d: %w", verb, m, err)
	}
	var r event.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return event.Reply{}, fmt.Errorf("%s %d: reply: %w", verb, m, err)
	}
	if r.Error != nil {
		return r, fmt.Errorf("%s %d: %w", verb, m, r.Error)
	}
	return r, nil
}

// scaleForEach runs f for every index, scaleConcurrency at a time, and fails
// the test with every error.
func scaleForEach(t *testing.T, n int, f func(ctx context.Context, i int) error) {
	t.Helper()
	var g errgroup.Group
	g.SetLimit(scaleConcurrency)
	var mu sync.Mutex
	var errs []error
	for i := range n {
		g.Go(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*scaleWait)
			defer cancel()
			if err := f(ctx, i); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("session %d: %w", i, err))
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	for i, err := range errs {
		if i == 10 {
			t.Errorf("… and %d more", len(errs)-i)
			break
		}
		t.Error(err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
}

// 100 mentorados on one connector with real whatsmeow clients, the
// Postgres device store and one fake WhatsApp server: all pair by QR, each
// receives a text (published once, then receipted) and sends one through
// the send command (decrypted by the contact), and every session ends
// connected on exactly one login.
//
// Pairing dominates the run: at its first login whatsmeow generates 812
// prekeys (an X25519 key pair and one INSERT each) before it reports
// Connected. The store pool keeps its default size (4 connections on 2
// cores), as in production.
func TestRealHundredSessions(t *testing.T) {
	t.Parallel()
	n := scaleSessions(t)
	// The production lease TTL: renewing n leases must fit in it.
	e := newEnv(t, 15*time.Second)
	// Debug logs of n whatsmeow clients (every stanza) would dominate the run.
	e.log = e.log.Level(zerolog.InfoLevel)
	re := newRealEnv(t, e)
	board := newScaleBoard(t, re.observer.NC)
	ids := re.mentorados(n)
	me := make([]string, n)
	them := make([]string, n)
	for i := range n {
		me[i] = fmt.Sprintf("551195%07d", i)
		them[i] = fmt.Sprintf("551196%07d", i)
	}
	a := re.start("scale", re.factory(t), nil)
	nc := re.observer.NC

	// Pair: connect by QR, scan the code as the mentorado's phone, wait for
	// the connection event "connected" (after whatsmeow's first login and
	// its prekey upload).
	began := time.Now()
	scaleForEach(t, n, func(ctx context.Context, i int) error {
		m := ids[i]
		step, cancel := context.WithTimeout(ctx, scaleWait)
		defer cancel()
		if _, err := scaleRequest(step, nc, m, event.VerbConnect, event.ConnectRequest{Method: event.ConnectQR}); err != nil {
			return err
		}
		var code string
		if err := board.wait(step, func() bool { code = board.qr[m]; return code != "" }); err != nil {
			return fmt.Errorf("no QR code: %w", err)
		}
		if err := re.srv.ScanQR(step, code, me[i]); err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		if err := board.wait(step, func() bool { return board.status[m] == event.StatusConnected }); err != nil {
			return fmt.Errorf("not connected after pairing (last %q): %w", board.status[m], err)
		}
		return nil
	})
	pairing := time.Since(began)
	t.Logf("paired %d sessions in %s (%d at a time)", n, pairing.Round(time.Millisecond), scaleConcurrency)

	// Message: a contact writes to each mentorado (the receipt follows the
	// publish), each mentorado answers through the send command.
	began = time.Now()
	inbound := make([]string, n)
	outbound := make([]string, n)
	scaleForEach(t, n, func(ctx context.Context, i int) error {
		m := ids[i]
		contact := re.srv.Contact(them[i])
		step, cancel := context.WithTimeout(ctx, scaleWait)
		defer cancel()
		id, err := contact.SendText(step, me[i], fmt.Sprintf("oi %d", i))
		if err != nil {
			return fmt.Errorf("contact send: %w", err)
		}
		inbound[i] = id
		if _, err := re.srv.WaitReceipt(step, id); err != nil {
			return fmt.Errorf("no receipt for inbound %s: %w", id, err)
		}
		r, err := scaleRequest(step, nc, m, event.VerbSend, event.SendRequest{ClientID: fmt.Sprintf("scale-%d", i), Phone: them[i], Text: fmt.Sprintf("resposta %d", i)})
		if err != nil {
			return err
		}
		if r.Message == nil || r.Message.WAID == "" {
			return fmt.Errorf("send reply without a message: %+v", r)
		}
		outbound[i] = r.Message.WAID
		got, err := contact.WaitMessage(step)
		if err != nil {
			return fmt.Errorf("contact did not get the reply: %w", err)
		}
		if got.ID != r.Message.WAID || got.Text != fmt.Sprintf("resposta %d", i) || got.From != me[i] {
			return fmt.Errorf("contact got %s %q from %s, sent %s", got.ID, got.Text, got.From, r.Message.WAID)
		}
		return nil
	})
	messaging := time.Since(began)
	t.Logf("%d sessions received and sent one message each in %s (%d at a time)", n, messaging.Round(time.Millisecond), scaleConcurrency)

	// Every message event is in WA_EVENTS exactly once, under its mentorado.
	type counts struct{ in, out int }
	perM := map[int64]map[string]counts{}
	for _, env := range re.stored(bus.StreamEvents, "wa.*.evt."+string(event.TypeMessage)) {
		p, err := env.Payload()
		if err != nil {
			t.Fatal(err)
		}
		msg := p.(*event.Message)
		if perM[env.MentoradoID] == nil {
			perM[env.MentoradoID] = map[string]counts{}
		}
		c := perM[env.MentoradoID][msg.WAID]
		if msg.Direction == event.DirectionIn {
			c.in++
		} else {
			c.out++
		}
		perM[env.MentoradoID][msg.WAID] = c
	}
	lastConn := map[int64]*event.Connection{}
	connected := map[int64]int{}
	for _, env := range re.stored(bus.StreamEvents, "wa.*.evt."+string(event.TypeConnection)) {
		p, err := env.Payload()
		if err != nil {
			t.Fatal(err)
		}
		c := p.(*event.Connection)
		lastConn[env.MentoradoID] = c
		if c.Status == event.StatusConnected {
			connected[env.MentoradoID]++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), scaleWait)
	defer cancel()
	for i, m := range ids {
		if got := perM[m]; len(got) != 2 || got[inbound[i]] != (counts{in: 1}) || got[outbound[i]] != (counts{out: 1}) {
			t.Errorf("mentorado %d: message events %+v, want inbound %s and outbound %s once each", m, got, inbound[i], outbound[i])
		}
		if !re.srv.ReceiptSent(inbound[i]) {
			t.Errorf("mentorado %d: inbound %s not receipted", m, inbound[i])
		}
		if msgs := re.srv.Contact(them[i]).Messages(); len(msgs) != 1 {
			t.Errorf("contact of mentorado %d received %d messages, want 1", m, len(msgs))
		}
		if c := lastConn[m]; c == nil || c.Status != event.StatusConnected || c.Phone != me[i] || connected[m] != 1 {
			t.Errorf("mentorado %d: last connection event %+v, %d connected events, want one, connected as %s", m, c, connected[m], me[i])
		}
		r, err := scaleRequest(ctx, nc, m, event.VerbStatus, nil)
		if err != nil || r.Status == nil || r.Status.Status != event.StatusConnected || r.Status.Phone != me[i] {
			t.Errorf("mentorado %d: status %+v, %v", m, r.Status, err)
		}
		if acct := re.srv.Account(me[i]); !acct.Connected() || acct.DeviceJID().IsEmpty() {
			t.Errorf("account %s: connected %v, device %v", me[i], acct.Connected(), acct.DeviceJID())
		}
	}
	// One login per device: nobody reconnected or logged in twice.
	if logins := re.srv.Count("out:success"); logins != n {
		t.Errorf("%d logins at the fake, want %d", logins, n)
	}
	if accts := len(re.srv.Accounts()); accts != n {
		t.Errorf("%d accounts at the fake, want %d", accts, n)
	}
	if owned := len(a.c.Owned()); owned != n {
		t.Errorf("connector owns %d sessions, want %d", owned, n)
	}
	board.mu.Lock()
	if len(board.bad) > 0 {
		t.Errorf("undecodable events: %v", board.bad)
	}
	board.mu.Unlock()
}
