package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// Campaigns: /v1/campaigns (issue #14, docs/api.md#campaigns). The
// notifier creates a campaign with its recipients (normalised,
// de-duplicated, each text rendered from its lead) in one transaction and
// moves it through its lifecycle; the connector's worker that owns the
// mentorado sends it under the pacer, the persister publishes its
// progress (campaign events).
func (s *Server) campaignRoutes() []route {
	tenant := func(h http.HandlerFunc) http.Handler { return s.mentoradoAuth(h) }
	return []route{
		{"POST", "/v1/campaigns", tenant(s.handleCreateCampaign)},
		{"GET", "/v1/campaigns", tenant(s.handleListCampaigns)},
		{"GET", "/v1/campaigns/{id}", tenant(s.handleGetCampaign)},
		{"DELETE", "/v1/campaigns/{id}", tenant(s.handleDeleteCampaign)},
		{"POST", "/v1/campaigns/{id}/schedule", tenant(s.campaignChange(store.CampaignSchedule))},
		{"POST", "/v1/campaigns/{id}/pause", tenant(s.campaignChange(store.CampaignPause))},
		{"POST", "/v1/campaigns/{id}/resume", tenant(s.campaignChange(store.CampaignResume))},
		{"POST", "/v1/campaigns/{id}/cancel", tenant(s.campaignChange(store.CampaignCancel))},
		{"GET", "/v1/campaigns/{id}/recipients", tenant(s.handleCampaignRecipients)},
	}
}

// Limits of a campaign.
const (
	campaignMaxRecipients = 100_000
	campaignMaxName       = 200
	// campaignMaxBody caps a create request: 100,000 phones do not fit
	// the API's usual 1 MiB.
	campaignMaxBody = 8 << 20
	// campaignMaxListed bounds the bad phones a 422 names.
	campaignMaxListed = 20
)

// Error codes of the campaigns API.
const (
	codeCampaignNotFound = "campaign_not_found" // 404
	codeCampaignState    = "campaign_state"     // 409: the campaign's state does not allow it; "state" is the current one
)

// campaignErrorDetail is the API's error shape with the campaigns API's
// extras: the field at fault, the entries it refused, the current state.
type campaignErrorDetail struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Field   string   `json:"field,omitempty"`
	Invalid []string `json:"invalid,omitempty"`
	State   string   `json:"state,omitempty"`
}

// campaignListError is a 422 naming the entries of a list field at fault
// (phones that are not phone numbers).
type campaignListError struct {
	Field   string
	Message string
	Invalid []string
}

func (e *campaignListError) Error() string { return e.Field + ": " + e.Message }

// writeCampaignError writes the campaigns and sending APIs' errors and
// everything else as writeError does.
func (s *Server) writeCampaignError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *leadFieldError
	var le *campaignListError
	var ofe *outbound.FieldError
	var se *store.CampaignStateError
	switch {
	case errors.As(err, &fe):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]campaignErrorDetail{"error": {Code: fe.Code, Message: fe.Error(), Field: fe.Field}})
	case errors.As(err, &le):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]campaignErrorDetail{"error": {Code: codeInvalidField, Message: le.Error(),
			Field: le.Field, Invalid: le.Invalid}})
	case errors.As(err, &ofe):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]campaignErrorDetail{"error": {Code: codeInvalidField, Message: ofe.Error(), Field: ofe.Field}})
	case errors.As(err, &se):
		writeJSON(w, http.StatusConflict, map[string]campaignErrorDetail{"error": {Code: codeCampaignState,
			Message: fmt.Sprintf("the campaign is %s", se.State), State: string(se.State)}})
	case errors.Is(err, store.ErrNotFound):
		s.writeError(w, r, errorf(http.StatusNotFound, codeCampaignNotFound, "no such campaign"))
	default:
		s.writeError(w, r, err)
	}
}

