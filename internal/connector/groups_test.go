package connector_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

func mustJID(t *testing.T, s string) types.JID {
	t.Helper()
	j, err := types.ParseJID(s)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// simGroupInfo is a group with a PN participant (admin, LID known), a
// LID-only participant and the mentorado's number.
func simGroupInfo(t *testing.T, jid, subject, own string) types.GroupInfo {
	return types.GroupInfo{
		JID:       mustJID(t, jid),
		GroupName: types.GroupName{Name: subject},
		Participants: []types.GroupParticipant{
			{JID: mustJID(t, "5511987654321@s.whatsapp.net"), PhoneNumber: mustJID(t, "5511987654321@s.whatsapp.net"), LID: mustJID(t, "200000000000001@lid"), IsAdmin: true},
			{JID: mustJID(t, "300000000000001@lid"), LID: mustJID(t, "300000000000001@lid")},
			{JID: mustJID(t, own+"@s.whatsapp.net"), PhoneNumber: mustJID(t, own+"@s.whatsapp.net"), IsSuperAdmin: true},
		},
	}
}

// count is how many events of a subject filter the stream holds; cheaper
// to poll than stored, which opens a consumer per call.
func (e *env) count(stream, filter string) int {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.observer.JS.Stream(ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		e.t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return int(n)
}

func (e *env) groupCount(m int64) int {
	return e.count(bus.StreamEvents, event.EventSubject(m, event.TypeGroup))
}

func (e *env) groups(m int64) []*event.Group {
	var out []*event.Group
	for _, env := range e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeGroup)) {
		p, err := env.Payload()
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, p.(*event.Group))
	}
	return out
}

func (e *env) messages(m int64) []*event.Message {
	var out []*event.Message
	for _, env := range e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage)) {
		p, err := env.Payload()
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, p.(*event.Message))
	}
	return out
}

