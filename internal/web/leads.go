package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// The CRM's leads: /v1/leads (docs/api.md#leads,
// docs/decisions/0018-leads-api.md). Writes go through store.LeadQueries,
// which serialises them with the persister (the mentorado's lock), makes
// an API-set name crm (never replaced by WhatsApp's names) and writes the
// lead event into the outbox the persister publishes.
func (s *Server) leadRoutes() []route {
	tenant := func(h http.HandlerFunc) http.Handler { return s.mentoradoAuth(h) }
	return []route{
		{"GET", "/v1/leads", tenant(s.handleListLeads)},
		{"POST", "/v1/leads", tenant(s.handleCreateLead)},
		{"GET", "/v1/leads/{id}", tenant(s.handleGetLead)},
		{"PATCH", "/v1/leads/{id}", tenant(s.handlePatchLead)},
		{"DELETE", "/v1/leads/{id}", tenant(s.handleDeleteLead)},
	}
}

// Limits of a lead's CRM data.
const (
	leadMaxName       = 200 // characters
	leadMaxStatus     = 50  // status and source
	leadMaxTags       = 50
	leadMaxTag        = 50
	leadMaxFields     = 50
	leadMaxFieldKey   = 64
	leadMaxFieldValue = 1000
	leadMaxQuery      = 200 // the list's q
)

// Error codes of the leads API.
const (
	codeInvalidField     = "invalid_field"     // 422: a value breaks a rule; "field" names it
	codeUnknownParameter = "unknown_parameter" // 422: a query parameter the route does not know
	codeLeadExists       = "lead_exists"       // 409: "lead_id" is the person's lead
	codeLeadNotFound     = "lead_not_found"    // 404
)

// leadFieldError is a 422 naming the request field at fault.
type leadFieldError struct {
	Code, Field, Message string
}

func (e *leadFieldError) Error() string { return e.Field + ": " + e.Message }

func invalidField(field, format string, args ...any) *leadFieldError {
	return &leadFieldError{Code: codeInvalidField, Field: field, Message: fmt.Sprintf(format, args...)}
}

// leadErrorDetail is the API's error shape with the leads API's extras.
type leadErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
	LeadID  int64  `json:"lead_id,omitempty"`
}

// writeLeadError writes the leads API's errors (422 with the field, 409
// with the existing lead, 404 lead_not_found) and everything else as
// writeError does.
func (s *Server) writeLeadError(w http.ResponseWriter, r *http.Request, err error) {
	var fe *leadFieldError
	var ex *store.LeadExistsError
	switch {
	case errors.As(err, &fe):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]leadErrorDetail{"error": {Code: fe.Code, Message: fe.Error(), Field: fe.Field}})
	case errors.As(err, &ex):
		writeJSON(w, http.StatusConflict, map[string]leadErrorDetail{"error": {Code: codeLeadExists,
			Message: fmt.Sprintf("this person already has lead %d", ex.ID), LeadID: ex.ID}})
	case errors.Is(err, store.ErrNotFound):
		s.writeError(w, r, errorf(http.StatusNotFound, codeLeadNotFound, "no such lead"))
	default:
		s.writeError(w, r, err)
	}
}

// apiLead is a lead as the API shows it.
type apiLead struct {
	ID         int64             `json:"id"`
	Phone      string            `json:"phone,omitempty"`
	LID        string            `json:"lid,omitempty"`
	Name       string            `json:"name"`
	NameSource string            `json:"name_source,omitempty"`
	Source     string            `json:"source"`
	Status     string            `json:"status"`
	Tags       []string          `json:"tags"`
	Fields     map[string]string `json:"fields"`
	CreatedAt  time.Time         `json:"created_at"`
	UpdatedAt  time.Time         `json:"updated_at"`
	// The lead's messages (edits and reactions not counted).
	MessageCount  int64      `json:"message_count"`
	LastMessageAt *time.Time `json:"last_message_at,omitempty"`
}

