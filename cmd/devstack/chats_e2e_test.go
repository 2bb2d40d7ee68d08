package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

type apiChat struct {
	Chat         string `json:"chat"`
	Kind         string `json:"kind"`
	Name         string `json:"name"`
	Phone        string `json:"phone"`
	LID          string `json:"lid"`
	LeadID       *int64 `json:"lead_id"`
	Unread       int64  `json:"unread"`
	Participants any    `json:"participants"`
	LastMessage  struct {
		ID         string `json:"id"`
		Text       string `json:"text"`
		SenderName string `json:"sender_name"`
	} `json:"last_message"`
}

type apiChatMessage struct {
	ID        string `json:"id"`
	Chat      string `json:"chat"`
	ChatKind  string `json:"chat_kind"`
	SenderJID string `json:"sender_jid"`
	Direction string `json:"direction"`
	Text      string `json:"text"`
	Status    string `json:"status"`
	History   bool   `json:"history"`
	LeadID    *int64 `json:"lead_id"`
}

// chats lists every chat of the mentorado (both kinds, one page).
func (s *stack) chats(t *testing.T, token string) []apiChat {
	t.Helper()
	var out struct {
		Chats []apiChat `json:"chats"`
	}
	if code := s.do("GET", "/v1/chats?limit=200", token, nil, &out); code != http.StatusOK {
		t.Fatalf("GET /v1/chats: %d", code)
	}
	return out.Chats
}

func findChat(chats []apiChat, chat string) *apiChat {
	for i := range chats {
		if chats[i].Chat == chat {
			return &chats[i]
		}
	}
	return nil
}

// thread is a chat's messages (one page, newest first).
func (s *stack) thread(t *testing.T, token, chat string) []apiChatMessage {
	t.Helper()
	var out struct {
		Messages []apiChatMessage `json:"messages"`
	}
	if code := s.do("GET", "/v1/chats/"+url.PathEscape(chat)+"/messages?limit=200", token, nil, &out); code != http.StatusOK {
		t.Fatalf("GET thread of %s: %d", chat, code)
	}
	return out.Messages
}

