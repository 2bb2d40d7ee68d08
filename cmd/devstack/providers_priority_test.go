package main

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

// sendTo sends text to contact and waits until the active provider's fake
// got it (a send right after a provider change may meet the notifier's
// routing cache: the client retries, as after any 503).
func (s *stack) sendTo(t *testing.T, m int64, tok, contact, text string) string {
	t.Helper()
	var sent struct {
		ID string `json:"id"`
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		code := s.do("POST", "/v1/messages", tok, map[string]string{"phone": contact, "text": text}, &sent)
		if code == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("send %q never accepted: last answer %d", text, code)
		}
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		return slices.ContainsFunc(s.simReceivedOf(t, m, contact), func(r simReceived) bool { return r.ID == sent.ID && r.Text == text })
	}, "send %q never reached the active provider's fake", text)
	return sent.ID
}

// inboundFrom makes contact write text to m through its active provider
// and waits until it is stored.
func (s *stack) inboundFrom(t *testing.T, m int64, tok, contact, text string) string {
	t.Helper()
	var in struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", m), s.admin, map[string]string{"phone": contact, "text": text}, &in); code != http.StatusAccepted {
		t.Fatalf("inbound %q: %d", text, code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return findMsg(s.pthread(t, tok, contact), in.ID) != nil }, "inbound %q never stored", text)
	return in.ID
}

