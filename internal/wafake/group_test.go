package wafake_test

import (
	"errors"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/wafake"
)

// nextVisible skips the events.Message that only carry a sender key
// distribution (WhatsApp sends it as its own 1:1 part of a group stanza).
func nextVisible(t *testing.T, s *session) *events.Message {
	t.Helper()
	for {
		m := next[*events.Message](t, s.rec)
		if m.Message.GetSenderKeyDistributionMessage() != nil && m.Message.GetConversation() == "" &&
			m.Message.GetExtendedTextMessage() == nil && m.Message.GetReactionMessage() == nil {
			continue
		}
		return m
	}
}

func participant(info *types.GroupInfo, lid types.JID) *types.GroupParticipant {
	for i := range info.Participants {
		if info.Participants[i].LID == lid {
			return &info.Participants[i]
		}
	}
	return nil
}

func TestGroupLifecycle(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990500", nil)
	bob := srv.Contact("5511988880500")
	bob.SetPushName("Bob")
	carol := srv.Contact("5511988880501")
	carol.SetLIDOnly(true)
	ctx := ctxT(t)

	gid, err := srv.CreateGroup(ctx, s.phone, "Team", bob, carol)
	if err != nil {
		t.Fatal(err)
	}
	jg := next[*events.JoinedGroup](t, s.rec)
	if jg.JID != gid || jg.Name != "Team" || len(jg.Participants) != 3 || jg.AddressingMode != types.AddressingModeLID {
		t.Fatalf("joined %+v", jg.GroupInfo)
	}

	info, err := s.cli.GetGroupInfo(ctx, gid)
	if err != nil {
		t.Fatal(err)
	}
	me, pb, pc := participant(info, s.acct.LID()), participant(info, bob.LID()), participant(info, carol.LID())
	if info.Name != "Team" || me == nil || !me.IsSuperAdmin || pb == nil || pb.IsAdmin || pb.PhoneNumber != bob.JID() || pc == nil || !pc.PhoneNumber.IsEmpty() {
		t.Fatalf("group info %+v", info)
	}
	if _, err := s.cli.GetGroupInfo(ctx, types.NewJID("120363000000000000", types.GroupServer)); !errors.Is(err, whatsmeow.ErrGroupNotFound) {
		t.Fatalf("unknown group: %v", err)
	}

	// A member's message: sender key distribution plus skmsg.
	id1, err := bob.SendGroupText(ctx, gid, "hello group")
	if err != nil {
		t.Fatal(err)
	}
	m := nextVisible(t, s)
	if m.Info.ID != id1 || m.Info.Chat != gid || !m.Info.IsGroup || m.Info.Sender.ToNonAD() != bob.LID() ||
		m.Info.SenderAlt.User != bob.Phone() || m.Message.GetConversation() != "hello group" || m.Info.PushName != "Bob" {
		t.Fatalf("group message %+v %q", m.Info, m.Message.GetConversation())
	}
	if _, err := srv.WaitReceipt(ctx, id1); err != nil {
		t.Fatal(err)
	}
	// The second one reuses the distributed sender key.
	id2, err := bob.SendGroupText(ctx, gid, "again")
	if err != nil {
		t.Fatal(err)
	}
	if m = nextVisible(t, s); m.Info.ID != id2 || m.Message.GetConversation() != "again" {
		t.Fatalf("second group message %s %q", m.Info.ID, m.Message.GetConversation())
	}
	// A LID-only member: no phone number.
	id3, err := carol.SendGroupMessage(ctx, gid, &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
		Text:        proto.String("replying"),
		ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String(id1), Participant: proto.String(bob.LID().String())},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m = nextVisible(t, s)
	ci := m.Message.GetExtendedTextMessage().GetContextInfo()
	if m.Info.ID != id3 || m.Info.Sender.ToNonAD() != carol.LID() || !m.Info.SenderAlt.IsEmpty() || ci.GetStanzaID() != id1 || ci.GetParticipant() != bob.LID().String() {
		t.Fatalf("reply %+v %v", m.Info, ci)
	}
	// A reaction to carol's message.
	id4, err := bob.SendGroupMessage(ctx, gid, &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
		Key:  &waCommon.MessageKey{RemoteJID: proto.String(gid.String()), FromMe: proto.Bool(false), ID: proto.String(id3), Participant: proto.String(carol.LID().String())},
		Text: proto.String("👍"), SenderTimestampMS: proto.Int64(1),
	}})
	if err != nil {
		t.Fatal(err)
	}
	m = nextVisible(t, s)
	if m.Info.ID != id4 || m.Info.Type != "reaction" || m.Message.GetReactionMessage().GetKey().GetID() != id3 {
		t.Fatalf("reaction %+v %v", m.Info, m.Message)
	}

	// The client sends to the group: every member decrypts it.
	resp, err := s.cli.SendMessage(ctx, gid, &waE2E.Message{Conversation: proto.String("hi all")})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []interface {
		Phone() string
	}{bob, carol} {
		c := srv.Contact(u.Phone())
		got, err := c.WaitMessage(ctx)
		if err != nil || got.ID != resp.ID || got.Text != "hi all" || got.Chat != gid || got.From != s.phone {
			t.Fatalf("%s got %+v %v", u.Phone(), got, err)
		}
	}
	if err := bob.SendGroupReceipt(ctx, gid, resp.ID, "read"); err != nil {
		t.Fatal(err)
	}
	r := next[*events.Receipt](t, s.rec)
	if r.Chat != gid || r.Sender.ToNonAD() != bob.LID() || r.Type != types.ReceiptTypeRead || !slices.Contains(r.MessageIDs, resp.ID) {
		t.Fatalf("group receipt %+v", r)
	}

	// Changes.
	if err := srv.SetGroupSubject(ctx, gid, "Team 2"); err != nil {
		t.Fatal(err)
	}
	gi := next[*events.GroupInfo](t, s.rec)
	if gi.JID != gid || gi.Name == nil || gi.Name.Name != "Team 2" {
		t.Fatalf("subject change %+v", gi)
	}
	if err := srv.SetGroupTopic(ctx, gid, "about us"); err != nil {
		t.Fatal(err)
	}
	if gi = next[*events.GroupInfo](t, s.rec); gi.Topic == nil || gi.Topic.Topic != "about us" {
		t.Fatalf("topic change %+v", gi)
	}
	dave := srv.Contact("5511988880502")
	if err := srv.AddParticipants(ctx, gid, dave); err != nil {
		t.Fatal(err)
	}
	if gi = next[*events.GroupInfo](t, s.rec); !slices.Contains(gi.Join, dave.LID()) {
		t.Fatalf("join %+v", gi)
	}
	if err := srv.RemoveParticipants(ctx, gid, bob); err != nil {
		t.Fatal(err)
	}
	if gi = next[*events.GroupInfo](t, s.rec); !slices.Contains(gi.Leave, bob.LID()) {
		t.Fatalf("leave %+v", gi)
	}
	if info, err = s.cli.GetGroupInfo(ctx, gid); err != nil || info.Name != "Team 2" || info.Topic != "about us" ||
		participant(info, dave.LID()) == nil || participant(info, bob.LID()) != nil {
		t.Fatalf("group info after changes %+v %v", info, err)
	}
	resp, err = s.cli.SendMessage(ctx, gid, &waE2E.Message{Conversation: proto.String("without bob")})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := dave.WaitMessage(ctx); err != nil || got.ID != resp.ID || got.Chat != gid {
		t.Fatalf("dave got %+v %v", got, err)
	}
	if got, err := carol.WaitMessage(ctx); err != nil || got.ID != resp.ID {
		t.Fatalf("carol got %+v %v", got, err)
	}
	if n := len(bob.Messages()); n != 1 {
		t.Fatalf("bob got %d messages after leaving, want 1", n)
	}
	// Carol rotated her sender key after bob left: her next message still
	// decrypts.
	id5, err := carol.SendGroupText(ctx, gid, "rotated")
	if err != nil {
		t.Fatal(err)
	}
	if m = nextVisible(t, s); m.Info.ID != id5 || m.Message.GetConversation() != "rotated" {
		t.Fatalf("after rotation %s %q", m.Info.ID, m.Message.GetConversation())
	}
	// A non-member cannot send.
	if _, err := bob.SendGroupText(ctx, gid, "let me in"); err == nil {
		t.Fatal("non-member sent to the group")
	}

	// The account is removed.
	if err := srv.RemoveAccount(ctx, gid, s.phone); err != nil {
		t.Fatal(err)
	}
	if gi = next[*events.GroupInfo](t, s.rec); !slices.Contains(gi.Leave, s.acct.LID()) {
		t.Fatalf("account leave %+v", gi)
	}
	if _, err := s.cli.GetGroupInfo(ctx, gid); !errors.Is(err, whatsmeow.ErrNotInGroup) {
		t.Fatalf("group info after removal: %v", err)
	}
	if _, err := s.cli.SendMessage(ctx, gid, &waE2E.Message{Conversation: proto.String("still here?")}); err == nil {
		t.Fatal("send to a group the account left succeeded")
	}
}

