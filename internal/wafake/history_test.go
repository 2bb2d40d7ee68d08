package wafake_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/proto/waWeb"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/wafake"
)

// With ManualHistorySyncDownload the client emits the notification as a
// message from its own phone, receipts it with hist_sync, and downloads the
// conversations from the fake CDN.
func TestHistorySyncManual(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990600", nil, func(cli *whatsmeow.Client) { cli.ManualHistorySyncDownload = true })
	bob := srv.Contact("5511988880600")
	carol := srv.Contact("5511988880601")
	ctx := ctxT(t)
	group := types.NewJID("120363111111111111", types.GroupServer)
	ts := time.Unix(1700000000, 0)
	h := wafake.BuildHistorySync(waHistorySync.HistorySync_INITIAL_BOOTSTRAP, 1, 100,
		wafake.HistoryConversation{Chat: bob.LID(), ChatAlt: bob.JID(), Messages: []wafake.HistoryMessage{
			{ID: "OLD1", Text: "hi from bob", Timestamp: ts, PushName: "Bob", Status: waWeb.WebMessageInfo_READ},
			{ID: "OLD2", FromMe: true, Text: "hi bob", Timestamp: ts.Add(time.Minute)},
		}},
		wafake.HistoryConversation{Chat: group, Name: "Old group", Messages: []wafake.HistoryMessage{
			{ID: "OLD3", Sender: carol.LID(), Text: "group history", Timestamp: ts},
		}},
	)
	id, err := srv.SendHistorySync(ctx, s.phone, h)
	if err != nil {
		t.Fatal(err)
	}
	m := next[*events.Message](t, s.rec)
	notif := m.Message.GetProtocolMessage().GetHistorySyncNotification()
	if m.Info.ID != id || !m.Info.IsFromMe || notif == nil {
		t.Fatalf("notification message %+v %v", m.Info, m.Message)
	}
	if _, err := srv.WaitReceiptType(ctx, id, "hist_sync"); err != nil {
		t.Fatal(err)
	}
	got, err := s.cli.DownloadHistorySync(ctx, notif, true)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSyncType() != waHistorySync.HistorySync_INITIAL_BOOTSTRAP || got.GetProgress() != 100 || len(got.GetConversations()) != 2 {
		t.Fatalf("history %v", got)
	}
	c0, c1 := got.GetConversations()[0], got.GetConversations()[1]
	msgs := c0.GetMessages()
	if c0.GetID() != bob.LID().String() || len(msgs) != 2 || msgs[0].GetMessage().GetKey().GetID() != "OLD1" ||
		msgs[0].GetMessage().GetMessage().GetConversation() != "hi from bob" || msgs[0].GetMessage().GetPushName() != "Bob" ||
		msgs[0].GetMessage().GetMessageTimestamp() != uint64(ts.Unix()) || !msgs[1].GetMessage().GetKey().GetFromMe() {
		t.Fatalf("bob's conversation %v", c0)
	}
	if c0.GetPnJID() != bob.JID().String() || len(got.GetPhoneNumberToLidMappings()) != 1 {
		t.Fatalf("bob's phone: %q, mappings %v", c0.GetPnJID(), got.GetPhoneNumberToLidMappings())
	}
	if pn, err := s.cli.Store.LIDs.GetPNForLID(ctx, bob.LID()); err != nil || pn != bob.JID() {
		t.Fatalf("mapping from history: %v %v", pn, err)
	}
	if c1.GetID() != group.String() || c1.GetName() != "Old group" || c1.GetMessages()[0].GetMessage().GetKey().GetParticipant() != carol.LID().String() {
		t.Fatalf("group conversation %v", c1)
	}

	// The account's phone session keeps working alongside the client's
	// own sends (which copy every message to the phone).
	if _, err := s.cli.SendMessage(ctx, bob.JID(), &waE2E.Message{Conversation: proto.String("after history")}); err != nil {
		t.Fatal(err)
	}
	if r, err := bob.WaitMessage(ctx); err != nil || r.Text != "after history" {
		t.Fatalf("%+v %v", r, err)
	}
	id2, err := srv.SendHistorySync(ctx, s.phone, wafake.BuildHistorySync(waHistorySync.HistorySync_RECENT, 2, 100,
		wafake.HistoryConversation{Chat: bob.JID(), Messages: []wafake.HistoryMessage{{Text: "recent"}}}))
	if err != nil {
		t.Fatal(err)
	}
	if m := next[*events.Message](t, s.rec); m.Info.ID != id2 || m.Message.GetProtocolMessage().GetHistorySyncNotification().GetChunkOrder() != 2 {
		t.Fatalf("second notification %+v", m.Info)
	}
}

