package connector_test

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"

	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/wafake"
)

// Sending at scale (issue #14) through the real whatsmeow client on the
// fake server: the outbox across a reconnect and a crash, a campaign of
// 1,000 recipients under the pacer (gaps checked on the pacer's fake
// clock, which also stamps what the fake phones receive), paused by a
// ban, resumed, honouring opt-outs and numbers not on WhatsApp, and a
// campaign whose connector is killed resuming on another without a double
// send.

// sendEnv is a realEnv whose pacer runs on a discrete-event clock that
// the fake phones share.
type sendEnv struct {
	*realEnv
	pacer *pacerClock
}

func newSendEnv(t *testing.T, leaseTTL time.Duration) *sendEnv {
	t.Helper()
	re := newRealEnv(t, newEnv(t, leaseTTL))
	pc := newPacerClock()
	// The phones read the clock without it counting as the worker's
	// activity (they stamp a chat state after the worker armed its wait).
	re.srv.SetClock(pc.peek)
	return &sendEnv{realEnv: re, pacer: pc}
}

// startConn starts a connector on the real client whose pacer uses the
// pacer clock and whose sessions use sess (nil: the wall clock).
func (se *sendEnv) startConn(t *testing.T, name string, sess connector.Clock, cfgOpts ...cfgOpt) *running {
	t.Helper()
	opts := []connector.Option{connector.WithSendingClock(se.pacer)}
	if sess != nil {
		opts = append(opts, connector.WithClock(sess))
	}
	base := func(c *connector.Config) {
		c.Sending.SweepInterval = -1
		c.Sending.Seed = 14
	}
	return se.start(name, se.factory(t), opts, append([]cfgOpt{base}, cfgOpts...)...)
}

func receivedIDs(rs []wafake.Received) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.ID
	}
	return out
}

// Sends accepted while the session is in backoff are queued (202, status
// queued; a retried client id is the same queued message), and once the
// session is connected again the contact receives each exactly once, in
// the order they were accepted; a retry then replays the sent message.
func TestRealQueuedAcrossReconnect(t *testing.T) {
	t.Parallel()
	se := newSendEnv(t, 2*time.Second)
	m := se.mentorados(1)[0]
	const me, them = "5511955551401", "5511966661401"
	sess := newFakeClock()
	se.startConn(t, "a", sess)
	se.pair(t, m, me)
	se.pacer.drive(t, time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 4*wait)
	defer cancel()
	contact := se.srv.Contact(them)
	// The contact wrote first: replies to it are conversational.
	in, err := contact.SendText(ctx, me, "oi, me responde depois?")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := se.srv.WaitReceipt(ctx, in); err != nil {
		t.Fatal(err)
	}

	// Network loss: the session backs off, and its reconnect waits for
	// the session clock.
	if err := se.srv.Account(me).Kick(wafake.Kick{Kind: wafake.KickDrop}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return se.status(m) == event.StatusBackoff }, "backoff")

	var queued []*event.Message
	for i := range 5 {
		r := se.mustRequest(m, event.VerbSend, event.SendRequest{ClientID: fmt.Sprintf("q-%d", i), Phone: them, Text: fmt.Sprintf("na fila %d", i)})
		if r.Error != nil || r.Message == nil || r.Message.Status != event.MessageQueued {
			t.Fatalf("send %d in backoff: %+v (error %+v)", i, r.Message, r.Error)
		}
		queued = append(queued, r.Message)
	}
	again := se.mustRequest(m, event.VerbSend, event.SendRequest{ClientID: "q-2", Phone: them, Text: "na fila 2"})
	if again.Message == nil || again.Message.WAID != queued[2].WAID || again.Message.Status != event.MessageQueued {
		t.Fatalf("retry of a queued send: %+v, want %s queued", again, queued[2].WAID)
	}
	if n := len(contact.Messages()); n != 0 {
		t.Fatalf("the contact got %d messages while the session was in backoff", n)
	}

	sess.Advance(time.Minute) // the reconnect
	testenv.Eventually(t, 4*wait, func() bool { return len(contact.Messages()) >= len(queued) }, "queued sends delivered")
	// Nothing more comes.
	testenv.Eventually(t, wait, func() bool {
		st := se.outboxStates(m)
		for _, q := range queued {
			if st[q.WAID] != store.OutboxSent {
				return false
			}
		}
		return true
	}, "outbox rows sent")
	got := receivedIDs(contact.Messages())
	want := make([]string, len(queued))
	for i, q := range queued {
		want[i] = q.WAID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the contact received %v, want %v (once each, in order)", got, want)
	}
	for i, q := range queued {
		if n := contact.Deliveries(q.WAID); n != 1 {
			t.Errorf("queued send %d (%s) reached the phone %d times", i, q.WAID, n)
		}
		if txt := contact.Messages()[i].Text; txt != fmt.Sprintf("na fila %d", i) {
			t.Errorf("message %d text %q", i, txt)
		}
	}
	statuses := se.messageStatuses(m)
	for _, q := range queued {
		if st := statuses[q.WAID]; !slices.Contains(st, event.MessageQueued) || !slices.Contains(st, event.MessageSent) {
			t.Errorf("events of %s: %v, want queued and sent", q.WAID, st)
		}
	}
	// A retry now answers the sent message without sending it again.
	r := se.mustRequest(m, event.VerbSend, event.SendRequest{ClientID: "q-4", Phone: them, Text: "na fila 4"})
	if r.Message == nil || r.Message.WAID != queued[4].WAID || r.Message.Status != event.MessageSent {
		t.Fatalf("retry after sending: %+v", r)
	}
	if n := len(contact.Messages()); n != len(queued) {
		t.Fatalf("the contact has %d messages after the retry, want %d", n, len(queued))
	}
}

