package persister

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

func newBus(t testing.TB, natsURL string) *bus.Bus {
	t.Helper()
	nc, err := bus.Connect(natsURL, t.Name(), testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// Provision only what is missing: a stream update on every new bus
	// would run against other persisters creating their consumer, which
	// the embedded nats-server 2.15.2 races on (seen under -race).
	b, err := bus.New(nc, bus.Config{ProvisionIfMissing: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// publish stores ops in WA_EVENTS (raw ones without a Nats-Msg-Id, so they
// are stored again) and returns what the stream stored, in order.
func publish(t testing.TB, b *bus.Bus, ops []genOp, raw bool) []Item {
	t.Helper()
	futs := make([]jetstream.PubAckFuture, len(ops))
	datas := make([][]byte, len(ops))
	for i, o := range ops {
		datas[i] = mustEncode(t, o.env)
		msg := &nats.Msg{Subject: o.env.Subject(), Data: datas[i]}
		var opts []jetstream.PublishOpt
		if !o.raw && !raw {
			opts = append(opts, jetstream.WithMsgID(o.env.ID))
		}
		f, err := b.JS.PublishMsgAsync(msg, opts...)
		if err != nil {
			t.Fatalf("publish: %v", err)
		}
		futs[i] = f
		// Stay well under the client's limit of outstanding async
		// publishes (it stalls when a loaded machine acks slowly).
		if i%500 == 499 {
			select {
			case <-b.JS.PublishAsyncComplete():
			case <-time.After(30 * time.Second):
				t.Fatalf("publish: no acks for 30s")
			}
		}
	}
	var items []Item
	for i, f := range futs {
		select {
		case ack := <-f.Ok():
			if !ack.Duplicate {
				items = append(items, Item{Subject: ops[i].env.Subject(), Seq: ack.Sequence, Data: datas[i]})
			}
		case err := <-f.Err():
			t.Fatalf("publish %d: %v", i, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("publish %d: no ack", i)
		}
	}
	return items
}

func consumerInfo(t testing.TB, b *bus.Bus, name string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := b.JS.Consumer(context.Background(), bus.StreamEvents, name)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info
}

// waitDrained waits until the durable consumer has settled everything up
// to lastSeq.
func waitDrained(t testing.TB, b *bus.Bus, name string, lastSeq uint64, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() bool {
		c, err := b.JS.Consumer(context.Background(), bus.StreamEvents, name)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= lastSeq && info.NumAckPending == 0 && info.NumPending == 0
	}, "consumer %s did not settle up to seq %d", name, lastSeq)
}

// streamLeadFacts reads the lead events stored in WA_EVENTS and renders
// them like model.leadFacts (renamed left out); leadsOf counts all of them
// per mentorado, and in all at 0.
func streamLeadFacts(t testing.TB, b *bus.Bus) (facts []string, leadsOf map[int64]int) {
	t.Helper()
	ctx := context.Background()
	leadsOf = map[int64]int{}
	info, err := b.StreamInfo(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := b.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"wa.*.evt.lead"}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		var last uint64
		for msg := range batch.Messages() {
			n++
			if md, err := msg.Metadata(); err == nil {
				last = md.Sequence.Stream
			}
			env, pl, err := event.Decode(msg.Data())
			if err != nil {
				t.Fatalf("lead event: %v", err)
			}
			l := pl.(*event.Lead)
			leadsOf[env.MentoradoID]++
			leadsOf[0]++
			var about string
			switch l.Change {
			case event.LeadRenamed:
				continue
			case event.LeadCreated:
				about = l.Phone
				if about == "" {
					about = "lid:" + l.LID
				}
			case event.LeadPhone:
				about = l.LID + ">" + l.Phone
			default:
				about = l.Phone
			}
			facts = append(facts, fmt.Sprintf("leadevent|%d|%s|%s", env.MentoradoID, l.Change, about))
		}
		if n == 0 || last >= info.State.LastSeq {
			break
		}
	}
	slices.Sort(facts)
	return facts, leadsOf
}

type running struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("run: %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("persister did not stop; goroutines:\n%s", testenv.Goroutines())
	}
}

func start(t testing.TB, p *Persister) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan struct{})}
	go func() { r.err = p.Run(ctx); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

var testConfig = Config{Batch: 200, MaxWait: 50 * time.Millisecond, AckWait: 2 * time.Second,
	RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}

// TestRunTenThousand: 10,000 generated events through JetStream give
// exactly the model's rows; publishing everything again (deduplicated by
// the window, then stored again without ids so only the unique keys catch
// it) and a full replay leave the same rows.
func TestRunTenThousand(t *testing.T) {
	db := openDB(t, 5)
	b := newBus(t, testenv.NATS(t))
	ops := generate(t, 42, 10000, 5)
	items := publish(t, b, ops, false)
	if len(items) < 9000 {
		t.Fatalf("only %d events stored", len(items))
	}
	want := modelOf(items, 5).rows()
	cfg := testConfig
	cfg.Batch = 500
	p, err := New(cfg, db, b, testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, p)
	last := items[len(items)-1].Seq
	waitDrained(t, b, cfg.WithDefaults().Consumer, last, 60*time.Second)
	first := dump(t, db)
	diffLines(t, "single pass", want, first)

	rawOps := 0
	for _, o := range ops {
		if o.raw {
			rawOps++
		}
	}
	// With ids, only the generator's id-less duplicates are stored again.
	dups := publish(t, b, ops, false)
	if len(dups) != rawOps {
		t.Fatalf("duplicate window let %d events through, want the %d without id", len(dups), rawOps)
	}
	again := publish(t, b, ops, true)
	if len(again) != len(ops) {
		t.Fatalf("raw republish stored %d of %d", len(again), len(ops))
	}
	waitDrained(t, b, cfg.WithDefaults().Consumer, again[len(again)-1].Seq, 60*time.Second)
	diffLines(t, "after storing every event again", first, dump(t, db))
	testenv.Eventually(t, 30*time.Second, func() bool {
		n, err := db.PendingLeadEvents(context.Background())
		return err == nil && n == 0
	}, "lead events left in the outbox")
	r.stop(t)

	// The lead events the persister published: one per fact of the
	// model, whatever was stored again (and none by the replay below).
	facts, leadsOf := streamLeadFacts(t, b)
	diffLines(t, "lead events on the stream", modelOf(items, 5).leadFacts(), facts)

	st, err := p.Replay(context.Background(), ReplayOptions{FromSeq: 1})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(items) + rawOps + len(again) + leadsOf[0]; st.Applied != want || st.DeadLettered != 0 {
		t.Fatalf("replay stats %+v, want %d applied", st, want)
	}
	diffLines(t, "after replay", first, dump(t, db))
	if again, _ := streamLeadFacts(t, b); len(again) != len(facts) {
		t.Fatalf("the replay published %d more lead events", len(again)-len(facts))
	}

	// One mentorado, by time.
	var m2 int
	for _, it := range append(append(append([]Item{}, items...), dups...), again...) {
		if strings.HasPrefix(it.Subject, "wa.2.") {
			m2++
		}
	}
	st, err = p.Replay(context.Background(), ReplayOptions{Since: time.Hour, Mentorado: 2})
	if err != nil {
		t.Fatal(err)
	}
	if st.Applied != m2+leadsOf[2] {
		t.Fatalf("replay of mentorado 2 applied %d, want its %d events and %d lead events", st.Applied, m2, leadsOf[2])
	}
	diffLines(t, "after replaying one mentorado", first, dump(t, db))
}

// TestRunCancelledMidBatch: a persister whose context ends while a batch
// is being written (before the commit) acks nothing of it; a restarted one
// applies everything once.
func TestRunCancelledMidBatch(t *testing.T) {
	db := openDB(t, 3)
	natsURL := testenv.NATS(t)
	b := newBus(t, natsURL)
	items := publish(t, b, generate(t, 6, 2000, 3), false)
	want := modelOf(items, 3).rows()
	last := items[len(items)-1].Seq

	p1, err := New(testConfig, db, newBus(t, natsURL), testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	batches := 0
	p1.beforeCommit = func(ctx context.Context) error {
		if batches++; batches == 3 {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- p1.Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("persister did not stop; goroutines:\n%s", testenv.Goroutines())
	}
	if info := consumerInfo(t, b, testConfig.WithDefaults().Consumer); info.AckFloor.Stream >= last {
		t.Fatalf("everything acked before the cancel (floor %d)", info.AckFloor.Stream)
	}
	p2, err := New(testConfig, db, newBus(t, natsURL), testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, p2)
	waitDrained(t, b, testConfig.WithDefaults().Consumer, last, 60*time.Second)
	r.stop(t)
	diffLines(t, "after cancel and restart", want, dump(t, db))
}

// TestRunCrashBeforeAck: a persister that commits but loses its NATS
// connection before acking, then a fresh one, end with every event
// applied once.
func TestRunCrashBeforeAck(t *testing.T) {
	db := openDB(t, 3)
	natsURL := testenv.NATS(t)
	b := newBus(t, natsURL)
	items := publish(t, b, generate(t, 5, 3000, 3), false)
	want := modelOf(items, 3).rows()
	last := items[len(items)-1].Seq

	crashBus := newBus(t, natsURL)
	p1, err := New(testConfig, db, crashBus, testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	crashed := make(chan struct{})
	batches := 0
	p1.afterApply = func() {
		if batches++; batches == 3 {
			once.Do(func() { crashBus.NC.Close(); close(crashed) })
		}
	}
	r1 := start(t, p1)
	select {
	case <-crashed:
	case <-time.After(30 * time.Second):
		t.Fatal("persister never applied three batches")
	}
	r1.stop(t)
	if info := consumerInfo(t, b, testConfig.WithDefaults().Consumer); info.AckFloor.Stream >= last {
		t.Fatalf("everything acked before the crash (floor %d); the test proves nothing", info.AckFloor.Stream)
	}

	p2, err := New(testConfig, db, newBus(t, natsURL), testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	r2 := start(t, p2)
	waitDrained(t, b, testConfig.WithDefaults().Consumer, last, 60*time.Second)
	r2.stop(t)
	diffLines(t, "after crash and restart", want, dump(t, db))
}

// proxy is a TCP proxy in front of Postgres that the test can cut and
// restore on the same address.
type proxy struct {
	t      testing.TB
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, addr: ln.Addr().String(), target: target}
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close(); c.Close() }()
			go func() { _, _ = io.Copy(c, s); s.Close(); c.Close() }()
		}
	}()
}

// cut closes the listener and every proxied connection.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) restore() {
	var ln net.Listener
	testenv.Eventually(p.t, 10*time.Second, func() bool {
		var err error
		ln, err = net.Listen("tcp", p.addr)
		return err == nil
	}, "re-listen on %s", p.addr)
	p.serve(ln)
}

