package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

func newMetaEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, &fakeDriver{p: event.ProviderMeta}, Config{})
	e.configure(1, metaAccount("101", "secret-a"))
	e.configure(2, metaAccount("202", "secret-b"))
	return e
}

func signedA() map[string]string { return map[string]string{"X-Test-Signature": "secret-a"} }

func TestWebhookStoredBeforeAnswer(t *testing.T) {
	e := newMetaEnv(t)
	code, body := e.post("/providers/meta/1/webhook", delivery("101", "wamid.in1", "5511988887777", "oi"), signedA())
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	evs := e.events()
	if len(evs) != 1 {
		t.Fatalf("stored %d events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Provider != event.ProviderMeta || ev.MentoradoID != 1 || ev.ID != event.MessageEventID(1, "wamid.in1") || ev.Type != event.TypeMessage {
		t.Fatalf("stored %+v", ev)
	}
	row, err := e.db.Providers().Get(context.Background(), 1, event.ProviderMeta)
	if err != nil {
		t.Fatal(err)
	}
	if row.LastWebhookAt == nil || row.LastWebhookError != "" {
		t.Fatalf("webhook health %+v", row)
	}
}

func TestWebhookMediaFetchedIntoStore(t *testing.T) {
	e := newMetaEnv(t)
	body := `{"number":"101","messages":[{"id":"wamid.img","from":"5511988887777","text":"look","media":"file-1"}]}`
	if code, b := e.post("/providers/meta/1/webhook", []byte(body), signedA()); code != http.StatusOK {
		t.Fatalf("status %d: %s", code, b)
	}
	evs := e.events()
	if len(evs) != 2 || evs[0].Type != event.TypeMessage || evs[1].Type != event.TypeMedia {
		t.Fatalf("stored %v, want message then media", evs)
	}
	_, p, err := event.Decode(mustEncode(t, evs[0]))
	if err != nil {
		t.Fatal(err)
	}
	msg := p.(*event.Message)
	png := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), []byte("file-1")...)
	sum := sha256.Sum256(png)
	want := hex.EncodeToString(sum[:])
	if msg.Media == nil || msg.Media.ID != want || msg.Media.Size != int64(len(png)) || msg.Caption != "look" {
		t.Fatalf("message media %+v, want id %s", msg.Media, want)
	}
	var done event.MediaDone
	if err := json.Unmarshal(evs[1].Data, &done); err != nil {
		t.Fatal(err)
	}
	if done.State != event.MediaStored || done.MediaID != want || evs[1].Provider != event.ProviderMeta {
		t.Fatalf("media event %+v", done)
	}
	obj, err := e.gw.media.Open(context.Background(), 1, want)
	if err != nil {
		t.Fatalf("file not in the media store: %v", err)
	}
	got, _ := io.ReadAll(obj)
	obj.Close()
	if string(got) != string(png) {
		t.Fatalf("stored file differs")
	}
}

func TestWebhookMediaFetchFailsPublishesWithoutMedia(t *testing.T) {
	e := newMetaEnv(t)
	e.drv.set(func(d *fakeDriver) { d.fetchFails = true })
	body := `{"number":"101","messages":[{"id":"wamid.img","from":"5511988887777","media":"file-1"}]}`
	if code, b := e.post("/providers/meta/1/webhook", []byte(body), signedA()); code != http.StatusOK {
		t.Fatalf("status %d: %s", code, b)
	}
	evs := e.events()
	if len(evs) != 1 {
		t.Fatalf("stored %d events, want the message alone", len(evs))
	}
	var msg event.Message
	_ = json.Unmarshal(evs[0].Data, &msg)
	if msg.Media != nil || msg.Kind != event.KindImage {
		t.Fatalf("message %+v", msg)
	}
}

