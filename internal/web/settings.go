package web

import (
	"net/http"

	"github.com/zapbus/zapbus/internal/store"
)

// apiSettings are a mentorado's lead creation settings
// (docs/api.md#settings).
type apiSettings struct {
	GroupLeads      bool   `json:"group_leads"`
	HistoryLeads    string `json:"history_leads"`
	HistoryLeadDays int32  `json:"history_lead_days"`
}

// settingsPatch is PATCH /v1/settings: the fields given change.
type settingsPatch struct {
	GroupLeads      *bool   `json:"group_leads"`
	HistoryLeads    *string `json:"history_leads"`
	HistoryLeadDays *int32  `json:"history_lead_days"`
}

func fromSettings(s store.Settings) apiSettings {
	return apiSettings{GroupLeads: s.GroupLeads, HistoryLeads: s.HistoryLeads, HistoryLeadDays: s.HistoryLeadDays}
}

func (s *Server) handleGetSettings(w http.ResponseWriter, r *http.Request) {
	st, err := s.db.Mentorados().Settings(r.Context(), mustMentorado(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fromSettings(st))
}

// handlePatchSettings changes the settings given and answers with all of
// them as stored.
func (s *Server) handlePatchSettings(w http.ResponseWriter, r *http.Request) {
	var req settingsPatch
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if h := req.HistoryLeads; h != nil {
		switch *h {
		case store.HistoryLeadsNone, store.HistoryLeadsRecent, store.HistoryLeadsAll:
		default:
			s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "history_leads must be none, recent or all"))
			return
		}
	}
	if d := req.HistoryLeadDays; d != nil && (*d < 1 || *d > 3650) {
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "history_lead_days must be 1 to 3650"))
		return
	}
	st, err := s.db.Mentorados().UpdateSettings(r.Context(), mustMentorado(r), store.SettingsPatch{
		GroupLeads: req.GroupLeads, HistoryLeads: req.HistoryLeads, HistoryLeadDays: req.HistoryLeadDays})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fromSettings(st))
}