// TestRunPostgresOutage: with Postgres unreachable nothing is acked; after
// it returns every event is applied once.
func TestRunPostgresOutage(t *testing.T) {
	dbURL := testenv.Postgres(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	u.Host = px.addr
	db := openDBAt(t, u.String(), 3)
	b := newBus(t, testenv.NATS(t))
	items := publish(t, b, generate(t, 9, 3000, 3), false)
	want := modelOf(items, 3).rows()
	last := items[len(items)-1].Seq
	cfg := testConfig
	cfg.Batch = 100
	p, err := New(cfg, db, b, testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	name := cfg.WithDefaults().Consumer
	outage := make(chan struct{})
	var once sync.Once
	batches := 0
	p.afterApply = func() {
		if batches++; batches == 5 {
			once.Do(func() { px.cut(); close(outage) })
		}
	}
	r := start(t, p)
	<-outage
	transient := func() float64 { return counterValue(p.metrics.transient) }
	testenv.Eventually(t, 30*time.Second, func() bool { return transient() >= 2 }, "no failed batch while Postgres is down")
	floor := consumerInfo(t, b, name).AckFloor.Stream
	if floor >= last {
		t.Fatalf("everything acked before the outage")
	}
	seen := transient()
	testenv.Eventually(t, 30*time.Second, func() bool { return transient() >= seen+3 }, "persister stopped retrying")
	if got := consumerInfo(t, b, name).AckFloor.Stream; got != floor {
		t.Fatalf("ack floor moved from %d to %d while Postgres was down", floor, got)
	}
	px.restore()
	waitDrained(t, b, name, last, 60*time.Second)
	r.stop(t)
	diffLines(t, "after outage", want, dump(t, db))
}

// TestRunPoisonToDLQ: undecodable events and events of unknown mentorados
// land in WA_DLQ with their reason; the events around them are applied.
func TestRunPoisonToDLQ(t *testing.T) {
	db := openDB(t, 1)
	b := newBus(t, testenv.NATS(t))
	ctx := context.Background()
	at := time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)
	good := func(id string) event.Envelope { return inboundText(t, id, at) }
	if _, err := b.Publish(ctx, good("G1")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Publish(ctx, "wa.1.evt.message", []byte(`{"v":1,"id":`)); err != nil {
		t.Fatal(err)
	}
	c := &event.Contact{JID: "5511933334444@s.whatsapp.net"}
	if _, err := b.Publish(ctx, mustEnv(t, 77, event.ContactEventID(77, c, at), at, c)); err != nil {
		t.Fatal(err)
	}
	ack, err := b.Publish(ctx, good("G2"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(testConfig, db, b, testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, p)
	waitDrained(t, b, testConfig.WithDefaults().Consumer, ack.Sequence, 30*time.Second)
	r.stop(t)

	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM whatsapp_messages WHERE wa_message_id IN ('G1', 'G2')`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("good events applied: %d (%v)", n, err)
	}
	dlq, err := b.JS.OrderedConsumer(ctx, bus.StreamDLQ, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for range 2 {
		m, err := dlq.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("dead letter: %v", err)
		}
		reasons[m.Headers().Get(bus.HeaderOriginalSubject)] = m.Headers().Get(bus.HeaderError)
	}
	if r := reasons["wa.1.evt.message"]; !strings.Contains(r, "malformed") {
		t.Errorf("undecodable event reason %q", r)
	}
	if r := reasons["wa.77.evt.contact"]; !strings.Contains(r, ErrUnknownMentorado.Error()) {
		t.Errorf("unknown mentorado reason %q", r)
	}
	if got := counterValue(p.metrics.dlq); got != 2 {
		t.Errorf("dlq metric %v", got)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestRunTwoPersisters: two persisters sharing the durable consumer give
// the same rows as one.
func TestRunTwoPersisters(t *testing.T) {
	db := openDB(t, 4)
	natsURL := testenv.NATS(t)
	b := newBus(t, natsURL)
	items := publish(t, b, generate(t, 21, 6000, 4), false)
	want := modelOf(items, 4).rows()
	cfg := testConfig
	cfg.Batch = 100
	var rs []*running
	for range 2 {
		p, err := New(cfg, db, newBus(t, natsURL), testenv.Logger(t).Level(1))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, start(t, p))
	}
	waitDrained(t, b, cfg.WithDefaults().Consumer, items[len(items)-1].Seq, 60*time.Second)
	for _, r := range rs {
		r.stop(t)
	}
	diffLines(t, "two persisters", want, dump(t, db))
}
