package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// fleetBody is GET /v1/admin/fleet's answer as a client reads it.
type fleetBody struct {
	Counts map[string]int64 `json:"counts"`
	Stream struct {
		Consumer             string   `json:"consumer"`
		Pending              *uint64  `json:"pending"`
		OldestPendingSeconds *float64 `json:"oldest_pending_seconds"`
		Error                string   `json:"error"`
	} `json:"stream"`
	Mentorados []struct {
		ID             int64      `json:"id"`
		Name           string     `json:"name"`
		Status         string     `json:"status"`
		State          string     `json:"state"`
		Reason         string     `json:"reason"`
		Phone          string     `json:"phone"`
		Disabled       bool       `json:"disabled"`
		ConnectedSince *time.Time `json:"connected_since"`
		LastEventAt    *time.Time `json:"last_event_at"`
		Connector      string     `json:"connector"`
		Reconnects24h  int64      `json:"reconnects_24h"`
		Bans24h        int64      `json:"bans_24h"`
		Unread         int64      `json:"unread"`
		Lag            *uint64    `json:"lag"`
	} `json:"mentorados"`
	NextCursor string `json:"next_cursor"`
}

func (e *testEnv) fleet(query string) fleetBody {
	e.t.Helper()
	var fb fleetBody
	e.expect(e.do("GET", "/v1/admin/fleet"+query, testAdminToken, nil), 200).json(e.t, &fb)
	return fb
}

func (e *testEnv) sql(q string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), q, args...); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

// setState stores a session status as the persister would.
func (e *testEnv) setState(m int64, status, phone, connector string, at time.Time) {
	e.t.Helper()
	e.sql(`UPDATE mentorados SET wa_status = $2, wa_phone = nullif($3, ''), wa_connector = nullif($4, ''), wa_status_at = $5,
		wa_reason = CASE WHEN $2 = 'connected' THEN NULL ELSE 'why ' || $2 END WHERE id = $1`, m, status, phone, connector, at)
}