// TestChatsEndToEnd is issue #12's "done when", through the dev binary:
// the real whatsmeow client against the fake WhatsApp server (groups with
// sender keys, a LID-only contact, a history sync blob, app-state address
// book), JetStream, the persister, Postgres and the notifier's API and SSE.
func TestChatsEndToEnd(t *testing.T) {
	s := startStack(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const number = "5511966660001"
	m, token := s.pairedMentorado(t, "Chats", number)
	events := s.sse(ctx, token, "")
	sim := func(name string, body any, out any) {
		t.Helper()
		if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/%s", m, name), s.admin, body, out); code >= 300 {
			t.Fatalf("sim %s: %d", name, code)
		}
	}
	var leadEvents []map[string]any
	var messageFrames []string
	// drain records lead events and message frames until match or timeout.
	drain := func(what string, timeout time.Duration, match func(sseEvent) bool) sseEvent {
		t.Helper()
		return next(t, events, timeout, what, func(ev sseEvent) bool {
			var env struct {
				Type string         `json:"type"`
				Data map[string]any `json:"data"`
			}
			_ = json.Unmarshal([]byte(ev.Data), &env)
			switch env.Type {
			case "lead":
				leadEvents = append(leadEvents, env.Data)
			case "message":
				id, _ := env.Data["wa_id"].(string)
				messageFrames = append(messageFrames, id)
			}
			return match(ev)
		})
	}

	// A group: one chat with its subject, its messages never create leads
	// and never appear in the sender's direct thread.
	const ana, bia = "5521977770001", "5521977770002"
	var group struct {
		JID string `json:"jid"`
	}
	sim("groups", map[string]any{"subject": "Turma 7", "members": []string{ana, bia}}, &group)
	var inGroup struct {
		ID string `json:"id"`
	}
	sim("inbound", map[string]any{"phone": ana, "push_name": "Zed no grupo", "group": group.JID, "text": "Bom dia, turma!"}, &inGroup)
	var gc *apiChat
	testenv.Eventually(t, 30*time.Second, func() bool {
		gc = findChat(s.chats(t, token), group.JID)
		return gc != nil && gc.Name == "Turma 7" && gc.LastMessage.ID == inGroup.ID
	}, "the group never listed with its subject: %+v", gc)
	if gc.Kind != "group" || gc.LeadID != nil || gc.LastMessage.SenderName != "Zed no grupo" {
		t.Fatalf("group chat: %+v", gc)
	}
	msgs := s.thread(t, token, group.JID)
	if len(msgs) != 1 || msgs[0].ChatKind != "group" || msgs[0].LeadID != nil || !strings.Contains(msgs[0].SenderJID, "@") {
		t.Fatalf("group thread: %+v", msgs)
	}
	if c := findChat(s.chats(t, token), ana+"@s.whatsapp.net"); c != nil {
		t.Fatalf("the group message made a direct chat for its sender: %+v", c)
	}
	if n := len(s.thread(t, token, ana)); n != 0 {
		t.Fatalf("the sender's direct thread has %d messages from the group", n)
	}
	// Sending to the group reaches its members.
	var sent struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", "/v1/messages", token, map[string]string{"chat": group.JID, "text": "Bem-vindos!"}, &sent); code != http.StatusCreated {
		t.Fatalf("send to group: %d", code)
	}
	s.receivedBy(t, m, bia, "the group message", func(r simReceivedMsg) bool { return r.Text == "Bem-vindos!" })
	// A member's read receipt moves it to read, as in a direct chat.
	sim("receipt", map[string]any{"phone": bia, "group": group.JID, "message_id": sent.ID, "kind": "read"}, nil)
	testenv.Eventually(t, 30*time.Second, func() bool {
		for _, x := range s.thread(t, token, group.JID) {
			if x.ID == sent.ID {
				return x.Status == "read"
			}
		}
		return false
	}, "the group read receipt never applied")

	// A LID-only contact: listed, answered, then merged with its phone chat.
	const cida = "5521977770003"
	var lidMsg struct {
		ID  string `json:"id"`
		LID string `json:"lid"`
	}
	sim("inbound", map[string]any{"phone": cida, "push_name": "Cida", "lid_only": true, "text": "Oi, vi seu anúncio"}, &lidMsg)
	var lc *apiChat
	testenv.Eventually(t, 30*time.Second, func() bool {
		lc = findChat(s.chats(t, token), lidMsg.LID)
		return lc != nil
	}, "the LID-only chat %s never listed", lidMsg.LID)
	if lc.Kind != "direct" || lc.Phone != "" || lc.Name != "Cida" || lc.Unread != 1 {
		t.Fatalf("LID chat: %+v", lc)
	}
	if code := s.do("POST", "/v1/messages", token, map[string]string{"chat": lidMsg.LID, "text": "Olá Cida!"}, &sent); code != http.StatusCreated {
		t.Fatalf("answer the LID chat: %d", code)
	}
	s.receivedBy(t, m, cida, "the answer to the LID chat", func(r simReceivedMsg) bool { return r.Text == "Olá Cida!" })
	sim("inbound", map[string]any{"phone": cida, "lid_only": false, "text": "Meu número agora aparece"}, nil)
	var pc *apiChat
	testenv.Eventually(t, 30*time.Second, func() bool {
		all := s.chats(t, token)
		pc = findChat(all, cida+"@s.whatsapp.net")
		return pc != nil && findChat(all, lidMsg.LID) == nil && len(s.thread(t, token, cida)) == 3
	}, "the LID chat never merged into the phone chat: %+v", pc)
	if pc.Unread != 2 || pc.LeadID == nil {
		t.Fatalf("merged chat: %+v (want unread 2 and a lead)", pc)
	}
	lead := *pc.LeadID

	// The phone's address book names the lead.
	sim("contacts", map[string]any{"entries": []map[string]string{{"phone": cida, "name": "Cida Souza"}}}, nil)
	testenv.Eventually(t, 30*time.Second, func() bool {
		pc = findChat(s.chats(t, token), cida+"@s.whatsapp.net")
		return pc != nil && pc.Name == "Cida Souza"
	}, "the address-book name never named the chat: %+v", pc)
	drain("lead renamed from the address book", 30*time.Second, func(ev sseEvent) bool {
		return dataField(ev, "type") == "lead" && dataField(ev, "change") == "renamed" && dataField(ev, "name_source") == "address_book"
	})

	// History after pairing: the chats and their last messages are there,
	// no SSE frame per historic message, and a message seen live too is
	// stored once.
	const dora, edu = "5521977770004", "5521977770005"
	now := time.Now().UTC().Truncate(time.Second)
	conv := func(chat string, msgs ...map[string]any) map[string]any {
		return map[string]any{"chat": chat, "messages": msgs}
	}
	msg := func(id, text string, fromMe bool, at time.Time) map[string]any {
		return map[string]any{"id": id, "text": text, "from_me": fromMe, "timestamp": at}
	}
	live := msg(inGroup.ID, "Bom dia, turma!", false, now.Add(-time.Minute))
	live["from"] = ana
	var hist struct {
		NotificationID string `json:"notification_id"`
	}
	sim("history", map[string]any{"sync": "initial_bootstrap", "progress": 100, "conversations": []any{
		conv(dora, msg("3EB0HD01", "Oi, quero a mentoria", false, now.Add(-72*time.Hour)),
			msg("3EB0HD02", "Claro! Te mando detalhes", true, now.Add(-71*time.Hour)),
			msg("3EB0HD03", "Obrigada", false, now.Add(-70*time.Hour))),
		conv(edu, msg("3EB0HE01", "Mensagem antiga", false, now.Add(-90*24*time.Hour))),
		conv(group.JID, live),
	}}, &hist)
	drain("the history progress event", 60*time.Second, func(ev sseEvent) bool {
		return dataField(ev, "type") == "history"
	})
	var dc *apiChat
	testenv.Eventually(t, 30*time.Second, func() bool {
		all := s.chats(t, token)
		dc = findChat(all, dora+"@s.whatsapp.net")
		return dc != nil && dc.LastMessage.ID == "3EB0HD03" && findChat(all, edu+"@s.whatsapp.net") != nil
	}, "the history chats never listed: %+v", dc)
	for _, x := range s.thread(t, token, dora) {
		if !x.History {
			t.Fatalf("history message without the marker: %+v", x)
		}
	}
	if got := s.thread(t, token, group.JID); len(got) != 2 || got[1].ID != inGroup.ID || got[1].History {
		t.Fatalf("a message seen live and in history must be stored once: %+v", got)
	}
	// Dora wrote within 30 days: a lead (history_leads "recent"); Edu 90
	// days ago: none.
	if dc.LeadID == nil {
		t.Fatalf("recent history chat without a lead: %+v", dc)
	}
	if ec := findChat(s.chats(t, token), edu+"@s.whatsapp.net"); ec.LeadID != nil {
		t.Fatalf("a 90-day-old history chat created a lead: %+v", ec)
	}
	// A live message after the history, to know the stream has caught up.
	var after struct {
		ID string `json:"id"`
	}
	sim("inbound", map[string]any{"phone": dora, "text": "Voltei!"}, &after)
	drain("the live message after the history", 30*time.Second, func(ev sseEvent) bool {
		return dataField(ev, "type") == "message" && dataField(ev, "wa_id") == after.ID
	})
	for _, id := range messageFrames {
		if strings.HasPrefix(id, "3EB0H") {
			t.Fatalf("SSE sent a frame for historic message %s", id)
		}
	}
	// Lead events with the lead id arrived: Cida's (created or phone or
	// merged, then renamed) and Dora's created; none for Ana or Bia.
	var sawCida, sawDora bool
	for _, l := range leadEvents {
		id, _ := l["lead_id"].(float64)
		ph, _ := l["phone"].(string)
		switch {
		case int64(id) == lead:
			sawCida = true
		case ph == dora && l["change"] == "created":
			sawDora = true
		case ph == ana || ph == bia:
			t.Fatalf("a group member got a lead: %+v", l)
		}
	}
	if !sawCida || !sawDora {
		t.Fatalf("lead events missing (cida %v, dora %v): %+v", sawCida, sawDora, leadEvents)
	}
}
