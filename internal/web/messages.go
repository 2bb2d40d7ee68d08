package web

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
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
	// The chat the message is in and who wrote it (in a group, the
	// participant; sender_name is their best known name, inbound only).
	Chat       string `json:"chat,omitempty"`
	ChatKind   string `json:"chat_kind,omitempty"`
	SenderJID  string `json:"sender_jid,omitempty"`
	SenderName string `json:"sender_name,omitempty"`
	// History: imported from the phone's history sync.
	History   bool          `json:"history,omitempty"`
	Media     *apiMedia     `json:"media,omitempty"`
	Reactions []apiReaction `json:"reactions,omitempty"`
	// Outbound messages sent through zapbus (issue #14): why a message
	// failed or expired, the send's client_id, the campaign that sent it.
	StatusReason string `json:"status_reason,omitempty"`
	ClientID     string `json:"client_id,omitempty"`
	CampaignID   int64  `json:"campaign_id,omitempty"`
}

// apiMedia is the file of a media message. URL serves it once State is
// stored; ThumbnailURL the inline preview, when there is one.
type apiMedia struct {
	ID           string `json:"id"`
	MIME         string `json:"mime"`
	Size         int64  `json:"size,omitempty"`
	FileName     string `json:"file_name,omitempty"`
	Seconds      int32  `json:"seconds,omitempty"`
	Width        int32  `json:"width,omitempty"`
	Height       int32  `json:"height,omitempty"`
	Round        bool   `json:"round,omitempty"`
	State        string `json:"state"`
	Error        string `json:"error,omitempty"`
	URL          string `json:"url"`
	ThumbnailURL string `json:"thumbnail_url,omitempty"`
}

// apiReaction is one emoji on a message: how many people's latest
// reaction it is, and whether the mentorado's is among them.
type apiReaction struct {
	Emoji string `json:"emoji"`
	Count int64  `json:"count"`
	Mine  bool   `json:"mine,omitempty"`
}

func fromEventMessage(m *event.Message) apiMessage {
	out := apiMessage{
		ID: m.WAID, Phone: m.Phone, LID: m.LID, PushName: m.PushName, Direction: string(m.Direction),
		Kind: string(m.Kind), Text: m.Text, Caption: m.Caption, ReplyToID: m.ReplyToID, TargetID: m.TargetID,
		Status: string(m.Status), SentAt: m.Timestamp.UTC(), SenderJID: m.SenderJID, History: m.History != nil,
		StatusReason: m.StatusReason, ClientID: m.ClientID, CampaignID: m.CampaignID,
	}
	out.Chat = chatOfMessage(m)
	out.ChatKind = string(chatKindOf(out.Chat))
	if md := m.Media; md != nil {
		// A message we sent has its file in the store already.
		st := event.MediaPending
		if m.Direction == event.DirectionOut {
			st = event.MediaStored
		}
		out.Media = mediaOf(m.WAID, &store.MediaRow{ID: md.ID, MIME: md.MIME, FileName: md.FileName, Size: md.Size,
			Seconds: int32(md.Seconds), Width: int32(md.Width), Height: int32(md.Height), Round: md.Round,
			HasThumbnail: len(md.Thumbnail) > 0, State: string(st)})
	}
	return out
}

func mediaOf(waID string, md *store.MediaRow) *apiMedia {
	base := "/v1/messages/" + url.PathEscape(waID)
	out := &apiMedia{ID: md.ID, MIME: md.MIME, Size: md.Size, FileName: md.FileName, Seconds: md.Seconds,
		Width: md.Width, Height: md.Height, Round: md.Round, State: md.State, Error: md.Error, URL: base + "/media"}
	if md.HasThumbnail {
		out.ThumbnailURL = base + "/thumbnail"
	}
	return out
}