func TestFleetAPI(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Second)
	ana := e.createMentorado("Ana")
	bia := e.createMentorado("Bia")
	caio := e.createMentorado("Caio")
	davi := e.createMentorado("Davi")
	eva := e.createMentorado("Eva")
	fabio := e.createMentorado("Fábio")
	e.setState(ana.ID, "connected", "5511900000001", "node-a", now.Add(-time.Hour))
	e.setState(bia.ID, "qr", "", "node-a", now)
	e.setState(caio.ID, "backoff", "5511900000003", "node-b", now)
	e.setState(davi.ID, "banned", "5511900000004", "node-b", now)
	e.setState(eva.ID, "logged_out", "", "", now)
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(fabio.ID)+"/disable", testAdminToken, nil), 200)
	e.sql(`INSERT INTO connection_log (mentorado_id, event_id, status, occurred_at) VALUES
		($1, 'a1', 'backoff', now() - interval '1 hour'), ($1, 'a2', 'connecting', now() - interval '59 minutes'),
		($1, 'a3', 'backoff', now() - interval '30 hours'), ($2, 'd1', 'banned', now() - interval '2 hours')`, ana.ID, davi.ID)
	e.insertMessage(ana.ID, msgRow{WAID: "in1", Phone: "5511988887777", Status: "delivered", At: now.Add(-time.Minute)})
	e.insertMessage(ana.ID, msgRow{WAID: "in2", Phone: "5511988887777", Status: "read", At: now.Add(-30 * time.Second)})
	e.insertMessage(ana.ID, msgRow{WAID: "in3", Phone: "5511988886666", Status: "delivered", At: now.Add(-20 * time.Second)})
	e.insertMessage(ana.ID, msgRow{WAID: "out1", Phone: "5511988886666", Direction: "out", Status: "sent", At: now.Add(-10 * time.Second)})

	fb := e.fleet("")
	want := map[string]int64{"connected": 1, "pairing": 1, "backoff": 1, "banned": 1, "logged_out": 1, "disconnected": 0, "disabled": 1, "total": 6}
	for k, v := range want {
		if fb.Counts[k] != v {
			t.Errorf("counts[%s] = %d, want %d (%v)", k, fb.Counts[k], v, fb.Counts)
		}
	}
	if len(fb.Mentorados) != 6 || fb.NextCursor != "" {
		t.Fatalf("%d mentorados, cursor %q", len(fb.Mentorados), fb.NextCursor)
	}
	a := fb.Mentorados[0]
	if a.ID != ana.ID || a.State != "connected" || a.Connector != "node-a" || a.Phone != "5511900000001" ||
		a.Reconnects24h != 1 || a.Bans24h != 0 || a.Unread != 2 || a.ConnectedSince == nil || !a.ConnectedSince.Equal(now.Add(-time.Hour)) ||
		a.LastEventAt == nil || !a.LastEventAt.After(now.Add(-11*time.Second)) {
		t.Fatalf("Ana %+v", a)
	}
	if d := fb.Mentorados[3]; d.Bans24h != 1 || d.State != "banned" || d.Reason != "why banned" || d.ConnectedSince != nil {
		t.Fatalf("Davi %+v", d)
	}
	if f := fb.Mentorados[5]; f.State != "disabled" || !f.Disabled {
		t.Fatalf("Fábio %+v", f)
	}
	// No persister consumer: the lag is unknown, not zero.
	if fb.Stream.Pending != nil || fb.Stream.Error == "" || a.Lag != nil {
		t.Fatalf("stream %+v, lag %v", fb.Stream, a.Lag)
	}

	// Search, filter, pages.
	if got := e.fleet("?q=bi"); len(got.Mentorados) != 2 || got.Mentorados[0].Name != "Bia" || got.Mentorados[1].Name != "Fábio" || got.Counts["total"] != 6 {
		t.Fatalf("q=bi: %+v", got)
	}
	if got := e.fleet("?q=%2B55+11+90000-0003"); len(got.Mentorados) != 1 || got.Mentorados[0].ID != caio.ID {
		t.Fatalf("q=phone: %+v", got.Mentorados)
	}
	if got := e.fleet("?status=pairing"); len(got.Mentorados) != 1 || got.Mentorados[0].ID != bia.ID {
		t.Fatalf("status=pairing: %+v", got.Mentorados)
	}
	p1 := e.fleet("?limit=4")
	p2 := e.fleet("?limit=4&cursor=" + p1.NextCursor)
	if len(p1.Mentorados) != 4 || p1.NextCursor == "" || len(p2.Mentorados) != 2 || p2.NextCursor != "" || p2.Mentorados[0].ID != eva.ID {
		t.Fatalf("pages: %d %q, %d %q", len(p1.Mentorados), p1.NextCursor, len(p2.Mentorados), p2.NextCursor)
	}

	// Bad input and credentials.
	if code := e.expect(e.do("GET", "/v1/admin/fleet?status=asleep", testAdminToken, nil), 422).errorCode(t); code != codeBadRequest {
		t.Fatal(code)
	}
	e.expect(e.do("GET", "/v1/admin/fleet?cursor=!!!", testAdminToken, nil), 400)
	e.expect(e.do("GET", "/v1/admin/fleet?cursor=LTE", testAdminToken, nil), 400) // "-1"
	e.expect(e.do("GET", "/v1/admin/fleet?limit=0", testAdminToken, nil), 400)
	e.expect(e.do("GET", "/v1/admin/fleet", "", nil), 401)
	e.expect(e.do("GET", "/v1/admin/fleet", ana.Token, nil), 401)

	// The persister's consumer, caught up: every lag is 0 (no counting).
	ctx := context.Background()
	if _, err := e.bus.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "persister", FilterSubject: "wa.*.evt.>", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	fb = e.fleet("")
	if fb.Stream.Pending == nil || *fb.Stream.Pending != 0 || fb.Stream.Error != "" {
		t.Fatalf("stream %+v", fb.Stream)
	}
	for _, m := range fb.Mentorados {
		if m.Lag == nil || *m.Lag != 0 {
			t.Fatalf("%s lag %v", m.Name, m.Lag)
		}
	}
	// Events the persister has not taken: counted per mentorado.
	for i := range 3 {
		e.publishMessage(ana.ID, fmt.Sprintf("lagA%d", i), "x")
	}
	e.publishMessage(caio.ID, "lagC", "x")
	fb = e.fleet("")
	if fb.Stream.Pending == nil || *fb.Stream.Pending != 4 || fb.Stream.OldestPendingSeconds == nil {
		t.Fatalf("stream %+v", fb.Stream)
	}
	lags := map[int64]uint64{}
	for _, m := range fb.Mentorados {
		if m.Lag == nil {
			t.Fatalf("%s lag not counted", m.Name)
		}
		lags[m.ID] = *m.Lag
	}
	if lags[ana.ID] != 3 || lags[caio.ID] != 1 || lags[bia.ID] != 0 {
		t.Fatalf("lags %v", lags)
	}
	// The probes are gone.
	names, err := e.bus.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	for n := range names.ConsumerNames(ctx).Name() {
		if strings.HasPrefix(n, "notifier_lag_") {
			t.Errorf("probe consumer %s left behind", n)
		}
	}
}

