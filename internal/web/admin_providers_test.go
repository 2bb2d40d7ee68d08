package web

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/secretbox"
)

const testCredentialKeys = "t1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

func withCredentialKeys(t *testing.T) func(*Config) {
	k, err := secretbox.Parse(testCredentialKeys)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) { c.CredentialKeys = k }
}

func metaBody(phoneID string) map[string]any {
	return map[string]any{"phone_number_id": phoneID, "waba_id": "102290129340398", "display_phone": "5511999990000",
		"access_token": "EAAG-access-SECRET", "app_secret": "app-SECRET", "verify_token": "verify-SECRET"}
}

func zapiBody(instance string) map[string]any {
	return map[string]any{"instance_id": instance, "instance_token": "instance-SECRET", "client_token": "client-SECRET"}
}

// gatewayResponder answers commands on one provider's gateway subject.
type gatewayResponder struct {
	mu       sync.Mutex
	subjects []string
}

func (g *gatewayResponder) Subjects() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.subjects...)
}

func (e *testEnv) gateway(p event.Provider, answer func(verb event.Verb) event.Reply) *gatewayResponder {
	e.t.Helper()
	g := &gatewayResponder{}
	sub, err := e.nc.Subscribe(event.ProviderCommandWildcard(p), func(msg *nats.Msg) {
		g.mu.Lock()
		g.subjects = append(g.subjects, msg.Subject)
		g.mu.Unlock()
		_, cmd, _ := event.ParseProviderSubject(msg.Subject)
		_, verb, _ := event.ParseSubject(cmd)
		b, _ := json.Marshal(answer(event.Verb(verb)))
		_ = msg.Respond(b)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	_ = e.nc.Flush()
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return g
}

func countSuffix(subjects []string, suffix string) int {
	n := 0
	for _, s := range subjects {
		if strings.HasSuffix(s, suffix) {
			n++
		}
	}
	return n
}

func TestProviderAdminRoutes(t *testing.T) {
	e := newEnv(t, withCredentialKeys(t))
	a, b := e.createMentorado("Ana"), e.createMentorado("Bia")
	fc := e.fakeConnector(defaultAnswer)
	base := fmt.Sprintf("/v1/admin/mentorados/%d/providers", a.ID)
	noSecrets := func(res response) response {
		t.Helper()
		if strings.Contains(string(res.Body), "SECRET") {
			t.Fatalf("answer shows a credential: %s", res.Body)
		}
		return res
	}

	var ov apiProviders
	e.expect(e.do("GET", base, testAdminToken, nil), 200).json(t, &ov)
	if ov.Active == nil || *ov.Active != event.ProviderWeb || ov.Override != nil || len(ov.Providers) != 1 {
		t.Fatalf("new mentorado's providers %+v", ov)
	}
	e.expect(e.do("GET", base, a.Token, nil), 401)
	e.expect(e.do("GET", "/v1/admin/mentorados/999999/providers", testAdminToken, nil), 404)
	e.expect(e.do("PUT", base+"/telegram", testAdminToken, map[string]any{}), 404)

	// Bad bodies: unknown fields 400, a bad field 422 naming it.
	body := metaBody("106540352242922")
	body["extra"] = 1
	e.expect(e.do("PUT", base+"/meta", testAdminToken, body), 400)
	for field, v := range map[string]any{"phone_number_id": "12ab", "waba_id": "", "verify_token": "", "display_phone": "+55"} {
		body := metaBody("106540352242922")
		body[field] = v
		res := noSecrets(e.expect(e.do("PUT", base+"/meta", testAdminToken, body), 422))
		if res.errorCode(t) != codeProviderInvalid || !strings.Contains(string(res.Body), field) {
			t.Fatalf("bad %s: %s", field, res.Body)
		}
	}
	if n := countSuffix(fc.Subjects(), ".cmd.disconnect"); n != 0 {
		t.Fatalf("a refused configuration disconnected the session (%d)", n)
	}

	// Meta configured: it becomes active, the WhatsApp Web session is
	// disconnected first, and commands go to the meta gateway.
	var put apiProviderPut
	noSecrets(e.expect(e.do("PUT", base+"/meta", testAdminToken, metaBody("106540352242922")), 201)).json(t, &put)
	if !put.Created || !put.Active || put.WebhookURL != fmt.Sprintf("/providers/meta/%d/webhook", a.ID) ||
		put.Session == nil || put.Session.State != string(event.StatusDisconnected) {
		t.Fatalf("meta put %+v", put)
	}
	if got := fc.Subjects(); countSuffix(got, fmt.Sprintf("wa.%d.cmd.disconnect", a.ID)) != 1 {
		t.Fatalf("connector commands %v", got)
	}
	noSecrets(e.expect(e.do("GET", base, testAdminToken, nil), 200)).json(t, &ov)
	if *ov.Active != event.ProviderMeta || len(ov.Providers) != 2 || ov.Providers[0].Provider != event.ProviderMeta {
		t.Fatalf("providers after meta %+v", ov)
	}
	// A second PUT replaces it (200), nothing to disconnect any more.
	put = apiProviderPut{}
	noSecrets(e.expect(e.do("PUT", base+"/meta", testAdminToken, metaBody("106540352242922")), 200)).json(t, &put)
	if put.Created || put.Session != nil {
		t.Fatalf("meta replace %+v", put)
	}

	// Command routing: meta's commands reach the meta gateway only.
	e.expect(e.do("GET", "/v1/whatsapp/status?live=true", a.Token, nil), 503) // no gateway running
	res := e.do("GET", "/v1/whatsapp/status?live=true", a.Token, nil)
	if !strings.Contains(string(res.Body), "no provider gateway is running for meta") {
		t.Fatalf("no gateway: %s", res.Body)
	}
	before := len(fc.Subjects())
	mg := e.gateway(event.ProviderMeta, func(verb event.Verb) event.Reply {
		return event.Reply{Status: &event.StatusReply{Status: event.StatusConnected, Phone: "5511999990000", Since: time.Now()}}
	})
	var st statusResponse
	e.expect(e.do("GET", "/v1/whatsapp/status?live=true", a.Token, nil), 200).json(t, &st)
	if st.Status != event.StatusConnected || len(mg.Subjects()) != 1 || mg.Subjects()[0] != event.ProviderCommandSubject(event.ProviderMeta, a.ID, event.VerbStatus) {
		t.Fatalf("status via gateway %+v %v", st, mg.Subjects())
	}
	if len(fc.Subjects()) != before {
		t.Fatalf("the connector got meta's command: %v", fc.Subjects()[before:])
	}
	// B still runs on WhatsApp Web.
	e.expect(e.do("GET", "/v1/whatsapp/status?live=true", b.Token, nil), 200)
	if got := fc.Subjects(); got[len(got)-1] != fmt.Sprintf("wa.%d.cmd.status", b.ID) {
		t.Fatalf("B's status went to %v", got)
	}

	// The same number for another mentorado: 409.
	res = e.expect(e.do("PUT", fmt.Sprintf("/v1/admin/mentorados/%d/providers/meta", b.ID), testAdminToken, metaBody("106540352242922")), 409)
	if res.errorCode(t) != codeProviderTaken {
		t.Fatal(string(res.Body))
	}

	// Z-API: the webhook URL with its secret is shown once; rotation
	// shows a new one.
	put = apiProviderPut{}
	noSecrets(e.expect(e.do("PUT", base+"/zapi", testAdminToken, zapiBody("3C01A2B3")), 201)).json(t, &put)
	prefix := fmt.Sprintf("/providers/zapi/%d/webhook/", a.ID)
	first := put.WebhookURL
	if !strings.HasPrefix(first, prefix) || len(first) != len(prefix)+43 || put.Active || put.Session != nil {
		t.Fatalf("zapi put %+v", put)
	}
	put = apiProviderPut{}
	e.expect(e.do("PUT", base+"/zapi", testAdminToken, zapiBody("3C01A2B3")), 200).json(t, &put)
	if put.WebhookURL != "" {
		t.Fatalf("webhook secret shown again: %+v", put)
	}
	if acc, err := e.s.providers.Account(t.Context(), a.ID, event.ProviderZAPI); err != nil || prefix+acc.ZAPI.WebhookSecret != first {
		t.Fatalf("secret kept across a PUT: %v", err)
	}
	rot := zapiBody("3C01A2B3")
	rot["rotate_webhook_secret"] = true
	put = apiProviderPut{}
	e.expect(e.do("PUT", base+"/zapi", testAdminToken, rot), 200).json(t, &put)
	if !strings.HasPrefix(put.WebhookURL, prefix) || put.WebhookURL == first {
		t.Fatalf("rotated %q, was %q", put.WebhookURL, first)
	}
	e.expect(e.do("GET", base, testAdminToken, nil), 200)
	if res := e.do("GET", base, testAdminToken, nil); strings.Contains(string(res.Body), strings.TrimPrefix(put.WebhookURL, prefix)) {
		t.Fatalf("GET shows the webhook secret: %s", res.Body)
	}

	// Override: unconfigured refused, bad names refused, zapi accepted.
	res = e.expect(e.do("PUT", fmt.Sprintf("/v1/admin/mentorados/%d/providers/active", b.ID), testAdminToken, map[string]any{"provider": "zapi"}), 422)
	if res.errorCode(t) != event.CodeNoProvider {
		t.Fatal(string(res.Body))
	}
	e.expect(e.do("PUT", base+"/active", testAdminToken, map[string]any{"provider": "telegram"}), 422)
	e.expect(e.do("PUT", base+"/active", testAdminToken, map[string]any{"provider": "zapi", "x": 1}), 400)
	ov = apiProviders{}
	e.expect(e.do("PUT", base+"/active", testAdminToken, map[string]any{"provider": "zapi"}), 200).json(t, &ov)
	if *ov.Active != event.ProviderZAPI || *ov.Override != event.ProviderZAPI || ov.Session != nil {
		t.Fatalf("override zapi %+v", ov)
	}
	res = e.expect(e.do("GET", "/v1/whatsapp/status?live=true", a.Token, nil), 503)
	if !strings.Contains(string(res.Body), "no provider gateway is running for zapi") {
		t.Fatalf("zapi without gateway: %s", res.Body)
	}
	// Back to the rule, then delete meta: WhatsApp Web is active again and
	// commands go to the connector.
	ov = apiProviders{}
	e.expect(e.do("PUT", base+"/active", testAdminToken, map[string]any{"provider": nil}), 200).json(t, &ov)
	if *ov.Active != event.ProviderMeta || ov.Override != nil {
		t.Fatalf("override cleared %+v", ov)
	}
	e.expect(e.do("DELETE", base+"/meta", testAdminToken, nil), 204)
	e.expect(e.do("DELETE", base+"/meta", testAdminToken, nil), 404)
	e.expect(e.do("DELETE", base+"/telegram", testAdminToken, nil), 404)
	before = len(fc.Subjects())
	e.expect(e.do("GET", "/v1/whatsapp/status?live=true", a.Token, nil), 200)
	if got := fc.Subjects()[before:]; len(got) != 1 || got[0] != fmt.Sprintf("wa.%d.cmd.status", a.ID) {
		t.Fatalf("after deleting meta the status went to %v", got)
	}
	// Overriding to zapi moves away from WhatsApp Web: disconnected first.
	disc := countSuffix(fc.Subjects(), fmt.Sprintf("wa.%d.cmd.disconnect", a.ID))
	ov = apiProviders{}
	e.expect(e.do("PUT", base+"/active", testAdminToken, map[string]any{"provider": "zapi"}), 200).json(t, &ov)
	if ov.Session == nil || countSuffix(fc.Subjects(), fmt.Sprintf("wa.%d.cmd.disconnect", a.ID)) != disc+1 {
		t.Fatalf("override to zapi did not disconnect: %+v", ov)
	}
	// Deleting whatsapp_web of B (its only provider) leaves none active:
	// commands go to the connector, as before providers.
	e.expect(e.do("DELETE", fmt.Sprintf("/v1/admin/mentorados/%d/providers/whatsapp_web", b.ID), testAdminToken, nil), 204)
	ov = apiProviders{}
	e.expect(e.do("GET", fmt.Sprintf("/v1/admin/mentorados/%d/providers", b.ID), testAdminToken, nil), 200).json(t, &ov)
	if ov.Active != nil || len(ov.Providers) != 0 {
		t.Fatalf("B without providers %+v", ov)
	}
	e.expect(e.do("PUT", fmt.Sprintf("/v1/admin/mentorados/%d/providers/whatsapp_web", b.ID), testAdminToken, nil), 201)

	// No credential reaches the logs.
	for _, leak := range []string{"SECRET", strings.TrimPrefix(first, prefix), strings.TrimPrefix(put.WebhookURL, prefix)} {
		if strings.Contains(e.logs.String(), leak) {
			t.Fatalf("logs show %q", leak)
		}
	}
}

// A notifier whose cached active provider is stale sends to the wrong
// driver; its wrong_provider answer drops the cache and the command is
// sent once more, to the right place.
func TestCommandWrongProviderRetries(t *testing.T) {
	e := newEnv(t, withCredentialKeys(t))
	a := e.createMentorado("Ana")
	fc := e.fakeConnector(defaultAnswer)
	mg := e.gateway(event.ProviderMeta, func(event.Verb) event.Reply {
		return event.Reply{Error: event.NewCommandError(event.CodeWrongProvider, "not this mentorado's provider")}
	})
	e.s.provCache.mu.Lock()
	e.s.provCache.m = map[int64]cachedProvider{a.ID: {p: event.ProviderMeta, at: time.Now().Add(time.Hour)}}
	e.s.provCache.mu.Unlock()
	e.expect(e.do("GET", "/v1/whatsapp/status?live=true", a.Token, nil), 200)
	if len(mg.Subjects()) != 1 || len(fc.Subjects()) != 1 {
		t.Fatalf("gateway %v connector %v", mg.Subjects(), fc.Subjects())
	}
	// Retried once only: a gateway that keeps answering wrong_provider
	// gives the client 503.
	if _, err := e.db.Pool.Exec(t.Context(), `INSERT INTO provider_configs (mentorado_id, provider, settings, credentials, key_id, external_id)
VALUES ($1, 'meta', '{}', '\x00', 't1', '1')`, a.ID); err != nil {
		t.Fatal(err)
	}
	e.s.forgetProvider(a.ID)
	res := e.expect(e.do("GET", "/v1/whatsapp/status?live=true", a.Token, nil), 503)
	if res.errorCode(t) != event.CodeWrongProvider || len(mg.Subjects()) != 3 {
		t.Fatalf("%s after %v", res.Body, mg.Subjects())
	}
}

func TestProviderAdminWithoutKeyring(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	base := fmt.Sprintf("/v1/admin/mentorados/%d/providers", a.ID)
	for _, c := range []struct {
		p    string
		body map[string]any
	}{{"meta", metaBody("1")}, {"zapi", zapiBody("I1")}} {
		res := e.expect(e.do("PUT", base+"/"+c.p, testAdminToken, c.body), 503)
		if !strings.Contains(string(res.Body), "ZAPBUS_CREDENTIALS_KEYS") {
			t.Fatalf("%s: %s", c.p, res.Body)
		}
	}
	e.expect(e.do("PUT", base+"/whatsapp_web", testAdminToken, map[string]any{}), 200)
	e.expect(e.do("GET", base, testAdminToken, nil), 200)
}

// A change of active provider forgets the stored session status (the
// previous provider's), asks a gateway-hosted new provider for its own,
// and a change that keeps the active provider touches nothing.
func TestProviderChangeForgetsStoredStatus(t *testing.T) {
	e := newEnv(t, withCredentialKeys(t))
	a := e.createMentorado("Ana")
	e.fakeConnector(defaultAnswer)
	gw := e.gateway(event.ProviderMeta, func(event.Verb) event.Reply {
		return event.Reply{Status: &event.StatusReply{Status: event.StatusConnected}}
	})
	connected := func() {
		t.Helper()
		if _, err := e.db.Pool.Exec(t.Context(), `UPDATE mentorados SET wa_status = 'connected', wa_phone = '5511912345678',
			wa_status_at = now(), wa_phone_at = now() WHERE id = $1`, a.ID); err != nil {
			t.Fatal(err)
		}
	}
	status := func() statusResponse {
		t.Helper()
		var st statusResponse
		e.expect(e.do("GET", "/v1/whatsapp/status", a.Token, nil), 200).json(t, &st)
		return st
	}
	base := fmt.Sprintf("/v1/admin/mentorados/%d/providers", a.ID)

	connected()
	e.expect(e.do("PUT", base+"/meta", testAdminToken, metaBody("106540352242922")), 201)
	if st := status(); st.Status != event.StatusDisconnected || st.Reason != "active provider changed to meta" || st.Phone != "" {
		t.Fatalf("status after moving to meta %+v", st)
	}
	if n := countSuffix(gw.Subjects(), fmt.Sprintf("wa.%d.cmd.status", a.ID)); n != 1 {
		t.Fatalf("the new provider was asked for its status %d times, want 1", n)
	}

	connected() // what the gateway would have published
	e.expect(e.do("PUT", base+"/meta", testAdminToken, metaBody("106540352242922")), 200)
	if st := status(); st.Status != event.StatusConnected || st.Phone != "5511912345678" {
		t.Fatalf("a replace that keeps meta active changed the status: %+v", st)
	}

	e.expect(e.do("DELETE", base+"/meta", testAdminToken, nil), 204)
	if st := status(); st.Status != event.StatusDisconnected || st.Reason != "active provider changed to whatsapp_web" {
		t.Fatalf("status after meta removed %+v", st)
	}
	if n := countSuffix(gw.Subjects(), ".cmd.status"); n != 1 {
		t.Fatalf("the meta gateway was asked again (%d) after meta was removed", n)
	}
}