// sendChild starts a connector child process (TestKill9ChildConnector)
// for re, with the operator's minimum bulk gap lowered so it paces in
// wall time quickly, and extra environment (operator limits) on top.
func sendChild(t *testing.T, re *realEnv, dir, name string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9ChildConnector$", "-test.count=1")
	cmd.Env = append(append(os.Environ(),
		kill9ChildEnv+"="+name,
		kill9DSNEnv+"="+re.db.Pool.Config().ConnString(),
		kill9NATSEnv+"="+re.natsURL,
		kill9FakeEnv+"="+re.srv.Addr(),
		kill9RootEnv+"="+hex.EncodeToString(whatsmeow.WACertPubKey[:]),
		outbound.EnvMinBulkGapSeconds+"=0",
	), extraEnv...)
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

func dumpChildLogs(t *testing.T, dir string, names ...string) {
	if !t.Failed() {
		return
	}
	for _, n := range names {
		b, _ := os.ReadFile(filepath.Join(dir, n+".log"))
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("child %s log tail:\n%s", n, b)
	}
}

// pairThenHandOver pairs m as me in this process and stops, so a child
// restores the session.
func pairThenHandOver(t *testing.T, re *realEnv, m int64, me string) {
	t.Helper()
	a := re.start("pair", re.factory(t), nil)
	re.pair(t, m, me)
	a.stop(t)
}

func childConnected(t *testing.T, re *realEnv, m int64, me, what string) {
	t.Helper()
	testenv.Eventually(t, 4*wait, func() bool {
		acct := re.srv.Account(me)
		return acct != nil && acct.Connected() && re.status(m) == event.StatusConnected
	}, "%s: session connected", what)
}

// The owning connector is killed (SIGKILL) with sends queued; the other
// takes the lease and sends each exactly once, in order: the fake phone
// counts every arrival of every id.
func TestRealKillWithQueuedSends(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, kill9TTL))
	m := re.mentorados(1)[0]
	const me, them = "5511955551402", "5511966661402"
	// Unsolicited sends, paced by a short gap: after the first, they queue.
	re.sendSettings(m, `{"unsolicited_burst": 1, "bulk_min_gap_seconds": 0.5, "bulk_max_gap_seconds": 0.7, "typing": false}`)
	pairThenHandOver(t, re, m, me)
	dir := t.TempDir()
	defer dumpChildLogs(t, dir, "first", "second")

	first := sendChild(t, re, dir, "first")
	childConnected(t, re, m, me, "first child")
	const n = 10
	var msgs []*event.Message
	queued := 0
	for i := range n {
		r := re.mustRequest(m, event.VerbSend, event.SendRequest{ClientID: fmt.Sprintf("k-%d", i), Phone: them, Text: fmt.Sprintf("mensagem %d", i)})
		if r.Error != nil || r.Message == nil {
			t.Fatalf("send %d: %+v", i, r)
		}
		if r.Message.Status == event.MessageQueued {
			queued++
		}
		msgs = append(msgs, r.Message)
	}
	if queued < n-2 {
		t.Fatalf("%d of %d sends queued, want them paced", queued, n)
	}
	contact := re.srv.Contact(them)
	testenv.Eventually(t, 4*wait, func() bool { return len(contact.Messages()) >= 3 }, "some sends out before the kill")
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	atKill := len(contact.Messages())
	if atKill == n {
		t.Fatal("every send went out before the kill: nothing was left queued")
	}

	sendChild(t, re, dir, "second")
	testenv.Eventually(t, 6*wait, func() bool { return len(contact.Messages()) >= n }, "every queued send delivered by the second connector")
	testenv.Eventually(t, wait, func() bool {
		st := re.outboxStates(m)
		for _, q := range msgs {
			if q.Status == event.MessageQueued && st[q.WAID] != store.OutboxSent {
				return false
			}
		}
		return true
	}, "outbox rows sent")
	want := make([]string, n)
	for i, q := range msgs {
		want[i] = q.WAID
	}
	if got := receivedIDs(contact.Messages()); !slices.Equal(got, want) {
		t.Fatalf("the phone shows %v, want %v (each once, in order)", got, want)
	}
	repeated := 0
	for i, q := range msgs {
		switch d := contact.Deliveries(q.WAID); {
		case d == 1:
		case d == 2:
			// The send in flight at the kill: re-sent under its id,
			// which a phone shows once.
			repeated++
		default:
			t.Errorf("send %d (%s) reached the phone %d times", i, q.WAID, d)
		}
	}
	if repeated > 1 {
		t.Errorf("%d sends arrived twice; only the one in flight at the kill may", repeated)
	}
	t.Logf("killed with %d of %d delivered (%d queued); %d re-sent under the same id", atKill, n, queued, repeated)
}
