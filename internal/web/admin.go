package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

type createMentoradoRequest struct {
	Name string `json:"name"`
}

type tokenResponse struct {
	ID    int64  `json:"id"`
	Token string `json:"token"`
}

// handleCreateMentorado creates a tenant and its first API token, shown once.
func (s *Server) handleCreateMentorado(w http.ResponseWriter, r *http.Request) {
	var req createMentoradoRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	name := strings.TrimSpace(req.Name)
	if name == "" || utf8.RuneCountInString(name) > 200 {
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "name must be 1 to 200 characters"))
		return
	}
	if strings.IndexFunc(name, unicode.IsControl) >= 0 {
		// Postgres cannot store NUL; no other control character belongs
		// in a name either.
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "name must not contain control characters"))
		return
	}
	token, hash, err := newToken()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := s.db.Mentorados().Create(r.Context(), name, hash)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info().Int64("mentorado", id).Msg("mentorado created")
	writeJSON(w, http.StatusCreated, tokenResponse{ID: id, Token: token})
}

// handleRotateToken replaces a mentorado's token; the old one stops working
// at once, and so do stream tickets issued with it.
func (s *Server) handleRotateToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	token, hash, err := newToken()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	old, err := s.db.Mentorados().RotateToken(r.Context(), id, hash)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, errorf(http.StatusNotFound, codeNotFound, "no mentorado %d", id))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info().Int64("mentorado", id).Msg("mentorado token rotated")
	// Streams opened with the old token (bearer or ticket) end now, on
	// every notifier.
	if len(old) > 0 {
		s.revoke(id, tokenID(old), "token rotated")
	}
	writeJSON(w, http.StatusCreated, tokenResponse{ID: id, Token: token})
}

// mentoradoInfo is a tenant as the admin API lists it.
type mentoradoInfo struct {
	ID             int64      `json:"id"`
	Name           string     `json:"name"`
	Status         string     `json:"status"`
	Phone          string     `json:"phone,omitempty"`
	StatusAt       *time.Time `json:"status_at,omitempty"`
	Disabled       bool       `json:"disabled"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	TokenCreatedAt *time.Time `json:"token_created_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
}

func fromMentorado(m store.Mentorado) mentoradoInfo {
	mi := mentoradoInfo{ID: m.ID, Name: m.Name, Status: m.WAStatus, StatusAt: m.WAStatusAt,
		DisabledAt: m.DisabledAt, TokenCreatedAt: m.TokenCreatedAt, CreatedAt: m.CreatedAt.UTC()}
	if m.WAPhone != nil {
		mi.Phone = *m.WAPhone
	}
	mi.Disabled = mi.DisabledAt != nil
	for _, t := range []*time.Time{mi.StatusAt, mi.DisabledAt, mi.TokenCreatedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return mi
}

type mentoradosResponse struct {
	Mentorados []mentoradoInfo `json:"mentorados"`
	NextCursor string          `json:"next_cursor,omitempty"`
}

// handleListMentorados lists tenants by id with their session status and
// whether they are disabled; ?limit= (1–200, default 50) and ?cursor= page.
func (s *Server) handleListMentorados(w http.ResponseWriter, r *http.Request) {
	limit, err := parseLimit(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var after int64
	if c := r.URL.Query().Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err == nil {
			after, err = strconv.ParseInt(string(b), 10, 64)
		}
		if err != nil || after <= 0 {
			s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "invalid cursor"))
			return
		}
	}
	ms, err := s.db.Mentorados().List(r.Context(), after, limit+1)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("list mentorados: %w", err))
		return
	}
	out := mentoradosResponse{Mentorados: make([]mentoradoInfo, 0, len(ms))}
	for _, m := range ms {
		out.Mentorados = append(out.Mentorados, fromMentorado(m))
	}
	if len(out.Mentorados) > limit {
		out.Mentorados = out.Mentorados[:limit]
		last := out.Mentorados[limit-1].ID
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(last, 10)))
	}
	writeJSON(w, http.StatusOK, out)
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusBadRequest, codeBadRequest, "id must be a positive integer")
	}
	return id, nil
}

func (s *Server) mentoradoInfo(ctx context.Context, id int64) (mentoradoInfo, error) {
	m, err := s.db.Mentorados().Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return mentoradoInfo{}, errorf(http.StatusNotFound, codeNotFound, "no mentorado %d", id)
	}
	if err != nil {
		return mentoradoInfo{}, fmt.Errorf("read mentorado: %w", err)
	}
	return fromMentorado(m), nil
}

// sessionResult says what happened to a WhatsApp session on disable or
// delete: "disconnected" / "logged_out", or "unreachable" with why.
type sessionResult struct {
	State string `json:"state"`
	Error string `json:"error,omitempty"`
}

type adminStateResponse struct {
	mentoradoInfo
	Session *sessionResult `json:"session,omitempty"`
}

// sessionCommand sends disconnect or logout to the connector owning id and
// reports the outcome; it never fails the admin request by itself.
func (s *Server) sessionCommand(ctx context.Context, id int64, verb event.Verb) (*sessionResult, bool) {
	reply, err := s.command(ctx, id, verb, nil)
	if err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status < 500 {
			// The connector answered (not connected, unknown): nothing runs.
			return &sessionResult{State: "inactive", Error: ae.Message}, true
		}
		msg := "connector did not answer"
		if errors.As(err, &ae) {
			msg = ae.Message
		}
		return &sessionResult{State: "unreachable", Error: msg}, false
	}
	st := string(event.StatusDisconnected)
	if reply.Status != nil {
		st = string(reply.Status.Status)
	}
	return &sessionResult{State: st}, true
}

