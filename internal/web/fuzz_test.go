package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func FuzzParseCursor(f *testing.F) {
	f.Add(cursor{T: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC), I: 42}.encode())
	f.Add("")
	f.Add("!!!")
	f.Add("eyJ0IjoiIiwiaSI6MH0")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCursor(s)
		if err != nil {
			if _, ok := err.(*apiError); !ok {
				t.Fatalf("non-API error %T", err)
			}
			return
		}
		if c == nil {
			if s != "" {
				t.Fatal("nil cursor for non-empty input")
			}
			return
		}
		if c.I <= 0 || c.T.IsZero() {
			t.Fatalf("accepted invalid cursor %+v", c)
		}
		// What we encode we read back.
		back, err := parseCursor(c.encode())
		if err != nil || back.I != c.I || !back.T.Equal(c.T) {
			t.Fatalf("round trip %+v -> %+v, %v", c, back, err)
		}
	})
}

// FuzzDecodeJSON checks that any body yields either a decoded request or a
// 4xx API error, never a panic or a 5xx.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"phone":"5511988887777","text":"hi"}`, `{"phone":`, `[]`, `{"x":1}`, `{} {}`, ``, `null`,
		`{"phone":5}`, `{"phone":"1","text":"2","client_id":"3"}`} {
		f.Add(s)
	}
	s := &Server{cfg: Config{MaxBodyBytes: 4096}}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/v1/messages", strings.NewReader(body))
		w := httptest.NewRecorder()
		var req sendRequest
		err := s.decodeJSON(w, r, &req)
		if err == nil {
			return
		}
		ae, ok := err.(*apiError)
		if !ok || ae.Status < 400 || ae.Status >= 500 || ae.Code == "" {
			t.Fatalf("body %q: error %v", body, err)
		}
		if len(body) > 4096 && ae.Status != http.StatusRequestEntityTooLarge && ae.Status != http.StatusBadRequest {
			t.Fatalf("oversized body gave %d", ae.Status)
		}
	})
}

// FuzzParseChat: any chat name is either a chat JID the store can hold
// (and that parses back as itself) or 400 invalid_chat.
func FuzzParseChat(f *testing.F) {
	for _, s := range []string{"5511988887777", "+55 11 98888-7777", "5511988887777@s.whatsapp.net", "123456@lid",
		"120363000000000042@g.us", "5511900000000-1700000000@g.us", "1:2@s.whatsapp.net", "status@broadcast", "", "@", "a@g.us"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		chat, kind, err := parseChat(s)
		if err != nil {
			if ae, ok := err.(*apiError); !ok || ae.Status != http.StatusBadRequest || ae.Code != "invalid_chat" {
				t.Fatalf("%q: error %v", s, err)
			}
			return
		}
		if kind == "" || chatKindOf(chat) != kind {
			t.Fatalf("%q: chat %q kind %q", s, chat, kind)
		}
		back, k2, err := parseChat(chat)
		if err != nil || back != chat || k2 != kind {
			t.Fatalf("%q: %q does not parse back (%q %q %v)", s, chat, back, k2, err)
		}
	})
}