// A group created while the client is offline reaches it at login.
func TestGroupCreatedOffline(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990510", nil)
	bob := srv.Contact("5511988880510")
	ctx := ctxT(t)
	s.cli.Disconnect()
	gid, err := srv.CreateGroup(ctx, s.phone, "Later", bob)
	if err != nil {
		t.Fatal(err)
	}
	id, err := bob.SendGroupText(ctx, gid, "while you were away")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cli.Connect(); err != nil {
		t.Fatal(err)
	}
	if jg := next[*events.JoinedGroup](t, s.rec); jg.JID != gid || jg.Name != "Later" {
		t.Fatalf("joined %+v", jg.GroupInfo)
	}
	if m := nextVisible(t, s); m.Info.ID != id || m.Info.Chat != gid {
		t.Fatalf("queued group message %+v", m.Info)
	}
}

// A LID-only contact the client first wrote to by phone number (so the
// client's session is under the phone number) still gets its group
// messages through: the distribution starts a session under the LID.
func TestGroupLIDOnlyAfterPNSession(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990520", nil)
	bob := srv.Contact("5511988880520")
	bob.SetLIDOnly(true)
	ctx := ctxT(t)
	if _, err := s.cli.SendMessage(ctx, bob.JID(), &waE2E.Message{Conversation: proto.String("by number")}); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.WaitMessage(ctx); err != nil {
		t.Fatal(err)
	}
	gid, err := srv.CreateGroup(ctx, s.phone, "Hidden", bob)
	if err != nil {
		t.Fatal(err)
	}
	next[*events.JoinedGroup](t, s.rec)
	id, err := bob.SendGroupText(ctx, gid, "hidden hello")
	if err != nil {
		t.Fatal(err)
	}
	if m := nextVisible(t, s); m.Info.ID != id || m.Info.Sender.ToNonAD() != bob.LID() || !m.Info.SenderAlt.IsEmpty() {
		t.Fatalf("group message %+v", m.Info)
	}
	// 1:1 still works both ways afterwards.
	id2, err := bob.SendText(ctx, s.phone, "direct")
	if err != nil {
		t.Fatal(err)
	}
	if m := nextVisible(t, s); m.Info.ID != id2 || m.Message.GetConversation() != "direct" {
		t.Fatalf("direct %+v", m.Info)
	}
}

