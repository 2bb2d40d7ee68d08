package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
)

func TestWebhookConsumerName(t *testing.T) {
	n := bus.WebhookConsumerName(42, 3)
	if n != "wh_42_g3" {
		t.Fatalf("name %q", n)
	}
	id, gen, ok := bus.ParseWebhookConsumerName(n)
	if !ok || id != 42 || gen != 3 {
		t.Fatalf("parse %q: %d %d %v", n, id, gen, ok)
	}
	for _, bad := range []string{"persister", "wh_", "wh_x_g1", "wh_1_g0", "wh_1", "wh_-1_g1", "wh_1_gx"} {
		if _, _, ok := bus.ParseWebhookConsumerName(bad); ok {
			t.Errorf("%q parsed as a webhook consumer", bad)
		}
	}
}

// The webhook dispatcher keeps each endpoint's events in stream order with
// MaxAckPending 1 and retries with NakWithDelay: this checks that a
// message nak'd with a delay still holds the consumer's only ack-pending
// slot, so the next message is not delivered before it (order through
// failures), and that the redelivery comes after the delay, with
// NumDelivered counting the attempts.
func TestNakWithDelayHoldsMaxAckPendingOne(t *testing.T) {
	b := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := b.Publish(ctx, message(t, 7, fmt.Sprintf("W%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	cc := jetstream.ConsumerConfig{
		Durable: bus.WebhookConsumerName(1, 1), AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Second,
		MaxDeliver: -1, MaxAckPending: 1, FilterSubject: "wa.7.evt.message", DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	cons, err := b.CreateOrUpdateConsumer(ctx, bus.StreamEvents, cc)
	if err != nil {
		t.Fatal(err)
	}
	// Two pullers, as two dispatchers would be.
	it1, err := cons.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		t.Fatal(err)
	}
	defer it1.Stop()
	cons2, err := b.WebhookConsumer(ctx, cc.Durable)
	if err != nil {
		t.Fatal(err)
	}
	it2, err := cons2.Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		t.Fatal(err)
	}
	defer it2.Stop()
	type got struct {
		seq, delivered uint64
		at             time.Time
		msg            jetstream.Msg
	}
	msgs := make(chan got, 16)
	for _, it := range []jetstream.MessagesContext{it1, it2} {
		go func() {
			for {
				m, err := it.Next()
				if err != nil {
					return
				}
				md, _ := m.Metadata()
				msgs <- got{md.Sequence.Stream, md.NumDelivered, time.Now(), m}
			}
		}()
	}
	next := func() got {
		t.Helper()
		select {
		case g := <-msgs:
			return g
		case <-ctx.Done():
			t.Fatal("no message")
		}
		return got{}
	}
	// First message: nak'd with a delay three times, then acked.
	const delay = 300 * time.Millisecond
	first := next()
	var seqs []uint64
	last := first
	for i := 1; i <= 3; i++ {
		if err := last.msg.NakWithDelay(delay); err != nil {
			t.Fatal(err)
		}
		g := next()
		if g.seq != first.seq {
			t.Fatalf("after nak %d got seq %d before the nak'd seq %d was acked", i, g.seq, first.seq)
		}
		if g.delivered != uint64(i+1) {
			t.Fatalf("NumDelivered %d, want %d", g.delivered, i+1)
		}
		if gap := g.at.Sub(last.at); gap < delay-50*time.Millisecond {
			t.Fatalf("redelivered after %s, nak delay %s", gap, delay)
		}
		last = g
	}
	if err := last.msg.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	seqs = append(seqs, first.seq)
	for range 2 {
		g := next()
		seqs = append(seqs, g.seq)
		if err := g.msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.IsSorted(seqs) || len(seqs) != 3 || seqs[0] == seqs[1] {
		t.Fatalf("delivery order %v", seqs)
	}
}

func TestWebhookConsumersListDeleteAndDeadLetter(t *testing.T) {
	b := newBus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range []string{"wh_1_g1", "wh_2_g5", "other"} {
		_, err := b.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{Durable: n, AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
	}
	names, err := b.WebhookConsumerNames(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"wh_1_g1", "wh_2_g5"}) {
		t.Fatalf("names %v", names)
	}
	if err := b.DeleteWebhookConsumer(ctx, "wh_1_g1"); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteWebhookConsumer(ctx, "wh_1_g1"); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
	if err := b.DeleteWebhookConsumer(ctx, "other"); err == nil {
		t.Fatal("deleted a consumer that is not a webhook's")
	}

	for range 2 { // stored once
		if err := b.DeadLetterWebhook(ctx, 9, "wa.7.evt.message", 12, []byte(`{"id":"x"}`), errors.New("HTTP 500")); err != nil {
			t.Fatal(err)
		}
	}
	st, err := b.JS.Stream(ctx, bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, bus.DLQSubjectWebhooks)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(bus.HeaderError) != "HTTP 500" || m.Header.Get(bus.HeaderWebhook) != "9" ||
		m.Header.Get(bus.HeaderOriginalSeq) != "12" || m.Header.Get(bus.HeaderOriginalStream) != bus.StreamEvents {
		t.Fatalf("headers %v", m.Header)
	}
	if info, _ := st.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("dead letters stored %d, want 1", info.State.Msgs)
	}
}
