package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

// The provider contract (issue #16): one end-to-end body, run for every
// provider through its fake, like watermill's one test suite for every
// pub/sub. The body speaks only the public surfaces (the admin and tenant
// APIs, SSE, the dev binary's sim endpoints, the gateway's webhook URLs);
// a providerHarness hides what differs: how a mentorado is configured and
// connected, and how its provider delivers to zapbus.

// providerHarness is one provider's mechanics.
type providerHarness interface {
	// name is the provider (event.Provider).
	name() string
	// setup creates a mentorado through the admin API, configures this
	// provider for it through the admin API, and returns its id and API
	// token.
	setup(t *testing.T, s *stack, name string) (int64, string)
	// connect brings its number up (a QR scanned on the fake phone; Meta:
	// the credentials check) and returns when the stored status is
	// connected.
	connect(t *testing.T, s *stack, m int64, tok string)
	// badDelivery sends the provider's webhook URL for m a delivery that
	// fails authentication (bad signature, wrong secret) carrying an
	// inbound text from contact, and returns the HTTP status; skip says why
	// the provider has no such thing.
	badDelivery(t *testing.T, s *stack, m int64, contact string) (status int, skip string)
	// malformedDelivery sends a correctly authenticated delivery whose
	// body is not the provider's payload.
	malformedDelivery(t *testing.T, s *stack, m int64) (status int, skip string)
	// outageSend is what a send answers while the provider is down.
	outageSend() outageExpectation
}

// outageExpectation is how a provider answers a send during an outage.
type outageExpectation struct {
	status int    // HTTP status of POST /v1/messages
	code   string // error code (503) or message status (202: queued)
	// queued: the send waits in the outbox and is delivered after the
	// outage (WhatsApp Web); otherwise it fails and is retried by the
	// client after recovery.
	queued bool
}

// contractImage is the inbound image of the contract.
var contractImage []byte

func TestProviderContract(t *testing.T) {
	s := startStack(t)
	hs := contractHarnesses()
	for _, h := range hs {
		t.Run(h.name(), func(t *testing.T) { runProviderContract(t, s, h) })
	}
	// The providers' credentials and webhook secrets never reach the log,
	// at any level.
	secrets := map[string]string{}
	for _, h := range hs {
		var accs map[int64]fakeAccount
		switch h := h.(type) {
		case metaHarness:
			accs = h.accounts
		case zapiHarness:
			accs = h.accounts
			for m, hook := range h.hooks {
				_, secrets[fmt.Sprintf("zapi %d webhook_secret", m)], _ = strings.Cut(hook, "/webhook/")
			}
		}
		for m, a := range accs {
			for _, k := range []string{"access_token", "app_secret", "verify_token", "instance_token", "client_token"} {
				if v := a.Credentials[k]; v != "" {
					secrets[fmt.Sprintf("%s %d %s", a.Provider, m, k)] = v
				}
			}
		}
	}
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(secrets) < 6 || len(b) == 0 { // meta: 3, zapi: 2 and the webhook secret
		t.Fatalf("%d secrets to look for in %d bytes of log: the check is not working", len(secrets), len(b))
	}
	for what, v := range secrets {
		if strings.Contains(string(b), v) {
			t.Errorf("the log holds %s", what)
		}
	}
	t.Logf("%d provider secrets absent from %d bytes of log (debug included)", len(secrets), len(b))
}

// contractHarnesses are the providers the contract runs for.
func contractHarnesses() []providerHarness {
	return []providerHarness{webHarness{},
		metaHarness{accounts: map[int64]fakeAccount{}},
		zapiHarness{accounts: map[int64]fakeAccount{}, hooks: map[int64]string{}}}
}

type apiMsg struct {
	ID        string `json:"id"`
	Direction string `json:"direction"`
	Kind      string `json:"kind"`
	Text      string `json:"text"`
	Caption   string `json:"caption"`
	ReplyToID string `json:"reply_to_id"`
	Status    string `json:"status"`
	Chat      string `json:"chat"`
	Provider  string `json:"provider"`
}

