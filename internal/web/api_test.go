package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

func TestAdminMentoradosAndTokens(t *testing.T) {
	e := newEnv(t)

	a := e.createMentorado("Ana")
	if a.ID <= 0 || !strings.HasPrefix(a.Token, tokenPrefix) || len(a.Token) < 40 {
		t.Fatalf("bad create response %+v", a)
	}
	var stored []byte
	if err := e.db.Pool.QueryRow(t.Context(), `SELECT token_hash FROM mentorados WHERE id = $1`, a.ID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if string(stored) != string(hashToken(a.Token)) {
		t.Fatal("token_hash is not the SHA-256 of the token")
	}
	e.expect(e.do("GET", "/v1/whatsapp/status", a.Token, nil), 200)

	for _, tc := range []struct {
		name, token, body string
		status            int
		code              string
	}{
		{"wrong admin token", "nope-nope-nope-nope", `{"name":"x"}`, 401, codeUnauthorized},
		{"mentorado token is not admin", a.Token, `{"name":"x"}`, 401, codeUnauthorized},
		{"no token", "", `{"name":"x"}`, 401, codeUnauthorized},
		{"bad json", testAdminToken, `{"name":`, 400, codeBadJSON},
		{"not an object", testAdminToken, `[1]`, 400, codeBadJSON},
		{"empty body", testAdminToken, ``, 400, codeBadJSON},
		{"unknown field", testAdminToken, `{"name":"x","admin":true}`, 400, codeBadJSON},
		{"trailing data", testAdminToken, `{"name":"x"} {}`, 400, codeBadJSON},
		{"missing name", testAdminToken, `{}`, 400, codeBadRequest},
		{"blank name", testAdminToken, `{"name":"   "}`, 400, codeBadRequest},
		{"long name", testAdminToken, `{"name":"` + strings.Repeat("x", 201) + `"}`, 400, codeBadRequest},
		{"wrong type", testAdminToken, `{"name":5}`, 400, codeBadJSON},
		{"oversized", testAdminToken, `{"name":"` + strings.Repeat("x", 2<<20) + `"}`, 413, codeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.do("POST", "/v1/admin/mentorados", tc.token, tc.body)
			e.expect(res, tc.status)
			if got := res.errorCode(t); got != tc.code {
				t.Fatalf("code %q, want %q", got, tc.code)
			}
		})
	}

	// Rotation: the old token stops working, the new one works.
	res := e.expect(e.do("POST", fmt.Sprintf("/v1/admin/mentorados/%d/tokens", a.ID), testAdminToken, nil), 201)
	var rot tokenResponse
	res.json(t, &rot)
	if rot.ID != a.ID || rot.Token == a.Token || !strings.HasPrefix(rot.Token, tokenPrefix) {
		t.Fatalf("bad rotation %+v", rot)
	}
	if code := e.expect(e.do("GET", "/v1/whatsapp/status", a.Token, nil), 401).errorCode(t); code != codeUnauthorized {
		t.Fatal(code)
	}
	e.expect(e.do("GET", "/v1/whatsapp/status", rot.Token, nil), 200)
	e.expect(e.do("POST", "/v1/admin/mentorados/999999/tokens", testAdminToken, nil), 404)
	e.expect(e.do("POST", "/v1/admin/mentorados/abc/tokens", testAdminToken, nil), 400)
	e.expect(e.do("POST", fmt.Sprintf("/v1/admin/mentorados/%d/tokens", a.ID), rot.Token, nil), 401)
}

func TestMentoradoAuthRejected(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	for _, tok := range []string{"", "zbt_not-a-real-token", a.Token + "x", testAdminToken} {
		for _, rt := range e.s.routes {
			if !strings.HasPrefix(rt.path, "/v1/") || strings.HasPrefix(rt.path, "/v1/admin/") {
				continue
			}
			path := strings.ReplaceAll(rt.path, "{phone}", "5511988887777")
			res := e.do(rt.method, path, tok, nil)
			if res.Status != 401 || res.errorCode(t) != codeUnauthorized {
				t.Fatalf("%s %s with token %q: %d %s", rt.method, path, tok, res.Status, res.Body)
			}
		}
	}
	// A Basic header is not a bearer token.
	res := e.do("GET", "/v1/whatsapp/status", "", nil)
	e.expect(res, 401)
	if res.Header.Get("WWW-Authenticate") == "" {
		t.Fatal("no WWW-Authenticate header")
	}
}

