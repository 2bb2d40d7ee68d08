package waconv

import (
	"errors"
	"testing"

	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waSyncAction"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
)

// groupInfo is a group as whatsmeow parses it (parseGroupNode and
// parseParticipant): a PN participant with its LID, a LID participant with
// its phone, a LID participant whose phone only the LID store knows, and
// one nobody knows the phone of.
func groupInfo() types.GroupInfo {
	return types.GroupInfo{
		JID:        group,
		GroupName:  types.GroupName{Name: "Mentoria Turma 7"},
		GroupTopic: types.GroupTopic{Topic: "Regras: sem spam"},
		Participants: []types.GroupParticipant{
			{JID: alice, PhoneNumber: alice, LID: aliceLID, IsSuperAdmin: true, IsAdmin: true},
			{JID: carolLID, LID: carolLID},
			{JID: bobLID.ToNonAD(), LID: bobLID.ToNonAD()},
			{JID: jid("300000000000009@lid"), LID: jid("300000000000009@lid"), PhoneNumber: jid("5531988887777@s.whatsapp.net"), IsAdmin: true},
			{JID: jid("5511911112222@s.whatsapp.net"), PhoneNumber: jid("5511911112222@s.whatsapp.net"), Error: 403}, // failed invitation
		},
	}
}

func TestGroupSnapshot(t *testing.T) {
	info := groupInfo()
	env, g, err := converter(newLIDs()).GroupSnapshot(t.Context(), &info, false, ts)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, env)
	if env.Type != event.TypeGroup || !env.OccurredAt.Equal(ts) || env.ID != event.GroupEventID(mentorado, g, ts) {
		t.Fatalf("envelope %s %s %v", env.Type, env.ID, env.OccurredAt)
	}
	p, err := env.Payload()
	if err != nil {
		t.Fatal(err)
	}
	got := p.(*event.Group)
	if got.JID != "120363000000000001@g.us" || got.Subject != "Mentoria Turma 7" || got.Topic != "Regras: sem spam" || got.Left {
		t.Fatalf("group %+v", got)
	}
	want := []event.Participant{
		{JID: "5511987654321@s.whatsapp.net", Phone: "5511987654321", LID: "200000000000001@lid", Admin: true},
		{JID: "400000000000001@lid", Phone: "5521998765432", LID: "400000000000001@lid"},
		{JID: "300000000000001@lid", LID: "300000000000001@lid"},
		{JID: "300000000000009@lid", Phone: "5531988887777", LID: "300000000000009@lid", Admin: true},
	}
	if len(got.Participants) != len(want) {
		t.Fatalf("participants %+v", got.Participants)
	}
	for i := range want {
		if got.Participants[i] != want[i] {
			t.Errorf("participant %d = %+v, want %+v", i, got.Participants[i], want[i])
		}
	}

	// Left, and the same group at another time: distinct facts.
	envLeft, gl, err := converter(newLIDs()).GroupSnapshot(t.Context(), &info, true, ts)
	if err != nil || !gl.Left || envLeft.ID == env.ID {
		t.Fatalf("left snapshot %v %+v %s", err, gl, envLeft.ID)
	}
	// Republishing the last snapshot as left (GroupEnvelope) gives the same id.
	left := *g
	left.Left = true
	again, err := converter(nil).GroupEnvelope(&left, ts)
	if err != nil || again.ID != envLeft.ID {
		t.Fatalf("GroupEnvelope %s %v, want %s", again.ID, err, envLeft.ID)
	}

	// A failing LID lookup is an error, not a snapshot without phones.
	if _, _, err := converter(&fakeLIDs{err: errors.New("db down")}).GroupSnapshot(t.Context(), &info, false, ts); err == nil {
		t.Fatal("LID store failure ignored")
	}
	// Not a group: refused.
	bad := types.GroupInfo{JID: alice}
	if _, _, err := converter(nil).GroupSnapshot(t.Context(), &bad, false, ts); err == nil {
		t.Fatal("a phone JID made a group event")
	}
}