func TestWebhookPublishFailureIs503(t *testing.T) {
	e := newMetaEnv(t)
	ctx := context.Background()
	// No stream takes wa.*.evt.> now: every publish fails.
	if err := e.bus.JS.DeleteStream(ctx, bus.StreamEvents); err != nil {
		t.Fatal(err)
	}
	code, _ := e.post("/providers/meta/1/webhook", delivery("101", "wamid.in1", "5511988887777", "oi"), signedA())
	if code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", code)
	}
	if n := e.metric("webhooks", "meta", "publish_failed"); n != 1 {
		t.Fatalf("publish_failed = %v", n)
	}
	row, _ := e.db.Providers().Get(ctx, 1, event.ProviderMeta)
	if row.LastWebhookAt != nil {
		t.Fatal("a delivery that was not stored was recorded as accepted")
	}
	// The provider retries once JetStream is back: stored, then 200.
	if err := e.bus.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if code, b := e.post("/providers/meta/1/webhook", delivery("101", "wamid.in1", "5511988887777", "oi"), signedA()); code != http.StatusOK {
		t.Fatalf("retry: status %d: %s", code, b)
	}
	if evs := e.events(); len(evs) != 1 {
		t.Fatalf("stored %d events after the retry, want 1", len(evs))
	}
}

func TestWebhookBadAuthentication(t *testing.T) {
	e := newMetaEnv(t)
	code, body := e.post("/providers/meta/1/webhook", delivery("101", "wamid.in1", "5511988887777", "oi"),
		map[string]string{"X-Test-Signature": "secret-b"})
	if code != http.StatusUnauthorized {
		t.Fatalf("status %d: %s", code, body)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Fatalf("stored %d events from an unauthenticated delivery", len(evs))
	}
	row, _ := e.db.Providers().Get(context.Background(), 1, event.ProviderMeta)
	if row.LastWebhookError == "" || row.LastWebhookErrorAt == nil || row.LastWebhookAt != nil {
		t.Fatalf("webhook health %+v", row)
	}
	if strings.Contains(row.LastWebhookError, "secret-") {
		t.Fatalf("health names a secret: %q", row.LastWebhookError)
	}
	if n := e.metric("webhooks", "meta", "unauthenticated"); n != 1 {
		t.Fatalf("unauthenticated = %v", n)
	}
	// A body the driver cannot read: 400, nothing stored.
	if code, _ := e.post("/providers/meta/1/webhook", []byte("{nope"), signedA()); code != http.StatusBadRequest {
		t.Fatalf("bad payload: status %d", code)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Fatalf("stored %d events from a bad payload", len(evs))
	}
}

