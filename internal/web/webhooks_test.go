package web

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/store"
)

// The webhook tests use literal loopback URLs and allow 127.0.0.0/8, so
// they pass under the real URL policy (which resolves names and refuses
// private addresses) as well as under any stub.
const whURL = "https://127.0.0.1:9/hook"

func newWebhookEnv(t *testing.T, mod ...func(*Config)) *testEnv {
	return newEnv(t, append([]func(*Config){func(c *Config) {
		c.WebhookPolicy.AllowNets = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}}, mod...)...)
}

// webhookListen LISTENs on the dispatchers' channel.
func (e *testEnv) webhookListen() *pgx.Conn {
	e.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, e.db.Pool.Config().ConnConfig.ConnString())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+store.WebhooksChannel); err != nil {
		e.t.Fatal(err)
	}
	return conn
}

func webhookNotified(t *testing.T, conn *pgx.Conn, id int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		t.Fatalf("no NOTIFY for webhook %d: %v", id, err)
	}
	if n.Payload != strconv.FormatInt(id, 10) {
		t.Fatalf("NOTIFY %q, want %d", n.Payload, id)
	}
}

func (e *testEnv) createWebhook(prefix, token string, body any) apiWebhook {
	e.t.Helper()
	var w apiWebhook
	e.expect(e.do("POST", prefix, token, body), 201).json(e.t, &w)
	return w
}

func (e *testEnv) insertDelivery(webhook, m int64, deliveryID string, seq int64, outcome string, status int) {
	e.t.Helper()
	_, err := e.db.Pool.Exec(context.Background(), `
INSERT INTO webhook_deliveries (webhook_id, delivery_id, event_id, event_type, mentorado_id, stream_seq, attempt, outcome,
	status_code, latency_ms, error)
VALUES ($1, $2, $3, 'message', $4, $5, 1, $6, nullif($7, 0), 12, CASE WHEN $6 = 'delivered' THEN '' WHEN $7 = 0 THEN 'connection refused' ELSE 'HTTP ' || $7 END)`,
		webhook, deliveryID, fmt.Sprintf("%d:msg:%s", m, deliveryID), m, seq, outcome, status)
	if err != nil {
		e.t.Fatalf("insert delivery: %v", err)
	}
}