func TestJoinedGroupAndGroupInfo(t *testing.T) {
	c := converter(newLIDs())
	_, ps := payloads(t, c, &events.JoinedGroup{Reason: "invite", GroupInfo: groupInfo()})
	if len(ps) != 1 {
		t.Fatalf("joined group: %d envelopes", len(ps))
	}
	if g := ps[0].(*event.Group); g.JID != group.String() || len(g.Participants) != 4 || g.Left {
		t.Fatalf("joined group %+v", g)
	}
	if d := Decide(&events.JoinedGroup{}); d.Action != Publish {
		t.Errorf("JoinedGroup: %v", d.Action)
	}
	// GroupInfo is a delta: the connector fetches; Convert adds nothing.
	if d := Decide(&events.GroupInfo{}); d.Action != Publish {
		t.Errorf("GroupInfo: %v", d.Action)
	}
	envs, err := c.Convert(t.Context(), &events.GroupInfo{JID: group, Name: &types.GroupName{Name: "x"}, Timestamp: ts})
	if err != nil || len(envs) != 0 {
		t.Fatalf("GroupInfo converted to %d envelopes, %v", len(envs), err)
	}
}

func TestSnapshotChanged(t *testing.T) {
	for _, tt := range []struct {
		evt  *events.GroupInfo
		want bool
	}{
		{&events.GroupInfo{Name: &types.GroupName{Name: "x"}}, true},
		{&events.GroupInfo{Topic: &types.GroupTopic{TopicDeleted: true}}, true},
		{&events.GroupInfo{Join: []types.JID{alice}}, true},
		{&events.GroupInfo{Leave: []types.JID{alice}}, true},
		{&events.GroupInfo{Promote: []types.JID{alice}}, true},
		{&events.GroupInfo{Demote: []types.JID{alice}}, true},
		{&events.GroupInfo{Delete: &types.GroupDelete{Deleted: true}}, true},
		{&events.GroupInfo{Announce: &types.GroupAnnounce{IsAnnounce: true}}, false},
		{&events.GroupInfo{Ephemeral: &types.GroupEphemeral{IsEphemeral: true}}, false},
		{&events.GroupInfo{Locked: &types.GroupLocked{IsLocked: true}}, false},
	} {
		if got := SnapshotChanged(tt.evt); got != tt.want {
			t.Errorf("%+v: %v, want %v", tt.evt, got, tt.want)
		}
	}
}

