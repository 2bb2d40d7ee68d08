package web

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
)

// apiMessage is a message as the API shows it. ID is the WhatsApp message
// id, unique per mentorado and known as soon as the connector sent it.
type apiMessage struct {
	ID        string    `json:"id"`
	Phone     string    `json:"phone,omitempty"`
	LID       string    `json:"lid,omitempty"`
	PushName  string    `json:"push_name,omitempty"`
	Direction string    `json:"direction"`
	Kind      string    `json:"kind"`
	Text      string    `json:"text"`
	Caption   string    `json:"caption,omitempty"`
	ReplyToID string    `json:"reply_to_id,omitempty"`
	TargetID  string    `json:"target_id,omitempty"`
	Status    string    `json:"status"`
	Edited    bool      `json:"edited,omitempty"`
	Revoked   bool      `json:"revoked,omitempty"`
	LeadID    *int64    `json:"lead_id,omitempty"`
	SentAt    time.Time `json:"sent_at"`
}

func fromEventMessage(m *event.Message) apiMessage {
	return apiMessage{
		ID: m.WAID, Phone: m.Phone, LID: m.LID, PushName: m.PushName, Direction: string(m.Direction),
		Kind: string(m.Kind), Text: m.Text, Caption: m.Caption, ReplyToID: m.ReplyToID, TargetID: m.TargetID,
		Status: string(m.Status), SentAt: m.Timestamp.UTC(),
	}
}

type sendRequest struct {
	Phone    string `json:"phone"`
	Text     string `json:"text"`
	ClientID string `json:"client_id,omitempty"`
}

// handleSend validates, then asks the owning connector to send; the reply
// carries the message as published (status sent).
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	var req sendRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := phone.Normalize(req.Phone)
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, event.CodeInvalidPhone, "phone is not a valid phone number"))
		return
	}
	// The connector checks the same rules (event.SendRequest.Validate);
	// checking here answers without a round trip, before anything is sent.
	cmd := event.SendRequest{ClientID: req.ClientID, Phone: p, Text: req.Text}
	if ce := cmd.Validate(); ce != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, ce.Code, "%s", ce.Message))
		return
	}
	reply, err := s.command(r.Context(), m, event.VerbSend, cmd)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if reply.Message == nil {
		s.writeError(w, r, fmt.Errorf("send reply without message"))
		return
	}
	writeJSON(w, http.StatusCreated, fromEventMessage(reply.Message))
}

