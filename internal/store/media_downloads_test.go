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

func newMentorado(t *testing.T, db *store.DB, name string) int64 {
	t.Helper()
	var id int64
	if err := db.Pool.QueryRow(context.Background(), "INSERT INTO mentorados (name) VALUES ($1) RETURNING id", name).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func download(m int64, id string) store.DownloadJob {
	return store.DownloadJob{
		Mentorado: m, WAID: id, ChatJID: "5511987654321@s.whatsapp.net", Kind: "image",
		MediaID: "ab" + id, Message: []byte("msg-" + id), Source: []byte(`{"chat":"5511987654321@s.whatsapp.net"}`),
	}
}

func TestMediaDownloadQueue(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.MediaDownloads()
	m, other := newMentorado(t, db, "a"), newMentorado(t, db, "b")

	for _, id := range []string{"A", "B"} {
		created, err := q.Enqueue(ctx, download(m, id))
		if err != nil || !created {
			t.Fatalf("enqueue %s: %v %v", id, created, err)
		}
	}
	// Idempotent: a redelivered message keeps the queued row as it is.
	dup := download(m, "A")
	dup.Message = []byte("other")
	if created, err := q.Enqueue(ctx, dup); err != nil || created {
		t.Fatalf("enqueue again: %v %v", created, err)
	}
	if _, err := q.Enqueue(ctx, download(other, "A")); err != nil {
		t.Fatal(err)
	}
	if n, _ := q.Pending(ctx, m); n != 2 {
		t.Fatalf("pending %d", n)
	}

	jobs, err := q.Claim(ctx, m, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].WAID != "A" || string(jobs[0].Message) != "msg-A" || jobs[0].Mentorado != m || jobs[0].Kind != "image" ||
		string(jobs[0].Source) != `{"chat": "5511987654321@s.whatsapp.net"}` {
		t.Fatalf("claimed %+v", jobs)
	}
	// Leased: a second claim gets nothing.
	if again, err := q.Claim(ctx, m, time.Minute, 10); err != nil || len(again) != 0 {
		t.Fatalf("claimed leased jobs: %+v %v", again, err)
	}

	// A retry counts the attempt and makes it due later.
	n, err := q.Retry(ctx, m, "A", "boom", time.Hour)
	if err != nil || n != 1 {
		t.Fatalf("retry: %d %v", n, err)
	}
	got, err := q.Get(ctx, m, "A")
	if err != nil || got.Attempts != 1 || got.LastError != "boom" || time.Until(got.NextAt) < 50*time.Minute {
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
	if _, err := db.Pool.Exec(ctx, "UPDATE media_downloads SET locked_until = now() - interval '1 second' WHERE wa_message_id = 'B'"); err != nil {
		t.Fatal(err)
	}
	if again, _ := q.Claim(ctx, m, time.Minute, 10); len(again) != 1 || again[0].WAID != "B" {
		t.Fatalf("expired lease: %+v", again)
	}

	if err := q.UpdateMessage(ctx, m, "B", []byte("new path")); err != nil {
		t.Fatal(err)
	}
	if got, _ := q.Get(ctx, m, "B"); string(got.Message) != "new path" {
		t.Fatalf("message %q", got.Message)
	}
	if err := q.UpdateMessage(ctx, m, "nope", nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update missing: %v", err)
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
	if got, err := q.Get(ctx, other, "A"); err != nil || got.Attempts != 0 {
		t.Fatalf("other tenant %+v %v", got, err)
	}
}

// Concurrent claimers never get the same job.
func TestMediaDownloadClaimSkipsLocked(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.MediaDownloads()
	m := newMentorado(t, db, "a")
	const jobs = 40
	for i := range jobs {
		if _, err := q.Enqueue(ctx, download(m, string(rune('a'+i%26))+string(rune('0'+i/26)))); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var seen []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := q.Claim(ctx, m, time.Minute, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, d := range got {
					seen = append(seen, d.WAID)
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
