package web

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/webhook"
)

// Webhook endpoints (docs/api.md#webhooks): /v1/webhooks for a mentorado's
// own endpoints (tenant token) and /v1/admin/webhooks for the admin-level
// ones, which receive every mentorado's events (admin token). The same
// handlers serve both, with the scope from the route: a tenant sees only
// its endpoints, the admin routes only the admin-level ones; anything else
// is 404. The signing secret is in the answer of create and rotate-secret
// only, and never logged.

// Webhook API error codes.
const (
	codeWebhookInvalid = "invalid_webhook" // 422: a URL, event type or start the API refuses
	codeWebhookLimit   = "webhook_limit"   // 409: the scope has MaxWebhooks endpoints
)

// webhookEventTypes are the event types an endpoint may subscribe to (QR
// codes are not delivered: they are short-lived secrets for the dashboard).
var webhookEventTypes = []event.Type{event.TypeMessage, event.TypeReceipt, event.TypeConnection, event.TypeContact,
	event.TypeMedia, event.TypeGroup, event.TypeHistory, event.TypeLead, event.TypeWebhook, event.TypeCampaign, event.TypeSending}

// webhookMaxStartAge is how far back a new endpoint may start (the
// stream's retention is longer; older starts are refused rather than
// silently cut).
const webhookMaxStartAge = 7 * 24 * time.Hour

// webhookSecretGrace is how long a rotated-out secret still signs.
const webhookSecretGrace = 24 * time.Hour

// webhookDeliveryOutcomes are the outcomes the delivery log filter takes.
var webhookDeliveryOutcomes = []string{store.DeliveryDelivered, store.DeliveryRetry, store.DeliveryDead,
	store.DeliveryGone, store.DeliveryRefused}

// webhookHandler serves one route for scope m (nil: admin-level).
type webhookHandler func(w http.ResponseWriter, r *http.Request, m *int64)

func (s *Server) webhookRoutes() []route {
	tenant := func(h webhookHandler) http.Handler {
		return s.mentoradoAuth(func(w http.ResponseWriter, r *http.Request) {
			m := mustMentorado(r)
			h(w, r, &m)
		})
	}
	admin := func(h webhookHandler) http.Handler {
		return s.adminAuth(func(w http.ResponseWriter, r *http.Request) { h(w, r, nil) })
	}
	var rs []route
	for _, g := range []struct {
		prefix string
		wrap   func(webhookHandler) http.Handler
	}{{"/v1/webhooks", tenant}, {"/v1/admin/webhooks", admin}} {
		p := g.prefix
		rs = append(rs,
			route{"POST", p, g.wrap(s.handleWebhookCreate)},
			route{"GET", p, g.wrap(s.handleWebhookList)},
			route{"GET", p + "/{id}", g.wrap(s.handleWebhookGet)},
			route{"PATCH", p + "/{id}", g.wrap(s.handleWebhookUpdate)},
			route{"DELETE", p + "/{id}", g.wrap(s.handleWebhookDelete)},
			route{"POST", p + "/{id}/rotate-secret", g.wrap(s.handleWebhookRotate)},
			route{"POST", p + "/{id}/pause", g.wrap(s.handleWebhookPause)},
			route{"POST", p + "/{id}/resume", g.wrap(s.handleWebhookResume)},
			route{"GET", p + "/{id}/deliveries", g.wrap(s.handleWebhookDeliveries)},
			route{"POST", p + "/{id}/redeliver", g.wrap(s.handleWebhookRedeliver)},
		)
	}
	return rs
}

