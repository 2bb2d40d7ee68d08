package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestDashboardInBrowser drives the embedded dashboard in headless Chromium
// against the dev binary: sign in, see the QR, scan it through the sim
// endpoint, watch the badge turn connected, see an inbound message appear
// without a reload, and send a reply from the send box.
//
// ZAPBUS_SCREENSHOT=docs/dashboard.png go test -run TestDashboardInBrowser ./cmd/devstack
// refreshes the README's screenshot.
func TestDashboardInBrowser(t *testing.T) {
	exe := chromium(t)
	s := startStack(t)

	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Ana Mentora"}, &created); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}

	// The defaults are headless, no-first-run and
	// disable-background-networking; add the machine's required flags.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
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
			_, err := poll(ctx, tg)
			return chromedp.Void{}, err
		}
	}

	step("sign in",
		chromedp.Navigate(s.base+"/"),
		chromedp.WaitVisible(chromedp.ID("token-input")),
		chromedp.SendKeys(chromedp.ID("token-input"), created.Token),
		chromedp.Click(chromedp.ID("sign-in")),
		chromedp.WaitVisible(chromedp.ID("app")),
	)
	step("connect shows a QR",
		chromedp.Click(chromedp.ID("connect")),
		chromedp.WaitVisible(chromedp.ID("qr")),
		waitJS(`document.getElementById("qr").naturalWidth > 0`),
	)

	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/scan", created.ID), s.admin, nil, nil); code != http.StatusOK {
		t.Fatalf("scan: %d", code)
	}
	step("badge turns connected",
		waitJS(`document.getElementById("status-badge").dataset.status === "connected"`),
	)

	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/inbound", created.ID), s.admin,
		map[string]string{"phone": "5511912345678", "text": "Oi! Vi seu anúncio.", "push_name": "Bia"}, nil); code != http.StatusAccepted {
		t.Fatalf("inbound: %d", code)
	}
	step("inbound message appears without reload",
		waitJS(`document.querySelector('#conversations [data-phone="5511912345678"]') !== null`),
		waitJS(`document.getElementById("conversations").textContent.includes("Bia")`),
		chromedp.Click(chromedp.CSS(`#conversations [data-phone="5511912345678"]`)),
		waitJS(`document.getElementById("thread").textContent.includes("Oi! Vi seu anúncio.")`),
	)

	const reply = "Oi Bia! Te mando os detalhes."
	step("send from the send box",
		waitJS(`!document.getElementById("send-text").disabled`),
		chromedp.SendKeys(chromedp.ID("send-text"), reply),
		chromedp.Click(chromedp.ID("send-button")),
		waitJS(fmt.Sprintf(`document.getElementById("thread").textContent.includes(%q)`, reply)),
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
		s.do("GET", "/v1/conversations/5511912345678/messages?limit=1", created.Token, nil, &thread)
		return len(thread.Messages) == 1 && thread.Messages[0].Text == reply && thread.Messages[0].Direction == "out"
	}, "reply never stored: %+v", thread.Messages)

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
}