type sendRequest struct {
	Phone    string     `json:"phone,omitempty"`
	Chat     string     `json:"chat,omitempty"`
	Kind     event.Kind `json:"kind,omitempty"`
	Text     string     `json:"text,omitempty"`
	MediaID  string     `json:"media_id,omitempty"`
	Caption  string     `json:"caption,omitempty"`
	FileName string     `json:"file_name,omitempty"`
	ReplyTo  string     `json:"reply_to,omitempty"`
	ClientID string     `json:"client_id,omitempty"`
	// Template is the Meta message template of kind template (issue #16):
	// Meta only; other providers answer 422 not_supported.
	Template *event.Template `json:"template,omitempty"`
	// TTLSeconds bounds how long the send may wait queued (0: the
	// mentorado's default; 1 to event.MaxTTLSeconds).
	TTLSeconds int `json:"ttl_seconds,omitempty"`
}

// handleSend validates, then asks the owning connector to send; the reply
// carries the message as published: status sent (201), or queued (202)
// when the connector put it in the outbox (the session is connecting, in
// backoff, paced or behind earlier queued sends).
func (s *Server) handleSend(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	var req sendRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	// The connector checks the same rules (event.SendRequest.Validate);
	// checking here answers without a round trip, before anything is sent.
	cmd := event.SendRequest{ClientID: req.ClientID, Kind: req.Kind, Text: req.Text, MediaID: req.MediaID,
		Caption: req.Caption, FileName: req.FileName, ReplyTo: req.ReplyTo, Template: req.Template, TTLSeconds: req.TTLSeconds}
	if err := sendTarget(req, &cmd); err != nil {
		s.writeError(w, r, err)
		return
	}
	if ce := cmd.Validate(); ce != nil {
		s.writeError(w, r, errorf(http.StatusBadRequest, ce.Code, "%s", ce.Message))
		return
	}
	if lim := s.cfg.SendLimits.MaxQueueTTL; lim > 0 && cmd.TTLSeconds > lim {
		s.writeError(w, r, errorf(http.StatusBadRequest, event.CodeTTL, "ttl_seconds may be at most %d here", lim))
		return
	}
	if cmd.Kind.IsMedia() {
		if err := s.checkSendMedia(r, m, cmd); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if cmd.ReplyTo != "" {
		if err := s.resolveReply(r, m, &cmd); err != nil {
			s.writeError(w, r, err)
			return
		}
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
	status := http.StatusCreated
	if reply.Message.Status == event.MessageQueued {
		status = http.StatusAccepted
	}
	writeJSON(w, status, fromEventMessage(reply.Message))
}

// sendTarget addresses cmd from exactly one of the request's phone and
// chat: a phone (or a phone JID given as chat) goes as Phone, a LID or a
// group as Chat.
func sendTarget(req sendRequest, cmd *event.SendRequest) error {
	switch {
	case req.Phone != "" && req.Chat != "":
		return errorf(http.StatusBadRequest, codeBadRequest, "give phone or chat, not both")
	case req.Phone == "" && req.Chat == "":
		// invalid_phone, as before chats existed: a missing phone.
		return errorf(http.StatusBadRequest, event.CodeInvalidPhone, "give phone (or chat)")
	case req.Phone != "":
		p, err := phone.Normalize(req.Phone)
		if err != nil {
			return errorf(http.StatusBadRequest, event.CodeInvalidPhone, "phone is not a valid phone number")
		}
		cmd.Phone = p
		return nil
	}
	chat, _, err := parseChat(req.Chat)
	if err != nil {
		return err
	}
	if p, ok := strings.CutSuffix(chat, "@"+event.ServerPhone); ok {
		cmd.Phone = p
	} else {
		cmd.Chat = chat
	}
	return nil
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

// fromMessageRow is a stored message as the API shows it; a revoked
// message shows no text, caption or file.
func fromMessageRow(r store.MessageRow) apiMessage {
	out := apiMessage{
		ID: r.WAMessageID, Phone: r.Phone, LID: r.LID, PushName: r.PushName, Direction: r.Direction, Kind: r.Kind,
		Text: r.Body, Caption: r.Caption, ReplyToID: r.ReplyToID, TargetID: r.TargetID, Status: r.Status,
		Edited: r.Edited, Revoked: r.Revoked, LeadID: r.LeadID, SentAt: r.SentAt.UTC(),
		Chat: r.Chat, ChatKind: string(chatKindOf(r.Chat)), SenderJID: r.SenderJID, SenderName: r.SenderName, History: r.History,
		StatusReason: r.StatusReason, ClientID: r.ClientID, CampaignID: r.CampaignID,
	}
	switch {
	case r.Revoked:
		out.Text, out.Caption = "", ""
	case r.Media != nil:
		out.Media = mediaOf(r.WAMessageID, r.Media)
	}
	return out
}

// withReactions adds the aggregated reactions of msgs.
func (s *Server) withReactions(r *http.Request, m int64, msgs []apiMessage) error {
	if len(msgs) == 0 {
		return nil
	}
	ids := make([]string, len(msgs))
	for i, x := range msgs {
		ids[i] = x.ID
	}
	rs, err := s.db.Messages().Reactions(r.Context(), m, ids)
	if err != nil {
		return err
	}
	for i := range msgs {
		for _, x := range rs[msgs[i].ID] {
			msgs[i].Reactions = append(msgs[i].Reactions, apiReaction{Emoji: x.Emoji, Count: x.Count, Mine: x.Mine})
		}
	}
	return nil
}

// parsePage reads ?limit= and the keyset cursor in query parameter param;
// after is nil on the first page.
func parsePage(r *http.Request, param string) (limit int, after *store.Keyset, err error) {
	if limit, err = parseLimit(r); err != nil {
		return 0, nil, err
	}
	cur, err := parseCursor(r.URL.Query().Get(param))
	if err != nil {
		return 0, nil, err
	}
	if cur != nil {
		after = &store.Keyset{SentAt: cur.T, ID: cur.I}
	}
	return limit, after, nil
}

// handleConversations lists one row per phone, most recent first: the
// lead's or contact's name, the last message and the number of inbound
// messages not yet read.
func (s *Server) handleConversations(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	limit, after, err := parsePage(r, "cursor")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.db.Messages().Conversations(r.Context(), m, after, limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := conversationsResponse{Conversations: []conversation{}}
	for i, row := range rows {
		if i == limit {
			last := rows[limit-1].Last
			out.NextCursor = cursor{T: last.SentAt.UTC(), I: last.ID}.encode()
			break
		}
		msg := fromMessageRow(row.Last)
		out.Conversations = append(out.Conversations, conversation{
			Phone: msg.Phone, Name: row.Name, LeadID: row.LeadID, LastMessage: msg, LastAt: msg.SentAt, Unread: row.Unread,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// pathPhone is the conversation's number from the {phone} path value,
// normalised (400 invalid_phone otherwise).
func pathPhone(r *http.Request) (string, error) {
	p, err := phone.Normalize(r.PathValue("phone"))
	if err != nil {
		return "", errorf(http.StatusBadRequest, event.CodeInvalidPhone, "phone is not a valid phone number")
	}
	return p, nil
}

type messagesResponse struct {
	Messages   []apiMessage `json:"messages"`
	NextCursor string       `json:"next_cursor,omitempty"`
}

// handleMessages lists one conversation newest first; pass next_cursor as
// ?before= for the next page.
func (s *Server) handleMessages(w http.ResponseWriter, r *http.Request) {
	p, err := pathPhone(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.thread(w, r, store.PhoneChat(p))
}

// handleLinkOrphans links messages without a lead to the mentorado's lead
// with the same phone.
func (s *Server) handleLinkOrphans(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	n, err := s.db.Messages().LinkOrphans(r.Context(), m)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"linked": n})
}
