package web

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/zapbus/zapbus/internal/event"
)

// TestDashboardChatsInBrowser drives the dashboard's chat list in headless
// Chromium (skipped without it; cmd/devstack's browser test covers the
// rest of the page): groups and LID-only chats are listed, a group's thread
// names its senders, the send box sends to the chat, and a history sync
// shows as one progress line.
func TestDashboardChatsInBrowser(t *testing.T) {
	exe := chromiumPath(t)
	e := newEnv(t)
	a := e.createMentorado("Ana")
	e.seedChatsAPI(a.ID)
	fc := e.fakeConnector(func(m int64, verb event.Verb, body []byte) event.Reply {
		var req event.SendRequest
		_ = json.Unmarshal(body, &req)
		if verb != event.VerbSend || req.Chat == "" {
			return defaultAnswer(m, verb, body)
		}
		return event.Reply{Message: &event.Message{WAID: fmt.Sprintf("OUT%d", time.Now().UnixNano()), ChatJID: req.Chat,
			SenderJID: "me@s.whatsapp.net", Direction: event.DirectionOut, Kind: event.KindText, Text: req.Text,
			Timestamp: time.Now(), Status: event.MessageSent}}
	})

	br := newBrowser(t, exe, 900, 900, 60*time.Second, "body")
	wait, step := br.wait, br.step
	group := `document.querySelector('#conversations li[data-kind="group"]')`
	lid := `document.querySelector('#conversations li[data-chat="` + tLID + `"]')`
	thread := `document.getElementById("thread").textContent`

	step("sign in", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("token-input")),
		wait(`document.documentElement.dataset.ready === "true"`),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			// The page's default language, whatever the machine's.
			_, err := chromedp.Evaluate[bool](`(() => { I18N.setLang("pt-BR", true); return true })()`)(ctx, tg)
			return err
		}),
		wait(`document.documentElement.lang === "pt-BR"`),
		chromedp.SendKeys(chromedp.ID("token-input"), a.Token), chromedp.Click(chromedp.ID("sign-in")),
		wait(`document.querySelectorAll("#conversations li").length === 3`))
	step("both kinds listed",
		wait(group+`.dataset.chat === "`+tGroup+`" && `+group+`.textContent.includes("Turma 7") && `+group+`.textContent.includes("3 participantes")`),
		wait(group+`.querySelector('.group-icon[aria-label="Grupo"]') !== null`),
		wait(lid+`.dataset.kind === "direct" && `+lid+`.textContent.includes("Lia") && `+lid+`.dataset.phone === undefined`),
		wait(`document.querySelector('#conversations li[data-phone="`+tZed+`"]').dataset.unread === "2"`))
	step("a group's thread names its senders",
		chromedp.Click(chromedp.CSS(`#conversations li[data-kind="group"] button`)),
		wait(thread+`.includes("Ana da agenda") && `+thread+`.includes("Zed no grupo")`),
		wait(`document.getElementById("thread-title").textContent === "Turma 7 · 3 participantes"`),
		wait(group+`.dataset.unread === "0"`))
	step("the send box sends to the group",
		chromedp.SendKeys(chromedp.ID("send-text"), "Bom dia, turma"), chromedp.Click(chromedp.ID("send-button")),
		wait(`[...document.querySelectorAll("#thread li.out")].some((l) => l.textContent.includes("Bom dia, turma"))`))
	var sent event.SendRequest
	if err := json.Unmarshal(fc.LastBody(), &sent); err != nil || sent.Chat != tGroup || sent.Phone != "" || sent.Text != "Bom dia, turma" {
		t.Fatalf("sent %+v (%v)", sent, err)
	}
	step("a LID-only chat opens and answers by LID",
		chromedp.Click(chromedp.CSS(`#conversations li[data-chat="`+tLID+`"] button`)),
		wait(thread+`.includes("só lid")`),
		chromedp.SendKeys(chromedp.ID("send-text"), "Oi Lia"), chromedp.Click(chromedp.ID("send-button")),
		wait(`[...document.querySelectorAll("#thread li.out")].some((l) => l.textContent.includes("Oi Lia"))`))
	if err := json.Unmarshal(fc.LastBody(), &sent); err != nil || sent.Chat != tLID || sent.Phone != "" {
		t.Fatalf("sent %+v (%v)", sent, err)
	}

	// A history sync: progress, not messages.
	e.publishEvent(a.ID, event.HistoryEventID(a.ID, "notif-0"), &event.HistoryProgress{Sync: "initial_bootstrap", Chunk: 0,
		Progress: 30, Conversations: 2, Messages: 80, SyncedAt: time.Now()})
	step("history progress",
		wait(`!document.getElementById("history-progress").hidden`),
		wait(`document.getElementById("history-progress").textContent === "Importando histórico… 80 mensagens (30%)"`))
	e.publishHistorySync(a.ID, 40) // 40 messages, then its chunk at 100 %
	step("history done",
		wait(`document.getElementById("history-progress").textContent === "Histórico importado: 120 mensagens"`),
		wait(`!`+thread+`.includes("old HIST")`))
}