// cursor is a keyset position: (sent_at, row id), newest first.
type cursor struct {
	T time.Time `json:"t"`
	I int64     `json:"i"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func parseCursor(s string) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	var c cursor
	if err != nil || len(b) > 256 || json.Unmarshal(b, &c) != nil || c.T.IsZero() || c.I <= 0 {
		return nil, errorf(http.StatusBadRequest, codeBadRequest, "invalid cursor")
	}
	return &c, nil
}

func parseLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 50, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 200 {
		return 0, errorf(http.StatusBadRequest, codeBadRequest, "limit must be 1 to 200")
	}
	return n, nil
}

type conversation struct {
	Phone       string     `json:"phone"`
	Name        string     `json:"name"`
	LeadID      *int64     `json:"lead_id,omitempty"`
	LastMessage apiMessage `json:"last_message"`
	LastAt      time.Time  `json:"last_at"`
	Unread      int64      `json:"unread"`
}

type conversationsResponse struct {
	Conversations []conversation `json:"conversations"`
	NextCursor    string         `json:"next_cursor,omitempty"`
}

// actionKinds are rows that act on another message (the persister stores
// them and applies their effect to the target: edited text, revoked flag).
// Listings show the target, not the actions.
const actionKinds = `('edit', 'revoke', 'reaction')`

const messageColumns = `m.id, m.wa_message_id, coalesce(m.phone, ''), coalesce(m.lid, ''), m.push_name, m.direction, m.kind,
	m.body, m.caption, coalesce(m.reply_to_id, ''), coalesce(m.target_id, ''), m.status, m.edited, m.revoked, m.lead_id, m.sent_at`

func scanMessage(row pgx.Row, extra ...any) (int64, apiMessage, error) {
	var (
		id  int64
		msg apiMessage
	)
	dest := append([]any{&id, &msg.ID, &msg.Phone, &msg.LID, &msg.PushName, &msg.Direction, &msg.Kind,
		&msg.Text, &msg.Caption, &msg.ReplyToID, &msg.TargetID, &msg.Status, &msg.Edited, &msg.Revoked, &msg.LeadID, &msg.SentAt}, extra...)
	err := row.Scan(dest...)
	msg.SentAt = msg.SentAt.UTC()
	return id, msg, err
}

// parsePage reads ?limit= and the keyset cursor in query parameter param;
// curT is nil on the first page.
func parsePage(r *http.Request, param string) (limit int, curT *time.Time, curI int64, err error) {
	if limit, err = parseLimit(r); err != nil {
		return 0, nil, 0, err
	}
	cur, err := parseCursor(r.URL.Query().Get(param))
	if err != nil {
		return 0, nil, 0, err
	}
	if cur != nil {
		curT, curI = &cur.T, cur.I
	}
	return limit, curT, curI, nil
}

// handleConversations lists one row per phone, most recent first: the
// lead's or contact's name, the last message and the number of inbound
// messages not yet read.
func (s *Server) handleConversations(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	limit, curT, curI, err := parsePage(r, "cursor")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.db.Pool.Query(r.Context(), `
WITH last AS (
	SELECT DISTINCT ON (phone) *
	FROM whatsapp_messages
	WHERE mentorado_id = $1 AND phone IS NOT NULL AND kind NOT IN `+actionKinds+`
	ORDER BY phone, sent_at DESC, id DESC
)
SELECT `+messageColumns+`,
	(SELECT count(*) FROM whatsapp_messages u
	 WHERE u.mentorado_id = $1 AND u.phone = m.phone AND u.direction = 'in' AND u.status_rank < 3
	   AND u.kind NOT IN `+actionKinds+`),
	l.id,
	coalesce(nullif(l.name, ''), nullif(c.name, ''), nullif(c.push_name, ''), nullif(c.business_name, ''),
		(SELECT p.push_name FROM whatsapp_messages p
		 WHERE p.mentorado_id = $1 AND p.phone = m.phone AND p.direction = 'in' AND p.push_name <> ''
		 ORDER BY p.sent_at DESC LIMIT 1), '')
FROM last m
LEFT JOIN leads l ON l.mentorado_id = $1 AND l.phone = m.phone
LEFT JOIN LATERAL (
	SELECT name, push_name, business_name FROM whatsapp_contacts c
	WHERE c.mentorado_id = $1 AND c.phone = m.phone ORDER BY c.updated_at DESC LIMIT 1
) c ON true
WHERE $2::timestamptz IS NULL OR (m.sent_at, m.id) < ($2::timestamptz, $3::bigint)
ORDER BY m.sent_at DESC, m.id DESC
LIMIT $4`, m, curT, curI, limit+1)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("query conversations: %w", err))
		return
	}
	defer rows.Close()
	out := conversationsResponse{Conversations: []conversation{}}
	var lastID int64
	for rows.Next() {
		var c conversation
		id, msg, err := scanMessage(rows, &c.Unread, &c.LeadID, &c.Name)
		if err != nil {
			s.writeError(w, r, fmt.Errorf("scan conversation: %w", err))
			return
		}
		if len(out.Conversations) == limit {
			last := out.Conversations[limit-1]
			out.NextCursor = cursor{T: last.LastAt, I: lastID}.encode()
			break
		}
		c.Phone, c.LastMessage, c.LastAt, lastID = msg.Phone, msg, msg.SentAt, id
		out.Conversations = append(out.Conversations, c)
	}
	if err := rows.Err(); err != nil {
		s.writeError(w, r, fmt.Errorf("query conversations: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

type messagesResponse struct {
	Messages   []apiMessage `json:"messages"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// handleMessages lists one conversation newest first; pass next_cursor as
// ?before= for the next page.
func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	p, err := phone.Normalize(r.PathValue("phone"))
	if err != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, event.CodeInvalidPhone, "phone is not a valid phone number"))
		return
	}
	limit, curT, curI, err := parsePage(r, "before")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.db.Pool.Query(r.Context(), `
SELECT `+messageColumns+`
FROM whatsapp_messages m
WHERE m.mentorado_id = $1 AND m.phone = $2 AND m.kind NOT IN `+actionKinds+`
	AND ($3::timestamptz IS NULL OR (m.sent_at, m.id) < ($3::timestamptz, $4::bigint))
ORDER BY m.sent_at DESC, m.id DESC
LIMIT $5`, m, p, curT, curI, limit+1)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("query messages: %w", err))
		return
	}
	defer rows.Close()
	out := messagesResponse{Messages: []apiMessage{}}
	var lastID int64
	for rows.Next() {
		id, msg, err := scanMessage(rows)
		if err != nil {
			s.writeError(w, r, fmt.Errorf("scan message: %w", err))
			return
		}
		if len(out.Messages) == limit {
			out.NextCursor = cursor{T: out.Messages[limit-1].SentAt, I: lastID}.encode()
			break
		}
		lastID = id
		out.Messages = append(out.Messages, msg)
	}
	if err := rows.Err(); err != nil {
		s.writeError(w, r, fmt.Errorf("query messages: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleLinkOrphans links messages without a lead to the mentorado's lead
// with the same phone.
func (s *Server) handleLinkOrphans(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	tag, err := s.db.Pool.Exec(r.Context(), `
UPDATE whatsapp_messages m SET lead_id = l.id, updated_at = now()
FROM leads l
WHERE m.mentorado_id = $1 AND m.lead_id IS NULL AND m.phone IS NOT NULL
	AND l.mentorado_id = $1 AND l.phone = m.phone`, m)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("link orphans: %w", err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"linked": tag.RowsAffected()})
}
