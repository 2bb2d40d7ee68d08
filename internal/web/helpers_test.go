package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

const testAdminToken = "admin-token-for-tests-0123456789"

type testEnv struct {
	t     testing.TB
	srv   *httptest.Server
	s     *Server
	db    *store.DB
	bus   *bus.Bus
	media *media.ObjectStore // the mentorados' files, in WA_MEDIA
	nc    *nats.Conn         // a separate connection, the test's own peer
	logs  *testenv.Buffer

	natsURL string
	cfg     Config
	log     zerolog.Logger
}

func newEnv(t testing.TB, mod ...func(*Config)) *testEnv {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatalf("store: %v", err)
	}
	t.Cleanup(db.Close)
	ns := testenv.NATSServer(t)
	logs := &testenv.Buffer{}
	var console io.Writer = zerolog.ConsoleWriter{Out: testWriter{t}, NoColor: true}
	if _, fuzz := t.(*testing.F); fuzz {
		console = io.Discard // F.Log may not be called from the fuzz function
	}
	log := zerolog.New(zerolog.MultiLevelWriter(logs, console)).
		Level(zerolog.DebugLevel).With().Timestamp().Logger()
	nc, err := bus.Connect(ns.ClientURL(), "notifier-test", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	peer, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(peer.Close)
	ms, err := b.MediaStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{AdminToken: testAdminToken, CommandTimeout: 5 * time.Second, SendTimeout: 5 * time.Second}
	for _, f := range mod {
		f(&cfg)
	}
	s, err := New(cfg, db, b, log, WithMedia(ms))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		s.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	return &testEnv{t: t, srv: srv, s: s, db: db, bus: b, media: ms, nc: peer, logs: logs, natsURL: ns.ClientURL(), cfg: cfg, log: log}
}

