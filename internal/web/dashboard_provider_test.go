package web

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/event"
)

// fakeProviders answers commands like every provider would: on the
// connector's wa.*.cmd.> and on the gateways' zapbus.provider.<p>.wa.*.cmd.>
// (where the notifier sends a Meta or Z-API mentorado's commands), so the
// test holds whichever subject the routing picks.
type fakeProviders struct {
	mu   sync.Mutex
	cmds []fakeCmd
}

type fakeCmd struct {
	mentorado int64
	verb      event.Verb
	body      []byte
}

func (e *testEnv) fakeProviders(answer func(m int64, verb event.Verb, body []byte) event.Reply) *fakeProviders {
	e.t.Helper()
	fp := &fakeProviders{}
	handle := func(msg *nats.Msg) {
		subject := msg.Subject
		if _, cmd, err := event.ParseProviderSubject(subject); err == nil {
			subject = cmd
		}
		m, verb, err := event.ParseSubject(subject)
		if err != nil {
			return
		}
		fp.mu.Lock()
		fp.cmds = append(fp.cmds, fakeCmd{m, event.Verb(verb), msg.Data})
		fp.mu.Unlock()
		b, _ := json.Marshal(answer(m, event.Verb(verb), msg.Data))
		_ = msg.Respond(b)
	}
	for _, subj := range []string{event.CommandWildcard, event.ProviderCommandPrefix + ">"} {
		sub, err := e.nc.Subscribe(subj, handle)
		if err != nil {
			e.t.Fatal(err)
		}
		e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := e.nc.Flush(); err != nil {
		e.t.Fatal(err)
	}
	return fp
}

// last returns the last command of verb for mentorado m.
func (fp *fakeProviders) last(m int64, verb event.Verb) (fakeCmd, bool) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for i := len(fp.cmds) - 1; i >= 0; i-- {
		if c := fp.cmds[i]; c.mentorado == m && c.verb == verb {
			return c, true
		}
	}
	return fakeCmd{}, false
}