// apiWebhook is an endpoint as the API shows it.
type apiWebhook struct {
	ID          int64    `json:"id"`
	URL         string   `json:"url"`
	Description string   `json:"description"`
	EventTypes  []string `json:"event_types"`
	// Secret is set only in the answers of create and rotate-secret.
	Secret              string           `json:"secret,omitempty"`
	PreviousSecretUntil *time.Time       `json:"previous_secret_until,omitempty"`
	State               string           `json:"state"`
	StateReason         string           `json:"state_reason"`
	StateAt             time.Time        `json:"state_at"`
	Health              apiWebhookHealth `json:"health"`
	Generation          int              `json:"generation"`
	StartTime           time.Time        `json:"start_time"`
	StartSeq            *int64           `json:"start_sequence,omitempty"`
	CreatedAt           time.Time        `json:"created_at"`
	UpdatedAt           time.Time        `json:"updated_at"`
}

type apiWebhookHealth struct {
	ConsecutiveFailures int        `json:"consecutive_failures"`
	FailingSince        *time.Time `json:"failing_since"`
	LastSuccessAt       *time.Time `json:"last_success_at"`
	LastFailureAt       *time.Time `json:"last_failure_at"`
}

// fromWebhook is w without its secrets.
func fromWebhook(w store.Webhook) apiWebhook {
	out := apiWebhook{ID: w.ID, URL: w.URL, Description: w.Description, EventTypes: w.EventTypes,
		State: w.State, StateReason: w.StateReason, StateAt: w.StateAt.UTC(), Generation: w.Generation,
		StartTime: w.StartTime.UTC(), StartSeq: w.StartSeq, CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.UpdatedAt.UTC(),
		Health: apiWebhookHealth{ConsecutiveFailures: w.ConsecutiveFailures, FailingSince: webhookUTC(w.FailingSince),
			LastSuccessAt: webhookUTC(w.LastSuccessAt), LastFailureAt: webhookUTC(w.LastFailureAt)}}
	if out.EventTypes == nil {
		out.EventTypes = []string{}
	}
	if u := w.PreviousSecretUntil; u != nil && u.After(time.Now()) {
		out.PreviousSecretUntil = webhookUTC(u)
	}
	return out
}