// A group's messages carry the group as chat and the participant as
// sender; the first one makes the session describe the group (once); a
// change WhatsApp reports publishes a fresh snapshot at the change's
// time; leaving republishes the last snapshot as left, and sends to it
// are refused.
func TestGroupLifecycleSim(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	const own = "5511900000031"
	e.paired(m, own)
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")
	const g1 = "120363000000000031@g.us"
	e.world.SetGroup(m, simGroupInfo(t, g1, "Turma 7", own))

	// An inbound message from a LID-addressed participant whose phone the
	// server sent as SenderAlt.
	id, acked, err := e.world.InjectGroupText(m, mustJID(t, g1), mustJID(t, "200000000000001:3@lid"), mustJID(t, "5511987654321:3@s.whatsapp.net"), false, "Bom dia, grupo!")
	if err != nil || !acked {
		t.Fatalf("inject: %v %v", acked, err)
	}
	msgs := e.messages(m)
	if len(msgs) != 1 || msgs[0].WAID != id || msgs[0].ChatJID != g1 || msgs[0].SenderJID != "200000000000001@lid" ||
		msgs[0].Phone != "5511987654321" || msgs[0].LID != "200000000000001@lid" || msgs[0].Direction != event.DirectionIn {
		t.Fatalf("group message %+v", msgs)
	}
	var gs []*event.Group
	testenv.Eventually(t, wait, func() bool { return e.groupCount(m) == 1 }, "group described on first sight")
	gs = e.groups(m)
	g := gs[0]
	if g.JID != g1 || g.Subject != "Turma 7" || g.Left || len(g.Participants) != 3 {
		t.Fatalf("group %+v", g)
	}
	if p := g.Participants[0]; p.JID != "5511987654321@s.whatsapp.net" || p.Phone != "5511987654321" || p.LID != "200000000000001@lid" || !p.Admin {
		t.Errorf("participant 0 %+v", p)
	}
	if p := g.Participants[1]; p.JID != "300000000000001@lid" || p.Phone != "" || p.LID != "300000000000001@lid" || p.Admin {
		t.Errorf("participant 1 %+v", p)
	}
	if p := g.Participants[2]; p.Phone != own || !p.Admin {
		t.Errorf("participant 2 (super admin) %+v", p)
	}

	// More messages of a described group fetch nothing.
	if _, acked, err := e.world.InjectGroupText(m, mustJID(t, g1), mustJID(t, "300000000000001:1@lid"), types.EmptyJID, false, "oi"); err != nil || !acked {
		t.Fatalf("inject: %v %v", acked, err)
	}
	msgs = e.messages(m)
	if last := msgs[len(msgs)-1]; last.ChatJID != g1 || last.Phone != "" || last.LID != "300000000000001@lid" {
		t.Fatalf("LID-only participant's message %+v", last)
	}
	if n := e.world.GroupInfoCalls(m); n != 1 {
		t.Fatalf("GetGroupInfo called %d times, want 1", n)
	}

	// A change: the subject. The snapshot is fetched and published at the
	// change's time, before the ack.
	changed := simGroupInfo(t, g1, "Turma 7 — 2027", own)
	e.world.SetGroup(m, changed)
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	if ok, err := e.world.Inject(m, &events.GroupInfo{JID: mustJID(t, g1), Name: &types.GroupName{Name: "Turma 7 — 2027"}, Timestamp: at}); err != nil || !ok {
		t.Fatalf("group change not acked: %v %v", ok, err)
	}
	envs := e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeGroup))
	if len(envs) != 2 || !envs[1].OccurredAt.Equal(at) {
		t.Fatalf("group events after the change: %d", len(envs))
	}
	p, _ := envs[1].Payload()
	if g := p.(*event.Group); g.Subject != "Turma 7 — 2027" || len(g.Participants) != 3 || envs[1].ID != event.GroupEventID(m, g, at) {
		t.Fatalf("changed group %+v (id %s)", g, envs[1].ID)
	}

	// A change no group event carries (only admins may send): nothing
	// fetched, nothing published.
	calls := e.world.GroupInfoCalls(m)
	if ok, err := e.world.Inject(m, &events.GroupInfo{JID: mustJID(t, g1), Announce: &types.GroupAnnounce{IsAnnounce: true}, Timestamp: at.Add(time.Minute)}); err != nil || !ok {
		t.Fatalf("announce change not acked: %v %v", ok, err)
	}
	if n := e.groupCount(m); n != 2 || e.world.GroupInfoCalls(m) != calls {
		t.Fatalf("announce change: %d group events, %d calls (was %d)", n, e.world.GroupInfoCalls(m), calls)
	}

	// The number is removed: no fetch (it would fail), the last snapshot
	// again with left set.
	e.world.LeaveGroup(m, mustJID(t, g1))
	leftAt := at.Add(time.Hour)
	if ok, err := e.world.Inject(m, &events.GroupInfo{JID: mustJID(t, g1), Leave: []types.JID{mustJID(t, own+"@s.whatsapp.net")}, Timestamp: leftAt}); err != nil || !ok {
		t.Fatalf("leave not acked: %v %v", ok, err)
	}
	gs = e.groups(m)
	if len(gs) != 3 || !gs[2].Left || gs[2].Subject != "Turma 7 — 2027" || len(gs[2].Participants) != 3 {
		t.Fatalf("left group %+v", gs[len(gs)-1])
	}
	if n := e.world.GroupInfoCalls(m); n != calls {
		t.Fatalf("fetched the info of a group we left")
	}
	r := e.mustRequest(m, event.VerbSend, event.SendRequest{Chat: g1, Text: "ainda estou aqui?"})
	if r.Error == nil || r.Error.Code != event.CodeNotInGroup {
		t.Fatalf("send to a group we left: %+v", r)
	}

	// Joining a group: its info comes with the notification.
	g2 := simGroupInfo(t, "120363000000000032@g.us", "Turma 8", own)
	if ok, err := e.world.Inject(m, &events.JoinedGroup{Reason: "invite", GroupInfo: g2}); err != nil || !ok {
		t.Fatalf("join not acked: %v %v", ok, err)
	}
	gs = e.groups(m)
	if last := gs[len(gs)-1]; last.JID != "120363000000000032@g.us" || last.Subject != "Turma 8" || last.Left {
		t.Fatalf("joined group %+v", last)
	}
	// A message there (sent from the phone) needs no fetch: the join described it.
	calls = e.world.GroupInfoCalls(m)
	if _, acked, err := e.world.InjectGroupText(m, g2.JID, mustJID(t, own+":0@s.whatsapp.net"), types.EmptyJID, true, "bem-vindos"); err != nil || !acked {
		t.Fatalf("inject: %v %v", acked, err)
	}
	msgs = e.messages(m)
	if last := msgs[len(msgs)-1]; last.ChatJID != "120363000000000032@g.us" || last.Direction != event.DirectionOut || last.Phone != "" || last.LID != "" {
		t.Fatalf("outbound group message %+v", last)
	}
	r = e.mustRequest(m, event.VerbStatus, nil) // a round trip through the connector
	if r.Status == nil {
		t.Fatal("status")
	}
	if n := e.world.GroupInfoCalls(m); n != calls {
		t.Fatalf("a group described by its join was fetched again")
	}
}

