package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

func newBus(t *testing.T) *bus.Bus {
	t.Helper()
	url := testenv.NATS(t)
	nc, err := bus.Connect(url, "test", testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

func message(t *testing.T, mentorado int64, waID string) event.Envelope {
	t.Helper()
	now := time.Now()
	env, err := event.New(mentorado, event.MessageEventID(mentorado, waID), now, &event.Message{
		WAID: waID, ChatJID: "5511912345678@s.whatsapp.net", SenderJID: "5511912345678@s.whatsapp.net",
		Direction: event.DirectionIn, Kind: event.KindText, Text: "hi", Timestamp: now, Status: event.MessageReceived,
	})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestProvisionIsIdempotent(t *testing.T) {
	b := newBus(t)
	ctx := context.Background()
	// Twice more, and concurrently: every process provisions at start.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- b.Provision(ctx) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("provision again: %v", err)
		}
	}
	for _, name := range []string{bus.StreamEvents, bus.StreamQR, bus.StreamDLQ} {
		s, err := b.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		info := s.CachedInfo()
		if name == bus.StreamEvents && (info.Config.MaxAge != 7*24*time.Hour || info.Config.Storage != jetstream.FileStorage || info.Config.Duplicates != 10*time.Minute) {
			t.Errorf("WA_EVENTS config: %+v", info.Config)
		}
		if name == bus.StreamQR && (info.Config.Storage != jetstream.MemoryStorage || info.Config.MaxMsgsPerSubject != 1) {
			t.Errorf("WA_QR config: %+v", info.Config)
		}
	}
	kv, err := b.JS.KeyValue(ctx, bus.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.TTL() != 15*time.Second {
		t.Fatalf("lease bucket TTL %v %v", st, err)
	}
	// A changed setting is applied by the next provision.
	b2, err := bus.New(b.NC, bus.Config{EventsMaxAge: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	s, _ := b.JS.Stream(ctx, bus.StreamEvents)
	if s.CachedInfo().Config.MaxAge != 48*time.Hour {
		t.Fatalf("max age not updated: %v", s.CachedInfo().Config.MaxAge)
	}
}

func TestPublishSameIDStoredOnce(t *testing.T) {
	b := newBus(t)
	ctx := context.Background()
	env := message(t, 42, "ABC")
	a1, err := b.Publish(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := b.Publish(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Duplicate || !a2.Duplicate || a1.Sequence != a2.Sequence {
		t.Fatalf("acks: %+v %+v", a1, a2)
	}
	s, _ := b.JS.Stream(ctx, bus.StreamEvents)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("stored %d messages, want 1", info.State.Msgs)
	}
	raw, err := s.GetMsg(ctx, a1.Sequence)
	if err != nil {
		t.Fatal(err)
	}
	if raw.Subject != "wa.42.evt.message" || raw.Header.Get(jetstream.MsgIDHeader) != "42:msg:ABC" {
		t.Fatalf("stored %s %v", raw.Subject, raw.Header)
	}
}

// TestPublishIfLatest: a conditional publish is stored while the
// subject's last message is the expected one, and refused with
// ErrNotLatest (storing nothing) once another was stored since, including
// a retry of itself (the server checks the sequence before the dedupe id).
func TestPublishAllInOrderOnce(t *testing.T) {
	b := newBus(t)
	ctx := context.Background()
	var envs []event.Envelope
	for _, id := range []string{"A", "B", "C", "D"} {
		envs = append(envs, message(t, 42, id))
	}
	if err := b.PublishAll(ctx, envs[:3]); err != nil {
		t.Fatal(err)
	}
	// A retried batch (the provider redelivers) stores only what is new.
	if err := b.PublishAll(ctx, envs); err != nil {
		t.Fatal(err)
	}
	s, _ := b.JS.Stream(ctx, bus.StreamEvents)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 4 {
		t.Fatalf("stored %d messages, want 4", info.State.Msgs)
	}
	for i, want := range []string{"42:msg:A", "42:msg:B", "42:msg:C", "42:msg:D"} {
		raw, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if got := raw.Header.Get(jetstream.MsgIDHeader); got != want {
			t.Fatalf("seq %d is %s, want %s (order)", i+1, got, want)
		}
	}
}

func TestPublishIfLatest(t *testing.T) {
	b := newBus(t)
	ctx := context.Background()
	first, err := b.Publish(ctx, message(t, 7, "A"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.PublishIfLatest(ctx, message(t, 7, "B"), first.Sequence)
	if err != nil {
		t.Fatalf("expected last %d: %v", first.Sequence, err)
	}
	if _, err := b.PublishIfLatest(ctx, message(t, 7, "B"), first.Sequence); !errors.Is(err, bus.ErrNotLatest) {
		t.Fatalf("retry of a stored conditional publish: %v, want ErrNotLatest", err)
	}
	// Another tenant's subject does not count.
	if _, err := b.Publish(ctx, message(t, 8, "X")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PublishIfLatest(ctx, message(t, 7, "C"), first.Sequence); !errors.Is(err, bus.ErrNotLatest) {
		t.Fatalf("stale expectation: %v, want ErrNotLatest", err)
	}
	s, _ := b.JS.Stream(ctx, bus.StreamEvents)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 3 {
		t.Fatalf("stored %d messages, want 3 (A, B, X)", info.State.Msgs)
	}
	if _, err := b.PublishIfLatest(ctx, message(t, 7, "C"), second.Sequence); err != nil {
		t.Fatalf("expected last %d: %v", second.Sequence, err)
	}
}

func TestPublishFailsWithoutServer(t *testing.T) {
	b := newBus(t)
	b.NC.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := b.Publish(ctx, message(t, 1, "X")); err == nil {
		t.Fatal("publish on a closed connection succeeded")
	}
}

func TestRepublishForLiveFanout(t *testing.T) {
	b := newBus(t)
	sub, err := b.NC.SubscribeSync("live.wa.42.evt.>")
	if err != nil {
		t.Fatal(err)
	}
	env := message(t, 42, "LIVE1")
	if _, err := b.Publish(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(context.Background(), env); err != nil { // duplicate: not republished
		t.Fatal(err)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "live.wa.42.evt.message" || m.Header.Get("Nats-Sequence") != "1" {
		t.Fatalf("republished %s %v", m.Subject, m.Header)
	}
	if _, err := sub.NextMsg(200 * time.Millisecond); !errors.Is(err, nats.ErrTimeout) {
		t.Fatalf("duplicate was republished: %v", err)
	}
}

// TestConsumeContract: applied messages are acked; a batch whose handler
// fails comes back whole; poison is dead-lettered with its reason and
// terminated, never delivered again.
func TestConsumeContract(t *testing.T) {
	b := newBus(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range 6 {
		if _, err := b.Publish(ctx, message(t, 7, fmt.Sprintf("M%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "test", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	// The batch holding M4 fails the first time (nak'd whole, redelivered);
	// M5 is poison.
	var mu sync.Mutex
	seen := map[string]int{}
	poisoned := 0
	deadLettered := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = bus.Consume(ctx, b, cons, bus.ConsumeOptions{Batch: 4, MaxWait: 100 * time.Millisecond, Log: testenv.Logger(t),
			RetryMin: 50 * time.Millisecond, OnDeadLetter: func() { mu.Lock(); deadLettered++; mu.Unlock() }},
			bus.Handler[[]string]{
				Prepare: func(msgs []jetstream.Msg) []string {
					ids := make([]string, len(msgs))
					for i, m := range msgs {
						env, _, err := event.Decode(m.Data())
						if err != nil {
							t.Errorf("decode: %v", err)
						}
						ids[i] = env.ID
					}
					return ids
				},
				Handle: func(_ context.Context, msgs []jetstream.Msg, ids []string) ([]error, error) {
					mu.Lock()
					defer mu.Unlock()
					if len(ids) != len(msgs) {
						t.Errorf("prepared %d ids for %d messages", len(ids), len(msgs))
					}
					fail := false
					for _, id := range ids {
						seen[id]++
						if id == "7:msg:M4" && seen[id] == 1 {
							fail = true
						}
					}
					if fail {
						return nil, errors.New("database away")
					}
					poison := make([]error, len(ids))
					for i, id := range ids {
						if id == "7:msg:M5" {
							poison[i] = errors.New("poison: bad kind")
							poisoned++
						}
					}
					return poison, nil
				},
			})
	}()
	testenv.Eventually(t, 10*time.Second, func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Stream == 6
	}, "consumer never settled")
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	for i := range 6 {
		id := fmt.Sprintf("7:msg:M%d", i)
		if seen[id] < 1 {
			t.Errorf("%s never delivered", id)
		}
	}
	if seen["7:msg:M4"] != 2 {
		t.Errorf("M4 delivered %d times, want 2 (failed batch redelivered once)", seen["7:msg:M4"])
	}
	if poisoned != 1 || deadLettered != 1 {
		t.Errorf("M5 poisoned %d times, dead-lettered %d; want 1, 1 (terminated after its dead letter)", poisoned, deadLettered)
	}
	s, err := b.JS.Stream(context.Background(), bus.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), bus.DLQSubjectPrefix+bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get(bus.HeaderError) != "poison: bad kind" || m.Header.Get(bus.HeaderOriginalSeq) != "6" ||
		m.Header.Get(bus.HeaderOriginalSubject) != "wa.7.evt.message" {
		t.Fatalf("dead letter headers %v", m.Header)
	}
}

func TestDeadLetter(t *testing.T) {
	b := newBus(t)
	ctx := context.Background()
	reason := errors.New("event: invalid field: data.kind")
	for range 2 { // the same dead letter twice is stored once
		if err := b.DeadLetter(ctx, bus.StreamEvents, "wa.9.evt.message", 17, []byte("{garbage"), reason); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := b.JS.Stream(ctx, bus.StreamDLQ)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 1 {
		t.Fatalf("%d dead letters, want 1", info.State.Msgs)
	}
	m, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "{garbage" || m.Header.Get(bus.HeaderError) != reason.Error() ||
		m.Header.Get(bus.HeaderOriginalSubject) != "wa.9.evt.message" || m.Header.Get(bus.HeaderOriginalSeq) != "17" {
		t.Fatalf("dead letter %q %v", m.Data, m.Header)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []bus.Config{
		{EventsMaxAge: time.Second},
		{Replicas: 7},
		{LeaseTTL: time.Millisecond},
		{EventsMaxAge: time.Hour, DuplicateWindow: 2 * time.Hour},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	if err := (bus.Config{}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestProvisionKeepsSettingsOthersChose(t *testing.T) {
	url := testenv.NATS(t)
	nc, err := bus.Connect(url, "test", testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()
	// The connector chose a 4 s lease TTL; ops chose 30 days of events.
	conn, _ := bus.New(nc, bus.Config{LeaseTTL: 4 * time.Second, EventsMaxAge: 30 * 24 * time.Hour})
	if err := conn.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	// A notifier starting with defaults must not reset them.
	notifier, _ := bus.New(nc, bus.Config{})
	if err := notifier.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	kv, _ := notifier.JS.KeyValue(ctx, bus.BucketLeases)
	st, _ := kv.Status(ctx)
	if st.TTL() != 4*time.Second || st.LimitMarkerTTL() != 4*time.Second {
		t.Fatalf("lease TTL reset to %v / %v", st.TTL(), st.LimitMarkerTTL())
	}
	s, _ := notifier.JS.Stream(ctx, bus.StreamEvents)
	if s.CachedInfo().Config.MaxAge != 30*24*time.Hour {
		t.Fatalf("events max age reset to %v", s.CachedInfo().Config.MaxAge)
	}
	// An explicit choice still applies.
	changed, _ := bus.New(nc, bus.Config{LeaseTTL: 6 * time.Second})
	if err := changed.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = kv.Status(ctx)
	if st.TTL() != 6*time.Second {
		t.Fatalf("explicit lease TTL not applied: %v", st.TTL())
	}
}

// TestBatcherCloseReleasesPrefetched: messages a batcher prefetched but
// never handed out go back to the consumer at Close, not after AckWait
// (an hour here), so a peer takes them over at once.
func TestBatcherCloseReleasesPrefetched(t *testing.T) {
	b := newBus(t)
	ctx := context.Background()
	for i := range 10 {
		if _, err := b.Publish(ctx, message(t, 3, fmt.Sprintf("P%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := b.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "shared", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	first := bus.NewBatcher(cons, bus.ConsumeOptions{Batch: 2, Log: testenv.Logger(t)})
	msgs, err := first.Next(ctx)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("first batch: %d, %v", len(msgs), err)
	}
	for _, m := range msgs {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	taken := len(msgs)
	first.Close()

	second := bus.NewBatcher(cons, bus.ConsumeOptions{Batch: 4, Log: testenv.Logger(t)})
	defer second.Close()
	nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for taken < 10 {
		msgs, err := second.Next(nctx)
		if err != nil {
			t.Fatalf("after %d of 10: %v (prefetched messages not released at Close?)", taken, err)
		}
		for _, m := range msgs {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		taken += len(msgs)
	}
	if taken != 10 {
		t.Fatalf("took %d messages, want 10", taken)
	}
}

// TestLiveQR: the last pairing secret stored for a mentorado is read back
// while it lives; none stored, or an expired one, is ErrNoQR.
func TestLiveQR(t *testing.T) {
	b := newBus(t)
	ctx := context.Background()
	if _, err := b.LiveQR(ctx, 5); !errors.Is(err, bus.ErrNoQR) {
		t.Fatalf("nothing stored: %v, want ErrNoQR", err)
	}
	publish := func(code string, expires time.Time) {
		t.Helper()
		q := &event.QR{Code: code, ExpiresAt: expires}
		env, err := event.New(5, event.QREventID(5, q), time.Now(), q)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	publish("2@first", time.Now().Add(time.Minute))
	publish("2@second", time.Now().Add(time.Minute))
	lq, err := b.LiveQR(ctx, 5)
	if err != nil || lq.QR.Code != "2@second" || len(lq.Raw) == 0 || lq.OccurredAt.IsZero() {
		t.Fatalf("live qr: %+v, %v; want the second code", lq, err)
	}
	if _, err := b.LiveQR(ctx, 6); !errors.Is(err, bus.ErrNoQR) {
		t.Fatalf("other mentorado: %v, want ErrNoQR", err)
	}
	publish("2@expired", time.Now().Add(-time.Second))
	if _, err := b.LiveQR(ctx, 5); !errors.Is(err, bus.ErrNoQR) {
		t.Fatalf("expired: %v, want ErrNoQR", err)
	}
}
