package outbound

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

const (
	talker   = "5511911111111" // wrote in the last 24 h
	stranger = "5511922222222" // never wrote
)

func secs(d time.Duration) float64 { return d.Seconds() }

func waIDs(rs []sendRec) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.waID)
	}
	return out
}

// TestChatLaneOrderAndExpiry: queued sends go in id order, with their
// queued ids and client ids; one past its TTL expires instead.
func TestChatLaneOrderAndExpiry(t *testing.T) {
	h := newHarness(t, `{"typing": false}`)
	h.inbound(talker, t0.Add(-time.Hour))
	h.enqueue("Q1", event.SendRequest{Phone: talker, Text: "1", ClientID: "c1"})
	h.enqueue("Q2", event.SendRequest{Phone: talker, Text: "2", TTLSeconds: 1})
	h.enqueue("Q3", event.SendRequest{Phone: talker, Text: "3"})
	h.enqueue("Q4", event.SendRequest{Chat: talker + "@s.whatsapp.net", Text: "4"})
	h.clock.mu.Lock()
	h.clock.now = t0.Add(2 * time.Second) // Q2's TTL passed
	h.clock.mu.Unlock()
	h.clock.auto(t)
	h.run(h.worker(time.Minute))
	h.waitFor("three sends", func() bool { return len(h.sender.delivered()) == 3 })

	got := h.sender.delivered()
	if ids := waIDs(got); !slices.Equal(ids, []string{"Q1", "Q3", "Q4"}) {
		t.Fatalf("sent %v, want Q1 Q3 Q4", ids)
	}
	if got[0].meta.ClientID != "c1" || got[0].req.Text != "1" || got[0].req.Phone != talker {
		t.Fatalf("first send %+v", got[0])
	}
	h.waitFor("Q2 expired", func() bool {
		e, ok := h.pub.messages(t)[event.OutboxEventID(h.m, "Q2", event.MessageExpired)]
		return ok && e.StatusReason == ReasonTTLExpired
	})
	h.waitFor("rows marked", func() bool {
		return queryOne[int](t, h.db, `SELECT count(*) FROM outbox WHERE state = 'sent' AND sent_at IS NOT NULL`) == 3
	})
	if n := queryOne[int](t, h.db, `SELECT coalesce(sum(unsolicited), 0)::int FROM send_counters`); n != 0 {
		t.Fatalf("conversational sends counted %d as unsolicited", n)
	}
}

// TestBudgets: conversational sends take chat tokens (burst, then one per
// 60/ChatPerMinute s) and never wait for the bulk gap; unsolicited sends
// are spaced by the random bulk gap and counted against the day.
func TestBudgets(t *testing.T) {
	h := newHarness(t, `{"typing": false, "chat_per_minute": 12, "chat_burst": 2, "unsolicited_burst": 1, "bulk_min_gap_seconds": 20, "bulk_max_gap_seconds": 60}`)
	w := h.worker(time.Minute)
	w.ObserveInbound(talker+"@s.whatsapp.net", t0.Add(-23*time.Hour)) // in memory only
	h.enqueue("U1", event.SendRequest{Phone: stranger, Text: "u1"})
	h.enqueue("C1", event.SendRequest{Phone: talker, Text: "c1"})
	h.enqueue("C2", event.SendRequest{Phone: talker, Text: "c2"})
	h.enqueue("C3", event.SendRequest{Phone: talker, Text: "c3"})
	h.enqueue("U2", event.SendRequest{Phone: stranger, Text: "u2"})
	h.enqueue("U3", event.SendRequest{Phone: stranger, Text: "u3"})
	h.clock.auto(t)
	h.run(w)
	h.waitFor("six sends", func() bool { return len(h.sender.delivered()) == 6 })
	at := map[string]time.Time{}
	for _, r := range h.sender.delivered() {
		at[r.waID] = r.at
	}
	if ids := waIDs(h.sender.delivered()); !slices.Equal(ids, []string{"U1", "C1", "C2", "C3", "U2", "U3"}) {
		t.Fatalf("order %v", ids)
	}
	if !at["U1"].Equal(t0) || !at["C1"].Equal(t0) || !at["C2"].Equal(t0) {
		t.Fatalf("U1 %v C1 %v C2 %v: the burst and the first unsolicited send go at once", at["U1"], at["C1"], at["C2"])
	}
	if d := at["C3"].Sub(t0); d != 5*time.Second {
		t.Fatalf("C3 after %v, want 5 s (12 a minute, burst 2)", d)
	}
	for _, pair := range [][2]string{{"U1", "U2"}, {"U2", "U3"}} {
		if g := secs(at[pair[1]].Sub(at[pair[0]])); g < 20 || g > 60 {
			t.Fatalf("%s→%s gap %.1f s, want 20 to 60", pair[0], pair[1], g)
		}
	}
	h.waitFor("counted", func() bool {
		return queryOne[int](t, h.db, `SELECT coalesce(sum(unsolicited), 0)::int FROM send_counters WHERE mentorado_id = $1`, h.m) == 3
	})
}

