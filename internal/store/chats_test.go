package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/store"
)

// chatMsg is a message row as the persister writes it for a chat.
type chatMsg struct {
	id, chatJID, sender, phone, lid, push, dir, kind string
	rank                                             int16
	at                                               time.Duration
	history                                          bool
}

func seedChatMsg(t *testing.T, db *store.DB, m int64, base time.Time, c chatMsg) {
	t.Helper()
	if c.dir == "" {
		c.dir = "in"
	}
	if c.kind == "" {
		c.kind = "text"
	}
	if c.rank == 0 {
		c.rank = 1
	}
	exec(t, db, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, phone, lid, push_name,
	direction, kind, body, status, status_rank, sent_at, history)
VALUES ($1, $2, $3, $4, nullif($5, ''), nullif($6, ''), $7, $8, $9, 'body ' || $2, 'received', $10, $11, $12)`,
		m, c.id, c.chatJID, c.sender, c.phone, c.lid, c.push, c.dir, c.kind, c.rank, base.Add(c.at), c.history)
}

const (
	groupJID = "120363000000000001@g.us"
	lidJID   = "987654321@lid"
)

// seedChats: a phone chat (5511…), a LID-only chat, a group where the
// phone's person writes too, and a broadcast message that is no chat.
func seedChats(t *testing.T, db *store.DB, m int64) {
	t.Helper()
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p := "5511988887777"
	pj := p + "@s.whatsapp.net"
	for _, c := range []chatMsg{
		{id: "d1", chatJID: pj, sender: pj, phone: p, push: "Zed", at: 1 * time.Minute},
		{id: "d2", chatJID: pj, sender: pj, phone: p, push: "Zed", at: 2 * time.Minute, rank: 3},
		{id: "d3", chatJID: pj, sender: "me@s.whatsapp.net", phone: p, dir: "out", at: 3 * time.Minute},
		// Written to the LID before the phone was known: same chat.
		{id: "d4", chatJID: "111@lid", sender: "111@lid", phone: p, lid: "111@lid", push: "Zed", at: 4 * time.Minute, history: true},
		{id: "l1", chatJID: lidJID, sender: lidJID, lid: lidJID, push: "Lia", at: 5 * time.Minute},
		{id: "g1", chatJID: groupJID, sender: pj, phone: p, push: "Zed no grupo", at: 6 * time.Minute},
		{id: "g2", chatJID: groupJID, sender: "5521977776666@s.whatsapp.net", phone: "5521977776666", push: "Ana", at: 7 * time.Minute},
		{id: "gr", chatJID: groupJID, sender: "5521977776666@s.whatsapp.net", phone: "5521977776666", kind: "reaction", at: 8 * time.Minute},
		{id: "b1", chatJID: "status@broadcast", sender: pj, phone: p, at: 9 * time.Minute},
	} {
		seedChatMsg(t, db, m, base, c)
	}
	exec(t, db, `UPDATE whatsapp_messages SET target_id = 'g2' WHERE mentorado_id = $1 AND wa_message_id = 'gr'`, m)
	exec(t, db, `UPDATE whatsapp_messages SET phone = NULL WHERE mentorado_id = $1 AND wa_message_id = 'b1'`, m)
	exec(t, db, `INSERT INTO whatsapp_groups (mentorado_id, jid, subject, participants) VALUES ($1, $2, 'Turma 7',
	'[{"jid":"5511988887777@s.whatsapp.net","phone":"5511988887777","admin":true},{"jid":"5521977776666@s.whatsapp.net","phone":"5521977776666"},{"jid":"222@lid","lid":"222@lid"}]')`, m, groupJID)
	exec(t, db, `INSERT INTO whatsapp_contacts (mentorado_id, jid, phone, name) VALUES ($1, '5521977776666@s.whatsapp.net', '5521977776666', 'Ana da agenda')`, m)
	exec(t, db, `INSERT INTO leads (mentorado_id, lid, name) VALUES ($1, $2, 'Lia (LID)')`, m, lidJID)
	exec(t, db, `INSERT INTO leads (mentorado_id, phone, lid, name) VALUES ($1, '5511988887777', '111@lid', '')`, m)
}

func TestChatQueries(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	other, _ := db.Mentorados().Create(ctx, "other", nil)
	seedChats(t, db, m)
	q := db.Messages()

	all, err := q.Chats(ctx, m, store.ChatsAll, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Chat != groupJID || all[1].Chat != lidJID || all[2].Chat != "5511988887777@s.whatsapp.net" {
		t.Fatalf("chats %+v", all)
	}
	g, l, d := all[0], all[1], all[2]
	if g.Name != "Turma 7" || !g.Group || g.Participants != 3 || g.Unread != 2 || g.LeadID != nil || g.Phone != "" || g.Last.WAMessageID != "g2" {
		t.Fatalf("group chat %+v", g)
	}
	if l.Name != "Lia (LID)" || l.LeadID == nil || l.Phone != "" || l.LID != lidJID || l.Unread != 1 || l.Group {
		t.Fatalf("lid chat %+v", l)
	}
	// The phone chat: d4 came in on the LID and belongs to it; d2 is read.
	if d.Last.WAMessageID != "d4" || !d.Last.History || d.Unread != 2 || d.LeadID == nil || d.Name != "Zed" ||
		d.Phone != "5511988887777" || d.LID != "111@lid" {
		t.Fatalf("phone chat %+v", d)
	}

	// Filters and pages.
	groups, _ := q.Chats(ctx, m, store.ChatsGroup, nil, 10)
	direct, _ := q.Chats(ctx, m, store.ChatsDirect, nil, 10)
	phones, _ := q.Chats(ctx, m, store.ChatsPhone, nil, 10)
	if len(groups) != 1 || len(direct) != 2 || len(phones) != 1 || phones[0].Chat != d.Chat {
		t.Fatalf("filters: %d groups, %d direct, %d phone", len(groups), len(direct), len(phones))
	}
	page, _ := q.Chats(ctx, m, store.ChatsAll, nil, 2)
	rest, _ := q.Chats(ctx, m, store.ChatsAll, &store.Keyset{SentAt: page[1].Last.SentAt, ID: page[1].Last.ID}, 2)
	if len(page) != 2 || len(rest) != 1 || rest[0].Chat != d.Chat {
		t.Fatalf("pages %+v / %+v", page, rest)
	}
	if _, err := q.Chats(ctx, m, "bogus", nil, 2); err == nil {
		t.Fatal("unknown filter accepted")
	}

	// The old conversations: the phone chat only, without the group.
	convs, _ := q.Conversations(ctx, m, nil, 10)
	if len(convs) != 1 || convs[0].Last.WAMessageID != "d4" || convs[0].Unread != 2 {
		t.Fatalf("conversations %+v", convs)
	}
	thread, _ := q.Conversation(ctx, m, "5511988887777", nil, 10)
	if len(thread) != 4 || thread[0].WAMessageID != "d4" || thread[3].WAMessageID != "d1" {
		t.Fatalf("phone thread %+v", thread)
	}
	un, _ := q.Unread(ctx, m, "5511988887777", 10)
	if len(un) != 2 || un[0].WAMessageID != "d1" || un[1].WAMessageID != "d4" || un[1].ChatJID != "111@lid" {
		t.Fatalf("unread %+v", un)
	}

	// The group's thread: senders named, the reaction not listed.
	gt, err := q.ChatMessages(ctx, m, groupJID, nil, 10)
	if err != nil || len(gt) != 2 || gt[0].SenderName != "Ana da agenda" || gt[1].SenderName != "Zed no grupo" || gt[0].Chat != groupJID {
		t.Fatalf("group thread %+v %v", gt, err)
	}
	older, _ := q.ChatMessages(ctx, m, groupJID, &store.Keyset{SentAt: gt[0].SentAt, ID: gt[0].ID}, 10)
	if len(older) != 1 || older[0].WAMessageID != "g1" {
		t.Fatalf("group thread page %+v", older)
	}
	gu, _ := q.ChatUnread(ctx, m, groupJID, 10)
	if len(gu) != 2 || gu[0].SenderJID != "5511988887777@s.whatsapp.net" || gu[0].ChatJID != groupJID {
		t.Fatalf("group unread %+v", gu)
	}

	// One chat, its participants; a group without messages; unknown chats.
	one, err := q.Chat(ctx, m, groupJID)
	if err != nil || one.Name != "Turma 7" || one.Last == nil || one.Unread != 2 {
		t.Fatalf("chat %+v %v", one, err)
	}
	ps, err := q.Participants(ctx, m, groupJID)
	if err != nil || len(ps) != 3 || !ps[0].Admin || ps[0].Phone != "5511988887777" || ps[1].Name != "Ana da agenda" ||
		ps[2].LID != "222@lid" || ps[2].Name != "" {
		t.Fatalf("participants %+v %v", ps, err)
	}
	exec(t, db, `INSERT INTO whatsapp_groups (mentorado_id, jid, subject, "left") VALUES ($1, '1-2@g.us', 'Quiet', true)`, m)
	quiet, err := q.Chat(ctx, m, "1-2@g.us")
	if err != nil || quiet.Last != nil || quiet.Name != "Quiet" || !quiet.Left || !quiet.Group {
		t.Fatalf("quiet group %+v %v", quiet, err)
	}
	for _, c := range []struct {
		m    int64
		chat string
	}{{m, "5599@s.whatsapp.net"}, {other, groupJID}, {other, lidJID}, {m, "status@broadcast"}} {
		if _, err := q.Chat(ctx, c.m, c.chat); c.chat != "status@broadcast" && !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("chat %d %s: %v", c.m, c.chat, err)
		}
	}
	if rs, _ := q.Chats(ctx, other, store.ChatsAll, nil, 10); len(rs) != 0 {
		t.Fatalf("other tenant sees %+v", rs)
	}
	if ps, _ := q.Participants(ctx, other, groupJID); len(ps) != 0 {
		t.Fatalf("other tenant's participants %+v", ps)
	}
	if rs, _ := q.ChatMessages(ctx, other, groupJID, nil, 10); len(rs) != 0 {
		t.Fatalf("other tenant's thread %+v", rs)
	}
}

func TestChatSettings(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	q := db.Mentorados()
	s, err := q.Settings(ctx, m)
	if err != nil || s != (store.Settings{GroupLeads: false, HistoryLeads: "recent", HistoryLeadDays: 30}) {
		t.Fatalf("defaults %+v %v", s, err)
	}
	all := "all"
	s, err = q.UpdateSettings(ctx, m, store.SettingsPatch{HistoryLeads: &all})
	if err != nil || s != (store.Settings{HistoryLeads: "all", HistoryLeadDays: 30}) {
		t.Fatalf("patch %+v %v", s, err)
	}
	yes, days := true, int32(7)
	s, _ = q.UpdateSettings(ctx, m, store.SettingsPatch{GroupLeads: &yes, HistoryLeadDays: &days})
	if s != (store.Settings{GroupLeads: true, HistoryLeads: "all", HistoryLeadDays: 7}) {
		t.Fatalf("patch 2 %+v", s)
	}
	bad := int32(0)
	if _, err := q.UpdateSettings(ctx, m, store.SettingsPatch{HistoryLeadDays: &bad}); err == nil {
		t.Fatal("0 days stored")
	}
	if _, err := q.UpdateSettings(ctx, m+1000, store.SettingsPatch{GroupLeads: &yes}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown mentorado: %v", err)
	}
	if _, err := q.Settings(ctx, m+1000); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown mentorado: %v", err)
	}
}
