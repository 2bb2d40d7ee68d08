package outbound

import (
	"context"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

const ownJID = "5511900000000@s.whatsapp.net"

func TestEnqueueOnceByClientID(t *testing.T) {
	db, m := openDB(t)
	pub := &recPub{}
	ctx := context.Background()
	req := event.SendRequest{ClientID: "order-7", Phone: "5511987654321", Text: "olá"}
	msg, err := Enqueue(ctx, db, pub, m, ownJID, req, "3EB0A1", t0, Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if msg.Status != event.MessageQueued || msg.WAID != "3EB0A1" || msg.ChatJID != "5511987654321@s.whatsapp.net" ||
		msg.Phone != "5511987654321" || msg.Kind != event.KindText || msg.SenderJID != ownJID || msg.ClientID != "order-7" {
		t.Fatalf("queued message %+v", msg)
	}
	got := pub.messages(t)
	if q, ok := got[event.OutboxEventID(m, "3EB0A1", event.MessageQueued)]; !ok || q.Status != event.MessageQueued || q.Text != "olá" {
		t.Fatalf("queued event: %v", got)
	}
	// A retry with another id returns the first message; one row.
	again, err := Enqueue(ctx, db, pub, m, ownJID, req, "3EB0B2", t0.Add(time.Second), Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if again.WAID != "3EB0A1" {
		t.Fatalf("retry got %s, want the first id", again.WAID)
	}
	if n := queryOne[int](t, db, `SELECT count(*) FROM outbox WHERE mentorado_id = $1`, m); n != 1 {
		t.Fatalf("%d outbox rows", n)
	}
	exp := queryOne[time.Time](t, db, `SELECT expires_at FROM outbox WHERE wa_message_id = '3EB0A1'`)
	if want := t0.Add(time.Duration(Defaults().QueueTTLSeconds) * time.Second); !exp.Equal(want) {
		t.Fatalf("expires at %v, want %v", exp, want)
	}
	// The same client id of another mentorado is another send.
	m2 := addMentorado(t, db)
	if other, err := Enqueue(ctx, db, pub, m2, ownJID, req, "3EB0C3", t0, Defaults()); err != nil || other.WAID != "3EB0C3" {
		t.Fatalf("other mentorado: %+v %v", other, err)
	}

	found, state, err := Lookup(ctx, db, m, "order-7")
	if err != nil || found == nil || found.WAID != "3EB0A1" || state != store.OutboxQueued || found.SenderJID != ownJID {
		t.Fatalf("lookup: %+v %q %v", found, state, err)
	}
	if none, _, err := Lookup(ctx, db, m, "nope"); none != nil || err != nil {
		t.Fatalf("lookup of an unknown id: %+v %v", none, err)
	}
}

func TestEnqueueTTLAndPublishFailure(t *testing.T) {
	db, m := openDB(t)
	pub := &recPub{fail: true}
	ctx := context.Background()
	req := event.SendRequest{Chat: "120363000000000000@g.us", Text: "grupo", TTLSeconds: 60}
	msg, err := Enqueue(ctx, db, pub, m, ownJID, req, "3EB0D4", t0, Defaults())
	if err != nil {
		t.Fatalf("a lost queued event must not fail the send: %v", err)
	}
	if msg.ChatJID != "120363000000000000@g.us" || msg.Phone != "" {
		t.Fatalf("group message %+v", msg)
	}
	if exp := queryOne[time.Time](t, db, `SELECT expires_at FROM outbox WHERE wa_message_id = '3EB0D4'`); !exp.Equal(t0.Add(time.Minute)) {
		t.Fatalf("expires at %v", exp)
	}
	// The retry publishes the queued event the first call lost.
	pub.setFail(false)
	req.ClientID = ""
	if _, err := Enqueue(ctx, db, pub, m, ownJID, req, "3EB0D4", t0, Defaults()); err != nil {
		t.Fatal(err)
	}
	if _, ok := pub.messages(t)[event.OutboxEventID(m, "3EB0D4", event.MessageQueued)]; !ok {
		t.Fatal("queued event not republished")
	}
}

func TestFailQueuedAndSweep(t *testing.T) {
	db, m := openDB(t)
	m2 := addMentorado(t, db)
	pub := &recPub{}
	ctx := context.Background()
	s := Defaults()
	for i, id := range []string{"A1", "A2", "A3"} {
		req := event.SendRequest{Phone: "5511987654321", Text: "x", TTLSeconds: 60 * (i + 1)}
		if _, err := Enqueue(ctx, db, pub, m, ownJID, req, id, t0, s); err != nil {
			t.Fatal(err)
		}
		if _, err := Enqueue(ctx, db, pub, m2, ownJID, req, id, t0, s); err != nil {
			t.Fatal(err)
		}
	}
	exec(t, db, `UPDATE outbox SET state = 'sent' WHERE mentorado_id = $1 AND wa_message_id = 'A3'`, m2)

	// Sweep at t0+2m: A1 and A2 of both mentorados (A3 of m2 was sent).
	n, err := Sweep(ctx, db, pub, t0.Add(2*time.Minute))
	if err != nil || n != 4 {
		t.Fatalf("sweep: %d %v", n, err)
	}
	msgs := pub.messages(t)
	for _, mm := range []int64{m, m2} {
		for _, id := range []string{"A1", "A2"} {
			e, ok := msgs[event.OutboxEventID(mm, id, event.MessageExpired)]
			if !ok || e.Status != event.MessageExpired || e.StatusReason != ReasonTTLExpired {
				t.Fatalf("expired event of %d/%s: %+v", mm, id, e)
			}
		}
	}
	if n, _ := Sweep(ctx, db, pub, t0.Add(2*time.Minute)); n != 0 {
		t.Fatalf("second sweep expired %d", n)
	}

	// A publish failure rolls the batch back: nothing expires silently.
	pub.setFail(true)
	if _, err := Sweep(ctx, db, pub, t0.Add(time.Hour)); err == nil {
		t.Fatal("sweep with NATS down succeeded")
	}
	if st := queryOne[string](t, db, `SELECT state FROM outbox WHERE mentorado_id = $1 AND wa_message_id = 'A3'`, m); st != store.OutboxQueued {
		t.Fatalf("A3 is %s after a failed sweep", st)
	}
	pub.setFail(false)

	// FailQueued fails m's queued and in-flight sends, not m2's.
	exec(t, db, `UPDATE outbox SET state = 'sending' WHERE mentorado_id = $1 AND wa_message_id = 'A3'`, m)
	if _, err := Enqueue(ctx, db, pub, m, ownJID, event.SendRequest{Phone: "5511987654321", Text: "y"}, "A4", t0, s); err != nil {
		t.Fatal(err)
	}
	n, err = FailQueued(ctx, db, pub, m, "logged_out")
	if err != nil || n != 2 {
		t.Fatalf("fail queued: %d %v", n, err)
	}
	msgs = pub.messages(t)
	for _, id := range []string{"A3", "A4"} {
		if e := msgs[event.OutboxEventID(m, id, event.MessageFailed)]; e.StatusReason != "logged_out" || e.Status != event.MessageFailed {
			t.Fatalf("failed event of %s: %+v", id, e)
		}
	}
	if n := queryOne[int](t, db, `SELECT count(*) FROM outbox WHERE mentorado_id = $1 AND state IN ('queued', 'sending')`, m); n != 0 {
		t.Fatalf("%d sends of m left", n)
	}
	_, state, _ := Lookup(ctx, db, m, "")
	if state != "" {
		t.Fatal("lookup of an empty client id")
	}
}

func TestPauseBulk(t *testing.T) {
	db, m := openDB(t)
	pub := &recPub{}
	ctx := context.Background()
	run := addCampaign(t, db, m, event.CampaignRunning, Profiles()["fast"], "5511987654321")
	sched := addCampaign(t, db, m, event.CampaignScheduled, Profiles()["fast"], "5511987654321")
	until := t0.Add(time.Hour)
	if err := PauseBulk(ctx, db, pub, m, ReasonTemporaryBan, &until, 0, t0); err != nil {
		t.Fatal(err)
	}
	if st := queryOne[string](t, db, `SELECT state || ':' || pause_reason FROM campaigns WHERE id = $1`, run); st != "paused:temporary_ban" {
		t.Fatalf("running campaign: %s", st)
	}
	if st := queryOne[string](t, db, `SELECT state FROM campaigns WHERE id = $1`, sched); st != "scheduled" {
		t.Fatalf("scheduled campaign: %s", st)
	}
	_, row, err := LoadSettings(ctx, db, m)
	if err != nil || row.PausedAt == nil || !row.PausedAt.Equal(t0) || row.PauseReason != ReasonTemporaryBan {
		t.Fatalf("settings row %+v %v", row, err)
	}
	ss := pub.sendings(t)
	if len(ss) != 1 || ss[0].Bulk != event.BulkPaused || ss[0].Reason != ReasonTemporaryBan || ss[0].Until == nil || !ss[0].Until.Equal(until) {
		t.Fatalf("sending events %+v", ss)
	}
	if id := pub.all()[0].ID; id != event.SendingEventID(m, event.BulkPaused, t0) {
		t.Fatalf("event id %s", id)
	}
}

func TestLoadSettingsOverlaysOverrides(t *testing.T) {
	db, m := openDB(t)
	s, row, err := LoadSettings(context.Background(), db, m)
	if err != nil || row.PausedAt != nil || s.DailyCap != Defaults().DailyCap {
		t.Fatalf("no row: %+v %+v %v", s, row, err)
	}
	exec(t, db, `INSERT INTO send_settings (mentorado_id, settings) VALUES ($1, '{"daily_cap": 9, "typing": false}')`, m)
	s, _, err = LoadSettings(context.Background(), db, m)
	if err != nil || s.DailyCap != 9 || s.Typing || s.ChatBurst != Defaults().ChatBurst {
		t.Fatalf("overrides: %+v %v", s, err)
	}
}