// pthread is the conversation with contact, newest first.
func (s *stack) pthread(t *testing.T, tok, contact string) []apiMsg {
	t.Helper()
	var th struct {
		Messages []apiMsg `json:"messages"`
	}
	if code := s.do("GET", "/v1/conversations/"+contact+"/messages?limit=200", tok, nil, &th); code != http.StatusOK {
		t.Fatalf("GET thread: %d", code)
	}
	return th.Messages
}

func findMsg(ms []apiMsg, id string) *apiMsg {
	for i := range ms {
		if ms[i].ID == id {
			return &ms[i]
		}
	}
	return nil
}

// ticketSSE opens /v1/events the way the dashboard does: a stream ticket,
// then ?ticket=.
func (s *stack) ticketSSE(ctx context.Context, t *testing.T, tok string) <-chan sseEvent {
	t.Helper()
	var tr struct {
		Ticket string `json:"ticket"`
	}
	if code := s.do("POST", "/v1/stream-tickets", tok, nil, &tr); code != http.StatusCreated || tr.Ticket == "" {
		t.Fatalf("stream ticket: %d", code)
	}
	return s.sseURL(ctx, t, "/v1/events?ticket="+url.QueryEscape(tr.Ticket), "")
}

// sseURL is sse on a given path with an optional bearer token.
func (s *stack) sseURL(ctx context.Context, t *testing.T, path, tok string) <-chan sseEvent {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("open SSE %s: %v %v", path, resp, err)
	}
	return readSSE(resp)
}

// simReceivedOf is what the provider's fake got from mentorado m for
// contact (GET /v1/dev/sim/{m}/received).
func (s *stack) simReceivedOf(t *testing.T, m int64, contact string) []simReceived {
	t.Helper()
	var out struct {
		Messages []simReceived `json:"messages"`
	}
	if code := s.do("GET", fmt.Sprintf("/v1/dev/sim/%d/received?phone=%s", m, contact), s.admin, nil, &out); code != http.StatusOK {
		t.Fatalf("sim received: %d", code)
	}
	return out.Messages
}

func (s *stack) simOutage(t *testing.T, m int64, down *bool) outageState {
	t.Helper()
	var st outageState
	method, body := "GET", any(nil)
	if down != nil {
		method, body = "POST", map[string]bool{"down": *down}
	}
	if code := s.do(method, fmt.Sprintf("/v1/dev/sim/%d/outage", m), s.admin, body, &st); code != http.StatusOK {
		t.Fatalf("%s outage: %d", method, code)
	}
	return st
}

type storedStatus struct {
	Status string `json:"status"`
	Phone  string `json:"phone"`
	Reason string `json:"reason"`
}

func (s *stack) status(t *testing.T, tok string) storedStatus {
	t.Helper()
	var st storedStatus
	if code := s.do("GET", "/v1/whatsapp/status", tok, nil, &st); code != http.StatusOK {
		t.Fatalf("GET status: %d", code)
	}
	return st
}