// The first-sight fetch never holds up a message: the message is acked
// while GetGroupInfo fails, and the fetch retries in the background.
func TestGroupFirstSightRetriesSim(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	const own = "5511900000032"
	e.paired(m, own)
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")
	const g1 = "120363000000000033@g.us"
	e.world.SetGroup(m, simGroupInfo(t, g1, "Turma 9", own))
	e.world.FailGroupInfo(m, errors.New("sim: timed out"))

	// Sent from the phone (outbound) also counts as first sight.
	if _, acked, err := e.world.InjectGroupText(m, mustJID(t, g1), mustJID(t, own+":0@s.whatsapp.net"), types.EmptyJID, true, "oi"); err != nil || !acked {
		t.Fatalf("message not acked while the group fetch fails: %v %v", acked, err)
	}
	if n := len(e.messages(m)); n != 1 {
		t.Fatalf("%d messages", n)
	}
	var gs []*event.Group
	testenv.Eventually(t, wait, func() bool { return e.groupCount(m) == 1 }, "group described after a retry")
	gs = e.groups(m)
	if gs[0].Subject != "Turma 9" || e.world.GroupInfoCalls(m) != 2 {
		t.Fatalf("group %+v after %d calls", gs[0], e.world.GroupInfoCalls(m))
	}

	// A change whose fetch fails is not acked (WhatsApp delivers it
	// again); delivered again, it is published.
	change := &events.GroupInfo{JID: mustJID(t, g1), Name: &types.GroupName{Name: "Turma 9B"}, Timestamp: time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)}
	e.world.SetGroup(m, simGroupInfo(t, g1, "Turma 9B", own))
	e.world.FailGroupInfo(m, errors.New("sim: timed out"))
	if ok, err := e.world.Inject(m, change); err != nil || ok {
		t.Fatalf("change acked although its snapshot was not published: %v %v", ok, err)
	}
	if ok, err := e.world.Inject(m, change); err != nil || !ok {
		t.Fatalf("redelivered change: %v %v", ok, err)
	}
	if gs := e.groups(m); len(gs) != 2 || gs[1].Subject != "Turma 9B" {
		t.Fatalf("groups %+v", gs)
	}

	// Removed in a way the session cannot tell from the change (a LID it
	// does not know as its own): the fetch says so, and the group is
	// published as left without a second fetch.
	e.world.LeaveGroup(m, mustJID(t, g1))
	calls := e.world.GroupInfoCalls(m)
	if ok, err := e.world.Inject(m, &events.GroupInfo{JID: mustJID(t, g1), Leave: []types.JID{mustJID(t, "100000000000032@lid")}, Timestamp: change.Timestamp.Add(time.Hour)}); err != nil || !ok {
		t.Fatalf("removal: %v %v", ok, err)
	}
	gs = e.groups(m)
	if last := gs[len(gs)-1]; len(gs) != 3 || !last.Left || last.Subject != "Turma 9B" || e.world.GroupInfoCalls(m) != calls+1 {
		t.Fatalf("left group %+v (%d events, %d calls)", last, len(gs), e.world.GroupInfoCalls(m)-calls)
	}
}