// TestDailyCap: over the cap a queued unsolicited send waits for the next
// UTC day; TryNow refuses a sync one with daily_cap_reached, also after a
// restart (the count is written through).
func TestDailyCap(t *testing.T) {
	h := newHarness(t, `{"typing": false, "daily_cap": 2, "unsolicited_burst": 1, "bulk_min_gap_seconds": 5, "bulk_max_gap_seconds": 5}`)
	for _, id := range []string{"D1", "D2", "D3"} {
		h.enqueue(id, event.SendRequest{Phone: stranger, Text: id, TTLSeconds: 2 * 86400})
	}
	h.clock.auto(t)
	stop := h.run(h.worker(time.Hour))
	h.waitFor("three sends", func() bool { return len(h.sender.delivered()) == 3 })
	got := h.sender.delivered()
	if !got[1].at.Equal(t0.Add(5*time.Second)) || got[2].at.Before(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("sends at %v %v %v: the third must wait for the next UTC day", got[0].at, got[1].at, got[2].at)
	}
	stop()

	// Day 2 has one left: a sync send takes it; the next is refused.
	w := h.worker(time.Hour)
	ctx := context.Background()
	h.clock.mu.Lock()
	h.clock.now = got[2].at.Add(time.Minute)
	h.clock.mu.Unlock()
	if ok, err := w.TryNow(ctx, stranger+"@s.whatsapp.net"); !ok || err != nil {
		t.Fatalf("second send of day 2: %v %v", ok, err)
	}
	h.clock.mu.Lock()
	h.clock.now = h.clock.now.Add(time.Minute)
	h.clock.mu.Unlock()
	_, err := h.worker(time.Hour).TryNow(ctx, stranger+"@s.whatsapp.net") // a fresh worker reads the stored count
	var ce *event.CommandError
	if !errors.As(err, &ce) || ce.Code != event.CodeDailyCap {
		t.Fatalf("third sync send of day 2: %v", err)
	}
}

// TestUnsolicitedBurst: sync sends to people who have not written take
// the unsolicited burst at once, then one token comes back per gap; a
// campaign message after them still waits its gap.
func TestUnsolicitedBurst(t *testing.T) {
	h := newHarness(t, `{"unsolicited_burst": 3, "bulk_min_gap_seconds": 30, "bulk_max_gap_seconds": 30}`)
	w := h.worker(time.Minute)
	ctx := context.Background()
	sj := stranger + "@s.whatsapp.net"
	for i, c := range []struct {
		advance time.Duration
		want    bool
	}{
		{0, true}, {0, true}, {0, true}, {0, false}, {29 * time.Second, false}, {time.Second, true}, {0, false},
	} {
		h.clock.mu.Lock()
		h.clock.now = h.clock.now.Add(c.advance)
		h.clock.mu.Unlock()
		if ok, err := w.TryNow(ctx, sj); ok != c.want || err != nil {
			t.Fatalf("case %d: %v %v, want %v", i, ok, err, c.want)
		}
	}
	w.mu.Lock()
	due := w.bulkDueLocked(Pacing{MinGapSeconds: 30, MaxGapSeconds: 30})
	w.mu.Unlock()
	if want := h.clock.Now().Add(30 * time.Second); !due.Equal(want) {
		t.Fatalf("a campaign message may go at %v, want %v (its gap after the last unsolicited send)", due, want)
	}
}

