package connector_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// TestSendClientIDs: distinct client ids are distinct sends, whatever
// characters they use. "order 7", "order.7" and "order_7" used to map to
// one WA_SENDS key (the second and third were never sent but answered with
// the first message), and ids with ':', '+', '@' or non-ASCII failed with
// "nats: invalid key". A retry of each id still sends nothing new.
func TestSendClientIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900000013")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")

	sends := []event.SendRequest{
		{ClientID: "order 7", Phone: "11987654321", Text: "um"},
		{ClientID: "order.7", Phone: "11987654321", Text: "dois"},
		{ClientID: "order_7", Phone: "21987654321", Text: "três"},
		{ClientID: "a:b+c@d", Phone: "11987654321", Text: "quatro"},
		{ClientID: "pedido-ção-😀", Phone: "11987654321", Text: "cinco"},
		{ClientID: "order*7>", Phone: "11987654321", Text: "seis"},
		{ClientID: strings.Repeat("é", event.MaxClientIDRunes), Phone: "11987654321", Text: "sete"},
	}
	waids := map[string]bool{}
	for _, req := range sends {
		r := e.mustRequest(m, event.VerbSend, req)
		if r.Error != nil || r.Message == nil {
			t.Fatalf("send %q: %+v", req.ClientID, r.Error)
		}
		if r.Message.Text != req.Text {
			t.Fatalf("send %q answered with another message: %q", req.ClientID, r.Message.Text)
		}
		if waids[r.Message.WAID] {
			t.Fatalf("send %q reused message %s", req.ClientID, r.Message.WAID)
		}
		waids[r.Message.WAID] = true
	}
	for _, req := range sends { // retries: same message back, nothing sent
		r := e.mustRequest(m, event.VerbSend, req)
		if r.Error != nil || r.Message == nil || r.Message.Text != req.Text {
			t.Fatalf("retry %q: %+v", req.ClientID, r)
		}
	}
	sent := e.world.Sent(m)
	if len(sent) != len(sends) {
		t.Fatalf("WhatsApp got %d messages, want %d", len(sent), len(sends))
	}
	for i, s := range sent {
		if s.Text != sends[i].Text {
			t.Fatalf("sent[%d] = %q, want %q", i, s.Text, sends[i].Text)
		}
	}
	if n := len(e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage))); n != len(sends) {
		t.Fatalf("recorded %d messages, want %d", n, len(sends))
	}

	for _, bad := range []string{strings.Repeat("x", event.MaxClientIDRunes+1), "tab\there", "nul\x00", "bell\a"} {
		r := e.mustRequest(m, event.VerbSend, event.SendRequest{ClientID: bad, Phone: "11987654321", Text: "x"})
		if r.Error == nil || r.Error.Code != event.CodeBadRequest {
			t.Fatalf("client id %q: %+v", bad, r)
		}
	}
	if n := len(e.world.Sent(m)); n != len(sends) {
		t.Fatalf("a refused send reached WhatsApp (%d sent)", n)
	}
}

// TestSendMaxTextAnyContent: a text at the documented maximum
// (event.MaxTextRunes) of any content is sent and recorded. A 65,536-'<'
// text used to reach WhatsApp and then fail to record (its HTML-escaped
// envelope outgrew the old 320 KiB cap): "sent but not recorded", forever.
// A NUL in a text is refused before anything is sent.
func TestSendMaxTextAnyContent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900000014")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")

	contents := []string{"<", `"`, "\u0001", `\`, "😀", "&"}
	for i, c := range contents {
		text := strings.Repeat(c, event.MaxTextRunes)
		r := e.mustRequest(m, event.VerbSend, event.SendRequest{Phone: "11987654321", Text: text})
		if r.Error != nil || r.Message == nil {
			t.Fatalf("%q × %d: %+v", c, event.MaxTextRunes, r.Error)
		}
		stored := e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage))
		if len(stored) != i+1 {
			t.Fatalf("%q: %d events recorded, want %d", c, len(stored), i+1)
		}
		p, err := stored[i].Payload()
		if err != nil || p.(*event.Message).Text != text {
			t.Fatalf("%q: recorded text differs (%v)", c, err)
		}
	}
	for _, bad := range []event.SendRequest{
		{Phone: "11987654321", Text: strings.Repeat("<", event.MaxTextRunes+1)},
		{Phone: "11987654321", Text: "a\x00b"},
	} {
		r := e.mustRequest(m, event.VerbSend, bad)
		if r.Error == nil || (r.Error.Code != event.CodeTextTooLong && r.Error.Code != event.CodeBadRequest) {
			t.Fatalf("refused text: %+v", r)
		}
	}
	if n := len(e.world.Sent(m)); n != len(contents) {
		t.Fatalf("WhatsApp got %d messages, want %d", n, len(contents))
	}
}

// TestSentMessageRecordedWhenStreamReturns: WhatsApp took the message but
// its event could not be published (the stream was gone). The caller is
// told so, and the connector keeps publishing it in the background: once
// the stream is back the event is stored, without the caller retrying.
// (The chaos run found a send during a NATS restart that reached the phone
// and never got a row.)
func TestSentMessageRecordedWhenStreamReturns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900000014")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")

	ctx := context.Background()
	if err := e.observer.JS.DeleteStream(ctx, bus.StreamEvents); err != nil {
		t.Fatal(err)
	}
	r := e.mustRequest(m, event.VerbSend, event.SendRequest{ClientID: "c1", Phone: "11987654321", Text: "enviada"})
	if r.Error == nil || !strings.Contains(r.Error.Message, "retried in the background") {
		t.Fatalf("send while the stream is gone: %+v, want an error saying recording is retried", r.Error)
	}
	if sent := e.world.Sent(m); len(sent) != 1 || sent[0].Text != "enviada" {
		t.Fatalf("WhatsApp got %+v, want the one message", sent)
	}
	if err := e.observer.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool {
		for _, env := range e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage)) {
			pl, err := env.Payload()
			if err == nil && pl.(*event.Message).Text == "enviada" {
				return true
			}
		}
		return false
	}, "the sent message's event never reached the stream")
	if sent := e.world.Sent(m); len(sent) != 1 {
		t.Fatalf("WhatsApp got %d messages, want 1 (nothing sent again)", len(sent))
	}
}