func TestWebhookReplayStoredOnce(t *testing.T) {
	e := newMetaEnv(t)
	ctx := context.Background()
	body := delivery("101", "wamid.in1", "5511988887777", "oi", "wamid.in2", "5511988887777", "tudo bem?")
	for i := range 2 {
		if code, b := e.post("/providers/meta/1/webhook", body, signedA()); code != http.StatusOK {
			t.Fatalf("delivery %d: status %d: %s", i, code, b)
		}
	}
	if evs := e.events(); len(evs) != 2 {
		t.Fatalf("stored %d events, want one per message", len(evs))
	}
	// Past JetStream's duplicate window (a fresh stream stands for it):
	// the persister has stored both messages; Meta retries the delivery
	// once more with a third, new message.
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, direction, kind, status, status_rank, sent_at)
		SELECT 1, id, '5511988887777@s.whatsapp.net', '5511988887777@s.whatsapp.net', 'in', 'text', 'received', 1, now()
		FROM unnest(ARRAY['wamid.in1', 'wamid.in2']) id`); err != nil {
		t.Fatal(err)
	}
	if err := e.bus.JS.DeleteStream(ctx, bus.StreamEvents); err != nil {
		t.Fatal(err)
	}
	if err := e.bus.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	late := delivery("101", "wamid.in1", "5511988887777", "oi", "wamid.in2", "5511988887777", "tudo bem?", "wamid.in3", "5511988887777", "?")
	if code, b := e.post("/providers/meta/1/webhook", late, signedA()); code != http.StatusOK {
		t.Fatalf("late retry: status %d: %s", code, b)
	}
	evs := e.events()
	if len(evs) != 1 || evs[0].ID != event.MessageEventID(1, "wamid.in3") {
		t.Fatalf("late retry stored %v, want only wamid.in3", evs)
	}
	if n := e.metric("duplicates", "meta"); n != 2 {
		t.Fatalf("duplicates = %v, want 2", n)
	}
}

func TestWebhookMentoradoIsolation(t *testing.T) {
	e := newMetaEnv(t)
	ctx := context.Background()
	// A's URL and A's signature, B's phone number id: the driver drops
	// the entry; nothing is written for B (nor A), and A's health says why.
	code, body := e.post("/providers/meta/1/webhook", delivery("202", "wamid.x", "5511988887777", "oi"), signedA())
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Fatalf("stored %v", evs)
	}
	a, _ := e.db.Providers().Get(ctx, 1, event.ProviderMeta)
	if !strings.Contains(a.LastWebhookError, "202") {
		t.Fatalf("A's webhook health %+v", a)
	}
	b, _ := e.db.Providers().Get(ctx, 2, event.ProviderMeta)
	if b.LastWebhookAt != nil || b.LastWebhookError != "" {
		t.Fatalf("B's webhook health touched: %+v", b)
	}
	// A driver that gets it wrong: an event of B on A's URL is refused
	// whole (500) and nothing is published.
	e.drv.set(func(d *fakeDriver) { d.rogue = 2 })
	code, _ = e.post("/providers/meta/1/webhook", delivery("101", "wamid.y", "5511988887777", "oi"), signedA())
	if code != http.StatusInternalServerError {
		t.Fatalf("rogue event: status %d, want 500", code)
	}
	if evs := e.events(); len(evs) != 0 {
		t.Fatalf("stored %v", evs)
	}
}

func TestWebhookUnknownTargets(t *testing.T) {
	e := newMetaEnv(t)
	cases := []string{
		"/providers/meta/3/webhook",          // mentorado without meta
		"/providers/meta/99/webhook",         // no such mentorado
		"/providers/zapi/1/webhook",          // no zapi driver here
		"/providers/meta/abc/webhook",        // not an id
		"/providers/meta/1/webhook/a-secret", // secrets in the path are Z-API's
	}
	var first string
	for _, path := range cases {
		code, body := e.post(path, delivery("101"), signedA())
		if code != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", path, code)
		}
		if first == "" {
			first = body
		} else if body != first {
			t.Errorf("%s: body %q differs from %q: the answer must not hint", path, body, first)
		}
	}
	big := make([]byte, 1<<20+1)
	if code, _ := e.post("/providers/meta/1/webhook", big, signedA()); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("large body: status %d, want 413", code)
	}
}

func TestWebhookVerifyHandshake(t *testing.T) {
	e := newMetaEnv(t)
	get := func(q string) (int, string, string) {
		resp, err := http.Get(e.srv.URL + "/providers/meta/1/webhook?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}
	code, ct, body := get("hub.mode=subscribe&hub.verify_token=verify-101&hub.challenge=12345")
	if code != http.StatusOK || body != "12345" || !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("handshake: %d %q %q", code, ct, body)
	}
	if code, _, _ := get("hub.mode=subscribe&hub.verify_token=verify-202&hub.challenge=12345"); code != http.StatusForbidden {
		t.Fatalf("wrong token: status %d, want 403", code)
	}
}

func TestZAPIWebhookSecretInPathOrHeader(t *testing.T) {
	e := newEnv(t, &fakeDriver{p: event.ProviderZAPI}, Config{})
	e.configure(1, provider.Account{Provider: event.ProviderZAPI, ZAPI: &provider.ZAPICredentials{InstanceID: "inst-1", InstanceToken: "t", ClientToken: "c", WebhookSecret: "s3cret"}})
	if code, b := e.post("/providers/zapi/1/webhook/s3cret", delivery("", "z1", "5511988887777", "oi"), nil); code != http.StatusOK {
		t.Fatalf("secret in path: %d %s", code, b)
	}
	if code, b := e.post("/providers/zapi/1/webhook", delivery("", "z2", "5511988887777", "oi"), map[string]string{HeaderWebhookSecret: "s3cret"}); code != http.StatusOK {
		t.Fatalf("secret in header: %d %s", code, b)
	}
	if code, _ := e.post("/providers/zapi/1/webhook/wrong", delivery("", "z3", "5511988887777", "oi"), nil); code != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d, want 401", code)
	}
	evs := e.events()
	if len(evs) != 2 || evs[0].Provider != event.ProviderZAPI {
		t.Fatalf("stored %v", evs)
	}
}

func mustEncode(t *testing.T, env event.Envelope) []byte {
	t.Helper()
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
