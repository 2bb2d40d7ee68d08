package gateway

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/testenv"
)

func TestSendPublishesThenReplies(t *testing.T) {
	e := newMetaEnv(t)
	r := e.command(1, event.VerbSend, event.SendRequest{Phone: "+55 11 98888-7777", Text: "olá"})
	if r.Error != nil || r.Message == nil {
		t.Fatalf("reply %+v", r)
	}
	msg := r.Message
	if msg.WAID != "wamid.1" || msg.ChatJID != "5511988887777@s.whatsapp.net" || msg.Direction != event.DirectionOut ||
		msg.Status != event.MessageSent || msg.SenderJID != "5511900000101@s.whatsapp.net" {
		t.Fatalf("message %+v", msg)
	}
	// The reply came after the event was stored: it is there now.
	evs := e.events()
	if len(evs) != 1 || evs[0].ID != event.MessageEventID(1, "wamid.1") || evs[0].Provider != event.ProviderMeta {
		t.Fatalf("stored %v", evs)
	}
	sent := e.drv.sent()
	if len(sent) != 1 || sent[0].To != "5511988887777" || sent[0].ChatJID != "5511988887777@s.whatsapp.net" {
		t.Fatalf("driver got %+v", sent)
	}
}

func TestSendClientIDReplayDoesNotSendTwice(t *testing.T) {
	e := newMetaEnv(t)
	req := event.SendRequest{Phone: "5511988887777", Text: "pedido 7", ClientID: "order-7"}
	first := e.command(1, event.VerbSend, req)
	second := e.command(1, event.VerbSend, req)
	if first.Error != nil || second.Error != nil {
		t.Fatalf("replies %+v %+v", first.Error, second.Error)
	}
	if first.Message.WAID != second.Message.WAID || second.Message.ClientID != "order-7" {
		t.Fatalf("replay answered %+v, first %+v", second.Message, first.Message)
	}
	if n := len(e.drv.sent()); n != 1 {
		t.Fatalf("driver sent %d times", n)
	}
	// Another mentorado's same client id is its own send.
	if r := e.command(2, event.VerbSend, req); r.Error != nil || r.Message.WAID == first.Message.WAID {
		t.Fatalf("mentorado 2: %+v", r)
	}
	// A failed send releases the client id: the retry sends.
	e.drv.set(func(d *fakeDriver) { d.sendErr = event.NewCommandError(event.CodeProviderError, "refused") })
	if r := e.command(1, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "x", ClientID: "order-8"}); r.Error == nil || r.Error.Code != event.CodeProviderError {
		t.Fatalf("failed send: %+v", r)
	}
	e.drv.set(func(d *fakeDriver) { d.sendErr = nil })
	if r := e.command(1, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "x", ClientID: "order-8"}); r.Error != nil {
		t.Fatalf("retry after failure: %+v", r.Error)
	}
}

func TestCommandRouting(t *testing.T) {
	e := newMetaEnv(t)
	ctx := context.Background()
	// Mentorado 3 runs on WhatsApp Web: this gateway is the wrong place.
	if err := e.db.Providers().Put(ctx, storeRow(3, event.ProviderWeb)); err != nil {
		t.Fatal(err)
	}
	if r := e.command(3, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "oi"}); r.Error == nil || r.Error.Code != event.CodeWrongProvider {
		t.Fatalf("whatsapp_web mentorado: %+v", r)
	}
	// Mentorado 1 has meta configured but chose WhatsApp Web.
	if err := e.db.Providers().Put(ctx, storeRow(1, event.ProviderWeb)); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Providers().SetOverride(ctx, 1, event.ProviderWeb); err != nil {
		t.Fatal(err)
	}
	if r := e.command(1, event.VerbStatus, nil); r.Error == nil || r.Error.Code != event.CodeWrongProvider {
		t.Fatalf("override: %+v", r)
	}
	if r := e.command(99, event.VerbStatus, nil); r.Error == nil || r.Error.Code != event.CodeUnknown {
		t.Fatalf("unknown mentorado: %+v", r)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE mentorados SET disabled_at = now() WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	if r := e.command(2, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "oi"}); r.Error == nil || r.Error.Code != event.CodeDisabled {
		t.Fatalf("disabled send: %+v", r)
	}
	if r := e.command(2, event.VerbStatus, nil); r.Error != nil || r.Status == nil {
		t.Fatalf("disabled status: %+v", r)
	}
	if n := len(e.drv.sent()); n != 0 {
		t.Fatalf("driver sent %d", n)
	}
	// Groups and LIDs are WhatsApp Web's; unsupported verbs say so.
	if err := e.db.Providers().SetOverride(ctx, 1, ""); err != nil {
		t.Fatal(err)
	}
	if r := e.command(1, event.VerbSend, event.SendRequest{Chat: "120363025246125888@g.us", Text: "oi"}); r.Error == nil || r.Error.Code != event.CodeNotSupported {
		t.Fatalf("group send: %+v", r)
	}
	if r := e.command(1, event.VerbEdit, event.ActionRequest{MessageID: "wamid.1", ChatJID: "5511988887777@s.whatsapp.net", FromMe: true, Text: "x", SentAt: time.Now()}); r.Error == nil || r.Error.Code != event.CodeNotSupported {
		t.Fatalf("edit: %+v", r)
	}
}