// TestTryNow: a sync send goes at once only with nothing queued and a
// token free.
func TestTryNow(t *testing.T) {
	h := newHarness(t, `{"chat_per_minute": 6, "chat_burst": 1, "unsolicited_burst": 1, "bulk_min_gap_seconds": 30, "bulk_max_gap_seconds": 30}`)
	w := h.worker(time.Minute)
	ctx := context.Background()
	h.inbound(talker, t0.Add(-time.Minute))
	tj, sj := talker+"@s.whatsapp.net", stranger+"@s.whatsapp.net"
	for i, c := range []struct {
		jid     string
		advance time.Duration
		want    bool
	}{
		{tj, 0, true}, {tj, 0, false}, {tj, 10 * time.Second, true}, // 6 a minute: one every 10 s
		{sj, 0, true}, {sj, 29 * time.Second, false}, {sj, time.Second, true},
	} {
		h.clock.mu.Lock()
		h.clock.now = h.clock.now.Add(c.advance)
		h.clock.mu.Unlock()
		if ok, err := w.TryNow(ctx, c.jid); ok != c.want || err != nil {
			t.Fatalf("case %d: %v %v, want %v", i, ok, err, c.want)
		}
	}
	h.enqueue("Q", event.SendRequest{Phone: talker, Text: "q"})
	h.clock.mu.Lock()
	h.clock.now = h.clock.now.Add(time.Hour)
	h.clock.mu.Unlock()
	if ok, _ := w.TryNow(ctx, tj); ok {
		t.Fatal("sync send allowed ahead of a queued one")
	}
}

