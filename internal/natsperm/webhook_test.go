package natsperm

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/webhook"
)

// realDispatcher runs internal/webhook's dispatcher with the webhooks
// user: an endpoint of mentorado 1 on a local receiver (allowed by the
// policy, as ZAPBUS_WEBHOOK_ALLOW_NETS would) gets a message the connector
// publishes. Every NATS call the engine makes must be in nats.conf's
// WEBHOOKS block (the matrix's last check reads the logs for violations).
func realDispatcher(t *testing.T, m *matrix, hooks, conn *bus.Bus, logs *lockedBuf) {
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mu sync.Mutex
	var bodies []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO mentorados (id, name) OVERRIDING SYSTEM VALUE VALUES (1, 'm')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO webhooks (mentorado_id, url, event_types, secret) VALUES (1, $1, '{message}', $2)`,
		recv.URL+"/hook", "whsec_"+base64.StdEncoding.EncodeToString(key)); err != nil {
		t.Fatal(err)
	}
	d, err := webhook.New(webhook.Config{
		Policy:            webhook.Policy{AllowNets: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, AllowHTTP: true},
		Timeout:           5 * time.Second,
		Backoff:           []time.Duration{time.Second},
		ReconcileInterval: 200 * time.Millisecond,
		Name:              "natsperm",
	}, db, hooks, logger(logs, "webhooks"))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- d.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("webhook dispatcher Run: %v", err)
		}
	}()
	m.allow("webhooks", "Run: deliver a published message to a local endpoint (internal/webhook)", func(ctx context.Context) error {
		const text = "natsperm webhook probe"
		for ctx.Err() == nil {
			// published until the endpoint's consumer exists and delivers
			at := time.Now().UTC()
			id := "NP" + at.Format("150405.000000")
			if _, err := conn.Publish(ctx, mustEnv(t, 1, event.MessageEventID(1, id), &event.Message{WAID: id,
				ChatJID: "5511955556666@s.whatsapp.net", SenderJID: "5511955556666@s.whatsapp.net", Phone: "5511955556666",
				Direction: event.DirectionIn, Kind: event.KindText, Text: text, Timestamp: at, Status: event.MessageReceived})); err != nil {
				return err
			}
			deadline := time.Now().Add(2 * time.Second)
			for time.Now().Before(deadline) {
				mu.Lock()
				got := strings.Contains(strings.Join(bodies, "\n"), text)
				mu.Unlock()
				if got {
					return nil
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		return ctx.Err()
	})
}
