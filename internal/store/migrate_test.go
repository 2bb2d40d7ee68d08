package store_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	dsn := testenv.Postgres(t)
	ctx := context.Background()
	migs, err := store.Migrations()
	if err != nil || len(migs) == 0 {
		t.Fatalf("migrations: %v %d", err, len(migs))
	}
	// Four processes start at once: every migration is applied exactly once.
	var wg sync.WaitGroup
	results := make([][]int, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool, err := pgxpool.New(ctx, dsn)
			if err != nil {
				errs[i] = err
				return
			}
			defer pool.Close()
			results[i], errs[i] = store.Migrate(ctx, pool)
		}()
	}
	wg.Wait()
	total := 0
	for i := range 4 {
		if errs[i] != nil {
			t.Fatalf("migrate %d: %v", i, errs[i])
		}
		total += len(results[i])
	}
	if total != len(migs) {
		t.Fatalf("applied %d migrations across processes, want %d", total, len(migs))
	}
	// Again: nothing to do.
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	again, err := store.Migrate(ctx, db.Pool)
	if err != nil || len(again) != 0 {
		t.Fatalf("second run applied %v, %v", again, err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM zapbus_migrations").Scan(&n); err != nil || n != len(migs) {
		t.Fatalf("recorded %d migrations: %v", n, err)
	}
	for _, table := range []string{"mentorados", "wa_devices", "whatsapp_messages", "whatsapp_contacts", "leads", "whatsapp_pending_receipts"} {
		if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Errorf("table %s: %v", table, err)
		}
	}
}

func TestSchemaConstraints(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var m int64
	if err := db.Pool.QueryRow(ctx, "INSERT INTO mentorados (name) VALUES ('a') RETURNING id").Scan(&m); err != nil {
		t.Fatal(err)
	}
	ins := `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, direction, kind, status, status_rank, sent_at)
		VALUES ($1, 'X', 'c', 's', 'in', 'text', 'received', 1, now())`
	if _, err := db.Pool.Exec(ctx, ins, m); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, ins, m); err == nil {
		t.Fatal("duplicate WhatsApp id accepted")
	}
	if _, err := db.Pool.Exec(ctx, ins, m+1000); err == nil {
		t.Fatal("message for unknown mentorado accepted")
	}
	lead := "INSERT INTO leads (mentorado_id, phone) VALUES ($1, '5511912345678')"
	if _, err := db.Pool.Exec(ctx, lead, m); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, lead, m); err == nil {
		t.Fatal("duplicate lead phone accepted")
	}
	if _, err := db.Pool.Exec(ctx, "INSERT INTO leads (mentorado_id) VALUES ($1)", m); err == nil {
		t.Fatal("lead with neither phone nor lid accepted")
	}
	if _, err := db.Pool.Exec(ctx, "INSERT INTO wa_devices (mentorado_id, desired_state) VALUES ($1, 'maybe')", m); err == nil {
		t.Fatal("bad desired state accepted")
	}
}

func TestPoolSize(t *testing.T) {
	ctx := context.Background()
	dsn := testenv.Postgres(t)
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Pool.Config().MaxConns; got != store.DefaultMaxConns {
		t.Fatalf("default pool size %d, want %d", got, store.DefaultMaxConns)
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	small, err := store.Open(ctx, dsn+sep+"pool_max_conns=3")
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if got := small.Pool.Config().MaxConns; got != 3 {
		t.Fatalf("pool_max_conns=3 gave %d", got)
	}
}