// Sending to a chat JID: a LID chat and a group are sent to as they are
// (no number check); a phone JID is resolved like a phone; a group the
// number is not in is not_in_group; a bad chat is invalid_chat.
func TestSendToChatSim(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	const own = "5511900000033"
	e.paired(m, own)
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")
	const g1 = "120363000000000034@g.us"
	e.world.SetGroup(m, simGroupInfo(t, g1, "Turma 10", own))

	r := e.mustRequest(m, event.VerbSend, event.SendRequest{Chat: "300000000000001@lid", Text: "olá, LID"})
	if r.Error != nil || r.Message.ChatJID != "300000000000001@lid" || r.Message.LID != "300000000000001@lid" || r.Message.Phone != "" {
		t.Fatalf("send to LID: %+v %+v", r.Error, r.Message)
	}
	r = e.mustRequest(m, event.VerbSend, event.SendRequest{Chat: g1, Text: "concordo", ReplyTo: "G1", ReplyToSender: "300000000000001@lid", ReplyToText: "vamos?"})
	if r.Error != nil || r.Message.ChatJID != g1 || r.Message.Phone != "" || r.Message.LID != "" || r.Message.ReplyToID != "G1" {
		t.Fatalf("send to group: %+v %+v", r.Error, r.Message)
	}
	e.world.NotOnWhatsApp("5511955554444")
	e.world.NotOnWhatsApp("551155554444")
	r = e.mustRequest(m, event.VerbSend, event.SendRequest{Chat: "5511987654321@s.whatsapp.net", Text: "por telefone"})
	if r.Error != nil || r.Message.ChatJID != "5511987654321@s.whatsapp.net" || r.Message.Phone != "5511987654321" {
		t.Fatalf("send to a phone JID: %+v %+v", r.Error, r.Message)
	}
	sent := e.world.Sent(m)
	if len(sent) != 3 || sent[0].To.String() != "300000000000001@lid" || sent[1].To.String() != g1 {
		t.Fatalf("sent %+v", sent)
	}
	if ci := sent[1].Message.GetExtendedTextMessage().GetContextInfo(); ci.GetStanzaID() != "G1" || ci.GetParticipant() != "300000000000001@lid" {
		t.Fatalf("reply in a group: %v", ci)
	}
	// The send was the first sight of the group.
	testenv.Eventually(t, wait, func() bool { return e.groupCount(m) == 1 }, "group described after a send")
	if gs := e.groups(m); gs[0].Subject != "Turma 10" {
		t.Fatalf("group %+v", gs[0])
	}

	for _, tc := range []struct {
		req  event.SendRequest
		code string
	}{
		{event.SendRequest{Chat: "120363000000000099@g.us", Text: "x"}, event.CodeNotInGroup}, // unknown group
		{event.SendRequest{Chat: "abc@g.us", Text: "x"}, event.CodeInvalidChat},
		{event.SendRequest{Chat: "1736000000@broadcast", Text: "x"}, event.CodeInvalidChat},
		{event.SendRequest{Chat: "300000000000001:2@lid", Text: "x"}, event.CodeInvalidChat},
		{event.SendRequest{Chat: "5511955554444@s.whatsapp.net", Text: "x"}, event.CodeNotOnWhatsApp},
		{event.SendRequest{Chat: g1, Phone: "11987654321", Text: "x"}, event.CodeBadRequest},
	} {
		if r := e.mustRequest(m, event.VerbSend, tc.req); r.Error == nil || r.Error.Code != tc.code {
			t.Errorf("send %+v: %+v, want %s", tc.req, r.Error, tc.code)
		}
	}
	// Removed from the group without the session being told: WhatsApp's
	// refusal maps to not_in_group.
	e.world.LeaveGroup(m, mustJID(t, g1))
	if r := e.mustRequest(m, event.VerbSend, event.SendRequest{Chat: g1, Text: "x"}); r.Error == nil || r.Error.Code != event.CodeNotInGroup {
		t.Errorf("send after removal: %+v", r.Error)
	}
	if n := len(e.world.Sent(m)); n != 3 {
		t.Fatalf("refused sends reached WhatsApp: %d", n)
	}
	var recorded int
	for _, msg := range e.messages(m) {
		if msg.Direction == event.DirectionOut {
			recorded++
		}
	}
	if recorded != 3 {
		t.Fatalf("%d outbound events, want 3", recorded)
	}
}