// runProviderContract is the one body every provider runs.
func runProviderContract(t *testing.T, s *stack, h providerHarness) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const wait = 45 * time.Second

	m, tok := h.setup(t, s, "Contrato "+h.name())
	live := s.ticketSSE(ctx, t, tok)
	h.connect(t, s, m, tok)
	contact := fmt.Sprintf("55219%08d", 70000000+m)

	// 1. An inbound text: pushed live and stored.
	var in struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", m), s.admin,
		map[string]string{"phone": contact, "text": "Oi, quero saber da mentoria", "push_name": "Bia"}, &in); code != http.StatusAccepted || in.ID == "" {
		t.Fatalf("inbound text: %d %+v", code, in)
	}
	ev := next(t, live, wait, "inbound text", func(ev sseEvent) bool {
		return dataField(ev, "type") == "message" && dataField(ev, "wa_id") == in.ID
	})
	if ev.ID == "" {
		t.Fatal("inbound text pushed without a stream id (not stored in JetStream)")
	}
	if p := envelopeProvider(ev); p != h.name() {
		t.Errorf("inbound text's envelope names provider %q, want %q", p, h.name())
	}
	testenv.Eventually(t, wait, func() bool { return findMsg(s.pthread(t, tok, contact), in.ID) != nil }, "inbound text never stored")
	if got := findMsg(s.pthread(t, tok, contact), in.ID); got.Direction != "in" || got.Text != "Oi, quero saber da mentoria" || got.Chat != contact+"@s.whatsapp.net" {
		t.Fatalf("stored inbound text %+v", got)
	}
	t.Logf("%s: inbound text stored and pushed live", h.name())
	// The provider delivers it again (a webhook retry, a resent stanza):
	// still one message (checked once the next inbound is stored).
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/redeliver", m), s.admin, map[string]string{"message_id": in.ID}, nil); code != http.StatusAccepted {
		t.Fatalf("redeliver: %d", code)
	}

	// 2. An inbound image with a caption: pushed, stored, its file served.
	var img struct {
		ID     string `json:"id"`
		SHA256 string `json:"sha256"`
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", m), s.admin,
		map[string]any{"phone": contact, "kind": "image", "caption": "Comprovante", "data": contractImage, "mime": "image/jpeg"}, &img); code != http.StatusAccepted || img.ID == "" {
		t.Fatalf("inbound image: %d %+v", code, img)
	}
	next(t, live, wait, "inbound image", func(ev sseEvent) bool {
		return dataField(ev, "type") == "message" && dataField(ev, "wa_id") == img.ID
	})
	var body []byte
	testenv.Eventually(t, wait, func() bool {
		resp, b := s.get(t, "/v1/messages/"+url.PathEscape(img.ID)+"/media", tok)
		body = b
		return resp.StatusCode == http.StatusOK
	}, "inbound image's file never served")
	if !bytes.Equal(body, contractImage) {
		t.Fatalf("served image: %d bytes, want the %d sent", len(body), len(contractImage))
	}
	th := s.pthread(t, tok, contact)
	if got := findMsg(th, img.ID); got == nil || got.Kind != "image" || got.Caption != "Comprovante" {
		t.Fatalf("stored image %+v", got)
	}
	if len(th) != 2 {
		t.Fatalf("thread after the text, its redelivery and the image: %+v, want 2 messages", th)
	}
	t.Logf("%s: inbound image stored, pushed and its file served", h.name())

	// 3. A reply: 201, it reaches the provider's fake, quoting the text;
	// then the contact's delivered and read receipts are stored.
	var sent struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if code := s.do("POST", "/v1/messages", tok, map[string]string{"phone": contact, "text": "Olá Bia, tudo bem?", "reply_to": in.ID}, &sent); code != http.StatusCreated || sent.ID == "" {
		t.Fatalf("reply: %d %+v", code, sent)
	}
	var got simReceived
	testenv.Eventually(t, wait, func() bool {
		for _, r := range s.simReceivedOf(t, m, contact) {
			if r.ID == sent.ID {
				got = r
				return true
			}
		}
		return false
	}, "the reply never reached the %s fake", h.name())
	if got.Text != "Olá Bia, tudo bem?" || got.ReplyTo != in.ID {
		t.Fatalf("the fake got %+v, want the text quoting %s", got, in.ID)
	}
	for _, kind := range []string{"delivered", "read"} {
		if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/receipt", m), s.admin,
			map[string]string{"phone": contact, "message_id": sent.ID, "kind": kind}, nil); code != http.StatusAccepted {
			t.Fatalf("%s receipt: %d", kind, code)
		}
		testenv.Eventually(t, wait, func() bool {
			r := findMsg(s.pthread(t, tok, contact), sent.ID)
			return r != nil && r.Status == kind
		}, "reply never became %s", kind)
	}
	t.Logf("%s: reply sent, reached the fake, delivered then read", h.name())

	// 4. Bad deliveries are rejected and store nothing.
	before := len(s.pthread(t, tok, contact))
	badCode, badSkip := h.badDelivery(t, s, m, contact)
	if badSkip != "" {
		t.Logf("%s: unauthenticated delivery skipped: %s", h.name(), badSkip)
	} else if badCode != http.StatusUnauthorized {
		t.Errorf("unauthenticated delivery: %d, want 401", badCode)
	}
	if code, skip := h.malformedDelivery(t, s, m); skip != "" {
		t.Logf("%s: malformed delivery skipped: %s", h.name(), skip)
	} else if code != http.StatusBadRequest {
		t.Errorf("malformed delivery: %d, want 400", code)
	}
	if badSkip == "" {
		// The refusals are recorded as webhook health (never the secret).
		var active adminProviderView
		for _, p := range s.adminProviders(t, m).Providers {
			if p.Active {
				active = p
			}
		}
		if active.Provider != h.name() || active.Webhook.LastError == "" {
			t.Errorf("admin view after refused deliveries: %+v, want %s with its last webhook error", active, h.name())
		}
	}
	// A good message after them: once it is stored, exactly one more
	// message is in the thread.
	var after struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", m), s.admin,
		map[string]string{"phone": contact, "text": "Depois dos ruins"}, &after); code != http.StatusAccepted {
		t.Fatalf("inbound after bad deliveries: %d", code)
	}
	testenv.Eventually(t, wait, func() bool { return findMsg(s.pthread(t, tok, contact), after.ID) != nil }, "inbound after bad deliveries never stored")
	if n := len(s.pthread(t, tok, contact)); n != before+1 {
		t.Fatalf("thread has %d messages after the bad deliveries and one good one, want %d", n, before+1)
	}

	// 5. An outage: retries against the fake, a clear status, recovery.
	down, up := true, false
	s.simOutage(t, m, &down)
	want := h.outageSend()
	var out struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Error  struct {
			Code string `json:"code"`
		} `json:"error"`
		Code string `json:"code"`
	}
	// The first send may still find the provider up (the outage starts
	// with the next request); retry until the outage answers.
	testenv.Eventually(t, wait, func() bool {
		out.ID, out.Status, out.Error.Code, out.Code = "", "", "", ""
		code := s.do("POST", "/v1/messages", tok, map[string]string{"phone": contact, "text": "Durante a queda"}, &out)
		return code == want.status
	}, "a send during the outage never answered %d", want.status)
	if errCode := cmp.Or(out.Error.Code, out.Code); want.queued {
		if out.Status != want.code {
			t.Fatalf("send during the outage: status %q, want %q", out.Status, want.code)
		}
	} else if errCode != want.code {
		t.Fatalf("send during the outage: error %q, want %q", errCode, want.code)
	}
	testenv.Eventually(t, wait, func() bool { return s.simOutage(t, m, nil).Attempts > 1 }, "no retries against the fake during the outage")
	var st storedStatus
	testenv.Eventually(t, wait, func() bool {
		st = s.status(t, tok)
		return (st.Status == "backoff" || st.Status == "disconnected") && st.Reason != ""
	}, "status never showed the outage: %+v", st)
	t.Logf("%s: outage: %d attempts, status %s (%s)", h.name(), s.simOutage(t, m, nil).Attempts, st.Status, st.Reason)
	s.simOutage(t, m, &up)
	var again struct {
		ID string `json:"id"`
	}
	if want.queued {
		// The session reconnects on its own and sends what it queued.
		testenv.Eventually(t, 2*wait, func() bool { return s.status(t, tok).Status == "connected" }, "never recovered")
		testenv.Eventually(t, wait, func() bool {
			return slices.ContainsFunc(s.simReceivedOf(t, m, contact), func(r simReceived) bool { return r.ID == out.ID })
		}, "the send queued during the outage never reached the fake")
		// Sent at once, or queued behind the outbox's pacing right after
		// the reconnect: either way it reaches the fake (checked below).
		if code := s.do("POST", "/v1/messages", tok, map[string]string{"phone": contact, "text": "Voltou"}, &again); code != http.StatusCreated && code != http.StatusAccepted {
			t.Fatalf("send after recovery: %d", code)
		}
	} else {
		// A stateless provider recovers with the next call that works:
		// the client's retry of the send.
		testenv.Eventually(t, wait, func() bool {
			return s.do("POST", "/v1/messages", tok, map[string]string{"phone": contact, "text": "Voltou"}, &again) == http.StatusCreated
		}, "sends never worked again after the outage")
		testenv.Eventually(t, wait, func() bool { return s.status(t, tok).Status == "connected" }, "status never back to connected")
	}
	testenv.Eventually(t, wait, func() bool {
		return slices.ContainsFunc(s.simReceivedOf(t, m, contact), func(r simReceived) bool { return r.ID == again.ID })
	}, "the send after recovery never reached the fake")
	t.Logf("%s: outage retried, reported and recovered", h.name())
}