// TestCampaignPacingSkipsAndCompletion: a campaign sends under its pacing
// profile (gaps on the fake clock within [min, max], typing before each), skips
// opted-out (9th-digit variant), not-on-WhatsApp and duplicate recipients,
// and completes.
func TestCampaignPacingSkipsAndCompletion(t *testing.T) {
	h := newHarness(t, `{"typing": true, "typing_min_seconds": 1, "typing_max_seconds": 6}`)
	phones := []string{"5511900000001", "5511900000002", "5511900000003", "5511987654321", "5511900000004",
		"551187654321", "5511987650005", "5511900000006", "5511900000007"}
	h.sender.jids["5511900000004"] = ""                                                                             // not on WhatsApp
	h.sender.jids["551187654321"] = "5511987654321@s.whatsapp.net"                                                  // the same account as 5511987654321
	exec(t, h.db, `INSERT INTO opt_outs (mentorado_id, phone, source) VALUES ($1, '551187650005', 'keyword')`, h.m) // 5511987650005 without its 9th digit
	pacing := Profiles()["standard"]
	c := addCampaign(t, h.db, h.m, event.CampaignScheduled, pacing, phones...)
	exec(t, h.db, `UPDATE campaigns SET start_at = $2 WHERE id = $1`, c, t0.Add(time.Hour))
	h.clock.auto(t)
	h.run(h.worker(2 * time.Second))
	h.waitFor("completed", func() bool {
		return queryOne[string](t, h.db, `SELECT state FROM campaigns WHERE id = $1`, c) == "completed"
	})
	sends := h.sender.delivered()
	if len(sends) != 6 {
		t.Fatalf("%d sends, want 6: %v", len(sends), waIDs(sends))
	}
	if sends[0].at.Before(t0.Add(time.Hour)) {
		t.Fatalf("first send at %v, before the start time", sends[0].at)
	}
	if started := queryOne[time.Time](t, h.db, `SELECT started_at FROM campaigns WHERE id = $1`, c); started.Before(t0.Add(time.Hour)) {
		t.Fatalf("started at %v", started)
	}
	gaps := map[time.Duration]bool{}
	for i := 1; i < len(sends); i++ {
		gaps[sends[i].at.Sub(sends[i-1].at)] = true
		if g := secs(sends[i].at.Sub(sends[i-1].at)); g < pacing.MinGapSeconds || g > pacing.MaxGapSeconds {
			t.Fatalf("gap %d: %.2f s, want %g to %g (standard)", i, g, pacing.MinGapSeconds, pacing.MaxGapSeconds)
		}
	}
	if len(gaps) < 3 {
		t.Fatalf("gaps %v: want them random, not one fixed delay", gaps)
	}
	typings := h.sender.typings()
	for _, s := range sends {
		if s.meta.CampaignID != c || s.req.Kind != event.KindText || s.req.Text != "hi "+phoneOf(s.req.Chat) {
			t.Fatalf("send %+v", s)
		}
		i := slices.IndexFunc(typings, func(ty typingRec) bool { return ty.jid == s.req.Chat && ty.on })
		if i < 0 || s.at.Sub(typings[i].at) < time.Second {
			t.Fatalf("no typing of at least 1 s before the send to %s", s.req.Chat)
		}
	}
	reasons := map[string]string{}
	rows, err := h.db.Pool.Query(context.Background(), `SELECT phone, state || ':' || coalesce(reason, '') FROM campaign_recipients WHERE campaign_id = $1`, c)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var p, s string
		if err := rows.Scan(&p, &s); err != nil {
			t.Fatal(err)
		}
		reasons[p] = s
	}
	want := map[string]string{"5511900000004": "skipped:not_on_whatsapp", "551187654321": "skipped:duplicate",
		"5511987650005": "skipped:opted_out", "5511900000001": "sent:"}
	for p, w := range want {
		if reasons[p] != w {
			t.Errorf("recipient %s: %s, want %s", p, reasons[p], w)
		}
	}
	if n := queryOne[int](t, h.db, `SELECT count(*) FROM campaign_recipients WHERE campaign_id = $1 AND state = 'sent'
		AND wa_message_id IS NOT NULL AND jid IS NOT NULL AND sent_at IS NOT NULL`, c); n != 6 {
		t.Fatalf("%d recipients marked sent", n)
	}
	if queryOne[*time.Time](t, h.db, `SELECT finished_at FROM campaigns WHERE id = $1`, c) == nil {
		t.Fatal("no finished_at")
	}
	if n := queryOne[int](t, h.db, `SELECT unsolicited FROM send_counters WHERE mentorado_id = $1`, h.m); n != 6 {
		t.Fatalf("counted %d unsolicited", n)
	}
}

func phoneOf(jid string) string { return jid[:len(jid)-len("@s.whatsapp.net")] }