func TestLeftGroup(t *testing.T) {
	for _, tt := range []struct {
		name string
		evt  *events.GroupInfo
		want bool
	}{
		{"someone else left", &events.GroupInfo{JID: group, Leave: []types.JID{alice}}, false},
		{"we left by phone", &events.GroupInfo{JID: group, Leave: []types.JID{alice, jid("5511900000001@s.whatsapp.net")}}, true},
		{"we were removed by lid", &events.GroupInfo{JID: group, Leave: []types.JID{jid("100000000000001@lid")}}, true},
		{"group deleted", &events.GroupInfo{JID: group, Delete: &types.GroupDelete{Deleted: true}}, true},
		{"a join", &events.GroupInfo{JID: group, Join: []types.JID{me.ToNonAD()}}, false},
	} {
		if got := LeftGroup(tt.evt, me, meLID); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Group messages as whatsmeow builds them (message.go parseMessageSource):
// Chat the group, Sender the participant's device JID in the group's
// addressing mode, SenderAlt the other address when the server sent it.
func TestGroupMessages(t *testing.T) {
	lidGroup := func(sender, alt types.JID) types.MessageSource {
		return types.MessageSource{Chat: group, Sender: sender, SenderAlt: alt, IsGroup: true, AddressingMode: types.AddressingModeLID}
	}
	pnGroup := func(sender, alt types.JID) types.MessageSource {
		return types.MessageSource{Chat: group, Sender: sender, SenderAlt: alt, IsGroup: true, AddressingMode: types.AddressingModePN}
	}
	tests := []struct {
		name                    string
		src                     types.MessageSource
		sender, phone, lid      string
		dir                     event.Direction
		wantContact, contactJID string
	}{
		{"lid addressed with pn alt", lidGroup(jid("200000000000001:4@lid"), aliceDev), "200000000000001@lid", "5511987654321", "200000000000001@lid", event.DirectionIn, "yes", "5511987654321@s.whatsapp.net"},
		{"lid addressed, phone from store", lidGroup(carolLID, types.EmptyJID), "400000000000001@lid", "5521998765432", "400000000000001@lid", event.DirectionIn, "yes", "5521998765432@s.whatsapp.net"},
		{"lid addressed, phone unknown", lidGroup(bobLID, types.EmptyJID), "300000000000001@lid", "", "300000000000001@lid", event.DirectionIn, "yes", "300000000000001@lid"},
		{"pn addressed with lid alt", pnGroup(aliceDev, aliceLID), "5511987654321@s.whatsapp.net", "5511987654321", "200000000000001@lid", event.DirectionIn, "yes", "5511987654321@s.whatsapp.net"},
		{"pn addressed, no alt", pnGroup(alice, types.EmptyJID), "5511987654321@s.whatsapp.net", "5511987654321", "", event.DirectionIn, "yes", "5511987654321@s.whatsapp.net"},
		{"out, lid addressed", types.MessageSource{Chat: group, Sender: meLID, IsFromMe: true, IsGroup: true, AddressingMode: types.AddressingModeLID}, "100000000000001@lid", "", "", event.DirectionOut, "", ""},
		{"out, pn addressed", types.MessageSource{Chat: group, Sender: me, IsFromMe: true, IsGroup: true}, "5511900000001@s.whatsapp.net", "", "", event.DirectionOut, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := payloads(t, converter(newLIDs()), dispatched(tt.src, "G1", "Ana", text("Bom dia, grupo!")))
			m := ps[0].(*event.Message)
			if m.ChatJID != group.String() || m.SenderJID != tt.sender || m.Phone != tt.phone || m.LID != tt.lid || m.Direction != tt.dir {
				t.Fatalf("got chat %s sender %s phone %q lid %q %s; want sender %s phone %q lid %q %s", m.ChatJID, m.SenderJID, m.Phone, m.LID, m.Direction, tt.sender, tt.phone, tt.lid, tt.dir)
			}
			if tt.wantContact == "" {
				if len(ps) != 1 || m.PushName != "" {
					t.Fatalf("outbound: %d envelopes, push name %q", len(ps), m.PushName)
				}
				return
			}
			if len(ps) != 2 {
				t.Fatalf("want message + contact, got %d", len(ps))
			}
			if ct := ps[1].(*event.Contact); ct.JID != tt.contactJID || ct.Phone != tt.phone || ct.PushName != "Ana" {
				t.Errorf("contact %+v", ct)
			}
		})
	}

	// Reactions, edits, revokes and replies in a group keep their targets.
	participantKey := func(id string) *waCommon.MessageKey {
		return &waCommon.MessageKey{RemoteJID: proto.String(group.String()), FromMe: proto.Bool(false), ID: proto.String(id), Participant: proto.String(aliceLID.String())}
	}
	src := lidGroup(jid("200000000000001:4@lid"), aliceDev)
	for _, tt := range []struct {
		name   string
		m      *waE2E.Message
		kind   event.Kind
		target string
		reply  string
	}{
		{"reaction", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Key: participantKey("T1"), Text: proto.String("👍")}}, event.KindReaction, "T1", ""},
		{"revoke", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum(), Key: participantKey("T2")}}, event.KindRevoke, "T2", ""},
		{"edit", &waE2E.Message{EditedMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
			Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), Key: participantKey("T3"), EditedMessage: text("corrigido"),
		}}}}, event.KindEdit, "T3", ""},
		{"reply", &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("concordo"), ContextInfo: &waE2E.ContextInfo{
			StanzaID: proto.String("Q1"), Participant: proto.String(carolLID.String()),
		}}}, event.KindText, "", "Q1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := payloads(t, converter(newLIDs()), dispatched(src, "G-"+tt.name, "", tt.m))
			m := ps[0].(*event.Message)
			if m.Kind != tt.kind || m.TargetID != tt.target || m.ReplyToID != tt.reply || m.ChatJID != group.String() || m.Phone != "5511987654321" {
				t.Errorf("got %+v", m)
			}
		})
	}
}

// A direct message from a contact known only by LID: no SenderAlt, no
// mapping in the LID store. The chat is the LID, the phone unknown.
func TestLIDOnlyDirectSender(t *testing.T) {
	src := types.MessageSource{Chat: jid("300000000000001@lid"), Sender: bobLID, AddressingMode: types.AddressingModeLID}
	_, ps := payloads(t, converter(newLIDs()), dispatched(src, "L1", "Bob", text("oi")))
	m := ps[0].(*event.Message)
	if m.ChatJID != "300000000000001@lid" || m.SenderJID != "300000000000001@lid" || m.Phone != "" || m.LID != "300000000000001@lid" {
		t.Fatalf("got %+v", m)
	}
	if event.KindOfChat(m.ChatJID) != event.ChatDirect {
		t.Fatalf("chat %s is not a direct chat", m.ChatJID)
	}
	// The receipt of our reply to that LID chat.
	_, rs := payloads(t, converter(newLIDs()), &events.Receipt{MessageSource: types.MessageSource{Chat: jid("300000000000001@lid"), Sender: bobLID}, MessageIDs: []string{"OUT9"}, Timestamp: ts})
	if r := rs[0].(*event.Receipt); r.ChatJID != "300000000000001@lid" || r.Phone != "" {
		t.Fatalf("receipt %+v", r)
	}
}

