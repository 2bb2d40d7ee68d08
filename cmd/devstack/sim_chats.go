package main

import (
	"net/http"
	"strings"
	"time"

	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/proto/waWeb"
	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/wafake"
	"github.com/zapbus/zapbus/internal/web"
)

// The simulated phone's groups, history sync and address book (issue #12):
// everything runs through the fake WhatsApp server and the real whatsmeow
// client, as a real phone would drive it.

// mountSimChats adds the chat endpoints to the sim routes.
func mountSimChats(route func(name string, h func(w http.ResponseWriter, r *http.Request, m int64)), s *simulator) {
	route("groups", s.createGroup)
	route("group-update", s.updateGroup)
	route("history", s.history)
	route("contacts", s.addressBook)
}

// groupJID parses a group JID (<id>@g.us), writing a 400 when it is not one.
func groupJID(w http.ResponseWriter, v string) (types.JID, bool) {
	j, err := types.ParseJID(v)
	if err != nil || j.Server != types.GroupServer || j.User == "" {
		web.WriteError(w, http.StatusBadRequest, "invalid_chat", "group must be a group JID (<id>@g.us)")
		return types.JID{}, false
	}
	return j, true
}

// contacts resolves phone numbers to fake contacts.
func (s *simulator) contacts(w http.ResponseWriter, numbers []string) ([]*wafake.Contact, bool) {
	out := make([]*wafake.Contact, 0, len(numbers))
	for _, n := range numbers {
		p, err := phone.Normalize(n)
		if err != nil {
			web.WriteError(w, http.StatusBadRequest, "invalid_phone", "member "+n+": "+err.Error())
			return nil, false
		}
		out = append(out, s.fake.Contact(p))
	}
	return out, true
}