// TestCrashResendsWithTheSameID: a worker stopped between the commit and
// the send leaves the item in sending; the next worker sends it once,
// with the same WhatsApp id, for an outbox send and a campaign recipient.
func TestCrashResendsWithTheSameID(t *testing.T) {
	h := newHarness(t, `{"typing": false}`)
	h.inbound(talker, t0.Add(-time.Hour))
	h.enqueue("X1", event.SendRequest{Phone: talker, Text: "x"})
	h.clock.auto(t)
	h.sender.block = true
	stop := h.run(h.worker(time.Minute))
	h.waitFor("the send in flight", func() bool { return len(h.sender.attempts()) == 1 })
	stop() // the "crash": Send returns with ctx ended
	if st := queryOne[string](t, h.db, `SELECT state FROM outbox WHERE wa_message_id = 'X1'`); st != store.OutboxSending {
		t.Fatalf("after the crash X1 is %s", st)
	}
	c := addCampaign(t, h.db, h.m, event.CampaignRunning, Pacing{MinGapSeconds: 5, MaxGapSeconds: 5}, "5511933333333")

	h.sender.block = false
	stop = h.run(h.worker(time.Minute))
	h.waitFor("X1 and the recipient sent", func() bool { return len(h.sender.delivered()) == 2 })
	stop()
	waID := queryOne[string](t, h.db, `SELECT wa_message_id FROM campaign_recipients WHERE campaign_id = $1`, c)

	// Now the recipient: crash mid-send, restart.
	exec(t, h.db, `UPDATE campaign_recipients SET state = 'pending', sent_at = NULL WHERE campaign_id = $1`, c)
	exec(t, h.db, `UPDATE campaigns SET state = 'running' WHERE id = $1`, c)
	h.sender.mu.Lock()
	h.sender.block = true
	h.sender.mu.Unlock()
	stop = h.run(h.worker(time.Minute))
	h.waitFor("the recipient in flight", func() bool { return len(h.sender.attempts()) == 4 })
	stop()
	if st := queryOne[string](t, h.db, `SELECT state FROM campaign_recipients WHERE campaign_id = $1`, c); st != store.RecipientSending {
		t.Fatalf("after the crash the recipient is %s", st)
	}
	h.run(h.worker(time.Minute))
	h.waitFor("the recipient sent again", func() bool { return len(h.sender.delivered()) == 3 })

	att := h.sender.attempts()
	if len(att) != 5 || att[0].waID != "X1" || att[1].waID != "X1" || att[2].waID != waID {
		t.Fatalf("outbox attempts %v", waIDs(att))
	}
	if att[3].waID != waID || att[4].waID != waID {
		t.Fatalf("recipient attempts %v, want %s each time", waIDs(att), waID)
	}
	count := map[string]int{}
	for _, r := range h.sender.delivered() {
		count[r.waID]++
	}
	if count["X1"] != 1 || count[waID] != 2 || len(count) != 2 {
		// waID was delivered once before the reset, once after the crash
		t.Fatalf("deliveries %v", count)
	}
	if n := queryOne[int](t, h.db, `SELECT attempts FROM outbox WHERE wa_message_id = 'X1'`); n != 2 {
		t.Fatalf("X1 attempts %d, want 2", n)
	}
}

