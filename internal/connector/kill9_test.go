package connector_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// The crash test of docs/decisions/0014-signal-store-cache.md: a connector
// in a child process (this test binary, running TestKill9ChildConnector)
// receives a stream of messages from three fake contacts and is killed
// with SIGKILL mid-traffic; a second child takes the session over. Every
// message is then published exactly once with its text, none needed a
// retry receipt (the client never failed to decrypt: no Signal state was
// lost), and messages sent after the restart decrypt too.
const (
	kill9ChildEnv = "ZAPBUS_KILL9_CHILD"
	kill9DSNEnv   = "ZAPBUS_KILL9_DSN"
	kill9NATSEnv  = "ZAPBUS_KILL9_NATS"
	kill9FakeEnv  = "ZAPBUS_KILL9_FAKE"
	kill9RootEnv  = "ZAPBUS_KILL9_ROOT"
	kill9TTL      = 3 * time.Second
)

func TestRealKill9MidTraffic(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, kill9TTL))
	m := re.mentorados(1)[0]
	const me = "5511955550914"
	contacts := []string{"5511966660914", "5511966660915", "5511966660916"}

	// Pair in this process, then hand the session to the child.
	a := re.start("pair", re.factory(t), nil)
	re.pair(t, m, me)
	a.stop(t)

	dir := t.TempDir()
	child := func(name string) *exec.Cmd {
		// Replies are not what this test is about: unpaced.
		return sendChild(t, re, dir, name, outbound.EnvMaxChatBurst+"=1000", outbound.EnvMaxChatPerMinute+"=600")
	}
	connected := func(what string) {
		t.Helper()
		testenv.Eventually(t, 4*wait, func() bool {
			acct := re.srv.Account(me)
			return acct != nil && acct.Connected() && re.status(m) == event.StatusConnected
		}, "%s: session connected", what)
	}
	dumpLogs := func() {
		if !t.Failed() {
			return
		}
		for _, n := range []string{"first", "second"} {
			b, _ := os.ReadFile(filepath.Join(dir, n+".log"))
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("child %s log tail:\n%s", n, b)
		}
	}
	defer dumpLogs()

	first := child("first")
	connected("first child")

	// Traffic: each contact writes in order, a message every few ms.
	type sentMsg struct {
		contact  int
		id, text string
	}
	var mu sync.Mutex
	var sent []sentMsg
	ctx, cancel := context.WithTimeout(context.Background(), 4*wait)
	defer cancel()
	send := func(c, i int, phase string) error {
		text := fmt.Sprintf("%s %d de %s", phase, i, contacts[c])
		id, err := re.srv.Contact(contacts[c]).SendText(ctx, me, text)
		if err != nil {
			return err
		}
		mu.Lock()
		sent = append(sent, sentMsg{c, id, text})
		mu.Unlock()
		return nil
	}
	stop := make(chan struct{})
	replies := 0
	// reply answers contact c once the connector handled everything c
	// sent (whatsmeow does not order a send against the decryption of the
	// same contact's messages, so they must not overlap: with or without
	// zapbus's cache, an overlap can lose a ratchet step).
	reply := func(c, i int) error {
		mu.Lock()
		var mine []string
		for _, s := range sent {
			if s.contact == c {
				mine = append(mine, s.id)
			}
		}
		mu.Unlock()
		for _, id := range mine {
			for !re.srv.ReceiptSent(id) {
				select {
				case <-stop:
					return nil // the connector is gone: no reply
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(5 * time.Millisecond):
				}
			}
		}
		r, err := re.request(m, event.VerbSend, event.SendRequest{ClientID: fmt.Sprintf("k9-%d-%d", c, i), Phone: contacts[c], Text: fmt.Sprintf("resposta %d", i)})
		if err != nil || r.Error != nil || r.Message == nil {
			return nil // the connector is gone: no reply
		}
		for {
			got, err := re.srv.Contact(contacts[c]).WaitMessage(ctx)
			if err != nil {
				return fmt.Errorf("contact %s did not get reply %s: %w", contacts[c], r.Message.WAID, err)
			}
			if got.ID == r.Message.WAID {
				break
			}
		}
		mu.Lock()
		replies++
		mu.Unlock()
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(contacts))
	for c := range contacts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := send(c, i, "antes"); err != nil {
					errs <- err
					return
				}
				if i%8 == 7 {
					// A reply moves the Signal ratchet on both sides: the
					// contact's next messages need the state the connector
					// stored when it encrypted the reply.
					if err := reply(c, i); err != nil {
						errs <- err
						return
					}
				}
				time.Sleep(3 * time.Millisecond)
			}
		}()
	}
	receipted := func() (n int) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range sent {
			if re.srv.ReceiptSent(s.id) {
				n++
			}
		}
		return n
	}
	threshold := 60
	if testing.Short() {
		threshold = 25
	}
	testenv.Eventually(t, 4*wait, func() bool { return receipted() >= threshold }, "%d messages handled before the kill", threshold)
	if err := first.Process.Kill(); err != nil { // SIGKILL, mid-traffic
		t.Fatal(err)
	}
	_ = first.Wait()
	mu.Lock()
	atKill := len(sent)
	mu.Unlock()
	handledAtKill := receipted()
	// A little more traffic while no connector is up: the fake queues it.
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("contact send: %v", err)
	default:
	}
	t.Logf("killed the first child with %d messages sent, %d receipted; %d sent and %d replies decrypted by the contacts before the restart", atKill, handledAtKill, len(sent), replies)
	if replies == 0 {
		t.Fatal("no reply went out before the kill: the ratchet never moved")
	}

	child("second")
	connected("second child")
	// The next messages still decrypt.
	for c := range contacts {
		for i := range 5 {
			if err := send(c, i, "depois"); err != nil {
				t.Fatal(err)
			}
		}
		if err := reply(c, 100); err != nil {
			t.Fatal(err)
		}
		if err := send(c, 5, "depois"); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 4*wait, func() bool { return receipted() == len(sent) }, "every message receipted")

	byID := map[string][]string{}
	for _, env := range re.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage)) {
		p, err := env.Payload()
		if err != nil {
			t.Fatal(err)
		}
		msg := p.(*event.Message)
		if msg.Direction == event.DirectionIn {
			byID[msg.WAID] = append(byID[msg.WAID], msg.Text)
		}
	}
	for _, s := range sent {
		if got := byID[s.id]; len(got) != 1 || got[0] != s.text {
			t.Errorf("message %s (%q) published as %q, want once", s.id, s.text, got)
		}
		for _, r := range re.srv.Receipts(s.id) {
			if r.Type == "retry" {
				t.Errorf("message %s needed a retry receipt: the connector could not decrypt it (Signal state lost)", s.id)
			}
		}
	}
	if len(byID) != len(sent) {
		t.Errorf("%d inbound message events, %d messages sent", len(byID), len(sent))
	}
}