// GetJoinedGroups lists the account's groups; LeaveGroup removes it.
func TestJoinedGroupsAndLeave(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990530", nil)
	bob := srv.Contact("5511988880530")
	ctx := ctxT(t)
	g1, err := srv.CreateGroup(ctx, s.phone, "One", bob)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := srv.CreateGroup(ctx, s.phone, "Two", bob)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CreateGroup(ctx, "5511999990531", "Not mine", bob); err != nil {
		t.Fatal(err)
	}
	groups, err := s.cli.GetJoinedGroups(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].JID != g1 || groups[1].JID != g2 || groups[1].Name != "Two" || len(groups[0].Participants) != 2 {
		t.Fatalf("joined groups %+v", groups)
	}
	if err := s.cli.LeaveGroup(ctx, g1); err != nil {
		t.Fatal(err)
	}
	for {
		gi := next[*events.GroupInfo](t, s.rec)
		if gi.JID == g1 && slices.Contains(gi.Leave, s.acct.LID()) {
			break
		}
	}
	if _, err := s.cli.GetGroupInfo(ctx, g1); !errors.Is(err, whatsmeow.ErrNotInGroup) {
		t.Fatalf("group info after leaving: %v", err)
	}
	members, err := srv.GroupMembers(g1)
	if err != nil || len(members) != 1 || members[0] != bob {
		t.Fatalf("members after leaving %v %v", members, err)
	}
}

