package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/store"
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
	ctx := context.Background()
	db, err := store.Open(ctx, s.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO webhooks (mentorado_id, url, event_types, secret) VALUES ($1, $2, '{connection}', $3)`,
		created.ID, recv.URL+"/hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"); err != nil {
		t.Fatal(err)
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