func fromLeadRow(l store.LeadRow) apiLead {
	out := apiLead{ID: l.ID, Phone: l.Phone, LID: l.LID, Name: l.Name, NameSource: l.NameSource, Source: l.Source,
		Status: l.Status, Tags: l.Tags, Fields: l.Fields, CreatedAt: l.CreatedAt.UTC(), UpdatedAt: l.UpdatedAt.UTC(),
		MessageCount: l.MessageCount}
	if l.LastMessageAt != nil {
		t := l.LastMessageAt.UTC()
		out.LastMessageAt = &t
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.Fields == nil {
		out.Fields = map[string]string{}
	}
	return out
}

type leadsResponse struct {
	Leads      []apiLead `json:"leads"`
	NextCursor string    `json:"next_cursor,omitempty"`
}

// Validation of the CRM's values. Each returns the value as stored or a
// *leadFieldError naming field.

// leadText checks a one-line text: trimmed, at most max characters, no
// control characters; empty only when allowEmpty.
func leadText(field, s string, max int, allowEmpty bool) (string, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "" && !allowEmpty:
		return "", invalidField(field, "must not be empty")
	case !utf8.ValidString(s):
		return "", invalidField(field, "must be UTF-8 text")
	case utf8.RuneCountInString(s) > max:
		return "", invalidField(field, "at most %d characters", max)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "", invalidField(field, "must not hold control characters")
	}
	return s, nil
}

var leadWord = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// leadKeyword checks a status or source: 1 to 50 of A-Z a-z 0-9 _ . -
func leadKeyword(field, s string) (string, error) {
	if s == "" || len(s) > leadMaxStatus || !leadWord.MatchString(s) {
		return "", invalidField(field, "1 to %d of the characters A-Z a-z 0-9 _ . -", leadMaxStatus)
	}
	return s, nil
}

func leadPhone(field, s string) (string, error) {
	p, err := phone.Normalize(s)
	if err != nil {
		return "", invalidField(field, "not a valid phone number")
	}
	return p, nil
}

func leadLID(field, s string) (string, error) {
	if !strings.HasSuffix(s, "@"+event.ServerLID) || event.KindOfChat(s) != event.ChatDirect || len(s) > 64 {
		return "", invalidField(field, "a LID is <digits>@lid")
	}
	return s, nil
}

