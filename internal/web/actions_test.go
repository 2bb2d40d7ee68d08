package web

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
)

func TestMessageActions(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	answer := func(m int64, verb event.Verb, body []byte) event.Reply {
		switch verb {
		case event.VerbReact, event.VerbEdit, event.VerbRevoke, event.VerbRead:
			var req event.ActionRequest
			_ = json.Unmarshal(body, &req)
			if req.MessageID == "REFUSED" {
				return event.Reply{Error: event.NewCommandError(event.CodeNotEditable, "not an admin of this group")}
			}
			return event.Reply{}
		}
		return defaultAnswer(m, verb, body)
	}
	fc := e.fakeConnector(answer)
	const ph = "5511988887777"
	now := time.Now()
	e.insertMessage(a.ID, msgRow{WAID: "IN1", Phone: ph, Text: "oi", At: now.Add(-time.Hour)})
	e.insertMessage(a.ID, msgRow{WAID: "IN2", Phone: ph, Text: "tudo bem?", At: now.Add(-time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "IN-READ", Phone: ph, Text: "lido", Status: "read", At: now.Add(-time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "OUT", Phone: ph, Direction: "out", Text: "olá", Status: "sent", At: now.Add(-time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "OUT-OLD", Phone: ph, Direction: "out", Text: "velha", Status: "sent", At: now.Add(-event.EditWindow - time.Minute)})
	e.insertMedia(a.ID, mediaRow{WAID: "OUT-IMG", Phone: ph, Direction: "out", Kind: "image", MIME: "image/jpeg", MediaID: sha(jpegBytes), State: "stored"})
	e.insertMessage(a.ID, msgRow{WAID: "IN-GONE", Phone: ph, Text: "", At: now.Add(-30 * time.Second)})
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE whatsapp_messages SET revoked = true WHERE wa_message_id = 'IN-GONE'`); err != nil {
		t.Fatal(err)
	}
	e.insertMessage(b.ID, msgRow{WAID: "B-OUT", Phone: ph, Direction: "out", Text: "B secret", Status: "sent", At: now})

	call := func(method, path string, body any, status int, code string) response {
		t.Helper()
		before := len(fc.Subjects())
		res := e.expect(e.do(method, path, a.Token, body), status)
		if code != "" {
			if got := res.errorCode(t); got != code {
				t.Fatalf("%s %s: code %s, want %s", method, path, got, code)
			}
			if len(fc.Subjects()) != before {
				t.Fatalf("%s %s: a refused action reached the connector", method, path)
			}
		}
		return res
	}
	last := func(verb event.Verb) event.ActionRequest {
		t.Helper()
		subs := fc.Subjects()
		if !strings.HasSuffix(subs[len(subs)-1], ".cmd."+string(verb)) || !strings.HasPrefix(subs[len(subs)-1], "wa."+itoa(a.ID)+".") {
			t.Fatalf("last command on %s, want %s", subs[len(subs)-1], verb)
		}
		var req event.ActionRequest
		if err := json.Unmarshal(fc.LastBody(), &req); err != nil {
			t.Fatal(err)
		}
		return req
	}

	// React.
	call("POST", "/v1/messages/IN1/reactions", map[string]string{"emoji": "👍", "client_id": "r-1"}, 200, "")
	if req := last(event.VerbReact); req.MessageID != "IN1" || req.ChatJID != ph+"@s.whatsapp.net" || req.SenderJID != ph+"@s.whatsapp.net" ||
		req.FromMe || req.Emoji != "👍" || req.ClientID != "r-1" || req.SentAt.IsZero() {
		t.Fatalf("react command %+v", req)
	}
	call("POST", "/v1/messages/IN1/reactions", map[string]string{"emoji": ""}, 200, "")
	call("POST", "/v1/messages/IN1/reactions", map[string]string{"emoji": "a b"}, 400, codeBadRequest)
	call("POST", "/v1/messages/nope/reactions", map[string]string{"emoji": "👍"}, 404, event.CodeMessageUnknown)
	call("POST", "/v1/messages/B-OUT/reactions", map[string]string{"emoji": "👍"}, 404, event.CodeMessageUnknown)
	call("POST", "/v1/messages/IN1/reactions", `{"emoji":`, 400, codeBadJSON)

	// Edit.
	var mr messageResponse
	call("PATCH", "/v1/messages/OUT", map[string]string{"text": "olá!"}, 200, "").json(t, &mr)
	if mr.Message.ID != "OUT" || mr.Message.Text != "olá!" || !mr.Message.Edited {
		t.Fatalf("edit reply %+v", mr)
	}
	if req := last(event.VerbEdit); req.MessageID != "OUT" || !req.FromMe || req.Text != "olá!" {
		t.Fatalf("edit command %+v", req)
	}
	call("PATCH", "/v1/messages/IN2", map[string]string{"text": "x"}, 409, event.CodeNotEditable)     // someone else's
	call("PATCH", "/v1/messages/OUT-IMG", map[string]string{"text": "x"}, 409, event.CodeNotEditable) // not text
	call("PATCH", "/v1/messages/OUT-OLD", map[string]string{"text": "x"}, 409, event.CodeEditExpired)
	call("PATCH", "/v1/messages/OUT", map[string]string{"text": ""}, 400, codeBadRequest)
	call("PATCH", "/v1/messages/B-OUT", map[string]string{"text": "x"}, 404, event.CodeMessageUnknown)

	// Delete for everyone.
	call("DELETE", "/v1/messages/OUT-OLD", nil, 200, "")
	if req := last(event.VerbRevoke); req.MessageID != "OUT-OLD" || !req.FromMe || req.ClientID != "OUT-OLD" {
		t.Fatalf("revoke command %+v", req)
	}
	call("DELETE", "/v1/messages/IN1", nil, 409, event.CodeNotEditable)
	call("DELETE", "/v1/messages/B-OUT", nil, 404, event.CodeMessageUnknown)
	call("DELETE", "/v1/messages/nope", nil, 404, event.CodeMessageUnknown)

	// The connector's refusal maps to the same code.
	e.insertMessage(a.ID, msgRow{WAID: "REFUSED", Phone: ph, Direction: "out", Text: "x", Status: "sent", At: now})
	res := e.expect(e.do("DELETE", "/v1/messages/REFUSED", a.Token, nil), 409)
	if res.errorCode(t) != event.CodeNotEditable {
		t.Fatalf("connector refusal: %s", res.Body)
	}

	// Read: the unread inbound messages, not the read or revoked ones.
	var rr readResponse
	call("POST", "/v1/conversations/"+ph+"/read", nil, 200, "").json(t, &rr)
	subs := fc.Subjects()
	if rr.Marked != 2 || subs[len(subs)-1] != "wa."+itoa(a.ID)+".cmd.read" {
		t.Fatalf("read %+v, last command %s", rr, subs[len(subs)-1])
	}
	var rd event.ReadRequest
	if err := json.Unmarshal(fc.LastBody(), &rd); err != nil {
		t.Fatal(err)
	}
	if rd.ChatJID != ph+"@s.whatsapp.net" || len(rd.Messages) != 2 || rd.Messages[0].ID != "IN1" || rd.Messages[1].ID != "IN2" ||
		rd.Messages[0].SenderJID != ph+"@s.whatsapp.net" {
		t.Fatalf("read command %+v", rd)
	}
	before := len(fc.Subjects())
	call("POST", "/v1/conversations/5511977776666/read", nil, 200, "").json(t, &rr)
	if rr.Marked != 0 || len(fc.Subjects()) != before {
		t.Fatalf("nothing unread: %+v, %d commands", rr, len(fc.Subjects())-before)
	}
	call("POST", "/v1/conversations/abc/read", nil, 400, event.CodeInvalidPhone)
}

// TestReactionsAndUnreadInThread: reactions show aggregated on their
// message; revoked messages do not count as unread.
// A message already deleted is answered 200 without another command.
func TestDeleteDeletedMessage(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	fc := e.fakeConnector(defaultAnswer)
	e.insertMedia(a.ID, mediaRow{WAID: "OUT-GONE", Phone: "5511988887777", Kind: "image", Direction: "out", MIME: "image/jpeg",
		State: "stored", MediaID: sha(jpegBytes), Revoked: true})
	e.expect(e.do("DELETE", "/v1/messages/OUT-GONE", a.Token, nil), 200)
	if n := len(fc.Subjects()); n != 0 {
		t.Fatalf("a deleted message was deleted again: %v", fc.Subjects())
	}
}

func TestReactionsAndUnreadInThread(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	const ph = "5511988887777"
	now := time.Now()
	e.insertMessage(a.ID, msgRow{WAID: "M1", Phone: ph, Text: "oi", At: now.Add(-time.Hour)})
	e.insertMessage(a.ID, msgRow{WAID: "M2", Phone: ph, Text: "", At: now.Add(-time.Minute)})
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE whatsapp_messages SET revoked = true WHERE wa_message_id = 'M2'`); err != nil {
		t.Fatal(err)
	}
	e.insertMessage(a.ID, msgRow{WAID: "R1", Phone: ph, Kind: "reaction", Target: "M1", Text: "👍", At: now.Add(-50 * time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "R2", Phone: ph, Kind: "reaction", Target: "M1", Text: "❤️", At: now.Add(-40 * time.Minute)})
	e.insertMessage(a.ID, msgRow{WAID: "R3", Phone: ph, Kind: "reaction", Direction: "out", Target: "M1", Text: "❤️", Status: "sent", At: now.Add(-30 * time.Minute)})

	var mr messagesResponse
	e.expect(e.do("GET", "/v1/conversations/"+ph+"/messages", a.Token, nil), 200).json(t, &mr)
	if len(mr.Messages) != 2 {
		t.Fatalf("thread %+v", mr)
	}
	m1 := mr.Messages[1]
	if m1.ID != "M1" || len(m1.Reactions) != 1 || m1.Reactions[0] != (apiReaction{Emoji: "❤️", Count: 2, Mine: true}) {
		t.Fatalf("M1 reactions %+v", m1.Reactions)
	}
	var cr conversationsResponse
	e.expect(e.do("GET", "/v1/conversations", a.Token, nil), 200).json(t, &cr)
	if len(cr.Conversations) != 1 || cr.Conversations[0].Unread != 1 {
		t.Fatalf("conversations %+v", cr)
	}
}
