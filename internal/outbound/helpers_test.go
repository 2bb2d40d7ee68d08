package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// openDB opens a fresh migrated database with one mentorado, whose id it
// returns.
func openDB(t *testing.T) (*store.DB, int64) {
	t.Helper()
	db, err := store.Open(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, addMentorado(t, db)
}

func addMentorado(t *testing.T, db *store.DB) int64 {
	t.Helper()
	var id int64
	if err := db.Pool.QueryRow(context.Background(), `INSERT INTO mentorados (name) VALUES ('m') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func exec(t *testing.T, db *store.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryOne[T any](t *testing.T, db *store.DB, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// recPub records published envelopes; fail makes Publish fail.
type recPub struct {
	mu   sync.Mutex
	envs []event.Envelope
	fail bool
}

func (p *recPub) Publish(_ context.Context, env event.Envelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return errors.New("nats down")
	}
	p.envs = append(p.envs, env)
	return nil
}

func (p *recPub) setFail(f bool) {
	p.mu.Lock()
	p.fail = f
	p.mu.Unlock()
}

// all returns the envelopes published so far.
func (p *recPub) all() []event.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event.Envelope(nil), p.envs...)
}

// messages returns the message payloads published, by event id.
func (p *recPub) messages(t *testing.T) map[string]event.Message {
	t.Helper()
	out := map[string]event.Message{}
	for _, env := range p.all() {
		if env.Type != event.TypeMessage {
			continue
		}
		var m event.Message
		if err := json.Unmarshal(env.Data, &m); err != nil {
			t.Fatal(err)
		}
		out[env.ID] = m
	}
	return out
}

// sendings returns the sending payloads published, in order.
func (p *recPub) sendings(t *testing.T) []event.Sending {
	t.Helper()
	var out []event.Sending
	for _, env := range p.all() {
		if env.Type != event.TypeSending {
			continue
		}
		var s event.Sending
		if err := json.Unmarshal(env.Data, &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// addCampaign inserts a campaign of m in state with pacing and one
// recipient per phone (text "hi <phone>"), returning its id.
func addCampaign(t *testing.T, db *store.DB, m int64, state event.CampaignState, pacing Pacing, phones ...string) int64 {
	t.Helper()
	p, _ := json.Marshal(pacing)
	var id int64
	// One transaction, as the notifier creates a campaign: a worker never
	// sees it running without its recipients.
	err := db.InTx(context.Background(), func(tx pgx.Tx) error {
		if err := tx.QueryRow(context.Background(), `INSERT INTO campaigns (mentorado_id, name, state, message, pacing, total)
			VALUES ($1, 'c', $2, '{"kind": "text", "text": "hi {{phone}}"}', $3, $4) RETURNING id`, m, state, p, len(phones)).Scan(&id); err != nil {
			return err
		}
		for _, ph := range phones {
			if _, err := tx.Exec(context.Background(), `INSERT INTO campaign_recipients (campaign_id, mentorado_id, phone, text) VALUES ($1, $2, $3, $4)`,
				id, m, ph, fmt.Sprintf("hi %s", ph)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// fakeClock is a manual clock: AfterFunc timers fire when the test (or
// auto) advances time past them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
	held   bool // auto does not advance
}

// hold stops auto from advancing and waits until the worker sleeps (a
// timer is pending): it is then between items, not inside one.
func (c *fakeClock) hold(t *testing.T) {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
	testenv.Eventually(t, 30*time.Second, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.timers) > 0
	}, "the worker asleep")
}

func (c *fakeClock) release() {
	c.mu.Lock()
	c.held = false
	c.mu.Unlock()
}

type fakeTimer struct {
	c    *fakeClock
	at   time.Time
	f    func()
	done bool
}

func newFakeClock(at time.Time) *fakeClock { return &fakeClock{now: at} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) interface{ Stop() bool } {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.done {
		return false
	}
	t.done = true
	for i, x := range t.c.timers {
		if x == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			break
		}
	}
	return true
}

// fireNext moves time to the earliest timer (if later than now) and fires
// it; false when no timer is pending.
func (c *fakeClock) fireNext() bool {
	c.mu.Lock()
	if len(c.timers) == 0 || c.held {
		c.mu.Unlock()
		return false
	}
	first := 0
	for i, t := range c.timers {
		if t.at.Before(c.timers[first].at) {
			first = i
		}
	}
	t := c.timers[first]
	c.timers = append(c.timers[:first], c.timers[first+1:]...)
	t.done = true
	if t.at.After(c.now) {
		c.now = t.at
	}
	c.mu.Unlock()
	t.f()
	return true
}

// auto advances time whenever a timer is pending (the worker sleeps), until
// the test ends: the worker runs as fast as it can on fake time.
func (c *fakeClock) auto(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if !c.fireNext() {
				time.Sleep(200 * time.Microsecond)
			}
		}
	}()
}

// sendRec is one Sender.Send call.
type sendRec struct {
	at   time.Time
	waID string
	req  event.SendRequest
	meta SendMeta
	ok   bool
}

type typingRec struct {
	at  time.Time
	jid string
	on  bool
}

// fakeSender stands for WhatsApp: it records sends and typing on the fake
// clock, answers Resolve from a table, and fails sends on demand.
type fakeSender struct {
	mu      sync.Mutex
	clock   *fakeClock
	jids    map[string]string // phone → jid; absent: <phone>@s.whatsapp.net; "": not on WhatsApp
	sends   []sendRec
	typing  []typingRec
	errs    []error // the next sends fail with these, in order
	failAll error   // every send fails with it
	block   bool    // the next send blocks until its ctx ends
	// holdAt freezes the clock when the delivery with this number (1, 2,
	// …) is made: the worker then sleeps right after it, between items.
	holdAt int
}

func (s *fakeSender) Resolve(_ context.Context, phone string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if jid, ok := s.jids[phone]; ok {
		return jid, nil
	}
	return phone + "@s.whatsapp.net", nil
}

func (s *fakeSender) Typing(_ context.Context, jid string, on bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.typing = append(s.typing, typingRec{at: s.clock.Now(), jid: jid, on: on})
	return nil
}

func (s *fakeSender) Send(ctx context.Context, req event.SendRequest, waID string, meta SendMeta) (*event.Message, error) {
	s.mu.Lock()
	rec := sendRec{at: s.clock.Now(), waID: waID, req: req, meta: meta}
	if s.block {
		s.block = false
		s.sends = append(s.sends, rec)
		s.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	defer s.mu.Unlock()
	var err error
	switch {
	case s.failAll != nil:
		err = s.failAll
	case len(s.errs) > 0:
		err, s.errs = s.errs[0], s.errs[1:]
	}
	rec.ok = err == nil
	s.sends = append(s.sends, rec)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, r := range s.sends {
		if r.ok {
			n++
		}
	}
	if n == s.holdAt {
		s.clock.mu.Lock()
		s.clock.held = true
		s.clock.mu.Unlock()
	}
	return &event.Message{WAID: waID, Timestamp: rec.at, Status: event.MessageSent}, nil
}

// delivered returns the successful sends, in order.
func (s *fakeSender) delivered() []sendRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sendRec
	for _, r := range s.sends {
		if r.ok {
			out = append(out, r)
		}
	}
	return out
}

func (s *fakeSender) attempts() []sendRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sendRec(nil), s.sends...)
}

func (s *fakeSender) typings() []typingRec {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]typingRec(nil), s.typing...)
}

// harness is a worker on a fresh database with a fake clock, sender and
// publisher.
type harness struct {
	t      *testing.T
	db     *store.DB
	m      int64
	clock  *fakeClock
	sender *fakeSender
	pub    *recPub
}

func newHarness(t *testing.T, settings string) *harness {
	t.Helper()
	db, m := openDB(t)
	if settings != "" {
		exec(t, db, `INSERT INTO send_settings (mentorado_id, settings) VALUES ($1, $2)`, m, settings)
	}
	c := newFakeClock(t0)
	return &harness{t: t, db: db, m: m, clock: c, sender: &fakeSender{clock: c, jids: map[string]string{}}, pub: &recPub{}}
}

func (h *harness) worker(poll time.Duration) *Worker {
	return NewWorker(WorkerConfig{DB: h.db, Mentorado: h.m, Sender: h.sender, Publisher: h.pub, Clock: h.clock,
		Limits: DefaultLimits(), Log: testenv.Logger(h.t), Poll: poll, Seed: 7})
}

// run starts w; the returned stop cancels it and waits for Run to return.
func (h *harness) run(w *Worker) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				h.t.Errorf("run: %v", err)
			}
		})
	}
	h.t.Cleanup(stop)
	return stop
}

func (h *harness) enqueue(waID string, req event.SendRequest) {
	h.t.Helper()
	if _, err := Enqueue(context.Background(), h.db, h.pub, h.m, ownJID, req, waID, h.clock.Now(), Defaults()); err != nil {
		h.t.Fatal(err)
	}
}

// inbound stores a message phone wrote to the mentorado at at.
func (h *harness) inbound(phone string, at time.Time) {
	h.t.Helper()
	exec(h.t, h.db, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, phone, direction, kind, body, status, status_rank, sent_at)
		VALUES ($1, $2, $3, $3, $4, 'in', 'text', 'oi', 'received', 1, $5)`, h.m, fmt.Sprintf("IN%d", at.UnixNano()), phone+"@s.whatsapp.net", phone, at)
}

func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.clock.mu.Lock()
			now, timers := h.clock.now, len(h.clock.timers)
			h.clock.mu.Unlock()
			h.t.Fatalf("timed out waiting for %s (fake now %v, %d timers, %d send attempts)\noutbox: %s\ncampaigns: %s\nrecipients: %s",
				what, now, timers, len(h.sender.attempts()),
				queryOne[string](h.t, h.db, `SELECT coalesce(string_agg(wa_message_id || ':' || state, ' '), '') FROM outbox`),
				queryOne[string](h.t, h.db, `SELECT coalesce(string_agg(id || ':' || state, ' '), '') FROM campaigns`),
				queryOne[string](h.t, h.db, `SELECT coalesce(string_agg(id || ':' || state || ':' || attempts, ' '), '') FROM campaign_recipients`))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
