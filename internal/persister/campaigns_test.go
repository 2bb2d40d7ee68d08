package persister

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// campaignEvents reads every campaign event stored on WA_EVENTS, in order:
// as many as the stream counts on wa.*.evt.campaign.
func campaignEvents(t testing.TB, b *bus.Bus) []event.Envelope {
	t.Helper()
	ctx := context.Background()
	st, err := b.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("wa.*.evt.campaign"))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, n := range info.State.Subjects {
		want += int(n)
	}
	if want == 0 {
		return nil
	}
	cons, err := b.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"wa.*.evt.campaign"}})
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Envelope
	for len(out) < want {
		batch, err := cons.Fetch(want-len(out), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			env, _, err := event.Decode(msg.Data())
			if err != nil {
				t.Fatalf("campaign event: %v", err)
			}
			out = append(out, env)
		}
		if n == 0 {
			t.Fatalf("read %d of %d campaign events", len(out), want)
		}
	}
	return out
}

// TestCampaignProgress: a campaign with recipients whose messages went
// through the persister gets a progress event with the right counts;
// receipts moving its messages to delivered and read give a new one; no
// change gives none; two reporters at once publish one event per change,
// and a reporter that lost what it published (published cleared) publishes
// the same id, which the stream drops.
func TestCampaignProgress(t *testing.T) {
	db := openDB(t, 2)
	b := newBus(t, testenv.NATS(t))
	ctx := context.Background()
	newP := func() *Persister {
		p, err := New(testConfig, db, b, testenv.Logger(t).Level(1))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	p1, p2 := newP(), newP()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var camp int64
	if err := db.Pool.QueryRow(ctx, `INSERT INTO campaigns (mentorado_id, name, state, message, pacing, total, started_at)
		VALUES (1, 'Black Friday', 'running', '{"kind":"text","text":"Oi {{name}}"}', '{}', 6, now()) RETURNING id`).Scan(&camp); err != nil {
		t.Fatal(err)
	}
	recipient := func(ph, state, reason, waID string) {
		t.Helper()
		exec(`INSERT INTO campaign_recipients (campaign_id, mentorado_id, phone, state, reason, wa_message_id)
			VALUES ($1, 1, $2, $3, nullif($4, ''), nullif($5, ''))`, camp, ph, state, reason, waID)
	}
	recipient("5511900000001", "sent", "", "CAMP1")
	recipient("5511900000002", "sent", "", "CAMP2")
	recipient("5511900000003", "sent", "", "CAMP3")
	recipient("5511900000004", "pending", "", "")
	recipient("5511900000005", "skipped", "opted_out", "")
	recipient("5511900000006", "failed", "not_on_whatsapp", "")
	// A campaign of another mentorado, finished three days ago: outside
	// the window, never reported.
	exec(`INSERT INTO campaigns (mentorado_id, name, state, message, pacing, updated_at, finished_at)
		VALUES (2, 'Old', 'completed', '{}', '{}', now() - interval '72 hours', now() - interval '72 hours')`)

	at := time.Now().UTC().Truncate(time.Second)
	var seq uint64
	sent := func(id, ph string) event.Envelope {
		return outMsg(t, id, ph, event.MessageSent, "", at)
	}
	applyBatches(t, p1, &seq, []event.Envelope{sent("CAMP1", "5511900000001"), sent("CAMP2", "5511900000002"), sent("CAMP3", "5511900000003")})

	report := func(p *Persister, want int) {
		t.Helper()
		n, err := p.ReportCampaigns(ctx, CampaignWindow)
		if err != nil || n != want {
			t.Fatalf("report: %d published (%v), want %d", n, err, want)
		}
	}
	last := func(wantEvents int) *event.Campaign {
		t.Helper()
		evs := campaignEvents(t, b)
		if len(evs) != wantEvents {
			t.Fatalf("%d campaign events on the stream, want %d: %+v", len(evs), wantEvents, evs)
		}
		env := evs[len(evs)-1]
		_, pl, err := event.Decode(mustEncode(t, env))
		if err != nil {
			t.Fatal(err)
		}
		c := pl.(*event.Campaign)
		if env.MentoradoID != 1 || !strings.HasPrefix(env.ID, fmt.Sprintf("1:campaign:%d:", camp)) || !strings.HasSuffix(env.ID, strings.SplitN(event.CampaignEventID(1, c, 0), ":", 5)[4]) || c.CampaignID != camp || c.Name != "Black Friday" {
			t.Fatalf("event %s: %+v", env.ID, c)
		}
		return c
	}
	counts := func(c *event.Campaign, want event.CampaignCounts) {
		t.Helper()
		if c.Counts != want {
			t.Fatalf("counts %+v, want %+v", c.Counts, want)
		}
	}

	report(p1, 1)
	c := last(1)
	if c.State != event.CampaignRunning || c.Reason != "" {
		t.Fatalf("state %s reason %q", c.State, c.Reason)
	}
	counts(c, event.CampaignCounts{Total: 6, Pending: 1, Sent: 3, Failed: 1, Skipped: 1})

	// No change: nothing, from either reporter.
	report(p1, 0)
	report(p2, 0)
	last(1)

	// Receipts through the persister: delivered and read.
	rc := func(id string, k event.ReceiptKind) event.Envelope {
		return mustEnv(t, 1, "rc-"+id+"-"+string(k), at, &event.Receipt{MessageIDs: []string{id}, ChatJID: "x", Kind: k, Timestamp: at})
	}
	applyBatches(t, p1, &seq, []event.Envelope{rc("CAMP1", event.ReceiptDelivered), rc("CAMP2", event.ReceiptRead)})
	report(p2, 1)
	counts(last(2), event.CampaignCounts{Total: 6, Pending: 1, Sent: 3, Delivered: 2, Read: 1, Failed: 1, Skipped: 1})

	// A sent message that fails afterwards counts as failed, not sent.
	applyBatches(t, p1, &seq, []event.Envelope{outMsg(t, "CAMP3", "5511900000003", event.MessageFailed, "rejected", at)})
	report(p1, 1)
	counts(last(3), event.CampaignCounts{Total: 6, Pending: 1, Sent: 2, Delivered: 2, Read: 1, Failed: 2, Skipped: 1})

	// Two reporters at once after each change: one event per change.
	for i, change := range []string{
		`UPDATE campaign_recipients SET state = 'sent', wa_message_id = 'CAMP4' WHERE phone = '5511900000004'`,
		`UPDATE campaigns SET state = 'paused', pause_reason = 'temporary_ban', updated_at = now() WHERE id = ` + fmt.Sprint(camp),
	} {
		exec(change)
		var wg sync.WaitGroup
		var mu sync.Mutex
		total := 0
		for _, p := range []*Persister{p1, p2, p1, p2} {
			wg.Go(func() {
				n, err := p.ReportCampaigns(ctx, CampaignWindow)
				if err != nil {
					t.Errorf("report: %v", err)
				}
				mu.Lock()
				total += n
				mu.Unlock()
			})
		}
		wg.Wait()
		// A reporter that found the pass locked skipped it: run once more
		// to be sure the change is out, then expect exactly one event.
		report(p2, 1-total)
		last(4 + i)
	}
	c = last(5)
	if c.State != event.CampaignPaused || c.Reason != "temporary_ban" {
		t.Fatalf("after pause: state %s reason %q", c.State, c.Reason)
	}
	counts(c, event.CampaignCounts{Total: 6, Sent: 3, Delivered: 2, Read: 1, Failed: 2, Skipped: 1})

	// A reporter whose commit of what it published was lost (published
	// back at the event before, as after a crash before its commit)
	// publishes again under the same id: the stream keeps one.
	exec(`UPDATE campaigns SET published = jsonb_set(jsonb_set(published, '{seq}', '4'), '{state}', '"running"') WHERE id = $1`, camp)
	report(p1, 1)
	last(5)

	// Completed: reported by the fast pass (changed just now), and its
	// reason kept while paused is gone only if the worker clears it.
	exec(`UPDATE campaigns SET state = 'completed', pause_reason = NULL, finished_at = now(), updated_at = now() WHERE id = $1`, camp)
	if n, err := p2.ReportCampaigns(ctx, CampaignRecent); err != nil || n != 1 {
		t.Fatalf("fast pass after completion: %d (%v)", n, err)
	}
	if c := last(6); c.State != event.CampaignCompleted || c.Reason != "" {
		t.Fatalf("completed: %+v", c)
	}
	// An hour later, a receipt: only the full pass (48 h) sees it.
	exec(`UPDATE campaigns SET updated_at = now() - interval '1 hour', finished_at = now() - interval '1 hour' WHERE id = $1`, camp)
	applyBatches(t, p1, &seq, []event.Envelope{rc("CAMP2", event.ReceiptPlayed), rc("CAMP4", event.ReceiptRead)})
	report(p1, 0) // CAMP4 has no message row yet: a pending receipt, no change
	applyBatches(t, p1, &seq, []event.Envelope{sent("CAMP4", "5511900000004")})
	if n, err := p2.ReportCampaigns(ctx, CampaignRecent); err != nil || n != 0 {
		t.Fatalf("fast pass saw a campaign finished an hour ago: %d (%v)", n, err)
	}
	report(p2, 1)
	counts(last(7), event.CampaignCounts{Total: 6, Sent: 3, Delivered: 3, Read: 2, Failed: 2, Skipped: 1})

	var oldPublished *string
	if err := db.Pool.QueryRow(ctx, `SELECT published::text FROM campaigns WHERE mentorado_id = 2`).Scan(&oldPublished); err != nil || oldPublished != nil {
		t.Fatalf("old campaign published = %v (%v)", oldPublished, err)
	}
}

// TestCampaignReporterRuns: Run reports campaigns by itself, and a state
// change comes out as a new event.
func TestCampaignReporterRuns(t *testing.T) {
	db := openDB(t, 1)
	b := newBus(t, testenv.NATS(t))
	cfg := testConfig
	cfg.CampaignInterval = 20 * time.Millisecond
	p, err := New(cfg, db, b, testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var camp int64
	if err := db.Pool.QueryRow(ctx, `INSERT INTO campaigns (mentorado_id, name, state, message, pacing, start_at)
		VALUES (1, 'Natal', 'scheduled', '{}', '{}', now() + interval '1 day') RETURNING id`).Scan(&camp); err != nil {
		t.Fatal(err)
	}
	r := start(t, p)
	testenv.Eventually(t, 20*time.Second, func() bool { return len(campaignEvents(t, b)) == 1 }, "no campaign event")
	if _, err := db.Pool.Exec(ctx, `UPDATE campaigns SET state = 'cancelled', updated_at = now(), finished_at = now() WHERE id = $1`, camp); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return len(campaignEvents(t, b)) == 2 }, "no event for the cancel")
	r.stop(t)
	evs := campaignEvents(t, b)
	for i, want := range []event.CampaignState{event.CampaignScheduled, event.CampaignCancelled} {
		_, pl, err := event.Decode(mustEncode(t, evs[i]))
		if err != nil {
			t.Fatal(err)
		}
		if c := pl.(*event.Campaign); c.CampaignID != camp || c.State != want || c.Counts != (event.CampaignCounts{}) {
			t.Fatalf("event %d: %+v, want %s", i, c, want)
		}
	}
}