// TestWebhookRoutes walks every route of a tenant's endpoint, with the
// NOTIFY each change sends to the dispatchers.
func TestWebhookRoutes(t *testing.T) {
	e := newWebhookEnv(t)
	a := e.createMentorado("Ana")
	ln := e.webhookListen()

	w := e.createWebhook("/v1/webhooks", a.Token, map[string]any{"url": whURL, "event_types": []string{"message", "lead", "message"},
		"description": "CRM"})
	webhookNotified(t, ln, w.ID)
	if !strings.HasPrefix(w.Secret, "whsec_") || len(w.Secret) < 40 || w.State != "active" || w.Generation != 1 ||
		!slices.Equal(w.EventTypes, []string{"lead", "message"}) || w.Description != "CRM" || w.URL != whURL ||
		time.Since(w.StartTime) > time.Minute || w.Health.ConsecutiveFailures != 0 {
		t.Fatalf("created %+v", w)
	}
	var dbSecret string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT secret FROM webhooks WHERE id = $1`, w.ID).Scan(&dbSecret); err != nil || dbSecret != w.Secret {
		t.Fatalf("stored secret %q (%v)", dbSecret, err)
	}
	from := time.Now().Add(-48 * time.Hour).UTC().Truncate(time.Second)
	w2 := e.createWebhook("/v1/webhooks", a.Token, map[string]any{"url": whURL + "2", "event_types": []string{"connection"},
		"start": from.Format(time.RFC3339)})
	webhookNotified(t, ln, w2.ID)
	if !w2.StartTime.Equal(from) {
		t.Fatalf("start %v, want %v", w2.StartTime, from)
	}

	// List (paged) and get: never the secret.
	res := e.expect(e.do("GET", "/v1/webhooks?limit=1", a.Token, nil), 200)
	if strings.Contains(string(res.Body), "whsec_") || strings.Contains(string(res.Body), `"secret"`) {
		t.Fatalf("list shows a secret: %s", res.Body)
	}
	var list webhookListResponse
	res.json(t, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != w.ID || list.NextAfter == "" {
		t.Fatalf("page 1 %+v", list)
	}
	after := list.NextAfter
	list = webhookListResponse{}
	e.expect(e.do("GET", "/v1/webhooks?after="+after, a.Token, nil), 200).json(t, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != w2.ID || list.NextAfter != "" {
		t.Fatalf("page 2 %+v", list)
	}
	path := "/v1/webhooks/" + itoa(w.ID)
	res = e.expect(e.do("GET", path, a.Token, nil), 200)
	if strings.Contains(string(res.Body), "whsec_") {
		t.Fatalf("get shows the secret: %s", res.Body)
	}

	// Patch: the description alone keeps the position; new event types
	// restart from now.
	var got apiWebhook
	e.expect(e.do("PATCH", path, a.Token, map[string]any{"description": "CRM 2"}), 200).json(t, &got)
	webhookNotified(t, ln, w.ID)
	if got.Description != "CRM 2" || got.Generation != 1 || !got.StartTime.Equal(w.StartTime) || got.Secret != "" {
		t.Fatalf("patched description %+v", got)
	}
	e.expect(e.do("PATCH", path, a.Token, map[string]any{"event_types": []string{"message", "receipt"}, "url": whURL + "?v=2"}), 200).json(t, &got)
	webhookNotified(t, ln, w.ID)
	if got.Generation != 1 || !got.StartTime.Equal(w.StartTime) || !slices.Equal(got.EventTypes, []string{"message", "receipt"}) || got.URL != whURL+"?v=2" {
		t.Fatalf("patched types %+v", got)
	}

	// Rotate: the new secret once; the old one signs for 24 h more.
	var rot apiWebhook
	e.expect(e.do("POST", path+"/rotate-secret", a.Token, nil), 200).json(t, &rot)
	webhookNotified(t, ln, w.ID)
	if !strings.HasPrefix(rot.Secret, "whsec_") || rot.Secret == w.Secret || rot.PreviousSecretUntil == nil ||
		time.Until(*rot.PreviousSecretUntil) < 23*time.Hour {
		t.Fatalf("rotated %+v", rot)
	}
	e.expect(e.do("GET", path, a.Token, nil), 200).json(t, &got)
	if got.Secret != "" || got.PreviousSecretUntil == nil {
		t.Fatalf("after rotate %+v", got)
	}

	// Pause, resume.
	e.expect(e.do("POST", path+"/pause", a.Token, nil), 200).json(t, &got)
	webhookNotified(t, ln, w.ID)
	if got.State != "paused" || got.StateReason != "paused by user" {
		t.Fatalf("paused %+v", got)
	}
	if _, err := e.db.Pool.Exec(context.Background(), `UPDATE webhooks SET consecutive_failures = 7, failing_since = now(),
		last_failure_at = now() WHERE id = $1`, w.ID); err != nil {
		t.Fatal(err)
	}
	e.expect(e.do("GET", path, a.Token, nil), 200).json(t, &got)
	if got.Health.ConsecutiveFailures != 7 || got.Health.FailingSince == nil || got.Health.LastFailureAt == nil {
		t.Fatalf("health %+v", got.Health)
	}
	e.expect(e.do("POST", path+"/resume", a.Token, nil), 200).json(t, &got)
	webhookNotified(t, ln, w.ID)
	if got.State != "active" || got.StateReason != "" || got.Health.ConsecutiveFailures != 0 || got.Health.FailingSince != nil ||
		got.Health.LastFailureAt == nil {
		t.Fatalf("resumed %+v", got)
	}

	// The delivery log: newest first, paged, by outcome.
	e.insertDelivery(w.ID, a.ID, "msg_1", 40, "retry", 500)
	e.insertDelivery(w.ID, a.ID, "msg_1", 40, "delivered", 200)
	e.insertDelivery(w.ID, a.ID, "msg_2", 41, "dead", 0)
	var log webhookDeliveriesResponse
	e.expect(e.do("GET", path+"/deliveries?limit=2", a.Token, nil), 200).json(t, &log)
	if len(log.Deliveries) != 2 || log.Deliveries[0].DeliveryID != "msg_2" || log.Deliveries[0].StatusCode != nil ||
		log.Deliveries[1].Outcome != "delivered" || *log.Deliveries[1].StatusCode != 200 || log.NextBefore == "" {
		t.Fatalf("log page 1 %+v", log)
	}
	before := log.NextBefore
	log = webhookDeliveriesResponse{}
	e.expect(e.do("GET", path+"/deliveries?before="+before, a.Token, nil), 200).json(t, &log)
	if log.NextBefore != "" {
		t.Fatalf("last page has next_before %q", log.NextBefore)
	}
	if len(log.Deliveries) != 1 || log.Deliveries[0].Outcome != "retry" || log.Deliveries[0].Error != "HTTP 500" ||
		log.Deliveries[0].Sequence != 40 || log.Deliveries[0].LatencyMS != 12 || log.Deliveries[0].EventType != "message" {
		t.Fatalf("log page 2 %+v", log)
	}
	e.expect(e.do("GET", path+"/deliveries?outcome=dead", a.Token, nil), 200).json(t, &log)
	if len(log.Deliveries) != 1 || log.Deliveries[0].DeliveryID != "msg_2" {
		t.Fatalf("dead %+v", log)
	}

	// Redeliver from a delivery, a sequence, a time.
	e.expect(e.do("POST", path+"/redeliver", a.Token, map[string]any{"from_delivery_id": "msg_1"}), 202).json(t, &got)
	webhookNotified(t, ln, w.ID)
	if got.Generation != 2 || got.StartSeq == nil || *got.StartSeq != 40 {
		t.Fatalf("redeliver from delivery %+v", got)
	}
	e.expect(e.do("POST", path+"/redeliver", a.Token, map[string]any{"from_sequence": 7}), 202).json(t, &got)
	webhookNotified(t, ln, w.ID)
	if got.Generation != 3 || *got.StartSeq != 7 {
		t.Fatalf("redeliver from sequence %+v", got)
	}
	got = apiWebhook{}
	e.expect(e.do("POST", path+"/redeliver", a.Token, map[string]any{"from_time": from.Format(time.RFC3339)}), 202).json(t, &got)
	webhookNotified(t, ln, w.ID)
	if got.Generation != 4 || got.StartSeq != nil || !got.StartTime.Equal(from) {
		t.Fatalf("redeliver from time %+v", got)
	}

	// Delete.
	e.expect(e.do("DELETE", path, a.Token, nil), 204)
	webhookNotified(t, ln, w.ID)
	e.expect(e.do("GET", path, a.Token, nil), 404)
	e.expect(e.do("GET", path+"/deliveries", a.Token, nil), 404)
}

// TestWebhookBadInput: every refusal is a 4xx with the API's error shape
// and names what is wrong.
func TestWebhookBadInput(t *testing.T) {
	e := newWebhookEnv(t, func(c *Config) { c.MaxWebhooks = 2 })
	a := e.createMentorado("Ana")
	ok := map[string]any{"url": whURL, "event_types": []string{"message"}}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for k, v := range ok {
			m[k] = v
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name   string
		body   any
		status int
		code   string
		says   string
	}{
		{"malformed JSON", `{"url":`, 400, codeBadJSON, "malformed"},
		{"unknown field", `{"url":"` + whURL + `","event_types":["message"],"secret":"mine"}`, 400, codeBadJSON, "secret"},
		{"no url", with("url", nil), 422, codeWebhookInvalid, "url"},
		{"relative url", with("url", "/hook"), 422, codeWebhookInvalid, "url"},
		{"http without AllowHTTP", with("url", "http://127.0.0.1:9/hook"), 422, codeWebhookInvalid, "https"},
		{"no event types", with("event_types", nil), 422, codeWebhookInvalid, "event_types"},
		{"empty event types", with("event_types", []string{}), 422, codeWebhookInvalid, "event_types"},
		{"unknown event type", with("event_types", []string{"message", "sms"}), 422, codeWebhookInvalid, `\"sms\"`},
		{"qr is not delivered", with("event_types", []string{"qr"}), 422, codeWebhookInvalid, `\"qr\"`},
		{"start in the future", with("start", time.Now().Add(time.Hour).Format(time.RFC3339)), 422, codeWebhookInvalid, "future"},
		{"start too old", with("start", time.Now().Add(-8*24*time.Hour).Format(time.RFC3339)), 422, codeWebhookInvalid, "7 days"},
		{"start not a time", with("start", "yesterday"), 422, codeWebhookInvalid, "RFC 3339"},
		{"description too long", with("description", strings.Repeat("x", 501)), 422, codeWebhookInvalid, "description"},
	} {
		res := e.do("POST", "/v1/webhooks", a.Token, c.body)
		if res.Status != c.status || res.errorCode(t) != c.code || !strings.Contains(string(res.Body), c.says) {
			t.Errorf("%s: %d %s, want %d %s mentioning %s", c.name, res.Status, res.Body, c.status, c.code, c.says)
		}
	}

	w := e.createWebhook("/v1/webhooks", a.Token, ok)
	path := "/v1/webhooks/" + itoa(w.ID)
	for _, c := range []struct {
		name         string
		method, path string
		body         any
		status       int
		code         string
	}{
		{"patch malformed", "PATCH", path, `{`, 400, codeBadJSON},
		{"patch unknown type", "PATCH", path, map[string]any{"event_types": []string{"nope"}}, 422, codeWebhookInvalid},
		{"patch empty types", "PATCH", path, map[string]any{"event_types": []string{}}, 422, codeWebhookInvalid},
		{"patch http url", "PATCH", path, map[string]any{"url": "http://127.0.0.1/"}, 422, codeWebhookInvalid},
		{"redeliver none", "POST", path + "/redeliver", map[string]any{}, 422, codeWebhookInvalid},
		{"redeliver two", "POST", path + "/redeliver", map[string]any{"from_sequence": 3, "from_time": time.Now().Format(time.RFC3339)}, 422, codeWebhookInvalid},
		{"redeliver unknown delivery", "POST", path + "/redeliver", map[string]any{"from_delivery_id": "msg_nope"}, 404, codeNotFound},
		{"redeliver sequence 0", "POST", path + "/redeliver", map[string]any{"from_sequence": 0}, 422, codeWebhookInvalid},
		{"redeliver future", "POST", path + "/redeliver", map[string]any{"from_time": time.Now().Add(time.Hour).Format(time.RFC3339)}, 422, codeWebhookInvalid},
		{"redeliver malformed", "POST", path + "/redeliver", `{"from_sequence":"x"}`, 400, codeBadJSON},
		{"bad outcome", "GET", path + "/deliveries?outcome=ok", nil, 400, codeBadRequest},
		{"bad before", "GET", path + "/deliveries?before=x", nil, 400, codeBadRequest},
		{"bad limit", "GET", "/v1/webhooks?limit=0", nil, 400, codeBadRequest},
		{"bad after", "GET", "/v1/webhooks?after=-1", nil, 400, codeBadRequest},
		{"id not a number", "GET", "/v1/webhooks/abc", nil, 404, codeNotFound},
		{"no such id", "POST", "/v1/webhooks/999999999/pause", nil, 404, codeNotFound},
	} {
		if res := e.do(c.method, c.path, a.Token, c.body); res.Status != c.status || res.errorCode(t) != c.code {
			t.Errorf("%s: %d %s, want %d %s", c.name, res.Status, res.Body, c.status, c.code)
		}
	}

	// The limit per mentorado.
	e.createWebhook("/v1/webhooks", a.Token, ok)
	if res := e.do("POST", "/v1/webhooks", a.Token, ok); res.Status != 409 || res.errorCode(t) != codeWebhookLimit {
		t.Fatalf("third endpoint: %d %s", res.Status, res.Body)
	}
	// Other mentorados have their own.
	b := e.createMentorado("Bia")
	e.createWebhook("/v1/webhooks", b.Token, ok)

	// With AllowHTTP, http is fine.
	e2 := newWebhookEnv(t, func(c *Config) { c.WebhookPolicy.AllowHTTP = true })
	c := e2.createMentorado("Cid")
	e2.createWebhook("/v1/webhooks", c.Token, with("url", "http://127.0.0.1:9/hook"))
}

