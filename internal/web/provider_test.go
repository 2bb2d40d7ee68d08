package web

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// Provider rows for tests. The route never opens credentials, so the
// sealed bytes are a recognisable dummy; the settings carry a key that is
// not public (as a careless writer might store) to show it is filtered.
var (
	metaSealed = []byte("SEALED-META-CREDENTIALS-secret-bytes")
	zapiSealed = []byte("SEALED-ZAPI-CREDENTIALS-secret-bytes")
)

const providerKeyID = "key-2026-11-secret-id"

func (e *testEnv) putMeta(m int64, phoneNumberID, wabaID, display string) {
	e.t.Helper()
	settings, _ := json.Marshal(map[string]string{"phone_number_id": phoneNumberID, "waba_id": wabaID,
		"display_phone": display, "access_token": "EAAG-secret-access-token"})
	if err := e.db.Providers().Put(e.t.Context(), store.ProviderRow{MentoradoID: m, Provider: event.ProviderMeta,
		Settings: settings, Sealed: metaSealed, KeyID: providerKeyID, ExternalID: phoneNumberID}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) putZAPI(m int64, instance string) {
	e.t.Helper()
	settings, _ := json.Marshal(map[string]string{"instance_id": instance, "webhook_secret": "zapi-secret-webhook"})
	if err := e.db.Providers().Put(e.t.Context(), store.ProviderRow{MentoradoID: m, Provider: event.ProviderZAPI,
		Settings: settings, Sealed: zapiSealed, KeyID: providerKeyID, ExternalID: instance}); err != nil {
		e.t.Fatal(err)
	}
}

// getProvider reads GET /v1/whatsapp/provider as token and checks that no
// credential, key id or non-public setting is in the answer.
func (e *testEnv) getProvider(t *testing.T, token string) providerResponse {
	t.Helper()
	res := e.expect(e.do("GET", "/v1/whatsapp/provider", token, nil), 200)
	for _, sealed := range [][]byte{metaSealed, zapiSealed} {
		for _, form := range []string{string(sealed), base64.StdEncoding.EncodeToString(sealed), hex.EncodeToString(sealed)} {
			if bytes.Contains(res.Body, []byte(form)) {
				t.Fatalf("the answer carries sealed credentials: %s", res.Body)
			}
		}
	}
	for _, leak := range []string{providerKeyID, "secret", "access_token", "webhook_secret", "key_id", "credentials", "sealed"} {
		if strings.Contains(string(res.Body), leak) {
			t.Fatalf("the answer carries %q: %s", leak, res.Body)
		}
	}
	var pr providerResponse
	res.json(t, &pr)
	var raw map[string]json.RawMessage
	res.json(t, &raw)
	if _, ok := raw["active"]; !ok {
		t.Fatalf("no active field (null when none): %s", res.Body)
	}
	return pr
}

func activeOf(pr providerResponse) event.Provider {
	if pr.Active == nil {
		return ""
	}
	return *pr.Active
}

func providersOf(pr providerResponse) []string {
	var out []string
	for _, p := range pr.Providers {
		s := string(p.Provider)
		if p.Active {
			s += "*"
		}
		out = append(out, s)
	}
	return out
}

// TestProviderRoute: GET /v1/whatsapp/provider shows the active provider
// by the priority rule (meta > whatsapp_web > zapi) unless the operator's
// override names a configured one, each configured provider's public
// settings and webhook health, and never its credentials.
func TestProviderRoute(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	ctx := t.Context()
	pq := e.db.Providers()

	// A new mentorado runs on WhatsApp Web.
	pr := e.getProvider(t, a.Token)
	if activeOf(pr) != event.ProviderWeb || strings.Join(providersOf(pr), ",") != "whatsapp_web*" {
		t.Fatalf("new mentorado: %+v", pr)
	}
	if p := pr.Providers[0]; len(p.Settings) != 0 || p.Webhook != nil {
		t.Fatalf("whatsapp_web shows settings or webhook health: %+v", p)
	}

	// Meta configured: it wins over WhatsApp Web.
	e.putMeta(a.ID, "106540352242922", "102290129340398", "5511955554444")
	pr = e.getProvider(t, a.Token)
	if activeOf(pr) != event.ProviderMeta || strings.Join(providersOf(pr), ",") != "meta*,whatsapp_web" {
		t.Fatalf("meta configured: %v", providersOf(pr))
	}
	meta := pr.Providers[0]
	want := map[string]string{"phone_number_id": "106540352242922", "waba_id": "102290129340398", "display_phone": "5511955554444"}
	if len(meta.Settings) != len(want) {
		t.Fatalf("meta settings %v, want %v", meta.Settings, want)
	}
	for k, v := range want {
		if meta.Settings[k] != v {
			t.Fatalf("meta settings %v, want %v", meta.Settings, want)
		}
	}
	if meta.Webhook == nil || meta.Webhook.LastAt != nil || meta.Webhook.LastError != nil || meta.Webhook.LastErrorAt != nil {
		t.Fatalf("meta before any webhook: %+v", meta.Webhook)
	}
	res := e.expect(e.do("GET", "/v1/whatsapp/provider", a.Token, nil), 200)
	if !strings.Contains(string(res.Body), `"webhook":{"last_at":null,"last_error":null,"last_error_at":null}`) {
		t.Fatalf("webhook health without webhooks is not all null: %s", res.Body)
	}

	// Webhook health as the gateway records it.
	if err := pq.MarkWebhook(ctx, a.ID, event.ProviderMeta, ""); err != nil {
		t.Fatal(err)
	}
	if err := pq.MarkWebhook(ctx, a.ID, event.ProviderMeta, "entry for another phone_number_id dropped"); err != nil {
		t.Fatal(err)
	}
	pr = e.getProvider(t, a.Token)
	wh := pr.Providers[0].Webhook
	if wh == nil || wh.LastAt == nil || wh.LastError == nil || *wh.LastError != "entry for another phone_number_id dropped" ||
		wh.LastErrorAt == nil || wh.LastErrorAt.Before(*wh.LastAt) {
		t.Fatalf("webhook health %+v", wh)
	}

	// Z-API too: Meta stays active; the override picks Z-API.
	e.putZAPI(a.ID, "3C4A5B6D7E8F")
	pr = e.getProvider(t, a.Token)
	if activeOf(pr) != event.ProviderMeta || strings.Join(providersOf(pr), ",") != "meta*,whatsapp_web,zapi" {
		t.Fatalf("three configured: %v", providersOf(pr))
	}
	if z := pr.Providers[2]; len(z.Settings) != 1 || z.Settings["instance_id"] != "3C4A5B6D7E8F" || z.Webhook == nil {
		t.Fatalf("zapi %+v", z)
	}
	if err := pq.SetOverride(ctx, a.ID, event.ProviderZAPI); err != nil {
		t.Fatal(err)
	}
	if pr = e.getProvider(t, a.Token); activeOf(pr) != event.ProviderZAPI || strings.Join(providersOf(pr), ",") != "meta,whatsapp_web,zapi*" {
		t.Fatalf("override zapi: %v", providersOf(pr))
	}
	// An override naming a provider no longer configured falls back to
	// the priority rule.
	if _, err := pq.Delete(ctx, a.ID, event.ProviderZAPI); err != nil {
		t.Fatal(err)
	}
	if pr = e.getProvider(t, a.Token); activeOf(pr) != event.ProviderMeta || strings.Join(providersOf(pr), ",") != "meta*,whatsapp_web" {
		t.Fatalf("override of a deleted provider: %v", providersOf(pr))
	}
	if err := pq.SetOverride(ctx, a.ID, event.ProviderWeb); err != nil {
		t.Fatal(err)
	}
	if pr = e.getProvider(t, a.Token); activeOf(pr) != event.ProviderWeb || strings.Join(providersOf(pr), ",") != "meta,whatsapp_web*" {
		t.Fatalf("override whatsapp_web: %v", providersOf(pr))
	}
	// Nothing configured: active is null, the list empty (not null).
	for _, p := range []event.Provider{event.ProviderMeta, event.ProviderWeb} {
		if _, err := pq.Delete(ctx, a.ID, p); err != nil {
			t.Fatal(err)
		}
	}
	res = e.expect(e.do("GET", "/v1/whatsapp/provider", a.Token, nil), 200)
	if string(bytes.TrimSpace(res.Body)) != `{"active":null,"providers":[]}` {
		t.Fatalf("nothing configured: %s", res.Body)
	}

	// Tenant-scoped, authenticated.
	e.expect(e.do("GET", "/v1/whatsapp/provider", "", nil), 401)
	e.expect(e.do("GET", "/v1/whatsapp/provider", testAdminToken, nil), 401)
}

// TestProviderRouteIsolation: two mentorados on different providers each
// see only their own configuration, whatever else the request names.
func TestProviderRouteIsolation(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	c := e.createMentorado("Caio")
	e.putMeta(b.ID, "200000000000001", "300000000000001", "5521988887777")
	e.putZAPI(c.ID, "ZAPI-INSTANCE-C")
	if err := e.db.Providers().MarkWebhook(t.Context(), b.ID, event.ProviderMeta, "bad signature from B"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		who    tenant
		active event.Provider
		list   string
		leaks  []string
	}{
		{a, event.ProviderWeb, "whatsapp_web*", []string{"200000000000001", "300000000000001", "5521988887777", "bad signature", "ZAPI-INSTANCE-C"}},
		{b, event.ProviderMeta, "meta*,whatsapp_web", []string{"ZAPI-INSTANCE-C"}},
		{c, event.ProviderWeb, "whatsapp_web*,zapi", []string{"200000000000001", "bad signature"}},
	} {
		for _, path := range []string{"/v1/whatsapp/provider",
			"/v1/whatsapp/provider?mentorado_id=" + itoa(b.ID) + "&mentorado=" + itoa(c.ID)} {
			pr := e.getProvider(t, tc.who.Token)
			res := e.expect(e.do("GET", path, tc.who.Token, nil), 200)
			for _, leak := range tc.leaks {
				if strings.Contains(string(res.Body), leak) {
					t.Fatalf("%d's %s shows another tenant's %q: %s", tc.who.ID, path, leak, res.Body)
				}
			}
			if activeOf(pr) != tc.active || strings.Join(providersOf(pr), ",") != tc.list {
				t.Fatalf("%d: active %q providers %v, want %q %s", tc.who.ID, activeOf(pr), providersOf(pr), tc.active, tc.list)
			}
		}
	}
	// B's own view has its number and webhook error.
	pr := e.getProvider(t, b.Token)
	if pr.Providers[0].Settings["display_phone"] != "5521988887777" || pr.Providers[0].Webhook.LastError == nil {
		t.Fatalf("B's meta %+v", pr.Providers[0])
	}
}

// TestSendTemplate: POST /v1/messages takes kind template with a template
// {name, language, params} and passes it on to the provider as is; a bad
// template is refused with 400 naming the field before any command; the
// provider's not_supported and outside_window answer 422.
func TestSendTemplate(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendRate = -1 }) // more sends than a burst
	a := e.createMentorado("Ana")
	fc := e.fakeConnector(func(m int64, verb event.Verb, body []byte) event.Reply {
		var req event.SendRequest
		_ = json.Unmarshal(body, &req)
		switch {
		case req.Kind == event.KindTemplate && req.Template.Name == "not_here":
			return event.Reply{Error: event.NewCommandError(event.CodeNotSupported, "templates are for Meta's Cloud API")}
		case req.Kind == event.KindTemplate:
			now := defaultAnswer(m, verb, body)
			now.Message.Kind, now.Message.Text = event.KindTemplate, req.Template.Text()
			return now
		case req.Text == "late":
			return event.Reply{Error: event.NewCommandError(event.CodeOutsideWindow, "no message from this chat in the last 24 h; send a template")}
		}
		return defaultAnswer(m, verb, body)
	})
	const to = "5511988887777"
	tpl := func(name, lang string, params ...string) map[string]any {
		t := map[string]any{"name": name, "language": lang}
		if params != nil {
			t["params"] = params
		}
		return map[string]any{"phone": to, "kind": "template", "template": t}
	}

	res := e.expect(e.do("POST", "/v1/messages", a.Token, map[string]any{"phone": "+55 11 98888-7777", "kind": "template",
		"client_id": "tpl-1", "template": map[string]any{"name": "pedido_enviado", "language": "pt_BR", "params": []string{"Ana", "#123"}}}), 201)
	var msg apiMessage
	res.json(t, &msg)
	if msg.Kind != "template" || msg.Text != "[pedido_enviado (pt_BR)] Ana · #123" || msg.Phone != to {
		t.Fatalf("template message %+v", msg)
	}
	var sent event.SendRequest
	if err := json.Unmarshal(fc.LastBody(), &sent); err != nil {
		t.Fatal(err)
	}
	if sent.Kind != event.KindTemplate || sent.Phone != to || sent.ClientID != "tpl-1" || sent.Template == nil ||
		sent.Template.Name != "pedido_enviado" || sent.Template.Language != "pt_BR" || strings.Join(sent.Template.Params, "|") != "Ana|#123" {
		t.Fatalf("command %+v template %+v", sent, sent.Template)
	}
	// Without params.
	e.expect(e.do("POST", "/v1/messages", a.Token, tpl("hello_world", "en_US")), 201)
	var bare event.SendRequest
	if err := json.Unmarshal(fc.LastBody(), &bare); err != nil || bare.Template == nil || bare.Template.Name != "hello_world" || len(bare.Template.Params) != 0 {
		t.Fatalf("command %+v (%v)", bare, err)
	}

	many := make([]string, event.MaxTemplateParams+1)
	for i := range many {
		many[i] = "x"
	}
	for _, tc := range []struct {
		name  string
		body  any
		code  string
		field string // in the message
	}{
		{"name with capitals", tpl("Pedido", "pt_BR"), codeBadRequest, "template.name"},
		{"name with a space", tpl("pedido enviado", "pt_BR"), codeBadRequest, "template.name"},
		{"empty name", tpl("", "pt_BR"), codeBadRequest, "template.name"},
		{"name too long", tpl(strings.Repeat("a", 513), "pt_BR"), codeBadRequest, "template.name"},
		{"empty language", tpl("pedido", ""), codeBadRequest, "template.language"},
		{"language too long", tpl("pedido", strings.Repeat("p", 17)), codeBadRequest, "template.language"},
		{"blank param", tpl("pedido", "pt_BR", "Ana", "  "), codeBadRequest, "template.params[1]"},
		{"param with NUL", tpl("pedido", "pt_BR", "a\x00b"), codeBadRequest, "template.params[0]"},
		{"param too long", tpl("pedido", "pt_BR", strings.Repeat("é", 1025)), codeBadRequest, "template.params[0]"},
		{"too many params", tpl("pedido", "pt_BR", many...), codeBadRequest, "template.params"},
		{"kind template without template", map[string]any{"phone": to, "kind": "template"}, codeBadRequest, "template"},
		{"template without kind template", map[string]any{"phone": to, "text": "oi", "template": map[string]any{"name": "pedido", "language": "pt_BR"}}, codeBadRequest, "template"},
		{"template with text", map[string]any{"phone": to, "kind": "template", "text": "oi", "template": map[string]any{"name": "pedido", "language": "pt_BR"}}, codeBadRequest, "template"},
		{"template with media", map[string]any{"phone": to, "kind": "template", "media_id": strings.Repeat("a", 64), "template": map[string]any{"name": "pedido", "language": "pt_BR"}}, codeBadRequest, "template"},
		{"unknown template field", `{"phone":"5511988887777","kind":"template","template":{"name":"pedido","language":"pt_BR","components":[]}}`, codeBadJSON, ""},
		{"params not strings", `{"phone":"5511988887777","kind":"template","template":{"name":"pedido","language":"pt_BR","params":[1]}}`, codeBadJSON, ""},
		{"template not an object", `{"phone":"5511988887777","kind":"template","template":"pedido"}`, codeBadJSON, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(fc.Subjects())
			res := e.expect(e.do("POST", "/v1/messages", a.Token, tc.body), 400)
			var eb errorBody
			res.json(t, &eb)
			if eb.Error.Code != tc.code || !strings.Contains(eb.Error.Message, tc.field) {
				t.Fatalf("error %+v, want code %s naming %q", eb.Error, tc.code, tc.field)
			}
			if len(fc.Subjects()) != before {
				t.Fatal("a refused template send reached the provider")
			}
		})
	}

	// The provider's refusals.
	res = e.expect(e.do("POST", "/v1/messages", a.Token, tpl("not_here", "pt_BR")), 422)
	if code := res.errorCode(t); code != event.CodeNotSupported {
		t.Fatalf("not supported: %s", res.Body)
	}
	res = e.expect(e.do("POST", "/v1/messages", a.Token, map[string]any{"phone": to, "text": "late"}), 422)
	if code := res.errorCode(t); code != event.CodeOutsideWindow {
		t.Fatalf("outside the window: %s", res.Body)
	}
}
