package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/zapbus/zapbus/internal/testenv"
)

// chromium finds Debian's headless browser; the test skips without it
// (and fails under CI, whose .ci/run installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no chromium on PATH: apt-get install chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// dashboardRun is one pass of the dashboard flow in one language. The
// browser's language, locale and time zone are forced, so the machine's
// own do not matter.
type dashboardRun struct {
	lang           string // the page's expected language (html lang)
	acceptLanguage string // navigator.languages, as the browser sends it
	locale         string // ICU locale for Intl
	timeZone       string
	mentorado      string
	leadPhone      string // the phone the inbound message comes from, E.164 digits
	leadShown      string // how the page writes leadPhone
	reply          string
	// the media part: what the contact sends, what the mentorado answers
	imageCaption, mediaReply, docCaption string
	// words the page must show at points of the flow
	connectLabel, connectedBadge, notConnected, badToken, today string
	formats                                                     map[string]string // JS expression → expected result
	screenshot                                                  bool
}

// TestDashboardInBrowser drives the embedded dashboard in headless Chromium
// against the dev binary, once in Portuguese (the default) and once in
// English: sign in, see only the actions that fit, see an error in the
// user's language, see the QR, scan it through the sim endpoint, watch the
// badge turn connected and the QR go, see an inbound message appear without
// a reload, and send a reply from the send box; then media (mediaFlow).
//
// ZAPBUS_SCREENSHOT=docs/dashboard.png go test -run TestDashboardInBrowser ./cmd/devstack
// refreshes the README's screenshot (the Portuguese run).
func TestDashboardInBrowser(t *testing.T) {
	exe := chromium(t)
	s := startStack(t)

	// Noon yesterday, local time: a day of 23 or 25 hours does not move it.
	yesterday := `(() => { const d = new Date(); d.setDate(d.getDate() - 1); d.setHours(12, 0, 0, 0); return d.toISOString() })()`
	runs := []dashboardRun{{
		lang: "pt-BR", acceptLanguage: "pt-BR,pt;q=0.9", locale: "pt_BR", timeZone: "America/Sao_Paulo",
		mentorado: "Ana Mentora", leadPhone: "5511912345678", leadShown: "(11) 91234-5678",
		reply:        "Oi Bia! Te mando os detalhes.",
		imageCaption: "Comprovante do Pix", mediaReply: "Recebi, obrigada!", docCaption: "Segue a proposta",
		connectLabel: "Conectar", connectedBadge: "conectado", today: "hoje ",
		notConnected: "O WhatsApp não está conectado. Conecte para enviar.",
		badToken:     "Token recusado — entre de novo.",
		formats: map[string]string{
			`I18N.phone("5511912345678")`:                       "(11) 91234-5678",
			`I18N.phone("551131234567")`:                        "(11) 3123-4567",
			`I18N.phone("14155550123")`:                         "+1 415 555 0123",
			`I18N.number(1234567)`:                              "1.234.567",
			`I18N.bytes(1536000)`:                               "1,5 MB",
			`I18N.when(` + yesterday + `)`:                      "ontem",
			`I18N.error({code: "rate_limited", retryAfter: 3})`: "Muitas tentativas em pouco tempo. Aguarde um pouco. Tente de novo em 3 s.",
			`I18N.error({code: "no_such_code"})`:                "Algo deu errado (código no_such_code). Tente de novo.",
		},
		screenshot: true,
	}, {
		lang: "en", acceptLanguage: "en-US,en;q=0.9", locale: "en_US", timeZone: "America/New_York",
		mentorado: "Ann Mentor", leadPhone: "5521987654321", leadShown: "(21) 98765-4321",
		reply:        "Hi Bea! Sending the details.",
		imageCaption: "Payment receipt", mediaReply: "Got it, thanks!", docCaption: "Here is the proposal",
		connectLabel: "Connect", connectedBadge: "connected", today: "today ",
		notConnected: "WhatsApp is not connected. Connect to send.",
		badToken:     "Token rejected — sign in again.",
		formats: map[string]string{
			`I18N.phone("5511912345678")`:  "(11) 91234-5678",
			`I18N.number(1234567)`:         "1,234,567",
			`I18N.bytes(1536000)`:          "1.5 MB",
			`I18N.when(` + yesterday + `)`: "yesterday",
		},
	}}
	for _, r := range runs {
		t.Run(r.lang, func(t *testing.T) { dashboardFlow(t, s, exe, r) })
	}
}

