package web

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/zapbus/zapbus/internal/event"
)

// TestDashboardCampaignsInBrowser drives the campaigns card in headless
// Chromium: a campaign created through the form is listed scheduled with
// an empty progress bar; as its recipients are sent and campaign events
// arrive on the live stream, the bar and the badge move; the recipients
// table shows each one's status; pause and resume go through the API; a
// bulk pause shows a banner whose button resumes sending. A queued and an
// expired message show their status (and reason) in the thread.
func TestDashboardCampaignsInBrowser(t *testing.T) {
	exe := chromiumPath(t)
	e := newEnv(t)
	e.fakeConnector(defaultAnswer)
	a := e.createMentorado("Ana")
	lead := e.insertLead(a.ID, "5511988880001", "Ana Souza", "site")
	other := e.createMentorado("Bia")
	e.createCampaign(other.Token, map[string]any{"name": "Bia's", "message": map[string]any{"text": "oi"},
		"recipients": map[string]any{"phones": []string{"5511988880009"}}})

	br := newBrowser(t, exe, 1000, 1400, 90*time.Second, "#campaigns")
	ctx, wait, step := br.ctx, br.wait, br.step
	item := `document.querySelector("#camp-list li.camp-item")`
	bar := item + `.querySelector("progress.camp-progress")`
	badge := item + `.querySelector(".camp-state")`

	step("sign in", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("token-input")),
		wait(`document.documentElement.dataset.ready === "true"`),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { I18N.setLang("pt-BR", true); return true })()`)(ctx, tg)
			return err
		}),
		wait(`document.documentElement.lang === "pt-BR"`),
		chromedp.SendKeys(chromedp.ID("token-input"), a.Token), chromedp.Click(chromedp.ID("sign-in")),
		wait(`!document.getElementById("camp-empty").hidden`),
		wait(`document.getElementById("camp-empty").textContent === "Nenhuma campanha ainda."`))

	step("create through the form",
		chromedp.Click(chromedp.CSS("#camp-new summary")), chromedp.WaitVisible(chromedp.ID("camp-name")),
		chromedp.SendKeys(chromedp.ID("camp-name"), "Black Friday"),
		chromedp.SendKeys(chromedp.ID("camp-text"), "Oi {{first_name|amigo}}"),
		chromedp.SendKeys(chromedp.ID("camp-phones"), "5511988880001\n(11) 98888-0002\n5511988880003"),
		chromedp.Click(chromedp.ID("camp-create")),
		wait(`document.querySelectorAll("#camp-list li.camp-item").length === 1`),
		wait(item+`.querySelector(".camp-name").textContent === "Black Friday"`),
		wait(badge+`.textContent === "agendada" && `+item+`.dataset.state === "scheduled"`),
		wait(bar+`.value === 0 && `+bar+`.dataset.total === "3"`),
		wait(`document.getElementById("camp-new").open === false`))
	var id int64
	var pacing string
	if err := e.db.Pool.QueryRow(ctx, `SELECT id, pacing->>'profile' FROM campaigns WHERE mentorado_id = $1`, a.ID).Scan(&id, &pacing); err != nil {
		t.Fatal(err)
	}
	if pacing != "standard" {
		t.Fatalf("pacing %q", pacing)
	}
	var texts []string
	rows, _ := e.db.Pool.Query(ctx, `SELECT text FROM campaign_recipients WHERE campaign_id = $1 ORDER BY id`, id)
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		texts = append(texts, s)
	}
	rows.Close()
	if len(texts) != 3 || texts[0] != "Oi Ana" || texts[1] != "Oi amigo" {
		t.Fatalf("rendered %q (lead %d)", texts, lead)
	}

	// The worker starts it and sends to the first two: one delivered, one
	// skipped; the persister publishes the progress.
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := e.db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE campaigns SET state = 'running', started_at = now() WHERE id = $1`, id)
	e.insertMessage(a.ID, msgRow{WAID: "CAMP-1", Phone: "5511988880001", Direction: "out", Status: "delivered", Text: "Oi Ana"})
	exec(`UPDATE campaign_recipients SET state = 'sent', wa_message_id = 'CAMP-1', sent_at = now() WHERE campaign_id = $1 AND phone = '5511988880001'`, id)
	exec(`UPDATE campaign_recipients SET state = 'skipped', reason = 'opted_out' WHERE campaign_id = $1 AND phone = '5511988880002'`, id)
	var seq int64
	progress := func(st event.CampaignState, reason string, c event.CampaignCounts) {
		t.Helper()
		seq++
		p := &event.Campaign{CampaignID: id, Name: "Black Friday", State: st, Reason: reason, Counts: c}
		e.publishEvent(a.ID, event.CampaignEventID(a.ID, p, seq), p)
	}
	progress(event.CampaignRunning, "", event.CampaignCounts{Total: 3, Pending: 1, Sent: 1, Delivered: 1, Skipped: 1})
	step("the bar moves with the campaign events",
		wait(bar+`.value === 2 && `+bar+`.max === 3`),
		wait(badge+`.textContent === "enviando"`),
		wait(item+`.querySelector(".camp-counts").textContent.startsWith("2 de 3 concluídos")`))

	rcpt := `document.querySelectorAll("#camp-list tr.camp-rcpt")`
	step("the recipients table",
		chromedp.Click(chromedp.CSS("#camp-list li.camp-item .camp-show")),
		wait(rcpt+`.length === 3`),
		wait(rcpt+`[0].querySelector(".camp-rcpt-status").textContent === "entregue"`),
		wait(rcpt+`[1].querySelector(".camp-rcpt-status").textContent === "pulada"`),
		wait(rcpt+`[2].querySelector(".camp-rcpt-status").textContent === "aguardando"`))

	step("pause", chromedp.Click(chromedp.CSS("#camp-list li.camp-item .camp-pause")),
		wait(badge+`.textContent === "pausada"`),
		wait(item+`.querySelector(".camp-reason").textContent === "Pausada: pausada por você"`))
	var st string
	_ = e.db.Pool.QueryRow(ctx, `SELECT state FROM campaigns WHERE id = $1`, id).Scan(&st)
	if st != "paused" {
		t.Fatalf("state %s after pause", st)
	}
	step("resume", chromedp.Click(chromedp.CSS("#camp-list li.camp-item .camp-resume")),
		wait(badge+`.textContent === "enviando"`))

	// The last recipient fails; the campaign completes.
	exec(`UPDATE campaign_recipients SET state = 'failed', reason = 'not_on_whatsapp' WHERE campaign_id = $1 AND phone = '5511988880003'`, id)
	exec(`UPDATE campaigns SET state = 'completed', finished_at = now() WHERE id = $1`, id)
	progress(event.CampaignCompleted, "", event.CampaignCounts{Total: 3, Sent: 1, Delivered: 1, Skipped: 1, Failed: 1})
	step("completed",
		wait(bar+`.value === 3`),
		wait(badge+`.textContent === "concluída"`),
		wait(item+`.querySelector(".camp-delete") !== null && `+item+`.querySelector(".camp-pause") === null`),
		wait(rcpt+`.length === 3 && `+rcpt+`[2].querySelector(".camp-rcpt-status").textContent === "falhou"`))

	// A ban pauses bulk sending: the banner, and its button resumes.
	exec(`INSERT INTO send_settings (mentorado_id, bulk_paused_at, bulk_paused_reason) VALUES ($1, now(), 'temporary_ban')`, a.ID)
	e.publishEvent(a.ID, event.SendingEventID(a.ID, event.BulkPaused, time.Now()), &event.Sending{Bulk: event.BulkPaused, Reason: "temporary_ban"})
	step("bulk pause banner",
		wait(`!document.getElementById("camp-bulk").hidden`),
		wait(`document.getElementById("camp-bulk-text").textContent === "Os envios em massa estão pausados: o WhatsApp bloqueou o número temporariamente."`),
		chromedp.Click(chromedp.ID("camp-bulk-resume")),
		wait(`document.getElementById("camp-bulk").hidden`))
	var paused *time.Time
	_ = e.db.Pool.QueryRow(ctx, `SELECT bulk_paused_at FROM send_settings WHERE mentorado_id = $1`, a.ID).Scan(&paused)
	if paused != nil {
		t.Fatal("the banner's resume did not end the bulk pause")
	}

	// A draft to the leads with a tag, through the form; then deleted. A
	// filter that matches nobody says so.
	e.setLead(lead, "new", []string{"vip"}, map[string]string{})
	draft := `document.querySelector('#camp-list li.camp-item[data-state="draft"]')`
	step("a draft to a tag",
		chromedp.Click(chromedp.CSS("#camp-new summary")), chromedp.WaitVisible(chromedp.ID("camp-name")),
		chromedp.SendKeys(chromedp.ID("camp-name"), "Sem ninguém"),
		chromedp.SendKeys(chromedp.ID("camp-text"), "oi"),
		chromedp.Click(chromedp.ID("camp-to-filter")), chromedp.WaitVisible(chromedp.ID("camp-tag")),
		chromedp.SendKeys(chromedp.ID("camp-tag"), "ninguem"),
		chromedp.Click(chromedp.ID("camp-create")),
		wait(`document.getElementById("camp-error").textContent !== ""`),
		wait(`document.querySelectorAll("#camp-list li.camp-item").length === 1`),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { document.getElementById("camp-tag").value = ""; return true })()`)(ctx, tg)
			return err
		}),
		chromedp.SendKeys(chromedp.ID("camp-tag"), "vip"),
		chromedp.Click(chromedp.ID("camp-draft")),
		chromedp.Click(chromedp.ID("camp-create")),
		wait(`document.querySelectorAll("#camp-list li.camp-item").length === 2`),
		wait(draft+` !== null && `+draft+`.querySelector(".camp-state").textContent === "rascunho"`),
		wait(draft+`.querySelector("progress.camp-progress").dataset.total === "1"`),
		wait(`document.getElementById("camp-error").textContent === ""`),
		chromedp.Click(chromedp.CSS(`#camp-list li.camp-item[data-state="draft"] .camp-delete`)),
		wait(`document.querySelectorAll("#camp-list li.camp-item").length === 1`))

	// The thread shows queued and expired sends with the reason.
	e.insertMessage(a.ID, msgRow{WAID: "EXP-1", Phone: "5511977770000", Direction: "out", Status: "expired", Text: "tarde demais",
		At: time.Now().Add(-time.Minute)})
	exec(`UPDATE whatsapp_messages SET status_reason = 'ttl' WHERE wa_message_id = 'EXP-1'`)
	e.insertMessage(a.ID, msgRow{WAID: "Q-1", Phone: "5511977770000", Direction: "out", Status: "queued", Text: "na fila"})
	expired := `document.querySelector('#thread li[data-id="EXP-1"]')`
	queued := `document.querySelector('#thread li[data-id="Q-1"]')`
	step("queued and expired in the thread",
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { loadConversations(); return true })()`)(ctx, tg)
			return err
		}),
		wait(`document.querySelector('#conversations li[data-phone="5511977770000"] button') !== null`),
		chromedp.Click(chromedp.CSS(`#conversations li[data-phone="5511977770000"] button`)),
		wait(expired+` !== null && `+expired+`.dataset.status === "expired" && `+expired+`.querySelector(".meta").textContent.includes("expirou (ttl)")`),
		wait(queued+` !== null && `+queued+`.querySelector(".meta").textContent.includes("na fila")`))
}
