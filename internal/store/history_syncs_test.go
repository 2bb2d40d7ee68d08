package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/store"
)

func historyJob(m int64, id string, synced time.Time) store.HistorySyncJob {
	return store.HistorySyncJob{Mentorado: m, WAID: id, Notification: []byte("notif-" + id), SyncedAt: synced}
}

func TestHistorySyncQueue(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.HistorySyncs()
	m, other := newMentorado(t, db, "a"), newMentorado(t, db, "b")
	synced := time.Date(2026, 11, 24, 12, 0, 5, 0, time.UTC)

	for _, id := range []string{"A", "B"} {
		created, err := q.Enqueue(ctx, historyJob(m, id, synced))
		if err != nil || !created {
			t.Fatalf("enqueue %s: %v %v", id, created, err)
		}
	}
	// Idempotent: a redelivered notification keeps the queued row as it is.
	dup := historyJob(m, "A", synced.Add(time.Hour))
	dup.Notification = []byte("other")
	if created, err := q.Enqueue(ctx, dup); err != nil || created {
		t.Fatalf("enqueue again: %v %v", created, err)
	}
	if _, err := q.Enqueue(ctx, historyJob(other, "A", synced)); err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Pending(ctx, m); n != 2 {
		t.Fatalf("pending %d", n)
	}

	jobs, err := q.Claim(ctx, m, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].WAID != "A" || string(jobs[0].Notification) != "notif-A" || jobs[0].Mentorado != m ||
		!jobs[0].SyncedAt.Equal(synced) || jobs[0].Attempts != 0 {
		t.Fatalf("claimed %+v", jobs)
	}
	// Leased: a second claim gets nothing.
	if again, err := q.Claim(ctx, m, time.Minute, 10); err != nil || len(again) != 0 {
		t.Fatalf("claimed leased jobs: %+v %v", again, err)
	}

	// A retry counts the attempt and makes it due later.
	n, err := q.Retry(ctx, m, "A", "http_500", time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	got, err := q.Get(ctx, m, "A")
	if err != nil || got.Attempts != 1 || got.LastError != "http_500" || time.Until(got.NextAt) < 50*time.Minute {
		t.Fatalf("after retry %+v %v", got, err)
	}
	if again, _ := q.Claim(ctx, m, time.Minute, 10); len(again) != 0 {
		t.Fatalf("claimed a job not yet due: %+v", again)
	}
	if _, err := q.Retry(ctx, m, "A", "again", 0); err != nil {
		t.Fatal(err)
	}
	if again, _ := q.Claim(ctx, m, time.Minute, 10); len(again) != 1 || again[0].WAID != "A" || again[0].Attempts != 2 {
		t.Fatalf("due retry not claimed: %+v", again)
	}

	// Release gives B back at once, without an attempt.
	if err := q.Release(ctx, m, "B"); err != nil {
		t.Fatal(err)
	}
	if again, _ := q.Claim(ctx, m, time.Minute, 10); len(again) != 1 || again[0].WAID != "B" || again[0].Attempts != 0 {
		t.Fatalf("released job: %+v", again)
	}
	// An expired lease makes the job claimable again (a crashed worker).
	if _, err := db.Pool.Exec(ctx, "UPDATE history_syncs SET locked_until = now() - interval '1 second' WHERE wa_message_id = 'B'"); err != nil {
		t.Fatal(err)
	}
	if again, _ := q.Claim(ctx, m, time.Minute, 10); len(again) != 1 || again[0].WAID != "B" {
		t.Fatalf("expired lease: %+v", again)
	}
	if _, err := q.Retry(ctx, m, "nope", "x", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("retry missing: %v", err)
	}

	for _, id := range []string{"A", "B"} {
		if err := q.Done(ctx, m, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.Get(ctx, m, "A"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get after done: %v", err)
	}
	if n, _ := q.Pending(ctx, m); n != 0 {
		t.Fatalf("pending after done %d", n)
	}
	// The other tenant's job was never touched.
	if got, err := q.Get(ctx, other, "A"); err != nil || got.Attempts != 0 || string(got.Notification) != "notif-A" {
		t.Fatalf("other tenant %+v %v", got, err)
	}
	// Deleting the mentorado drops its queue (ON DELETE CASCADE).
	if _, err := db.Pool.Exec(ctx, "DELETE FROM mentorados WHERE id = $1", other); err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Pending(ctx, other); n != 0 {
		t.Fatalf("pending after the mentorado was deleted: %d", n)
	}
}

// Concurrent claimers never get the same chunk.
func TestHistorySyncClaimSkipsLocked(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.HistorySyncs()
	m := newMentorado(t, db, "a")
	const jobs = 30
	for i := range jobs {
		if _, err := q.Enqueue(ctx, historyJob(m, string(rune('a'+i%26))+string(rune('0'+i/26)), time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var seen []string
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := q.Claim(ctx, m, time.Minute, 2)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, h := range got {
					seen = append(seen, h.WAID)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(seen)
	if len(seen) != jobs || len(slices.Compact(slices.Clone(seen))) != jobs {
		t.Fatalf("claimed %d (%d distinct) of %d", len(seen), len(slices.Compact(slices.Clone(seen))), jobs)
	}
}
