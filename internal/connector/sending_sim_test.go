package connector_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// outboxRow is an outbox row's state and reason.
func (e *env) outboxRow(m int64, waID string) (state, reason string) {
	e.t.Helper()
	err := e.db.Pool.QueryRow(context.Background(), `SELECT state, coalesce(reason, '') FROM outbox WHERE mentorado_id = $1 AND wa_message_id = $2`, m, waID).Scan(&state, &reason)
	if err != nil {
		e.t.Fatalf("outbox row %s: %v", waID, err)
	}
	return state, reason
}

// lastMessage is the last message event of m for waID.
func (e *env) lastMessage(m int64, waID string) *event.Message {
	e.t.Helper()
	var last *event.Message
	for _, env := range e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage)) {
		p, err := env.Payload()
		if err != nil {
			e.t.Fatal(err)
		}
		if msg := p.(*event.Message); msg.WAID == waID {
			last = msg
		}
	}
	return last
}

// queueInBackoff drops m's connection (the session backs off; its
// reconnect waits for the fake session clock) and sends n messages, which
// are queued.
func queueInBackoff(t *testing.T, e *env, m int64, prefix string, n int) []*event.Message {
	t.Helper()
	if err := e.world.Kick(m, &events.Disconnected{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusBackoff }, "backoff")
	var out []*event.Message
	for i := range n {
		r := e.mustRequest(m, event.VerbSend, event.SendRequest{ClientID: fmt.Sprintf("%s-%d", prefix, i), Phone: "5511966667777", Text: fmt.Sprintf("%s %d", prefix, i)})
		if r.Error != nil || r.Message == nil || r.Message.Status != event.MessageQueued {
			t.Fatalf("send in backoff: %+v", r)
		}
		out = append(out, r.Message)
	}
	return out
}

// A send in backoff is queued (status queued, the queued event published,
// a retried client id answers the same message); the user's disconnect
// fails the queued sends at once (disconnected_by_user), a logout too
// (logged_out), and a send after either is not_connected as before.
func TestQueuedSendsFailOnDisconnectAndLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ids := e.mentorados(2)
	for i, m := range ids {
		e.paired(m, fmt.Sprintf("55119000014%02d", i))
	}
	clk := newFakeClock()
	e.start("a", nil, []connector.Option{connector.WithClock(clk)}, func(c *connector.Config) { c.Sending.SweepInterval = -1 })
	testenv.Eventually(t, wait, e.allConnected(ids), "restored")
	testenv.Eventually(t, wait, func() bool {
		return e.status(ids[0]) == event.StatusConnected && e.status(ids[1]) == event.StatusConnected
	}, "connected")

	for _, tc := range []struct {
		m      int64
		verb   event.Verb
		reason string
	}{
		{ids[0], event.VerbDisconnect, "disconnected_by_user"},
		{ids[1], event.VerbLogout, "logged_out"},
	} {
		queued := queueInBackoff(t, e, tc.m, string(tc.verb), 3)
		r := e.mustRequest(tc.m, event.VerbSend, event.SendRequest{ClientID: string(tc.verb) + "-1", Phone: "5511966667777", Text: "de novo"})
		if r.Message == nil || r.Message.WAID != queued[1].WAID || r.Message.Status != event.MessageQueued {
			t.Fatalf("retried client id: %+v, want %s queued", r, queued[1].WAID)
		}
		if got := e.lastMessage(tc.m, queued[0].WAID); got == nil || got.Status != event.MessageQueued || got.ClientID != string(tc.verb)+"-0" {
			t.Fatalf("queued event %+v", got)
		}
		if r := e.mustRequest(tc.m, tc.verb, nil); r.Error != nil {
			t.Fatalf("%s: %+v", tc.verb, r.Error)
		}
		for _, q := range queued {
			if st, reason := e.outboxRow(tc.m, q.WAID); st != store.OutboxFailed || reason != tc.reason {
				t.Errorf("%s: outbox row %s is %s/%s, want failed/%s", tc.verb, q.WAID, st, reason, tc.reason)
			}
			testenv.Eventually(t, wait, func() bool {
				got := e.lastMessage(tc.m, q.WAID)
				return got != nil && got.Status == event.MessageFailed && got.StatusReason == tc.reason
			}, "%s: failed event of %s", tc.verb, q.WAID)
		}
		r = e.mustRequest(tc.m, event.VerbSend, event.SendRequest{Phone: "5511966667777", Text: "depois"})
		if r.Error == nil || r.Error.Code != event.CodeNotConnected {
			t.Errorf("%s: send after it: %+v, want not_connected", tc.verb, r)
		}
	}
	if n := len(e.world.Sent(ids[0])) + len(e.world.Sent(ids[1])); n != 0 {
		t.Fatalf("%d failed sends went out", n)
	}
}

