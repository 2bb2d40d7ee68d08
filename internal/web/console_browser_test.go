package web

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
)

// TestConsoleInBrowser drives the operator console in headless Chromium
// (skipped without it, failed in CI): 200 mentorados in mixed states are
// listed with the right fleet counts, search and the status filter select,
// and a connection event changes one row's badge and the counts live,
// without a reload.
//
// ZAPBUS_CONSOLE_SCREENSHOT=docs/console.png go test -run TestConsoleInBrowser ./internal/web
// writes the README's screenshot.
func TestConsoleInBrowser(t *testing.T) {
	exe := chromiumPath(t)
	e := newEnv(t)
	ctx0 := context.Background()

	// 200 mentorados, set directly as the persister would have left them.
	states := []string{"connected", "qr", "pairing", "backoff", "banned", "logged_out", "disconnected", "connecting", "connected", "disabled"}
	first := []string{"Ana", "Bruno", "Carla", "Diego", "Elis", "Fábio", "Gabi", "Heitor", "Iara", "João"}
	want := map[string]int{}
	stateOf := map[int]string{}
	for i := 1; i <= 200; i++ {
		st := states[i%len(states)]
		name := fmt.Sprintf("%s %03d", first[i%len(first)], i)
		if i == 77 {
			name = "Xavier Único"
		}
		status, disabled := st, st == "disabled"
		if disabled {
			status = "connected"
		}
		fleet := map[string]string{"qr": "pairing", "connecting": "backoff"}[st]
		if fleet == "" {
			fleet = st
		}
		want[fleet]++
		stateOf[i] = fleet
		_, err := e.db.Pool.Exec(ctx0, `INSERT INTO mentorados (name, token_hash, token_created_at, wa_status, wa_phone, wa_reason, wa_connector, wa_status_at, disabled_at)
			VALUES ($1::text, sha256(convert_to($1::text, 'UTF8')), now(), $2, $3, $4, $5, now() - make_interval(mins => $6), CASE WHEN $7 THEN now() END)`,
			name, status, fmt.Sprintf("55119%08d", 90000000+i), map[bool]string{true: "", false: "stream error " + status}[status == "connected"],
			fmt.Sprintf("connector-%d", i%3), i, disabled)
		if err != nil {
			t.Fatal(err)
		}
	}
	e.sql(`INSERT INTO connection_log (mentorado_id, event_id, status, occurred_at)
		SELECT id, 'e' || g, CASE WHEN g % 5 = 0 THEN 'banned' ELSE 'backoff' END, now() - make_interval(mins => g)
		FROM mentorados, generate_series(1, (id % 4)::int) g WHERE id % 7 = 0`)
	var ids []int64
	rows, err := e.db.Pool.Query(ctx0, `SELECT id FROM mentorados ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		ids = append(ids, id)
	}
	for i := 1; i <= 40; i++ { // some unread messages
		e.insertMessage(ids[i], msgRow{WAID: fmt.Sprintf("u%d", i), Phone: "5511988887777", Status: "delivered"})
	}

	// The persister's consumer, caught up: every lag is 0.
	if _, err := e.bus.CreateOrUpdateConsumer(ctx0, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: "persister", FilterSubject: "wa.*.evt.>", AckPolicy: jetstream.AckExplicitPolicy,
	}); err != nil {
		t.Fatal(err)
	}

	br := newBrowser(t, exe, 1520, 1000, 90*time.Second, "body")
	ctx, wait, step := br.ctx, br.wait, br.step
	js := func(expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool]("(() => {"+expr+"; return true })()")(ctx, tg)
			return err
		})
	}
	rowCount := `document.querySelectorAll("#fleet-body tr").length`
	count := func(state string) string {
		return fmt.Sprintf(`document.getElementById("count-%s").textContent === "%d"`, state, want[state])
	}

	step("sign in", chromedp.Navigate(e.srv.URL+"/admin"), chromedp.WaitVisible(chromedp.ID("admin-token")),
		wait(`document.documentElement.dataset.ready === "true"`),
		js(`I18N.setLang("pt-BR", true)`),
		wait(`document.documentElement.lang === "pt-BR"`),
		chromedp.SendKeys(chromedp.ID("admin-token"), testAdminToken), chromedp.Click(chromedp.ID("sign-in")),
		wait(rowCount+` === 200`), wait(`document.documentElement.dataset.live === "true"`),
		wait(`document.getElementById("stream-lag").textContent === "Persister: em dia"`))
	var counts []chromedp.Action[chromedp.Void]
	for _, s := range []string{"connected", "pairing", "backoff", "banned", "logged_out", "disconnected", "disabled"} {
		counts = append(counts, wait(count(s)))
	}
	counts = append(counts, wait(`document.getElementById("count-total").textContent === "200"`))
	step("fleet counts", counts...)
	step("badges and columns",
		wait(fmt.Sprintf(`document.querySelector('#fleet-body tr[data-id="%d"] .badge').dataset.status === "disabled"`, ids[8])),
		wait(fmt.Sprintf(`document.querySelector('#fleet-body tr[data-id="%d"] .badge').textContent === "bloqueado"`, ids[3])),
		wait(fmt.Sprintf(`document.querySelector('#fleet-body tr[data-id="%d"]').textContent.includes("connector-1")`, ids[0])),
		wait(`document.querySelectorAll('#fleet-body .badge[data-status="qr"]').length === 20`))

	step("search", chromedp.SendKeys(chromedp.ID("search"), "xavier"),
		wait(rowCount+` === 1`), wait(`document.querySelector("#fleet-body tr td.name").textContent.startsWith("Xavier Único")`),
		wait(count("connected"))) // the counts stay the fleet's
	step("status filter",
		js(`const s = document.getElementById("search"); s.value = ""; s.dispatchEvent(new Event("input"))`),
		wait(rowCount+` === 200`),
		js(`const f = document.getElementById("state-filter"); f.value = "banned"; f.dispatchEvent(new Event("change"))`),
		wait(fmt.Sprintf(`%s === %d && [...document.querySelectorAll("#fleet-body tr")].every((r) => r.dataset.state === "banned")`, rowCount, want["banned"])),
		js(`const f = document.getElementById("state-filter"); f.value = ""; f.dispatchEvent(new Event("change"))`),
		wait(rowCount+` === 200`))

	// A session in backoff connects: the persister stores it and the
	// stream carries its event; the page changes that row and the counts
	// in place (the marker survives: no reload).
	liveID := ids[3-1] // i = 3: backoff
	if stateOf[3] != "backoff" {
		t.Fatalf("mentorado 3 is %s", stateOf[3])
	}
	step("mark the page", js(`window.__noReload = true`))
	at := time.Now()
	e.sql(`UPDATE mentorados SET wa_status = 'connected', wa_status_at = $2, wa_connector = 'connector-live', wa_reason = NULL WHERE id = $1`, liveID, at)
	e.publishEvent(liveID, event.ConnectionEventID(liveID, event.StatusConnected, at),
		&event.Connection{Status: event.StatusConnected, Phone: "5511990000003", Connector: "connector-live"})
	want["connected"]++
	want["backoff"]--
	row := fmt.Sprintf(`document.querySelector('#fleet-body tr[data-id="%d"]')`, liveID)
	step("live update",
		wait(row+`.querySelector(".badge").dataset.status === "connected"`),
		wait(row+`.textContent.includes("connector-live")`),
		wait(count("connected")), wait(count("backoff")),
		wait(`window.__noReload === true`))

	// "Dashboard" opens the mentorado's dashboard in a new tab, signed in
	// with a pass; neither tab's storage keeps what it should not.
	newTab := chromedp.WaitNewTarget(ctx, func(i *target.Info) bool { return i.Type == "page" })
	step("open a dashboard", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#fleet-body tr[data-id="%d"] button[data-action="open"]`, ids[0]))))
	var tabID target.ID
	select {
	case tabID = <-newTab:
	case <-time.After(20 * time.Second):
		t.Fatal("no dashboard tab opened")
	}
	tctx, cancelTab := chromedp.NewContext(ctx, chromedp.WithTargetID(tabID))
	defer cancelTab()
	if err := chromedp.Do(tctx,
		wait(`document.readyState === "complete" && location.pathname === "/"`),
		wait(`document.getElementById("app") !== null && !document.getElementById("app").hidden`),
		wait(`sessionStorage.getItem("zapbus.token").startsWith("zbd_") && sessionStorage.getItem("zapbus.admin") === null`),
	); err != nil {
		t.Fatalf("dashboard tab: %v", err)
	}
	step("the console keeps only the admin token",
		wait(`sessionStorage.getItem("zapbus.admin") !== null && sessionStorage.getItem("zapbus.token") === null`))

	// Every word on the page is in its language: no catalog key shows.
	keys, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("body *")]
		.filter((e) => e.children.length === 0 && e.offsetParent !== null)
		.map((e) => e.textContent.trim())
		.filter((s) => /^[a-z]+\.[a-zA-Z_.-]+$/.test(s))`))
	if err != nil || len(keys) > 0 {
		t.Errorf("untranslated keys on the page: %v (%v)", keys, err)
	}

	if out := os.Getenv("ZAPBUS_CONSOLE_SCREENSHOT"); out != "" {
		step("settle for the picture", js(`document.querySelectorAll("#fleet-body tr.flash").forEach((r) => r.classList.remove("flash")); document.activeElement.blur(); window.scrollTo(0, 0)`))
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if !filepath.IsAbs(out) {
			out = filepath.Join("..", "..", out)
		}
		if !strings.HasSuffix(out, ".png") || len(png) < 1000 {
			t.Fatalf("screenshot %s: %d bytes", out, len(png))
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