// webHarness is WhatsApp Web: the connector's real whatsmeow client
// against the fake WhatsApp server.
type webHarness struct{}

func (webHarness) name() string { return "whatsapp_web" }

func (webHarness) setup(t *testing.T, s *stack, name string) (int64, string) {
	t.Helper()
	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": name}, &created); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	return created.ID, created.Token
}

func (webHarness) connect(t *testing.T, s *stack, m int64, tok string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() bool {
		return s.do("POST", "/v1/whatsapp/connect", tok, map[string]string{"method": "qr"}, nil) == http.StatusAccepted
	}, "connect never accepted")
	testenv.Eventually(t, 30*time.Second, func() bool {
		return s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/scan", m), s.admin, nil, nil) == http.StatusOK
	}, "the fake phone never scanned a QR")
	testenv.Eventually(t, 30*time.Second, func() bool { return s.status(t, tok).Status == "connected" }, "never connected")
}

func (webHarness) badDelivery(*testing.T, *stack, int64, string) (int, string) {
	return 0, "WhatsApp Web has no webhook: its frames arrive on the connector's own Noise-encrypted socket, so there is no signature to forge"
}

func (webHarness) malformedDelivery(*testing.T, *stack, int64) (int, string) {
	return 0, "WhatsApp Web has no webhook; undecryptable frames are whatsmeow's (covered by the connector's tests)"
}

