package web

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// Chats (issue #12): a chat is a direct chat with a person, addressed by
// phone JID or, while only their LID is known, by LID, or a group. The
// phone routes (/v1/conversations) stay: they are the phone chats.

// parseChat reads a chat as a caller names it: a phone number in any form
// phone.Normalize accepts ("+55 11 98765-4321", "5511987654321") or a chat
// JID (<digits>@s.whatsapp.net, <digits>@lid, <id>@g.us). It returns the
// chat JID as whatsapp_messages.chat holds it, or 400 invalid_chat.
func parseChat(s string) (string, event.ChatKind, error) {
	bad := errorf(http.StatusBadRequest, event.CodeInvalidChat,
		"chat must be a phone number, a phone JID (<digits>@s.whatsapp.net), a LID (<digits>@lid) or a group (<id>@g.us)")
	if strings.Contains(s, "@") {
		k := event.KindOfChat(s)
		if k == "" {
			return "", "", bad
		}
		return s, k, nil
	}
	p, err := phone.Normalize(s)
	if err != nil {
		return "", "", bad
	}
	return store.PhoneChat(p), event.ChatDirect, nil
}

// pathChat is the {chat} path value, parsed.
func pathChat(r *http.Request) (string, event.ChatKind, error) {
	return parseChat(r.PathValue("chat"))
}

// chatKindOf is the kind of a stored chat ("" for one zapbus does not
// list, like a broadcast list).
func chatKindOf(chat string) event.ChatKind {
	switch {
	case event.IsGroupJID(chat):
		return event.ChatGroup
	case strings.HasSuffix(chat, "@"+event.ServerPhone), strings.HasSuffix(chat, "@"+event.ServerLID):
		return event.ChatDirect
	}
	return ""
}

// chatOfMessage is the chat of a message event, by the rule of the
// generated column whatsapp_messages.chat: the group, else the phone JID,
// else the LID.
func chatOfMessage(m *event.Message) string {
	switch {
	case event.IsGroupJID(m.ChatJID):
		return m.ChatJID
	case m.Phone != "":
		return store.PhoneChat(m.Phone)
	case m.LID != "":
		return m.LID
	}
	return m.ChatJID
}

// apiChat is a chat as the API lists it. Participants is the number of
// members of a group (its list in GET /v1/chats/{chat}).
type apiChat struct {
	Chat         string      `json:"chat"`
	Kind         string      `json:"kind"`
	Name         string      `json:"name"`
	Phone        string      `json:"phone,omitempty"`
	LID          string      `json:"lid,omitempty"`
	LeadID       *int64      `json:"lead_id,omitempty"`
	Unread       int64       `json:"unread"`
	LastMessage  *apiMessage `json:"last_message,omitempty"`
	LastAt       *time.Time  `json:"last_at,omitempty"`
	Participants *int        `json:"participants,omitempty"`
	Left         bool        `json:"left,omitempty"`
}

// apiParticipant is one member of a group.
type apiParticipant struct {
	JID   string `json:"jid"`
	Phone string `json:"phone,omitempty"`
	LID   string `json:"lid,omitempty"`
	Admin bool   `json:"admin,omitempty"`
	Name  string `json:"name,omitempty"`
}

// apiChatDetail is one chat; a group lists its participants.
type apiChatDetail struct {
	apiChat
	Participants []apiParticipant `json:"participants,omitempty"`
}