func dashboardFlow(t *testing.T, s *stack, exe string, r dashboardRun) {
	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": r.mentorado}, &created); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	// /readyz does not wait for the connector to take the new mentorado's
	// session; until it has, commands answer 503 and the page would show
	// "unavailable" where this test expects "not connected".
	testenv.Eventually(t, 30*time.Second, func() bool {
		return s.do("GET", "/v1/whatsapp/status?live=true", created.Token, nil, nil) == http.StatusOK
	}, "the connector never took the session")

	// The defaults are headless, no-first-run and
	// disable-background-networking; add the machine's required flags.
	// Each run has its own profile, so no remembered language carries over.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("lang", r.lang),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(414, 896), // a phone-sized screen
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	step := func(name string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("body")))
			t.Fatalf("%s: %v\n%s", name, err, html)
		}
	}
	// waitJS polls a JavaScript condition in the page until it is true.
	waitJS := func(expr string) chromedp.Action[chromedp.Void] {
		poll := chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			if _, err := poll(ctx, tg); err != nil {
				return chromedp.Void{}, fmt.Errorf("waiting for %s: %w", expr, err)
			}
			return chromedp.Void{}, nil
		}
	}
	// js runs a statement in the page.
	js := func(stmt string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { `+stmt+`; return true })()`)(ctx, tg)
			return err
		})
	}
	text := func(id string) string { return fmt.Sprintf(`document.getElementById(%q).textContent`, id) }
	shown := func(id string) string { return fmt.Sprintf(`!document.getElementById(%q).hidden`, id) }
	// actions is which of the connection card's buttons are offered.
	actions := func(connect, disconnect, logout bool) chromedp.Action[chromedp.Void] {
		return waitJS(fmt.Sprintf(`%s === %t && %s === %t && %s === %t`,
			shown("connect"), connect, shown("disconnect"), disconnect, shown("logout"), logout))
	}

	// Force the language, locale and time zone before the page loads.
	ua, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.userAgent`))
	if err != nil {
		t.Fatalf("start browser: %v", err)
	}
	step("force the browser's language",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: ua, AcceptLanguage: r.acceptLanguage}); err != nil {
				return err
			}
			if _, err := cdp.Call(ctx, tg, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: r.locale}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, tg, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: r.timeZone})
			return err
		}),
	)

	step("the page speaks the browser's language",
		chromedp.Navigate(s.base+"/"),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		waitJS(fmt.Sprintf(`document.documentElement.lang === %q && document.getElementById("lang").value === %q`, r.lang, r.lang)),
	)
	for expr, want := range r.formats {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", expr, got, err, want)
		}
	}

	step("a rejected token, said in the user's language",
		chromedp.SendKeys(chromedp.ID("token-input"), "zbt_not-a-token"),
		chromedp.Click(chromedp.ID("sign-in")),
		waitJS(fmt.Sprintf(`%s === %q`, text("signin-error"), r.badToken)),
		js(`document.getElementById("token-input").value = ""`),
	)
	step("sign in",
		chromedp.SendKeys(chromedp.ID("token-input"), created.Token),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("app")),
		waitJS(`document.getElementById("status-badge").dataset.status === "disconnected"`),
		actions(true, false, false),
		waitJS(fmt.Sprintf(`%s === %q`, text("connect"), r.connectLabel)),
	)
	step("an error in the user's language",
		chromedp.SendKeys(chromedp.ID("new-phone"), r.leadPhone),
		chromedp.Click(chromedp.CSS(`#new-chat button[type="submit"]`)),
		waitJS(`!document.getElementById("send-text").disabled`),
		chromedp.SendKeys(chromedp.ID("send-text"), "antes de conectar"),
		chromedp.Click(chromedp.ID("send-button")),
		waitJS(fmt.Sprintf(`%s === %q`, text("send-error"), r.notConnected)),
		// The text stays for a retry; this test sends something else later.
		waitJS(`document.getElementById("send-text").value === "antes de conectar"`),
		js(`document.getElementById("send-text").value = ""`),
	)
	step("connect shows a QR and only the actions that fit",
		chromedp.Click(chromedp.ID("connect")),
		chromedp.WaitVisible(chromedp.ID("qr")),
		waitJS(`document.getElementById("qr").naturalWidth > 0`),
		actions(false, true, false),
	)

	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/scan", created.ID), s.admin, nil, nil); code != http.StatusOK {
		t.Fatalf("scan: %d", code)
	}
	simPhone := SimPhone(created.ID)
	step("badge turns connected and the QR goes",
		waitJS(`document.getElementById("status-badge").dataset.status === "connected"`),
		waitJS(fmt.Sprintf(`%s === %q`, text("status-badge"), r.connectedBadge)),
		waitJS(`document.getElementById("qr").hidden && !document.getElementById("qr").hasAttribute("src")`),
		actions(false, true, true),
		waitJS(fmt.Sprintf(`%s.includes(%q)`, text("status-detail"), "("+simPhone[2:4]+") "+simPhone[4:9]+"-"+simPhone[9:])),
	)

	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", created.ID), s.admin,
		map[string]string{"phone": r.leadPhone, "text": "Oi! Vi seu anúncio.", "push_name": "Bia"}, nil); code != http.StatusAccepted {
		t.Fatalf("inbound: %d", code)
	}
	lead := fmt.Sprintf(`#conversations [data-phone="%s"]`, r.leadPhone)
	step("inbound message appears without reload",
		waitJS(fmt.Sprintf(`document.querySelector(%q) !== null`, lead)),
		waitJS(`document.getElementById("conversations").textContent.includes("Bia")`),
		chromedp.Click(chromedp.CSS(lead)),
		waitJS(`document.getElementById("thread").textContent.includes("Oi! Vi seu anúncio.")`),
		waitJS(fmt.Sprintf(`%s.includes(%q)`, text("thread-title"), r.leadShown)),
		waitJS(fmt.Sprintf(`%s.includes(%q)`, text("thread"), r.today)),
		waitJS(`document.getElementById("thread").getAttribute("aria-live") === "polite"`),
		// Opening the chat marked it read.
		waitJS(fmt.Sprintf(`document.querySelector(%q).dataset.unread === "0"`, lead)),
	)
	var convs struct {
		Conversations []struct {
			Phone  string `json:"phone"`
			Unread int    `json:"unread"`
		} `json:"conversations"`
	}
	var convsCode int
	// The persister may lag the live frames the page already shows (a
	// loaded CI machine under -race): wait as long as the e2e tests do.
	testenv.Eventually(t, 60*time.Second, func() bool {
		convs.Conversations = nil
		convsCode = s.do("GET", "/v1/conversations", created.Token, nil, &convs)
		return len(convs.Conversations) == 1 && convs.Conversations[0].Phone == r.leadPhone && convs.Conversations[0].Unread == 0
	}, "opening the chat did not mark it read: %d %+v", convsCode, convs)

	step("send from the send box",
		waitJS(`!document.getElementById("send-text").disabled`),
		chromedp.SendKeys(chromedp.ID("send-text"), r.reply),
		chromedp.Click(chromedp.ID("send-button")),
		waitJS(fmt.Sprintf(`%s.includes(%q)`, text("thread"), r.reply)),
		waitJS(fmt.Sprintf(`%s === ""`, text("send-error"))),
	)
	// The reply went through WhatsApp (the fake) and was stored as sent.
	var thread struct {
		Messages []struct {
			Text      string `json:"text"`
			Direction string `json:"direction"`
			Status    string `json:"status"`
		} `json:"messages"`
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		s.do("GET", "/v1/conversations/"+r.leadPhone+"/messages?limit=1", created.Token, nil, &thread)
		return len(thread.Messages) == 1 && thread.Messages[0].Text == r.reply && thread.Messages[0].Direction == "out"
	}, "reply never stored: %+v", thread.Messages)

	mediaFlow(t, s, ctx, created.ID, r, step, waitJS)

	// Every word on the page is in its language: no catalog key shows.
	keys, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("body *")]
		.filter((e) => e.children.length === 0 && e.offsetParent !== null)
		.map((e) => e.textContent.trim())
		.filter((s) => /^[a-z]+\.[a-zA-Z_.-]+$/.test(s))`))
	if err != nil || len(keys) > 0 {
		t.Errorf("untranslated keys on the page: %v (%v)", keys, err)
	}

	if r.screenshot {
		step("wait for the list to settle",
			waitJS(fmt.Sprintf(`document.querySelector(%q).textContent.includes(%q)`, lead, r.docCaption)),
			// The whole conversation in the picture: the thread unscrolled, the
			// photo back to its preview size.
			js(`document.getElementById("thread").style.maxHeight = "none"; document.querySelectorAll("#thread img.big").forEach((i) => i.classList.remove("big"))`),
			waitJS(`[...document.querySelectorAll("#thread img")].every((i) => i.complete && i.naturalWidth > 0)`),
			waitJS(`(() => { const th = document.getElementById("thread"); return th.scrollHeight <= th.clientHeight + 1 && document.querySelector('#thread li[data-kind="document"]') !== null })()`),
			js(`window.scrollTo(0, 0)`),
		)
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 gives PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		out := filepath.Join(t.TempDir(), "dashboard.png")
		if p := os.Getenv("ZAPBUS_SCREENSHOT"); p != "" {
			out = p
			if !filepath.IsAbs(out) {
				out = filepath.Join("..", "..", out)
			}
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(out, ".png") || len(png) < 1000 {
			t.Fatalf("screenshot too small: %d bytes", len(png))
		}
		return
	}

	// The switch changes the language at once and is remembered over the
	// browser's own.
	other := "pt-BR"
	step("switch the language",
		js(fmt.Sprintf(`const sel = document.getElementById("lang"); sel.value = %q; sel.dispatchEvent(new Event("change"))`, other)),
		waitJS(fmt.Sprintf(`document.documentElement.lang === %q`, other)),
		waitJS(fmt.Sprintf(`%s === %q`, text("status-badge"), "conectado")),
		waitJS(fmt.Sprintf(`%s.includes("hoje ")`, text("thread"))),
		chromedp.Reload(),
		waitJS(`document.getElementById("app") && !document.getElementById("app").hidden`),
		waitJS(fmt.Sprintf(`document.documentElement.lang === %q && %s === %q`, other, text("disconnect"), "Desconectar")),
	)
	var langs []string
	if b, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(navigator.languages)`)); err == nil {
		_ = json.Unmarshal([]byte(b), &langs)
	}
	if len(langs) == 0 || !strings.HasPrefix(langs[0], "en") {
		t.Errorf("navigator.languages = %v: the switch should have won over English", langs)
	}
}