func (webHarness) outageSend() outageExpectation {
	// The connector queues sends while its session is in backoff and
	// sends them on reconnect (docs/decisions: sending outbox).
	return outageExpectation{status: http.StatusAccepted, code: "queued", queued: true}
}

func init() {
	// A small real JPEG, so a browser could decode the served file.
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for y := range 48 {
		for x := range 64 {
			img.Set(x, y, color.RGBA{R: uint8(4 * x), G: uint8(5 * y), B: 90, A: 255})
		}
	}
	var b bytes.Buffer
	_ = jpeg.Encode(&b, img, &jpeg.Options{Quality: 80})
	contractImage = b.Bytes()
}

// envelopeProvider is the provider an SSE event's envelope names.
func envelopeProvider(ev sseEvent) string {
	var env struct {
		Provider string `json:"provider"`
	}
	_ = json.Unmarshal([]byte(ev.Data), &env)
	return env.Provider
}

// readSSE parses an open event stream onto a channel.
func readSSE(resp *http.Response) <-chan sseEvent {
	ch := make(chan sseEvent, 256)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id:"):
				ev.ID = strings.TrimSpace(line[3:])
			case strings.HasPrefix(line, "event:"):
				ev.Event = strings.TrimSpace(line[6:])
			case strings.HasPrefix(line, "data:"):
				ev.Data += strings.TrimSpace(line[5:])
			}
		}
	}()
	return ch
}

// fakeAccount is an account the sim made on a provider's fake
// (POST /v1/dev/sim/{m}/provider-account).
type fakeAccount struct {
	Provider    string            `json:"provider"`
	Credentials map[string]string `json:"credentials"`
	WebhookURL  string            `json:"webhook_url"`
}

// gatewayBase is the provider gateway's base URL in a webhook URL.
func (a fakeAccount) gatewayBase() string {
	base, _, _ := strings.Cut(a.WebhookURL, "/providers/")
	return base
}

// newProviderMentorado creates a mentorado, makes it an account on the
// fake of p and configures p with it through the admin API. It returns
// the id, token, the account and the configured provider's admin view
// (for Z-API, with the webhook URL holding the secret).
func newProviderMentorado(t *testing.T, s *stack, name, p, phone string) (int64, string, fakeAccount, string) {
	t.Helper()
	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": name}, &created); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	var acc fakeAccount
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/provider-account", created.ID), s.admin,
		map[string]string{"provider": p, "phone": phone}, &acc); code != http.StatusCreated {
		t.Fatalf("fake %s account: %d", p, code)
	}
	creds := map[string]string{}
	for k, v := range acc.Credentials {
		if k != "webhook_secret" && v != "" {
			creds[k] = v
		}
	}
	var put struct {
		Provider   string `json:"provider"`
		WebhookURL string `json:"webhook_url"`
	}
	if code := s.do("PUT", fmt.Sprintf("/v1/admin/mentorados/%d/providers/%s", created.ID, p), s.admin, creds, &put); code/100 != 2 || put.Provider != p {
		t.Fatalf("PUT provider %s: %d %+v", p, code, put)
	}
	return created.ID, created.Token, acc, put.WebhookURL
}