type chatsResponse struct {
	Chats      []apiChat `json:"chats"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// fromChatRow is a chat as the API shows it. A direct chat without any
// name known is named by its number, or its LID.
func fromChatRow(c store.ChatRow) apiChat {
	out := apiChat{Chat: c.Chat, Kind: string(chatKindOf(c.Chat)), Name: c.Name, Phone: c.Phone, LID: c.LID,
		LeadID: c.LeadID, Unread: c.Unread, Left: c.Left}
	if c.Last != nil {
		msg := fromMessageRow(*c.Last)
		out.LastMessage, out.LastAt = &msg, &msg.SentAt
	}
	if out.Kind == string(event.ChatGroup) {
		n := c.Participants
		out.Participants = &n
		if out.Name == "" {
			out.Name = strings.TrimSuffix(c.Chat, "@"+event.ServerGroup)
		}
	} else if out.Name == "" {
		switch {
		case c.Phone != "":
			out.Name = "+" + c.Phone
		case c.LID != "":
			out.Name = c.LID
		default:
			out.Name = c.Chat
		}
	}
	return out
}

// handleChats lists the chats of both kinds (or ?kind=direct|group), most
// recent first.
func (s *Server) handleChats(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	var filter store.ChatFilter
	switch k := r.URL.Query().Get("kind"); k {
	case "":
		filter = store.ChatsAll
	case string(event.ChatDirect):
		filter = store.ChatsDirect
	case string(event.ChatGroup):
		filter = store.ChatsGroup
	default:
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "kind must be direct or group"))
		return
	}
	limit, after, err := parsePage(r, "cursor")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.db.Messages().Chats(r.Context(), m, filter, after, limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := chatsResponse{Chats: []apiChat{}}
	for i, row := range rows {
		if i == limit {
			last := rows[limit-1].Last
			out.NextCursor = cursor{T: last.SentAt.UTC(), I: last.ID}.encode()
			break
		}
		out.Chats = append(out.Chats, fromChatRow(row))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleChat shows one chat; a group with its participants.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	chat, kind, err := pathChat(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	row, err := s.db.Messages().Chat(r.Context(), m, chat)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, errorf(http.StatusNotFound, codeNotFound, "no such chat"))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := apiChatDetail{apiChat: fromChatRow(row)}
	if kind == event.ChatGroup {
		ps, err := s.db.Messages().Participants(r.Context(), m, chat)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out.Participants = make([]apiParticipant, len(ps))
		for i, p := range ps {
			out.Participants[i] = apiParticipant{JID: p.JID, Phone: p.Phone, LID: p.LID, Admin: p.Admin, Name: p.Name}
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// handleChatMessages lists a chat's thread newest first; pass next_cursor
// as ?before= for the next page.
func (s *Server) handleChatMessages(w http.ResponseWriter, r *http.Request) {
	chat, _, err := pathChat(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.thread(w, r, chat)
}

// thread answers one page of chat's messages.
func (s *Server) thread(w http.ResponseWriter, r *http.Request, chat string) {
	m := mustMentorado(r)
	limit, after, err := parsePage(r, "before")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.db.Messages().ChatMessages(r.Context(), m, chat, after, limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := messagesResponse{Messages: []apiMessage{}}
	for i, row := range rows {
		if i == limit {
			last := rows[limit-1]
			out.NextCursor = cursor{T: last.SentAt.UTC(), I: last.ID}.encode()
			break
		}
		out.Messages = append(out.Messages, fromMessageRow(row))
	}
	if err := s.withReactions(r, m, out.Messages); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handleChatRead marks a chat read (see markRead).
func (s *Server) handleChatRead(w http.ResponseWriter, r *http.Request) {
	chat, _, err := pathChat(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.markRead(w, r, chat)
}

// markRead sends read receipts for chat's unread inbound messages: one
// command per WhatsApp chat they arrived in (a phone chat's older messages
// may have come in on the person's LID), each message naming its sender
// (in a group, the participant). The persister zeroes the unread count
// from the receipt events the connector publishes.
func (s *Server) markRead(w http.ResponseWriter, r *http.Request, chat string) {
	m := mustMentorado(r)
	rows, err := s.db.Messages().ChatUnread(r.Context(), m, chat, maxReadBatch)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var chats []string
	byChat := map[string][]event.ReadRef{}
	for _, u := range rows {
		if _, ok := byChat[u.ChatJID]; !ok {
			chats = append(chats, u.ChatJID)
		}
		byChat[u.ChatJID] = append(byChat[u.ChatJID], event.ReadRef{ID: u.WAMessageID, SenderJID: u.SenderJID, SentAt: u.SentAt.UTC()})
	}
	marked := 0
	for _, c := range chats {
		if _, err := s.command(r.Context(), m, event.VerbRead, event.ReadRequest{ChatJID: c, Messages: byChat[c]}); err != nil {
			s.writeError(w, r, err)
			return
		}
		marked += len(byChat[c])
	}
	writeJSON(w, http.StatusOK, readResponse{Marked: marked})
}