// leadTags checks a tag list; duplicates are dropped (first one kept).
func leadTags(tags []string) ([]string, error) {
	if len(tags) > leadMaxTags {
		return nil, invalidField("tags", "at most %d tags", leadMaxTags)
	}
	out := make([]string, 0, len(tags))
	for i, t := range tags {
		t, err := leadText(fmt.Sprintf("tags[%d]", i), t, leadMaxTag, false)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out, nil
}

func leadFieldKey(k string) error {
	if k == "" || !utf8.ValidString(k) || utf8.RuneCountInString(k) > leadMaxFieldKey || strings.IndexFunc(k, unicode.IsControl) >= 0 {
		return invalidField("fields", "keys are 1 to %d characters without control characters", leadMaxFieldKey)
	}
	return nil
}

func leadFieldValue(k, v string) error {
	bad := func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\r' && r != '\t' }
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > leadMaxFieldValue || strings.IndexFunc(v, bad) >= 0 {
		return invalidField("fields."+k, "at most %d characters, no control characters but line breaks and tabs", leadMaxFieldValue)
	}
	return nil
}

func leadFieldsCount(n int) error {
	if n > leadMaxFields {
		return invalidField("fields", "at most %d fields", leadMaxFields)
	}
	return nil
}

// leadFilterParams are the query parameters of a lead filter.
var leadFilterParams = []string{"q", "phone", "source", "status", "tag", "created_after", "created_before"}

// parseLeadFilter reads a lead filter from query parameters (q, phone,
// source, status, tag (repeatable: every one), created_after,
// created_before). Any parameter that is neither a filter's nor one of
// extra is refused (422 unknown_parameter naming them), as are bad values
// (422 invalid_field). Routes that select leads (the list, a campaign's
// audience) share it.
func parseLeadFilter(q url.Values, extra ...string) (store.LeadFilter, error) {
	var f store.LeadFilter
	var unknown []string
	for k, vs := range q {
		switch {
		case k == "":
			// "?=x": no parameter a client meant; ignored.
		case !slices.Contains(leadFilterParams, k) && !slices.Contains(extra, k):
			unknown = append(unknown, k)
		case len(vs) > 1 && k != "tag":
			return f, invalidField(k, "given more than once")
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return f, &leadFieldError{Code: codeUnknownParameter, Field: unknown[0],
			Message: fmt.Sprintf("unknown query parameter(s) %s; known: %s", strings.Join(unknown, ", "),
				strings.Join(append(slices.Clone(leadFilterParams), extra...), ", "))}
	}
	var err error
	if v := q.Get("q"); v != "" {
		if f.Q, err = leadText("q", v, leadMaxQuery, true); err != nil {
			return f, err
		}
	}
	if v := q.Get("phone"); v != "" {
		if f.Phone, err = leadPhone("phone", v); err != nil {
			return f, err
		}
	}
	if v := q.Get("source"); v != "" {
		if f.Source, err = leadKeyword("source", v); err != nil {
			return f, err
		}
	}
	if v := q.Get("status"); v != "" {
		if f.Status, err = leadKeyword("status", v); err != nil {
			return f, err
		}
	}
	if vs := q["tag"]; len(vs) > 0 {
		if f.Tags, err = leadTags(vs); err != nil {
			var fe *leadFieldError
			if errors.As(err, &fe) {
				fe.Field = "tag"
			}
			return f, err
		}
	}
	for _, c := range []struct {
		name string
		dst  **time.Time
	}{{"created_after", &f.CreatedAfter}, {"created_before", &f.CreatedBefore}} {
		if v := q.Get(c.name); v != "" {
			t, err := parseLeadTime(v)
			if err != nil {
				return f, invalidField(c.name, "an RFC 3339 time (2026-11-29T12:00:00Z) or a date (2026-11-29)")
			}
			*c.dst = &t
		}
	}
	return f, nil
}

// parseLeadTime reads an RFC 3339 time or a date (midnight UTC).
func parseLeadTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Parse(time.DateOnly, s)
}

// leadListQuery is GET /v1/leads's query: the filter and the page.
type leadListQuery struct {
	Filter store.LeadFilter
	Limit  int
	After  *store.LeadKeyset
}

// parseLeadList reads the list's query: the filter, limit (1 to 200,
// default 50) and cursor (the previous page's next_cursor).
func parseLeadList(q url.Values) (leadListQuery, error) {
	var out leadListQuery
	f, err := parseLeadFilter(q, "limit", "cursor")
	if err != nil {
		return out, err
	}
	out.Filter, out.Limit = f, 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 200 {
			return out, invalidField("limit", "1 to 200")
		}
		out.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		c, err := parseCursor(v)
		if err != nil || c == nil {
			return out, invalidField("cursor", "not a cursor this API gave")
		}
		out.After = &store.LeadKeyset{CreatedAt: c.T, ID: c.I}
	}
	return out, nil
}

func (s *Server) handleListLeads(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	lq, err := parseLeadList(r.URL.Query())
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	rows, err := s.db.Leads().List(r.Context(), m, lq.Filter, lq.After, lq.Limit+1)
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	out := leadsResponse{Leads: []apiLead{}}
	for i, l := range rows {
		if i == lq.Limit {
			last := rows[lq.Limit-1]
			out.NextCursor = cursor{T: last.CreatedAt.UTC(), I: last.ID}.encode()
			break
		}
		out.Leads = append(out.Leads, fromLeadRow(l))
	}
	writeJSON(w, http.StatusOK, out)
}

// leadCreateRequest is POST /v1/leads.
type leadCreateRequest struct {
	Phone  string            `json:"phone"`
	LID    string            `json:"lid"`
	Name   string            `json:"name"`
	Source *string           `json:"source"`
	Status *string           `json:"status"`
	Tags   []string          `json:"tags"`
	Fields map[string]string `json:"fields"`
}

