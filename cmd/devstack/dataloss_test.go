package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// TestNoInboundOrSentDataLost runs the real whatsmeow client against the
// fake WhatsApp server, the persister and Postgres:
//   - a contact whose push name (and text) carries NUL, which Postgres text
//     cannot hold, still reaches the thread (it used to be dead-lettered,
//     every message of that contact, silently);
//   - texts at the documented maximum of any content are sent and recorded
//     (65,536 '<' used to be sent, then answered 502 "not recorded");
//   - client ids that used to share a WA_SENDS key are distinct sends.
func TestNoInboundOrSentDataLost(t *testing.T) {
	s := startStack(t)
	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Ana"}, &created); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	tok := created.Token
	// This test sends nine messages in a row to a number that never wrote:
	// let them all go at once (the pacer is not what it tests).
	if code := s.do("PATCH", "/v1/sending", tok, map[string]int{"unsolicited_burst": 20}, nil); code != http.StatusOK {
		t.Fatalf("sending settings: %d", code)
	}
	if code := s.do("POST", "/v1/whatsapp/connect", tok, map[string]string{"method": "qr"}, nil); code != http.StatusAccepted {
		t.Fatalf("connect: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		return s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/scan", created.ID), s.admin, nil, nil) == http.StatusOK
	}, "QR never scanned")
	var status struct {
		Status string `json:"status"`
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		s.do("GET", "/v1/whatsapp/status", tok, nil, &status)
		return status.Status == "connected"
	}, "never connected: %+v", status)

	type message struct {
		ID        string `json:"id"`
		Direction string `json:"direction"`
		PushName  string `json:"push_name"`
		Text      string `json:"text"`
	}
	var thread struct {
		Messages []message `json:"messages"`
	}
	const evil = "5521911112222"
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", created.ID), s.admin,
		map[string]string{"phone": evil, "text": "x\x00y", "push_name": "Evil\x00Name"}, nil); code != http.StatusAccepted {
		t.Fatalf("inbound: %d", code)
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", created.ID), s.admin,
		map[string]string{"phone": evil, "text": "second"}, nil); code != http.StatusAccepted {
		t.Fatalf("inbound: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		s.do("GET", "/v1/conversations/"+evil+"/messages", tok, nil, &thread)
		return len(thread.Messages) == 2
	}, "messages of a contact with NUL in the push name never stored: %+v", thread)
	for _, m := range thread.Messages {
		if m.PushName != "EvilName" || (m.Text != "xy" && m.Text != "second") {
			t.Fatalf("stored %+v", m)
		}
	}
	var convs struct {
		Conversations []struct {
			Phone string `json:"phone"`
			Name  string `json:"name"`
		} `json:"conversations"`
	}
	s.do("GET", "/v1/conversations", tok, nil, &convs)
	if len(convs.Conversations) != 1 || convs.Conversations[0].Name != "EvilName" {
		t.Fatalf("conversations %+v", convs)
	}

	// Texts at the maximum, of any content, are sent and recorded.
	const bia = "5511912345678"
	var want []string
	for _, c := range []string{"<", `"`, "\u0001", "😀"} {
		text := strings.Repeat(c, event.MaxTextRunes)
		var sent struct {
			ID string `json:"id"`
		}
		if code := s.do("POST", "/v1/messages", tok, map[string]string{"phone": bia, "text": text}, &sent); code != http.StatusCreated {
			t.Fatalf("send %q × %d: %d", c, event.MaxTextRunes, code)
		}
		want = append(want, sent.ID)
	}
	var tooLong struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if code := s.do("POST", "/v1/messages", tok, map[string]string{"phone": bia, "text": strings.Repeat("<", event.MaxTextRunes+1)}, &tooLong); code != http.StatusBadRequest || tooLong.Error.Code != event.CodeTextTooLong {
		t.Fatalf("over the limit: %d %+v", code, tooLong)
	}
	// Client ids that used to collide are distinct sends.
	for _, id := range []string{"order 7", "order.7", "order_7", "a:b+c@d", "pedido-ção"} {
		var sent struct {
			ID   string `json:"id"`
			Text string `json:"text"`
		}
		if code := s.do("POST", "/v1/messages", tok, map[string]string{"phone": bia, "text": "pedido " + id, "client_id": id}, &sent); code != http.StatusCreated || sent.Text != "pedido "+id {
			t.Fatalf("send with client_id %q: %d %+v", id, code, sent)
		}
		want = append(want, sent.ID)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		s.do("GET", "/v1/conversations/"+bia+"/messages?limit=50", tok, nil, &thread)
		return len(thread.Messages) == len(want)
	}, "sent messages not all recorded: %d of %d", len(thread.Messages), len(want))
	got := map[string]bool{}
	for _, m := range thread.Messages {
		got[m.ID] = true
	}
	for _, id := range want {
		if !got[id] {
			t.Fatalf("sent message %s not recorded", id)
		}
	}
}