// apiCampaign is a campaign as the API shows it.
type apiCampaign struct {
	ID          int64                 `json:"id"`
	Name        string                `json:"name"`
	State       event.CampaignState   `json:"state"`
	PauseReason string                `json:"pause_reason,omitempty"`
	Message     store.CampaignMessage `json:"message"`
	Pacing      json.RawMessage       `json:"pacing"`
	Source      json.RawMessage       `json:"source"`
	StartAt     *time.Time            `json:"start_at,omitempty"`
	Counts      event.CampaignCounts  `json:"counts"`
	CreatedAt   time.Time             `json:"created_at"`
	UpdatedAt   time.Time             `json:"updated_at"`
	StartedAt   *time.Time            `json:"started_at,omitempty"`
	FinishedAt  *time.Time            `json:"finished_at,omitempty"`
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func fromCampaignRow(c store.CampaignRow, counts event.CampaignCounts) apiCampaign {
	if counts.Total == 0 {
		counts.Total = c.Total
		counts.Pending = c.Total
	}
	return apiCampaign{ID: c.ID, Name: c.Name, State: c.State, PauseReason: c.PauseReason, Message: c.Message,
		Pacing: c.Pacing, Source: c.Source, StartAt: utcPtr(c.StartAt), Counts: counts, CreatedAt: c.CreatedAt.UTC(),
		UpdatedAt: c.UpdatedAt.UTC(), StartedAt: utcPtr(c.StartedAt), FinishedAt: utcPtr(c.FinishedAt)}
}

// withCounts shows campaigns with their recipients' counts.
func (s *Server) withCounts(r *http.Request, cs []store.CampaignRow) ([]apiCampaign, error) {
	ids := make([]int64, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	counts, err := s.db.CampaignCounts(r.Context(), ids)
	if err != nil {
		return nil, err
	}
	out := make([]apiCampaign, len(cs))
	for i, c := range cs {
		out[i] = fromCampaignRow(c, counts[c.ID])
	}
	return out, nil
}

// campaignCreateRequest is POST /v1/campaigns.
type campaignCreateRequest struct {
	Name       string                `json:"name"`
	Message    campaignMessage       `json:"message"`
	Recipients campaignRecipientsReq `json:"recipients"`
	StartAt    *time.Time            `json:"start_at"`
	Pacing     json.RawMessage       `json:"pacing"`
	Draft      bool                  `json:"draft"`
}

type campaignMessage struct {
	Kind     event.Kind `json:"kind"`
	Text     string     `json:"text"`
	MediaID  string     `json:"media_id"`
	Caption  string     `json:"caption"`
	FileName string     `json:"file_name"`
}

// campaignRecipientsReq is a list of phones or a lead filter (the leads
// list's query parameters as a JSON object; tag may be a list).
type campaignRecipientsReq struct {
	Phones     []string                   `json:"phones"`
	LeadFilter map[string]json.RawMessage `json:"lead_filter"`
}

// campaignLeadFilter reads a JSON lead filter with the leads list's rules
// (parseLeadFilter): unknown fields are a 422 naming them.
func campaignLeadFilter(raw map[string]json.RawMessage) (store.LeadFilter, error) {
	q := url.Values{}
	for k, v := range raw {
		var one string
		var many []string
		switch {
		case json.Unmarshal(v, &one) == nil:
			q.Set(k, one)
		case k == "tag" && json.Unmarshal(v, &many) == nil:
			q[k] = many
		default:
			return store.LeadFilter{}, invalidField("recipients.lead_filter."+k, "must be a string (tag: a string or a list of strings)")
		}
	}
	f, err := parseLeadFilter(q)
	var fe *leadFieldError
	if errors.As(err, &fe) {
		fe.Field = "recipients.lead_filter." + fe.Field
		fe.Message = strings.Replace(fe.Message, "query parameter(s)", "lead filter field(s)", 1)
	}
	return f, err
}

// campaignPlaceholderPhone addresses the message while its rules are
// checked, before any recipient is known.
const campaignPlaceholderPhone = "5511999999999"

// checkMessage validates the campaign message (the send rules, the
// template's variables, the media file) and returns it as stored.
func (s *Server) checkCampaignMessage(r *http.Request, m int64, req campaignMessage) (store.CampaignMessage, error) {
	msg := store.CampaignMessage{Kind: req.Kind, Text: req.Text, MediaID: req.MediaID, Caption: req.Caption, FileName: req.FileName}
	if msg.Kind == "" {
		msg.Kind = event.KindText
	}
	cmd := event.SendRequest{Phone: campaignPlaceholderPhone, Kind: msg.Kind, Text: msg.Text, MediaID: msg.MediaID,
		Caption: msg.Caption, FileName: msg.FileName}
	if ce := cmd.Validate(); ce != nil {
		return msg, invalidField("message", "%s", ce.Message)
	}
	if msg.Kind == event.KindText {
		if err := outbound.CheckTemplate("message.text", msg.Text); err != nil {
			return msg, err
		}
		return msg, nil
	}
	if err := outbound.CheckTemplate("message.caption", msg.Caption); err != nil {
		return msg, err
	}
	return msg, s.checkSendMedia(r, m, cmd)
}

// campaignPhones normalises and de-duplicates a list of phones; bad
// entries are a 422 listing them.
func campaignPhones(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	seen := make(map[string]bool, len(in))
	var bad []string
	for _, p := range in {
		n, err := phone.Normalize(p)
		if err != nil {
			if len(bad) < campaignMaxListed {
				bad = append(bad, p)
			}
			continue
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if len(bad) > 0 {
		return nil, &campaignListError{Field: "recipients.phones", Message: "not valid phone numbers", Invalid: bad}
	}
	return out, nil
}

// campaignInput validates a create request into the campaign to store:
// its recipients materialised and each one's text rendered.
func (s *Server) campaignInput(r *http.Request, m int64, req campaignCreateRequest, now time.Time) (store.CampaignInput, error) {
	in := store.CampaignInput{State: event.CampaignScheduled}
	if req.Draft {
		in.State = event.CampaignDraft
	}
	var err error
	if in.Name, err = leadText("name", req.Name, campaignMaxName, false); err != nil {
		return in, err
	}
	if in.Message, err = s.checkCampaignMessage(r, m, req.Message); err != nil {
		return in, err
	}
	if req.StartAt != nil {
		if req.StartAt.Before(now) {
			return in, invalidField("start_at", "is in the past")
		}
		t := req.StartAt.UTC()
		in.StartAt = &t
	}
	settings, _, err := outbound.LoadSettings(r.Context(), s.db, m)
	if err != nil {
		return in, err
	}
	pacing, err := outbound.ResolvePacing(req.Pacing, settings, s.cfg.SendLimits)
	if err != nil {
		var fe *outbound.FieldError
		if errors.As(err, &fe) && !strings.HasPrefix(fe.Field, "pacing") {
			fe.Field = "pacing." + fe.Field
		}
		return in, err
	}
	if in.Pacing, err = json.Marshal(pacing); err != nil {
		return in, err
	}

	var leads []store.AudienceLead
	switch rc := req.Recipients; {
	case rc.Phones != nil && rc.LeadFilter != nil:
		return in, invalidField("recipients", "give phones or lead_filter, not both")
	case rc.LeadFilter != nil:
		f, err := campaignLeadFilter(rc.LeadFilter)
		if err != nil {
			return in, err
		}
		if leads, err = s.db.Campaigns().Audience(r.Context(), m, f, campaignMaxRecipients+1); err != nil {
			return in, err
		}
		if len(leads) == 0 {
			return in, invalidField("recipients.lead_filter", "matches no lead with a phone")
		}
		in.Source, _ = json.Marshal(map[string]any{"lead_filter": rc.LeadFilter})
	case len(rc.Phones) > campaignMaxRecipients:
		return in, invalidField("recipients.phones", "at most %d recipients", campaignMaxRecipients)
	case len(rc.Phones) > 0:
		phones, err := campaignPhones(rc.Phones)
		if err != nil {
			return in, err
		}
		known, err := s.db.Campaigns().LeadsByPhone(r.Context(), m, phones)
		if err != nil {
			return in, err
		}
		for _, p := range phones {
			l, ok := known[p]
			if !ok {
				l = store.AudienceLead{Phone: p}
			}
			leads = append(leads, l)
		}
		in.Source, _ = json.Marshal(map[string]any{"phones": len(phones)})
	default:
		return in, invalidField("recipients", "give phones (a non-empty list) or lead_filter")
	}
	if len(leads) > campaignMaxRecipients {
		return in, invalidField("recipients", "at most %d recipients", campaignMaxRecipients)
	}

	tmpl := in.Message.Text
	if in.Message.Kind != event.KindText {
		tmpl = in.Message.Caption
	}
	seen := make(map[string]bool, len(leads))
	in.Recipients = make([]store.RecipientInput, 0, len(leads))
	for _, l := range leads {
		if seen[l.Phone] {
			continue
		}
		seen[l.Phone] = true
		rc := store.RecipientInput{Phone: l.Phone, Name: l.Name}
		if l.ID > 0 {
			id := l.ID
			rc.LeadID = &id
		}
		rc.Text = outbound.Render(tmpl, outbound.Vars{Name: l.Name, Phone: l.Phone, Fields: l.Fields})
		if in.Message.Kind == event.KindText {
			if ce := event.CheckSendText(rc.Text); ce != nil {
				return in, invalidField("message.text", "for %s: %s", l.Phone, ce.Message)
			}
		} else if n := len([]rune(rc.Text)); n > event.MaxCaptionRunes {
			return in, invalidField("message.caption", "for %s: at most %d characters", l.Phone, event.MaxCaptionRunes)
		}
		in.Recipients = append(in.Recipients, rc)
	}
	return in, nil
}

// handleCreateCampaign creates a campaign: 201 with it, state draft or
// scheduled (it starts at start_at, or at once).
func (s *Server) handleCreateCampaign(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	var req campaignCreateRequest
	if err := s.decodeBodyLimit(w, r, &req, false, max(s.cfg.MaxBodyBytes, campaignMaxBody)); err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := s.campaignInput(r, m, req, time.Now())
	if err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	c, err := s.db.Campaigns().Create(r.Context(), m, in)
	if err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/campaigns/"+strconv.FormatInt(c.ID, 10))
	writeJSON(w, http.StatusCreated, fromCampaignRow(c, event.CampaignCounts{}))
}

type campaignsResponse struct {
	Campaigns  []apiCampaign `json:"campaigns"`
	NextCursor string        `json:"next_cursor,omitempty"`
}

// parseIDCursor reads ?cursor= as a row id this API gave (0 when absent).
func parseIDCursor(r *http.Request) (int64, error) {
	v := r.URL.Query().Get("cursor")
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, errorf(http.StatusBadRequest, codeBadRequest, "invalid cursor")
	}
	return id, nil
}

// handleListCampaigns lists the mentorado's campaigns newest first.
func (s *Server) handleListCampaigns(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	limit, err := parseLimit(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	before, err := parseIDCursor(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.db.Campaigns().List(r.Context(), m, before, limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := campaignsResponse{}
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextCursor = strconv.FormatInt(rows[limit-1].ID, 10)
	}
	if out.Campaigns, err = s.withCounts(r, rows); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// pathCampaignID is the {id} path value; anything but a positive integer
// names no campaign (404).
func pathCampaignID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrNotFound
	}
	return id, nil
}

func (s *Server) handleGetCampaign(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	id, err := pathCampaignID(r)
	if err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	c, err := s.db.Campaigns().Get(r.Context(), m, id)
	if err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	s.writeCampaign(w, r, http.StatusOK, c)
}

// writeCampaign answers with campaign c and its counts.
func (s *Server) writeCampaign(w http.ResponseWriter, r *http.Request, status int, c store.CampaignRow) {
	out, err := s.withCounts(r, []store.CampaignRow{c})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, out[0])
}

// campaignChange is a lifecycle route: 200 with the campaign as changed,
// 409 campaign_state with the current state when it does not allow it.
func (s *Server) campaignChange(ch store.CampaignChange) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := mustMentorado(r)
		id, err := pathCampaignID(r)
		if err != nil {
			s.writeCampaignError(w, r, err)
			return
		}
		c, err := s.db.Campaigns().Change(r.Context(), m, id, ch, time.Now())
		if err != nil {
			s.writeCampaignError(w, r, err)
			return
		}
		s.writeCampaign(w, r, http.StatusOK, c)
	}
}

// handleDeleteCampaign deletes a draft or ended campaign (204).
func (s *Server) handleDeleteCampaign(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	id, err := pathCampaignID(r)
	if err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	if err := s.db.Campaigns().Delete(r.Context(), m, id); err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// apiRecipient is a campaign recipient as the API shows it. Status is the
// state, or for a sent recipient its message's status.
type apiRecipient struct {
	ID        int64      `json:"id"`
	Phone     string     `json:"phone"`
	LeadID    *int64     `json:"lead_id,omitempty"`
	Name      string     `json:"name"`
	Text      string     `json:"text"`
	State     string     `json:"state"`
	Status    string     `json:"status"`
	Reason    string     `json:"reason,omitempty"`
	MessageID string     `json:"message_id,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
}

type recipientsResponse struct {
	Recipients []apiRecipient `json:"recipients"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

var recipientStates = []string{store.RecipientPending, store.RecipientSending, store.RecipientSent, store.RecipientSkipped,
	store.RecipientFailed, store.RecipientCancelled}

// handleCampaignRecipients lists a campaign's recipients in order,
// optionally only those in ?state=.
func (s *Server) handleCampaignRecipients(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	id, err := pathCampaignID(r)
	if err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	state := r.URL.Query().Get("state")
	if state != "" && !slices.Contains(recipientStates, state) {
		s.writeCampaignError(w, r, invalidField("state", "one of %s", strings.Join(recipientStates, ", ")))
		return
	}
	limit, err := parseLimit(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	after, err := parseIDCursor(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := s.db.Campaigns().Get(r.Context(), m, id); err != nil {
		s.writeCampaignError(w, r, err)
		return
	}
	rows, err := s.db.Campaigns().Recipients(r.Context(), m, id, state, after, limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := recipientsResponse{Recipients: []apiRecipient{}}
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextCursor = strconv.FormatInt(rows[limit-1].ID, 10)
	}
	for _, x := range rows {
		out.Recipients = append(out.Recipients, apiRecipient{ID: x.ID, Phone: x.Phone, LeadID: x.LeadID, Name: x.Name, Text: x.Text,
			State: x.State, Status: x.Status, Reason: x.Reason, MessageID: x.WAMessageID, UpdatedAt: x.UpdatedAt.UTC(), SentAt: utcPtr(x.SentAt)})
	}
	writeJSON(w, http.StatusOK, out)
}
