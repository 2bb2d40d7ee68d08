package web

import (
	"encoding/json"
	"net/http"
	"net/url"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// Sending settings and opt-outs: /v1/sending, /v1/opt-outs (issue #14,
// docs/api.md#sending). A mentorado's settings are the defaults overlaid
// with its overrides (send_settings.settings), bounded by the operator's
// Limits (Config.SendLimits, ZAPBUS_SEND_*).
func (s *Server) sendingRoutes() []route {
	tenant := func(h http.HandlerFunc) http.Handler { return s.mentoradoAuth(h) }
	return []route{
		{"GET", "/v1/sending", tenant(s.handleGetSending)},
		{"PATCH", "/v1/sending", tenant(s.handlePatchSending)},
		{"POST", "/v1/sending/resume", tenant(s.handleResumeSending)},
		{"GET", "/v1/opt-outs", tenant(s.handleListOptOuts)},
		{"POST", "/v1/opt-outs", tenant(s.handleAddOptOut)},
		{"DELETE", "/v1/opt-outs/{phone}", tenant(s.handleRemoveOptOut)},
	}
}

// apiSending is GET /v1/sending: the effective settings, the operator's
// limits, whether bulk sending is paused and today's unsolicited sends.
type apiSending struct {
	Settings outbound.Settings `json:"settings"`
	Limits   outbound.Limits   `json:"limits"`
	Bulk     apiBulk           `json:"bulk"`
	Today    apiSendDay        `json:"today"`
}

type apiBulk struct {
	State    event.BulkState `json:"state"`
	Reason   string          `json:"reason,omitempty"`
	PausedAt *time.Time      `json:"paused_at,omitempty"`
}

type apiSendDay struct {
	Day         string `json:"day"` // UTC
	Unsolicited int    `json:"unsolicited"`
	DailyCap    int    `json:"daily_cap"`
}

func (s *Server) sendingState(r *http.Request, m int64) (apiSending, error) {
	st, row, err := outbound.LoadSettings(r.Context(), s.db, m)
	if err != nil {
		return apiSending{}, err
	}
	now := time.Now().UTC()
	n, err := s.db.Campaigns().UnsolicitedOn(r.Context(), m, now)
	if err != nil {
		return apiSending{}, err
	}
	out := apiSending{Settings: st, Limits: s.cfg.SendLimits, Bulk: apiBulk{State: event.BulkActive},
		Today: apiSendDay{Day: now.Format(time.DateOnly), Unsolicited: n, DailyCap: st.DailyCap}}
	if out.Settings.OptOutKeywords == nil {
		out.Settings.OptOutKeywords = []string{}
	}
	if row.PausedAt != nil {
		out.Bulk = apiBulk{State: event.BulkPaused, Reason: row.PauseReason, PausedAt: utcPtr(row.PausedAt)}
	}
	return out, nil
}

func (s *Server) handleGetSending(w http.ResponseWriter, r *http.Request) {
	out, err := s.sendingState(r, mustMentorado(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// handlePatchSending changes the mentorado's settings by a merge-patch:
// 200 with the state as GET shows it, 422 invalid_field naming a setting
// that is unknown or beyond the operator's limits.
func (s *Server) handlePatchSending(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	var patch json.RawMessage
	if err := s.decodeJSON(w, r, &patch); err != nil {
		s.writeError(w, r, err)
		return
	}
	row, err := s.db.SendSettings(r.Context(), m)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// The overrides over the defaults, as LoadSettings will read them,
	// must pass the operator's limits.
	merged, _, err := outbound.PatchOverrides(row.Settings, patch, s.cfg.SendLimits)
	if err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	if err := s.db.Campaigns().SaveSendSettings(r.Context(), m, merged, time.Now()); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.handleGetSending(w, r)
}

// handleResumeSending ends the mentorado's bulk pause and resumes the
// campaigns the system paused (a ban, a run of send errors). The notifier
// publishes no event (its NATS user may not): the session's outbound
// worker sees the pause cleared at its next poll and publishes the
// sending event (resumed).
func (s *Server) handleResumeSending(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	now := time.Now()
	_, ids, err := s.db.Campaigns().ResumeBulk(r.Context(), m, now)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ids == nil {
		ids = []int64{}
	}
	out, err := s.sendingState(r, m)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		apiSending
		ResumedCampaigns []int64 `json:"resumed_campaigns"`
	}{out, ids})
}

// apiOptOut is an opt-out as the API shows it.
type apiOptOut struct {
	Phone     string    `json:"phone"`
	Source    string    `json:"source"` // keyword | api
	Keyword   string    `json:"keyword,omitempty"`
	MessageID string    `json:"message_id,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func fromOptOutRow(o store.OptOutRow) apiOptOut {
	return apiOptOut{Phone: o.Phone, Source: o.Source, Keyword: o.Keyword, MessageID: o.WAMessageID, CreatedAt: o.CreatedAt.UTC()}
}

type optOutsResponse struct {
	OptOuts    []apiOptOut `json:"opt_outs"`
	NextCursor string      `json:"next_cursor,omitempty"`
}

// handleListOptOuts lists the mentorado's opt-outs by phone.
func (s *Server) handleListOptOuts(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	limit, err := parseLimit(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	after := r.URL.Query().Get("cursor")
	if after != "" {
		if _, err := phone.Normalize(after); err != nil {
			s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "invalid cursor"))
			return
		}
	}
	rows, err := s.db.Campaigns().OptOuts(r.Context(), m, after, limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := optOutsResponse{OptOuts: []apiOptOut{}}
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextCursor = url.QueryEscape(rows[limit-1].Phone)
	}
	for _, o := range rows {
		out.OptOuts = append(out.OptOuts, fromOptOutRow(o))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleAddOptOut opts a phone out of the mentorado's campaigns: 201 when
// new, 200 when it already was.
func (s *Server) handleAddOptOut(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	var req struct {
		Phone string `json:"phone"`
	}
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := leadPhone("phone", req.Phone)
	if err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	o, created, err := s.db.Campaigns().AddOptOut(r.Context(), m, p, time.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, fromOptOutRow(o))
}

// handleRemoveOptOut lets campaigns reach a phone again (204; 404 when it
// was not opted out).
func (s *Server) handleRemoveOptOut(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	p, err := pathPhone(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.db.Campaigns().RemoveOptOut(r.Context(), m, p); err != nil {
		if err == store.ErrNotFound {
			s.writeError(w, r, errorf(http.StatusNotFound, codeNotFound, "this phone is not opted out"))
			return
		}
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
