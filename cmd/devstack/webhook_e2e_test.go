package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

// TestWebhookToLocalReceiver: the dev binary's in-process dispatcher
// delivers to a plain-http receiver on loopback (allowed in dev mode
// only): a mentorado's connect command produces connection events, which
// reach its webhook.
func TestWebhookToLocalReceiver(t *testing.T) {
	s := startStack(t)
	var mu sync.Mutex
	var bodies []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
	}))
	defer recv.Close()

	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Ana"}, &created); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	// Through the API: the dev stack's notifier accepts the plain-http
	// loopback URL its dispatcher may call.
	if code := s.do("POST", "/v1/webhooks", created.Token, map[string]any{"url": recv.URL + "/hook", "event_types": []string{"connection"}}, nil); code != http.StatusCreated {
		t.Fatalf("create webhook: %d", code)
	}
	if code := s.do("POST", "/v1/whatsapp/connect", created.Token, map[string]string{"method": "qr"}, nil); code != http.StatusAccepted {
		t.Fatalf("connect: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bodies {
			if strings.Contains(b, `"connection"`) {
				return true
			}
		}
		return false
	}, "the local receiver got no connection event")
}