// adminProviders is GET /v1/admin/mentorados/{id}/providers.
type adminProviders struct {
	Active    *string             `json:"active"`
	Providers []adminProviderView `json:"providers"`
}

type adminProviderView struct {
	Provider string `json:"provider"`
	Active   bool   `json:"active"`
	Webhook  struct {
		LastError string `json:"last_error"`
	} `json:"webhook"`
}

func (s *stack) adminProviders(t *testing.T, m int64) adminProviders {
	t.Helper()
	var out adminProviders
	if code := s.do("GET", fmt.Sprintf("/v1/admin/mentorados/%d/providers", m), s.admin, nil, &out); code != http.StatusOK {
		t.Fatalf("admin GET providers: %d", code)
	}
	return out
}

// tenantProvider is GET /v1/whatsapp/provider's active provider.
func (s *stack) tenantProvider(t *testing.T, tok string) string {
	t.Helper()
	var out struct {
		Active *string `json:"active"`
	}
	if code := s.do("GET", "/v1/whatsapp/provider", tok, nil, &out); code != http.StatusOK {
		t.Fatalf("GET /v1/whatsapp/provider: %d", code)
	}
	if out.Active == nil {
		return ""
	}
	return *out.Active
}

// post sends body to a URL with headers and returns the status.
func post(t *testing.T, u string, body []byte, header ...string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metaSign is Meta's X-Hub-Signature-256 of body under secret.
func metaSign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// metaInboundText is a Meta messages webhook (the shape of Meta's
// example, internal/provider/meta/testdata) for phoneNumberID: a text
// from contact.
func metaInboundText(phoneNumberID, display, contact, wamid, text string) []byte {
	b, _ := json.Marshal(map[string]any{"object": "whatsapp_business_account", "entry": []any{map[string]any{
		"id": "102290129340398", "changes": []any{map[string]any{"field": "messages", "value": map[string]any{
			"messaging_product": "whatsapp",
			"metadata":          map[string]string{"display_phone_number": display, "phone_number_id": phoneNumberID},
			"contacts":          []any{map[string]any{"profile": map[string]string{"name": "Forjado"}, "wa_id": contact}},
			"messages": []any{map[string]any{"from": contact, "id": wamid, "timestamp": fmt.Sprint(time.Now().Unix()),
				"type": "text", "text": map[string]string{"body": text}}},
		}}}}}})
	return b
}

// metaHarness is Meta's Cloud API: the gateway's meta driver against
// metafake, webhooks signed with the app secret.
type metaHarness struct{ accounts map[int64]fakeAccount }

func (metaHarness) name() string { return "meta" }

func (h metaHarness) setup(t *testing.T, s *stack, name string) (int64, string) {
	t.Helper()
	m, tok, acc, _ := newProviderMentorado(t, s, name, "meta", "")
	h.accounts[m] = acc
	// Meta and WhatsApp Web (every new mentorado's) configured: Meta is
	// active by priority.
	if a := s.adminProviders(t, m); a.Active == nil || *a.Active != "meta" || len(a.Providers) != 2 {
		t.Fatalf("admin view after configuring meta: %+v", a)
	}
	return m, tok
}

func (metaHarness) connect(t *testing.T, s *stack, m int64, tok string) {
	t.Helper()
	// Meta has no pairing: connect checks the credentials against the
	// Graph API and reports the number connected.
	if code := s.do("POST", "/v1/whatsapp/connect", tok, map[string]string{"method": "qr"}, nil); code/100 != 2 {
		t.Fatalf("connect: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return s.status(t, tok).Status == "connected" }, "never connected")
}

func (h metaHarness) badDelivery(t *testing.T, s *stack, m int64, contact string) (int, string) {
	acc := h.accounts[m]
	body := metaInboundText(acc.Credentials["phone_number_id"], acc.Credentials["display_phone"], contact, "wamid.FORGED"+randomSuffix(), "forjada")
	return post(t, acc.WebhookURL, body, "X-Hub-Signature-256", metaSign("not-the-app-secret", body)), ""
}

func (h metaHarness) malformedDelivery(t *testing.T, s *stack, m int64) (int, string) {
	acc := h.accounts[m]
	body := []byte(`{"object":"whatsapp_business_account","entry":"not a list"}`)
	return post(t, acc.WebhookURL, body, "X-Hub-Signature-256", metaSign(acc.Credentials["app_secret"], body)), ""
}

func (metaHarness) outageSend() outageExpectation {
	return outageExpectation{status: http.StatusServiceUnavailable, code: "unavailable"}
}

// zapiHarness is Z-API: the gateway's zapi driver against zapifake,
// webhooks authenticated by the per-mentorado secret in the URL.
type zapiHarness struct {
	accounts map[int64]fakeAccount
	hooks    map[int64]string // webhook URL with the secret
}

func (zapiHarness) name() string { return "zapi" }

func (h zapiHarness) setup(t *testing.T, s *stack, name string) (int64, string) {
	t.Helper()
	m, tok, acc, hook := newProviderMentorado(t, s, name, "zapi", "")
	if hook == "" || !strings.Contains(hook, "/providers/zapi/") {
		t.Fatalf("PUT zapi answered webhook_url %q", hook)
	}
	h.accounts[m] = acc
	h.hooks[m] = acc.gatewayBase() + hook
	// A Z-API-only mentorado: its WhatsApp Web configuration removed.
	if code := s.do("DELETE", fmt.Sprintf("/v1/admin/mentorados/%d/providers/whatsapp_web", m), s.admin, nil, nil); code/100 != 2 {
		t.Fatalf("DELETE whatsapp_web: %d", code)
	}
	if a := s.adminProviders(t, m); a.Active == nil || *a.Active != "zapi" {
		t.Fatalf("admin view after configuring zapi: %+v", a)
	}
	return m, tok
}

func (zapiHarness) connect(t *testing.T, s *stack, m int64, tok string) {
	t.Helper()
	if code := s.do("POST", "/v1/whatsapp/connect", tok, map[string]string{"method": "qr"}, nil); code/100 != 2 {
		t.Fatalf("connect: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return s.status(t, tok).Status == "qr" }, "no QR")
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/scan", m), s.admin, nil, nil); code != http.StatusOK {
		t.Fatalf("scan: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return s.status(t, tok).Status == "connected" }, "never connected")
}

// zapiReceivedText is a Z-API ReceivedCallback (the shape of Z-API's
// documented example, internal/provider/zapi/testdata) for instance.
func zapiReceivedText(instance, contact, id, text string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "ReceivedCallback", "instanceId": instance, "messageId": id, "phone": contact,
		"fromMe": false, "isGroup": false, "momment": time.Now().UnixMilli(), "status": "RECEIVED", "senderName": "Forjado",
		"text": map[string]string{"message": text}})
	return b
}

func (h zapiHarness) badDelivery(t *testing.T, s *stack, m int64, contact string) (int, string) {
	acc := h.accounts[m]
	body := zapiReceivedText(acc.Credentials["instance_id"], contact, "3EB0FORGED"+randomSuffix(), "forjada")
	base, _, _ := strings.Cut(h.hooks[m], "/webhook/")
	return post(t, base+"/webhook/not-the-secret", body), ""
}

func (h zapiHarness) malformedDelivery(t *testing.T, s *stack, m int64) (int, string) {
	return post(t, h.hooks[m], []byte(`{"type":`)), ""
}

func (zapiHarness) outageSend() outageExpectation {
	return outageExpectation{status: http.StatusServiceUnavailable, code: "unavailable"}
}

func randomSuffix() string { return strings.ToUpper(strconv.FormatInt(time.Now().UnixNano(), 16)) }
