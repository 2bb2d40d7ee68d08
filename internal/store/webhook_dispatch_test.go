package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/store"
)

func insertWebhookRow(t *testing.T, db *store.DB, m *int64) store.Webhook {
	t.Helper()
	now := time.Now()
	w := store.Webhook{MentoradoID: m, URL: "https://example.com/hook", EventTypes: []string{"message"},
		Secret: "whsec_AAAA", State: "active", StateAt: now, StartTime: now, Generation: 1, CreatedAt: now, UpdatedAt: now}
	if _, err := db.Bun.NewInsert().Model(&w).Returning("*").Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestWebhookDispatchQueries(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.WebhookDispatch()
	m := newMentorado(t, db, "a")
	w := insertWebhookRow(t, db, &m)
	admin := insertWebhookRow(t, db, nil)

	all, err := q.All(ctx)
	if err != nil || len(all) != 2 || all[0].ID != w.ID || *all[0].MentoradoID != m || all[1].MentoradoID != nil ||
		all[0].EventTypes[0] != "message" {
		t.Fatalf("all: %+v %v", all, err)
	}

	// A run of failures, then a success ends it.
	t0 := time.Now().Truncate(time.Millisecond)
	h, err := q.RecordFailure(ctx, w.ID, t0)
	if err != nil || h.ConsecutiveFailures != 1 || !h.FailingSince.Equal(t0) || h.State != "active" {
		t.Fatalf("failure 1: %+v %v", h, err)
	}
	h, err = q.RecordFailure(ctx, w.ID, t0.Add(time.Second))
	if err != nil || h.ConsecutiveFailures != 2 || !h.FailingSince.Equal(t0) {
		t.Fatalf("failure 2: %+v %v", h, err)
	}
	if _, err := q.RecordFailure(ctx, 999999, t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("failure of a missing webhook: %v", err)
	}
	if err := q.RecordSuccess(ctx, w.ID, t0.Add(2*time.Second), false); err != nil {
		t.Fatal(err)
	}
	all, _ = q.All(ctx)
	if all[0].ConsecutiveFailures != 2 || all[0].LastSuccessAt == nil {
		t.Fatalf("success without ending the run: %+v", all[0])
	}
	if err := q.RecordSuccess(ctx, w.ID, t0.Add(3*time.Second), true); err != nil {
		t.Fatal(err)
	}
	all, _ = q.All(ctx)
	if all[0].ConsecutiveFailures != 0 || all[0].FailingSince != nil || !all[0].LastSuccessAt.Equal(t0.Add(3*time.Second)) ||
		!all[0].LastFailureAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("after the success: %+v", all[0])
	}

	// State changes only from the expected state, with a NOTIFY.
	notified := make(chan struct{}, 10)
	lctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- db.ListenWebhooks(lctx, func() { notified <- struct{}{} }) }()
	select {
	case <-notified: // listening
	case <-time.After(10 * time.Second):
		t.Fatal("not listening")
	}
	changed, err := q.SetState(ctx, w.ID, "active", "paused", "failing", t0)
	if err != nil || !changed {
		t.Fatalf("pause: %v %v", changed, err)
	}
	select {
	case <-notified:
	case <-time.After(10 * time.Second):
		t.Fatal("no notification")
	}
	if changed, err := q.SetState(ctx, w.ID, "active", "disabled", "gone", t0); err != nil || changed {
		t.Fatalf("change from a state it is not in: %v %v", changed, err)
	}
	all, _ = q.All(ctx)
	if all[0].State != "paused" || all[0].StateReason != "failing" {
		t.Fatalf("state %+v", all[0])
	}
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("listen ended with %v", err)
	}

	// The delivery log: inserted in one COPY (rows of a deleted webhook
	// skipped), pruned to the newest rows per webhook.
	var rows []store.WebhookDelivery
	for i := range 10 {
		code := 200
		for _, id := range []int64{w.ID, admin.ID} {
			rows = append(rows, store.WebhookDelivery{WebhookID: id, DeliveryID: fmt.Sprintf("msg_%d", i), EventID: fmt.Sprint(i),
				EventType: "message", MentoradoID: m, StreamSeq: int64(i + 1), Attempt: 1, Outcome: store.DeliveryDelivered,
				StatusCode: &code, LatencyMS: 3, AttemptedAt: t0})
		}
	}
	if err := q.InsertDeliveries(ctx, rows); err != nil {
		t.Fatal(err)
	}
	n, err := q.PruneDeliveries(ctx, []int64{w.ID, admin.ID}, 4)
	if err != nil || n != 12 {
		t.Fatalf("pruned %d: %v", n, err)
	}
	var left []store.WebhookDelivery
	if err := db.Bun.NewSelect().Model(&left).Where("webhook_id = ?", w.ID).Order("id").Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(left) != 4 || left[0].DeliveryID != "msg_6" || left[3].DeliveryID != "msg_9" || *left[3].StatusCode != 200 {
		t.Fatalf("left %+v", left)
	}
	exec(t, db, `DELETE FROM webhooks WHERE id = $1`, admin.ID)
	if err := q.InsertDeliveries(ctx, rows[:4]); err != nil {
		t.Fatalf("insert with a deleted webhook's rows: %v", err)
	}
	var count int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM webhook_deliveries`).Scan(&count); err != nil || count != 6 {
		t.Fatalf("rows %d %v", count, err)
	}
}
