package wafake_test

import (
	"slices"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/testenv"
)

// A contact's text arrives as events.Message with the right sender, and the
// client's receipt reaches the server.
func TestInboundText(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990010", nil)
	bob := srv.Contact("5511988880010")
	bob.SetPushName("Bob")

	id, err := bob.SendText(ctxT(t), s.phone, "hello from bob")
	if err != nil {
		t.Fatal(err)
	}
	msg := next[*events.Message](t, s.rec)
	if msg.Info.ID != id || msg.Message.GetConversation() != "hello from bob" {
		t.Fatalf("got message %s %q, want %s", msg.Info.ID, msg.Message.GetConversation(), id)
	}
	if msg.Info.Sender.User != bob.LID().User || msg.Info.SenderAlt.User != bob.Phone() || msg.Info.IsFromMe {
		t.Fatalf("sender = %v (alt %v), want %v / %v", msg.Info.Sender, msg.Info.SenderAlt, bob.LID(), bob.JID())
	}
	if msg.Info.PushName != "Bob" {
		t.Fatalf("push name = %q", msg.Info.PushName)
	}
	r, err := srv.WaitReceipt(ctxT(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if r.From != s.phone || r.To.User != bob.LID().User {
		t.Fatalf("receipt %+v", r)
	}

	// A second message uses the established session (type "msg").
	id2, err := bob.SendText(ctxT(t), s.phone, "second")
	if err != nil {
		t.Fatal(err)
	}
	msg = next[*events.Message](t, s.rec)
	if msg.Info.ID != id2 || msg.Message.GetConversation() != "second" {
		t.Fatalf("second message %s %q", msg.Info.ID, msg.Message.GetConversation())
	}
	if _, err := srv.WaitReceipt(ctxT(t), id2); err != nil {
		t.Fatal(err)
	}
}

// With SynchronousAck and the decrypted event buffer, a handler that fails
// leaves the message without a receipt; a redelivery fires the event again
// (from the buffer) and, when the handler succeeds, the receipt follows.
func TestInboundNoReceiptUntilHandled(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	var fail atomic.Bool
	var calls atomic.Int32
	var handled []string // ids whose handler succeeded, in order
	handledCh := make(chan string, 16)
	s := pair(t, srv, "5511999990020", nil, func(cli *whatsmeow.Client) {
		cli.SynchronousAck = true
		cli.EnableDecryptedEventBuffer = true
		cli.AddEventHandlerWithSuccessStatus(func(evt any) bool {
			m, ok := evt.(*events.Message)
			if !ok {
				return true
			}
			calls.Add(1)
			if fail.Load() && m.Message.GetConversation() == "important" {
				return false
			}
			handledCh <- m.Info.ID
			return true
		})
	})
	bob := srv.Contact("5511988880020")
	carol := srv.Contact("5511988880021")

	fail.Store(true)
	id, err := bob.SendText(ctxT(t), s.phone, "important")
	if err != nil {
		t.Fatal(err)
	}
	// whatsmeow handles stanzas in order: once a later message is receipted,
	// the failed one has been fully processed.
	marker, err := carol.SendText(ctxT(t), s.phone, "marker")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WaitReceipt(ctxT(t), marker); err != nil {
		t.Fatal(err)
	}
	if got := <-handledCh; got != marker {
		t.Fatalf("handled %s first, want the marker", got)
	}
	if srv.ReceiptSent(id) || len(srv.Receipts(id)) != 0 {
		t.Fatalf("receipt sent for a message whose handler failed: %+v", srv.Receipts(id))
	}
	if calls.Load() != 2 {
		t.Fatalf("handler calls = %d, want 2", calls.Load())
	}

	fail.Store(false)
	if err := srv.Redeliver(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WaitReceipt(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	handled = append(handled, <-handledCh)
	if !slices.Equal(handled, []string{id}) || srv.Deliveries(id) != 2 {
		t.Fatalf("after redelivery handled %v, deliveries %d", handled, srv.Deliveries(id))
	}

	// A duplicate of a handled message is receipted again but not
	// dispatched again (the buffer remembers the ciphertext).
	callsBefore := calls.Load()
	if err := srv.Redeliver(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitTimeout, func() bool { return len(srv.Receipts(id)) == 2 }, "second receipt")
	if calls.Load() != callsBefore {
		t.Fatalf("duplicate dispatched: %d handler calls, want %d", calls.Load(), callsBefore)
	}
}

// The client's SendMessage is answered, the contact decrypts it, and the
// contact's receipts come back as events.Receipt.
func TestSendAndReceipts(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990030", nil)
	bob := srv.Contact("5511988880030")
	ctx := ctxT(t)

	resp, err := s.cli.SendMessage(ctx, bob.JID(), &waE2E.Message{Conversation: proto.String("hi")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := bob.WaitMessage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != resp.ID || got.Text != "hi" || got.From != s.phone {
		t.Fatalf("contact got %+v, want id %s text hi", got, resp.ID)
	}

	if err := bob.SendReceipt(ctx, s.phone, resp.ID, ""); err != nil {
		t.Fatal(err)
	}
	r := next[*events.Receipt](t, s.rec)
	if r.Type != types.ReceiptTypeDelivered || !slices.Contains(r.MessageIDs, resp.ID) || r.Chat.User != bob.Phone() {
		t.Fatalf("delivery receipt %+v", r)
	}
	if err := bob.SendReceipt(ctx, s.phone, resp.ID, "read"); err != nil {
		t.Fatal(err)
	}
	r = next[*events.Receipt](t, s.rec)
	if r.Type != types.ReceiptTypeRead || !slices.Contains(r.MessageIDs, resp.ID) {
		t.Fatalf("read receipt %+v", r)
	}

	// A conversation: bob answers on the session the client created, and
	// the client's next message uses the ratchet (no new prekey).
	in, err := bob.SendText(ctx, s.phone, "hey")
	if err != nil {
		t.Fatal(err)
	}
	if m := next[*events.Message](t, s.rec); m.Info.ID != in || m.Message.GetConversation() != "hey" {
		t.Fatalf("reply %s %q", m.Info.ID, m.Message.GetConversation())
	}
	resp2, err := s.cli.SendMessage(ctx, bob.JID(), &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("how are you")}})
	if err != nil {
		t.Fatal(err)
	}
	if got, err = bob.WaitMessage(ctx); err != nil || got.ID != resp2.ID || got.Text != "how are you" {
		t.Fatalf("second message %+v %v", got, err)
	}
}

// The contact lost its sessions: it answers the client's message with a
// retry receipt carrying a fresh bundle, and whatsmeow re-sends the message
// on a new session.
func TestRetryReceiptAfterLostSession(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990300", nil)
	bob := srv.Contact("5511988880300")
	ctx := ctxT(t)
	if _, err := s.cli.SendMessage(ctx, bob.JID(), &waE2E.Message{Conversation: proto.String("one")}); err != nil {
		t.Fatal(err)
	}
	if got, err := bob.WaitMessage(ctx); err != nil || got.Text != "one" {
		t.Fatalf("%+v %v", got, err)
	}
	bob.ResetSessions()
	resp, err := s.cli.SendMessage(ctx, bob.JID(), &waE2E.Message{Conversation: proto.String("two")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := bob.WaitMessage(ctx)
	if err != nil || got.ID != resp.ID || got.Text != "two" {
		t.Fatalf("after retry: %+v %v", got, err)
	}
	if r := next[*events.Receipt](t, s.rec); r.Type != types.ReceiptTypeRetry {
		t.Fatalf("receipt %+v", r)
	}
}

// The client lost its session with the contact: it sends a retry receipt
// instead of a receipt, the contact re-encrypts on a new session, and the
// message arrives.
func TestClientRetryReceipt(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990310", nil)
	bob := srv.Contact("5511988880310")
	ctx := ctxT(t)
	id, err := bob.SendText(ctx, s.phone, "first")
	if err != nil {
		t.Fatal(err)
	}
	next[*events.Message](t, s.rec)
	if _, err := srv.WaitReceipt(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := s.cli.Store.Sessions.DeleteSession(ctx, bob.LID().SignalAddress().String()); err != nil {
		t.Fatal(err)
	}
	id2, err := bob.SendText(ctx, s.phone, "second")
	if err != nil {
		t.Fatal(err)
	}
	next[*events.UndecryptableMessage](t, s.rec)
	m := next[*events.Message](t, s.rec)
	if m.Info.ID != id2 || m.Message.GetConversation() != "second" {
		t.Fatalf("got %s %q", m.Info.ID, m.Message.GetConversation())
	}
	if _, err := srv.WaitReceipt(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if rs := srv.Receipts(id2); len(rs) < 2 || rs[0].Type != "retry" {
		t.Fatalf("receipts %+v", rs)
	}
}