func TestGroupReceipts(t *testing.T) {
	for _, tt := range []struct {
		name   string
		src    types.MessageSource
		phone  string
		fromMe bool
	}{
		{"delivered to a lid participant", types.MessageSource{Chat: group, Sender: jid("200000000000001:4@lid"), SenderAlt: aliceDev, IsGroup: true}, "5511987654321", false},
		{"read by a participant, phone from store", types.MessageSource{Chat: group, Sender: carolLID, IsGroup: true}, "5521998765432", false},
		{"read on my phone", types.MessageSource{Chat: group, Sender: me, IsFromMe: true, IsGroup: true}, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := payloads(t, converter(newLIDs()), &events.Receipt{MessageSource: tt.src, MessageIDs: []string{"G1"}, Timestamp: ts, Type: types.ReceiptTypeRead})
			r := ps[0].(*event.Receipt)
			if r.ChatJID != group.String() || r.Phone != tt.phone || r.FromMe != tt.fromMe || r.Kind != event.ReceiptRead {
				t.Errorf("receipt %+v", r)
			}
		})
	}
}

// The address book arrives on the first full sync (EmitAppStateEventsOnFullSync):
// entries keyed by phone or by LID, with the other address in the action.
func TestAddressBookContacts(t *testing.T) {
	for _, tt := range []struct {
		name            string
		evt             *events.Contact
		jid, phone, lid string
	}{
		{"pn entry with lid", &events.Contact{JID: alice, Timestamp: ts, Action: &waSyncAction.ContactAction{FullName: proto.String("Alice Souza"), LidJID: proto.String("200000000000001@lid")}}, "5511987654321@s.whatsapp.net", "5511987654321", "200000000000001@lid"},
		{"lid entry with pn", &events.Contact{JID: aliceLID, Timestamp: ts, Action: &waSyncAction.ContactAction{FullName: proto.String("Alice Souza"), PnJID: proto.String("5511987654321@s.whatsapp.net")}}, "5511987654321@s.whatsapp.net", "5511987654321", "200000000000001@lid"},
		{"lid entry, phone from store", &events.Contact{JID: carolLID, Timestamp: ts, Action: &waSyncAction.ContactAction{FirstName: proto.String("Carol")}}, "5521998765432@s.whatsapp.net", "5521998765432", "400000000000001@lid"},
		{"lid entry, phone unknown", &events.Contact{JID: bobLID.ToNonAD(), Timestamp: ts, Action: &waSyncAction.ContactAction{FullName: proto.String("Bob")}}, "300000000000001@lid", "", "300000000000001@lid"},
		{"pn entry only", &events.Contact{JID: alice, Timestamp: ts, Action: &waSyncAction.ContactAction{FullName: proto.String("Alice")}}, "5511987654321@s.whatsapp.net", "5511987654321", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			envs, ps := payloads(t, converter(newLIDs()), tt.evt)
			if len(ps) != 1 {
				t.Fatalf("%d envelopes", len(ps))
			}
			ct := ps[0].(*event.Contact)
			if ct.JID != tt.jid || ct.Phone != tt.phone || ct.LID != tt.lid || ct.Name == "" || ct.PushName != "" {
				t.Errorf("contact %+v; want jid %s phone %q lid %q", ct, tt.jid, tt.phone, tt.lid)
			}
			if !envs[0].OccurredAt.Equal(ts) {
				t.Errorf("occurred_at %v", envs[0].OccurredAt)
			}
		})
	}
	// A group or a removal (no name) is no contact.
	for _, evt := range []*events.Contact{
		{JID: group, Timestamp: ts, Action: &waSyncAction.ContactAction{FullName: proto.String("Grupo")}},
		{JID: alice, Timestamp: ts, Action: &waSyncAction.ContactAction{}},
	} {
		if envs, err := converter(nil).Convert(t.Context(), evt); err != nil || len(envs) != 0 {
			t.Errorf("%s: %d envelopes, %v", evt.JID, len(envs), err)
		}
	}
}
