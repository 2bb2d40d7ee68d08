package persister

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// TestOutboxListensForNotifications: a lead event written by another
// process (the notifier's leads API) with a NOTIFY is published at once,
// not at the next outbox interval (an hour here); after the listening
// connection is killed the persister listens again and notifications work
// again.
func TestOutboxListensForNotifications(t *testing.T) {
	db := openDB(t, 1)
	b := newBus(t, testenv.NATS(t))
	cfg := testConfig
	cfg.OutboxInterval = time.Hour
	p, err := New(cfg, db, b, testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	listener := func() int {
		var pid int
		err := db.Pool.QueryRow(ctx, `SELECT coalesce(max(pid), 0) FROM pg_stat_activity
			WHERE datname = current_database() AND application_name = $1 AND query LIKE 'LISTEN%' AND state = 'idle'`,
			store.LeadEventsListenerName).Scan(&pid)
		if err != nil {
			t.Fatal(err)
		}
		return pid
	}
	r := start(t, p)
	var pid int
	testenv.Eventually(t, 20*time.Second, func() bool { pid = listener(); return pid != 0 }, "no listener connection")

	cons, err := b.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"wa.1.evt.lead"}})
	if err != nil {
		t.Fatal(err)
	}
	notify := func(id string) {
		t.Helper()
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, `INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data) VALUES (1, $1, now(), $2)`,
			id, fmt.Sprintf(`{"lead_id":7,"change":"updated","phone":"5511987654321","status":"%s"}`, id[len(id)-2:])); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, store.LeadEventsChannel); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	next := func(want string) {
		t.Helper()
		msg, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
		if err != nil {
			t.Fatalf("waiting for %s on the stream: %v", want, err)
		}
		env, pl, err := event.Decode(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		if l := pl.(*event.Lead); env.ID != want || l.Change != event.LeadUpdated || l.LeadID != 7 {
			t.Fatalf("got %s %+v, want %s", env.ID, l, want)
		}
	}
	notify("1:lead:7:updated:01")
	next("1:lead:7:updated:01")

	// The listening connection dies: the persister listens again.
	if _, err := db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { n := listener(); return n != 0 && n != pid }, "listener not reconnected")
	notify("1:lead:7:updated:02")
	next("1:lead:7:updated:02")
	testenv.Eventually(t, 10*time.Second, func() bool {
		n, err := db.PendingLeadEvents(ctx)
		return err == nil && n == 0
	}, "outbox not emptied")
	r.stop(t)
}
