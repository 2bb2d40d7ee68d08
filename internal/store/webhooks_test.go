package store_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/store"
)

// webhookListener LISTENs on the webhooks channel on its own connection.
func webhookListener(t *testing.T, db *store.DB) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.Pool.Config().ConnConfig.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+store.WebhooksChannel); err != nil {
		t.Fatal(err)
	}
	return conn
}

func expectWebhookNotify(t *testing.T, conn *pgx.Conn, id int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("no notification for webhook %d: %v", id, err)
	}
	if n.Channel != store.WebhooksChannel || n.Payload != strconv.FormatInt(id, 10) {
		t.Fatalf("notification %s %q, want %s %d", n.Channel, n.Payload, store.WebhooksChannel, id)
	}
}

// TestWebhookAPIQueries: every change is scoped (a tenant's endpoints, or
// the admin-level ones) and notifies the dispatchers.
func TestWebhookAPIQueries(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.WebhookAPI()
	ln := webhookListener(t, db)
	a, b := newMentorado(t, db, "a"), newMentorado(t, db, "b")
	start := time.Now().Add(-time.Hour).Truncate(time.Microsecond)

	mk := func(m *int64, url string, max int) (store.Webhook, error) {
		return q.Create(ctx, m, store.WebhookCreate{URL: url, EventTypes: []string{"message"}, Secret: "whsec_x" + url,
			StartTime: start, Max: max})
	}
	w1, err := mk(&a, "https://a.example/1", 2)
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	if *w1.MentoradoID != a || w1.State != "active" || w1.Generation != 1 || !w1.StartTime.Equal(start) || w1.StartSeq != nil {
		t.Fatalf("created %+v", w1)
	}
	w2, err := mk(&a, "https://a.example/2", 2)
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w2.ID)
	if _, err := mk(&a, "https://a.example/3", 2); !errors.Is(err, store.ErrWebhookLimit) {
		t.Fatalf("third = %v, want the limit", err)
	}
	wb, err := mk(&b, "https://b.example/", 2)
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, wb.ID)
	wadm, err := mk(nil, "https://admin.example/", 2)
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, wadm.ID)

	// Scopes.
	ids := func(m *int64, after int64, limit int) []int64 {
		ws, err := q.List(ctx, m, after, limit)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, w := range ws {
			out = append(out, w.ID)
		}
		return out
	}
	if got := ids(&a, 0, 10); !slices.Equal(got, []int64{w1.ID, w2.ID}) {
		t.Fatalf("a lists %v", got)
	}
	if got := ids(&a, w1.ID, 10); !slices.Equal(got, []int64{w2.ID}) {
		t.Fatalf("a after %d lists %v", w1.ID, got)
	}
	if got := ids(&a, 0, 1); !slices.Equal(got, []int64{w1.ID}) {
		t.Fatalf("a limit 1 lists %v", got)
	}
	if got := ids(nil, 0, 10); !slices.Equal(got, []int64{wadm.ID}) {
		t.Fatalf("admin lists %v", got)
	}
	for _, c := range []struct {
		m  *int64
		id int64
	}{{&b, w1.ID}, {nil, w1.ID}, {&a, wadm.ID}, {&a, wb.ID}} {
		if _, err := q.Get(ctx, c.m, c.id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("get %d in another scope = %v", c.id, err)
		}
		if _, err := q.Pause(ctx, c.m, c.id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("pause %d in another scope = %v", c.id, err)
		}
		if err := q.Delete(ctx, c.m, c.id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("delete %d in another scope = %v", c.id, err)
		}
		if _, err := q.Deliveries(ctx, c.m, c.id, store.WebhookDeliveryFilter{Limit: 10}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deliveries of %d in another scope = %v", c.id, err)
		}
	}

	// Update: the description alone changes nothing else; new event types
	// restart the consumer from now; a new URL clears the health.
	exec(t, db, `UPDATE webhooks SET consecutive_failures = 5, failing_since = now() WHERE id = $1`, w1.ID)
	desc := "crm"
	w, err := q.Update(ctx, &a, w1.ID, store.WebhookPatch{Description: &desc, EventTypes: []string{"message"}})
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	if w.Description != "crm" || w.Generation != 1 || !w.StartTime.Equal(start) || w.ConsecutiveFailures != 5 {
		t.Fatalf("after description %+v", w)
	}
	w, err = q.Update(ctx, &a, w1.ID, store.WebhookPatch{EventTypes: []string{"message", "lead"}})
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	if w.Generation != 1 || !w.StartTime.Equal(start) || !slices.Equal(w.EventTypes, []string{"message", "lead"}) {
		t.Fatalf("after event types %+v", w)
	}
	url := "https://a.example/new"
	w, err = q.Update(ctx, &a, w1.ID, store.WebhookPatch{URL: &url})
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	if w.URL != url || w.ConsecutiveFailures != 0 || w.FailingSince != nil || w.Generation != 1 {
		t.Fatalf("after url %+v", w)
	}

	// Rotate: the old secret signs until now + grace.
	w, err = q.RotateSecret(ctx, &a, w1.ID, "whsec_new", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	if w.Secret != "whsec_new" || w.PreviousSecret == nil || *w.PreviousSecret != w1.Secret ||
		w.PreviousSecretUntil == nil || time.Until(*w.PreviousSecretUntil) < 23*time.Hour {
		t.Fatalf("after rotate %+v", w)
	}

	// Pause and resume.
	w, err = q.Pause(ctx, &a, w1.ID)
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	if w.State != "paused" || w.StateReason != store.WebhookReasonPausedByUser {
		t.Fatalf("after pause %+v", w)
	}
	exec(t, db, `UPDATE webhooks SET consecutive_failures = 3, failing_since = now() WHERE id = $1`, w1.ID)
	w, err = q.Resume(ctx, &a, w1.ID)
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	if w.State != "active" || w.StateReason != "" || w.ConsecutiveFailures != 0 || w.FailingSince != nil {
		t.Fatalf("after resume %+v", w)
	}

	// Deliveries, newest first, by outcome, and redeliver from one.
	for i, o := range []string{"retry", "retry", "delivered", "dead"} {
		exec(t, db, `INSERT INTO webhook_deliveries (webhook_id, delivery_id, event_id, event_type, mentorado_id, stream_seq, attempt, outcome)
			VALUES ($1, $2, $3, 'message', $4, $5, 1, $6)`, w1.ID, "msg_"+strconv.Itoa(i), "e"+strconv.Itoa(i), a, 100+i, o)
	}
	ds, err := q.Deliveries(ctx, &a, w1.ID, store.WebhookDeliveryFilter{Limit: 10})
	if err != nil || len(ds) != 4 || ds[0].DeliveryID != "msg_3" || ds[3].DeliveryID != "msg_0" {
		t.Fatalf("deliveries %+v (%v)", ds, err)
	}
	page, err := q.Deliveries(ctx, &a, w1.ID, store.WebhookDeliveryFilter{Limit: 10, Before: ds[1].ID, Outcome: "retry"})
	if err != nil || len(page) != 2 || page[0].DeliveryID != "msg_1" {
		t.Fatalf("retries before %d: %+v (%v)", ds[1].ID, page, err)
	}
	seq, err := q.DeliverySeq(ctx, &a, w1.ID, "msg_2")
	if err != nil || seq != 102 {
		t.Fatalf("seq %d (%v)", seq, err)
	}
	if _, err := q.DeliverySeq(ctx, &b, w1.ID, "msg_2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("seq from another tenant = %v", err)
	}
	w, err = q.Redeliver(ctx, &a, w1.ID, &seq, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	if w.Generation != 2 || w.StartSeq == nil || *w.StartSeq != 102 {
		t.Fatalf("after redeliver from seq %+v", w)
	}
	w, err = q.Redeliver(ctx, &a, w1.ID, nil, start)
	if err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	if w.Generation != 3 || w.StartSeq != nil || !w.StartTime.Equal(start) {
		t.Fatalf("after redeliver from time %+v", w)
	}

	// Delete takes the log along.
	if err := q.Delete(ctx, &a, w1.ID); err != nil {
		t.Fatal(err)
	}
	expectWebhookNotify(t, ln, w1.ID)
	var left int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1`, w1.ID).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d log rows left (%v)", left, err)
	}
	if _, err := mk(&a, "https://a.example/3", 2); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
}
