package web

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// TestConversationCountsPerTenant: the same contact number talks to two
// tenants; each tenant's conversation shows only its own unread count and
// last message (counts, not just strings, so a query that forgets the
// tenant in one subquery is caught).
func TestConversationCountsPerTenant(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	const shared = "5511922220000"
	t0 := time.Now().Add(-time.Hour).UTC()
	// A: 2 unread inbound, 1 read inbound (its last message).
	e.insertMessage(a.ID, msgRow{WAID: "A-1", Phone: shared, Text: "a1", At: t0})
	e.insertMessage(a.ID, msgRow{WAID: "A-2", Phone: shared, Text: "a2", At: t0.Add(time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "A-3", Phone: shared, Text: "a3", Status: "read", At: t0.Add(2 * time.Minute)})
	// B: 3 unread inbound and a later outbound (its last message), all newer than A's.
	e.insertMessage(b.ID, msgRow{WAID: "B-1", Phone: shared, Text: "b1", At: t0.Add(10 * time.Minute)})
	e.insertMessage(b.ID, msgRow{WAID: "B-2", Phone: shared, Text: "b2", At: t0.Add(11 * time.Minute)})
	e.insertMessage(b.ID, msgRow{WAID: "B-3", Phone: shared, Text: "b3", Status: "delivered", At: t0.Add(12 * time.Minute)})
	e.insertMessage(b.ID, msgRow{WAID: "B-4", Phone: shared, Direction: "out", Status: "sent", Text: "b4", At: t0.Add(13 * time.Minute)})

	for _, c := range []struct {
		who    string
		tok    string
		unread int64
		last   string
	}{{"A", a.Token, 2, "A-3"}, {"B", b.Token, 3, "B-4"}} {
		var cr conversationsResponse
		e.expect(e.do("GET", "/v1/conversations", c.tok, nil), 200).json(t, &cr)
		if len(cr.Conversations) != 1 {
			t.Fatalf("%s: %d conversations, want 1: %+v", c.who, len(cr.Conversations), cr)
		}
		got := cr.Conversations[0]
		if got.Phone != shared || got.Unread != c.unread || got.LastMessage.ID != c.last {
			t.Errorf("%s's conversation: phone %s unread %d last %s, want %s unread %d last %s",
				c.who, got.Phone, got.Unread, got.LastMessage.ID, shared, c.unread, c.last)
		}
	}
}

// otherTenantIn puts another tenant's id into one kind of request field.
type otherTenantIn struct {
	name   string
	query  func(other int64) url.Values
	header func(other int64) http.Header
	body   func(other int64, body map[string]any) map[string]any
}

var otherTenantFields = []otherTenantIn{
	{name: "query", query: func(o int64) url.Values {
		v := url.Values{}
		for _, k := range []string{"mentorado_id", "mentoradoId", "mentorado", "tenant_id", "tenant", "id"} {
			v.Set(k, fmt.Sprint(o))
		}
		return v
	}},
	{name: "header", header: func(o int64) http.Header {
		h := http.Header{}
		for _, k := range []string{"X-Mentorado-Id", "Mentorado-Id", "X-Mentorado", "X-Tenant-Id", "X-Tenant"} {
			h.Set(k, fmt.Sprint(o))
		}
		return h
	}},
	{name: "body", body: func(o int64, body map[string]any) map[string]any {
		out := map[string]any{"mentorado_id": o, "mentoradoId": o, "mentorado": o, "tenant_id": o}
		for k, v := range body {
			out[k] = v
		}
		return out
	}},
}

// doAs sends a request with token and the other tenant's id in the field f.
func (e *testEnv) doAs(f otherTenantIn, other int64, method, path, token string, body map[string]any) response {
	e.t.Helper()
	u, err := url.Parse(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	if f.query != nil {
		q := u.Query()
		for k, vs := range f.query(other) {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
		u.RawQuery = q.Encode()
	}
	if f.body != nil {
		body = f.body(other, body)
	}
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, u.String(), rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if f.header != nil {
		for k, vs := range f.header(other) {
			req.Header[k] = vs
		}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return e.send(req)
}

// TestTenantIDOnlyFromToken walks every mentorado-scoped route with A's
// token while naming B in every plausible request field (query, headers,
// JSON body): A still sees only A's data, and every command goes to A.
// A body field the API does not know may be refused (400), never obeyed.
func TestTenantIDOnlyFromToken(t *testing.T) {
	e := newWebhookEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	fc := e.fakeConnector(defaultAnswer)
	const shared, onlyB, bPhone = "5511922220000", "5511933330000", "5511944440000"
	e.insertMessage(a.ID, msgRow{WAID: "A-1", Phone: shared, Text: "from A's contact"})
	e.insertMessage(b.ID, msgRow{WAID: "B-1", Phone: shared, Text: "B secret 1"})
	e.insertMessage(b.ID, msgRow{WAID: "B-2", Phone: onlyB, Text: "B secret 2"})
	e.insertLead(b.ID, shared, "B's lead", "whatsapp")
	e.insertContact(b.ID, onlyB, "B's contact")
	if _, err := e.db.Pool.Exec(t.Context(),
		`UPDATE mentorados SET wa_status = 'connected', wa_phone = $2 WHERE id = $1`, b.ID, bPhone); err != nil {
		t.Fatal(err)
	}
	e.publishQR(b.ID, "2@B-qr-secret", time.Now().Add(time.Minute))
	e.putMeta(b.ID, bPhone, "B-waba-secret", bPhone) // provider_test.go
	e.publishMessage(b.ID, "B-evt", "B secret event")
	marker := e.publishMessage(a.ID, "A-evt", "A marker")
	e.seedCampaignTenant(b)

	bCounts := func() string {
		var msgs, linked, contacts, leads int
		_ = e.db.Pool.QueryRow(t.Context(), `SELECT count(*), count(lead_id) FROM whatsapp_messages WHERE mentorado_id = $1`, b.ID).Scan(&msgs, &linked)
		_ = e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM whatsapp_contacts WHERE mentorado_id = $1`, b.ID).Scan(&contacts)
		_ = e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM leads WHERE mentorado_id = $1`, b.ID).Scan(&leads)
		return fmt.Sprintf("messages %d linked %d contacts %d leads %d", msgs, linked, contacts, leads)
	}
	bBefore := bCounts()

	for _, f := range otherTenantFields {
		t.Run(f.name, func(t *testing.T) {
			covered := map[string]bool{}
			seen := len(fc.Subjects())
			call := func(method, path string, body map[string]any, want int) response {
				t.Helper()
				res := e.doAs(f, b.ID, method, path, a.Token, body)
				s := string(res.Body)
				for _, leak := range []string{"secret", "B's", bPhone, onlyB} {
					if strings.Contains(s, leak) {
						t.Fatalf("%s %s with B's id in the %s leaked B's data: %s", method, path, f.name, s)
					}
				}
				if res.Status != want && !(f.body != nil && body != nil && res.Status == http.StatusBadRequest) {
					t.Fatalf("%s %s with B's id in the %s: status %d, want %d: %s", method, path, f.name, res.Status, want, s)
				}
				covered[method+" "+strings.SplitN(path, "?", 2)[0]] = true
				return res
			}
			ok := func(res response) bool { return res.Status < 300 }

			call("POST", "/v1/whatsapp/connect", map[string]any{"method": "qr"}, 202)
			call("POST", "/v1/whatsapp/disconnect", nil, 200)
			call("POST", "/v1/whatsapp/logout", nil, 200)
			var st statusResponse
			call("GET", "/v1/whatsapp/status", nil, 200).json(t, &st)
			if st.Status != event.StatusDisconnected || st.Phone != "" {
				t.Fatalf("A's status shows %+v", st)
			}
			call("GET", "/v1/whatsapp/qr.png", nil, 404) // B's QR is not A's
			var pr providerResponse
			call("GET", "/v1/whatsapp/provider", nil, 200).json(t, &pr)
			if activeOf(pr) != event.ProviderWeb || strings.Join(providersOf(pr), ",") != "whatsapp_web*" {
				t.Fatalf("A's provider with B's id in the %s: %v", f.name, providersOf(pr))
			}
			call("POST", "/v1/messages", map[string]any{"phone": shared, "text": "hi"}, 201)

			var cr conversationsResponse
			call("GET", "/v1/conversations", nil, 200).json(t, &cr)
			if len(cr.Conversations) > 1 || (len(cr.Conversations) == 1 && cr.Conversations[0].LastMessage.ID != "A-1") {
				t.Fatalf("A's conversations %+v", cr)
			}
			var mr messagesResponse
			call("GET", "/v1/conversations/"+shared+"/messages", nil, 200).json(t, &mr)
			for _, m := range mr.Messages {
				if m.ID != "A-1" {
					t.Fatalf("A's messages with the shared number include %+v", m)
				}
			}
			call("GET", "/v1/conversations/"+onlyB+"/messages", nil, 200).json(t, &mr)
			if len(mr.Messages) != 0 {
				t.Fatalf("A sees B's conversation %+v", mr)
			}
			var linked map[string]int64
			if res := call("POST", "/v1/messages/link-orphans", nil, 200); ok(res) {
				res.json(t, &linked)
				if linked["linked"] != 0 {
					t.Fatalf("A linked %d messages to B's lead", linked["linked"])
				}
			}
			// Media and actions on B's message ids: unknown to A.
			for _, c := range []struct {
				method, path, pattern string
				body                  map[string]any
			}{
				{"GET", "/v1/messages/B-1/media", "GET /v1/messages/{id}/media", nil},
				{"GET", "/v1/messages/B-1/thumbnail", "GET /v1/messages/{id}/thumbnail", nil},
				{"POST", "/v1/messages/B-1/reactions", "POST /v1/messages/{id}/reactions", map[string]any{"emoji": "👍"}},
				{"PATCH", "/v1/messages/B-1", "PATCH /v1/messages/{id}", map[string]any{"text": "x"}},
				{"DELETE", "/v1/messages/B-1", "DELETE /v1/messages/{id}", nil},
			} {
				call(c.method, c.path, c.body, 404)
				covered[c.pattern] = true
			}
			call("POST", "/v1/conversations/"+shared+"/read", nil, 200)
			// Chats and settings: B's chat is unknown to A, A's settings are A's.
			var chr chatsResponse
			call("GET", "/v1/chats", nil, 200).json(t, &chr)
			for _, c := range chr.Chats {
				if c.LastMessage == nil || c.LastMessage.ID != "A-1" {
					t.Fatalf("A's chats include %+v", c)
				}
			}
			call("GET", "/v1/chats/"+onlyB, nil, 404)
			call("GET", "/v1/chats/"+onlyB+"/messages", nil, 200).json(t, &mr)
			if len(mr.Messages) != 0 {
				t.Fatalf("A sees B's chat %+v", mr)
			}
			call("POST", "/v1/chats/"+onlyB+"/read", nil, 200)
			for _, p := range []string{"GET /v1/chats/{chat}", "GET /v1/chats/{chat}/messages", "POST /v1/chats/{chat}/read"} {
				covered[p] = true
			}
			call("PATCH", "/v1/settings", map[string]any{"group_leads": true}, 200)
			call("GET", "/v1/settings", nil, 200)
			if st, err := e.db.Mentorados().Settings(t.Context(), b.ID); err != nil || st.GroupLeads {
				t.Fatalf("B's settings %+v %v", st, err)
			}
			if id := e.uploadAs(f, b.ID, a.Token); !e.stored(a.ID, id) || e.stored(b.ID, id) {
				t.Fatalf("upload with B's id in the %s is not A's alone", f.name)
			}
			covered["POST /v1/media"] = true

			var tr ticketResponse
			if res := call("POST", "/v1/stream-tickets", nil, 201); ok(res) {
				res.json(t, &tr)
				if m, _, err := e.s.verifyTicket(t.Context(), tr.Ticket); err != nil || m != a.ID {
					t.Fatalf("A's ticket is for %d (%v)", m, err)
				}
			}
			call("DELETE", "/v1/whatsapp/data", nil, 200)
			if got := bCounts(); got != bBefore {
				t.Fatalf("B's data changed: %s, was %s", got, bBefore)
			}

			// Streams with B's id in the request replay only A's events.
			sse := e.openSSEAs(f, b.ID, a.Token)
			covered["GET /v1/events"] = true
			testenv.Eventually(t, 5*time.Second, func() bool {
				for _, ev := range sse.Events() {
					if ev.ID == fmt.Sprint(marker) {
						return true
					}
				}
				return false
			}, "A's marker on SSE")
			for _, ev := range sse.Events() {
				if strings.Contains(ev.Data, "secret") {
					t.Fatalf("SSE with B's id in the %s leaked %s", f.name, ev.Data)
				}
			}
			if tr.Ticket != "" {
				e.wsUntil(t, f, b.ID, tr.Ticket, marker)
				covered["GET /v1/ws"] = true
			}

			// Webhook endpoints (webhooks_test.go).
			e.webhookTenantWalk(t, a, b, func(method, path string, body map[string]any) response {
				return e.doAs(f, b.ID, method, path, a.Token, body)
			}, covered)
			// Leads (issue #13): B's lead is never A's; unknown query
			// parameters are refused by the list.
			list := http.StatusOK
			if f.query != nil {
				list = http.StatusUnprocessableEntity
			}
			for _, pat := range walkLeadRoutes(t, e, b.ID, "551197777000"+fmt.Sprint(len(f.name)), list, call) {
				covered[pat] = true
			}
			// Campaigns, sending settings and opt-outs (issue #14).
			for _, pat := range walkCampaignRoutes(t, e, b.ID, f.body != nil, call) {
				covered[pat] = true
			}

			for _, s := range fc.Subjects()[seen:] {
				if !strings.HasPrefix(s, fmt.Sprintf("wa.%d.cmd.", a.ID)) {
					t.Fatalf("A's request with B's id in the %s reached %s", f.name, s)
				}
			}
			for _, rt := range e.s.routes {
				if strings.HasPrefix(rt.path, "/v1/") && !strings.HasPrefix(rt.path, "/v1/admin/") &&
					!covered[rt.method+" "+strings.ReplaceAll(rt.path, "{phone}", shared)] && !covered[rt.pattern()] {
					t.Errorf("route %s not walked with B's id in the %s", rt.pattern(), f.name)
				}
			}
		})
	}
}

// openSSEAs opens /v1/events from the start with token and the other
// tenant's id in f's field.
func (e *testEnv) openSSEAs(f otherTenantIn, other int64, token string) *sseClient {
	e.t.Helper()
	u := e.srv.URL + "/v1/events"
	if f.query != nil {
		u += "?" + f.query(other).Encode()
	}
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if f.header != nil {
		for k, vs := range f.header(other) {
			req.Header[k] = vs
		}
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Last-Event-ID", "1")
	return e.startSSE(req)
}

// wsUntil reads A's websocket (opened with ticket, B's id in f's field)
// from the start up to marker and fails on anything of B's.
func (e *testEnv) wsUntil(t *testing.T, f otherTenantIn, other int64, ticket string, marker uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	q := url.Values{}
	if f.query != nil {
		q = f.query(other)
	}
	q.Set("last_event_id", "1")
	q.Set("ticket", ticket)
	opts := &websocket.DialOptions{}
	if f.header != nil {
		opts.HTTPHeader = f.header(other)
	}
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/v1/ws?"+q.Encode(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "secret") {
			t.Fatalf("websocket with B's id in the %s leaked %s", f.name, data)
		}
		var fr wsFrame
		_ = json.Unmarshal(data, &fr)
		if fr.ID == marker {
			return
		}
	}
}

// uploadAs uploads a file as token's mentorado with the other tenant's id
// in f's field (a form field for the body) and returns its media id.
func (e *testEnv) uploadAs(f otherTenantIn, other int64, token string) string {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if f.body != nil {
		for k, v := range f.body(other, nil) {
			_ = mw.WriteField(k, fmt.Sprint(v))
		}
	}
	data := append([]byte("%PDF-1.4\n"), []byte(f.name)...)
	fw, _ := mw.CreateFormFile("file", "doc.pdf")
	_, _ = fw.Write(data)
	_ = mw.Close()
	u := e.srv.URL + "/v1/media"
	if f.query != nil {
		u += "?" + f.query(other).Encode()
	}
	req, err := http.NewRequest("POST", u, &buf)
	if err != nil {
		e.t.Fatal(err)
	}
	if f.header != nil {
		for k, vs := range f.header(other) {
			req.Header[k] = vs
		}
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	var up uploadResponse
	e.expect(e.send(req), 201).json(e.t, &up)
	return up.MediaID
}