// TestWebhookPrivateAddressRefused: the URL policy is applied when an
// endpoint is saved.
func TestWebhookPrivateAddressRefused(t *testing.T) {
	e := newWebhookEnv(t)
	a := e.createMentorado("Ana")
	for _, u := range []string{"https://10.0.0.1/hook", "https://169.254.169.254/latest/meta-data", "https://[::1]/hook",
		"https://192.168.1.10/hook", "https://user:pw@127.0.0.1/hook"} {
		res := e.do("POST", "/v1/webhooks", a.Token, map[string]any{"url": u, "event_types": []string{"message"}})
		if res.Status != 422 || res.errorCode(t) != codeWebhookInvalid {
			t.Errorf("%s: %d %s, want 422", u, res.Status, res.Body)
		}
	}
	w := e.createWebhook("/v1/webhooks", a.Token, map[string]any{"url": whURL, "event_types": []string{"message"}})
	if res := e.do("PATCH", "/v1/webhooks/"+itoa(w.ID), a.Token, map[string]any{"url": "https://10.0.0.1/hook"}); res.Status != 422 {
		t.Errorf("patch to a private address: %d %s", res.Status, res.Body)
	}
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM webhooks WHERE url LIKE '%10.0.0.1%'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d private endpoints stored (%v)", n, err)
	}
}

