package wafake_test

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types/events"
)

// Ten accounts, one server, one Postgres device store: pairing, inbound and
// outbound messages run concurrently without mixing sessions up.
func TestParallelSessions(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	store := openContainer(t, newDB(t))
	const n = 10
	for i := 0; i < n; i++ {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			phone := fmt.Sprintf("55119777700%02d", i)
			s := pair(t, srv, phone, store)
			friend := srv.Contact(fmt.Sprintf("55119666600%02d", i))
			ctx := ctxT(t)

			text := fmt.Sprintf("hello %d", i)
			id, err := friend.SendText(ctx, phone, text)
			if err != nil {
				t.Fatal(err)
			}
			m := next[*events.Message](t, s.rec)
			if m.Info.ID != id || m.Message.GetConversation() != text || m.Info.SenderAlt.User != friend.Phone() {
				t.Fatalf("got %s %q from %v", m.Info.ID, m.Message.GetConversation(), m.Info.SenderAlt)
			}
			if _, err := srv.WaitReceipt(ctx, id); err != nil {
				t.Fatal(err)
			}

			reply := fmt.Sprintf("reply %d", i)
			resp, err := s.cli.SendMessage(ctx, friend.JID(), &waE2E.Message{Conversation: proto.String(reply)})
			if err != nil {
				t.Fatal(err)
			}
			got, err := friend.WaitMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.ID != resp.ID || got.Text != reply || got.From != phone {
				t.Fatalf("friend got %+v", got)
			}
		})
	}
}

// Two fake accounts talk to each other: the server relays between clients.
func TestAccountToAccount(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	store := openContainer(t, newDB(t))
	a := pair(t, srv, "5511999990101", store)
	b := pair(t, srv, "5511999990102", store)
	ctx := ctxT(t)
	resp, err := a.cli.SendMessage(ctx, b.acct.JID(), &waE2E.Message{Conversation: proto.String("hi b")})
	if err != nil {
		t.Fatal(err)
	}
	m := next[*events.Message](t, b.rec)
	if m.Info.ID != resp.ID || m.Message.GetConversation() != "hi b" || m.Info.Sender.User != a.acct.LID().User {
		t.Fatalf("b got %s %q from %v", m.Info.ID, m.Message.GetConversation(), m.Info.Sender)
	}
	if _, err := srv.WaitReceipt(ctx, resp.ID); err != nil {
		t.Fatal(err)
	}
}