// TestKill9ChildConnector is the child process of TestRealKill9MidTraffic:
// a connector with the real whatsmeow factory pointed at the parent's fake
// server, running until it is killed. It skips unless started as a child.
func TestKill9ChildConnector(t *testing.T) {
	name := os.Getenv(kill9ChildEnv)
	if name == "" {
		t.Skip("run by TestRealKill9MidTraffic")
	}
	root, err := hex.DecodeString(os.Getenv(kill9RootEnv))
	if err != nil || len(root) != 32 {
		t.Fatalf("fake root key: %v", err)
	}
	// The parent's fake certificate root (wafake.InstallRoot there).
	copy(whatsmeow.WACertPubKey[:], root)
	addr := os.Getenv(kill9FakeEnv)
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: dial, DialTLSContext: dial, DisableKeepAlives: true}}
	log := zerolog.New(os.Stderr).Level(zerolog.InfoLevel).With().Timestamp().Str("child", name).Logger()
	ctx := context.Background()
	db, err := store.Open(ctx, os.Getenv(kill9DSNEnv))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := bus.Connect(os.Getenv(kill9NATSEnv), "kill9-"+name, log)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(nc, bus.Config{LeaseTTL: kill9TTL})
	if err != nil {
		t.Fatal(err)
	}
	f, err := connector.NewWhatsmeowFactory(ctx, db, log, func(cli *whatsmeow.Client) {
		cli.SetPreLoginHTTPClient(hc)
		cli.SetWebsocketHTTPClient(hc)
		cli.SetMediaHTTPClient(hc)
	})
	if err != nil {
		t.Fatal(err)
	}
	f.NoSignalCache = os.Getenv("ZAPBUS_KILL9_NOCACHE") != ""
	// The sending tests (sending_test.go) lower the operator's minimum
	// bulk gap so a child paces in wall time quickly.
	limits, err := outbound.LimitsFromEnv(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := connector.Config{InstanceID: "kill9-" + name, RestoreJitter: time.Millisecond, Policy: connector.Policy{Jitter: -1},
		Sending: connector.SendingConfig{Limits: limits, Poll: 200 * time.Millisecond}}
	c, err := connector.New(cfg, db, b, f, log)
	if err != nil {
		t.Fatal(err)
	}
	// Runs until the parent kills this process.
	t.Fatalf("connector stopped: %v", c.Run(ctx))
}