func TestNotFoundAndMethodNotAllowedAreJSON(t *testing.T) {
	e := newEnv(t)
	res := e.expect(e.do("GET", "/v1/nope", "", nil), 404)
	if res.errorCode(t) != codeNotFound || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("404: %s %v", res.Body, res.Header)
	}
	res = e.expect(e.do("DELETE", "/v1/messages", "", nil), 405)
	if res.errorCode(t) != codeMethodNotAllowed || !strings.Contains(res.Header.Get("Allow"), "POST") {
		t.Fatalf("405: %s %v", res.Body, res.Header)
	}
	e.expect(e.do("GET", "/assets/nope.js", "", nil), 404)
}

func TestSendMessage(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	fc := e.fakeConnector(func(m int64, verb event.Verb, body []byte) event.Reply {
		var req event.SendRequest
		_ = json.Unmarshal(body, &req)
		switch req.Text {
		case "offline":
			return event.Reply{Error: event.NewCommandError(event.CodeNotConnected, "session not connected")}
		case "nobody":
			return event.Reply{Error: event.NewCommandError(event.CodeNotOnWhatsApp, "not on WhatsApp")}
		case "moving":
			return event.Reply{Error: event.NewCommandError(event.CodeNotOwner, "lease moved")}
		case "boom":
			return event.Reply{Error: event.NewCommandError(event.CodeInternal, "boom")}
		case "gone":
			return event.Reply{Error: event.NewCommandError(event.CodeUnknown, "no mentorado")}
		}
		return defaultAnswer(m, verb, body)
	})

	res := e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{
		"phone": "+55 (11) 98888-7777", "text": "olá", "client_id": "c-1"}), 201)
	var msg apiMessage
	res.json(t, &msg)
	if msg.ID == "" || msg.Status != "sent" || msg.Direction != "out" || msg.Phone != "5511988887777" || msg.Text != "olá" {
		t.Fatalf("bad message %+v", msg)
	}
	var sent event.SendRequest
	if err := json.Unmarshal(fc.LastBody(), &sent); err != nil {
		t.Fatal(err)
	}
	if sent != (event.SendRequest{ClientID: "c-1", Phone: "5511988887777", Text: "olá"}) {
		t.Fatalf("command body %+v", sent)
	}
	if got := fc.Subjects(); len(got) != 1 || got[0] != event.CommandSubject(a.ID, event.VerbSend) {
		t.Fatalf("subjects %v", got)
	}

	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
	}{
		{"invalid phone", map[string]string{"phone": "12ab", "text": "x"}, 400, event.CodeInvalidPhone},
		{"missing phone", map[string]string{"text": "x"}, 400, event.CodeInvalidPhone},
		{"empty text", map[string]string{"phone": "5511988887777", "text": ""}, 400, codeBadRequest},
		{"blank text", map[string]string{"phone": "5511988887777", "text": "  \n"}, 400, codeBadRequest},
		{"text too long", map[string]string{"phone": "5511988887777", "text": strings.Repeat("é", event.MaxTextRunes+1)}, 400, event.CodeTextTooLong},
		{"unknown field", `{"phone":"5511988887777","text":"x","to":"y"}`, 400, codeBadJSON},
		{"bad json", `{"phone":`, 400, codeBadJSON},
		{"not connected", map[string]string{"phone": "5511988887777", "text": "offline"}, 409, event.CodeNotConnected},
		{"not on whatsapp", map[string]string{"phone": "5511988887777", "text": "nobody"}, 422, event.CodeNotOnWhatsApp},
		{"not owner", map[string]string{"phone": "5511988887777", "text": "moving"}, 503, event.CodeNotOwner},
		{"connector failure", map[string]string{"phone": "5511988887777", "text": "boom"}, 502, codeInternal},
		{"mentorado deleted meanwhile", map[string]string{"phone": "5511988887777", "text": "gone"}, 404, event.CodeUnknown},
		{"oversized body", `{"phone":"5511988887777","text":"` + strings.Repeat("a", 1<<20) + `"}`, 413, codeTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.expect(e.do("POST", "/v1/messages", a.Token, tc.body), tc.status)
			if got := res.errorCode(t); got != tc.code {
				t.Fatalf("code %q, want %q (%s)", got, tc.code, res.Body)
			}
		})
	}
	// Exactly max length is accepted.
	e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"phone": "5511988887777", "text": strings.Repeat("é", event.MaxTextRunes)}), 201)

	// No connector at all: 503 unavailable, quickly.
	_ = fc.sub.Unsubscribe()
	res = e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"phone": "5511988887777", "text": "hi"}), 503)
	if res.errorCode(t) != codeUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("no responders: %s", res.Body)
	}
}

