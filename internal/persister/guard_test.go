package persister

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// dlqMessages reads every dead letter stored in WA_DLQ.
func dlqMessages(t *testing.T, b *bus.Bus) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.JS.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for uint64(len(out)) < info.State.Msgs {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read dead letter %d of %d: %v", len(out)+1, info.State.Msgs, err)
		}
		out = append(out, m)
	}
	return out
}

// TestReplayDeadLettersPoisonOnce: a replay over a range holding a poison
// event (never seen by a running persister) stores it in WA_DLQ with its
// Zapbus-* headers, and a second replay of the same range does not store
// it again: exactly one dead letter.
func TestReplayDeadLettersPoisonOnce(t *testing.T) {
	db := openDB(t, 1)
	b := newBus(t, testenv.NATS(t))
	ctx := context.Background()
	at := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	good := func(id string) event.Envelope { return inboundText(t, id, at) }
	first, err := b.Publish(ctx, good("R1"))
	if err != nil {
		t.Fatal(err)
	}
	poison, err := b.JS.Publish(ctx, "wa.1.evt.message", []byte(`{"v":1,"id":`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(ctx, good("R2")); err != nil {
		t.Fatal(err)
	}
	p, err := New(testConfig, db, b, testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		st, err := p.Replay(ctx, ReplayOptions{FromSeq: first.Sequence})
		if err != nil {
			t.Fatal(err)
		}
		// The second replay also applies the lead event the first one
		// published (R1 created a lead): acked, nothing written.
		if want := run + 1; st.Applied != want || st.DeadLettered != 1 {
			t.Fatalf("replay %d: stats %+v, want %d applied and 1 dead-lettered", run, st, want)
		}
		dl := dlqMessages(t, b)
		if len(dl) != 1 {
			t.Fatalf("after replay %d: %d dead letters in %s, want exactly 1", run, len(dl), bus.StreamDLQ)
		}
		h := dl[0].Headers()
		want := map[string]string{
			bus.HeaderOriginalSubject: "wa.1.evt.message",
			bus.HeaderOriginalStream:  bus.StreamEvents,
			bus.HeaderOriginalSeq:     strconv.FormatUint(poison.Sequence, 10),
		}
		for k, v := range want {
			if got := h.Get(k); got != v {
				t.Errorf("after replay %d: header %s = %q, want %q", run, k, got, v)
			}
		}
		if h.Get(bus.HeaderError) == "" {
			t.Errorf("after replay %d: no %s header", run, bus.HeaderError)
		}
		if string(dl[0].Data()) != `{"v":1,"id":` {
			t.Errorf("after replay %d: dead letter body %q", run, dl[0].Data())
		}
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM whatsapp_messages WHERE wa_message_id IN ('R1', 'R2')`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("good events applied: %d (%v)", n, err)
	}
}