func TestAdminDisconnect(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/disconnect", testAdminToken, nil), 503) // no connector
	fc := e.fakeConnector(defaultAnswer)
	var res adminStateResponse
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/disconnect", testAdminToken, nil), 200).json(t, &res)
	if res.ID != a.ID || res.Session == nil || res.Session.State != "disconnected" {
		t.Fatalf("%+v", res)
	}
	if s := fc.Subjects(); len(s) != 1 || s[0] != event.CommandSubject(a.ID, event.VerbDisconnect) {
		t.Fatalf("subjects %v", s)
	}
	e.expect(e.do("POST", "/v1/admin/mentorados/999999/disconnect", testAdminToken, nil), 404)
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/disconnect", a.Token, nil), 401)
}

// TestAdminStream: the admin stream carries every mentorado's connection
// events and nothing else; admin and tenant tickets do not open each
// other's streams.
func TestAdminStream(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	var tr ticketResponse
	e.expect(e.do("POST", "/v1/admin/stream-tickets", testAdminToken, nil), 201).json(t, &tr)
	if !strings.HasPrefix(tr.Ticket, adminTicketPrefix) || tr.ExpiresAt.Before(time.Now()) {
		t.Fatalf("%+v", tr)
	}
	e.expect(e.do("POST", "/v1/admin/stream-tickets", a.Token, nil), 401)

	var tenant ticketResponse
	e.expect(e.do("POST", "/v1/stream-tickets", a.Token, nil), 201).json(t, &tenant)
	for _, c := range []struct {
		path string
		auth func(*http.Request)
	}{
		{"/v1/admin/events?ticket=" + tenant.Ticket, func(*http.Request) {}},
		{"/v1/admin/events", bearerAuth(a.Token)},
		{"/v1/admin/events?ticket=garbage", func(*http.Request) {}},
		{"/v1/admin/events", func(*http.Request) {}},
		{"/v1/events?ticket=" + tr.Ticket, func(*http.Request) {}},
		{"/v1/ws?ticket=" + tr.Ticket, func(*http.Request) {}},
	} {
		req, _ := http.NewRequest("GET", e.srv.URL+c.path, nil)
		c.auth(req)
		if res := e.send(req); res.Status != 401 {
			t.Errorf("%s: %d %s", c.path, res.Status, res.Body)
		}
	}

	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/admin/events?ticket="+tr.Ticket, nil)
	sse := e.startSSE(req)
	bearer := e.openAdminSSE()
	at := time.Now()
	e.publishEvent(a.ID, event.ConnectionEventID(a.ID, event.StatusConnected, at), &event.Connection{Status: event.StatusConnected, Connector: "node-a"})
	e.publishMessage(a.ID, "m1", "not a connection event")
	e.publishEvent(b.ID, event.ConnectionEventID(b.ID, event.StatusBackoff, at), &event.Connection{Status: event.StatusBackoff, Reason: "stream error"})
	for _, c := range []*sseClient{sse, bearer} {
		testenv.Eventually(t, 10*time.Second, func() bool { return len(c.Events()) >= 2 }, "admin stream got %d events", len(c.Events()))
		evs := c.Events()
		if len(evs) != 2 || evs[0].Event != "connection" || evs[1].Event != "connection" || evs[0].ID == "" ||
			!strings.Contains(evs[0].Data, `"mentorado_id":`+itoa(a.ID)) || !strings.Contains(evs[0].Data, `"connector":"node-a"`) ||
			!strings.Contains(evs[1].Data, `"mentorado_id":`+itoa(b.ID)) {
			t.Fatalf("events %+v", evs)
		}
	}
}

