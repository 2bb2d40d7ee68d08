package web

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/event"
)

// TestSendValidatesBeforeSending: client ids and texts the contract cannot
// carry are refused with a 400 JSON error before a command reaches the
// connector; any printable client id up to 128 characters and any text of
// up to 65,536 characters of any content go through.
func TestSendValidatesBeforeSending(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	fc := e.fakeConnector(defaultAnswer)
	for _, tc := range []struct {
		name     string
		clientID string
		text     string
		code     string
	}{
		{"client id too long", strings.Repeat("x", event.MaxClientIDRunes+1), "oi", codeBadRequest},
		{"client id with a tab", "a\tb", "oi", codeBadRequest},
		{"client id with NUL", "a\x00b", "oi", codeBadRequest},
		{"client id with a control", "a\u0007b", "oi", codeBadRequest},
		{"text with NUL", "c-nul", "a\x00b", codeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fc.Subjects())
			res := e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"phone": "5511988887777", "text": tc.text, "client_id": tc.clientID}), 400)
			if got := res.errorCode(t); got != tc.code {
				t.Fatalf("code %q, want %q (%s)", got, tc.code, res.Body)
			}
			if len(fc.Subjects()) != before {
				t.Fatal("a refused send reached the connector")
			}
		})
	}
	for _, id := range []string{"order 7", "order.7", "a:b+c@d", "pedido-ção-😀", strings.Repeat("é", event.MaxClientIDRunes)} {
		e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"phone": "5511988887777", "text": "oi", "client_id": id}), 201)
		var sent event.SendRequest
		if err := json.Unmarshal(fc.LastBody(), &sent); err != nil || sent.ClientID != id {
			t.Fatalf("client id %q reached the connector as %q (%v)", id, sent.ClientID, err)
		}
	}
	for _, c := range []string{"<", `"`, "\u0001", "😀"} {
		e.expect(e.do("POST", "/v1/messages", a.Token, map[string]string{"phone": "5511988887777", "text": strings.Repeat(c, event.MaxTextRunes)}), 201)
	}
}