// A temporary ban pauses the mentorado's bulk sending: send_settings
// records it, its running campaigns pause with reason temporary_ban, and a
// sending event says until when.
func TestTemporaryBanPausesBulk(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900001410")
	clk := newFakeClock()
	e.start("a", nil, []connector.Option{connector.WithClock(clk)}, func(c *connector.Config) { c.Sending.SweepInterval = -1 })
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "connected")
	// Its second recipient waits for a gap the fake clock never lets pass:
	// the campaign is running when the ban comes.
	camp := e.campaign(m, "c", outbound.Pacing{MinGapSeconds: 20, MaxGapSeconds: 60}, []string{"5511966661410", "5511966661411"})

	if err := e.world.Kick(m, &events.TemporaryBan{Code: events.TempBanSentToTooManyPeople, Expire: 2 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusBanned }, "banned")
	testenv.Eventually(t, wait, func() bool {
		st, reason := e.campaignState(camp)
		return st == string(event.CampaignPaused) && reason == outbound.ReasonTemporaryBan
	}, "campaign paused")
	row, err := e.db.SendSettings(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	if row.PausedAt == nil || row.PauseReason != outbound.ReasonTemporaryBan {
		t.Fatalf("send_settings %+v, want paused by temporary_ban", row)
	}
	evs := e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeSending))
	if len(evs) != 1 {
		t.Fatalf("%d sending events", len(evs))
	}
	p, _ := evs[0].Payload()
	s := p.(*event.Sending)
	if want := clk.Now().Add(2 * time.Hour); s.Bulk != event.BulkPaused || s.Reason != outbound.ReasonTemporaryBan || s.Until == nil || !s.Until.Equal(want) {
		t.Fatalf("sending event %+v, want paused until %s", s, want)
	}

	// Banned again before anyone resumed: still one pause, one event.
	clk.Advance(2 * time.Hour)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "connected after the ban")
	if err := e.world.Kick(m, &events.TemporaryBan{Code: events.TempBanSentToTooManyPeople, Expire: time.Hour}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusBanned }, "banned again")
	if n := len(e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeSending))); n != 1 {
		t.Fatalf("%d sending events after a second ban while paused, want 1", n)
	}
}

// The connector's sweeper expires queued sends whose TTL passed on the
// pacer's clock, publishing each expired event.
func TestSweeperExpiresQueuedSends(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900001411")
	sessClk, sendClk := newFakeClock(), newFakeClock()
	e.start("a", nil, []connector.Option{connector.WithClock(sessClk), connector.WithSendingClock(sendClk)},
		func(c *connector.Config) { c.Sending.SweepInterval = 20 * time.Millisecond })
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "connected")
	if err := e.world.Kick(m, &events.Disconnected{}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusBackoff }, "backoff")
	short := e.mustRequest(m, event.VerbSend, event.SendRequest{Phone: "5511966667777", Text: "curta", TTLSeconds: 60})
	long := e.mustRequest(m, event.VerbSend, event.SendRequest{Phone: "5511966667777", Text: "longa", TTLSeconds: 3600})
	if short.Message == nil || long.Message == nil || short.Message.Status != event.MessageQueued {
		t.Fatalf("queued: %+v %+v", short, long)
	}
	sendClk.Advance(2 * time.Minute)
	testenv.Eventually(t, wait, func() bool {
		st, _ := e.outboxRow(m, short.Message.WAID)
		return st == store.OutboxExpired
	}, "short TTL expired")
	if st, _ := e.outboxRow(m, long.Message.WAID); st != store.OutboxQueued {
		t.Fatalf("long TTL send is %s", st)
	}
	testenv.Eventually(t, wait, func() bool {
		got := e.lastMessage(m, short.Message.WAID)
		return got != nil && got.Status == event.MessageExpired && got.StatusReason == outbound.ReasonTTLExpired
	}, "expired event")
}

// An unsolicited send over the mentorado's daily cap is refused at once
// (daily_cap_reached), not queued; the sends before it went out.
func TestSendDailyCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.sendSettings(m, `{"bulk_min_gap_seconds": 0, "bulk_max_gap_seconds": 0, "daily_cap": 2}`)
	e.paired(m, "5511900001412")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "connected")
	for i := range 2 {
		r := e.mustRequest(m, event.VerbSend, event.SendRequest{Phone: fmt.Sprintf("55119666677%02d", i), Text: "oferta"})
		if r.Error != nil || r.Message == nil || r.Message.Status != event.MessageSent {
			t.Fatalf("send %d under the cap: %+v", i, r)
		}
	}
	r := e.mustRequest(m, event.VerbSend, event.SendRequest{Phone: "5511966667799", Text: "oferta"})
	if r.Error == nil || r.Error.Code != event.CodeDailyCap {
		t.Fatalf("send over the cap: %+v, want %s", r, event.CodeDailyCap)
	}
	if n := len(e.world.Sent(m)); n != 2 {
		t.Fatalf("WhatsApp got %d messages, want 2", n)
	}
	if n := len(e.outboxStates(m)); n != 0 {
		t.Fatalf("%d sends queued", n)
	}
}

// Sends queued behind the pacer while connected fail when WhatsApp logs
// the device out (the 401 event, not the command): logged_out.
func TestQueuedSendsFailOnLoggedOutEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.sendSettings(m, `{"unsolicited_burst": 1, "bulk_min_gap_seconds": 100, "bulk_max_gap_seconds": 100, "typing": false}`)
	e.paired(m, "5511900001413")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "connected")
	var queued []*event.Message
	for i := range 3 {
		r := e.mustRequest(m, event.VerbSend, event.SendRequest{Phone: "5511966667788", Text: fmt.Sprintf("oferta %d", i)})
		if r.Error != nil || r.Message == nil {
			t.Fatalf("send %d: %+v", i, r)
		}
		if want := event.MessageQueued; i > 0 && r.Message.Status != want {
			t.Fatalf("send %d is %s, want %s behind the bulk gap", i, r.Message.Status, want)
		}
		if i > 0 {
			queued = append(queued, r.Message)
		}
	}
	if err := e.world.Kick(m, &events.LoggedOut{Reason: events.ConnectFailureLoggedOut}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusLoggedOut }, "logged out")
	for _, q := range queued {
		testenv.Eventually(t, wait, func() bool {
			st, reason := e.outboxRow(m, q.WAID)
			return st == store.OutboxFailed && reason == connector.ReasonLoggedOut
		}, "queued send %s failed", q.WAID)
	}
	if n := len(e.world.Sent(m)); n != 1 {
		t.Fatalf("WhatsApp got %d messages, want only the first", n)
	}
}