// TestErrorsFailRetryAndPause: a permanent error fails the item at once
// (with a failed event for an outbox send); not_connected puts it back
// uncounted; a run of errors pauses bulk sending (event, campaign paused);
// clearing the pause publishes the resume.
func TestErrorsFailRetryAndPause(t *testing.T) {
	h := newHarness(t, `{"typing": false, "pause_after_errors": 3}`)
	h.inbound(talker, t0.Add(-time.Hour))
	h.sender.errs = []error{
		event.NewCommandError(event.CodeNotConnected, "offline"),
		event.NewCommandError(event.CodeMediaNotFound, "gone"),
	}
	h.enqueue("E1", event.SendRequest{Phone: talker, Text: "e1"})
	h.enqueue("E2", event.SendRequest{Phone: talker, Text: "e2"})
	h.clock.auto(t)
	stop := h.run(h.worker(2 * time.Second))
	h.waitFor("E1 failed", func() bool {
		e, ok := h.pub.messages(t)[event.OutboxEventID(h.m, "E1", event.MessageFailed)]
		return ok && e.StatusReason == event.CodeMediaNotFound
	})
	h.waitFor("E2 sent", func() bool { return len(h.sender.delivered()) == 1 })
	if att := h.sender.attempts(); len(att) != 3 || att[0].waID != "E1" || att[1].waID != "E1" {
		t.Fatalf("attempts %v: E1 put back after not_connected, then failed", waIDs(att))
	}
	if n := queryOne[int](t, h.db, `SELECT attempts FROM outbox WHERE wa_message_id = 'E1'`); n != 1 {
		t.Fatalf("E1 attempts %d: not_connected must not count", n)
	}

	// A campaign whose sends all fail: three transient errors in a row
	// pause bulk sending; retries back off.
	h.sender.mu.Lock()
	h.sender.failAll = errors.New("server said 503")
	h.sender.mu.Unlock()
	c := addCampaign(t, h.db, h.m, event.CampaignRunning, Pacing{MinGapSeconds: 5, MaxGapSeconds: 5}, "5511900000001", "5511900000002")
	// The event is published before the pause commits: wait for both.
	h.waitFor("bulk paused", func() bool {
		return len(h.pub.sendings(t)) == 1 &&
			queryOne[string](t, h.db, `SELECT state || ':' || coalesce(pause_reason, '') FROM campaigns WHERE id = $1`, c) == "paused:send_errors"
	})
	ss := h.pub.sendings(t)
	if ss[0].Bulk != event.BulkPaused || ss[0].Reason != ReasonSendErrors || ss[0].Errors != 3 {
		t.Fatalf("sending event %+v", ss[0])
	}
	if st := queryOne[string](t, h.db, `SELECT state || ':' || pause_reason FROM campaigns WHERE id = $1`, c); st != "paused:send_errors" {
		t.Fatalf("campaign %s", st)
	}
	r := queryOne[string](t, h.db, `SELECT state || ':' || reason || ':' || attempts FROM campaign_recipients WHERE campaign_id = $1 AND phone = '5511900000001'`, c)
	if r != "failed:send_error:3" {
		t.Fatalf("first recipient %s: failed after 3 attempts", r)
	}
	att := h.sender.attempts()
	if g := att[len(att)-1].at.Sub(att[len(att)-2].at); g < 30*time.Second {
		t.Fatalf("second retry after %v, want the 30 s backoff", g)
	}
	nAtt := len(att)

	// Cleared through the API: the worker publishes the resume.
	h.sender.mu.Lock()
	h.sender.failAll = nil
	h.sender.mu.Unlock()
	exec(t, h.db, `UPDATE send_settings SET bulk_paused_at = NULL, bulk_paused_reason = NULL WHERE mentorado_id = $1`, h.m)
	h.waitFor("resumed", func() bool { return len(h.pub.sendings(t)) == 2 })
	if s := h.pub.sendings(t)[1]; s.Bulk != event.BulkActive || s.Reason != ReasonResumed {
		t.Fatalf("resume event %+v", s)
	}
	stop()
	if len(h.sender.attempts()) != nAtt {
		t.Fatal("a paused campaign sent")
	}
}

// TestPauseAndCancelBySQL: the lane stops when the API pauses or cancels a
// campaign, and goes on after a resume. The clock freezes right after a
// chosen delivery, so the state changes land between two items.
func TestPauseAndCancelBySQL(t *testing.T) {
	h := newHarness(t, `{"typing": false}`)
	c := addCampaign(t, h.db, h.m, event.CampaignRunning, Pacing{MinGapSeconds: 10, MaxGapSeconds: 10},
		"5511900000001", "5511900000002", "5511900000003", "5511900000004", "5511900000005")
	h.sender.holdAt = 2
	h.clock.auto(t)
	h.run(h.worker(2 * time.Second))
	h.waitFor("two sends", func() bool { return len(h.sender.delivered()) == 2 })
	h.clock.hold(t)
	exec(t, h.db, `UPDATE campaigns SET state = 'paused' WHERE id = $1`, c)
	later := h.clock.Now().Add(10 * time.Minute)
	h.clock.release()
	h.waitFor("ten minutes of fake time", func() bool { return h.clock.Now().After(later) })
	if got := len(h.sender.delivered()); got != 2 {
		t.Fatalf("%d sends while paused, want 2", got)
	}

	h.clock.hold(t)
	h.sender.mu.Lock()
	h.sender.holdAt = 3
	h.sender.mu.Unlock()
	exec(t, h.db, `UPDATE campaigns SET state = 'running' WHERE id = $1`, c)
	h.clock.release()
	h.waitFor("a send after the resume", func() bool { return len(h.sender.delivered()) == 3 })
	h.clock.hold(t)
	exec(t, h.db, `UPDATE campaigns SET state = 'cancelled' WHERE id = $1`, c)
	later = h.clock.Now().Add(10 * time.Minute)
	h.clock.release()
	h.waitFor("ten more minutes", func() bool { return h.clock.Now().After(later) })
	if got := len(h.sender.delivered()); got != 3 {
		t.Fatalf("%d sends after the cancel, want 3", got)
	}
	if st := queryOne[string](t, h.db, `SELECT state FROM campaigns WHERE id = $1`, c); st != "cancelled" {
		t.Fatalf("campaign %s", st)
	}
}