func TestCommandTimeout(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CommandTimeout = 200 * time.Millisecond })
	a := e.createMentorado("Ana")
	// A responder that never answers.
	sub, err := e.nc.Subscribe(event.CommandWildcard, func(*nats.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	_ = e.nc.Flush()
	res := e.expect(e.do("POST", "/v1/whatsapp/disconnect", a.Token, nil), 504)
	if res.errorCode(t) != codeTimeout {
		t.Fatal(string(res.Body))
	}
}

func TestConnectDisconnectLogoutStatus(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	fc := e.fakeConnector(defaultAnswer)

	var st statusResponse
	e.expect(e.do("POST", "/v1/whatsapp/connect", a.Token, map[string]string{"method": "qr"}), 202).json(t, &st)
	if st.Status != event.StatusQR || st.Since == nil {
		t.Fatalf("connect qr: %+v", st)
	}
	st = statusResponse{}
	e.expect(e.do("POST", "/v1/whatsapp/connect", a.Token, map[string]string{"method": "phone", "phone": "11 98765-4321"}), 202).json(t, &st)
	if st.Status != event.StatusPairing || st.PairingCode != "ABCD-EFGH" {
		t.Fatalf("connect phone: %+v", st)
	}
	var creq event.ConnectRequest
	_ = json.Unmarshal(fc.LastBody(), &creq)
	if creq.Method != event.ConnectPhone || creq.Phone != "5511987654321" {
		t.Fatalf("connect command %+v", creq)
	}
	for _, tc := range []struct {
		body string
		code string
	}{
		{`{"method":"carrier-pigeon"}`, codeBadRequest},
		{`{}`, codeBadRequest},
		{`{"method":"phone"}`, event.CodeInvalidPhone},
		{`{"method":"phone","phone":"abc"}`, event.CodeInvalidPhone},
		{`{"method":"qr","phone":"5511987654321"}`, codeBadRequest},
		{`{"method":"qr","x":1}`, codeBadJSON},
		{`nope`, codeBadJSON},
	} {
		if got := e.expect(e.do("POST", "/v1/whatsapp/connect", a.Token, tc.body), 400).errorCode(t); got != tc.code {
			t.Fatalf("%s: code %q want %q", tc.body, got, tc.code)
		}
	}
	st = statusResponse{}
	e.expect(e.do("POST", "/v1/whatsapp/disconnect", a.Token, nil), 200).json(t, &st)
	if st.Status != event.StatusDisconnected {
		t.Fatalf("disconnect %+v", st)
	}
	st = statusResponse{}
	e.expect(e.do("POST", "/v1/whatsapp/logout", a.Token, nil), 200).json(t, &st)
	if st.Status != event.StatusLoggedOut {
		t.Fatalf("logout %+v", st)
	}

	// Status comes from the mentorados row.
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	if _, err := e.db.Pool.Exec(t.Context(),
		`UPDATE mentorados SET wa_status = 'connected', wa_phone = '5511999990000', wa_status_at = $2 WHERE id = $1`, a.ID, at); err != nil {
		t.Fatal(err)
	}
	before := len(fc.Subjects())
	st = statusResponse{}
	e.expect(e.do("GET", "/v1/whatsapp/status", a.Token, nil), 200).json(t, &st)
	if st.Status != event.StatusConnected || st.Phone != "5511999990000" || st.Since == nil || !st.Since.Equal(at) {
		t.Fatalf("status %+v", st)
	}
	if len(fc.Subjects()) != before {
		t.Fatal("status without live=true asked the connector")
	}
	st = statusResponse{}
	e.expect(e.do("GET", "/v1/whatsapp/status?live=true", a.Token, nil), 200).json(t, &st)
	if st.Status != event.StatusConnected || len(fc.Subjects()) != before+1 {
		t.Fatalf("live status %+v", st)
	}
	e.expect(e.do("GET", "/v1/whatsapp/status?live=maybe", a.Token, nil), 400)

	// Connector says it is already paired.
	_ = fc.sub.Unsubscribe()
	e.fakeConnector(func(int64, event.Verb, []byte) event.Reply {
		return event.Reply{Error: event.NewCommandError(event.CodeAlreadyPaired, "already paired")}
	})
	if code := e.expect(e.do("POST", "/v1/whatsapp/connect", a.Token, `{"method":"qr"}`), 409).errorCode(t); code != event.CodeAlreadyPaired {
		t.Fatal(code)
	}
}

func TestConversationsMessagesLinkAndClear(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	base := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	p1, p2, p3 := "5511911110001", "5511911110002", "5511911110003"
	lead1 := e.insertLead(a.ID, p1, "Lead One", "whatsapp")
	e.insertLead(a.ID, p2, "", "manual")
	e.insertContact(a.ID, p2, "Contact Two")
	// p1: 3 inbound (2 unread, 1 read) + 1 outbound; p2: 1 inbound unread; p3: name from push name.
	e.insertMessage(a.ID, msgRow{WAID: "a1", Phone: p1, Text: "one", At: base, Status: "read"})
	e.insertMessage(a.ID, msgRow{WAID: "a2", Phone: p1, Text: "two", At: base.Add(1 * time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "a3", Phone: p1, Text: "three", At: base.Add(2 * time.Minute), Status: "delivered"})
	e.insertMessage(a.ID, msgRow{WAID: "a4", Phone: p1, Text: "reply", Direction: "out", Status: "sent", At: base.Add(5 * time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "b1", Phone: p2, Text: "hi from two", At: base.Add(3 * time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "c1", Phone: p3, Text: "hi from three", PushName: "Três", At: base.Add(4 * time.Minute), LeadID: &lead1})
	// Rows that act on other messages (the persister applies their effect to
	// the target) are not messages of their own in listings or unread counts.
	e.insertMessage(a.ID, msgRow{WAID: "r1", Phone: p1, Kind: "reaction", Text: "👍", Target: "a4", At: base.Add(6 * time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "e1", Phone: p1, Kind: "edit", Text: "three!", Target: "a3", At: base.Add(7 * time.Minute)})

	var cr conversationsResponse
	e.expect(e.do("GET", "/v1/conversations", a.Token, nil), 200).json(t, &cr)
	if len(cr.Conversations) != 3 || cr.NextCursor != "" {
		t.Fatalf("conversations %+v", cr)
	}
	c0, c1, c2 := cr.Conversations[0], cr.Conversations[1], cr.Conversations[2]
	if c0.Phone != p1 || c0.Name != "Lead One" || c0.Unread != 2 || c0.LastMessage.ID != "a4" || c0.LeadID == nil || *c0.LeadID != lead1 {
		t.Fatalf("conversation p1 %+v", c0)
	}
	if c1.Phone != p3 || c1.Name != "Três" || c1.Unread != 1 {
		t.Fatalf("conversation p3 %+v", c1)
	}
	if c2.Phone != p2 || c2.Name != "Contact Two" || c2.Unread != 1 || c2.LastMessage.Text != "hi from two" {
		t.Fatalf("conversation p2 %+v", c2)
	}

	// Keyset pagination, one per page.
	var phones []string
	cursor := ""
	for page := 0; page < 5; page++ {
		var pr conversationsResponse
		e.expect(e.do("GET", "/v1/conversations?limit=1&cursor="+url.QueryEscape(cursor), a.Token, nil), 200).json(t, &pr)
		for _, c := range pr.Conversations {
			phones = append(phones, c.Phone)
		}
		if pr.NextCursor == "" {
			break
		}
		cursor = pr.NextCursor
	}
	if !slices.Equal(phones, []string{p1, p3, p2}) {
		t.Fatalf("paged conversations %v", phones)
	}
	e.expect(e.do("GET", "/v1/conversations?limit=0", a.Token, nil), 400)
	e.expect(e.do("GET", "/v1/conversations?limit=201", a.Token, nil), 400)
	e.expect(e.do("GET", "/v1/conversations?cursor=!!!", a.Token, nil), 400)
	e.expect(e.do("GET", "/v1/conversations?cursor=bm9wZQ", a.Token, nil), 400)

	// Messages of p1, newest first, paged with before.
	var ids []string
	before := ""
	for page := 0; page < 5; page++ {
		var mr messagesResponse
		e.expect(e.do("GET", "/v1/conversations/"+p1+"/messages?limit=3&before="+url.QueryEscape(before), a.Token, nil), 200).json(t, &mr)
		for _, m := range mr.Messages {
			ids = append(ids, m.ID)
		}
		if mr.NextCursor == "" {
			break
		}
		before = mr.NextCursor
	}
	if !slices.Equal(ids, []string{"a4", "a3", "a2", "a1"}) {
		t.Fatalf("messages %v", ids)
	}
	// The phone in the path is normalised.
	var mr messagesResponse
	e.expect(e.do("GET", "/v1/conversations/"+url.PathEscape("+55 11 91111-0001")+"/messages", a.Token, nil), 200).json(t, &mr)
	if len(mr.Messages) != 4 || mr.Messages[0].Direction != "out" || mr.Messages[0].Status != "sent" {
		t.Fatalf("messages by formatted phone %+v", mr)
	}
	e.expect(e.do("GET", "/v1/conversations/notaphone/messages", a.Token, nil), 400)

	// Link orphans: p1's 4 messages (and its reaction and edit rows, which
	// the persister links to leads too) and p2's 1 get a lead; p3 has no
	// lead with its phone.
	var linked map[string]int64
	e.expect(e.do("POST", "/v1/messages/link-orphans", a.Token, nil), 200).json(t, &linked)
	if linked["linked"] != 7 {
		t.Fatalf("linked %v", linked)
	}
	e.expect(e.do("POST", "/v1/messages/link-orphans", a.Token, nil), 200).json(t, &linked)
	if linked["linked"] != 0 {
		t.Fatalf("second link %v", linked)
	}

	// Clear: messages, contacts and WhatsApp-created leads only.
	var cleared clearDataResponse
	e.expect(e.do("DELETE", "/v1/whatsapp/data", a.Token, nil), 200).json(t, &cleared)
	if cleared != (clearDataResponse{Messages: 8, Contacts: 1, Leads: 1}) { // 6 messages + 2 action rows
		t.Fatalf("cleared %+v", cleared)
	}
	var leads int
	_ = e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM leads WHERE mentorado_id = $1`, a.ID).Scan(&leads)
	if leads != 1 {
		t.Fatalf("%d leads left, want the manual one", leads)
	}
	cr = conversationsResponse{}
	e.expect(e.do("GET", "/v1/conversations", a.Token, nil), 200).json(t, &cr)
	if len(cr.Conversations) != 0 {
		t.Fatalf("conversations after clear %+v", cr)
	}
}

func TestQRPNG(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	if code := e.expect(e.do("GET", "/v1/whatsapp/qr.png", a.Token, nil), 404).errorCode(t); code != codeNoQR {
		t.Fatal(code)
	}
	e.publishQR(a.ID, "2@expired,code", time.Now().Add(-time.Second))
	e.expect(e.do("GET", "/v1/whatsapp/qr.png", a.Token, nil), 404)
	e.publishQR(a.ID, "2@live,code", time.Now().Add(time.Minute))
	res := e.expect(e.do("GET", "/v1/whatsapp/qr.png", a.Token, nil), 200)
	if res.Header.Get("Content-Type") != "image/png" || !strings.HasPrefix(string(res.Body), "\x89PNG") ||
		!strings.Contains(res.Header.Get("Cache-Control"), "no-store") {
		t.Fatalf("qr png: %v %q", res.Header, res.Body[:8])
	}
}

func TestHealthReadyMetricsOpenAPI(t *testing.T) {
	e := newEnv(t)
	e.expect(e.do("GET", "/healthz", "", nil), 200)
	e.expect(e.do("GET", "/readyz", "", nil), 200)
	e.do("GET", "/v1/whatsapp/status", "bad", nil)
	res := e.expect(e.do("GET", "/metrics", "", nil), 200)
	for _, want := range []string{
		`zapbus_http_requests_total{code="401",route="GET /v1/whatsapp/status"} 1`,
		`zapbus_http_requests_total{code="200",route="GET /readyz"} 1`,
	} {
		if !strings.Contains(string(res.Body), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	res = e.expect(e.do("GET", "/", "", nil), 200)
	for _, id := range []string{`id="qr"`, `id="status-badge"`, `id="connect"`, `id="disconnect"`, `id="logout"`,
		`id="conversations"`, `id="thread"`, `id="send-text"`, `id="send-button"`} {
		if !strings.Contains(string(res.Body), id) {
			t.Fatalf("dashboard lacks %s", id)
		}
	}
	e.expect(e.do("GET", "/assets/app.js", "", nil), 200)
	e.expect(e.do("GET", "/assets/style.css", "", nil), 200)

	// A required check (the dev binary's in-process connector) holds
	// readiness until it passes, and its reason is the message.
	var connectorUp atomic.Bool
	e.s.RequireReady(func(context.Context) error {
		if !connectorUp.Load() {
			return errors.New("connector: not running")
		}
		return nil
	})
	res = e.expect(e.do("GET", "/readyz", "", nil), 503)
	if !strings.Contains(string(res.Body), "connector: not running") {
		t.Fatalf("readyz while the connector starts: %s", res.Body)
	}
	connectorUp.Store(true)
	e.expect(e.do("GET", "/readyz", "", nil), 200)

	// Readiness fails when NATS is gone.
	e.bus.Close()
	if code := e.expect(e.do("GET", "/readyz", "", nil), 503).errorCode(t); code != codeUnavailable {
		t.Fatal(code)
	}
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	// Every $ref resolves.
	var whole map[string]any
	_ = json.Unmarshal(openAPIDoc, &whole)
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				var node any = whole
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := node.(map[string]any)
					node = m[part]
				}
				if node == nil {
					t.Errorf("unresolved $ref %s", ref)
				}
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	walk(whole)

	s := &Server{metrics: newMetrics()}
	routes := s.routeTable()
	seen := map[string]bool{}
	for _, rt := range routes {
		op := strings.ToLower(rt.method)
		if _, ok := doc.Paths[rt.path][op]; !ok {
			t.Errorf("route %s %s missing from openapi.json", rt.method, rt.path)
		}
		seen[op+" "+rt.path] = true
	}
	for path, ops := range doc.Paths {
		for op := range ops {
			if op == "parameters" {
				continue
			}
			if !seen[op+" "+path] {
				t.Errorf("openapi.json documents %s %s, which is not a route", op, path)
			}
		}
	}
}

// TestClearDataWaitsForPersisterBatch: clearing a mentorado's data takes
// the same advisory lock as a persister batch of that mentorado, so it
// never deletes a lead under a batch that is linking messages to it.
func TestClearDataWaitsForPersisterBatch(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	ctx := context.Background()
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := store.LockMentorado(ctx, tx, a.ID); err != nil { // what a persister batch holds
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		res := e.do("DELETE", "/v1/whatsapp/data", a.Token, nil)
		done <- res.Status
	}()
	testenv.Eventually(t, 10*time.Second, func() bool {
		var waiting bool
		_ = e.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks
			WHERE locktype = 'advisory' AND classid = $1 AND NOT granted)`, store.MentoradoLockClass).Scan(&waiting)
		return waiting
	}, "clear-data never waited for the mentorado lock")
	select {
	case code := <-done:
		t.Fatalf("clear-data finished (%d) while a batch held the lock", code)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if code := <-done; code != 200 {
		t.Fatalf("clear-data: %d", code)
	}
}