// A member's attachment in the group downloads from the fake CDN; a reply
// quotes the group message with its sender.
func TestGroupMedia(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990540", nil)
	bob := srv.Contact("5511988880540")
	carol := srv.Contact("5511988880541")
	ctx := ctxT(t)
	gid, err := srv.CreateGroup(ctx, s.phone, "Pics", bob, carol)
	if err != nil {
		t.Fatal(err)
	}
	id1, err := carol.SendGroupText(ctx, gid, "send a picture")
	if err != nil {
		t.Fatal(err)
	}
	nextVisible(t, s)
	data := []byte("not really a jpeg, but bytes all the same")
	id2, err := bob.SendGroupMedia(ctx, gid, wafake.MediaKindImage, data, wafake.MediaOptions{Caption: "here", ReplyTo: id1})
	if err != nil {
		t.Fatal(err)
	}
	var m *events.Message
	for {
		m = next[*events.Message](t, s.rec)
		if m.Message.GetImageMessage() != nil {
			break
		}
	}
	img := m.Message.GetImageMessage()
	if m.Info.ID != id2 || m.Info.Chat != gid || m.Info.Type != "media" || img.GetCaption() != "here" ||
		img.GetContextInfo().GetStanzaID() != id1 || img.GetContextInfo().GetParticipant() != carol.LID().String() ||
		img.GetContextInfo().GetQuotedMessage().GetConversation() != "send a picture" {
		t.Fatalf("group image %+v %v", m.Info, img)
	}
	got, err := s.cli.Download(ctx, img)
	if err != nil || string(got) != string(data) {
		t.Fatalf("download %q %v", got, err)
	}
	// Expired group media: the sender's phone re-uploads on a retry.
	srv.ExpireMedia(id2)
	if err := s.cli.SendMediaRetryReceipt(ctx, &m.Info, img.GetMediaKey()); err != nil {
		t.Fatal(err)
	}
	evt := next[*events.MediaRetry](t, s.rec)
	res, err := whatsmeow.DecryptMediaRetryNotification(evt, img.GetMediaKey())
	if err != nil || res.GetDirectPath() == "" || evt.MessageID != id2 {
		t.Fatalf("media retry %+v %v %v", evt, res, err)
	}
	img.DirectPath, img.URL = proto.String(res.GetDirectPath()), nil
	if got, err = s.cli.Download(ctx, img); err != nil || string(got) != string(data) {
		t.Fatalf("download after retry %q %v", got, err)
	}
}

// After the phone pairs a new companion device, members distribute their
// sender keys to it again.
func TestGroupAfterRepair(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990550", nil)
	bob := srv.Contact("5511988880550")
	ctx := ctxT(t)
	gid, err := srv.CreateGroup(ctx, s.phone, "Again", bob)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SendGroupText(ctx, gid, "first device"); err != nil {
		t.Fatal(err)
	}
	nextVisible(t, s)
	closes := s.log.SocketCloses()
	s2 := pair(t, srv, s.phone, nil)
	next[*events.LoggedOut](t, s.rec)
	if err := s.log.WaitSocketCloses(ctx, closes+1); err != nil {
		t.Fatal(err) // the old device must have handled the close before its cleanup Disconnect (-race)
	}
	id, err := bob.SendGroupText(ctx, gid, "second device")
	if err != nil {
		t.Fatal(err)
	}
	if m := nextVisible(t, s2); m.Info.ID != id || m.Message.GetConversation() != "second device" {
		t.Fatalf("after re-pairing %+v", m.Info)
	}
	if info, err := s2.cli.GetGroupInfo(ctx, gid); err != nil || info.Name != "Again" {
		t.Fatalf("group info on the new device %+v %v", info, err)
	}
}
