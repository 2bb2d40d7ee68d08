package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// TestTenantIsolation walks every mentorado-scoped route with A's token
// while B has data, a live QR, events and a connector: A never reads B's
// data and every command goes to wa.<A>.cmd.*.
func TestTenantIsolation(t *testing.T) {
	e := newWebhookEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	fc := e.fakeConnector(defaultAnswer)

	shared := "5511922220000" // a number both talk to
	onlyB := "5511933330000"
	e.insertMessage(a.ID, msgRow{WAID: "A-1", Phone: shared, Text: "from A's contact"})
	e.insertMessage(b.ID, msgRow{WAID: "B-1", Phone: shared, Text: "B secret 1"})
	e.insertMessage(b.ID, msgRow{WAID: "B-2", Phone: onlyB, Text: "B secret 2"})
	e.insertLead(b.ID, shared, "B's lead", "whatsapp")
	e.insertContact(b.ID, onlyB, "B's contact")
	if _, err := e.db.Pool.Exec(t.Context(),
		`UPDATE mentorados SET wa_status = 'connected', wa_phone = '5511944440000' WHERE id = $1`, b.ID); err != nil {
		t.Fatal(err)
	}
	e.publishQR(b.ID, "2@B-qr-secret", time.Now().Add(time.Minute))
	e.putMeta(b.ID, "5511944440000", "B-waba-secret", "5511944440000") // provider_test.go
	if err := e.db.Providers().MarkWebhook(t.Context(), b.ID, event.ProviderMeta, "B's secret webhook error"); err != nil {
		t.Fatal(err)
	}

	covered := map[string]bool{}
	call := func(method, path string, body any) response {
		t.Helper()
		res := e.do(method, path, a.Token, body)
		if strings.Contains(string(res.Body), "secret") || strings.Contains(string(res.Body), "B's") ||
			strings.Contains(string(res.Body), "5511944440000") || strings.Contains(string(res.Body), onlyB) {
			t.Fatalf("%s %s leaked B's data: %s", method, path, res.Body)
		}
		return res
	}
	mark := func(pattern string) { covered[pattern] = true }

	e.expect(call("POST", "/v1/whatsapp/connect", map[string]string{"method": "qr"}), 202)
	e.expect(call("POST", "/v1/whatsapp/connect", map[string]string{"method": "phone", "phone": "5511944440000"}), 202)
	mark("POST /v1/whatsapp/connect")
	e.expect(call("POST", "/v1/whatsapp/disconnect", nil), 200)
	mark("POST /v1/whatsapp/disconnect")
	e.expect(call("POST", "/v1/whatsapp/logout", nil), 200)
	mark("POST /v1/whatsapp/logout")
	var st statusResponse
	e.expect(call("GET", "/v1/whatsapp/status", nil), 200).json(t, &st)
	if st.Status != event.StatusDisconnected || st.Phone != "" {
		t.Fatalf("A's status shows %+v", st)
	}
	e.expect(call("GET", "/v1/whatsapp/status?live=true", nil), 200)
	mark("GET /v1/whatsapp/status")
	e.expect(call("GET", "/v1/whatsapp/qr.png", nil), 404) // B's QR is not A's
	mark("GET /v1/whatsapp/qr.png")
	// B runs on Meta; A still on WhatsApp Web, and sees nothing of B's.
	if pr := e.getProvider(t, a.Token); activeOf(pr) != event.ProviderWeb || strings.Join(providersOf(pr), ",") != "whatsapp_web*" {
		t.Fatalf("A's provider %v", providersOf(pr))
	}
	e.expect(call("GET", "/v1/whatsapp/provider", nil), 200)
	mark("GET /v1/whatsapp/provider")
	e.expect(call("POST", "/v1/messages", map[string]string{"phone": shared, "text": "hi"}), 201)
	mark("POST /v1/messages")

	var cr conversationsResponse
	e.expect(call("GET", "/v1/conversations", nil), 200).json(t, &cr)
	if len(cr.Conversations) != 1 || cr.Conversations[0].LastMessage.ID != "A-1" || cr.Conversations[0].Name != "" {
		t.Fatalf("A's conversations %+v", cr)
	}
	mark("GET /v1/conversations")
	var mr messagesResponse
	e.expect(call("GET", "/v1/conversations/"+shared+"/messages", nil), 200).json(t, &mr)
	if len(mr.Messages) != 1 || mr.Messages[0].ID != "A-1" {
		t.Fatalf("A's messages with the shared number %+v", mr)
	}
	e.expect(call("GET", "/v1/conversations/"+onlyB+"/messages", nil), 200).json(t, &mr)
	if len(mr.Messages) != 0 {
		t.Fatalf("A sees B's conversation %+v", mr)
	}
	mark("GET /v1/conversations/{phone}/messages")

	// Chats: B's group and LID chat are not A's; A's settings are A's.
	bGroup, bLID := "120363999999999999@g.us", "424242424242@lid"
	e.insertChatMessage(b.ID, chatMsg{WAID: "B-G1", ChatJID: bGroup, Sender: shared + "@s.whatsapp.net", Phone: shared, Text: "B secret group"})
	e.insertChatMessage(b.ID, chatMsg{WAID: "B-L1", ChatJID: bLID, Sender: bLID, LID: bLID, Text: "B secret lid"})
	e.insertGroup(b.ID, bGroup, "B's group", `[{"jid":"`+onlyB+`@s.whatsapp.net","phone":"`+onlyB+`"}]`)
	var chats chatsResponse
	e.expect(call("GET", "/v1/chats", nil), 200).json(t, &chats)
	if len(chats.Chats) != 1 || chats.Chats[0].LastMessage.ID != "A-1" {
		t.Fatalf("A's chats %+v", chats)
	}
	mark("GET /v1/chats")
	for _, c := range []string{bGroup, bLID, onlyB} {
		e.expect(call("GET", "/v1/chats/"+c, nil), 404)
		e.expect(call("GET", "/v1/chats/"+c+"/messages", nil), 200).json(t, &mr)
		if len(mr.Messages) != 0 {
			t.Fatalf("A sees B's chat %s: %+v", c, mr)
		}
		var rr readResponse
		e.expect(call("POST", "/v1/chats/"+c+"/read", nil), 200).json(t, &rr)
		if rr.Marked != 0 {
			t.Fatalf("A marked %d of B's chat %s read", rr.Marked, c)
		}
	}
	mark("GET /v1/chats/{chat}")
	mark("GET /v1/chats/{chat}/messages")
	mark("POST /v1/chats/{chat}/read")
	e.expect(call("PATCH", "/v1/settings", map[string]any{"group_leads": true, "history_leads": "none"}), 200)
	mark("PATCH /v1/settings")
	var set apiSettings
	e.expect(call("GET", "/v1/settings", nil), 200).json(t, &set)
	if set != (apiSettings{GroupLeads: true, HistoryLeads: "none", HistoryLeadDays: 30}) {
		t.Fatalf("A's settings %+v", set)
	}
	mark("GET /v1/settings")
	e.expect(e.do("GET", "/v1/settings", b.Token, nil), 200).json(t, &set)
	if set != (apiSettings{HistoryLeads: "recent", HistoryLeadDays: 30}) {
		t.Fatalf("A's patch changed B's settings: %+v", set)
	}

	// Media and actions: B's message ids are unknown to A; reading the
	// shared number marks only A's message.
	e.insertMedia(b.ID, mediaRow{WAID: "B-IMG", Phone: shared, Kind: "image", MIME: "image/jpeg", MediaID: sha([]byte("B secret file")),
		State: "stored", Thumb: []byte("B secret thumb")})
	if _, _, err := e.media.Put(t.Context(), b.ID, strings.NewReader("B secret file"), "image/jpeg", 1<<20); err != nil {
		t.Fatal(err)
	}
	var up uploadResponse
	e.expect(e.upload(a.Token, "a.jpg", "image/jpeg", jpegBytes), 201).json(t, &up)
	if !e.stored(a.ID, up.MediaID) || e.stored(b.ID, up.MediaID) {
		t.Fatal("A's upload is not A's alone")
	}
	mark("POST /v1/media")
	e.expect(call("GET", "/v1/messages/B-IMG/media", nil), 404)
	mark("GET /v1/messages/{id}/media")
	e.expect(call("GET", "/v1/messages/B-IMG/thumbnail", nil), 404)
	mark("GET /v1/messages/{id}/thumbnail")
	e.expect(call("POST", "/v1/messages/B-1/reactions", map[string]string{"emoji": "👍"}), 404)
	mark("POST /v1/messages/{id}/reactions")
	e.expect(call("PATCH", "/v1/messages/B-1", map[string]string{"text": "x"}), 404)
	mark("PATCH /v1/messages/{id}")
	e.expect(call("DELETE", "/v1/messages/B-1", nil), 404)
	mark("DELETE /v1/messages/{id}")
	e.expect(call("POST", "/v1/messages", map[string]string{"phone": shared, "kind": "image", "media_id": sha([]byte("B secret file"))}), 404)
	e.expect(call("POST", "/v1/messages", map[string]string{"phone": shared, "text": "x", "reply_to": "B-1"}), 404)
	var rr readResponse
	e.expect(call("POST", "/v1/conversations/"+shared+"/read", nil), 200).json(t, &rr)
	if rr.Marked != 1 {
		t.Fatalf("A marked %d messages read", rr.Marked)
	}
	mark("POST /v1/conversations/{phone}/read")

	var linked map[string]int64
	e.expect(call("POST", "/v1/messages/link-orphans", nil), 200).json(t, &linked)
	if linked["linked"] != 0 {
		t.Fatalf("A linked %d messages to B's lead", linked["linked"])
	}
	mark("POST /v1/messages/link-orphans")
	var cleared clearDataResponse
	e.expect(call("DELETE", "/v1/whatsapp/data", nil), 200).json(t, &cleared)
	if cleared != (clearDataResponse{Messages: 1}) {
		t.Fatalf("A's clear %+v", cleared)
	}
	mark("DELETE /v1/whatsapp/data")
	var bMsgs, bLinked, bContacts, bLeads int
	_ = e.db.Pool.QueryRow(t.Context(), `SELECT count(*), count(lead_id) FROM whatsapp_messages WHERE mentorado_id = $1`, b.ID).Scan(&bMsgs, &bLinked)
	_ = e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM whatsapp_contacts WHERE mentorado_id = $1`, b.ID).Scan(&bContacts)
	_ = e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM leads WHERE mentorado_id = $1`, b.ID).Scan(&bLeads)
	if bMsgs != 5 || bLinked != 0 || bContacts != 1 || bLeads != 1 { // B-1, B-2, B-IMG, B-G1, B-L1
		t.Fatalf("B's data changed: messages %d linked %d contacts %d leads %d", bMsgs, bLinked, bContacts, bLeads)
	}

	// Streams: A's SSE and websocket never carry B's QR or events.
	var tr ticketResponse
	e.expect(call("POST", "/v1/stream-tickets", nil), 201).json(t, &tr)
	if m, _, err := e.s.verifyTicket(t.Context(), tr.Ticket); err != nil || m != a.ID {
		t.Fatalf("A's ticket is for %d (%v)", m, err)
	}
	mark("POST /v1/stream-tickets")
	sse := e.openSSE(bearerAuth(a.Token), "1") // resume from the start too
	mark("GET /v1/events")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/v1/ws?last_event_id=1&ticket="+tr.Ticket, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	mark("GET /v1/ws")
	e.publishMessage(b.ID, "B-evt", "B secret event")
	e.publishQR(b.ID, "2@B-qr-secret-2", time.Now().Add(time.Minute))
	marker := e.publishMessage(a.ID, "A-evt", "A marker")
	testenv.Eventually(t, 5*time.Second, func() bool {
		evs := sse.Events()
		return len(evs) > 0 && evs[len(evs)-1].ID == fmt.Sprint(marker)
	}, "A's marker on SSE")
	for _, ev := range sse.Events() {
		if strings.Contains(ev.Data, "secret") {
			t.Fatalf("SSE leaked %s", ev.Data)
		}
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "secret") {
			t.Fatalf("websocket leaked %s", data)
		}
		var f wsFrame
		_ = json.Unmarshal(data, &f)
		if f.ID == marker {
			break
		}
	}

	// Webhook endpoints (webhooks_test.go).
	e.webhookTenantWalk(t, a, b, func(method, path string, body map[string]any) response {
		if body == nil {
			return e.do(method, path, a.Token, nil)
		}
		return e.do(method, path, a.Token, body)
	}, covered)

	// Every command went to A's subjects.
	subjects := fc.Subjects()
	if len(subjects) != 7 {
		t.Fatalf("commands %v", subjects)
	}
	for _, s := range subjects {
		if !strings.HasPrefix(s, fmt.Sprintf("wa.%d.cmd.", a.ID)) {
			t.Fatalf("A's request reached %s", s)
		}
	}
	// Leads (issue #13): B's lead is never A's.
	for _, pat := range walkLeadRoutes(t, e, b.ID, "5511977770000", 200, func(method, path string, body map[string]any, want int) response {
		if body == nil {
			return e.expect(call(method, path, nil), want)
		}
		return e.expect(call(method, path, body), want)
	}) {
		mark(pat)
	}
	// Campaigns, sending settings and opt-outs (issue #14).
	e.seedCampaignTenant(b)
	for _, pat := range walkCampaignRoutes(t, e, b.ID, false, func(method, path string, body map[string]any, want int) response {
		if body == nil {
			return e.expect(call(method, path, nil), want)
		}
		return e.expect(call(method, path, body), want)
	}) {
		mark(pat)
	}
	// Every mentorado-scoped route was walked.
	for _, rt := range e.s.routes {
		if strings.HasPrefix(rt.path, "/v1/") && !strings.HasPrefix(rt.path, "/v1/admin/") && !covered[rt.pattern()] {
			t.Errorf("route %s not covered by the isolation walk", rt.pattern())
		}
	}
	// And B's token cannot use A's ticket-less stream either way round.
	res := e.do("GET", "/v1/whatsapp/status", b.Token, nil)
	e.expect(res, http.StatusOK)
	_ = json.Unmarshal(res.Body, &st)
	if st.Phone != "5511944440000" {
		t.Fatalf("B's own status %+v", st)
	}
}