// input validates the request into the lead to create.
func (req leadCreateRequest) input() (store.LeadInput, error) {
	in := store.LeadInput{Source: "api", Status: "new"}
	var err error
	switch {
	case req.Phone != "":
		if in.Phone, err = leadPhone("phone", req.Phone); err != nil {
			return in, err
		}
	case req.LID == "":
		return in, invalidField("phone", "required (or lid)")
	}
	if req.LID != "" {
		if in.LID, err = leadLID("lid", req.LID); err != nil {
			return in, err
		}
	}
	if in.Name, err = leadText("name", req.Name, leadMaxName, true); err != nil {
		return in, err
	}
	if req.Source != nil {
		if in.Source, err = leadKeyword("source", *req.Source); err != nil {
			return in, err
		}
	}
	if req.Status != nil {
		if in.Status, err = leadKeyword("status", *req.Status); err != nil {
			return in, err
		}
	}
	if in.Tags, err = leadTags(req.Tags); err != nil {
		return in, err
	}
	if err := leadFieldsCount(len(req.Fields)); err != nil {
		return in, err
	}
	for k, v := range req.Fields {
		if err := leadFieldKey(k); err != nil {
			return in, err
		}
		if err := leadFieldValue(k, v); err != nil {
			return in, err
		}
	}
	in.Fields = req.Fields
	return in, nil
}

// handleCreateLead creates a lead: 201 with it (its message_count counts
// the orphan messages it adopted), 409 lead_exists when the person has one.
func (s *Server) handleCreateLead(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	var req leadCreateRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	in, err := req.input()
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	l, _, err := s.db.Leads().Create(r.Context(), m, in)
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/leads/"+strconv.FormatInt(l.ID, 10))
	writeJSON(w, http.StatusCreated, fromLeadRow(l))
}

// pathLeadID is the {id} path value; anything but a positive integer
// names no lead (404).
func pathLeadID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, store.ErrNotFound
	}
	return id, nil
}

func (s *Server) handleGetLead(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	id, err := pathLeadID(r)
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	l, err := s.db.Leads().Get(r.Context(), m, id)
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fromLeadRow(l))
}

// leadPatchRequest is PATCH /v1/leads/{id}: absent (or null) fields stay;
// fields is merged into the lead's, a null value deleting its key.
type leadPatchRequest struct {
	Name   *string            `json:"name"`
	Status *string            `json:"status"`
	Tags   *[]string          `json:"tags"`
	Fields map[string]*string `json:"fields"`
}

func (req leadPatchRequest) patch() (store.LeadPatch, error) {
	var p store.LeadPatch
	if req.Name != nil {
		n, err := leadText("name", *req.Name, leadMaxName, true)
		if err != nil {
			return p, err
		}
		p.Name = &n
	}
	if req.Status != nil {
		st, err := leadKeyword("status", *req.Status)
		if err != nil {
			return p, err
		}
		p.Status = &st
	}
	if req.Tags != nil {
		tags, err := leadTags(*req.Tags)
		if err != nil {
			return p, err
		}
		p.Tags = &tags
	}
	if len(req.Fields) > 2*leadMaxFields {
		return p, leadFieldsCount(len(req.Fields))
	}
	for k, v := range req.Fields {
		if err := leadFieldKey(k); err != nil {
			return p, err
		}
		if v != nil {
			if err := leadFieldValue(k, *v); err != nil {
				return p, err
			}
		}
	}
	p.Fields = req.Fields
	return p, nil
}

// handlePatchLead changes a lead's name, status, tags or fields and
// answers with the lead as stored.
func (s *Server) handlePatchLead(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	id, err := pathLeadID(r)
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	var req leadPatchRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := req.patch()
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	l, err := s.db.Leads().Update(r.Context(), m, id, p, func(l store.LeadRow) error { return leadFieldsCount(len(l.Fields)) })
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, fromLeadRow(l))
}

// handleDeleteLead deletes a lead (204); its messages stay, unlinked.
func (s *Server) handleDeleteLead(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	id, err := pathLeadID(r)
	if err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	if err := s.db.Leads().Delete(r.Context(), m, id); err != nil {
		s.writeLeadError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
