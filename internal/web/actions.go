package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/store"
)

// Actions on stored messages (react, edit, delete for everyone) and read
// state. The notifier proves the message belongs to the caller (it looks
// the row up within the mentorado) and fills the command from the row; the
// connector does the WhatsApp side and publishes the resulting events,
// which the persister stores like any other.

type reactRequest struct {
	Emoji    string `json:"emoji"`
	ClientID string `json:"client_id,omitempty"`
}

type editRequest struct {
	Text     string `json:"text"`
	ClientID string `json:"client_id,omitempty"`
}

type okResponse struct {
	OK bool `json:"ok"`
}

type messageResponse struct {
	Message apiMessage `json:"message"`
}

// actionFor is the command body of an action on row.
func actionFor(row store.MessageRow, clientID string) event.ActionRequest {
	return event.ActionRequest{ClientID: clientID, MessageID: row.WAMessageID, ChatJID: row.ChatJID,
		SenderJID: row.SenderJID, FromMe: row.Direction == string(event.DirectionOut), SentAt: row.SentAt.UTC()}
}

// errAlreadyDone, from an action's fill, answers 200 without a command:
// the row shows the action happened already (a repeated DELETE).
var errAlreadyDone = errors.New("already done")

// act sends an action command on the message named by the path: body (nil
// for none) is decoded, the row looked up within the mentorado, and fill
// completes the command from the row and body or refuses it. An edit
// answers with the message as edited, the others with {"ok":true}.
func (s *Server) act(w http.ResponseWriter, r *http.Request, verb event.Verb, body any, fill func(store.MessageRow, *event.ActionRequest) error) {
	if body != nil {
		if err := s.decodeJSON(w, r, body); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	row, err := s.messageByID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cmd := actionFor(row, "")
	if err := fill(row, &cmd); errors.Is(err, errAlreadyDone) {
		writeJSON(w, http.StatusOK, okResponse{OK: true})
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ce := cmd.Validate(verb); ce != nil {
		s.writeError(w, r, commandError(ce))
		return
	}
	if _, err := s.command(r.Context(), mustMentorado(r), verb, cmd); err != nil {
		s.writeError(w, r, err)
		return
	}
	if verb == event.VerbEdit {
		msg := fromMessageRow(row)
		msg.Text, msg.Edited = cmd.Text, true
		writeJSON(w, http.StatusOK, messageResponse{Message: msg})
		return
	}
	writeJSON(w, http.StatusOK, okResponse{OK: true})
}

// handleReact reacts to a message ("" removes the mentorado's reaction).
func (s *Server) handleReact(w http.ResponseWriter, r *http.Request) {
	var req reactRequest
	s.act(w, r, event.VerbReact, &req, func(_ store.MessageRow, cmd *event.ActionRequest) error {
		cmd.ClientID, cmd.Emoji = req.ClientID, req.Emoji
		return nil
	})
}

// handleEdit edits one of the mentorado's own text messages within
// WhatsApp's edit window.
func (s *Server) handleEdit(w http.ResponseWriter, r *http.Request) {
	var req editRequest
	s.act(w, r, event.VerbEdit, &req, func(row store.MessageRow, cmd *event.ActionRequest) error {
		switch {
		case row.Direction != string(event.DirectionOut) || row.Kind != string(event.KindText) || row.Revoked:
			return errorf(http.StatusConflict, event.CodeNotEditable, "only text messages you sent (and did not delete) can be edited")
		case time.Since(row.SentAt) > event.EditWindow:
			return errorf(http.StatusConflict, event.CodeEditExpired, "WhatsApp accepts edits for %s after sending", event.EditWindow)
		}
		cmd.ClientID, cmd.Text = req.ClientID, req.Text
		return nil
	})
}

// handleRevoke deletes a message for everyone: the mentorado's own, or in
// a group another's (WhatsApp lets only group admins do that; the
// connector reports its refusal).
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, event.VerbRevoke, nil, func(row store.MessageRow, cmd *event.ActionRequest) error {
		if row.Direction != string(event.DirectionOut) && !strings.HasSuffix(row.ChatJID, "@g.us") {
			return errorf(http.StatusConflict, event.CodeNotEditable, "only messages you sent can be deleted for everyone")
		}
		if row.Revoked {
			return errAlreadyDone
		}
		// A message is deleted once: its id is the idempotency key, so a
		// retried DELETE (before the persister marks the row revoked)
		// replays the first revoke instead of sending another.
		if event.CheckClientID(row.WAMessageID) == nil {
			cmd.ClientID = row.WAMessageID
		}
		return nil
	})
}

// maxReadBatch bounds how many messages one read command names.
const maxReadBatch = 1000

type readResponse struct {
	Marked int `json:"marked"`
}

// handleRead marks a phone conversation read: its direct chat (markRead).
func (s *Server) handleRead(w http.ResponseWriter, r *http.Request) {
	p, err := pathPhone(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.markRead(w, r, store.PhoneChat(p))
}

// checkSendMedia checks a media send against the stored file: it exists
// for this mentorado (404 media_not_found), its type fits the kind (422
// unsupported_media) and its size the kind's limit (413 media_too_large).
func (s *Server) checkSendMedia(r *http.Request, m int64, cmd event.SendRequest) error {
	if s.media == nil {
		return errNoMediaStore
	}
	info, err := s.media.Stat(r.Context(), m, cmd.MediaID)
	if errors.Is(err, media.ErrNotFound) {
		return errorf(http.StatusNotFound, event.CodeMediaNotFound, "no uploaded file with this media_id; upload it with POST /v1/media")
	}
	if err != nil {
		return fmt.Errorf("stat media: %w", err)
	}
	if err := media.CheckKind(cmd.Kind, info.MIME); err != nil {
		return errorf(http.StatusUnprocessableEntity, event.CodeMediaType, "%s", err)
	}
	if lim := s.cfg.MediaLimits.For(cmd.Kind); lim > 0 && info.Size > lim {
		return errorf(http.StatusRequestEntityTooLarge, event.CodeMediaTooLarge, "a %s may be at most %d bytes; this file has %d", cmd.Kind, lim, info.Size)
	}
	return nil
}

// resolveReply fills the quoted message of a reply from its row, which
// must be a message of the same chat (404 message_not_found): in a group,
// the quoted sender is the participant who wrote it.
func (s *Server) resolveReply(r *http.Request, m int64, cmd *event.SendRequest) error {
	chat := cmd.Chat
	if chat == "" {
		chat = store.PhoneChat(cmd.Phone)
	}
	row, err := s.db.Messages().ByWAID(r.Context(), m, cmd.ReplyTo)
	if errors.Is(err, store.ErrNotFound) || (err == nil && row.Chat != chat) {
		return errorf(http.StatusNotFound, event.CodeMessageUnknown, "reply_to names no message of this conversation")
	}
	if err != nil {
		return err
	}
	cmd.ReplyToSender, cmd.ReplyToKind = row.SenderJID, event.Kind(row.Kind)
	cmd.ReplyToText = row.Body
	if cmd.ReplyToText == "" {
		cmd.ReplyToText = row.Caption
	}
	return nil
}
