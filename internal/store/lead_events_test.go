package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/zapbus/zapbus/internal/store"
)

// TestFlushLeadEvents: the outbox publishes oldest first and deletes what
// it published; a failed publish keeps that row and the ones after it for
// the next flush.
func TestFlushLeadEvents(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m := newMentorado(t, db, "a")
	for i := 1; i <= 5; i++ {
		if _, err := db.Pool.Exec(ctx, `INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data)
			VALUES ($1, $2, now(), $3)`, m, fmt.Sprintf("%d:lead:%d:created", m, i), fmt.Sprintf(`{"lead_id":%d,"change":"created","lid":"%d@lid"}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	var published []string
	boom := errors.New("nats down")
	n, err := db.FlushLeadEvents(ctx, 10, func(_ context.Context, e store.LeadEvent) error {
		if len(published) == 2 {
			return boom
		}
		if e.MentoradoID != m || len(e.Data) == 0 || e.OccurredAt.IsZero() {
			t.Errorf("row %+v", e)
		}
		published = append(published, e.EventID)
		return nil
	})
	if !errors.Is(err, boom) || n != 2 {
		t.Fatalf("flush = %d, %v; want 2 and the publish error", n, err)
	}
	if left, err := db.PendingLeadEvents(ctx); err != nil || left != 3 {
		t.Fatalf("left %d (%v), want 3", left, err)
	}
	n, err = db.FlushLeadEvents(ctx, 2, func(_ context.Context, e store.LeadEvent) error {
		published = append(published, e.EventID)
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("second flush = %d, %v", n, err)
	}
	if _, err := db.FlushLeadEvents(ctx, 10, func(_ context.Context, e store.LeadEvent) error {
		published = append(published, e.EventID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i, id := range published {
		if want := fmt.Sprintf("%d:lead:%d:created", m, i+1); id != want {
			t.Fatalf("published %v, want ids 1..5 in order", published)
		}
	}
	if len(published) != 5 {
		t.Fatalf("published %v", published)
	}
	if left, _ := db.PendingLeadEvents(ctx); left != 0 {
		t.Fatalf("%d left after flushing all", left)
	}
	// A failure on the first row publishes nothing and deletes nothing.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data) VALUES ($1, 'x', now(), '{}')`, m); err != nil {
		t.Fatal(err)
	}
	if n, err := db.FlushLeadEvents(ctx, 10, func(context.Context, store.LeadEvent) error { return boom }); n != 0 || !errors.Is(err, boom) {
		t.Fatalf("flush = %d, %v", n, err)
	}
	if left, _ := db.PendingLeadEvents(ctx); left != 1 {
		t.Fatalf("%d left, want the failed row", left)
	}
}