func TestSendWindow(t *testing.T) {
	drv := &fakeDriver{p: event.ProviderMeta, window: 24 * time.Hour}
	e := newEnv(t, windowedDriver{drv}, Config{})
	e.configure(1, metaAccount("101", "secret-a"))
	ctx := context.Background()
	text := event.SendRequest{Phone: "5511988887777", Text: "oi"}
	if r := e.command(1, event.VerbSend, text); r.Error == nil || r.Error.Code != event.CodeOutsideWindow ||
		!strings.Contains(r.Error.Message, "in the last 24 hours") {
		t.Fatalf("no inbound message: %+v", r)
	}
	tpl := event.SendRequest{Phone: "5511988887777", Kind: event.KindTemplate, Template: &event.Template{Name: "hello_world", Language: "en_US"}}
	r := e.command(1, event.VerbSend, tpl)
	if r.Error != nil || r.Message.Kind != event.KindTemplate || r.Message.Text != tpl.Template.Text() {
		t.Fatalf("template: %+v %+v", r.Error, r.Message)
	}
	// A message from the chat 25 hours ago does not open the window; one
	// an hour ago (in the form without the 9th digit, as Meta's wa_id
	// may be) does, and the send goes to that chat.
	for _, row := range []struct {
		id, jid string
		ago     time.Duration
	}{{"old", "5511988887777@s.whatsapp.net", 25 * time.Hour}, {"new", "551188887777@s.whatsapp.net", time.Hour}} {
		if row.id == "new" {
			if r := e.command(1, event.VerbSend, text); r.Error == nil || r.Error.Code != event.CodeOutsideWindow {
				t.Fatalf("after an old message: %+v", r)
			}
		}
		if _, err := e.db.Pool.Exec(ctx, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, direction, kind, status, status_rank, sent_at)
			VALUES (1, $1, $2, $2, 'in', 'text', 'received', 1, now() - $3::interval)`, row.id, row.jid, row.ago.String()); err != nil {
			t.Fatal(err)
		}
	}
	r = e.command(1, event.VerbSend, text)
	if r.Error != nil || r.Message.ChatJID != "551188887777@s.whatsapp.net" {
		t.Fatalf("inside the window: %+v %+v", r.Error, r.Message)
	}
}

func TestProviderOutageStatus(t *testing.T) {
	e := newMetaEnv(t)
	e.drv.set(func(d *fakeDriver) {
		d.sendErr = event.NewCommandError(event.CodeUnavailable, "graph.facebook.com: 503 after 3 attempts")
	})
	if r := e.command(1, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "oi"}); r.Error == nil || r.Error.Code != event.CodeUnavailable {
		t.Fatalf("reply %+v", r)
	}
	conns := connections(t, e.events())
	if len(conns) != 1 || conns[0].Status != event.StatusBackoff || conns[0].RetryAt == nil ||
		conns[0].Reason != "meta unreachable: graph.facebook.com: 503 after 3 attempts" {
		t.Fatalf("connection events %+v", conns)
	}
	// Still down: no new event for the same state.
	e.command(1, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "oi"})
	e.drv.set(func(d *fakeDriver) { d.sendErr = nil })
	if r := e.command(1, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "oi"}); r.Error != nil {
		t.Fatalf("reply %+v", r.Error)
	}
	conns = connections(t, e.events())
	if len(conns) != 2 || conns[1].Status != event.StatusConnected || conns[1].Phone != "5511900000101" {
		t.Fatalf("connection events %+v", conns)
	}
}

func TestQRPairing(t *testing.T) {
	drv := &fakeDriver{p: event.ProviderZAPI, status: event.StatusDisconnected}
	e := newEnv(t, qrDriver{drv}, Config{})
	e.configure(1, provider.Account{Provider: event.ProviderZAPI, ZAPI: &provider.ZAPICredentials{InstanceID: "inst-1", InstanceToken: "t", ClientToken: "c", WebhookSecret: "s"}})
	r := e.command(1, event.VerbConnect, event.ConnectRequest{Method: event.ConnectQR})
	if r.Error != nil || r.Status.Status != event.StatusQR {
		t.Fatalf("connect: %+v %+v", r.Error, r.Status)
	}
	live, err := e.bus.LiveQR(context.Background(), 1)
	if err != nil || live.QR.Code == "" {
		t.Fatalf("live QR: %v %+v", err, live)
	}
	// The codes are refreshed until the phone scans one.
	testenv.Eventually(t, 10*time.Second, func() bool {
		l, err := e.bus.LiveQR(context.Background(), 1)
		return err == nil && l.QR.Code != live.QR.Code
	}, "QR not refreshed")
	drv.set(func(d *fakeDriver) { d.status = event.StatusConnected })
	testenv.Eventually(t, 10*time.Second, func() bool {
		c := connections(t, e.events())
		return len(c) > 0 && c[len(c)-1].Status == event.StatusConnected
	}, "connected not published")
	qrs := e.stored(bus.StreamQR)
	if len(qrs) != 1 || qrs[0].Provider != event.ProviderZAPI {
		t.Fatalf("WA_QR holds %v", qrs)
	}
}

func connections(t *testing.T, evs []event.Envelope) []event.Connection {
	t.Helper()
	var out []event.Connection
	for _, ev := range evs {
		if ev.Type != event.TypeConnection {
			continue
		}
		var c event.Connection
		if err := json.Unmarshal(ev.Data, &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// The drivers name the provider in their unavailable errors already: the
// status reason says it once.
func TestProviderOutageReasonNamesProviderOnce(t *testing.T) {
	e := newMetaEnv(t)
	e.drv.set(func(d *fakeDriver) {
		d.sendErr = event.NewCommandError(event.CodeUnavailable, "meta unreachable: HTTP 503 after 3 attempts")
	})
	e.command(1, event.VerbSend, event.SendRequest{Phone: "5511988887777", Text: "oi"})
	conns := connections(t, e.events())
	if len(conns) != 1 || conns[0].Reason != "meta unreachable: HTTP 503 after 3 attempts" {
		t.Fatalf("connection events %+v", conns)
	}
}
