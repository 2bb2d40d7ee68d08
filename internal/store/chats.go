package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reads of chats (issue #12): whatsapp_messages grouped by their generated
// chat column (the group, else the phone JID, else the LID), with the
// names, leads and group snapshots that describe them. Every listing is
// keyset-paginated on whatsapp_messages_chat (mentorado_id, chat, sent_at
// DESC, id DESC).

// ChatFilter selects the chats a listing returns.
type ChatFilter string

// Chat filters.
const (
	ChatsAll    ChatFilter = ""       // direct and group chats
	ChatsDirect ChatFilter = "direct" // phone and LID chats
	ChatsGroup  ChatFilter = "group"  // groups
	// ChatsPhone are the direct chats addressed by phone: the old
	// one-row-per-phone conversations listing, without groups and LIDs.
	ChatsPhone ChatFilter = "phone"
)

// where is the SQL condition on the chat column col that f selects.
func (f ChatFilter) where(col string) (string, error) {
	var (
		group  = col + ` LIKE '%@g.us'`
		phone  = col + ` LIKE '%@s.whatsapp.net'`
		lid    = col + ` LIKE '%@lid'`
		direct = `(` + phone + ` OR ` + lid + `)`
	)
	switch f {
	case ChatsAll:
		// Broadcast lists and status updates keep their chat_jid as chat:
		// they are no chat a caller can open.
		return `(` + group + ` OR ` + phone + ` OR ` + lid + `)`, nil
	case ChatsDirect:
		return direct, nil
	case ChatsGroup:
		return group, nil
	case ChatsPhone:
		return phone, nil
	}
	return "", fmt.Errorf("store: unknown chat filter %q", f)
}

// ChatRow is one chat: its last message, how many inbound messages are
// not yet read (revoked messages and actions do not count), and what
// names it.
type ChatRow struct {
	Chat string
	// Last is the newest message (not an edit, revoke or reaction); nil
	// for a group known only from its group event.
	Last   *MessageRow
	Unread int64
	// LeadID and Name of a direct chat: its lead (by phone, or by LID
	// while the phone is unknown) and the best name known, lead name
	// first, then the address book, push name, business name and the
	// newest push name the person wrote with; "" when none. A group's
	// Name is its subject.
	LeadID *int64
	Name   string
	// Phone and LID of a direct chat's person, "" when unknown.
	Phone, LID string
	// Group: the chat has a group snapshot (whatsapp_groups), with
	// Participants members; Left when the mentorado's number left it.
	Group        bool
	Participants int
	Left         bool
}

// chatSelect describes each chat of page (rows with id and chat, in
// order), newest first.
const chatSelect = `
SELECT ` + messageRowColumns + `,
	(SELECT count(*) FROM whatsapp_messages u
	 WHERE u.mentorado_id = $1 AND u.chat = m.chat AND u.direction = 'in' AND u.status_rank < 3
	   AND NOT u.revoked AND u.kind NOT IN ` + actionKinds + `),
	coalesce(lp.id, ll.id),
	CASE WHEN m.chat LIKE '%@g.us' THEN coalesce(g.subject, '') ELSE
	coalesce(nullif(coalesce(lp.name, ll.name), ''), nullif(c.name, ''), nullif(c.push_name, ''), nullif(c.business_name, ''),
		(SELECT p.push_name FROM whatsapp_messages p
		 WHERE p.mentorado_id = $1 AND p.chat = m.chat AND p.direction = 'in' AND p.push_name <> ''
		 ORDER BY p.sent_at DESC, p.id DESC LIMIT 1), '') END,
	CASE WHEN m.chat LIKE '%@g.us' THEN '' ELSE coalesce(m.phone, '') END,
	CASE WHEN m.chat LIKE '%@g.us' THEN '' ELSE coalesce(m.lid, lp.lid, ll.lid, '') END,
	g.jid IS NOT NULL, coalesce(jsonb_array_length(g.participants), 0), coalesce(g."left", false),
	CASE WHEN m.direction = 'in' THEN
		coalesce(nullif(sc.name, ''), nullif(m.push_name, ''), nullif(sc.push_name, ''), nullif(sc.business_name, ''), '')
	ELSE '' END
FROM page
JOIN whatsapp_messages m ON m.id = page.id
LEFT JOIN whatsapp_groups g ON g.mentorado_id = $1 AND g.jid = m.chat
LEFT JOIN leads lp ON lp.mentorado_id = $1 AND m.chat LIKE '%@s.whatsapp.net' AND lp.phone = m.phone
LEFT JOIN leads ll ON ll.mentorado_id = $1 AND m.chat LIKE '%@lid' AND ll.phone IS NULL AND ll.lid = m.lid
LEFT JOIN LATERAL (
	SELECT name, push_name, business_name FROM whatsapp_contacts c
	WHERE c.mentorado_id = $1 AND m.chat NOT LIKE '%@g.us'
	  AND (c.phone = m.phone OR (m.phone IS NULL AND c.lid = m.lid))
	ORDER BY c.updated_at DESC LIMIT 1
) c ON true
LEFT JOIN LATERAL (
	-- Who wrote a group's last message (as in the thread, chatMessagesSQL).
	SELECT name, push_name, business_name FROM whatsapp_contacts c
	WHERE c.mentorado_id = $1 AND m.chat LIKE '%@g.us' AND m.direction = 'in' AND (c.jid = m.sender_jid OR c.phone = m.phone)
	ORDER BY (c.name <> '') DESC, c.updated_at DESC LIMIT 1
) sc ON true
ORDER BY m.sent_at DESC, m.id DESC`

func scanChats(rows pgx.Rows) ([]ChatRow, error) {
	out := []ChatRow{}
	var (
		c    ChatRow
		last MessageRow
	)
	dest, finish := messageRowDest(&last, &c.Unread, &c.LeadID, &c.Name, &c.Phone, &c.LID, &c.Group, &c.Participants, &c.Left, &last.SenderName)
	if _, err := pgx.ForEachRow(rows, dest, func() error {
		finish()
		l := last
		c.Chat, c.Last = l.Chat, &l
		out = append(out, c)
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// chatsSQL lists the page of chats that where selects ($1 mentorado,
// $2/$3 keyset, $4 limit).
func chatsSQL(where string) string {
	// The chats are walked on whatsapp_messages_chat one distinct chat at a
	// time (a loose index scan: one index probe per chat, not a sort of
	// every message of the tenant), then each chat's newest message that
	// is not an action is one more probe.
	return `
WITH RECURSIVE chats AS (
	(SELECT chat FROM whatsapp_messages WHERE mentorado_id = $1 ORDER BY chat LIMIT 1)
	UNION ALL
	SELECT (SELECT n.chat FROM whatsapp_messages n WHERE n.mentorado_id = $1 AND n.chat > c.chat ORDER BY n.chat LIMIT 1)
	FROM chats c WHERE c.chat IS NOT NULL
), last AS (
	SELECT l.id, l.sent_at
	FROM chats
	CROSS JOIN LATERAL (
		SELECT id, sent_at FROM whatsapp_messages x
		WHERE x.mentorado_id = $1 AND x.chat = chats.chat AND x.kind NOT IN ` + actionKinds + `
		ORDER BY x.sent_at DESC, x.id DESC
		LIMIT 1
	) l
	WHERE chats.chat IS NOT NULL AND ` + where + `
), page AS (
	SELECT id FROM last
	WHERE $2::timestamptz IS NULL OR (sent_at, id) < ($2::timestamptz, $3::bigint)
	ORDER BY sent_at DESC, id DESC
	LIMIT $4
)` + chatSelect
}

// Chats lists at most n chats of mentorado m that filter selects, by last
// message, newest first, after the keyset position after (nil: from the
// newest). The last message of each chat is found on
// whatsapp_messages_chat; names, leads and counts are read for the page
// only.
func (q MessageQueries) Chats(ctx context.Context, m int64, filter ChatFilter, after *Keyset, n int) ([]ChatRow, error) {
	where, err := filter.where("chats.chat")
	if err != nil {
		return nil, err
	}
	curT, curI := keysetArgs(after)
	rows, err := q.q.Query(ctx, chatsSQL(where), m, curT, curI, n)
	if err != nil {
		return nil, fmt.Errorf("query chats: %w", err)
	}
	out, err := scanChats(rows)
	if err != nil {
		return nil, fmt.Errorf("query chats: %w", err)
	}
	return out, nil
}

// Chat returns mentorado m's chat (a chat JID as whatsapp_messages.chat
// holds it): the chat of its newest message, or a group known only from
// its group event (Last nil). ErrNotFound when m has neither.
func (q MessageQueries) Chat(ctx context.Context, m int64, chat string) (ChatRow, error) {
	rows, err := q.q.Query(ctx, `
WITH page AS (
	SELECT id FROM whatsapp_messages
	WHERE mentorado_id = $1 AND chat = $2 AND kind NOT IN `+actionKinds+`
	ORDER BY sent_at DESC, id DESC
	LIMIT 1
)`+chatSelect, m, chat)
	if err != nil {
		return ChatRow{}, fmt.Errorf("query chat: %w", err)
	}
	out, err := scanChats(rows)
	if err != nil {
		return ChatRow{}, fmt.Errorf("query chat: %w", err)
	}
	if len(out) == 1 {
		return out[0], nil
	}
	c := ChatRow{Chat: chat, Group: true}
	err = q.q.QueryRow(ctx, `SELECT subject, jsonb_array_length(participants), "left" FROM whatsapp_groups
WHERE mentorado_id = $1 AND jid = $2`, m, chat).Scan(&c.Name, &c.Participants, &c.Left)
	if errors.Is(err, pgx.ErrNoRows) {
		return ChatRow{}, ErrNotFound
	}
	if err != nil {
		return ChatRow{}, fmt.Errorf("query group: %w", err)
	}
	return c, nil
}

// ParticipantRow is one member of a group as the group event listed it,
// with the best name the address book or push names give it ("" none).
type ParticipantRow struct {
	JID, Phone, LID string
	Admin           bool
	Name            string
}

// Participants lists the members of mentorado m's group chat in the
// order of its latest group event (none when the group is unknown).
func (q MessageQueries) Participants(ctx context.Context, m int64, chat string) ([]ParticipantRow, error) {
	rows, err := q.q.Query(ctx, `
SELECT x.p::text, coalesce(nullif(c.name, ''), nullif(c.push_name, ''), nullif(c.business_name, ''), '')
FROM whatsapp_groups g
CROSS JOIN LATERAL jsonb_array_elements(g.participants) WITH ORDINALITY AS x(p, i)
LEFT JOIN LATERAL (
	SELECT name, push_name, business_name FROM whatsapp_contacts c
	WHERE c.mentorado_id = $1
	  AND (c.jid = x.p->>'jid' OR c.phone = x.p->>'phone' OR c.lid = x.p->>'lid')
	ORDER BY (c.name <> '') DESC, c.updated_at DESC LIMIT 1
) c ON true
WHERE g.mentorado_id = $1 AND g.jid = $2
ORDER BY x.i`, m, chat)
	if err != nil {
		return nil, fmt.Errorf("query participants: %w", err)
	}
	out := []ParticipantRow{}
	var (
		raw  string
		name string
	)
	if _, err := pgx.ForEachRow(rows, []any{&raw, &name}, func() error {
		var p struct {
			JID   string `json:"jid"`
			Phone string `json:"phone"`
			LID   string `json:"lid"`
			Admin bool   `json:"admin"`
		}
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return fmt.Errorf("participant %s: %w", raw, err)
		}
		out = append(out, ParticipantRow{JID: p.JID, Phone: p.Phone, LID: p.LID, Admin: p.Admin, Name: name})
		return nil
	}); err != nil {
		return nil, fmt.Errorf("query participants: %w", err)
	}
	return out, nil
}

// chatMessagesSQL is ChatMessages' query ($1 mentorado, $2 chat, $3/$4
// keyset, $5 limit).
const chatMessagesSQL = `
WITH page AS (
	SELECT id FROM whatsapp_messages
	WHERE mentorado_id = $1 AND chat = $2 AND kind NOT IN ` + actionKinds + `
		AND ($3::timestamptz IS NULL OR (sent_at, id) < ($3::timestamptz, $4::bigint))
	ORDER BY sent_at DESC, id DESC
	LIMIT $5
)
SELECT ` + messageRowColumns + `,
	CASE WHEN m.direction = 'in' THEN
		coalesce(nullif(c.name, ''), nullif(m.push_name, ''), nullif(c.push_name, ''), nullif(c.business_name, ''), '')
	ELSE '' END
FROM page
JOIN whatsapp_messages m ON m.id = page.id
LEFT JOIN LATERAL (
	SELECT name, push_name, business_name FROM whatsapp_contacts c
	WHERE c.mentorado_id = $1 AND m.direction = 'in' AND (c.jid = m.sender_jid OR c.phone = m.phone)
	ORDER BY (c.name <> '') DESC, c.updated_at DESC LIMIT 1
) c ON true
ORDER BY m.sent_at DESC, m.id DESC`

// ChatMessages lists at most n messages of mentorado m's chat, newest
// first, after the keyset position after (nil: from the newest); edits,
// revokes and reactions are not listed. Inbound messages carry the
// sender's best name (address book, then the push name they wrote with).
func (q MessageQueries) ChatMessages(ctx context.Context, m int64, chat string, after *Keyset, n int) ([]MessageRow, error) {
	curT, curI := keysetArgs(after)
	rows, err := q.q.Query(ctx, chatMessagesSQL, m, chat, curT, curI, n)
	if err != nil {
		return nil, fmt.Errorf("query messages: %w", err)
	}
	out := []MessageRow{}
	var r MessageRow
	dest, finish := messageRowDest(&r, &r.SenderName)
	if _, err := pgx.ForEachRow(rows, dest, func() error {
		finish()
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("query messages: %w", err)
	}
	return out, nil
}

// UnreadRow is an inbound message not read yet: what a read receipt names.
type UnreadRow struct {
	WAMessageID, ChatJID, SenderJID string
	SentAt                          time.Time
}

// ChatUnread lists mentorado m's inbound messages in chat that are not
// read yet (revoked ones and edit/revoke/reaction rows excluded), oldest
// first, at most n. Their ChatJID is the chat WhatsApp knows them by,
// which for a direct chat may be the LID while chat is the phone JID.
func (q MessageQueries) ChatUnread(ctx context.Context, m int64, chat string, n int) ([]UnreadRow, error) {
	rows, err := q.q.Query(ctx, `SELECT wa_message_id, chat_jid, sender_jid, sent_at FROM whatsapp_messages
WHERE mentorado_id = $1 AND chat = $2 AND direction = 'in' AND status_rank < 3 AND NOT revoked AND kind NOT IN `+actionKinds+`
ORDER BY sent_at, id
LIMIT $3`, m, chat, n)
	if err != nil {
		return nil, fmt.Errorf("query unread: %w", err)
	}
	out := []UnreadRow{}
	var r UnreadRow
	if _, err := pgx.ForEachRow(rows, []any{&r.WAMessageID, &r.ChatJID, &r.SenderJID, &r.SentAt}, func() error {
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("query unread: %w", err)
	}
	return out, nil
}

// PhoneChat is the chat of a phone number (E.164 digits): its phone JID.
func PhoneChat(phone string) string { return phone + "@s.whatsapp.net" }