// TestWebhookIsolation: a tenant reaches only its own endpoints, the admin
// routes only the admin-level ones; everything else is 404, not 403.
func TestWebhookIsolation(t *testing.T) {
	e := newWebhookEnv(t)
	a, b := e.createMentorado("Ana"), e.createMentorado("Bia")
	body := map[string]any{"url": whURL, "event_types": []string{"message"}}
	wa := e.createWebhook("/v1/webhooks", a.Token, body)
	wadm := e.createWebhook("/v1/admin/webhooks", testAdminToken, body)
	e.insertDelivery(wa.ID, a.ID, "msg_a", 5, "delivered", 200)

	// The admin-level endpoint works under the admin routes.
	var got apiWebhook
	e.expect(e.do("POST", "/v1/admin/webhooks/"+itoa(wadm.ID)+"/pause", testAdminToken, nil), 200).json(t, &got)
	if got.State != "paused" {
		t.Fatalf("admin pause %+v", got)
	}
	var list webhookListResponse
	e.expect(e.do("GET", "/v1/admin/webhooks", testAdminToken, nil), 200).json(t, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != wadm.ID {
		t.Fatalf("admin lists %+v", list)
	}
	e.expect(e.do("GET", "/v1/webhooks", b.Token, nil), 200).json(t, &list)
	if len(list.Webhooks) != 0 {
		t.Fatalf("b lists %+v", list)
	}
	e.expect(e.do("GET", "/v1/webhooks", a.Token, nil), 200).json(t, &list)
	if len(list.Webhooks) != 1 || list.Webhooks[0].ID != wa.ID {
		t.Fatalf("a lists %+v", list)
	}

	type call struct{ method, suffix string }
	calls := []call{{"GET", ""}, {"PATCH", ""}, {"POST", "/rotate-secret"}, {"POST", "/pause"}, {"POST", "/resume"},
		{"GET", "/deliveries"}, {"POST", "/redeliver"}, {"DELETE", ""}}
	bodyOf := func(c call) any {
		switch {
		case c.method == "PATCH":
			return map[string]any{"description": "mine now"}
		case c.suffix == "/redeliver":
			return map[string]any{"from_delivery_id": "msg_a"}
		}
		return nil
	}
	for _, c := range calls {
		for _, x := range []struct {
			who, prefix, token string
			id                 int64
		}{
			{"b on a's", "/v1/webhooks/", b.Token, wa.ID},
			{"a on the admin-level", "/v1/webhooks/", a.Token, wadm.ID},
			{"admin route on a's", "/v1/admin/webhooks/", testAdminToken, wa.ID},
		} {
			res := e.do(c.method, x.prefix+itoa(x.id)+c.suffix, x.token, bodyOf(c))
			if res.Status != 404 || res.errorCode(t) != codeNotFound {
				t.Errorf("%s: %s %s: %d %s, want 404", x.who, c.method, c.suffix, res.Status, res.Body)
			}
		}
	}
	// A tenant token on the admin routes, the admin token on the tenant ones.
	e.expect(e.do("GET", "/v1/admin/webhooks", a.Token, nil), 401)
	e.expect(e.do("GET", "/v1/webhooks", testAdminToken, nil), 401)
	e.expect(e.do("GET", "/v1/webhooks", "", nil), 401)

	// Nothing changed.
	e.expect(e.do("GET", "/v1/webhooks/"+itoa(wa.ID), a.Token, nil), 200).json(t, &got)
	if got.Description != "" || got.Generation != 1 || got.State != "active" || got.PreviousSecretUntil != nil {
		t.Fatalf("a's endpoint changed: %+v", got)
	}
	e.expect(e.do("GET", "/v1/admin/webhooks/"+itoa(wadm.ID), testAdminToken, nil), 200).json(t, &got)
	if got.State != "paused" || got.Generation != 1 {
		t.Fatalf("admin endpoint changed: %+v", got)
	}
	var mid *int64
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT mentorado_id FROM webhooks WHERE id = $1`, wadm.ID).Scan(&mid); err != nil || mid != nil {
		t.Fatalf("admin-level endpoint has mentorado %v (%v)", mid, err)
	}
	// Every admin action works on its own endpoint.
	for _, c := range calls {
		want := 200
		switch c.suffix {
		case "/redeliver":
			want = 202
		}
		if c.method == "DELETE" {
			want = 204
		}
		b := bodyOf(c)
		if c.suffix == "/redeliver" {
			b = map[string]any{"from_sequence": 1}
		}
		e.expect(e.do(c.method, "/v1/admin/webhooks/"+itoa(wadm.ID)+c.suffix, testAdminToken, b), want)
	}
}

// TestWebhookSecretsNeverLogged: the secrets are in the answers of create
// and rotate only, and in no log line.
func TestWebhookSecretsNeverLogged(t *testing.T) {
	e := newWebhookEnv(t)
	a := e.createMentorado("Ana")
	w := e.createWebhook("/v1/webhooks", a.Token, map[string]any{"url": whURL + "?token=receiver-secret-123", "event_types": []string{"message"}})
	adm := e.createWebhook("/v1/admin/webhooks", testAdminToken, map[string]any{"url": whURL, "event_types": []string{"lead"}})
	path := "/v1/webhooks/" + itoa(w.ID)
	var rot, rotAdm apiWebhook
	e.expect(e.do("POST", path+"/rotate-secret", a.Token, nil), 200).json(t, &rot)
	e.expect(e.do("POST", "/v1/admin/webhooks/"+itoa(adm.ID)+"/rotate-secret", testAdminToken, nil), 200).json(t, &rotAdm)
	secrets := []string{w.Secret, adm.Secret, rot.Secret, rotAdm.Secret}
	for _, s := range secrets {
		if !strings.HasPrefix(s, "whsec_") {
			t.Fatalf("secret %q", s)
		}
	}
	for _, p := range []string{path, "/v1/webhooks", path + "/deliveries"} {
		body := string(e.expect(e.do("GET", p, a.Token, nil), 200).Body)
		for _, s := range secrets {
			if strings.Contains(body, s) || strings.Contains(body, "whsec_") {
				t.Fatalf("GET %s shows a secret: %s", p, body)
			}
		}
	}
	for _, p := range []string{"/pause", "/resume"} {
		if body := string(e.expect(e.do("POST", path+p, a.Token, nil), 200).Body); strings.Contains(body, "whsec_") {
			t.Fatalf("%s shows a secret: %s", p, body)
		}
	}
	e.expect(e.do("PATCH", path, a.Token, map[string]any{"url": whURL + "?token=receiver-secret-456"}), 200)
	e.expect(e.do("DELETE", path, a.Token, nil), 204)

	logs := e.logs.String()
	if !strings.Contains(logs, "webhook created") || !strings.Contains(logs, "webhook secret rotated") {
		t.Fatalf("log capture is not working: %q", logs)
	}
	for _, s := range append(secrets, "receiver-secret-123", "receiver-secret-456") {
		if strings.Contains(logs, s) || strings.Contains(logs, s[:16]) {
			t.Errorf("log contains secret %q", s)
		}
	}
}

// TestWebhookPolicyFromEnv: the policy settings parse, and a bad one is an
// error that names the variable.
func TestWebhookPolicyFromEnv(t *testing.T) {
	env := func(kv map[string]string) (Config, error) {
		var c Config
		c.AdminToken = testAdminToken
		c.Flags(flag.NewFlagSet("notifier", flag.ContinueOnError), config.NewEnv(func(k string) string { return kv[k] }))
		return c, c.Validate()
	}
	c, err := env(map[string]string{"ZAPBUS_WEBHOOK_ALLOW_NETS": "127.0.0.0/8, 10.1.2.3 ,fd00::/8", "ZAPBUS_WEBHOOK_ALLOW_HTTP": "true"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.1.2.3/32"), netip.MustParsePrefix("fd00::/8")}
	if !slices.Equal(c.WebhookPolicy.AllowNets, want) || !c.WebhookPolicy.AllowHTTP || c.MaxWebhooks != 20 {
		t.Fatalf("policy %+v, max %d", c.WebhookPolicy, c.MaxWebhooks)
	}
	if c, err := env(nil); err != nil || len(c.WebhookPolicy.AllowNets) != 0 || c.WebhookPolicy.AllowHTTP {
		t.Fatalf("default policy %+v (%v)", c.WebhookPolicy, err)
	}
	for k, v := range map[string]string{"ZAPBUS_WEBHOOK_ALLOW_NETS": "10.0.0.0/33", "ZAPBUS_WEBHOOK_ALLOW_HTTP": "sure"} {
		if _, err := env(map[string]string{k: v}); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, v, err)
		}
	}
}

// webhookTenantWalk walks every tenant webhook route with A's token through
// do (which may also put B's id somewhere in the request: the shared
// isolation and guard tests): B's endpoint is unknown to A, A's own
// endpoint works, and B's is unchanged afterwards. It marks the route
// patterns it walked in covered.
func (e *testEnv) webhookTenantWalk(t *testing.T, a, b tenant, do func(method, path string, body map[string]any) response, covered map[string]bool) {
	t.Helper()
	ctx := context.Background()
	insert := func(m int64, url, desc string) (id int64, secret string) {
		t.Helper()
		if err := e.db.Pool.QueryRow(ctx, `INSERT INTO webhooks (mentorado_id, url, description, event_types, secret)
			VALUES ($1, $2, $3, '{message}', 'whsec_' || md5(random()::text)) RETURNING id, secret`, m, url, desc).Scan(&id, &secret); err != nil {
			t.Fatal(err)
		}
		return id, secret
	}
	bw, bSecret := insert(b.ID, "https://127.0.0.1:9/B-only-hook", "B-only endpoint")
	e.insertDelivery(bw, b.ID, "B-only-delivery", 3, "delivered", 200)
	aw, _ := insert(a.ID, whURL, "")
	e.insertDelivery(aw, a.ID, "A-delivery", 2, "delivered", 200)

	check := func(method, path string, body map[string]any, want ...int) response {
		t.Helper()
		res := do(method, path, body)
		for _, leak := range []string{"B-only", bSecret} {
			if strings.Contains(string(res.Body), leak) {
				t.Fatalf("%s %s leaked B's endpoint: %s", method, path, res.Body)
			}
		}
		// A body with B's id in it is refused as unknown fields.
		if !slices.Contains(want, res.Status) && !(body != nil && res.Status == 400 && res.errorCode(t) == codeBadJSON) {
			t.Fatalf("%s %s: %d %s, want %v", method, path, res.Status, res.Body, want)
		}
		return res
	}
	mark := func(method, suffix string) { covered[method+" /v1/webhooks"+suffix] = true }

	if res := check("POST", "/v1/webhooks", map[string]any{"url": whURL, "event_types": []string{"lead"}}, 201); res.Status == 201 {
		var w apiWebhook
		res.json(t, &w)
		var owner *int64
		if err := e.db.Pool.QueryRow(ctx, `SELECT mentorado_id FROM webhooks WHERE id = $1`, w.ID).Scan(&owner); err != nil || owner == nil || *owner != a.ID {
			t.Fatalf("A's new endpoint belongs to %v (%v)", owner, err)
		}
	}
	mark("POST", "")
	var list webhookListResponse
	check("GET", "/v1/webhooks", nil, 200).json(t, &list)
	for _, w := range list.Webhooks {
		if w.ID == bw {
			t.Fatalf("A lists B's endpoint")
		}
	}
	mark("GET", "")

	bodies := map[string]map[string]any{
		"PATCH ":              {"description": "A's now"},
		"POST /redeliver":     {"from_delivery_id": "B-only-delivery"},
		"POST /pause":         nil,
		"POST /resume":        nil,
		"POST /rotate-secret": nil,
		"GET ":                nil,
		"GET /deliveries":     nil,
	}
	for k, body := range bodies {
		method, suffix, _ := strings.Cut(k, " ")
		check(method, "/v1/webhooks/"+itoa(bw)+suffix, body, 404)
		mark(method, "/{id}"+suffix)
		want := 200
		if suffix == "/redeliver" {
			body = map[string]any{"from_delivery_id": "A-delivery"}
			want = 202
		}
		check(method, "/v1/webhooks/"+itoa(aw)+suffix, body, want)
	}
	check("DELETE", "/v1/webhooks/"+itoa(bw), nil, 404)
	check("DELETE", "/v1/webhooks/"+itoa(aw), nil, 204)
	mark("DELETE", "/{id}")

	var desc, secret, state string
	var gen int
	if err := e.db.Pool.QueryRow(ctx, `SELECT description, secret, state, generation FROM webhooks WHERE id = $1`, bw).
		Scan(&desc, &secret, &state, &gen); err != nil || desc != "B-only endpoint" || secret != bSecret || state != "active" || gen != 1 {
		t.Fatalf("B's endpoint changed: %q %v %s %d (%v)", desc, secret == bSecret, state, gen, err)
	}
}