// otherNotifier starts a second notifier on the same Postgres and NATS
// (its own NATS connection), as behind a load balancer.
func (e *testEnv) otherNotifier() *testEnv {
	e.t.Helper()
	nc, err := bus.Connect(e.natsURL, "notifier-test-2", e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := New(e.cfg, e.db, b, e.log.With().Str("notifier", "2").Logger(), WithMedia(e.media))
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	e.t.Cleanup(func() {
		s.Close()
		srv.CloseClientConnections()
		srv.Close()
	})
	o := *e
	o.srv, o.s, o.bus = srv, s, b
	return &o
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// response is a decoded HTTP response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

func (r response) errorCode(t testing.TB) string {
	t.Helper()
	var e errorBody
	r.json(t, &e)
	if e.Error.Code == "" {
		t.Fatalf("no error code in %s", r.Body)
	}
	return e.Error.Code
}

// do sends a request; body may be a string (sent as is) or any value (JSON).
func (e *testEnv) do(method, path, token string, body any) response {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.send(req)
}

// send runs req against the server and reads the whole answer.
func (e *testEnv) send(req *http.Request) response {
	e.t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{Status: res.StatusCode, Header: res.Header, Body: b}
}

func (e *testEnv) expect(res response, status int) response {
	e.t.Helper()
	if res.Status != status {
		e.t.Fatalf("status %d, want %d: %s", res.Status, status, res.Body)
	}
	return res
}

type tenant struct {
	ID    int64
	Token string
}

func (e *testEnv) createMentorado(name string) tenant {
	e.t.Helper()
	res := e.expect(e.do("POST", "/v1/admin/mentorados", testAdminToken, map[string]string{"name": name}), 201)
	var tr tokenResponse
	res.json(e.t, &tr)
	return tenant{ID: tr.ID, Token: tr.Token}
}

// fakeConnector answers commands on wa.*.cmd.> like a connector would.
type fakeConnector struct {
	mu       sync.Mutex
	subjects []string
	bodies   [][]byte
	sub      *nats.Subscription
}

func (e *testEnv) fakeConnector(answer func(m int64, verb event.Verb, body []byte) event.Reply) *fakeConnector {
	e.t.Helper()
	fc := &fakeConnector{}
	sub, err := e.nc.Subscribe(event.CommandWildcard, func(msg *nats.Msg) {
		fc.mu.Lock()
		fc.subjects = append(fc.subjects, msg.Subject)
		fc.bodies = append(fc.bodies, msg.Data)
		fc.mu.Unlock()
		m, verb, err := event.ParseSubject(msg.Subject)
		if err != nil {
			return
		}
		b, _ := json.Marshal(answer(m, event.Verb(verb), msg.Data))
		_ = msg.Respond(b)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	fc.sub = sub
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return fc
}

func (fc *fakeConnector) Subjects() []string {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]string(nil), fc.subjects...)
}

func (fc *fakeConnector) LastBody() []byte {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.bodies) == 0 {
		return nil
	}
	return fc.bodies[len(fc.bodies)-1]
}

// defaultAnswer behaves like a healthy connected connector.
func defaultAnswer(m int64, verb event.Verb, body []byte) event.Reply {
	now := time.Now().UTC()
	switch verb {
	case event.VerbSend:
		var req event.SendRequest
		_ = json.Unmarshal(body, &req)
		return event.Reply{Message: &event.Message{
			WAID: fmt.Sprintf("3EB0%d%d", m, now.UnixNano()), ChatJID: req.Phone + "@s.whatsapp.net",
			SenderJID: "me@s.whatsapp.net", Phone: req.Phone, Direction: event.DirectionOut, Kind: event.KindText,
			Text: req.Text, Timestamp: now, Status: event.MessageSent,
		}}
	case event.VerbConnect:
		var req event.ConnectRequest
		_ = json.Unmarshal(body, &req)
		st := &event.StatusReply{Status: event.StatusQR, Since: now}
		if req.Method == event.ConnectPhone {
			st.Status, st.PairingCode = event.StatusPairing, "ABCD-EFGH"
		}
		return event.Reply{Status: st}
	case event.VerbDisconnect:
		return event.Reply{Status: &event.StatusReply{Status: event.StatusDisconnected, Since: now}}
	case event.VerbLogout:
		return event.Reply{Status: &event.StatusReply{Status: event.StatusLoggedOut, Since: now}}
	case event.VerbStatus:
		return event.Reply{Status: &event.StatusReply{Status: event.StatusConnected, Phone: "5511999990000", Since: now}}
	case event.VerbReact, event.VerbEdit, event.VerbRevoke, event.VerbRead:
		return event.Reply{}
	}
	return event.Reply{Error: event.NewCommandError(event.CodeBadRequest, "unknown verb")}
}

type msgRow struct {
	WAID, Phone, Direction, Text, Status, PushName string
	Kind, Target                                   string // default text, no target
	At                                             time.Time
	LeadID                                         *int64
}

func (e *testEnv) insertMessage(m int64, r msgRow) {
	e.t.Helper()
	if r.Direction == "" {
		r.Direction = "in"
	}
	if r.Status == "" {
		r.Status = "received"
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	if r.Kind == "" {
		r.Kind = "text"
	}
	_, err := e.db.Pool.Exec(context.Background(), `
INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, phone, push_name, direction, kind,
	body, status, status_rank, lead_id, sent_at, target_id)
VALUES ($1, $2, $3 || '@s.whatsapp.net', $3 || '@s.whatsapp.net', $3, $4, $5, $11, $6, $7, $8, $9, $10, nullif($12, ''))`,
		m, r.WAID, r.Phone, r.PushName, r.Direction, r.Text, r.Status, event.MessageStatus(r.Status).Rank(), r.LeadID, r.At, r.Kind, r.Target)
	if err != nil {
		e.t.Fatalf("insert message: %v", err)
	}
}

func (e *testEnv) insertLead(m int64, phone, name, source string) int64 {
	e.t.Helper()
	var id int64
	err := e.db.Pool.QueryRow(context.Background(),
		`INSERT INTO leads (mentorado_id, phone, name, source) VALUES ($1, $2, $3, $4) RETURNING id`, m, phone, name, source).Scan(&id)
	if err != nil {
		e.t.Fatalf("insert lead: %v", err)
	}
	return id
}

func (e *testEnv) insertContact(m int64, phone, name string) {
	e.t.Helper()
	_, err := e.db.Pool.Exec(context.Background(),
		`INSERT INTO whatsapp_contacts (mentorado_id, jid, phone, name) VALUES ($1, $2 || '@s.whatsapp.net', $2, $3)`, m, phone, name)
	if err != nil {
		e.t.Fatalf("insert contact: %v", err)
	}
}

// publishMessage stores an inbound message event in WA_EVENTS and returns
// its stream sequence.
func (e *testEnv) publishMessage(m int64, waID, text string) uint64 {
	e.t.Helper()
	p := &event.Message{WAID: waID, ChatJID: "5511988887777@s.whatsapp.net", SenderJID: "5511988887777@s.whatsapp.net",
		Phone: "5511988887777", Direction: event.DirectionIn, Kind: event.KindText, Text: text,
		Timestamp: time.Now(), Status: event.MessageReceived}
	env, err := event.New(m, event.MessageEventID(m, waID), time.Now(), p)
	if err != nil {
		e.t.Fatal(err)
	}
	ack, err := e.bus.Publish(context.Background(), env)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// publishQR stores a QR code in WA_QR.
func (e *testEnv) publishQR(m int64, code string, expires time.Time) {
	e.t.Helper()
	q := &event.QR{Code: code, ExpiresAt: expires}
	env, err := event.New(m, event.QREventID(m, q), time.Now(), q)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.bus.Publish(context.Background(), env); err != nil {
		e.t.Fatal(err)
	}
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	ID    string
	Event string
	Data  string
}

// sseClient reads a stream in the background.
type sseClient struct {
	res    *http.Response
	mu     sync.Mutex
	events []sseEvent
	done   chan struct{}
	err    error
}

func (e *testEnv) openSSE(auth func(*http.Request), lastEventID string) *sseClient {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.srv.URL+"/v1/events", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	auth(req)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	return e.startSSE(req)
}

// startSSE sends req, requires a 200 and reads the stream in the
// background until the test ends.
func (e *testEnv) startSSE(req *http.Request) *sseClient {
	e.t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if res.StatusCode != 200 {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		e.t.Fatalf("open sse: %d %s", res.StatusCode, b)
	}
	c := &sseClient{res: res, done: make(chan struct{})}
	e.t.Cleanup(func() { res.Body.Close(); <-c.done })
	go c.read()
	return c
}

func (c *sseClient) read() {
	defer close(c.done)
	sc := bufio.NewScanner(c.res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.Event != "" || cur.Data != "" {
				c.mu.Lock()
				c.events = append(c.events, cur)
				c.mu.Unlock()
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
		case strings.HasPrefix(line, "id: "):
			cur.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			cur.Event = line[7:]
		case strings.HasPrefix(line, "data: "):
			cur.Data += line[6:]
		}
	}
	c.err = sc.Err()
}

func (c *sseClient) Events() []sseEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sseEvent(nil), c.events...)
}

func bearerAuth(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
