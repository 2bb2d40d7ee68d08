package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// childEnv makes the test binary run the persister's main instead of the
// tests, so a test can SIGKILL a real persister process.
const childEnv = "ZAPBUS_TEST_PERSISTER_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, nil, os.Getenv, os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "persister:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestKilledPersisterBatchRedeliveredAfterAckWait: a persister process
// that took a batch (held in its transaction by a tenant lock the test
// holds) and is then SIGKILLed never acks; a second persister gets the
// batch after the configured ZAPBUS_PERSISTER_ACK_WAIT (2s, not the 30s of
// old) and applies it. The second one's different AckWait updates the
// existing durable consumer.
func TestKilledPersisterBatchRedeliveredAfterAckWait(t *testing.T) {
	dbURL := testenv.Postgres(t)
	natsURL := testenv.NATS(t)
	ctx := context.Background()
	db := tenantOne(t, dbURL)
	b := testBus(t, natsURL, testenv.Logger(t).Level(1))
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 3
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		id := fmt.Sprintf("K%d", i)
		e, err := event.New(1, event.MessageEventID(1, id), at, &event.Message{WAID: id, ChatJID: "5511955556666@s.whatsapp.net",
			SenderJID: "5511955556666@s.whatsapp.net", Phone: "5511955556666", Direction: event.DirectionIn,
			Kind: event.KindText, Text: "oi", Timestamp: at, Status: event.MessageReceived})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// Hold mentorado 1's lock so the child's transaction waits in it.
	lock, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_lock($1, 1)`, store.MentoradoLockClass); err != nil {
		t.Fatal(err)
	}
	unlock := func() { _, _ = lock.Exec(ctx, `SELECT pg_advisory_unlock($1, 1)`, store.MentoradoLockClass) }

	// redelivered counts deliveries beyond the first of each event (the
	// consumer sequence counts every delivery, the stream sequence each
	// event once).
	info := func() (pending, redelivered int, ackWait time.Duration, ok bool) {
		c, err := b.JS.Consumer(ctx, bus.StreamEvents, "persister")
		if err != nil {
			return 0, 0, 0, false
		}
		ci, err := c.Info(ctx)
		if err != nil {
			return 0, 0, 0, false
		}
		return ci.NumAckPending, int(ci.Delivered.Consumer) - int(ci.Delivered.Stream), ci.Config.AckWait, true
	}

	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), childEnv+"=1", "DATABASE_URL="+dbURL, "NATS_URL="+natsURL,
		"ZAPBUS_HTTP_ADDR=off", "ZAPBUS_PERSISTER_ACK_WAIT=2s", "ZAPBUS_PERSISTER_MAX_WAIT=50ms")
	childOut := &testenv.Buffer{}
	child.Stdout, child.Stderr = childOut, childOut
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	testenv.Eventually(t, 30*time.Second, func() bool {
		pending, _, _, ok := info()
		return ok && pending == n
	}, "the child persister never took the batch; its output:\n%s", childOut)
	if _, _, ackWait, _ := info(); ackWait != 2*time.Second {
		t.Fatalf("consumer AckWait %s, want the configured 2s", ackWait)
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	unlock()

	// A second persister, with another AckWait, takes the batch over.
	env := envOf(map[string]string{"DATABASE_URL": dbURL, "NATS_URL": natsURL, "ZAPBUS_HTTP_ADDR": "off",
		"ZAPBUS_PERSISTER_ACK_WAIT": "3s", "ZAPBUS_PERSISTER_MAX_WAIT": "50ms"})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	out := &testenv.Buffer{}
	go func() { done <- runWith(rctx, nil, env, out, io.Discard) }()
	defer func() { cancel(); <-done }()
	testenv.Eventually(t, 60*time.Second, func() bool {
		var rows int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM whatsapp_messages WHERE wa_message_id LIKE 'K%'`).Scan(&rows)
		pending, _, _, ok := info()
		return err == nil && rows == n && ok && pending == 0
	}, "the killed persister's batch was not applied by the second one; output:\n%s", out)
	// The lead event the second persister publishes after its commit comes
	// back through the consumer: wait for it to be acked too.
	testenv.Eventually(t, 30*time.Second, func() bool {
		pending, _, _, ok := info()
		return ok && pending == 0
	}, "the consumer kept events pending")
	pending, redelivered, ackWait, _ := info()
	if redelivered < n || pending != 0 || ackWait != 3*time.Second {
		t.Fatalf("consumer: %d redelivered, %d pending, AckWait %s; want redeliveries, none pending, the updated 3s",
			redelivered, pending, ackWait)
	}
	if strings.Contains(out.String(), `"level":"error"`) {
		t.Fatalf("errors in the second persister's output:\n%s", out)
	}
}