// Actions in a group: a reaction or a revoke of someone else's message
// names its author (MessageKey.Participant); read receipts go per author.
func TestGroupActionsSim(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	const own = "5511900000034"
	e.paired(m, own)
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(m) == event.StatusConnected }, "restored")
	const g1 = "120363000000000035@g.us"
	e.world.SetGroup(m, simGroupInfo(t, g1, "Turma 11", own))
	const ana, bob = "200000000000001@lid", "300000000000001@lid"

	if r := e.mustRequest(m, event.VerbReact, event.ActionRequest{MessageID: "G1", ChatJID: g1, SenderJID: ana, Emoji: "👍"}); r.Error != nil || r.Message.ChatJID != g1 || r.Message.TargetID != "G1" {
		t.Fatalf("react: %+v", r)
	}
	if r := e.mustRequest(m, event.VerbRevoke, event.ActionRequest{MessageID: "G2", ChatJID: g1, SenderJID: bob}); r.Error != nil || r.Message.Kind != event.KindRevoke {
		t.Fatalf("admin revoke: %+v", r)
	}
	if r := e.mustRequest(m, event.VerbRevoke, event.ActionRequest{MessageID: "G3", ChatJID: g1, SenderJID: own + "@s.whatsapp.net", FromMe: true}); r.Error != nil {
		t.Fatalf("own revoke: %+v", r)
	}
	sent := e.world.Sent(m)
	if len(sent) != 3 {
		t.Fatalf("sent %d", len(sent))
	}
	if k := sent[0].Message.GetReactionMessage().GetKey(); k.GetRemoteJID() != g1 || k.GetParticipant() != ana || k.GetFromMe() || k.GetID() != "G1" {
		t.Errorf("reaction key %v", k)
	}
	if k := sent[1].Message.GetProtocolMessage().GetKey(); k.GetParticipant() != bob || k.GetFromMe() || k.GetID() != "G2" {
		t.Errorf("revoke key %v", k)
	}
	if k := sent[2].Message.GetProtocolMessage().GetKey(); k.GetParticipant() != "" || !k.GetFromMe() {
		t.Errorf("own revoke key %v", k)
	}

	rr := e.mustRequest(m, event.VerbRead, event.ReadRequest{ChatJID: g1, Messages: []event.ReadRef{{ID: "G1", SenderJID: ana}, {ID: "G2", SenderJID: bob}, {ID: "G4", SenderJID: ana}}})
	if rr.Error != nil {
		t.Fatal(rr.Error)
	}
	reads := e.world.Reads(m)
	if len(reads) != 2 || reads[0].Sender.String() != ana || len(reads[0].IDs) != 2 || reads[1].Sender.String() != bob || reads[0].Chat.String() != g1 {
		t.Fatalf("read receipts %+v", reads)
	}
}