// Without ManualHistorySyncDownload whatsmeow downloads the blob itself and
// emits events.HistorySync; a large sync needs nothing special.
func TestHistorySyncAutomaticLarge(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990610", nil)
	ctx := ctxT(t)
	var convs []wafake.HistoryConversation
	for c := range 20 {
		conv := wafake.HistoryConversation{Chat: srv.Contact(fmt.Sprintf("55119888806%02d", c)).LID()}
		for i := range 250 {
			conv.Messages = append(conv.Messages, wafake.HistoryMessage{Text: fmt.Sprintf("message %d of chat %d", i, c), FromMe: i%2 == 0})
		}
		convs = append(convs, conv)
	}
	id, err := srv.SendHistorySync(ctx, s.phone, wafake.BuildHistorySync(waHistorySync.HistorySync_FULL, 1, 100, convs...))
	if err != nil {
		t.Fatal(err)
	}
	hs := next[*events.HistorySync](t, s.rec)
	n := 0
	for _, c := range hs.Data.GetConversations() {
		n += len(c.GetMessages())
	}
	if hs.Data.GetSyncType() != waHistorySync.HistorySync_FULL || len(hs.Data.GetConversations()) != 20 || n != 5000 {
		t.Fatalf("history sync: %d conversations, %d messages", len(hs.Data.GetConversations()), n)
	}
	if _, err := srv.WaitReceiptType(ctx, id, "hist_sync"); err != nil {
		t.Fatal(err)
	}
	if srv.MediaDownloads(id) != 1 {
		t.Fatalf("blob downloads %d", srv.MediaDownloads(id))
	}
}

// An on-demand history request from the client reaches the account's phone,
// which answers with an ON_DEMAND history sync.
func TestHistoryOnDemand(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990620", nil)
	bob := srv.Contact("5511988880620")
	ctx := ctxT(t)
	srv.SetHistoryOnDemand(func(phone string, req *waE2E.PeerDataOperationRequestMessage_HistorySyncOnDemandRequest) *waHistorySync.HistorySync {
		if phone != s.phone || req.GetOldestMsgID() != "NEWEST" {
			return nil
		}
		return wafake.BuildHistorySync(waHistorySync.HistorySync_ON_DEMAND, 1, 100, wafake.HistoryConversation{Chat: bob.LID(), Messages: []wafake.HistoryMessage{
			{ID: "OLDER", Text: "older message", Timestamp: time.Unix(1600000000, 0)},
		}})
	})
	// The phone's first history sync gives the client a session with it
	// (peer messages are only sent on an existing session).
	if _, err := srv.SendHistorySync(ctx, s.phone, wafake.BuildHistorySync(waHistorySync.HistorySync_INITIAL_BOOTSTRAP, 1, 100,
		wafake.HistoryConversation{Chat: bob.LID(), Messages: []wafake.HistoryMessage{{ID: "NEWEST", Text: "newest"}}})); err != nil {
		t.Fatal(err)
	}
	next[*events.HistorySync](t, s.rec)
	last := &types.MessageInfo{MessageSource: types.MessageSource{Chat: bob.LID()}, ID: "NEWEST", Timestamp: time.Unix(1700000000, 0)}
	if _, err := s.cli.SendMessage(ctx, s.cli.Store.ID.ToNonAD(), s.cli.BuildHistorySyncRequest(last, 50), whatsmeow.SendRequestExtra{Peer: true}); err != nil {
		t.Fatal(err)
	}
	hs := next[*events.HistorySync](t, s.rec)
	if hs.Data.GetSyncType() != waHistorySync.HistorySync_ON_DEMAND || hs.Data.GetConversations()[0].GetMessages()[0].GetMessage().GetKey().GetID() != "OLDER" {
		t.Fatalf("on-demand history %v", hs.Data)
	}
	reqs := srv.PeerRequests(s.phone)
	if len(reqs) != 1 || reqs[0].GetHistorySyncOnDemandRequest().GetOnDemandMsgCount() != 50 {
		t.Fatalf("peer requests %v", reqs)
	}
}
