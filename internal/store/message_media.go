package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Reads of whatsapp_messages for media, reactions, actions and read state
// (issue #11), next to messages.go's listings.

// ByWAID returns mentorado m's message with WhatsApp id waID (not an
// edit, revoke or reaction row); ErrNotFound when m has none.
func (q MessageQueries) ByWAID(ctx context.Context, m int64, waID string) (MessageRow, error) {
	var r MessageRow
	dest, finish := messageRowDest(&r)
	err := q.q.QueryRow(ctx, `SELECT `+messageRowColumns+` FROM whatsapp_messages m
WHERE m.mentorado_id = $1 AND m.wa_message_id = $2 AND m.kind NOT IN `+actionKinds, m, waID).Scan(dest...)
	if errors.Is(err, pgx.ErrNoRows) {
		return MessageRow{}, ErrNotFound
	}
	if err != nil {
		return MessageRow{}, fmt.Errorf("query message: %w", err)
	}
	finish()
	return r, nil
}

// Thumbnail returns the inline JPEG preview of mentorado m's message
// waID; ErrNotFound when the message does not exist, has none or is
// revoked.
func (q MessageQueries) Thumbnail(ctx context.Context, m int64, waID string) ([]byte, error) {
	var b []byte
	err := q.q.QueryRow(ctx, `SELECT media_thumbnail FROM whatsapp_messages
WHERE mentorado_id = $1 AND wa_message_id = $2 AND kind NOT IN `+actionKinds+` AND NOT revoked AND media_thumbnail IS NOT NULL`,
		m, waID).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("query thumbnail: %w", err)
	}
	return b, nil
}

// Reaction is one emoji on a message: how many people's latest reaction
// it is, and whether one of them is the mentorado.
type Reaction struct {
	Emoji string
	Count int64
	Mine  bool
}

// Reactions aggregates the reactions of mentorado m on the messages ids:
// the latest reaction per sender (by WhatsApp timestamp, then id) counts,
// an empty one (removed) does not. The mentorado's own reactions (sent
// from any of its devices) are one sender. Most common emoji first.
func (q MessageQueries) Reactions(ctx context.Context, m int64, ids []string) (map[string][]Reaction, error) {
	out := map[string][]Reaction{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := q.q.Query(ctx, `
SELECT target_id, emoji, count(*), bool_or(mine) FROM (
	SELECT DISTINCT ON (x.target_id, CASE WHEN x.direction = 'out' THEN '' ELSE x.sender_jid END)
		x.target_id, x.body AS emoji, x.direction = 'out' AS mine
	FROM whatsapp_messages x
	WHERE x.mentorado_id = $1 AND x.target_id = ANY($2::text[]) AND x.kind = 'reaction'
	ORDER BY x.target_id, CASE WHEN x.direction = 'out' THEN '' ELSE x.sender_jid END, x.sent_at DESC, x.wa_message_id DESC
) r
WHERE emoji <> ''
GROUP BY target_id, emoji
ORDER BY target_id, count(*) DESC, emoji`, m, ids)
	if err != nil {
		return nil, fmt.Errorf("query reactions: %w", err)
	}
	var (
		target string
		r      Reaction
	)
	if _, err := pgx.ForEachRow(rows, []any{&target, &r.Emoji, &r.Count, &r.Mine}, func() error {
		out[target] = append(out[target], r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("query reactions: %w", err)
	}
	return out, nil
}

// Unread lists mentorado m's inbound messages in its direct chat with
// phone that are not read yet, oldest first, at most n (ChatUnread).
func (q MessageQueries) Unread(ctx context.Context, m int64, phone string, n int) ([]UnreadRow, error) {
	return q.ChatUnread(ctx, m, PhoneChat(phone), n)
}

// Settled returns which of waIDs mentorado m already has stored as
// messages whose file is not still awaited (no media, or media stored or
// failed): what the provider gateway skips when a provider delivers a
// webhook again after JetStream's duplicate window (issue #16). A media
// message still pending is not settled, so a retry can bring its file.
func (q MessageQueries) Settled(ctx context.Context, m int64, waIDs []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(waIDs) == 0 {
		return out, nil
	}
	rows, err := q.q.Query(ctx, `SELECT wa_message_id FROM whatsapp_messages
WHERE mentorado_id = $1 AND wa_message_id = ANY($2) AND coalesce(media_state, '') <> 'pending'`, m, waIDs)
	if err != nil {
		return nil, fmt.Errorf("store: settled messages: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("store: settled messages: %w", err)
	}
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}