// createGroup: {"subject","members":[phones]} — a group with the
// mentorado's number (admin) and the members; the client gets WhatsApp's
// "added to group" notification. The answer is the group's JID.
func (s *simulator) createGroup(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Subject string   `json:"subject"`
		Members []string `json:"members"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	if strings.TrimSpace(req.Subject) == "" || len(req.Members) == 0 || len(req.Members) > 1000 {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "subject and 1 to 1000 members are required")
		return
	}
	members, ok := s.contacts(w, req.Members)
	if !ok {
		return
	}
	acct, err := s.accountPhone(r.Context(), m)
	if err != nil {
		web.WriteError(w, http.StatusConflict, "not_paired", err.Error())
		return
	}
	jid, err := s.fake.CreateGroup(r.Context(), acct, req.Subject, members...)
	if err != nil {
		web.WriteError(w, http.StatusConflict, "group_failed", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusCreated, map[string]string{"jid": jid.String()})
}

// updateGroup: {"group", "subject"?, "topic"?, "add":[phones]?,
// "remove":[phones]?, "remove_me": bool} — what a group admin's phone does;
// each change reaches the client as WhatsApp's group notification.
func (s *simulator) updateGroup(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Group    string   `json:"group"`
		Subject  *string  `json:"subject"`
		Topic    *string  `json:"topic"`
		Add      []string `json:"add"`
		Remove   []string `json:"remove"`
		RemoveMe bool     `json:"remove_me"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	g, ok := groupJID(w, req.Group)
	if !ok {
		return
	}
	add, ok := s.contacts(w, req.Add)
	if !ok {
		return
	}
	remove, ok := s.contacts(w, req.Remove)
	if !ok {
		return
	}
	ctx := r.Context()
	var err error
	if req.Subject != nil && err == nil {
		err = s.fake.SetGroupSubject(ctx, g, *req.Subject)
	}
	if req.Topic != nil && err == nil {
		err = s.fake.SetGroupTopic(ctx, g, *req.Topic)
	}
	if len(add) > 0 && err == nil {
		err = s.fake.AddParticipants(ctx, g, add...)
	}
	if len(remove) > 0 && err == nil {
		err = s.fake.RemoveParticipants(ctx, g, remove...)
	}
	if req.RemoveMe && err == nil {
		var acct string
		if acct, err = s.accountPhone(ctx, m); err == nil {
			err = s.fake.RemoveAccount(ctx, g, acct)
		}
	}
	if err != nil {
		web.WriteError(w, http.StatusConflict, "group_failed", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusAccepted, map[string]bool{"ok": true})
}

// historyRequest is the body of POST …/history: one chunk of the phone's
// history sync.
type historyRequest struct {
	Sync          string `json:"sync"` // initial_bootstrap (default), recent, full, on_demand
	Chunk         uint32 `json:"chunk"`
	Progress      uint32 `json:"progress"`
	Conversations []struct {
		// Chat: a phone number (direct chat), "<digits>@lid" or a group JID.
		Chat string `json:"chat"`
		// Phone of a LID chat (or LID of a phone chat), when the phone knows it.
		Alt      string `json:"alt"`
		Name     string `json:"name"`
		Unread   uint32 `json:"unread"`
		Messages []struct {
			ID        string    `json:"id"`
			FromMe    bool      `json:"from_me"`
			From      string    `json:"from"` // groups: the participant's phone (or LID)
			PushName  string    `json:"push_name"`
			Text      string    `json:"text"`
			Timestamp time.Time `json:"timestamp"`
			Status    string    `json:"status"` // pending, server_ack, delivery_ack, read, played
		} `json:"messages"`
	} `json:"conversations"`
}

var historySyncTypes = map[string]waHistorySync.HistorySync_HistorySyncType{
	"": waHistorySync.HistorySync_INITIAL_BOOTSTRAP, "initial_bootstrap": waHistorySync.HistorySync_INITIAL_BOOTSTRAP,
	"recent": waHistorySync.HistorySync_RECENT, "full": waHistorySync.HistorySync_FULL,
	"on_demand": waHistorySync.HistorySync_ON_DEMAND,
}

var historyStatuses = map[string]waWeb.WebMessageInfo_Status{
	"": 0, "pending": waWeb.WebMessageInfo_PENDING, "server_ack": waWeb.WebMessageInfo_SERVER_ACK,
	"delivery_ack": waWeb.WebMessageInfo_DELIVERY_ACK, "delivered": waWeb.WebMessageInfo_DELIVERY_ACK,
	"read": waWeb.WebMessageInfo_READ, "played": waWeb.WebMessageInfo_PLAYED,
}

// chatAddress parses a sim chat: phone digits, a phone JID, a LID or a group.
func chatAddress(v string) (types.JID, bool) {
	if strings.Contains(v, "@") {
		j, err := types.ParseJID(v)
		if err != nil || j.User == "" {
			return types.JID{}, false
		}
		switch j.Server {
		case types.DefaultUserServer, types.HiddenUserServer, types.GroupServer:
			return j, true
		}
		return types.JID{}, false
	}
	p, err := phone.Normalize(v)
	if err != nil {
		return types.JID{}, false
	}
	return types.NewJID(p, types.DefaultUserServer), true
}

// history: historyRequest — the mentorado's phone sends one history sync
// chunk the way WhatsApp does (a notification, the blob on the media
// host). The answer is the notification's message id.
func (s *simulator) history(w http.ResponseWriter, r *http.Request, m int64) {
	var req historyRequest
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	typ, ok := historySyncTypes[req.Sync]
	if !ok {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "sync must be initial_bootstrap, recent, full or on_demand")
		return
	}
	if req.Progress > 100 || len(req.Conversations) == 0 {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "conversations are required and progress is 0 to 100")
		return
	}
	convs := make([]wafake.HistoryConversation, 0, len(req.Conversations))
	total := 0
	for _, c := range req.Conversations {
		chat, ok := chatAddress(c.Chat)
		if !ok {
			web.WriteError(w, http.StatusBadRequest, "invalid_chat", "chat "+c.Chat+": want a phone number, <digits>@lid or <id>@g.us")
			return
		}
		hc := wafake.HistoryConversation{Chat: chat, Name: c.Name, UnreadCount: c.Unread}
		if c.Alt != "" {
			if hc.ChatAlt, ok = chatAddress(c.Alt); !ok || hc.ChatAlt.Server == types.GroupServer {
				web.WriteError(w, http.StatusBadRequest, "invalid_chat", "alt "+c.Alt+": want a phone number or <digits>@lid")
				return
			}
		}
		for _, x := range c.Messages {
			st, ok := historyStatuses[x.Status]
			if !ok {
				web.WriteError(w, http.StatusBadRequest, "bad_request", "status must be pending, server_ack, delivery_ack, read or played")
				return
			}
			hm := wafake.HistoryMessage{ID: x.ID, FromMe: x.FromMe, PushName: x.PushName, Text: x.Text, Timestamp: x.Timestamp, Status: st}
			if x.Text == "" {
				web.WriteError(w, http.StatusBadRequest, "bad_request", "every history message needs text")
				return
			}
			if chat.Server == types.GroupServer && !x.FromMe {
				if hm.Sender, ok = chatAddress(x.From); !ok || hm.Sender.Server == types.GroupServer {
					web.WriteError(w, http.StatusBadRequest, "invalid_phone", "group messages need from: the participant's phone or LID")
					return
				}
			}
			hc.Messages = append(hc.Messages, hm)
			total++
		}
		convs = append(convs, hc)
	}
	if total > 100000 {
		web.WriteError(w, http.StatusRequestEntityTooLarge, "too_large", "at most 100000 messages per chunk")
		return
	}
	acct, err := s.accountPhone(r.Context(), m)
	if err != nil {
		web.WriteError(w, http.StatusConflict, "not_paired", err.Error())
		return
	}
	id, err := s.fake.SendHistorySync(r.Context(), acct, wafake.BuildHistorySync(typ, req.Chunk, req.Progress, convs...))
	if err != nil {
		web.WriteError(w, http.StatusConflict, "history_failed", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusAccepted, map[string]any{"notification_id": id, "messages": total})
}

// addressBook: {"entries":[{"phone","lid"?,"name","first_name"?}]} — the
// mentorado's phone address book (app state); the client syncs it and the
// names become contact events.
func (s *simulator) addressBook(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Entries []struct {
			Phone     string `json:"phone"`
			LID       string `json:"lid"`
			Name      string `json:"name"`
			FirstName string `json:"first_name"`
		} `json:"entries"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	if len(req.Entries) == 0 || len(req.Entries) > 10000 {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "1 to 10000 entries are required")
		return
	}
	entries := make([]wafake.AddressBookEntry, 0, len(req.Entries))
	for _, e := range req.Entries {
		p, err := phone.Normalize(e.Phone)
		if err != nil {
			web.WriteError(w, http.StatusBadRequest, "invalid_phone", e.Phone+": "+err.Error())
			return
		}
		if e.Name == "" && e.FirstName == "" {
			web.WriteError(w, http.StatusBadRequest, "bad_request", "every entry needs a name")
			return
		}
		entries = append(entries, wafake.AddressBookEntry{Contact: s.fake.Contact(p), LID: e.LID, FullName: e.Name, FirstName: e.FirstName})
	}
	acct, err := s.accountPhone(r.Context(), m)
	if err != nil {
		web.WriteError(w, http.StatusConflict, "not_paired", err.Error())
		return
	}
	if err := s.fake.SetAddressBook(acct, entries...); err != nil {
		web.WriteError(w, http.StatusConflict, "contacts_failed", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusAccepted, map[string]int{"entries": len(entries)})
}
