package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// chatMsg is a message row of any chat, as the persister writes it.
type chatMsg struct {
	WAID, ChatJID, Sender, Phone, LID, PushName string
	Direction, Status, Text, Kind               string
	At                                          time.Time
	History                                     bool
	LeadID                                      *int64
}

func (e *testEnv) insertChatMessage(m int64, r chatMsg) {
	e.t.Helper()
	if r.Direction == "" {
		r.Direction = "in"
	}
	if r.Status == "" {
		r.Status = "received"
	}
	if r.Kind == "" {
		r.Kind = "text"
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	_, err := e.db.Pool.Exec(context.Background(), `
INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, phone, lid, push_name, direction, kind,
	body, status, status_rank, lead_id, sent_at, history)
VALUES ($1, $2, $3, $4, nullif($5, ''), nullif($6, ''), $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		m, r.WAID, r.ChatJID, r.Sender, r.Phone, r.LID, r.PushName, r.Direction, r.Kind, r.Text, r.Status,
		event.MessageStatus(r.Status).Rank(), r.LeadID, r.At, r.History)
	if err != nil {
		e.t.Fatalf("insert message: %v", err)
	}
}

func (e *testEnv) insertGroup(m int64, jid, subject, participants string) {
	e.t.Helper()
	_, err := e.db.Pool.Exec(context.Background(),
		`INSERT INTO whatsapp_groups (mentorado_id, jid, subject, participants) VALUES ($1, $2, $3, $4)`, m, jid, subject, participants)
	if err != nil {
		e.t.Fatalf("insert group: %v", err)
	}
}

const (
	tGroup = "120363000000000042@g.us"
	tLID   = "210987654321@lid"
	tZed   = "5511988887777" // writes directly and in the group
	tAna   = "5521977776666" // writes in the group only
)

// seedChatsAPI: Zed's phone chat (one message came in on his LID, one is
// read), a LID-only chat with a lead, and a group where Zed and Ana write.
func (e *testEnv) seedChatsAPI(m int64) (zedLead, lidLead int64) {
	e.t.Helper()
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	zj, aj := tZed+"@s.whatsapp.net", tAna+"@s.whatsapp.net"
	zedLead = e.insertLead(m, tZed, "", "whatsapp")
	var err error
	err = e.db.Pool.QueryRow(context.Background(), `INSERT INTO leads (mentorado_id, lid, name) VALUES ($1, $2, 'Lia') RETURNING id`, m, tLID).Scan(&lidLead)
	if err != nil {
		e.t.Fatal(err)
	}
	for i, r := range []chatMsg{
		{WAID: "Z1", ChatJID: zj, Sender: zj, Phone: tZed, PushName: "Zed", Text: "oi", LeadID: &zedLead},
		{WAID: "Z2", ChatJID: "111000111@lid", Sender: "111000111@lid", Phone: tZed, LID: "111000111@lid", PushName: "Zed", Text: "pelo lid", History: true, LeadID: &zedLead},
		{WAID: "Z3", ChatJID: zj, Sender: zj, Phone: tZed, PushName: "Zed", Text: "lida", Status: "read", LeadID: &zedLead},
		{WAID: "L1", ChatJID: tLID, Sender: tLID, LID: tLID, PushName: "Lia", Text: "só lid", LeadID: &lidLead},
		{WAID: "G1", ChatJID: tGroup, Sender: zj, Phone: tZed, PushName: "Zed no grupo", Text: "no grupo"},
		{WAID: "G2", ChatJID: tGroup, Sender: aj, Phone: tAna, PushName: "Ana", Text: "olá grupo"},
	} {
		r.At = base.Add(time.Duration(i) * time.Minute)
		e.insertChatMessage(m, r)
	}
	e.insertGroup(m, tGroup, "Turma 7", `[{"jid":"`+zj+`","phone":"`+tZed+`","admin":true},{"jid":"`+aj+`","phone":"`+tAna+`"},{"jid":"333@lid","lid":"333@lid"}]`)
	e.insertContact(m, tAna, "Ana da agenda")
	return zedLead, lidLead
}

func TestChatsList(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	zedLead, lidLead := e.seedChatsAPI(a.ID)

	var cr chatsResponse
	e.expect(e.do("GET", "/v1/chats", a.Token, nil), 200).json(t, &cr)
	if len(cr.Chats) != 3 || cr.NextCursor != "" {
		t.Fatalf("chats %+v", cr)
	}
	g, l, d := cr.Chats[0], cr.Chats[1], cr.Chats[2]
	if g.Chat != tGroup || g.Kind != "group" || g.Name != "Turma 7" || g.Participants == nil || *g.Participants != 3 ||
		g.Unread != 2 || g.LeadID != nil || g.Phone != "" || g.LastMessage.ID != "G2" || g.LastMessage.SenderJID != tAna+"@s.whatsapp.net" {
		t.Fatalf("group %+v", g)
	}
	if l.Chat != tLID || l.Kind != "direct" || l.Name != "Lia" || l.LID != tLID || l.LeadID == nil || *l.LeadID != lidLead || l.Unread != 1 || l.Participants != nil {
		t.Fatalf("lid chat %+v", l)
	}
	// Zed's lead has no name: his push name; the LID message is his chat's.
	if d.Chat != tZed+"@s.whatsapp.net" || d.Name != "Zed" || d.Phone != tZed || d.LeadID == nil || *d.LeadID != zedLead ||
		d.Unread != 2 || d.LastMessage.ID != "Z3" || d.LastAt == nil || !d.LastAt.Equal(d.LastMessage.SentAt) {
		t.Fatalf("phone chat %+v", d)
	}

	// Kinds and pages.
	for kind, want := range map[string][]string{"direct": {tLID, d.Chat}, "group": {tGroup}} {
		var kr chatsResponse
		e.expect(e.do("GET", "/v1/chats?kind="+kind, a.Token, nil), 200).json(t, &kr)
		var got []string
		for _, c := range kr.Chats {
			got = append(got, c.Chat)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("kind=%s: %v want %v", kind, got, want)
		}
	}
	var seen []string
	next := ""
	for range 4 {
		var pr chatsResponse
		e.expect(e.do("GET", "/v1/chats?limit=1&cursor="+next, a.Token, nil), 200).json(t, &pr)
		for _, c := range pr.Chats {
			seen = append(seen, c.Chat)
		}
		if next = pr.NextCursor; next == "" {
			break
		}
	}
	if strings.Join(seen, ",") != strings.Join([]string{tGroup, tLID, d.Chat}, ",") {
		t.Fatalf("paged chats %v", seen)
	}

	// A chat named by nothing shows its number.
	e.insertChatMessage(a.ID, chatMsg{WAID: "N1", ChatJID: "5531966665555@s.whatsapp.net", Sender: "5531966665555@s.whatsapp.net", Phone: "5531966665555", Direction: "out"})
	e.expect(e.do("GET", "/v1/chats?limit=1", a.Token, nil), 200).json(t, &cr)
	if c := cr.Chats[0]; c.Name != "+5531966665555" || c.Unread != 0 {
		t.Fatalf("unnamed chat %+v", c)
	}

	// Bad input.
	for _, q := range []string{"kind=broadcast", "kind=DIRECT", "limit=0", "limit=201", "limit=x", "cursor=nope", "cursor=" + url.QueryEscape("eyJ0IjoiMjAyNi0wMS0wMVQwMDowMDowMFoiLCJpIjowfQ")} {
		if code := e.expect(e.do("GET", "/v1/chats?"+q, a.Token, nil), 400).errorCode(t); code != codeBadRequest {
			t.Fatalf("%s: %s", q, code)
		}
	}
}

func TestChatDetailAndThread(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	zedLead, _ := e.seedChatsAPI(a.ID)

	var g apiChatDetail
	e.expect(e.do("GET", "/v1/chats/"+tGroup, a.Token, nil), 200).json(t, &g)
	if g.Name != "Turma 7" || g.Kind != "group" || len(g.Participants) != 3 || g.Unread != 2 {
		t.Fatalf("group %+v", g)
	}
	if p := g.Participants[0]; p.JID != tZed+"@s.whatsapp.net" || p.Phone != tZed || !p.Admin {
		t.Fatalf("participant 0 %+v", p)
	}
	if p := g.Participants[1]; p.Name != "Ana da agenda" || p.Admin {
		t.Fatalf("participant 1 %+v", p)
	}
	if p := g.Participants[2]; p.LID != "333@lid" || p.Phone != "" {
		t.Fatalf("participant 2 %+v", p)
	}
	// The phone chat by every form of its name.
	for _, form := range []string{tZed, "+55 11 98888-7777", tZed + "@s.whatsapp.net"} {
		var d apiChatDetail
		e.expect(e.do("GET", "/v1/chats/"+url.PathEscape(form), a.Token, nil), 200).json(t, &d)
		if d.Chat != tZed+"@s.whatsapp.net" || d.Kind != "direct" || d.Participants != nil || d.LeadID == nil || *d.LeadID != zedLead {
			t.Fatalf("%s: %+v", form, d)
		}
	}
	var l apiChatDetail
	e.expect(e.do("GET", "/v1/chats/"+tLID, a.Token, nil), 200).json(t, &l)
	if l.Name != "Lia" || l.LastMessage == nil || l.LastMessage.ID != "L1" {
		t.Fatalf("lid chat %+v", l)
	}
	// A group known only from its group event; unknown chats.
	e.insertGroup(a.ID, "5511900000000-1700000000@g.us", "Antigo", `[]`)
	var q apiChatDetail
	e.expect(e.do("GET", "/v1/chats/5511900000000-1700000000@g.us", a.Token, nil), 200).json(t, &q)
	if q.Name != "Antigo" || q.LastMessage != nil || q.LastAt != nil || q.Participants != nil {
		t.Fatalf("quiet group %+v", q)
	}
	for _, c := range []string{"5531966665555", "999@lid", "1234@g.us"} {
		if code := e.expect(e.do("GET", "/v1/chats/"+c, a.Token, nil), 404).errorCode(t); code != codeNotFound {
			t.Fatal(code)
		}
	}

	// The group's thread: who wrote, their names, the chat.
	var mr messagesResponse
	e.expect(e.do("GET", "/v1/chats/"+tGroup+"/messages", a.Token, nil), 200).json(t, &mr)
	if len(mr.Messages) != 2 {
		t.Fatalf("group thread %+v", mr)
	}
	if m := mr.Messages[0]; m.ID != "G2" || m.Chat != tGroup || m.ChatKind != "group" || m.SenderJID != tAna+"@s.whatsapp.net" ||
		m.SenderName != "Ana da agenda" || m.History || m.LeadID != nil {
		t.Fatalf("group message %+v", m)
	}
	if m := mr.Messages[1]; m.ID != "G1" || m.SenderName != "Zed no grupo" || m.Phone != tZed {
		t.Fatalf("group message %+v", m)
	}
	// Zed's direct thread (new and old route): no group message; the
	// history one is marked.
	for _, path := range []string{"/v1/chats/" + tZed + "/messages", "/v1/conversations/" + tZed + "/messages"} {
		e.expect(e.do("GET", path, a.Token, nil), 200).json(t, &mr)
		var ids []string
		for _, m := range mr.Messages {
			ids = append(ids, m.ID)
			if m.Chat != tZed+"@s.whatsapp.net" || m.ChatKind != "direct" || m.LeadID == nil || *m.LeadID != zedLead {
				t.Fatalf("%s: %+v", path, m)
			}
		}
		if strings.Join(ids, ",") != "Z3,Z2,Z1" || !mr.Messages[1].History || mr.Messages[0].History {
			t.Fatalf("%s: %v %+v", path, ids, mr.Messages)
		}
	}
	// Pages of a thread.
	e.expect(e.do("GET", "/v1/chats/"+tZed+"/messages?limit=2", a.Token, nil), 200).json(t, &mr)
	if len(mr.Messages) != 2 || mr.NextCursor == "" {
		t.Fatalf("page 1 %+v", mr)
	}
	before := mr.NextCursor
	mr = messagesResponse{}
	e.expect(e.do("GET", "/v1/chats/"+tZed+"/messages?limit=2&before="+before, a.Token, nil), 200).json(t, &mr)
	if len(mr.Messages) != 1 || mr.Messages[0].ID != "Z1" || mr.NextCursor != "" {
		t.Fatalf("page 2 %+v", mr)
	}
	// An unknown chat's thread is empty.
	mr = messagesResponse{}
	e.expect(e.do("GET", "/v1/chats/999@lid/messages", a.Token, nil), 200).json(t, &mr)
	if len(mr.Messages) != 0 {
		t.Fatalf("unknown thread %+v", mr)
	}
	if code := e.expect(e.do("GET", "/v1/chats/"+tZed+"/messages?before=xyz", a.Token, nil), 400).errorCode(t); code != codeBadRequest {
		t.Fatal(code)
	}
}

// badChats are chat names no route accepts.
var badChats = []string{
	"abc", "123", "55119@s.whatsapp.net", "abc@s.whatsapp.net", "5511988887777:3@s.whatsapp.net", "5511988887777.0:1@s.whatsapp.net",
	"12@lid@lid", "x@lid", "@lid", "@g.us", "12-ab@g.us", "1.2@g.us", "status@broadcast", "123@broadcast", "123@newsletter",
	"5511988887777@c.us", "%00", strings.Repeat("9", 40) + "@lid", "+55 11 98888-7777@s.whatsapp.net",
}

func TestChatRoutesRejectBadChats(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendBurst = 1000 })
	a := e.createMentorado("Ana")
	fc := e.fakeConnector(defaultAnswer)
	for _, c := range badChats {
		p := url.PathEscape(c)
		for _, rq := range []struct{ method, path string }{
			{"GET", "/v1/chats/" + p}, {"GET", "/v1/chats/" + p + "/messages"}, {"POST", "/v1/chats/" + p + "/read"},
		} {
			res := e.do(rq.method, rq.path, a.Token, nil)
			if res.Status != 400 || res.errorCode(t) != event.CodeInvalidChat {
				t.Fatalf("%s %s: %d %s", rq.method, rq.path, res.Status, res.Body)
			}
		}
		res := e.do("POST", "/v1/messages", a.Token, map[string]string{"chat": c, "text": "x"})
		if res.Status != 400 || res.errorCode(t) != event.CodeInvalidChat {
			t.Fatalf("send to %q: %d %s", c, res.Status, res.Body)
		}
	}
	if s := fc.Subjects(); len(s) != 0 {
		t.Fatalf("bad chats reached the connector: %v", s)
	}
}

func TestChatRead(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	e.seedChatsAPI(a.ID)
	var (
		mu     sync.Mutex
		logged []event.ReadRequest
	)
	fc := e.fakeConnector(func(m int64, verb event.Verb, body []byte) event.Reply {
		if verb == event.VerbRead {
			var r event.ReadRequest
			_ = json.Unmarshal(body, &r)
			mu.Lock()
			logged = append(logged, r)
			mu.Unlock()
		}
		return defaultAnswer(m, verb, body)
	})
	// taken returns the read commands since the last call.
	taken := func() []event.ReadRequest {
		mu.Lock()
		defer mu.Unlock()
		out := logged
		logged = nil
		return out
	}

	// Zed's chat: one command for his phone JID, one for the LID the older
	// message came in on; the read one is not named.
	var rr readResponse
	e.expect(e.do("POST", "/v1/chats/"+tZed+"/read", a.Token, nil), 200).json(t, &rr)
	reads := taken()
	if rr.Marked != 2 || len(reads) != 2 {
		t.Fatalf("marked %d, reads %+v", rr.Marked, reads)
	}
	if r := reads[0]; r.ChatJID != tZed+"@s.whatsapp.net" || len(r.Messages) != 1 || r.Messages[0].ID != "Z1" {
		t.Fatalf("read 0 %+v", r)
	}
	if r := reads[1]; r.ChatJID != "111000111@lid" || len(r.Messages) != 1 || r.Messages[0].ID != "Z2" || r.Messages[0].SenderJID != "111000111@lid" {
		t.Fatalf("read 1 %+v", r)
	}
	// The group: one command, each message with its participant.
	e.expect(e.do("POST", "/v1/chats/"+tGroup+"/read", a.Token, nil), 200).json(t, &rr)
	reads = taken()
	if rr.Marked != 2 || len(reads) != 1 || reads[0].ChatJID != tGroup || reads[0].Messages[0].SenderJID != tZed+"@s.whatsapp.net" ||
		reads[0].Messages[1].SenderJID != tAna+"@s.whatsapp.net" {
		t.Fatalf("group read %d %+v", rr.Marked, reads)
	}
	// The old route reads Zed's direct chat, never the group.
	e.expect(e.do("POST", "/v1/conversations/"+tZed+"/read", a.Token, nil), 200).json(t, &rr)
	reads = taken()
	for _, r := range reads {
		if r.ChatJID == tGroup {
			t.Fatalf("phone read named the group: %+v", reads)
		}
	}
	if rr.Marked != 2 {
		t.Fatalf("old route marked %d", rr.Marked)
	}
	e.expect(e.do("POST", "/v1/chats/"+tLID+"/read", a.Token, nil), 200).json(t, &rr)
	if rr.Marked != 1 || len(fc.Subjects()) != 6 {
		t.Fatalf("lid read %d, %d commands", rr.Marked, len(fc.Subjects()))
	}
}

func TestSendToChat(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	e.seedChatsAPI(a.ID)
	fc := e.fakeConnector(func(m int64, verb event.Verb, body []byte) event.Reply {
		var req event.SendRequest
		_ = json.Unmarshal(body, &req)
		if verb != event.VerbSend || req.Phone != "" {
			return defaultAnswer(m, verb, body)
		}
		if req.Chat == "120363000000000099@g.us" {
			return event.Reply{Error: event.NewCommandError(event.CodeNotInGroup, "left the group")}
		}
		msg := &event.Message{WAID: fmt.Sprintf("OUT%d", time.Now().UnixNano()), ChatJID: req.Chat, SenderJID: "me@s.whatsapp.net",
			Direction: event.DirectionOut, Kind: event.KindText, Text: req.Text, Timestamp: time.Now(), Status: event.MessageSent}
		if strings.HasSuffix(req.Chat, "@lid") {
			msg.LID = req.Chat
		}
		return event.Reply{Message: msg}
	})
	last := func() event.SendRequest {
		var r event.SendRequest
		if err := json.Unmarshal(fc.LastBody(), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}

	var msg apiMessage
	e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"chat": tGroup, "text": "oi grupo"}), 201).json(t, &msg)
	if r := last(); r.Chat != tGroup || r.Phone != "" || msg.Chat != tGroup || msg.ChatKind != "group" {
		t.Fatalf("group send %+v → %+v", r, msg)
	}
	e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"chat": tLID, "text": "oi lia"}), 201).json(t, &msg)
	if r := last(); r.Chat != tLID || r.Phone != "" || msg.Chat != tLID || msg.ChatKind != "direct" || msg.LID != tLID {
		t.Fatalf("lid send %+v → %+v", r, msg)
	}
	// A phone JID (or a number) as chat goes as the phone.
	for _, c := range []string{tZed + "@s.whatsapp.net", "+55 11 98888-7777"} {
		e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"chat": c, "text": "oi zed"}), 201).json(t, &msg)
		if r := last(); r.Phone != tZed || r.Chat != "" || msg.Chat != tZed+"@s.whatsapp.net" {
			t.Fatalf("phone chat send %+v → %+v", r, msg)
		}
	}
	// A reply in the group quotes the participant who wrote.
	e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"chat": tGroup, "text": "respondendo", "reply_to": "G2"}), 201)
	if r := last(); r.ReplyTo != "G2" || r.ReplyToSender != tAna+"@s.whatsapp.net" || r.ReplyToText != "olá grupo" {
		t.Fatalf("group reply %+v", r)
	}
	n := len(fc.Subjects())
	// A group message is not Zed's: replying to it in his direct chat (or
	// to his direct message in the group) names no message of the chat.
	for _, body := range []map[string]string{
		{"phone": tZed, "text": "x", "reply_to": "G1"},
		{"chat": tGroup, "text": "x", "reply_to": "Z1"},
		{"chat": tLID, "text": "x", "reply_to": "Z1"},
	} {
		if code := e.expect(e.do("POST", "/v1/messages", a.Token, body), 404).errorCode(t); code != event.CodeMessageUnknown {
			t.Fatalf("%v: %s", body, code)
		}
	}
	// Both, neither (invalid_phone, as a missing phone always was), a bad phone.
	for body, want := range map[string]string{
		`{"phone":"` + tZed + `","chat":"` + tGroup + `","text":"x"}`: codeBadRequest,
		`{"text":"x"}`:                      event.CodeInvalidPhone,
		`{"phone":"","chat":"","text":"x"}`: event.CodeInvalidPhone,
		`{"chat":null,"text":"x"}`:          event.CodeInvalidPhone,
		`{"chat":5511988887777,"text":"x"}`: codeBadJSON,
	} {
		if code := e.expect(e.do("POST", "/v1/messages", a.Token, body), 400).errorCode(t); code != want {
			t.Fatalf("%s: %s, want %s", body, code, want)
		}
	}
	if code := e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"phone": "abc", "text": "x"}), 400).errorCode(t); code != event.CodeInvalidPhone {
		t.Fatal(code)
	}
	if got := len(fc.Subjects()); got != n {
		t.Fatalf("refused sends reached the connector: %d commands, want %d", got, n)
	}
	// The connector's not_in_group is a conflict.
	if code := e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"chat": "120363000000000099@g.us", "text": "x"}), 409).errorCode(t); code != event.CodeNotInGroup {
		t.Fatal(code)
	}
}

func TestOldRoutesExcludeGroupsAndLIDs(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	e.seedChatsAPI(a.ID)
	var cr conversationsResponse
	e.expect(e.do("GET", "/v1/conversations", a.Token, nil), 200).json(t, &cr)
	if len(cr.Conversations) != 1 {
		t.Fatalf("conversations %+v", cr)
	}
	// Zed's conversation: his direct messages only (the group's newer
	// ones neither are its last message nor count as unread).
	if c := cr.Conversations[0]; c.Phone != tZed || c.LastMessage.ID != "Z3" || c.Unread != 2 || c.Name != "Zed" {
		t.Fatalf("zed %+v", c)
	}
	// Ana wrote only in the group: she has no conversation.
	var mr messagesResponse
	e.expect(e.do("GET", "/v1/conversations/"+tAna+"/messages", a.Token, nil), 200).json(t, &mr)
	if len(mr.Messages) != 0 {
		t.Fatalf("ana's group message in her thread: %+v", mr)
	}
}

func TestSettings(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	var s apiSettings
	e.expect(e.do("GET", "/v1/settings", a.Token, nil), 200).json(t, &s)
	if s != (apiSettings{GroupLeads: false, HistoryLeads: "recent", HistoryLeadDays: 30}) {
		t.Fatalf("defaults %+v", s)
	}
	e.expect(e.do("PATCH", "/v1/settings", a.Token, map[string]any{"history_lead_days": 7}), 200).json(t, &s)
	if s != (apiSettings{HistoryLeads: "recent", HistoryLeadDays: 7}) {
		t.Fatalf("patched %+v", s)
	}
	e.expect(e.do("PATCH", "/v1/settings", a.Token, map[string]any{"group_leads": true, "history_leads": "all"}), 200).json(t, &s)
	if s != (apiSettings{GroupLeads: true, HistoryLeads: "all", HistoryLeadDays: 7}) {
		t.Fatalf("patched %+v", s)
	}
	e.expect(e.do("PATCH", "/v1/settings", a.Token, map[string]any{}), 200).json(t, &s)
	if s.HistoryLeadDays != 7 || !s.GroupLeads {
		t.Fatalf("empty patch %+v", s)
	}
	for body, code := range map[string]string{
		`{"history_leads":"some"}`:          codeBadRequest,
		`{"history_leads":""}`:              codeBadRequest,
		`{"history_leads":"ALL"}`:           codeBadRequest,
		`{"history_lead_days":0}`:           codeBadRequest,
		`{"history_lead_days":3651}`:        codeBadRequest,
		`{"history_lead_days":-1}`:          codeBadRequest,
		`{"history_lead_days":1.5}`:         codeBadJSON,
		`{"history_lead_days":"30"}`:        codeBadJSON,
		`{"history_lead_days":99999999999}`: codeBadJSON,
		`{"group_leads":"yes"}`:             codeBadJSON,
		`{"group_leads":true,"x":1}`:        codeBadJSON,
		`{"groupLeads":true}`:               codeBadJSON,
		`[]`:                                codeBadJSON,
		``:                                  codeBadJSON,
		`{"group_leads":false} {}`:          codeBadJSON,
	} {
		if got := e.expect(e.do("PATCH", "/v1/settings", a.Token, body), 400).errorCode(t); got != code {
			t.Fatalf("%s: %s, want %s", body, got, code)
		}
	}
	// Nothing of a refused patch was stored.
	e.expect(e.do("GET", "/v1/settings", a.Token, nil), 200).json(t, &s)
	if s != (apiSettings{GroupLeads: true, HistoryLeads: "all", HistoryLeadDays: 7}) {
		t.Fatalf("after refused patches %+v", s)
	}
	e.expect(e.do("PATCH", "/v1/settings", a.Token, map[string]any{"history_lead_days": 3650, "history_leads": "none"}), 200).json(t, &s)
	if s.HistoryLeadDays != 3650 || s.HistoryLeads != "none" {
		t.Fatalf("bounds %+v", s)
	}
	e.expect(e.do("GET", "/v1/settings", "", nil), 401)
}

// publishEvent stores payload p of mentorado m in WA_EVENTS under id and
// returns its stream sequence.
func (e *testEnv) publishEvent(m int64, id string, p event.Payload) uint64 {
	e.t.Helper()
	env, err := event.New(m, id, time.Now(), p)
	if err != nil {
		e.t.Fatal(err)
	}
	ack, err := e.bus.Publish(context.Background(), env)
	if err != nil {
		e.t.Fatal(err)
	}
	return ack.Sequence
}

// publishHistorySync stores what a history sync chunk of n messages
// gives: n message events marked history, then the progress event.
func (e *testEnv) publishHistorySync(m int64, n int) {
	e.t.Helper()
	synced := time.Now().Add(-time.Minute).UTC()
	for i := range n {
		waID := fmt.Sprintf("HIST%03d", i)
		e.publishEvent(m, event.MessageEventID(m, waID), &event.Message{WAID: waID, ChatJID: tZed + "@s.whatsapp.net",
			SenderJID: tZed + "@s.whatsapp.net", Phone: tZed, Direction: event.DirectionIn, Kind: event.KindText,
			Text: "old " + waID, Timestamp: synced.Add(-time.Duration(n-i) * time.Hour), Status: event.MessageRead,
			History: &event.History{Sync: "initial_bootstrap", SyncedAt: synced}})
	}
	e.publishEvent(m, event.HistoryEventID(m, "notif-1"), &event.HistoryProgress{Sync: "initial_bootstrap", Chunk: 0,
		Progress: 100, Conversations: 1, Messages: n, SyncedAt: synced})
	e.publishEvent(m, fmt.Sprintf("%d:group:%s:1:x", m, tGroup), &event.Group{JID: tGroup, Subject: "Turma 7",
		Participants: []event.Participant{{JID: tZed + "@s.whatsapp.net", Phone: tZed}}})
	e.publishEvent(m, event.LeadEventID(m, 9, event.LeadCreated, ""), &event.Lead{LeadID: 9, Change: event.LeadCreated, Phone: tZed})
}

// TestStreamsLeaveOutHistory: a history sync reaches stream clients as
// its progress event, never as one frame per historic message, live and
// on resume; group and lead events pass; live messages still arrive. The
// client's buffer is smaller than the sync: history never fills it.
func TestStreamsLeaveOutHistory(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StreamBuffer = 16 })
	a := e.createMentorado("Ana")
	before := e.publishMessage(a.ID, "before", "antes")
	live := e.openSSE(bearerAuth(a.Token), strconv.FormatUint(before, 10))
	var tr ticketResponse
	e.expect(e.do("POST", "/v1/stream-tickets", a.Token, nil), 201).json(t, &tr)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/v1/ws?ticket="+tr.Ticket, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	e.publishHistorySync(a.ID, 100)
	marker := e.publishMessage(a.ID, "live-after", "ao vivo")

	check := func(name string, types []string, datas []string) {
		t.Helper()
		count := map[string]int{}
		for i, typ := range types {
			count[typ]++
			if typ == "message" && strings.Contains(datas[i], `"history"`) {
				t.Fatalf("%s: a history message was streamed: %s", name, datas[i])
			}
		}
		if count["history"] != 1 || count["group"] != 1 || count["lead"] != 1 || count["message"] != 1 {
			t.Fatalf("%s: frames %v", name, count)
		}
	}
	sseDone := func(c *sseClient) bool {
		evs := c.Events()
		return len(evs) > 0 && evs[len(evs)-1].ID == strconv.FormatUint(marker, 10)
	}
	sseCheck := func(name string, c *sseClient) {
		t.Helper()
		var types, datas []string
		for _, ev := range c.Events() {
			types, datas = append(types, ev.Event), append(datas, ev.Data)
		}
		check(name, types, datas)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return sseDone(live) }, "the live message after the sync")
	sseCheck("live sse", live)

	// Resuming from before the sync replays it the same way.
	resumed := e.openSSE(bearerAuth(a.Token), strconv.FormatUint(before, 10))
	testenv.Eventually(t, 10*time.Second, func() bool { return sseDone(resumed) }, "the replay up to the live message")
	sseCheck("replayed sse", resumed)

	var types, datas []string
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var f wsFrame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		types, datas = append(types, f.Event), append(datas, string(f.Data))
		if f.ID == marker {
			break
		}
	}
	check("websocket", types, datas)
}
