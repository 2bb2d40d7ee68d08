package store

import (
	"context"
	"fmt"
	"time"
)

// MessageQueries are the API's reads and writes of whatsapp_messages (the
// persister writes them with the statements of persist.go). The listings
// are keyset-paginated on the index whatsapp_messages_chat (chats.go) and
// stay on pgx.
type MessageQueries struct{ q Querier }

// Messages returns the API's queries on whatsapp_messages.
func (db *DB) Messages() MessageQueries { return MessageQueries{q: db.Pool} }

// Keyset is a position in a newest-first listing: the (sent_at, row id) of
// the last row of the previous page.
type Keyset struct {
	SentAt time.Time
	ID     int64
}

// MessageRow is a message as the API lists it; nullable columns read as "".
type MessageRow struct {
	ID                   int64 // row id (keyset cursor)
	WAMessageID          string
	Phone, LID, PushName string
	Direction, Kind      string
	Body, Caption        string
	ReplyToID, TargetID  string
	Status               string
	Edited, Revoked      bool
	LeadID               *int64
	SentAt               time.Time
	ChatJID, SenderJID   string
	Media                *MediaRow // nil for messages without a file
	// Chat is the thread the message is in (whatsapp_messages.chat: the
	// group, else the phone JID, else the LID); History marks a message
	// imported from the phone's history sync.
	Chat    string
	History bool
	// SenderName is the best name of who wrote an inbound message
	// (address book, then push name); only ChatMessages fills it.
	SenderName string
	// Outbound messages sent through zapbus (issue #14): why one failed or
	// expired, the client_id of a queued send, the campaign that sent it
	// ("" and 0 when not set).
	StatusReason string
	ClientID     string
	CampaignID   int64
}

// MediaRow is the file of a media message as the API shows it; numbers
// read as 0 when unknown.
type MediaRow struct {
	ID, MIME, FileName     string
	Size                   int64
	Seconds, Width, Height int32
	Round, HasThumbnail    bool
	State, Error           string // pending | stored | failed; why it failed
}

// ConversationRow is one phone conversation: its last message, the lead
// of its phone, the best name known for it ("" none) and how many inbound
// messages are not yet read (revoked messages do not count).
type ConversationRow struct {
	Last   MessageRow
	Unread int64
	LeadID *int64
	Name   string
}

// actionKinds are rows that act on another message (the persister stores
// them and applies their effect to the target: edited text, revoked flag).
// Listings show the target, not the actions.
const actionKinds = `('edit', 'revoke', 'reaction')`

const messageRowColumns = `m.id, m.wa_message_id, coalesce(m.phone, ''), coalesce(m.lid, ''), m.push_name, m.direction, m.kind,
	m.body, m.caption, coalesce(m.reply_to_id, ''), coalesce(m.target_id, ''), m.status, m.edited, m.revoked, m.lead_id, m.sent_at,
	m.chat_jid, m.sender_jid, m.media_state, coalesce(m.media_id, ''), coalesce(m.media_mime, ''), coalesce(m.media_file_name, ''),
	coalesce(m.media_size, 0), coalesce(m.media_seconds, 0), coalesce(m.media_width, 0), coalesce(m.media_height, 0), m.media_round,
	m.media_thumbnail IS NOT NULL, coalesce(m.media_error, ''), m.chat, m.history, coalesce(m.status_reason, ''),
	coalesce((SELECT o.client_id FROM outbox o WHERE o.mentorado_id = m.mentorado_id AND o.wa_message_id = m.wa_message_id), ''),
	coalesce((SELECT cr.campaign_id FROM campaign_recipients cr WHERE cr.mentorado_id = m.mentorado_id AND cr.wa_message_id = m.wa_message_id), 0)`

// rowScan holds a MessageRow being scanned; done finishes it.
type rowScan struct {
	r          *MessageRow
	mediaState *string
	md         MediaRow
}

