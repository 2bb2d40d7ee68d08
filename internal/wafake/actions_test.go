package wafake_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/wafake"
)

// Replies, reactions, edits and revokes from a contact reach the client in
// WhatsApp's shapes.
func TestContactActions(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990500", nil)
	bob := srv.Contact("5511988880500")
	ctx := ctxT(t)

	out, err := s.cli.SendMessage(ctx, bob.JID(), &waE2E.Message{Conversation: proto.String("from the account")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitMessage(ctx); err != nil {
		t.Fatal(err)
	}
	own, err := bob.SendText(ctx, s.phone, "bob's own")
	if err != nil {
		t.Fatal(err)
	}
	next[*events.Message](t, s.rec)

	// Reply quoting the account's message.
	id, err := bob.SendReply(ctx, s.phone, "answer", out.ID)
	if err != nil {
		t.Fatal(err)
	}
	m := next[*events.Message](t, s.rec)
	ci := m.Message.GetExtendedTextMessage().GetContextInfo()
	if m.Info.ID != id || m.Message.GetExtendedTextMessage().GetText() != "answer" || ci.GetStanzaID() != out.ID ||
		ci.GetQuotedMessage().GetConversation() != "from the account" {
		t.Fatalf("reply %s %v", m.Info.ID, m.Message)
	}
	if p, _ := types.ParseJID(ci.GetParticipant()); p.User != srv.Account(s.phone).LID().User {
		t.Fatalf("reply participant %q, want the account's LID", ci.GetParticipant())
	}
	// Reply quoting bob's own message.
	if _, err = bob.SendReply(ctx, s.phone, "me again", own); err != nil {
		t.Fatal(err)
	}
	ci = next[*events.Message](t, s.rec).Message.GetExtendedTextMessage().GetContextInfo()
	if ci.GetStanzaID() != own || ci.GetParticipant() != bob.LID().String() || ci.GetQuotedMessage().GetConversation() != "bob's own" {
		t.Fatalf("self reply context %v", ci)
	}

	// Reactions: to the account's message (FromMe false) and to bob's own.
	for _, tc := range []struct {
		target string
		fromMe bool
		emoji  string
	}{{out.ID, false, "👍"}, {own, true, "❤️"}, {out.ID, false, ""}} {
		id, err := bob.SendReaction(ctx, s.phone, tc.target, tc.emoji)
		if err != nil {
			t.Fatal(err)
		}
		m := next[*events.Message](t, s.rec)
		r := m.Message.GetReactionMessage()
		if m.Info.ID != id || m.Info.Type != "reaction" || r.GetKey().GetID() != tc.target || r.GetKey().GetFromMe() != tc.fromMe || r.GetText() != tc.emoji {
			t.Fatalf("reaction %+v: info %s %s, %v", tc, m.Info.ID, m.Info.Type, r)
		}
		if wantEdit := tc.emoji == ""; wantEdit != (m.Info.Edit == types.EditAttributeSenderRevoke) {
			t.Fatalf("reaction removal edit attribute %q", m.Info.Edit)
		}
	}

	// Edit of bob's own message.
	id, err = bob.SendEdit(ctx, s.phone, own, "bob's own, edited")
	if err != nil {
		t.Fatal(err)
	}
	m = next[*events.Message](t, s.rec)
	p := m.Message.GetProtocolMessage()
	if m.Info.ID != id || !m.IsEdit || m.Info.Edit != types.EditAttributeMessageEdit || p.GetType() != waE2E.ProtocolMessage_MESSAGE_EDIT ||
		p.GetKey().GetID() != own || p.GetEditedMessage().GetConversation() != "bob's own, edited" {
		t.Fatalf("edit: edit=%v attr=%q %v", m.IsEdit, m.Info.Edit, m.Message)
	}

	// Revoke of bob's own message.
	id, err = bob.SendRevoke(ctx, s.phone, own)
	if err != nil {
		t.Fatal(err)
	}
	m = next[*events.Message](t, s.rec)
	p = m.Message.GetProtocolMessage()
	if m.Info.ID != id || m.Info.Edit != types.EditAttributeSenderRevoke || p.GetType() != waE2E.ProtocolMessage_REVOKE ||
		p.GetKey().GetID() != own || !p.GetKey().GetFromMe() {
		t.Fatalf("revoke: attr=%q %v", m.Info.Edit, m.Message)
	}

	// A media reply.
	if _, err = bob.SendMedia(ctx, s.phone, wafake.MediaKindImage, randomFile(t, 50), wafake.MediaOptions{ReplyTo: out.ID}); err != nil {
		t.Fatal(err)
	}
	if got := next[*events.Message](t, s.rec).Message.GetImageMessage().GetContextInfo().GetStanzaID(); got != out.ID {
		t.Fatalf("media reply quotes %q", got)
	}
}

// The client's replies, reactions, edits and revokes are visible to the
// contact, and MarkRead reaches the server as a read receipt.
func TestClientActionsAndRead(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990510", nil)
	bob := srv.Contact("5511988880510")
	ctx := ctxT(t)

	in1, err := bob.SendText(ctx, s.phone, "one")
	if err != nil {
		t.Fatal(err)
	}
	m1 := next[*events.Message](t, s.rec)
	in2, err := bob.SendText(ctx, s.phone, "two")
	if err != nil {
		t.Fatal(err)
	}
	next[*events.Message](t, s.rec)
	if err := s.cli.MarkRead(ctx, []types.MessageID{in1, in2}, time.Now(), m1.Info.Chat, m1.Info.Sender); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{in1, in2} {
		r, err := srv.WaitReceiptType(ctx, id, "read")
		if err != nil {
			t.Fatalf("read receipt for %s: %v", id, err)
		}
		if r.From != s.phone || r.To.User != bob.LID().User {
			t.Fatalf("read receipt %+v", r)
		}
	}

	chat := bob.JID()
	out, err := s.cli.SendMessage(ctx, chat, &waE2E.Message{Conversation: proto.String("mine")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitMessage(ctx); err != nil {
		t.Fatal(err)
	}
	send := func(msg *waE2E.Message) wafake.Received {
		t.Helper()
		resp, err := s.cli.SendMessage(ctx, chat, msg)
		if err != nil {
			t.Fatal(err)
		}
		got, err := bob.WaitMessage(ctx)
		if err != nil || got.ID != resp.ID {
			t.Fatalf("contact got %+v %v, want %s", got, err, resp.ID)
		}
		return got
	}

	got := send(&waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("re"),
		ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String(in1), Participant: proto.String(bob.JID().String())}}})
	if got.ReplyTo() != in1 || got.Text != "re" {
		t.Fatalf("reply: %q %q", got.ReplyTo(), got.Text)
	}
	got = send(s.cli.BuildReaction(chat, bob.JID(), in1, "😂"))
	if target, emoji, ok := got.Reaction(); !ok || target != in1 || emoji != "😂" || got.Type != "reaction" ||
		got.Message.GetReactionMessage().GetKey().GetFromMe() {
		t.Fatalf("reaction to bob's message: %v", got.Message)
	}
	got = send(s.cli.BuildReaction(chat, types.EmptyJID, out.ID, "👍"))
	if target, _, ok := got.Reaction(); !ok || target != out.ID || !got.Message.GetReactionMessage().GetKey().GetFromMe() {
		t.Fatalf("reaction to own message: %v", got.Message)
	}
	got = send(s.cli.BuildEdit(chat, out.ID, &waE2E.Message{Conversation: proto.String("mine, edited")}))
	if target, text, ok := got.Edit(); !ok || target != out.ID || text != "mine, edited" {
		t.Fatalf("edit: %v", got.Message)
	}
	got = send(s.cli.BuildRevoke(chat, types.EmptyJID, out.ID))
	if target, ok := got.Revoke(); !ok || target != out.ID {
		t.Fatalf("revoke: %v", got.Message)
	}
	if _, _, ok := got.Reaction(); ok {
		t.Fatal("a revoke classified as a reaction")
	}
	if _, ok := got.Revoke(); !ok || got.ReplyTo() != "" {
		t.Fatal("revoke classification")
	}
}
