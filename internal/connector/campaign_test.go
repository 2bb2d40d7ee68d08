package connector_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/wafake"
)

// campaignPhones are n Brazilian mobiles (with the 9th digit) from base.
func campaignPhones(base, n int) []string {
	out := make([]string, n)
	for i := range n {
		out[i] = fmt.Sprintf("55119%08d", base+i)
	}
	return out
}

// eightDigit is the form of a Brazilian mobile without its 9th digit.
func eightDigit(p string) string {
	for _, v := range phone.BrazilVariants(p) {
		if v != p {
			return v
		}
	}
	return p
}

// A campaign of 1,000 recipients runs under the pacer: the fake phones'
// receive times (the pacer's fake clock) show every gap within the
// campaign's pacing (plus the typing shown before each message); it pauses
// on an injected ban (campaign paused with reason temporary_ban, a sending
// event), resumes, skips the opted-out and the numbers not on WhatsApp,
// reaches the numbers registered without the 9th digit, and sends to no
// recipient twice.
func TestRealCampaignPacedPausedResumed(t *testing.T) {
	t.Parallel()
	// 1,000 take about 25–45 s on two shared cores, several minutes under
	// the race detector while the other packages' tests run: under it (and
	// with -short) the campaign is smaller. .ci/run runs this test again
	// without the race detector, with all 1,000.
	n := 1000
	if raceEnabled || testing.Short() {
		n = 120
	}
	const minGap, maxGap, typingMax = 20.0, 60.0, 3.0
	se := newSendEnv(t, 2*time.Second)
	m := se.mentorados(1)[0]
	const me = "5511955551403"
	se.sendSettings(m, fmt.Sprintf(`{"daily_cap": %d, "typing": true, "typing_min_seconds": 1, "typing_max_seconds": %g}`, n, typingMax))
	sess := newFakeClock()
	// The worker's poll is long: a campaign inserted now is found at its
	// next step anyway, and the ban stops the worker by itself.
	se.startConn(t, "a", sess, func(c *connector.Config) { c.Sending.Poll = 10 * time.Minute })
	se.pair(t, m, me)

	phones := campaignPhones(70000000, n)
	optedOut, notOnWA, eight := map[string]bool{}, map[string]bool{}, map[string]bool{}
	ctx := context.Background()
	for i, p := range phones {
		switch i % 50 {
		case 7:
			optedOut[p] = true
			if _, err := se.db.Pool.Exec(ctx, `INSERT INTO opt_outs (mentorado_id, phone, source, keyword) VALUES ($1, $2, 'keyword', 'SAIR')`, m, p); err != nil {
				t.Fatal(err)
			}
		case 13:
			notOnWA[p] = true
			se.srv.SetRegistered(p, false)
			se.srv.SetRegistered(eightDigit(p), false)
		case 21:
			// Registered in the old 8-digit form: the 9-digit form is out.
			eight[p] = true
			se.srv.SetRegistered(eightDigit(p), true)
		}
	}
	camp := se.campaign(m, "mil", outbound.Pacing{MinGapSeconds: minGap, MaxGapSeconds: maxGap}, phones)
	started := time.Now()
	stopDrive := se.pacer.drive(t, time.Millisecond)

	// The ban, a third of the way in.
	banAt := n / 3
	testenv.Eventually(t, 4*time.Minute, func() bool { return len(se.srv.SentBy(me)) >= banAt }, "%d sent before the ban", banAt)
	if err := se.srv.Account(me).Kick(wafake.Kick{Kind: wafake.KickBan, BanExpiry: time.Second}); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return se.status(m) == event.StatusBanned }, "banned")
	testenv.Eventually(t, wait, func() bool {
		st, reason := se.campaignState(camp)
		return st == string(event.CampaignPaused) && reason == outbound.ReasonTemporaryBan
	}, "campaign paused by the ban")
	var sending *event.Sending
	for _, env := range se.stored(bus.StreamEvents, event.EventSubject(m, event.TypeSending)) {
		p, err := env.Payload()
		if err != nil {
			t.Fatal(err)
		}
		sending = p.(*event.Sending)
	}
	if sending == nil || sending.Bulk != event.BulkPaused || sending.Reason != outbound.ReasonTemporaryBan || sending.Until == nil {
		t.Fatalf("sending event %+v, want bulk paused by temporary_ban with its end", sending)
	}
	atBan := len(se.srv.SentBy(me))

	// Nothing goes out while banned, however long the pacer waits.
	stopDrive()
	for range 20 {
		se.pacer.step(0)
	}
	if got := len(se.srv.SentBy(me)); got != atBan {
		t.Fatalf("%d messages sent while banned", got-atBan)
	}

	// Resume: the campaign running again, the bulk pause cleared, and the
	// session reconnected once the ban is over.
	if _, err := se.db.Pool.Exec(ctx, `UPDATE campaigns SET state = 'running', pause_reason = NULL, updated_at = now() WHERE id = $1`, camp); err != nil {
		t.Fatal(err)
	}
	if _, err := se.db.Pool.Exec(ctx, `UPDATE send_settings SET bulk_paused_at = NULL, bulk_paused_reason = NULL WHERE mentorado_id = $1`, m); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the fake's ban is on the wall clock
	sess.Advance(2 * time.Hour)
	testenv.Eventually(t, 4*wait, func() bool { return se.status(m) == event.StatusConnected }, "connected after the ban")
	se.pacer.drive(t, time.Millisecond)
	testenv.Eventually(t, 4*time.Minute, func() bool { return se.unfinished(camp) == 0 }, "campaign done")
	t.Logf("%d recipients: %s wall, %d clock steps, %s on the pacer's clock", n, time.Since(started).Round(time.Millisecond), se.pacer.steps(), se.pacer.peek().Sub(newPacerClock().peek()))

	// Every recipient's outcome.
	ids := map[string]string{}
	sent := 0
	for _, r := range se.recipients(camp) {
		switch {
		case optedOut[r.phone]:
			if r.state != store.RecipientSkipped || r.reason != store.ReasonOptedOut {
				t.Errorf("opted-out %s: %s/%s", r.phone, r.state, r.reason)
			}
		case notOnWA[r.phone]:
			if r.state != store.RecipientSkipped || r.reason != store.ReasonNotOnWhatsApp {
				t.Errorf("not on WhatsApp %s: %s/%s", r.phone, r.state, r.reason)
			}
		default:
			if r.state != store.RecipientSent || r.waID == "" {
				t.Errorf("recipient %s: %s/%s", r.phone, r.state, r.reason)
				continue
			}
			sent++
			if other, dup := ids[r.waID]; dup {
				t.Errorf("recipients %s and %s share message %s", other, r.phone, r.waID)
			}
			ids[r.waID] = r.phone
			to := r.phone
			if eight[r.phone] {
				to = eightDigit(r.phone)
				if r.jid != to+"@s.whatsapp.net" {
					t.Errorf("recipient %s resolved to %q, want the 8-digit account", r.phone, r.jid)
				}
			}
			got := receivedIDs(se.srv.Contact(to).Messages())
			if len(got) != 1 || got[0] != r.waID {
				t.Errorf("phone %s shows %v, want only %s", to, got, r.waID)
			}
		}
	}
	if want := n - len(optedOut) - len(notOnWA); sent != want {
		t.Errorf("%d recipients sent, want %d", sent, want)
	}
	for p := range optedOut {
		if got := se.srv.Contact(p).Messages(); len(got) != 0 {
			t.Errorf("opted-out %s got %d messages", p, len(got))
		}
	}
	for p := range eight {
		if got := se.srv.Contact(p).Messages(); len(got) != 0 {
			t.Errorf("the 9-digit form %s got %d messages (the account is the 8-digit one)", p, len(got))
		}
	}

	// The gaps, on the pacer's clock: never below the minimum; above the
	// maximum only after a recipient found not on WhatsApp (the worker
	// spaces lookups by 2 s, and the next message's typing starts after
	// that), and across the ban.
	all := se.srv.SentBy(me)
	if len(all) != sent {
		t.Errorf("the phones received %d messages, %d recipients sent", len(all), sent)
	}
	index := map[string]int{} // the account a message reached → its recipient
	for i, p := range phones {
		if eight[p] {
			p = eightDigit(p)
		}
		index[p] = i
	}
	// skippedBetween: a number not on WhatsApp was looked up between the
	// recipients of messages a and b.
	skippedBetween := func(a, b wafake.Received) bool {
		for j := index[a.To.User] + 1; j < index[b.To.User]; j++ {
			if notOnWA[phones[j]] {
				return true
			}
		}
		return false
	}
	lo := time.Duration(minGap * float64(time.Second))
	hi := time.Duration(maxGap * float64(time.Second))
	hiAfterSkip := hi + time.Duration(typingMax*float64(time.Second)) + 2*time.Second
	var minSeen, maxSeen time.Duration
	for i := 1; i < len(all); i++ {
		if i == atBan {
			continue // the pause
		}
		gap := all[i].At.Sub(all[i-1].At)
		limit := hi
		if skippedBetween(all[i-1], all[i]) {
			limit = hiAfterSkip
		}
		if gap < lo || gap > limit {
			t.Errorf("gap %d→%d is %s, want %s to %s", i-1, i, gap, lo, limit)
		}
		if minSeen == 0 || gap < minSeen {
			minSeen = gap
		}
		maxSeen = max(maxSeen, gap)
	}
	t.Logf("gaps from %s to %s (%d messages)", minSeen, maxSeen, len(all))
}

