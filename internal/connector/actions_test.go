package connector_test

import (
	"testing"
	"time"

	"go.mau.fi/whatsmeow/proto/waE2E"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// Fast: actions and read receipts on the simulated client — what is sent
// to WhatsApp, the events, idempotency and the refusals.
func TestActionsSim(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900000021")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")
	const chat = "5511987654321@s.whatsapp.net"

	r := e.mustRequest(m, event.VerbSend, event.SendRequest{Phone: "11987654321", Text: "R$ 100", ReplyTo: "IN1", ReplyToSender: chat, ReplyToText: "quanto?"})
	if r.Error != nil {
		t.Fatal(r.Error)
	}
	own := r.Message
	react := event.ActionRequest{ClientID: "c1", MessageID: "IN1", ChatJID: chat, SenderJID: chat, Emoji: "❤️"}
	for range 2 { // the retry sends nothing new
		if r := e.mustRequest(m, event.VerbReact, react); r.Error != nil || r.Message.Kind != event.KindReaction || r.Message.TargetID != "IN1" {
			t.Fatalf("react: %+v", r)
		}
	}
	if r := e.mustRequest(m, event.VerbEdit, event.ActionRequest{MessageID: own.WAID, ChatJID: chat, FromMe: true, SentAt: own.Timestamp, Text: "R$ 90"}); r.Error != nil {
		t.Fatalf("edit: %+v", r.Error)
	}
	if r := e.mustRequest(m, event.VerbRevoke, event.ActionRequest{MessageID: own.WAID, ChatJID: chat, FromMe: true}); r.Error != nil {
		t.Fatalf("revoke: %+v", r.Error)
	}
	sent := e.world.Sent(m)
	if len(sent) != 4 {
		t.Fatalf("sent %d messages, want 4 (reply, reaction, edit, revoke)", len(sent))
	}
	if ci := sent[0].Message.GetExtendedTextMessage().GetContextInfo(); ci.GetStanzaID() != "IN1" || ci.GetParticipant() != chat || ci.GetQuotedMessage().GetConversation() != "quanto?" {
		t.Errorf("reply context %v", ci)
	}
	if k := sent[1].Message.GetReactionMessage().GetKey(); k.GetID() != "IN1" || k.GetFromMe() || sent[1].Message.GetReactionMessage().GetText() != "❤️" {
		t.Errorf("reaction %v", sent[1].Message)
	}
	if p := sent[2].Message.GetEditedMessage().GetMessage().GetProtocolMessage(); p.GetType() != waE2E.ProtocolMessage_MESSAGE_EDIT || p.GetKey().GetID() != own.WAID || !p.GetKey().GetFromMe() || p.GetEditedMessage().GetConversation() != "R$ 90" {
		t.Errorf("edit %v", sent[2].Message)
	}
	if p := sent[3].Message.GetProtocolMessage(); p.GetType() != waE2E.ProtocolMessage_REVOKE || p.GetKey().GetID() != own.WAID {
		t.Errorf("revoke %v", sent[3].Message)
	}

	// Refusals: nothing sent.
	for _, c := range []struct {
		verb event.Verb
		req  event.ActionRequest
		code string
	}{
		{event.VerbEdit, event.ActionRequest{MessageID: own.WAID, ChatJID: chat, FromMe: true, SentAt: time.Now().Add(-time.Hour), Text: "x"}, event.CodeEditExpired},
		{event.VerbEdit, event.ActionRequest{MessageID: "IN1", ChatJID: chat, Text: "x"}, event.CodeNotEditable},
		{event.VerbRevoke, event.ActionRequest{MessageID: "IN1", ChatJID: chat, SenderJID: chat}, event.CodeNotEditable},
		{event.VerbReact, event.ActionRequest{MessageID: "IN1", ChatJID: "not a jid@@", Emoji: "x"}, event.CodeBadRequest},
		{event.VerbReact, event.ActionRequest{ChatJID: chat}, event.CodeBadRequest},
	} {
		if r := e.mustRequest(m, c.verb, c.req); r.Error == nil || r.Error.Code != c.code {
			t.Errorf("%s %+v: %+v, want %s", c.verb, c.req, r.Error, c.code)
		}
	}
	if n := len(e.world.Sent(m)); n != 4 {
		t.Fatalf("refused actions sent messages: %d", n)
	}

	// Read: one receipt per author, then a read receipt event from us.
	rr := e.mustRequest(m, event.VerbRead, event.ReadRequest{ChatJID: chat, Messages: []event.ReadRef{{ID: "IN1", SenderJID: chat}, {ID: "IN2", SenderJID: chat}}})
	if rr.Error != nil {
		t.Fatal(rr.Error)
	}
	reads := e.world.Reads(m)
	if len(reads) != 1 || len(reads[0].IDs) != 2 || reads[0].Chat.String() != chat {
		t.Fatalf("read receipts %+v", reads)
	}
	var got *event.Receipt
	for _, env := range e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeReceipt)) {
		p, _ := env.Payload()
		got = p.(*event.Receipt)
	}
	if got == nil || got.Kind != event.ReceiptRead || !got.FromMe || len(got.MessageIDs) != 2 || got.Phone != "5511987654321" {
		t.Fatalf("receipt event %+v", got)
	}

	// Events: one per action, with its target.
	kinds := map[event.Kind]string{}
	for _, env := range e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage)) {
		p, _ := env.Payload()
		msg := p.(*event.Message)
		kinds[msg.Kind] = msg.TargetID
	}
	if kinds[event.KindReaction] != "IN1" || kinds[event.KindEdit] != own.WAID || kinds[event.KindRevoke] != own.WAID {
		t.Fatalf("action events %v", kinds)
	}
}

// A media send on a connector without a media store, or with a media id
// the mentorado never uploaded, is refused before anything is sent.
func TestMediaSendWithoutStoreSim(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, "5511900000022")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")
	r := e.mustRequest(m, event.VerbSend, event.SendRequest{Phone: "11987654321", Kind: event.KindImage, MediaID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"})
	if r.Error == nil || r.Error.Code != event.CodeUnavailable {
		t.Fatalf("media send without a store: %+v", r)
	}
	if n := len(e.world.Sent(m)); n != 0 {
		t.Fatalf("sent %d", n)
	}
}
