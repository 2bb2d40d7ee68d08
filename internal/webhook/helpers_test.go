package webhook_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/webhook"
)

// env is one test's infrastructure: a migrated database with mentorados
// 1..3 and an embedded NATS with the streams.
type env struct {
	t       testing.TB
	db      *store.DB
	natsURL string
	bus     *bus.Bus
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO mentorados (id, name) OVERRIDING SYSTEM VALUE
		SELECT g, 'mentorado ' || g FROM generate_series(1, 3) g`); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, natsURL: testenv.NATS(t)}
	e.bus = e.newBus("test")
	return e
}

func (e *env) newBus(name string) *bus.Bus {
	e.t.Helper()
	nc, err := bus.Connect(e.natsURL, name, testenv.Logger(e.t).Level(zerolog.WarnLevel))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{ProvisionIfMissing: true})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := b.Ensure(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return b
}

// testConfig delivers to receivers on 127.0.0.1 over http, with short
// delays.
func testConfig() webhook.Config {
	return webhook.Config{
		Policy:            webhook.Policy{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, AllowHTTP: true},
		Timeout:           2 * time.Second,
		Backoff:           []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond},
		AutoPauseAfter:    -1,
		ReconcileInterval: 300 * time.Millisecond,
		LogKeep:           1000,
	}
}

// dispatcher runs a dispatcher until the test ends (or stop is called).
func (e *env) dispatcher(cfg webhook.Config, b *bus.Bus, name string) (stop func()) {
	e.t.Helper()
	if b == nil {
		b = e.bus
	}
	cfg.Name = name
	d, err := webhook.New(cfg, e.db, b, testenv.Logger(e.t).With().Str("d", name).Logger().Level(zerolog.InfoLevel))
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				e.t.Errorf("dispatcher %s did not stop:\n%s", name, testenv.Goroutines())
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func newSecret(t testing.TB) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return webhook.SecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// addWebhook inserts an endpoint (defaults: active, from now, generation
// 1, a fresh secret) and signals the dispatchers.
func (e *env) addWebhook(w store.Webhook) store.Webhook {
	e.t.Helper()
	now := time.Now()
	if w.Secret == "" {
		w.Secret = newSecret(e.t)
	}
	if w.State == "" {
		w.State = string(event.WebhookActive)
	}
	if w.StartTime.IsZero() {
		w.StartTime = now.Add(-time.Second)
	}
	if w.Generation == 0 {
		w.Generation = 1
	}
	w.StateAt, w.CreatedAt, w.UpdatedAt = now, now, now
	if _, err := e.db.Bun.NewInsert().Model(&w).Returning("*").Exec(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.notify()
	return w
}

func (e *env) notify() {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), `SELECT pg_notify($1, '')`, store.WebhooksChannel); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatal(err)
	}
	e.notify()
}

func (e *env) webhookRow(id int64) store.Webhook {
	e.t.Helper()
	var w store.Webhook
	if err := e.db.Bun.NewSelect().Model(&w).Where("id = ?", id).Scan(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return w
}

func (e *env) deliveries(id int64) []store.WebhookDelivery {
	e.t.Helper()
	var rows []store.WebhookDelivery
	if err := e.db.Bun.NewSelect().Model(&rows).Where("webhook_id = ?", id).Order("id").Scan(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return rows
}

// publish stores an event of mentorado m: a message with WhatsApp id
// waID, or a contact or receipt when typ says so. It returns the envelope
// and its stream sequence.
func (e *env) publish(m int64, typ event.Type, key string) (event.Envelope, uint64) {
	e.t.Helper()
	now := time.Now()
	var p event.Payload
	var id string
	switch typ {
	case event.TypeMessage:
		p = &event.Message{WAID: key, ChatJID: "5511912345678@s.whatsapp.net", SenderJID: "5511912345678@s.whatsapp.net",
			Direction: event.DirectionIn, Kind: event.KindText, Text: "oi " + key, Timestamp: now, Status: event.MessageReceived}
		id = event.MessageEventID(m, key)
	case event.TypeReceipt:
		r := &event.Receipt{MessageIDs: []string{key}, ChatJID: "5511912345678@s.whatsapp.net", Kind: event.ReceiptRead, Timestamp: now}
		p, id = r, event.ReceiptEventID(m, r.Kind, false, r.MessageIDs)
	case event.TypeContact:
		c := &event.Contact{JID: "5511912345678@s.whatsapp.net", PushName: key}
		p, id = c, event.ContactEventID(m, c, now)
	default:
		e.t.Fatalf("publish %s", typ)
	}
	env, err := event.New(m, id, now, p)
	if err != nil {
		e.t.Fatal(err)
	}
	ack, err := e.bus.Publish(context.Background(), env)
	if err != nil {
		e.t.Fatal(err)
	}
	return env, ack.Sequence
}

// received is one request a receiver got.
type received struct {
	header http.Header
	body   []byte
	env    event.Envelope
	status int // what the receiver answered
	at     time.Time
}

// receiver is a webhook receiver on 127.0.0.1. answer decides the status
// of the n-th request (from 1); nil answers 200.
type receiver struct {
	srv     *httptest.Server
	URL     string
	mu      sync.Mutex
	reqs    []received // answered, in the order answered
	arrived int
	answer  func(n int, r received) int
}

func newReceiver(t testing.TB, answer func(n int, r received) int) *receiver {
	rc := &receiver{answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	rc.URL = rc.srv.URL + "/hook?token=s3cr3t"
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	got := received{header: r.Header.Clone(), body: body, at: time.Now(), status: http.StatusOK}
	_ = json.Unmarshal(body, &got.env)
	rc.mu.Lock()
	rc.arrived++
	n := rc.arrived
	answer := rc.answer
	rc.mu.Unlock()
	if answer != nil {
		got.status = answer(n, got)
	}
	rc.mu.Lock()
	rc.reqs = append(rc.reqs, got)
	rc.mu.Unlock()
	w.WriteHeader(got.status)
	fmt.Fprintf(w, "status %d", got.status)
}

func (rc *receiver) all() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

// delivered is the envelope ids the receiver accepted (2xx), in order,
// each once (the first time).
func (rc *receiver) delivered() []string {
	var ids []string
	seen := map[string]bool{}
	for _, r := range rc.all() {
		if r.status/100 == 2 && !seen[r.env.ID] {
			seen[r.env.ID] = true
			ids = append(ids, r.env.ID)
		}
	}
	return ids
}

func (rc *receiver) waitDelivered(t testing.TB, n int) []string {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() bool { return len(rc.delivered()) >= n },
		"receiver got %d of %d events", func() int { return len(rc.delivered()) }(), n)
	return rc.delivered()
}

// freePort returns a loopback address nothing listens on (yet).
func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func ids(envs []event.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.ID
	}
	return out
}

// listenAgain listens on addr (a port freePort returned).
func listenAgain(addr string) (net.Listener, error) {
	var l net.Listener
	var err error
	for range 50 {
		if l, err = net.Listen("tcp", addr); err == nil {
			return l, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, err
}