// TestProviderPriority: Meta and WhatsApp Web configured → Meta active;
// Meta removed → WhatsApp Web active again; the history of a contact stays
// in one chat across the switch.
func TestProviderPriority(t *testing.T) {
	s := startStack(t)
	const contact = "5521977770099"
	const webPhone = "5521988880011"
	m, tok := s.pairedMentorado(t, "Prioridade", webPhone)
	if a := s.adminProviders(t, m); a.Active == nil || *a.Active != "whatsapp_web" {
		t.Fatalf("a new mentorado's providers: %+v", a)
	}
	webIn := s.inboundFrom(t, m, tok, contact, "Oi pelo WhatsApp Web")
	webOut := s.sendTo(t, m, tok, contact, "Resposta pelo WhatsApp Web")

	// Meta configured next to WhatsApp Web: Meta is active.
	var acc fakeAccount
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/provider-account", m), s.admin, map[string]string{"provider": "meta"}, &acc); code != http.StatusCreated {
		t.Fatalf("fake meta account: %d", code)
	}
	if code := s.do("PUT", fmt.Sprintf("/v1/admin/mentorados/%d/providers/meta", m), s.admin, acc.Credentials, nil); code/100 != 2 {
		t.Fatalf("PUT meta: %d", code)
	}
	if a := s.adminProviders(t, m); a.Active == nil || *a.Active != "meta" || len(a.Providers) != 2 {
		t.Fatalf("admin view with meta and whatsapp_web: %+v", a)
	}
	if p := s.tenantProvider(t, tok); p != "meta" {
		t.Fatalf("GET /v1/whatsapp/provider: active %q, want meta", p)
	}
	if code := s.do("POST", "/v1/whatsapp/connect", tok, map[string]string{"method": "qr"}, nil); code/100 != 2 {
		t.Fatalf("connect on meta: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return s.status(t, tok).Status == "connected" }, "meta never connected")
	metaIn := s.inboundFrom(t, m, tok, contact, "Oi pela Meta")
	if !strings.HasPrefix(metaIn, "wamid.") {
		t.Fatalf("inbound through Meta has id %q", metaIn)
	}
	metaOut := s.sendTo(t, m, tok, contact, "Resposta pela Meta") // reaches metafake

	// Meta removed: WhatsApp Web is active again and its session comes
	// back without a new pairing.
	if code := s.do("DELETE", fmt.Sprintf("/v1/admin/mentorados/%d/providers/meta", m), s.admin, nil, nil); code/100 != 2 {
		t.Fatalf("DELETE meta: %d", code)
	}
	if a := s.adminProviders(t, m); a.Active == nil || *a.Active != "whatsapp_web" || len(a.Providers) != 1 {
		t.Fatalf("admin view after removing meta: %+v", a)
	}
	if p := s.tenantProvider(t, tok); p != "whatsapp_web" {
		t.Fatalf("GET /v1/whatsapp/provider: active %q, want whatsapp_web", p)
	}
	// The stored status may still be Meta's last one (connected, Meta's
	// number) until the WhatsApp Web session reports: wait for its phone.
	t.Logf("status right after removing meta: %+v", s.status(t, tok))
	testenv.Eventually(t, 30*time.Second, func() bool {
		return s.do("POST", "/v1/whatsapp/connect", tok, map[string]string{"method": "qr"}, nil)/100 == 2
	}, "connect on WhatsApp Web never accepted")
	testenv.Eventually(t, 30*time.Second, func() bool {
		st := s.status(t, tok)
		return st.Status == "connected" && st.Phone == webPhone
	}, "WhatsApp Web never reconnected: %+v", s.status(t, tok))
	webOut2 := s.sendTo(t, m, tok, contact, "De volta ao WhatsApp Web") // reaches wafake

	// One chat for the contact, holding both providers' messages.
	var chats struct {
		Chats []struct {
			Chat string `json:"chat"`
		} `json:"chats"`
	}
	if code := s.do("GET", "/v1/chats", tok, nil, &chats); code != http.StatusOK {
		t.Fatalf("GET /v1/chats: %d", code)
	}
	n := 0
	for _, c := range chats.Chats {
		if c.Chat == contact+"@s.whatsapp.net" {
			n++
		}
	}
	if n != 1 || len(chats.Chats) != 1 {
		t.Fatalf("chats %+v, want one for %s", chats.Chats, contact)
	}
	th := s.pthread(t, tok, contact)
	for _, id := range []string{webIn, webOut, metaIn, metaOut, webOut2} {
		if findMsg(th, id) == nil {
			t.Errorf("message %s not in the contact's thread", id)
		}
	}
}

// TestProviderIsolation: a provider's webhook for mentorado A can never
// write to B: a Meta delivery signed with A's app secret to A's URL that
// names B's phone_number_id writes nothing (for B nor A); a Z-API delivery
// with B's secret on A's URL is refused.
func TestProviderIsolation(t *testing.T) {
	s := startStack(t)
	const contact = "5521977771234"
	a, atok, aacc, _ := newProviderMentorado(t, s, "A Meta", "meta", "5511930001001")
	b, btok, bacc, _ := newProviderMentorado(t, s, "B Meta", "meta", "5511930001002")

	cross := metaInboundText(bacc.Credentials["phone_number_id"], bacc.Credentials["display_phone"], contact, "wamid.CROSS"+randomSuffix(), "para o B")
	code := post(t, aacc.WebhookURL, cross, "X-Hub-Signature-256", metaSign(aacc.Credentials["app_secret"], cross))
	t.Logf("meta: A's URL, A's signature, B's phone_number_id: %d", code)
	if code != http.StatusOK && code/100 != 4 {
		t.Fatalf("cross-tenant Meta delivery answered %d", code)
	}
	// After a good message to each, each thread holds exactly that one.
	aIn := s.inboundFrom(t, a, atok, contact, "para o A")
	bIn := s.inboundFrom(t, b, btok, contact, "para o B de verdade")
	if th := s.pthread(t, atok, contact); len(th) != 1 || th[0].ID != aIn {
		t.Fatalf("A's thread %+v", th)
	}
	if th := s.pthread(t, btok, contact); len(th) != 1 || th[0].ID != bIn {
		t.Fatalf("B's thread %+v", th)
	}
	if ap := s.adminProviders(t, a); code == http.StatusOK && !slices.ContainsFunc(ap.Providers, func(p adminProviderView) bool {
		return p.Provider == "meta" && p.Webhook.LastError != ""
	}) {
		t.Errorf("A's meta webhook health does not record the rejected part: %+v", ap)
	}

	// Z-API: B's secret on A's URL is refused; A's secret with B's
	// instance in the body writes nothing.
	za, zatok, zaacc, zahook := newProviderMentorado(t, s, "A Z-API", "zapi", "5511940001001")
	zb, zbtok, zbacc, zbhook := newProviderMentorado(t, s, "B Z-API", "zapi", "5511940001002")
	for _, m := range []int64{za, zb} {
		if code := s.do("DELETE", fmt.Sprintf("/v1/admin/mentorados/%d/providers/whatsapp_web", m), s.admin, nil, nil); code/100 != 2 {
			t.Fatalf("DELETE whatsapp_web: %d", code)
		}
	}
	_, bSecret, _ := strings.Cut(zbhook, "/webhook/")
	aBase, _, _ := strings.Cut(zaacc.gatewayBase()+zahook, "/webhook/")
	body := zapiReceivedText(zaacc.Credentials["instance_id"], contact, "3EB0CROSS"+randomSuffix(), "segredo do B")
	if code := post(t, aBase+"/webhook/"+bSecret, body); code != http.StatusUnauthorized {
		t.Errorf("Z-API delivery with B's secret on A's URL: %d, want 401", code)
	}
	if code := post(t, aBase+"/webhook", body, "X-Zapbus-Webhook-Secret", bSecret); code != http.StatusUnauthorized {
		t.Errorf("Z-API delivery with B's secret in the header on A's URL: %d, want 401", code)
	}
	crossZ := zapiReceivedText(zbacc.Credentials["instance_id"], contact, "3EB0CROSSB"+randomSuffix(), "instância do B")
	code = post(t, zaacc.gatewayBase()+zahook, crossZ)
	t.Logf("zapi: A's URL and secret, B's instance id: %d", code)
	zaIn := s.inboundFrom(t, za, zatok, contact, "para o A (Z-API)")
	zbIn := s.inboundFrom(t, zb, zbtok, contact, "para o B (Z-API)")
	if th := s.pthread(t, zatok, contact); len(th) != 1 || th[0].ID != zaIn {
		t.Fatalf("Z-API A's thread %+v", th)
	}
	if th := s.pthread(t, zbtok, contact); len(th) != 1 || th[0].ID != zbIn {
		t.Fatalf("Z-API B's thread %+v", th)
	}
}

// TestDemoMentorados: in -sim mode the banner names a Meta and a Z-API
// demo mentorado with their tokens; each one's contact writes in with the
// printed command's request, the message is stored, and a reply reaches
// that provider's fake.
func TestDemoMentorados(t *testing.T) {
	s := startStack(t)
	demo := regexp.MustCompile(`(Meta demo|Z-API demo):\s+mentorado (\d+) on (\w+) \(simulated\), token: (\S+)`)
	found := demo.FindAllStringSubmatch(s.banner, -1)
	if len(found) != 2 {
		t.Fatalf("banner names %d demo mentorados, want 2:\n%s", len(found), s.banner)
	}
	for _, d := range found {
		name, provider, tok := d[1], d[3], d[4]
		m, _ := strconv.ParseInt(d[2], 10, 64)
		t.Run(provider, func(t *testing.T) {
			if p := s.tenantProvider(t, tok); p != provider || (name == "Meta demo") != (provider == "meta") {
				t.Fatalf("%s: active provider %q, banner says %q", name, p, provider)
			}
			// The printed command: its contact writes in, with the demo's own token.
			if !strings.Contains(s.banner, fmt.Sprintf("Bearer %s' -H 'Content-Type: application/json' -d '{\"phone\":\"5511912345678\",\"text\":\"Oi!\"}' %s/v1/dev/sim/%d/inbound", tok, s.base, m)) {
				t.Fatalf("banner lacks %s's inbound command:\n%s", name, s.banner)
			}
			var in struct {
				ID string `json:"id"`
			}
			if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", m), tok, map[string]string{"phone": "5511912345678", "text": "Oi!"}, &in); code != http.StatusAccepted {
				t.Fatalf("%s inbound: %d", name, code)
			}
			testenv.Eventually(t, 30*time.Second, func() bool { return findMsg(s.pthread(t, tok, "5511912345678"), in.ID) != nil }, "%s: inbound never stored", name)
			testenv.Eventually(t, 30*time.Second, func() bool { return s.status(t, tok).Status == "connected" }, "%s never connected", name)
			s.sendTo(t, m, tok, "5511912345678", "Olá da demo")
		})
	}
}