// TestWakeSendsWithoutWaitingForThePoll: a send queued while the worker
// sleeps goes at once on Wake, with no time passing.
func TestWakeSendsWithoutWaitingForThePoll(t *testing.T) {
	h := newHarness(t, `{"typing": false}`)
	h.inbound(talker, t0.Add(-time.Hour))
	w := h.worker(time.Hour)
	h.run(w)
	h.clock.hold(t) // asleep until the next poll, an hour away; nothing advances the clock
	h.enqueue("W1", event.SendRequest{Phone: talker, Text: "w"})
	w.Wake()
	h.waitFor("W1 sent", func() bool { return len(h.sender.delivered()) == 1 })
	if at := h.sender.delivered()[0].at; !at.Equal(t0) {
		t.Fatalf("sent at %v, want at once (%v)", at, t0)
	}
}

// TestBulkPauseHoldsCampaignsNotChats: while bulk sending is paused (a
// temporary ban reported by the session) no campaign starts or sends, but
// replies still go; clearing the pause publishes the resume and the
// campaign starts.
func TestBulkPauseHoldsCampaignsNotChats(t *testing.T) {
	h := newHarness(t, `{"typing": false}`)
	h.inbound(talker, t0.Add(-time.Hour))
	until := t0.Add(time.Hour)
	if err := PauseBulk(context.Background(), h.db, h.pub, h.m, ReasonTemporaryBan, &until, 0, t0); err != nil {
		t.Fatal(err)
	}
	c := addCampaign(t, h.db, h.m, event.CampaignScheduled, Profiles()["fast"], "5511900000001", "5511900000002")
	h.enqueue("R1", event.SendRequest{Phone: talker, Text: "reply"})
	h.clock.auto(t)
	h.run(h.worker(2 * time.Second))
	h.waitFor("the reply", func() bool { return len(h.sender.delivered()) == 1 })
	later := h.clock.Now().Add(10 * time.Minute)
	h.waitFor("ten minutes of fake time", func() bool { return h.clock.Now().After(later) })
	if n := len(h.sender.delivered()); n != 1 {
		t.Fatalf("%d sends while bulk sending is paused", n)
	}
	if st := queryOne[string](t, h.db, `SELECT state FROM campaigns WHERE id = $1`, c); st != "scheduled" {
		t.Fatalf("campaign %s while paused", st)
	}
	exec(t, h.db, `UPDATE send_settings SET bulk_paused_at = NULL, bulk_paused_reason = NULL WHERE mentorado_id = $1`, h.m)
	h.waitFor("completed", func() bool {
		return queryOne[string](t, h.db, `SELECT state FROM campaigns WHERE id = $1`, c) == "completed"
	})
	ss := h.pub.sendings(t)
	if len(ss) != 2 || ss[0].Reason != ReasonTemporaryBan || ss[1].Bulk != event.BulkActive || ss[1].Reason != ReasonResumed {
		t.Fatalf("sending events %+v", ss)
	}
	if n := len(h.sender.delivered()); n != 3 {
		t.Fatalf("%d sends, want the reply and two campaign messages", n)
	}
}

// providerSender is a Sender whose provider chooses its own message ids
// (the provider gateway's: Meta, Z-API) and refuses some chats up front
// with outside_window (Meta's 24-hour window).
type providerSender struct {
	*fakeSender
	outside map[string]bool // jid → refused
}

