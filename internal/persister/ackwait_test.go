package persister

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// holdTenantLock takes mentorado m's advisory lock (the one every batch
// takes per mentorado) on its own connection until the returned release.
func holdTenantLock(t *testing.T, db *store.DB, m int64) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, store.MentoradoLockClass, int32(m)); err != nil {
		conn.Release()
		t.Fatal(err)
	}
	var once atomic.Bool
	release = func() {
		if once.Swap(true) {
			return
		}
		_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, store.MentoradoLockClass, int32(m))
		conn.Release()
	}
	t.Cleanup(release)
	return release
}

// TestRunHeartbeatKeepsSlowBatch: a batch whose transaction takes longer
// than AckWait (it waits for a tenant lock the test holds) is reported in
// progress every AckWait/3, so JetStream does not redeliver it meanwhile:
// after more than two AckWaits of heartbeats nothing was redelivered, and
// once the lock is released every event is applied exactly once.
func TestRunHeartbeatKeepsSlowBatch(t *testing.T) {
	db := openDB(t, 1)
	natsURL := testenv.NATS(t)
	b := newBus(t, natsURL)
	ctx := context.Background()
	const n = 5
	var last uint64
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		id := fmt.Sprintf("HB%d", i)
		ack, err := b.Publish(ctx, mustEnv(t, 1, event.MessageEventID(1, id), at, &event.Message{WAID: id,
			ChatJID: "5511955556666@s.whatsapp.net", SenderJID: "5511955556666@s.whatsapp.net", Phone: "5511955556666",
			Direction: event.DirectionIn, Kind: event.KindText, Text: "oi", Timestamp: at, Status: event.MessageReceived}))
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	release := holdTenantLock(t, db, 1)

	cfg := testConfig
	// Heartbeats every second; the slack of two more keeps a loaded
	// machine's late heartbeat from looking like a redelivery.
	cfg.AckWait = 3 * time.Second
	p, err := New(cfg, db, newBus(t, natsURL), testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	var beats atomic.Int64
	p.onHeartbeat = func() { beats.Add(1) }
	r := start(t, p)
	name := cfg.WithDefaults().Consumer
	testenv.Eventually(t, 30*time.Second, func() bool {
		c, err := b.JS.Consumer(ctx, bus.StreamEvents, name)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumAckPending == n
	}, "the persister never took the batch")
	// Seven heartbeats at AckWait/3 span more than two AckWaits.
	testenv.Eventually(t, 60*time.Second, func() bool { return beats.Load() >= 7 }, "no heartbeats while the batch waits")
	info := consumerInfo(t, b, name)
	if info.NumRedelivered != 0 || info.NumAckPending != n || info.Config.AckWait != cfg.AckWait {
		t.Fatalf("while the batch is in progress: redelivered %d, ack pending %d, ack wait %s; want 0, %d, 3s",
			info.NumRedelivered, info.NumAckPending, info.Config.AckWait, n)
	}
	release()
	waitDrained(t, b, name, last, 30*time.Second)
	if got := counterValue(p.metrics.applied.WithLabelValues("message")); got != n {
		t.Fatalf("applied %v events, want %d (a redelivered batch would be applied twice)", got, n)
	}
	if info := consumerInfo(t, b, name); info.NumRedelivered != 0 {
		t.Fatalf("%d redelivered", info.NumRedelivered)
	}
	var rows int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM whatsapp_messages`).Scan(&rows); err != nil || rows != n {
		t.Fatalf("%d rows (%v), want %d", rows, err, n)
	}
	r.stop(t)
}
