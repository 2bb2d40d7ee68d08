package web

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboardWebhooksInBrowser drives the dashboard's webhooks panel in
// headless Chromium: an endpoint created through the form is listed with
// its state, its secret is shown once, its deliveries are listed, pause and
// resume change its badge, and delete asks first.
func TestDashboardWebhooksInBrowser(t *testing.T) {
	exe := chromiumPath(t)
	e := newWebhookEnv(t)
	e.fakeConnector(defaultAnswer)
	a := e.createMentorado("Ana")
	// Another tenant's endpoint is not listed.
	other := e.createMentorado("Bia")
	e.createWebhook("/v1/webhooks", other.Token, map[string]any{"url": "https://127.0.0.1:9/bia", "event_types": []string{"message"}})

	br := newBrowser(t, exe, 1000, 1200, 90*time.Second, "#webhooks")
	ctx, wait, step := br.ctx, br.wait, br.step
	item := `document.querySelector("#wh-list li.wh-item")`

	step("sign in", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("token-input")),
		wait(`document.documentElement.dataset.ready === "true"`),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { I18N.setLang("pt-BR", true); return true })()`)(ctx, tg)
			return err
		}),
		wait(`document.documentElement.lang === "pt-BR"`),
		chromedp.SendKeys(chromedp.ID("token-input"), a.Token), chromedp.Click(chromedp.ID("sign-in")),
		wait(`!document.getElementById("wh-empty").hidden`),
		wait(`document.getElementById("wh-empty").textContent === "Nenhum endpoint ainda."`))

	step("create through the form",
		chromedp.Click(chromedp.CSS("#wh-new summary")), chromedp.WaitVisible(chromedp.ID("wh-url")),
		chromedp.SendKeys(chromedp.ID("wh-url"), "https://127.0.0.1:9/crm"),
		chromedp.SendKeys(chromedp.ID("wh-description"), "CRM"),
		chromedp.Click(chromedp.ID("wh-type-lead")),
		chromedp.Click(chromedp.ID("wh-create")),
		wait(`!document.getElementById("wh-secret-box").hidden && document.getElementById("wh-secret").value.startsWith("whsec_")`),
		wait(`document.querySelectorAll("#wh-list li.wh-item").length === 1`),
		wait(item+`.querySelector(".wh-url").textContent === "https://127.0.0.1:9/crm"`),
		wait(item+`.querySelector(".wh-state").textContent === "ativo" && `+item+`.dataset.state === "active"`),
		wait(item+`.textContent.includes("Eventos: lead, message") && `+item+`.textContent.includes("nada entregue ainda")`))
	secret, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("wh-secret")))
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	var url, dbSecret string
	var types []string
	if err := e.db.Pool.QueryRow(ctx, `SELECT id, url, event_types, secret FROM webhooks WHERE mentorado_id = $1`, a.ID).
		Scan(&id, &url, &types, &dbSecret); err != nil {
		t.Fatal(err)
	}
	if url != "https://127.0.0.1:9/crm" || strings.Join(types, ",") != "lead,message" || dbSecret != secret {
		t.Fatalf("stored %s %v, secret shown %q", url, types, secret)
	}
	step("the secret is shown once",
		chromedp.Click(chromedp.ID("wh-copy")), wait(`!document.getElementById("wh-copied").hidden`),
		chromedp.Click(chromedp.ID("wh-secret-done")),
		wait(`document.getElementById("wh-secret-box").hidden && document.getElementById("wh-secret").value === ""`))

	// A few attempts in the log, as the dispatcher writes them.
	e.insertDelivery(id, a.ID, "msg_first", 10, "retry", 500)
	e.insertDelivery(id, a.ID, "msg_first", 10, "delivered", 200)
	e.insertDelivery(id, a.ID, "msg_second", 11, "dead", 0)
	rows := `document.querySelectorAll("#wh-list .wh-delivery")`
	step("its deliveries",
		chromedp.Click(chromedp.CSS("#wh-list li.wh-item .wh-log")),
		wait(rows+`.length === 3`),
		wait(rows+`[0].dataset.delivery === "msg_second" && `+rows+`[0].querySelector(".wh-outcome").textContent === "desistiu"`),
		wait(rows+`[1].dataset.outcome === "delivered" && `+rows+`[1].textContent.includes("HTTP 200")`),
		wait(rows+`[2].dataset.outcome === "retry" && `+rows+`[2].textContent.includes("HTTP 500") && `+rows+`[2].textContent.includes("tentativa 1")`))

	if dir := os.Getenv("ZAPBUS_SCREENSHOT_DIR"); dir != "" {
		png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.ID("webhooks")))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "dashboard-webhooks.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	step("pause and resume",
		chromedp.Click(chromedp.CSS("#wh-list li.wh-item .wh-pause")),
		wait(item+`.dataset.state === "paused" && `+item+`.querySelector(".wh-state").textContent === "pausado"`),
		wait(item+`.querySelector(".wh-health").textContent.startsWith("pausado por você · ")`),
		// The deliveries stay open across the reload.
		wait(rows+`.length === 3`),
		chromedp.Click(chromedp.CSS("#wh-list li.wh-item .wh-pause")),
		wait(item+`.dataset.state === "active"`))

	step("rotate shows the new secret",
		chromedp.Click(chromedp.CSS("#wh-list li.wh-item .wh-rotate")),
		wait(`!document.getElementById("wh-secret-box").hidden && document.getElementById("wh-secret").value.startsWith("whsec_") && document.getElementById("wh-secret").value !== "`+secret+`"`))

	step("English",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { I18N.setLang("en", true); return true })()`)(ctx, tg)
			return err
		}),
		wait(item+`.querySelector(".wh-state").textContent === "active" && `+rows+`[0].querySelector(".wh-outcome").textContent === "gave up"`))

	step("delete asks first",
		chromedp.Click(chromedp.CSS("#wh-list li.wh-item .wh-delete")),
		wait(`document.getElementById("wh-delete-dialog").open`),
		chromedp.Click(chromedp.ID("wh-delete-cancel")),
		wait(`!document.getElementById("wh-delete-dialog").open`),
		wait(`document.querySelectorAll("#wh-list li.wh-item").length === 1`),
		chromedp.Click(chromedp.CSS("#wh-list li.wh-item .wh-delete")),
		wait(`document.getElementById("wh-delete-dialog").open`),
		chromedp.Click(chromedp.ID("wh-delete-confirm")),
		wait(`document.querySelectorAll("#wh-list li.wh-item").length === 0 && !document.getElementById("wh-empty").hidden`))
	var n int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM webhooks WHERE mentorado_id = $1`, a.ID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d endpoints left (%v)", n, err)
	}

	step("a refused URL says why",
		chromedp.Click(chromedp.CSS("#wh-new summary")), chromedp.WaitVisible(chromedp.ID("wh-url")),
		chromedp.SendKeys(chromedp.ID("wh-url"), "http://127.0.0.1:9/plain"),
		chromedp.Click(chromedp.ID("wh-create")),
		wait(`document.getElementById("wh-error").textContent.startsWith("Not accepted")`))
}