// messageRowDest are the scan targets of messageRowColumns, then extra;
// call the returned finish after each scanned row.
func messageRowDest(r *MessageRow, extra ...any) ([]any, func()) {
	sc := &rowScan{r: r}
	dest := append([]any{&r.ID, &r.WAMessageID, &r.Phone, &r.LID, &r.PushName, &r.Direction, &r.Kind,
		&r.Body, &r.Caption, &r.ReplyToID, &r.TargetID, &r.Status, &r.Edited, &r.Revoked, &r.LeadID, &r.SentAt,
		&r.ChatJID, &r.SenderJID, &sc.mediaState, &sc.md.ID, &sc.md.MIME, &sc.md.FileName, &sc.md.Size, &sc.md.Seconds,
		&sc.md.Width, &sc.md.Height, &sc.md.Round, &sc.md.HasThumbnail, &sc.md.Error, &r.Chat, &r.History,
		&r.StatusReason, &r.ClientID, &r.CampaignID}, extra...)
	return dest, func() {
		r.Media = nil
		if sc.mediaState != nil {
			md := sc.md
			md.State = *sc.mediaState
			r.Media = &md
		}
	}
}

func keysetArgs(after *Keyset) (*time.Time, int64) {
	if after == nil {
		return nil, 0
	}
	return &after.SentAt, after.ID
}

// Conversations lists at most n conversations of mentorado m (one per
// phone chat: groups and LID-only chats are not listed) by last message,
// newest first, after the keyset position after (nil: from the newest).
func (q MessageQueries) Conversations(ctx context.Context, m int64, after *Keyset, n int) ([]ConversationRow, error) {
	chats, err := q.Chats(ctx, m, ChatsPhone, after, n)
	if err != nil {
		return nil, err
	}
	out := make([]ConversationRow, len(chats))
	for i, c := range chats {
		out[i] = ConversationRow{Last: *c.Last, Unread: c.Unread, LeadID: c.LeadID, Name: c.Name}
	}
	return out, nil
}

// Conversation lists at most n messages of mentorado m's chat with phone
// (its direct chat, not the groups it writes in), newest first, after the
// keyset position after (nil: from the newest); edits, revokes and
// reactions are not listed.
func (q MessageQueries) Conversation(ctx context.Context, m int64, phone string, after *Keyset, n int) ([]MessageRow, error) {
	return q.ChatMessages(ctx, m, PhoneChat(phone), after, n)
}

// LinkOrphans links mentorado m's messages without a lead to the lead of
// their person and returns how many it linked. A message's person is its
// phone or, for a LID-only message (phone NULL), the phone its LID maps to
// in whatsapp_lid_phones; its lead is that phone's lead, else the lead of
// the phone's Brazilian 9th-digit variant (5511912345678 and 551112345678
// are one mobile), else, for a LID-only message, the lead carrying its LID
// (a phone lead first).
// Group messages link only with the mentorado's group_leads on, as the
// persister links them (decision 0012). Creating a lead through the API
// adopts its orphans by the same rule (LeadQueries.Create).
func (q MessageQueries) LinkOrphans(ctx context.Context, m int64) (int64, error) {
	tag, err := q.q.Exec(ctx, sqlLinkOrphans, m)
	if err != nil {
		return 0, fmt.Errorf("link orphans: %w", err)
	}
	return tag.RowsAffected(), nil
}

var sqlLinkOrphans = `WITH o AS (
	SELECT t.id, coalesce(t.phone, lp.phone) AS p, CASE WHEN t.phone IS NULL THEN t.lid END AS lid
	FROM whatsapp_messages t
	LEFT JOIN whatsapp_lid_phones lp ON t.phone IS NULL AND lp.mentorado_id = t.mentorado_id AND lp.lid = t.lid
	WHERE t.mentorado_id = $1 AND t.lead_id IS NULL AND (t.phone IS NOT NULL OR t.lid IS NOT NULL) AND ` + linkable("t") + `
),
x AS (
	SELECT o.id, coalesce(
		(SELECT l.id FROM leads l WHERE l.mentorado_id = $1 AND l.phone = o.p),
		(SELECT l.id FROM leads l WHERE l.mentorado_id = $1 AND l.phone = ` + brazilVariant("o.p") + `),
		(SELECT l.id FROM leads l WHERE l.mentorado_id = $1 AND l.lid = o.lid ORDER BY l.phone IS NULL, l.id LIMIT 1)
	) AS lead
	FROM o
)
UPDATE whatsapp_messages t SET lead_id = x.lead, updated_at = now()
FROM x WHERE t.id = x.id AND x.lead IS NOT NULL`
