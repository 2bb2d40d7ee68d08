package main

import (
	"fmt"
	"net/http"
	"testing"
)

// TestSimInboundRejectsBadInput: the sim endpoint says what is wrong
// before it drives the fake phone.
func TestSimInboundRejectsBadInput(t *testing.T) {
	s := startStack(t)
	// A mentorado on WhatsApp Web (ids 1 and 2 are the Meta and Z-API demos).
	var created struct {
		ID int64 `json:"id"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Ana"}, &created); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	sim := fmt.Sprintf("/v1/dev/sim/%d/", created.ID)
	for name, body := range map[string]map[string]any{
		"unknown kind":      {"phone": "5511912345678", "kind": "gif", "data": []byte("x")},
		"file without data": {"phone": "5511912345678", "kind": "image"},
		"text with a file":  {"phone": "5511912345678", "text": "oi", "data": []byte("x")},
		"no text":           {"phone": "5511912345678"},
	} {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if code := s.do("POST", sim+"inbound", s.admin, body, &e); code != http.StatusBadRequest || e.Error.Code != "bad_request" {
			t.Errorf("%s: %d %+v, want 400 bad_request", name, code, e)
		}
	}
	if code := s.do("POST", sim+"react", s.admin, map[string]string{"phone": "5511912345678"}, nil); code != http.StatusBadRequest {
		t.Errorf("react without target: %d, want 400", code)
	}
	// The Meta demo (1) has no WhatsApp Web phone to react with.
	if code := s.do("POST", "/v1/dev/sim/1/react", s.admin, map[string]string{"phone": "5511912345678", "target": "x", "emoji": "👍"}, nil); code != http.StatusConflict {
		t.Errorf("react as the Meta demo's contact: %d, want 409", code)
	}
	if code := s.do("GET", sim+"received?phone=x", s.admin, nil, nil); code != http.StatusBadRequest {
		t.Errorf("received with a bad phone: %d, want 400", code)
	}
}