// handleDisableMentorado refuses every token and stream of a tenant, ends
// its open streams on every notifier and disconnects its session; its data
// and pairing are kept, and enable undoes it.
func (s *Server) handleDisableMentorado(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.disable(r.Context(), id, "disabled"); err != nil {
		s.writeError(w, r, err)
		return
	}
	sess, _ := s.sessionCommand(r.Context(), id, event.VerbDisconnect)
	mi, err := s.mentoradoInfo(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info().Int64("mentorado", id).Str("session", sess.State).Msg("mentorado disabled")
	writeJSON(w, http.StatusOK, adminStateResponse{mentoradoInfo: mi, Session: sess})
}

// disable marks mentorado id disabled (keeping an earlier disabled_at) and
// ends its open streams on every notifier.
func (s *Server) disable(ctx context.Context, id int64, reason string) error {
	err := s.db.Mentorados().Disable(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, codeNotFound, "no mentorado %d", id)
	}
	if err != nil {
		return fmt.Errorf("disable mentorado: %w", err)
	}
	s.revoke(id, "", reason)
	return nil
}

// handleEnableMentorado lets a disabled tenant's token work again; its
// session stays disconnected until it connects.
func (s *Server) handleEnableMentorado(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	err = s.db.Mentorados().Enable(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, errorf(http.StatusNotFound, codeNotFound, "no mentorado %d", id))
		return
	}
	if err != nil {
		s.writeError(w, r, fmt.Errorf("enable mentorado: %w", err))
		return
	}
	mi, err := s.mentoradoInfo(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info().Int64("mentorado", id).Msg("mentorado enabled")
	writeJSON(w, http.StatusOK, adminStateResponse{mentoradoInfo: mi})
}

type deleteResponse struct {
	ID           int64          `json:"id"`
	Deleted      bool           `json:"deleted"`
	Session      *sessionResult `json:"session"`
	EventsPurged bool           `json:"events_purged"`
	PurgeError   string         `json:"purge_error,omitempty"`
	// MediaDeleted: the tenant's files are gone from the media store
	// (MediaError says why not; the files stay until deleted again).
	MediaDeleted bool   `json:"media_deleted"`
	MediaError   string `json:"media_error,omitempty"`
}

// handleDeleteMentorado logs the tenant's WhatsApp session out, removes
// every row of it (messages, contacts, leads, device, the tenant) and purges
// its history from the event streams. ?confirm= must repeat the id or the
// exact name. When no connector answers the logout, nothing is deleted
// (503) unless ?force=true.
func (s *Server) handleDeleteMentorado(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	mi, err := s.mentoradoInfo(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	confirm := q.Get("confirm")
	if confirm == "" || (confirm != strconv.FormatInt(id, 10) && confirm != mi.Name) {
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest,
			"deleting a mentorado removes all its data: repeat its id or exact name in ?confirm="))
		return
	}
	force := false
	switch q.Get("force") {
	case "", "false", "0":
	case "true", "1":
		force = true
	default:
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "force must be true or false"))
		return
	}
	// Disabled first: no token, stream or connect works while it goes.
	if err := s.disable(r.Context(), id, "deleted"); err != nil {
		s.writeError(w, r, err)
		return
	}
	sess, ok := s.sessionCommand(r.Context(), id, event.VerbLogout)
	if !ok && !force {
		s.writeError(w, r, &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable, RetryAfter: 5,
			Message: "the session could not be logged out (" + sess.Error + "); the mentorado is disabled, nothing was deleted. " +
				"Retry, or pass force=true to delete anyway (the phone then keeps the linked device until it is removed there)"})
		return
	}
	// Every tenant table references mentorados ON DELETE CASCADE.
	if err := s.db.Mentorados().Delete(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	out := deleteResponse{ID: id, Deleted: true, Session: sess}
	if err := s.purgeEvents(r.Context(), id); err != nil {
		out.PurgeError = err.Error()
		s.log.Warn().Err(err).Int64("mentorado", id).Msg("purge deleted mentorado's events (purge with an admin credential)")
	} else {
		out.EventsPurged = true
	}
	if s.media != nil {
		if err := s.media.DeleteAll(r.Context(), id); err != nil {
			out.MediaError = err.Error()
			s.log.Warn().Err(err).Int64("mentorado", id).Msg("delete deleted mentorado's media files")
		} else {
			out.MediaDeleted = true
		}
	}
	s.log.Info().Int64("mentorado", id).Str("session", sess.State).Msg("mentorado deleted")
	writeJSON(w, http.StatusOK, out)
}

// purgeEvents removes the mentorado's history from WA_EVENTS and its QR
// from WA_QR.
func (s *Server) purgeEvents(ctx context.Context, m int64) error {
	for _, p := range []struct{ stream, subject string }{
		{bus.StreamEvents, event.MentoradoEvents(m)},
		{bus.StreamQR, event.QRSubject(m)},
	} {
		if err := s.bus.Purge(ctx, p.stream, p.subject); err != nil {
			return fmt.Errorf("purge %s: %w", p.stream, err)
		}
	}
	return nil
}
