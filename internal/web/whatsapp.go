package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// statusResponse is a session status, from the mentorados row or from the
// connector.
type statusResponse struct {
	Status      event.Status `json:"status"`
	Phone       string       `json:"phone,omitempty"`
	Since       *time.Time   `json:"since,omitempty"`
	Reason      string       `json:"reason,omitempty"`
	PairingCode string       `json:"pairing_code,omitempty"`
	RetryAt     *time.Time   `json:"retry_at,omitempty"`
}

func fromStatusReply(sr *event.StatusReply) statusResponse {
	out := statusResponse{Status: sr.Status, Phone: sr.Phone, Reason: sr.Reason, PairingCode: sr.PairingCode, RetryAt: sr.RetryAt}
	if !sr.Since.IsZero() {
		since := sr.Since.UTC()
		out.Since = &since
	}
	return out
}

type connectRequest struct {
	Method event.ConnectMethod `json:"method"`
	Phone  string              `json:"phone,omitempty"`
}

func (s *Server) handleConnect(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	var req connectRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	cmd := event.ConnectRequest{Method: req.Method}
	switch req.Method {
	case event.ConnectQR:
		if req.Phone != "" {
			s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "phone is only used with method phone"))
			return
		}
	case event.ConnectPhone:
		p, err := phone.Normalize(req.Phone)
		if err != nil {
			s.writeError(w, r, errorf(http.StatusBadRequest, event.CodeInvalidPhone, "phone is not a valid phone number"))
			return
		}
		cmd.Phone = p
	default:
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, `method must be "qr" or "phone"`))
		return
	}
	s.statusCommand(w, r, m, event.VerbConnect, cmd, http.StatusAccepted)
}

func (s *Server) handleDisconnect(w http.ResponseWriter, r *http.Request) {
	s.statusCommand(w, r, mustMentorado(r), event.VerbDisconnect, nil, http.StatusOK)
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	s.statusCommand(w, r, mustMentorado(r), event.VerbLogout, nil, http.StatusOK)
}

func (s *Server) statusCommand(w http.ResponseWriter, r *http.Request, m int64, verb event.Verb, req any, okStatus int) {
	reply, err := s.command(r.Context(), m, verb, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if reply.Status == nil {
		s.writeError(w, r, fmt.Errorf("%s reply without status", verb))
		return
	}
	writeJSON(w, okStatus, fromStatusReply(reply.Status))
}

// handleStatus answers from the mentorados row (what the persister stored);
// with ?live=true it asks the owning connector instead.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	switch r.URL.Query().Get("live") {
	case "", "false", "0":
	case "true", "1":
		s.statusCommand(w, r, m, event.VerbStatus, nil, http.StatusOK)
		return
	default:
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "live must be true or false"))
		return
	}
	st, err := s.db.Mentorados().Status(r.Context(), m)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("read status: %w", err))
		return
	}
	out := statusResponse{Status: event.Status(st.Status)}
	if st.Phone != nil {
		out.Phone = *st.Phone
	}
	if st.Reason != nil {
		out.Reason = *st.Reason
	}
	if st.Since != nil {
		t := st.Since.UTC()
		out.Since = &t
	}
	writeJSON(w, http.StatusOK, out)
}

// currentQR returns the live pairing secret of m (bus.LiveQR) while the
// session is still pairing.
func (s *Server) currentQR(ctx context.Context, m int64) (raw []byte, q *event.QR, err error) {
	lq, err := s.bus.LiveQR(ctx, m)
	switch {
	case errors.Is(err, bus.ErrNoQR):
		return nil, nil, nil
	case errors.Is(err, bus.ErrBadQR):
		s.log.Warn().Int64("mentorado", m).Msg("undecodable qr message ignored")
		return nil, nil, nil
	case err != nil:
		return nil, nil, err
	}
	if live, err := s.pairing(ctx, m, lq.OccurredAt); err != nil || !live {
		return nil, nil, err
	}
	return lq.Raw, lq.QR, nil
}

// pairing reports whether a QR shown at qrAt can still be in use: the
// session is pairing (status qr or pairing), or its last stored status is
// older than the QR (connecting, then the QR came). A session that
// connected, logged out or stopped after the QR makes it stale.
func (s *Server) pairing(ctx context.Context, m int64, qrAt time.Time) (bool, error) {
	status, at, err := s.db.Mentorados().StatusVersion(ctx, m)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read status: %w", err)
	}
	switch event.Status(status) {
	case event.StatusQR, event.StatusPairing:
		return true, nil
	}
	return at == nil || at.Before(qrAt), nil
}

// handleQRPNG renders the live QR code as a PNG (never cached).
func (s *Server) handleQRPNG(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	_, qr, err := s.currentQR(r.Context(), m)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if qr == nil || qr.Code == "" {
		s.writeError(w, r, errorf(http.StatusNotFound, codeNoQR, "no live QR code; connect with method qr first"))
		return
	}
	png, err := qrcode.Encode(qr.Code, qrcode.Medium, 320)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("render qr: %w", err))
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-QR-Expires-At", qr.ExpiresAt.UTC().Format(time.RFC3339))
	_, _ = w.Write(png)
}

type clearDataResponse struct {
	Messages int64 `json:"messages"`
	Contacts int64 `json:"contacts"`
	Leads    int64 `json:"leads"`
}

// handleClearData deletes the mentorado's WhatsApp messages, contacts,
// pending receipts, LID mappings and the leads WhatsApp created, in one
// transaction.
func (s *Server) handleClearData(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	// One store operation under the tenant lock: it also deletes what the
	// persister keeps privately about these messages (pending receipts,
	// LID mappings).
	c, err := s.db.ClearWhatsAppData(r.Context(), m)
	out := clearDataResponse{Messages: c.Messages, Contacts: c.Contacts, Leads: c.Leads}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info().Int64("mentorado", m).Int64("messages", out.Messages).Int64("contacts", out.Contacts).
		Int64("leads", out.Leads).Msg("whatsapp data cleared")
	writeJSON(w, http.StatusOK, out)
}

type ticketResponse struct {
	Ticket    string    `json:"ticket"`
	ExpiresAt time.Time `json:"expires_at"`
}

// handleStreamTicket issues a short-lived ticket for opening /v1/events or
// /v1/ws from a browser.
func (s *Server) handleStreamTicket(w http.ResponseWriter, r *http.Request) {
	t, exp, err := s.issueTicket(r.Context(), mustMentorado(r), time.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ticketResponse{Ticket: t, ExpiresAt: exp.UTC()})
}

func mustMentorado(r *http.Request) int64 {
	m, ok := MentoradoFrom(r.Context())
	if !ok || m <= 0 {
		panic("web: mentorado route without authentication")
	}
	return m
}