func (e *testEnv) openAdminSSE() *sseClient {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/admin/events", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	return e.startSSE(req)
}

// TestDashboardPass: an admin's dashboard pass works on exactly one
// mentorado's routes, streams included, and dies with its token or when it
// is disabled.
func TestDashboardPass(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	e.insertMessage(a.ID, msgRow{WAID: "ana1", Phone: "5511988887777", Text: "para Ana"})
	e.insertMessage(b.ID, msgRow{WAID: "bia1", Phone: "5511988886666", Text: "para Bia"})
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/dashboard-pass", a.Token, nil), 401)
	e.expect(e.do("POST", "/v1/admin/mentorados/999999/dashboard-pass", testAdminToken, nil), 404)
	var p dashboardPassResponse
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/dashboard-pass", testAdminToken, nil), 201).json(t, &p)
	if p.ID != a.ID || !strings.HasPrefix(p.Pass, dashboardPassPrefix) || p.ExpiresAt.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("%+v", p)
	}
	if !strings.Contains(e.logs.String(), "audit: admin opened the mentorado's dashboard") || strings.Contains(e.logs.String(), p.Pass) {
		t.Fatal("no audit line, or the pass is in the log")
	}
	res := e.expect(e.do("GET", "/v1/chats", p.Pass, nil), 200)
	if !strings.Contains(string(res.Body), "para Ana") || strings.Contains(string(res.Body), "para Bia") {
		t.Fatalf("chats %s", res.Body)
	}
	e.expect(e.do("GET", "/v1/admin/fleet", p.Pass, nil), 401)
	// A tampered pass (another mentorado's id) is refused.
	e.expect(e.do("GET", "/v1/chats", p.Pass[:len(p.Pass)-2]+"AA", nil), 401)
	// Streams: a ticket issued with the pass, and the pass as bearer.
	var tr ticketResponse
	e.expect(e.do("POST", "/v1/stream-tickets", p.Pass, nil), 201).json(t, &tr)
	sse := e.openSSE(func(r *http.Request) { r.URL.RawQuery = "ticket=" + tr.Ticket }, "")
	e.publishMessage(a.ID, "live1", "ao vivo")
	testenv.Eventually(t, 10*time.Second, func() bool { return len(sse.Events()) >= 1 }, "no event through the pass's ticket")

	// Disabled: 403; enabled again: works; rotated token: the pass is void.
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/disable", testAdminToken, nil), 200)
	e.expect(e.do("GET", "/v1/chats", p.Pass, nil), 403)
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/enable", testAdminToken, nil), 200)
	e.expect(e.do("GET", "/v1/chats", p.Pass, nil), 200)
	e.expect(e.do("POST", "/v1/admin/mentorados/"+itoa(a.ID)+"/tokens", testAdminToken, nil), 201)
	e.expect(e.do("GET", "/v1/chats", p.Pass, nil), 401)
}

// TestConsolePage: /admin is served without credentials, with a CSP.
func TestConsolePage(t *testing.T) {
	e := newEnv(t)
	res := e.expect(e.do("GET", "/admin", "", nil), 200)
	if !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") || !strings.Contains(string(res.Body), "/assets/console.js") {
		t.Fatalf("%v %s", res.Header, res.Body[:100])
	}
}