// TestDashboardProviderInBrowser drives the connection card and the send
// box in headless Chromium for mentorados on each provider. On Meta: the
// badge "Meta Cloud API", its number, WABA and webhook health, no QR,
// pairing, connect or unpair controls but "Verificar conexão" (a connect
// command); a send refused outside the 24-hour window says so and opens
// the template form, whose send shows in the thread as a template. On
// WhatsApp Web: the badge and the QR card as before. On Z-API: its
// instance and the same QR card.
func TestDashboardProviderInBrowser(t *testing.T) {
	exe := chromiumPath(t)
	e := newEnv(t)
	meta := e.createMentorado("Meta")
	web := e.createMentorado("Web")
	zapi := e.createMentorado("Zapi")
	e.putMeta(meta.ID, "106540352242922", "102290129340398", "5511955554444")
	pq := e.db.Providers()
	if err := pq.MarkWebhook(t.Context(), meta.ID, event.ProviderMeta, ""); err != nil {
		t.Fatal(err)
	}
	if err := pq.MarkWebhook(t.Context(), meta.ID, event.ProviderMeta, "assinatura inválida"); err != nil {
		t.Fatal(err)
	}
	e.putZAPI(zapi.ID, "3C4A5B6D7E8F")
	if _, err := pq.Delete(t.Context(), zapi.ID, event.ProviderWeb); err != nil { // Z-API alone
		t.Fatal(err)
	}
	fp := e.fakeProviders(func(m int64, verb event.Verb, body []byte) event.Reply {
		var req event.SendRequest
		_ = json.Unmarshal(body, &req)
		now := time.Now().UTC()
		switch {
		case m == meta.ID && verb == event.VerbConnect:
			return event.Reply{Status: &event.StatusReply{Status: event.StatusConnected, Phone: "5511955554444", Since: now}}
		case verb == event.VerbSend && req.Kind == event.KindTemplate:
			return event.Reply{Message: &event.Message{WAID: fmt.Sprintf("wamid.TPL%d", now.UnixNano()), ChatJID: req.Phone + "@s.whatsapp.net",
				SenderJID: "me@s.whatsapp.net", Phone: req.Phone, Direction: event.DirectionOut, Kind: event.KindTemplate,
				Text: req.Template.Text(), Timestamp: now, Status: event.MessageSent}}
		case verb == event.VerbSend && m == meta.ID:
			return event.Reply{Error: event.NewCommandError(event.CodeOutsideWindow, "no message from this chat in the last 24 h; send a template")}
		}
		return defaultAnswer(m, verb, body)
	})
	e.publishQR(web.ID, "2@web-qr,code", time.Now().Add(time.Minute))
	e.publishQR(zapi.ID, "2@zapi-qr,code", time.Now().Add(time.Minute))

	br := newBrowser(t, exe, 1000, 1200, 90*time.Second, "#app")
	wait, step := br.wait, br.step
	eval := func(js string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Evaluate[bool](`(() => { `+js+`; return true })()`)(ctx, tg)
			return err
		})
	}
	field := func(name string) string {
		return `document.querySelector('#provider-info [data-field="` + name + `"] dd')`
	}
	hidden := func(id string) string { return `document.getElementById("` + id + `").hidden` }
	catalog := loadCatalog(t, "pt-BR")
	js := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	signIn := func(who tenant, badge string) {
		t.Helper()
		step("sign in as "+badge, wait(`!document.getElementById("signin").hidden`),
			eval(`document.getElementById("token-input").value = ""`),
			chromedp.SendKeys(chromedp.ID("token-input"), who.Token), chromedp.Click(chromedp.ID("sign-in")),
			wait(`!`+hidden("app")),
			wait(`document.getElementById("provider-badge").textContent === `+js(badge)))
	}

	step("open the page", chromedp.Navigate(e.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("token-input")),
		wait(`document.documentElement.dataset.ready === "true"`),
		eval(`I18N.setLang("pt-BR", true)`), wait(`document.documentElement.lang === "pt-BR"`))

	// Meta: the number, the WABA, webhook health; no QR controls.
	signIn(meta, "Meta Cloud API")
	step("meta's connection card",
		wait(`document.getElementById("provider").dataset.provider === "meta" && !`+hidden("provider")),
		wait(field("number")+`.textContent === "(11) 95555-4444"`),
		wait(field("waba")+`.textContent === "102290129340398"`),
		wait(field("webhook-last")+`.textContent !== `+js(catalog["prov.webhookNever"])),
		wait(field("webhook-error")+`.textContent.startsWith("assinatura inválida (")`),
		wait(field("webhook-error")+`.parentElement.dataset.current === "true"`),
		wait(`document.getElementById("status-badge").dataset.status === "disconnected"`),
		wait(hidden("connect")+` && `+hidden("pairing")+` && `+hidden("qr")+` && `+hidden("logout")+` && `+hidden("pairing-code")),
		wait(`!`+hidden("verify")+` && document.getElementById("verify").textContent === "Verificar conexão"`),
		wait(`document.getElementById("qr-hint").textContent === `+js(catalog["prov.metaHint"])))
	step("verificar conexão",
		chromedp.Click(chromedp.ID("verify")),
		wait(`document.getElementById("status-badge").dataset.status === "connected"`),
		wait(`document.getElementById("qr-hint").textContent === `+js(catalog["prov.metaConnected"])),
		wait(hidden("connect")+` && `+hidden("logout")+` && !`+hidden("verify")))
	if c, ok := fp.last(meta.ID, event.VerbConnect); !ok {
		t.Fatal("Verificar conexão sent no connect command")
	} else if strings.Contains(string(c.body), "phone") {
		t.Fatalf("connect body %s", c.body)
	}

	// A free-form send outside the window: the message, then a template.
	tplItem := `document.querySelector('#thread li[data-kind="template"]')`
	step("outside the 24-hour window",
		chromedp.SendKeys(chromedp.ID("new-phone"), "11977776666\n"),
		wait(`document.getElementById("thread-title").textContent === "(11) 97777-6666"`),
		wait(`!`+hidden("tpl-open")+` && `+hidden("tpl-form")),
		chromedp.SendKeys(chromedp.ID("send-text"), "oi, tudo bem?"), chromedp.Click(chromedp.ID("send-button")),
		wait(`document.getElementById("send-error").textContent === `+js(catalog["error.outside_window"])),
		wait(`document.getElementById("send-error").textContent.includes("Fora da janela de 24 horas") && document.getElementById("send-error").textContent.includes("só modelos aprovados podem ser enviados")`),
		wait(`!`+hidden("tpl-form")+` && `+hidden("tpl-open")),
		wait(`document.getElementById("tpl-language").value === "pt_BR"`),
		wait(`document.activeElement === document.getElementById("tpl-name")`))
	step("send a template",
		chromedp.SendKeys(chromedp.ID("tpl-name"), "pedido_enviado"),
		chromedp.SendKeys(chromedp.ID("tpl-params"), "Ana\n\n#123"),
		chromedp.Click(chromedp.ID("tpl-send")),
		wait(tplItem+` !== null`),
		wait(tplItem+`.querySelector(".body").textContent === "[pedido_enviado (pt_BR)] Ana · #123"`),
		wait(tplItem+`.querySelector(".tpl-tag").textContent === "Modelo"`),
		wait(hidden("tpl-form")+` && !`+hidden("tpl-open")),
		wait(`document.getElementById("send-error").textContent === ""`),
		wait(`document.getElementById("send-text").value === "oi, tudo bem?"`))
	c, ok := fp.last(meta.ID, event.VerbSend)
	var sent event.SendRequest
	if !ok || json.Unmarshal(c.body, &sent) != nil || sent.Kind != event.KindTemplate || sent.Phone != "5511977776666" ||
		sent.Template == nil || sent.Template.Name != "pedido_enviado" || sent.Template.Language != "pt_BR" ||
		strings.Join(sent.Template.Params, "|") != "Ana|#123" || sent.Text != "" || sent.ClientID == "" {
		t.Fatalf("template send %s", c.body)
	}
	step("in English",
		eval(`I18N.setLang("en", true)`),
		wait(`document.getElementById("verify").textContent === "Check connection"`),
		wait(`document.getElementById("provider-badge").textContent === "Meta Cloud API"`),
		wait(`document.querySelector('#provider-info [data-field="waba"] dt').textContent === "WhatsApp Business Account (WABA)"`),
		wait(tplItem+`.querySelector(".tpl-tag").textContent === "Template"`),
		eval(`I18N.setLang("pt-BR", true)`),
		wait(`document.getElementById("verify").textContent === "Verificar conexão"`))

	// WhatsApp Web: the QR card as before, no Meta details.
	step("sign out", chromedp.Click(chromedp.ID("sign-out")), wait(hidden("app")), wait(hidden("provider")))
	signIn(web, "WhatsApp Web")
	step("whatsapp web's connection card",
		wait(`document.getElementById("provider").dataset.provider === "whatsapp_web"`),
		wait(`document.querySelectorAll("#provider-info [data-field]").length === 0`),
		wait(`!`+hidden("connect")+` && !`+hidden("pairing")+` && `+hidden("verify")),
		wait(`document.getElementById("qr-hint").textContent === `+js(catalog["hint.disconnected"])),
		chromedp.Click(chromedp.ID("connect")),
		wait(`document.getElementById("status-badge").dataset.status === "qr"`),
		wait(`!`+hidden("qr")+` && document.getElementById("qr").src.startsWith("blob:")`),
		wait(hidden("tpl-open")))
	if _, ok := fp.last(web.ID, event.VerbConnect); !ok {
		t.Fatal("Conectar sent no connect command")
	}

	// Z-API: its instance and the same QR card.
	step("sign out again", chromedp.Click(chromedp.ID("sign-out")), wait(hidden("app")))
	signIn(zapi, "Z-API")
	step("z-api's connection card",
		wait(field("instance")+`.textContent === "3C4A5B6D7E8F"`),
		wait(field("webhook-last")+`.textContent === `+js(catalog["prov.webhookNever"])),
		wait(`!`+hidden("connect")+` && !`+hidden("pairing")+` && `+hidden("verify")),
		wait(hidden("qr")),
		chromedp.Click(chromedp.ID("connect")),
		wait(`!`+hidden("qr")+` && document.getElementById("qr").src.startsWith("blob:")`))
}
