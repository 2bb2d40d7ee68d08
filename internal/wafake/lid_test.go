package wafake_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
)

// A LID-only contact's messages reveal no phone number until the contact
// turns it off; the client can send to the bare LID.
func TestLIDOnlyContact(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990400", nil)
	bob := srv.Contact("5511988880400")
	bob.SetLIDOnly(true)
	ctx := ctxT(t)

	id, err := bob.SendText(ctx, s.phone, "hidden number")
	if err != nil {
		t.Fatal(err)
	}
	m := next[*events.Message](t, s.rec)
	if m.Info.ID != id || m.Info.Sender.ToNonAD() != bob.LID() || !m.Info.SenderAlt.IsEmpty() {
		t.Fatalf("message %s from %v (alt %v), want %s from %v with no alt", m.Info.ID, m.Info.Sender, m.Info.SenderAlt, id, bob.LID())
	}
	if pn, err := s.cli.Store.LIDs.GetPNForLID(ctx, bob.LID()); err != nil || !pn.IsEmpty() {
		t.Fatalf("LID store learned %v (%v), want nothing", pn, err)
	}
	// A usync LID query for the phone number does not reveal the LID.
	if _, err := s.cli.GetUserDevices(ctx, []types.JID{bob.JID()}); err != nil {
		t.Fatal(err)
	}
	if lid, err := s.cli.Store.LIDs.GetLIDForPN(ctx, bob.JID()); err != nil || !lid.IsEmpty() {
		t.Fatalf("LID store learned %v for the phone (%v), want nothing", lid, err)
	}

	// The client answers the bare LID: device list, prekeys, the contact
	// decrypts it.
	resp, err := s.cli.SendMessage(ctx, bob.LID(), &waE2E.Message{Conversation: proto.String("to the lid")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := bob.WaitMessage(ctx)
	if err != nil || got.ID != resp.ID || got.Text != "to the lid" || got.To != bob.LID() {
		t.Fatalf("contact got %+v %v", got, err)
	}

	// The phone becomes known.
	bob.SetLIDOnly(false)
	if _, err := bob.SendText(ctx, s.phone, "now with phone"); err != nil {
		t.Fatal(err)
	}
	m = next[*events.Message](t, s.rec)
	if m.Info.SenderAlt.User != bob.Phone() {
		t.Fatalf("sender alt %v, want %s", m.Info.SenderAlt, bob.Phone())
	}
	if pn, err := s.cli.Store.LIDs.GetPNForLID(ctx, bob.LID()); err != nil || pn.User != bob.Phone() {
		t.Fatalf("LID store has %v (%v), want %s", pn, err, bob.Phone())
	}
}

// A fresh client can send to a LID it never saw (first contact by LID).
func TestSendToUnknownLID(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990410", nil)
	bob := srv.Contact("5511988880410")
	bob.SetLIDOnly(true)
	ctx := ctxT(t)
	resp, err := s.cli.SendMessage(ctx, bob.LID(), &waE2E.Message{Conversation: proto.String("hello lid")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := bob.WaitMessage(ctx)
	if err != nil || got.ID != resp.ID || got.Text != "hello lid" {
		t.Fatalf("contact got %+v %v", got, err)
	}
	// And the contact answers on that session.
	id, err := bob.SendText(ctx, s.phone, "answer")
	if err != nil {
		t.Fatal(err)
	}
	if m := next[*events.Message](t, s.rec); m.Info.ID != id || m.Message.GetConversation() != "answer" {
		t.Fatalf("answer %s %q", m.Info.ID, m.Message.GetConversation())
	}
}

// UsePNAddressing: messages come from the phone number with sender_lid,
// and it wins over SetLIDOnly.
func TestUsePNAddressing(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990420", nil)
	bob := srv.Contact("5511988880420")
	bob.UsePNAddressing(true)
	bob.SetLIDOnly(true)
	ctx := ctxT(t)
	id, err := bob.SendText(ctx, s.phone, "from my number")
	if err != nil {
		t.Fatal(err)
	}
	m := next[*events.Message](t, s.rec)
	if m.Info.ID != id || m.Info.Sender.ToNonAD() != bob.JID() || m.Info.SenderAlt.ToNonAD() != bob.LID() {
		t.Fatalf("message from %v (alt %v), want %v / %v", m.Info.Sender, m.Info.SenderAlt, bob.JID(), bob.LID())
	}
	resp, err := s.cli.SendMessage(ctx, bob.JID(), &waE2E.Message{Conversation: proto.String("answer")})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := bob.WaitMessage(ctx); err != nil || got.ID != resp.ID || got.Text != "answer" {
		t.Fatalf("contact got %+v %v", got, err)
	}
}