func webhookUTC(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

type webhookListResponse struct {
	Webhooks  []apiWebhook `json:"webhooks"`
	NextAfter string       `json:"next_after,omitempty"`
}

type webhookCreateRequest struct {
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description"`
	// Start is "now" (default) or an RFC 3339 time at most 7 days ago.
	Start string `json:"start"`
}

type webhookPatchRequest struct {
	URL         *string  `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description *string  `json:"description"`
}

type webhookRedeliverRequest struct {
	FromDeliveryID *string `json:"from_delivery_id"`
	FromSequence   *int64  `json:"from_sequence"`
	FromTime       *string `json:"from_time"`
}

// apiWebhookDelivery is one attempt of the delivery log.
type apiWebhookDelivery struct {
	ID          int64     `json:"id"`
	DeliveryID  string    `json:"delivery_id"`
	EventID     string    `json:"event_id"`
	EventType   string    `json:"event_type"`
	Sequence    int64     `json:"sequence"`
	Attempt     int       `json:"attempt"`
	Outcome     string    `json:"outcome"`
	StatusCode  *int      `json:"status_code"`
	LatencyMS   int       `json:"latency_ms"`
	Error       string    `json:"error"`
	AttemptedAt time.Time `json:"attempted_at"`
}

type webhookDeliveriesResponse struct {
	Deliveries []apiWebhookDelivery `json:"deliveries"`
	NextBefore string               `json:"next_before,omitempty"`
}

func webhookInvalid(format string, args ...any) *apiError {
	return errorf(http.StatusUnprocessableEntity, codeWebhookInvalid, format, args...)
}

var errWebhookNotFound = errorf(http.StatusNotFound, codeNotFound, "no such webhook")

// webhookStoreError maps the store's errors to the API's.
func webhookStoreError(err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errWebhookNotFound
	case errors.Is(err, store.ErrWebhookLimit):
		return errorf(http.StatusConflict, codeWebhookLimit, "too many webhook endpoints; delete one first")
	}
	return err
}

// webhookID is the {id} path value.
func webhookID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, errWebhookNotFound
	}
	return id, nil
}

// webhookCheckURL applies the URL policy (SSRF protection).
func (s *Server) webhookCheckURL(ctx context.Context, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", webhookInvalid("url is required")
	}
	if len(raw) > 2048 {
		return "", webhookInvalid("url is longer than 2048 characters")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	u, err := s.cfg.WebhookPolicy.CheckURL(ctx, raw)
	if err != nil {
		return "", webhookInvalid("url: %s", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return "", webhookInvalid("url must be an absolute https URL")
	}
	if u.Scheme == "http" && !s.cfg.WebhookPolicy.AllowHTTP {
		return "", webhookInvalid("url must use https")
	}
	return raw, nil
}

// webhookCheckTypes validates an event type filter and returns it sorted,
// without repeats.
func webhookCheckTypes(types []string) ([]string, error) {
	if len(types) == 0 {
		return nil, webhookInvalid("event_types must name at least one of %s", webhookTypeList())
	}
	out := make([]string, 0, len(types))
	for _, t := range types {
		if !slices.Contains(webhookEventTypes, event.Type(t)) {
			return nil, webhookInvalid("event_types: unknown event type %q; allowed: %s", t, webhookTypeList())
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

func webhookTypeList() string {
	s := make([]string, len(webhookEventTypes))
	for i, t := range webhookEventTypes {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func webhookCheckDescription(d string) error {
	if len([]rune(d)) > 500 {
		return webhookInvalid("description is longer than 500 characters")
	}
	return nil
}

// webhookParseTime parses a past RFC 3339 time of field name, at most
// maxAge ago (0: no bound).
func webhookParseTime(name, v string, maxAge time.Duration) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, webhookInvalid("%s must be \"now\" or an RFC 3339 time such as 2026-01-02T15:04:05Z", name)
	}
	now := time.Now()
	if t.After(now) {
		return time.Time{}, webhookInvalid("%s is in the future", name)
	}
	if maxAge > 0 && t.Before(now.Add(-maxAge)) {
		return time.Time{}, webhookInvalid("%s is more than %d days ago", name, int(maxAge/(24*time.Hour)))
	}
	return t, nil
}

// handleWebhookCreate adds an endpoint; the answer is the only time its
// secret is shown, besides rotate-secret.
func (s *Server) handleWebhookCreate(w http.ResponseWriter, r *http.Request, m *int64) {
	var req webhookCreateRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := s.webhookCreateInput(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wh, err := s.db.WebhookAPI().Create(r.Context(), m, in)
	if err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	s.webhookLog(r, m, wh.ID).Msg("webhook created")
	out := fromWebhook(wh)
	out.Secret = wh.Secret
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) webhookCreateInput(ctx context.Context, req webhookCreateRequest) (store.WebhookCreate, error) {
	in := store.WebhookCreate{Description: req.Description, StartTime: time.Now(), Max: s.cfg.MaxWebhooks}
	var err error
	if in.URL, err = s.webhookCheckURL(ctx, req.URL); err != nil {
		return in, err
	}
	if in.EventTypes, err = webhookCheckTypes(req.EventTypes); err != nil {
		return in, err
	}
	if err := webhookCheckDescription(req.Description); err != nil {
		return in, err
	}
	if st := strings.TrimSpace(req.Start); st != "" && st != "now" {
		if in.StartTime, err = webhookParseTime("start", st, webhookMaxStartAge); err != nil {
			return in, err
		}
	}
	if in.Secret, err = webhook.NewSecret(); err != nil {
		return in, err
	}
	return in, nil
}

// handleWebhookList lists the scope's endpoints by id; pass next_after as
// ?after= for the next page.
func (s *Server) handleWebhookList(w http.ResponseWriter, r *http.Request, m *int64) {
	limit, err := parseLimit(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var after int64
	if v := r.URL.Query().Get("after"); v != "" {
		if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
			s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "after must be a webhook id"))
			return
		}
	}
	rows, err := s.db.WebhookAPI().List(r.Context(), m, after, limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := webhookListResponse{Webhooks: []apiWebhook{}}
	for i, wh := range rows {
		if i == limit {
			out.NextAfter = strconv.FormatInt(rows[limit-1].ID, 10)
			break
		}
		out.Webhooks = append(out.Webhooks, fromWebhook(wh))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleWebhookGet(w http.ResponseWriter, r *http.Request, m *int64) {
	id, err := webhookID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wh, err := s.db.WebhookAPI().Get(r.Context(), m, id)
	if err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	writeJSON(w, http.StatusOK, fromWebhook(wh))
}

// handleWebhookUpdate changes the url, event types or description given.
// New event types change the consumer's filter in place: its position is
// kept (store.WebhookPatch).
func (s *Server) handleWebhookUpdate(w http.ResponseWriter, r *http.Request, m *int64) {
	id, err := webhookID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req webhookPatchRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	// The endpoint must be the caller's before its URL is resolved.
	if _, err := s.db.WebhookAPI().Get(r.Context(), m, id); err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	var p store.WebhookPatch
	if req.URL != nil {
		u, err := s.webhookCheckURL(r.Context(), *req.URL)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		p.URL = &u
	}
	if req.EventTypes != nil {
		if p.EventTypes, err = webhookCheckTypes(req.EventTypes); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if req.Description != nil {
		if err := webhookCheckDescription(*req.Description); err != nil {
			s.writeError(w, r, err)
			return
		}
		p.Description = req.Description
	}
	wh, err := s.db.WebhookAPI().Update(r.Context(), m, id, p)
	if err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	s.webhookLog(r, m, id).Int("generation", wh.Generation).Msg("webhook updated")
	writeJSON(w, http.StatusOK, fromWebhook(wh))
}

func (s *Server) handleWebhookDelete(w http.ResponseWriter, r *http.Request, m *int64) {
	id, err := webhookID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.db.WebhookAPI().Delete(r.Context(), m, id); err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	s.webhookLog(r, m, id).Msg("webhook deleted")
	w.WriteHeader(http.StatusNoContent)
}

// handleWebhookRotate gives the endpoint a new secret, shown in the
// answer; the old one still signs (a second signature) until
// previous_secret_until.
func (s *Server) handleWebhookRotate(w http.ResponseWriter, r *http.Request, m *int64) {
	id, err := webhookID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	secret, err := webhook.NewSecret()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wh, err := s.db.WebhookAPI().RotateSecret(r.Context(), m, id, secret, webhookSecretGrace)
	if err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	s.webhookLog(r, m, id).Msg("webhook secret rotated")
	out := fromWebhook(wh)
	out.Secret = wh.Secret
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleWebhookPause(w http.ResponseWriter, r *http.Request, m *int64) {
	s.webhookSetState(w, r, m, store.WebhookAPIQueries.Pause, "webhook paused")
}

func (s *Server) handleWebhookResume(w http.ResponseWriter, r *http.Request, m *int64) {
	s.webhookSetState(w, r, m, store.WebhookAPIQueries.Resume, "webhook resumed")
}

func (s *Server) webhookSetState(w http.ResponseWriter, r *http.Request, m *int64,
	set func(store.WebhookAPIQueries, context.Context, *int64, int64) (store.Webhook, error), msg string) {
	id, err := webhookID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	wh, err := set(s.db.WebhookAPI(), r.Context(), m, id)
	if err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	s.webhookLog(r, m, id).Msg(msg)
	writeJSON(w, http.StatusOK, fromWebhook(wh))
}

// handleWebhookDeliveries is the endpoint's delivery log, newest first;
// pass next_before as ?before= for the next page.
func (s *Server) handleWebhookDeliveries(w http.ResponseWriter, r *http.Request, m *int64) {
	id, err := webhookID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	limit, err := parseLimit(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q := r.URL.Query()
	f := store.WebhookDeliveryFilter{Limit: limit + 1, Outcome: q.Get("outcome")}
	if v := q.Get("before"); v != "" {
		if f.Before, err = strconv.ParseInt(v, 10, 64); err != nil || f.Before <= 0 {
			s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "before must be a delivery log id"))
			return
		}
	}
	if f.Outcome != "" && !slices.Contains(webhookDeliveryOutcomes, f.Outcome) {
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "outcome must be one of %s",
			strings.Join(webhookDeliveryOutcomes, ", ")))
		return
	}
	rows, err := s.db.WebhookAPI().Deliveries(r.Context(), m, id, f)
	if err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	out := webhookDeliveriesResponse{Deliveries: []apiWebhookDelivery{}}
	for i, d := range rows {
		if i == limit {
			out.NextBefore = strconv.FormatInt(rows[limit-1].ID, 10)
			break
		}
		out.Deliveries = append(out.Deliveries, apiWebhookDelivery{ID: d.ID, DeliveryID: d.DeliveryID, EventID: d.EventID,
			EventType: d.EventType, Sequence: d.StreamSeq, Attempt: d.Attempt, Outcome: d.Outcome, StatusCode: d.StatusCode,
			LatencyMS: d.LatencyMS, Error: d.Error, AttemptedAt: d.AttemptedAt.UTC()})
	}
	writeJSON(w, http.StatusOK, out)
}

// handleWebhookRedeliver restarts the endpoint's delivery from a delivery
// of its log, a stream sequence or a time: everything of its filter from
// there is delivered again (with the same delivery ids), then what
// follows. The dispatcher does it asynchronously: 202.
func (s *Server) handleWebhookRedeliver(w http.ResponseWriter, r *http.Request, m *int64) {
	id, err := webhookID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var req webhookRedeliverRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	n := 0
	for _, set := range []bool{req.FromDeliveryID != nil, req.FromSequence != nil, req.FromTime != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		s.writeError(w, r, webhookInvalid("give exactly one of from_delivery_id, from_sequence and from_time"))
		return
	}
	q := s.db.WebhookAPI()
	if _, err := q.Get(r.Context(), m, id); err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	var seq *int64
	var from time.Time
	switch {
	case req.FromDeliveryID != nil:
		v, err := q.DeliverySeq(r.Context(), m, id, *req.FromDeliveryID)
		if errors.Is(err, store.ErrNotFound) {
			s.writeError(w, r, errorf(http.StatusNotFound, codeNotFound, "no delivery with that id in this webhook's log"))
			return
		} else if err != nil {
			s.writeError(w, r, err)
			return
		}
		seq = &v
	case req.FromSequence != nil:
		if *req.FromSequence < 1 {
			s.writeError(w, r, webhookInvalid("from_sequence must be positive"))
			return
		}
		seq = req.FromSequence
	default:
		if from, err = webhookParseTime("from_time", *req.FromTime, 0); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	wh, err := q.Redeliver(r.Context(), m, id, seq, from)
	if err != nil {
		s.writeError(w, r, webhookStoreError(err))
		return
	}
	s.webhookLog(r, m, id).Int("generation", wh.Generation).Msg("webhook redelivery requested")
	writeJSON(w, http.StatusAccepted, fromWebhook(wh))
}

// webhookLog starts an info line about endpoint id (never its URL, whose
// path or query may hold the receiver's own secret, nor its secret).
func (s *Server) webhookLog(r *http.Request, m *int64, id int64) *zerolog.Event {
	ev := s.log.Info().Str("route", routeOf(r)).Int64("webhook_id", id)
	if m != nil {
		ev = ev.Int64("mentorado_id", *m)
	} else {
		ev = ev.Bool("admin_level", true)
	}
	return ev
}