// mediaFlow: the contact sends an image and a voice note, which show and
// play without a reload; the mentorado replies to the image, reacts to it
// and sends a document from the send box, and the contact's phone gets the
// quote, the reaction and the identical bytes.
func mediaFlow(t *testing.T, s *stack, ctx context.Context, m int64, r dashboardRun,
	step func(string, ...chromedp.Action[chromedp.Void]), waitJS func(string) chromedp.Action[chromedp.Void]) {
	t.Helper()
	// Files are shown from blob: URLs (they need the token): the page's CSP
	// must allow them for <img>, <audio> and <video>.
	if resp, err := http.Get(s.base + "/"); err == nil {
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"img-src 'self' blob:", "media-src 'self' blob:"} {
			if !strings.Contains(csp, want) {
				t.Errorf("the dashboard's Content-Security-Policy %q lacks %q: its files cannot show", csp, want)
			}
		}
	}
	sim := fmt.Sprintf("/v1/dev/sim/%d/", m)
	var img, ptt struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", sim+"inbound", s.admin, map[string]any{
		"phone": r.leadPhone, "kind": "image", "data": testJPEG(t, 320, 240), "thumbnail": testJPEG(t, 32, 24),
		"caption": r.imageCaption, "width": 320, "height": 240,
	}, &img); code != http.StatusAccepted {
		t.Fatalf("inbound image: %d", code)
	}
	if code := s.do("POST", sim+"inbound", s.admin, map[string]any{
		"phone": r.leadPhone, "kind": "ptt", "data": testOggOpus(150), "seconds": 3,
	}, &ptt); code != http.StatusAccepted {
		t.Fatalf("inbound voice note: %d", code)
	}
	li := func(id string) string { return fmt.Sprintf(`document.querySelector('#thread li[data-id="%s"]')`, id) }
	step("the image shows, its preview first and the full size on click",
		waitJS(fmt.Sprintf(`%s !== null && %s.textContent.includes(%q)`, li(img.ID), li(img.ID), r.imageCaption)),
		waitJS(fmt.Sprintf(`(() => { const i = %s.querySelector(".media img"); return i !== null && i.complete && i.naturalWidth > 0 })()`, li(img.ID))),
		// the file is stored: the preview button loads the full picture
		waitJS(fmt.Sprintf(`%s.querySelector(".media").dataset.state === "stored"`, li(img.ID))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#thread li[data-id="%s"] .media-open`, img.ID))),
		waitJS(fmt.Sprintf(`(() => { const i = %s.querySelector(".media img"); return i.dataset.full === "true" && i.complete && i.naturalWidth === 320 })()`, li(img.ID))),
	)
	step("the voice note plays",
		waitJS(fmt.Sprintf(`(() => { const l = %s; const a = l && l.querySelector("audio"); return a !== null && a.readyState >= 1 && a.duration > 0 })()`, li(ptt.ID))),
		waitJS(fmt.Sprintf(`%s.querySelector("audio").getAttribute("aria-label") !== ""`, li(ptt.ID))),
	)

	step("reply to the image",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#thread li[data-id="%s"] button[data-action="reply"]`, img.ID))),
		waitJS(`!document.getElementById("reply-bar").hidden`),
		waitJS(fmt.Sprintf(`document.getElementById("reply-text").textContent.includes(%q)`, r.imageCaption)),
		chromedp.SendKeys(chromedp.ID("send-text"), r.mediaReply),
		chromedp.Click(chromedp.ID("send-button")),
		waitJS(`document.getElementById("reply-bar").hidden`),
		waitJS(fmt.Sprintf(`[...document.querySelectorAll("#thread li.out")].some((l) => l.textContent.includes(%q) && l.querySelector(".quote") !== null)`, r.mediaReply)),
	)
	if got := s.receivedBy(t, m, r.leadPhone, "the reply", func(x simReceivedMsg) bool { return x.Text == r.mediaReply }); got.ReplyTo != img.ID {
		t.Errorf("the reply reached the phone as %+v, want a quote of %s", got, img.ID)
	}

	step("react to the image",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#thread li[data-id="%s"] button[data-action="react"]`, img.ID))),
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#thread li[data-id="%s"] .picker button[data-emoji="👍"]`, img.ID))),
		waitJS(fmt.Sprintf(`%s.querySelector('.reactions .chip.mine[data-emoji="👍"]') !== null`, li(img.ID))),
	)
	s.receivedBy(t, m, r.leadPhone, "the reaction", func(x simReceivedMsg) bool {
		return x.Kind == "reaction" && x.Target == img.ID && x.Emoji == "👍"
	})

	pdf := testPDF()
	path := filepath.Join(t.TempDir(), "proposta-2026.pdf")
	if err := os.WriteFile(path, pdf, 0o644); err != nil {
		t.Fatal(err)
	}
	step("attach a document and send it",
		chromedp.SetUploadFiles(chromedp.ID("attach-input"), []string{path}),
		waitJS(`!document.getElementById("attachment").hidden && document.getElementById("attachment-name").textContent.includes("proposta-2026.pdf")`),
		chromedp.SendKeys(chromedp.ID("send-text"), r.docCaption),
		chromedp.Click(chromedp.ID("send-button")),
		waitJS(`document.getElementById("attachment").hidden`),
		waitJS(fmt.Sprintf(`[...document.querySelectorAll('#thread li.out[data-kind="document"]')].some((l) => l.textContent.includes("proposta-2026.pdf") && l.textContent.includes(%q) && l.querySelector("a.download") !== null)`, r.docCaption)),
		waitJS(`document.getElementById("send-error").textContent === ""`),
	)
	doc := s.receivedBy(t, m, r.leadPhone, "the document", func(x simReceivedMsg) bool { return x.Kind == "document" })
	if doc.FileName != "proposta-2026.pdf" || doc.MediaSHA256 != sha256Hex(pdf) || doc.Text != r.docCaption {
		t.Errorf("the phone got %+v, want proposta-2026.pdf with sha256 %s and caption %q", doc, sha256Hex(pdf), r.docCaption)
	}
}