// A campaign's connector is killed (SIGKILL) mid-campaign; another takes
// the lease and finishes it: every recipient's phone shows one message,
// and no recipient got two ids (a recipient in flight at the kill is
// re-sent under the id it had).
func TestRealCampaignKilledResumes(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, kill9TTL))
	m := re.mentorados(1)[0]
	const me = "5511955551404"
	re.sendSettings(m, `{"typing": false, "daily_cap": 1000}`)
	pairThenHandOver(t, re, m, me)
	const n = 40
	phones := campaignPhones(71000000, n)
	camp := re.campaign(m, "interrompida", outbound.Pacing{MinGapSeconds: 0.15, MaxGapSeconds: 0.25}, phones)
	dir := t.TempDir()
	defer dumpChildLogs(t, dir, "first", "second")

	first := sendChild(t, re, dir, "first")
	testenv.Eventually(t, 6*wait, func() bool { return len(re.srv.SentBy(me)) >= n/3 }, "a third sent before the kill")
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	atKill := len(re.srv.SentBy(me))
	if atKill == n {
		t.Fatal("the whole campaign went out before the kill")
	}
	sendChild(t, re, dir, "second")
	testenv.Eventually(t, 6*wait, func() bool { return re.unfinished(camp) == 0 }, "campaign finished by the second connector")

	seen := map[string]string{}
	for _, r := range re.recipients(camp) {
		if r.state != store.RecipientSent || r.waID == "" {
			t.Errorf("recipient %s: %s/%s", r.phone, r.state, r.reason)
			continue
		}
		if other, dup := seen[r.waID]; dup {
			t.Errorf("recipients %s and %s share %s", other, r.phone, r.waID)
		}
		seen[r.waID] = r.phone
		c := re.srv.Contact(r.phone)
		if got := receivedIDs(c.Messages()); len(got) != 1 || got[0] != r.waID {
			t.Errorf("phone %s shows %v, want only %s", r.phone, got, r.waID)
		}
		if d := c.Deliveries(r.waID); d > 2 {
			t.Errorf("%s reached %s %d times", r.waID, r.phone, d)
		}
	}
	if got := len(re.srv.SentBy(me)); got != n {
		t.Errorf("the phones show %d messages, want %d", got, n)
	}
	t.Logf("killed with %d of %d sent; %d arrivals repeated an id", atKill, n, re.srv.Repeats())
}