func (s providerSender) Send(ctx context.Context, req event.SendRequest, waID string, meta SendMeta) (*event.Message, error) {
	if s.outside[req.Chat] {
		s.mu.Lock()
		s.sends = append(s.sends, sendRec{at: s.clock.Now(), waID: waID, req: req, meta: meta})
		s.mu.Unlock()
		return nil, event.NewCommandError(event.CodeOutsideWindow, "outside the window")
	}
	msg, err := s.fakeSender.Send(ctx, req, waID, meta)
	if msg != nil {
		msg.WAID = "wamid.PROVIDER-" + waID
	}
	return msg, err
}

// TestCampaignsOnlyProviderIDsAndRefusals: the gateway's worker
// (CampaignsOnly) leaves the outbox alone; a recipient keeps the id the
// provider gave its message, not the one chosen before the send; a send
// refused up front (outside_window) fails its recipient at once, takes no
// bulk gap and never pauses bulk sending, however many there are.
func TestCampaignsOnlyProviderIDsAndRefusals(t *testing.T) {
	h := newHarness(t, `{"typing": false}`)
	h.enqueue("3EB0OUTBOX", event.SendRequest{Phone: "5511955550000", Text: "queued"})
	phones := []string{"5511955550001"}
	ps := providerSender{fakeSender: h.sender, outside: map[string]bool{}}
	for i := range 7 { // more than pause_after_errors (5)
		p := fmt.Sprintf("55119555501%02d", i)
		phones = append(phones, p)
		ps.outside[p+"@s.whatsapp.net"] = true
	}
	phones = append(phones, "5511955550002")
	pacing := Profiles()["standard"]
	c := addCampaign(t, h.db, h.m, event.CampaignRunning, pacing, phones...)
	h.clock.auto(t)
	w := NewWorker(WorkerConfig{DB: h.db, Mentorado: h.m, Sender: ps, Publisher: h.pub, Clock: h.clock,
		Limits: DefaultLimits(), Log: testenv.Logger(t), Poll: 2 * time.Second, Seed: 7, CampaignsOnly: true})
	h.run(w)
	h.waitFor("completed", func() bool {
		return queryOne[string](t, h.db, `SELECT state FROM campaigns WHERE id = $1`, c) == "completed"
	})
	sends := h.sender.delivered()
	if len(sends) != 2 {
		t.Fatalf("%d sends, want 2: %v", len(sends), waIDs(sends))
	}
	for _, s := range sends {
		if s.req.Text == "queued" {
			t.Fatal("a CampaignsOnly worker sent the outbox")
		}
		got := queryOne[string](t, h.db, `SELECT wa_message_id FROM campaign_recipients WHERE campaign_id = $1 AND phone = $2`, c, phoneOf(s.req.Chat))
		if got != "wamid.PROVIDER-"+s.waID {
			t.Fatalf("recipient %s kept id %q, want the provider's", s.req.Chat, got)
		}
	}
	if g := secs(sends[1].at.Sub(sends[0].at)); g > pacing.MaxGapSeconds {
		t.Fatalf("%.0f s between the two sends: the refusals between them took gaps", g)
	}
	if n := queryOne[int](t, h.db, `SELECT count(*) FROM campaign_recipients WHERE campaign_id = $1 AND state = 'failed'
		AND reason = 'outside_window' AND attempts = 1`, c); n != 7 {
		t.Fatalf("%d recipients failed outside_window after one attempt, want 7", n)
	}
	if queryOne[*time.Time](t, h.db, `SELECT bulk_paused_at FROM send_settings WHERE mentorado_id = $1`, h.m) != nil {
		t.Fatal("refusals paused bulk sending")
	}
	if st := queryOne[string](t, h.db, `SELECT state FROM outbox WHERE wa_message_id = '3EB0OUTBOX'`); st != "queued" {
		t.Fatalf("outbox send %s, want left queued", st)
	}
}
