package web

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/event"
)

// campaignError is the campaigns API's error body.
type campaignError struct {
	Error campaignErrorDetail `json:"error"`
}

// setLead gives lead id CRM data (tags, status, fields) directly.
func (e *testEnv) setLead(id int64, status string, tags []string, fields map[string]string) {
	e.t.Helper()
	f, _ := json.Marshal(fields)
	if _, err := e.db.Pool.Exec(e.t.Context(), `UPDATE leads SET stage = $2, tags = $3, fields = $4 WHERE id = $1`, id, status, tags, f); err != nil {
		e.t.Fatal(err)
	}
}

func (e *testEnv) createCampaign(token string, body map[string]any) apiCampaign {
	e.t.Helper()
	var c apiCampaign
	e.expect(e.do("POST", "/v1/campaigns", token, body), http.StatusCreated).json(e.t, &c)
	return c
}

func (e *testEnv) recipients(token string, id int64, query string) []apiRecipient {
	e.t.Helper()
	var rr recipientsResponse
	e.expect(e.do("GET", fmt.Sprintf("/v1/campaigns/%d/recipients%s", id, query), token, nil), 200).json(e.t, &rr)
	return rr.Recipients
}

// TestCampaignCreate: a campaign to a list of phones is stored with its
// recipients normalised, de-duplicated and each text rendered from its
// lead (a phone without a lead gets the fallback); a lead filter selects
// the leads with a phone; draft stays a draft; the pacing is resolved.
func TestCampaignCreate(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	ana := e.insertLead(a.ID, "5511988880001", "Ana Souza", "site")
	e.setLead(ana, "new", []string{"vip"}, map[string]string{"curso": "Go"})
	bia := e.insertLead(a.ID, "5511988880002", "Bia", "site")
	e.setLead(bia, "won", []string{"vip"}, map[string]string{})
	e.insertLead(a.ID, "5511988880003", "Caio", "site") // no tag
	if _, err := e.db.Pool.Exec(t.Context(), `INSERT INTO leads (mentorado_id, lid, name, tags) VALUES ($1, '123@lid', 'Sem Fone', '{vip}')`, a.ID); err != nil {
		t.Fatal(err)
	}

	c := e.createCampaign(a.Token, map[string]any{
		"name":       "Black Friday",
		"message":    map[string]any{"text": "Oi {{first_name|amigo}}, curso {{field.curso|livre}}"},
		"recipients": map[string]any{"phones": []string{"+55 11 98888-0001", "5511988880001", "5511977770000"}},
		"pacing":     "careful",
	})
	if c.State != event.CampaignScheduled || c.Name != "Black Friday" || c.Counts.Total != 2 || c.Counts.Pending != 2 || c.Message.Kind != event.KindText {
		t.Fatalf("created %+v", c)
	}
	var pacing struct {
		Profile string  `json:"profile"`
		Min     float64 `json:"min_gap_seconds"`
	}
	if err := json.Unmarshal(c.Pacing, &pacing); err != nil || pacing.Profile != "careful" || pacing.Min != 45 {
		t.Fatalf("pacing %s (%v)", c.Pacing, err)
	}
	rs := e.recipients(a.Token, c.ID, "")
	if len(rs) != 2 || rs[0].Phone != "5511988880001" || rs[0].Text != "Oi Ana, curso Go" || rs[0].LeadID == nil || *rs[0].LeadID != ana ||
		rs[1].Phone != "5511977770000" || rs[1].Text != "Oi amigo, curso livre" || rs[1].LeadID != nil || rs[0].Status != "pending" {
		t.Fatalf("recipients %+v", rs)
	}

	// A lead filter: the vip leads with a phone, oldest first.
	f := e.createCampaign(a.Token, map[string]any{
		"name":       "VIPs",
		"message":    map[string]any{"text": "{{name}} / {{phone}}"},
		"recipients": map[string]any{"lead_filter": map[string]any{"tag": []string{"vip"}}},
		"draft":      true,
	})
	if f.State != event.CampaignDraft || f.Counts.Total != 2 || !strings.Contains(string(f.Source), `"lead_filter"`) {
		t.Fatalf("filter campaign %+v source %s", f, f.Source)
	}
	rs = e.recipients(a.Token, f.ID, "")
	if len(rs) != 2 || rs[0].Text != "Ana Souza / 5511988880001" || rs[1].Text != "Bia / 5511988880002" {
		t.Fatalf("filter recipients %+v", rs)
	}
	// status as a single string filter too.
	w := e.createCampaign(a.Token, map[string]any{
		"name": "Won", "message": map[string]any{"text": "oi"},
		"recipients": map[string]any{"lead_filter": map[string]any{"status": "won", "tag": "vip"}},
		"start_at":   time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
	})
	if w.Counts.Total != 1 || w.StartAt == nil {
		t.Fatalf("status filter %+v", w)
	}

	// The list: newest first, keyset pages.
	var cr campaignsResponse
	e.expect(e.do("GET", "/v1/campaigns?limit=2", a.Token, nil), 200).json(t, &cr)
	if len(cr.Campaigns) != 2 || cr.Campaigns[0].ID != w.ID || cr.Campaigns[1].ID != f.ID || cr.NextCursor == "" {
		t.Fatalf("first page %+v", cr)
	}
	next := cr.NextCursor
	cr = campaignsResponse{}
	e.expect(e.do("GET", "/v1/campaigns?limit=2&cursor="+next, a.Token, nil), 200).json(t, &cr)
	if len(cr.Campaigns) != 1 || cr.Campaigns[0].ID != c.ID || cr.NextCursor != "" || cr.Campaigns[0].Counts.Total != 2 {
		t.Fatalf("second page %+v", cr)
	}
}

// TestCampaignBadInput: every bad create request gets its 4xx JSON error
// naming what is wrong, and stores nothing.
func TestCampaignBadInput(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	e.insertLead(a.ID, "5511988880001", "Ana", "site")
	ok := func() map[string]any {
		return map[string]any{"name": "x", "message": map[string]any{"text": "oi {{name}}"},
			"recipients": map[string]any{"phones": []string{"5511988880001"}}}
	}
	with := func(k string, v any) map[string]any {
		b := ok()
		b[k] = v
		return b
	}
	many := make([]string, campaignMaxRecipients+1)
	for i := range many {
		many[i] = fmt.Sprintf("55119%08d", i)
	}
	for _, tc := range []struct {
		name   string
		body   any
		status int
		code   string
		field  string
	}{
		{"empty phones", with("recipients", map[string]any{"phones": []string{}}), 422, codeInvalidField, "recipients"},
		{"no recipients", with("recipients", map[string]any{}), 422, codeInvalidField, "recipients"},
		{"filter matches nobody", with("recipients", map[string]any{"lead_filter": map[string]any{"tag": "nobody"}}), 422, codeInvalidField, "recipients.lead_filter"},
		{"unknown filter fields", with("recipients", map[string]any{"lead_filter": map[string]any{"nope": "1", "zzz": "2"}}), 422, codeUnknownParameter, "recipients.lead_filter.nope"},
		{"bad filter value", with("recipients", map[string]any{"lead_filter": map[string]any{"created_after": "yesterday"}}), 422, codeInvalidField, "recipients.lead_filter.created_after"},
		{"filter value not a string", with("recipients", map[string]any{"lead_filter": map[string]any{"status": 7}}), 422, codeInvalidField, "recipients.lead_filter.status"},
		{"phones and filter", with("recipients", map[string]any{"phones": []string{"5511988880001"}, "lead_filter": map[string]any{}}), 422, codeInvalidField, "recipients"},
		{"bad phones", with("recipients", map[string]any{"phones": []string{"5511988880001", "12", "abc"}}), 422, codeInvalidField, "recipients.phones"},
		{"too many", with("recipients", map[string]any{"phones": many}), 422, codeInvalidField, "recipients.phones"},
		{"start in the past", with("start_at", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)), 422, codeInvalidField, "start_at"},
		{"pacing below the operator minimum", with("pacing", map[string]any{"min_gap_seconds": 1, "max_gap_seconds": 2}), 422, codeInvalidField, "pacing"},
		{"unknown pacing profile", with("pacing", "reckless"), 422, codeInvalidField, "pacing"},
		{"unknown variable", with("message", map[string]any{"text": "oi {{cpf}}"}), 422, codeInvalidField, "message.text"},
		{"malformed braces", with("message", map[string]any{"text": "oi {{name"}), 422, codeInvalidField, "message.text"},
		{"empty text", with("message", map[string]any{"text": ""}), 422, codeInvalidField, "message"},
		{"image without media", with("message", map[string]any{"kind": "image"}), 422, codeInvalidField, "message"},
		{"unknown media", with("message", map[string]any{"kind": "image", "media_id": strings.Repeat("ab", 32)}), 404, event.CodeMediaNotFound, ""},
		{"no name", with("name", ""), 422, codeInvalidField, "name"},
		{"unknown field", with("audience", "all"), 400, codeBadJSON, ""},
		{"start_at not a time", with("start_at", "tomorrow"), 400, codeBadJSON, ""},
		{"not JSON", "{", 400, codeBadJSON, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := e.expect(e.do("POST", "/v1/campaigns", a.Token, tc.body), tc.status)
			var ce campaignError
			res.json(t, &ce)
			if ce.Error.Code != tc.code || ce.Error.Field != tc.field || ce.Error.Message == "" {
				t.Fatalf("error %+v, want %s on %q", ce.Error, tc.code, tc.field)
			}
			switch tc.name {
			case "bad phones":
				if !slices.Equal(ce.Error.Invalid, []string{"12", "abc"}) {
					t.Fatalf("invalid %v", ce.Error.Invalid)
				}
			case "unknown filter fields":
				if !strings.Contains(ce.Error.Message, "nope, zzz") {
					t.Fatalf("message %q does not name both", ce.Error.Message)
				}
			}
		})
	}
	var n int
	if err := e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM campaigns`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d campaigns stored (%v)", n, err)
	}
}

// TestCampaignLifecycle: only valid transitions (else 409 with the current
// state); cancel cancels the pending recipients in the same transaction;
// resume clears the bulk pause; delete only drafts and ended campaigns;
// the recipients show their message's status.
func TestCampaignLifecycle(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	c := e.createCampaign(a.Token, map[string]any{"name": "L", "message": map[string]any{"text": "oi"}, "draft": true,
		"recipients": map[string]any{"phones": []string{"5511988880001", "5511988880002", "5511988880003"}}})
	path := fmt.Sprintf("/v1/campaigns/%d", c.ID)
	change := func(verb string, status int, state event.CampaignState) apiCampaign {
		t.Helper()
		res := e.expect(e.do("POST", path+"/"+verb, a.Token, nil), status)
		if status == 409 {
			var ce campaignError
			res.json(t, &ce)
			if ce.Error.Code != codeCampaignState || ce.Error.State != string(state) {
				t.Fatalf("%s: %+v, want state %s", verb, ce.Error, state)
			}
			return apiCampaign{}
		}
		var got apiCampaign
		res.json(t, &got)
		if got.State != state {
			t.Fatalf("%s: state %s, want %s", verb, got.State, state)
		}
		return got
	}
	change("pause", 409, event.CampaignDraft)
	change("resume", 409, event.CampaignDraft)
	change("schedule", 200, event.CampaignScheduled)
	change("schedule", 409, event.CampaignScheduled)
	if p := change("pause", 200, event.CampaignPaused); p.PauseReason != "user" {
		t.Fatalf("pause reason %q", p.PauseReason)
	}
	change("resume", 200, event.CampaignScheduled) // it never started
	e.expect(e.do("DELETE", path, a.Token, nil), 409)

	// The worker started it and sent to the first recipient (delivered).
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE campaigns SET state = 'running', started_at = now() WHERE id = $1`, c.ID); err != nil {
		t.Fatal(err)
	}
	rs := e.recipients(a.Token, c.ID, "")
	e.insertMessage(a.ID, msgRow{WAID: "CAMP-1", Phone: rs[0].Phone, Direction: "out", Status: "delivered", Text: "oi"})
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE campaign_recipients SET state = 'sent', wa_message_id = 'CAMP-1', sent_at = now() WHERE id = $1`, rs[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE campaign_recipients SET state = 'skipped', reason = 'opted_out' WHERE id = $1`, rs[1].ID); err != nil {
		t.Fatal(err)
	}
	var got apiCampaign
	e.expect(e.do("GET", path, a.Token, nil), 200).json(t, &got)
	if got.Counts != (event.CampaignCounts{Total: 3, Pending: 1, Sent: 1, Delivered: 1, Skipped: 1}) {
		t.Fatalf("counts %+v", got.Counts)
	}
	rs = e.recipients(a.Token, c.ID, "")
	if rs[0].Status != "delivered" || rs[0].MessageID != "CAMP-1" || rs[1].Status != "skipped" || rs[1].Reason != "opted_out" {
		t.Fatalf("recipients %+v", rs)
	}
	if only := e.recipients(a.Token, c.ID, "?state=skipped"); len(only) != 1 || only[0].ID != rs[1].ID {
		t.Fatalf("skipped %+v", only)
	}
	var page recipientsResponse
	e.expect(e.do("GET", path+"/recipients?limit=1", a.Token, nil), 200).json(t, &page)
	e.expect(e.do("GET", path+"/recipients?limit=1&cursor="+page.NextCursor, a.Token, nil), 200).json(t, &page)
	if len(page.Recipients) != 1 || page.Recipients[0].ID != rs[1].ID {
		t.Fatalf("second page %+v", page)
	}
	for q, status := range map[string]int{"?state=done": 422, "?limit=0": 400, "?cursor=x": 400} {
		e.expect(e.do("GET", path+"/recipients"+q, a.Token, nil), status)
	}

	// A ban paused bulk sending; the user pauses and resumes: both end.
	if _, err := e.db.Pool.Exec(t.Context(), `INSERT INTO send_settings (mentorado_id, bulk_paused_at, bulk_paused_reason) VALUES ($1, now(), 'temporary_ban')`, a.ID); err != nil {
		t.Fatal(err)
	}
	change("pause", 200, event.CampaignPaused)
	change("resume", 200, event.CampaignRunning)
	var sending apiSending
	e.expect(e.do("GET", "/v1/sending", a.Token, nil), 200).json(t, &sending)
	if sending.Bulk.State != event.BulkActive {
		t.Fatalf("bulk still %+v after resume", sending.Bulk)
	}

	cancelled := change("cancel", 200, event.CampaignCancelled)
	if cancelled.FinishedAt == nil || cancelled.Counts.Cancelled != 1 || cancelled.Counts.Sent != 1 || cancelled.Counts.Pending != 0 {
		t.Fatalf("cancelled %+v", cancelled)
	}
	for _, v := range []string{"schedule", "pause", "resume", "cancel"} {
		change(v, 409, event.CampaignCancelled)
	}
	e.expect(e.do("DELETE", path, a.Token, nil), 204)
	e.expect(e.do("GET", path, a.Token, nil), 404)
	for _, p := range []string{"/v1/campaigns/0", "/v1/campaigns/x", path, path + "/recipients"} {
		if code := e.expect(e.do("GET", p, a.Token, nil), 404).errorCode(t); code != codeCampaignNotFound {
			t.Fatalf("%s: %s", p, code)
		}
	}
	e.expect(e.do("POST", path+"/resume", a.Token, nil), 404)
	e.expect(e.do("GET", "/v1/campaigns?cursor=-1", a.Token, nil), 400)
}

// TestSendingSettingsAPI: the effective settings and the operator limits;
// a merge-patch within the limits is stored (null returns to the
// default), beyond them a 422 names the field; resume ends the bulk pause,
// resumes the campaigns the system paused (not the user's) and publishes
// a sending event.
func TestSendingSettingsAPI(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	var st apiSending
	e.expect(e.do("GET", "/v1/sending", a.Token, nil), 200).json(t, &st)
	if st.Settings.DailyCap == 0 || st.Limits.MaxDailyCap == 0 || st.Bulk.State != event.BulkActive || st.Today.Unsolicited != 0 ||
		len(st.Settings.OptOutKeywords) == 0 {
		t.Fatalf("defaults %+v", st)
	}
	def := st.Settings.DailyCap
	for _, tc := range []struct {
		body  string
		field string
	}{
		{fmt.Sprintf(`{"daily_cap": %d}`, st.Limits.MaxDailyCap+1), "daily_cap"},
		{`{"bulk_min_gap_seconds": 0.5}`, "bulk_min_gap_seconds"},
		{`{"nope": 1}`, "nope"},
		{`{"typing": "yes"}`, "typing"},
		{`[1]`, "settings"},
	} {
		res := e.expect(e.do("PATCH", "/v1/sending", a.Token, tc.body), 422)
		var ce campaignError
		res.json(t, &ce)
		if ce.Error.Code != codeInvalidField || ce.Error.Field != tc.field {
			t.Fatalf("%s: %+v", tc.body, ce.Error)
		}
	}
	e.expect(e.do("PATCH", "/v1/sending", a.Token, `{"daily_cap": 50, "typing": false}`), 200).json(t, &st)
	if st.Settings.DailyCap != 50 || st.Settings.Typing || st.Today.DailyCap != 50 {
		t.Fatalf("patched %+v", st.Settings)
	}
	e.expect(e.do("PATCH", "/v1/sending", a.Token, `{"daily_cap": null}`), 200).json(t, &st)
	if st.Settings.DailyCap != def || st.Settings.Typing {
		t.Fatalf("daily_cap null: %+v", st.Settings)
	}
	if _, err := e.db.Pool.Exec(t.Context(), `INSERT INTO send_counters (mentorado_id, day, unsolicited) VALUES ($1, (now() AT TIME ZONE 'UTC')::date, 17)`, a.ID); err != nil {
		t.Fatal(err)
	}

	// The system paused bulk sending and two campaigns; the user paused a third.
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE send_settings SET bulk_paused_at = now(), bulk_paused_reason = 'send_errors' WHERE mentorado_id = $1`, a.ID); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, reason := range []string{"send_errors", "temporary_ban", "user"} {
		c := e.createCampaign(a.Token, map[string]any{"name": reason, "message": map[string]any{"text": "oi"},
			"recipients": map[string]any{"phones": []string{"5511988880001"}}})
		if _, err := e.db.Pool.Exec(t.Context(), `UPDATE campaigns SET state = 'paused', pause_reason = $2, started_at = now() WHERE id = $1`, c.ID, reason); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	e.expect(e.do("GET", "/v1/sending", a.Token, nil), 200).json(t, &st)
	if st.Bulk.State != event.BulkPaused || st.Bulk.Reason != "send_errors" || st.Bulk.PausedAt == nil || st.Today.Unsolicited != 17 {
		t.Fatalf("paused %+v today %+v", st.Bulk, st.Today)
	}
	var resumed struct {
		apiSending
		ResumedCampaigns []int64 `json:"resumed_campaigns"`
	}
	e.expect(e.do("POST", "/v1/sending/resume", a.Token, nil), 200).json(t, &resumed)
	if resumed.Bulk.State != event.BulkActive || !slices.Equal(resumed.ResumedCampaigns, ids[:2]) {
		t.Fatalf("resume %+v %v", resumed.Bulk, resumed.ResumedCampaigns)
	}
	var userPaused apiCampaign
	e.expect(e.do("GET", fmt.Sprintf("/v1/campaigns/%d", ids[2]), a.Token, nil), 200).json(t, &userPaused)
	if userPaused.State != event.CampaignPaused {
		t.Fatalf("the user's pause was resumed: %+v", userPaused)
	}
	// The sending event (resumed) is the session's worker's to publish
	// when it sees the pause cleared (internal/outbound); the notifier's
	// NATS user may not publish events.
	// Nothing paused: resume says so.
	e.expect(e.do("POST", "/v1/sending/resume", a.Token, nil), 200).json(t, &resumed)
	if len(resumed.ResumedCampaigns) != 0 {
		t.Fatalf("resumed again %v", resumed.ResumedCampaigns)
	}
}

// TestOptOutsAPI: add (201, then 200), list, remove (204, then 404); bad
// phones are refused.
func TestOptOutsAPI(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	var ce campaignError
	e.expect(e.do("POST", "/v1/opt-outs", a.Token, map[string]string{"phone": "12"}), 422).json(t, &ce)
	if ce.Error.Field != "phone" {
		t.Fatalf("%+v", ce.Error)
	}
	var o apiOptOut
	e.expect(e.do("POST", "/v1/opt-outs", a.Token, map[string]string{"phone": "+55 11 98888-0001"}), 201).json(t, &o)
	if o.Phone != "5511988880001" || o.Source != "api" {
		t.Fatalf("%+v", o)
	}
	e.expect(e.do("POST", "/v1/opt-outs", a.Token, map[string]string{"phone": "5511988880001"}), 200)
	e.expect(e.do("POST", "/v1/opt-outs", a.Token, map[string]string{"phone": "5511988880002"}), 201)
	var lr optOutsResponse
	e.expect(e.do("GET", "/v1/opt-outs?limit=1", a.Token, nil), 200).json(t, &lr)
	if len(lr.OptOuts) != 1 || lr.OptOuts[0].Phone != "5511988880001" || lr.NextCursor == "" {
		t.Fatalf("%+v", lr)
	}
	e.expect(e.do("GET", "/v1/opt-outs?cursor="+lr.NextCursor, a.Token, nil), 200).json(t, &lr)
	if len(lr.OptOuts) != 1 || lr.OptOuts[0].Phone != "5511988880002" {
		t.Fatalf("%+v", lr)
	}
	e.expect(e.do("GET", "/v1/opt-outs?cursor=zz", a.Token, nil), 400)
	e.expect(e.do("DELETE", "/v1/opt-outs/5511988880001", a.Token, nil), 204)
	e.expect(e.do("DELETE", "/v1/opt-outs/5511988880001", a.Token, nil), 404)
	e.expect(e.do("DELETE", "/v1/opt-outs/12", a.Token, nil), 400)
}

// TestSendQueuedAndTTL: a send the connector queued answers 202 with the
// message (status queued); ttl_seconds reaches the connector and is
// validated first; the daily cap is a 429; a failed or expired message
// shows its status_reason in the thread.
func TestSendQueuedAndTTL(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	fc := e.fakeConnector(func(m int64, verb event.Verb, body []byte) event.Reply {
		var req event.SendRequest
		_ = json.Unmarshal(body, &req)
		switch {
		case verb != event.VerbSend:
			return defaultAnswer(m, verb, body)
		case req.Text == "cap":
			return event.Reply{Error: event.NewCommandError(event.CodeDailyCap, "daily cap reached")}
		case req.Text == "later":
			return event.Reply{Message: &event.Message{WAID: "Q-1", ChatJID: req.Phone + "@s.whatsapp.net", SenderJID: "me@s.whatsapp.net",
				Phone: req.Phone, Direction: event.DirectionOut, Kind: event.KindText, Text: req.Text, Timestamp: time.Now(),
				Status: event.MessageQueued, ClientID: req.ClientID}}
		}
		return defaultAnswer(m, verb, body)
	})
	send := func(body map[string]any, status int) response {
		t.Helper()
		return e.expect(e.do("POST", "/v1/messages", a.Token, body), status)
	}
	var msg apiMessage
	send(map[string]any{"phone": "5511988880001", "text": "later", "client_id": "c-1", "ttl_seconds": 600}, 202).json(t, &msg)
	if msg.Status != "queued" || msg.ID != "Q-1" || msg.ClientID != "c-1" {
		t.Fatalf("queued %+v", msg)
	}
	var sent event.SendRequest
	if err := json.Unmarshal(fc.LastBody(), &sent); err != nil || sent.TTLSeconds != 600 {
		t.Fatalf("ttl reached the connector as %d (%v)", sent.TTLSeconds, err)
	}
	send(map[string]any{"phone": "5511988880001", "text": "now"}, 201)
	before := len(fc.Subjects())
	for _, ttl := range []int{-1, event.MaxTTLSeconds + 1} {
		if code := send(map[string]any{"phone": "5511988880001", "text": "x", "ttl_seconds": ttl}, 400).errorCode(t); code != event.CodeTTL {
			t.Fatalf("ttl %d: %s", ttl, code)
		}
	}
	if len(fc.Subjects()) != before {
		t.Fatal("a bad ttl reached the connector")
	}
	capped := send(map[string]any{"phone": "5511988880001", "text": "cap"}, 429)
	if code := capped.errorCode(t); code != event.CodeDailyCap {
		t.Fatalf("cap: %s", code)
	}
	if ra, err := strconv.Atoi(capped.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 86400 {
		t.Fatalf("cap: Retry-After %q", capped.Header.Get("Retry-After"))
	}

	e.insertMessage(a.ID, msgRow{WAID: "X-1", Phone: "5511988880002", Direction: "out", Status: "expired", Text: "old"})
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE whatsapp_messages SET status_reason = 'ttl' WHERE wa_message_id = 'X-1'`); err != nil {
		t.Fatal(err)
	}
	var mr messagesResponse
	e.expect(e.do("GET", "/v1/conversations/5511988880002/messages", a.Token, nil), 200).json(t, &mr)
	if len(mr.Messages) != 1 || mr.Messages[0].Status != "expired" || mr.Messages[0].StatusReason != "ttl" {
		t.Fatalf("thread %+v", mr.Messages)
	}
}

// walkCampaignRoutes walks the campaign, sending and opt-out routes with
// A's token (call adds B's id to the request) against B's campaign and
// opt-out: B's are never A's. tampered says call adds fields to bodies
// (a body the API refuses is then a 4xx, never obeyed). It returns the
// patterns it walked.
func walkCampaignRoutes(t *testing.T, e *testEnv, other int64, tampered bool, call func(method, path string, body map[string]any, want int) response) []string {
	t.Helper()
	var theirs int64
	if err := e.db.Pool.QueryRow(t.Context(), `SELECT min(id) FROM campaigns WHERE mentorado_id = $1`, other).Scan(&theirs); err != nil || theirs == 0 {
		t.Fatalf("the other tenant has no campaign (%v)", err)
	}
	var before string
	_ = e.db.Pool.QueryRow(t.Context(), `SELECT c::text FROM campaigns c WHERE id = $1`, theirs).Scan(&before)
	mine := call("POST", "/v1/campaigns", map[string]any{"name": "A's", "message": map[string]any{"text": "oi"}, "draft": true,
		"recipients": map[string]any{"phones": []string{"5511988880009"}}}, 201)
	var c apiCampaign
	if mine.Status == 201 {
		mine.json(t, &c)
	}
	if res := call("GET", "/v1/campaigns", nil, 200); res.Status == 200 {
		var cr campaignsResponse
		res.json(t, &cr)
		for _, x := range cr.Campaigns {
			if x.ID == theirs {
				t.Fatalf("A's list holds B's campaign %+v", x)
			}
		}
	}
	p := fmt.Sprintf("/v1/campaigns/%d", theirs)
	call("GET", p, nil, 404)
	call("GET", p+"/recipients", nil, 404)
	for _, v := range []string{"schedule", "pause", "resume", "cancel"} {
		call("POST", p+"/"+v, nil, 404)
	}
	call("DELETE", p, nil, 404)
	if c.ID > 0 {
		call("DELETE", fmt.Sprintf("/v1/campaigns/%d", c.ID), nil, 204)
	}
	var after string
	_ = e.db.Pool.QueryRow(t.Context(), `SELECT c::text FROM campaigns c WHERE id = $1`, theirs).Scan(&after)
	if after != before {
		t.Fatalf("B's campaign changed: %s, was %s", after, before)
	}
	call("GET", "/v1/sending", nil, 200)
	patch := 200
	if tampered {
		patch = 422 // mentorado_id is no setting
	}
	call("PATCH", "/v1/sending", map[string]any{"daily_cap": 7}, patch)
	call("POST", "/v1/sending/resume", nil, 200)
	var bPaused *time.Time
	var bSettings string
	_ = e.db.Pool.QueryRow(t.Context(), `SELECT bulk_paused_at, settings::text FROM send_settings WHERE mentorado_id = $1`, other).Scan(&bPaused, &bSettings)
	if bPaused == nil || strings.Contains(bSettings, "7") {
		t.Fatalf("B's sending changed: paused %v settings %s", bPaused, bSettings)
	}
	if res := call("GET", "/v1/opt-outs", nil, 200); res.Status == 200 && strings.Contains(string(res.Body), "5511966660000") {
		t.Fatalf("A sees B's opt-out: %s", res.Body)
	}
	if call("POST", "/v1/opt-outs", map[string]any{"phone": "5511955550000"}, 201).Status == 201 {
		call("DELETE", "/v1/opt-outs/5511955550000", nil, 204)
	}
	call("DELETE", "/v1/opt-outs/5511966660000", nil, 404)
	return []string{"POST /v1/campaigns", "GET /v1/campaigns", "GET /v1/campaigns/{id}", "GET /v1/campaigns/{id}/recipients",
		"POST /v1/campaigns/{id}/schedule", "POST /v1/campaigns/{id}/pause", "POST /v1/campaigns/{id}/resume",
		"POST /v1/campaigns/{id}/cancel", "DELETE /v1/campaigns/{id}", "GET /v1/sending", "PATCH /v1/sending",
		"POST /v1/sending/resume", "GET /v1/opt-outs", "POST /v1/opt-outs", "DELETE /v1/opt-outs/{phone}"}
}

// seedCampaignTenant gives tenant b a running campaign, a bulk pause and
// an opt-out, for the isolation walks.
func (e *testEnv) seedCampaignTenant(b tenant) {
	e.t.Helper()
	e.createCampaign(b.Token, map[string]any{"name": "B secret campaign", "message": map[string]any{"text": "B secret text"},
		"recipients": map[string]any{"phones": []string{"5511966660001"}}})
	for _, q := range []string{
		`INSERT INTO send_settings (mentorado_id, settings, bulk_paused_at, bulk_paused_reason) VALUES ($1, '{"daily_cap": 100}', now(), 'temporary_ban')`,
		`UPDATE campaigns SET state = 'paused', pause_reason = 'temporary_ban' WHERE mentorado_id = $1`,
		`INSERT INTO opt_outs (mentorado_id, phone, source) VALUES ($1, '5511966660000', 'api')`,
	} {
		if _, err := e.db.Pool.Exec(e.t.Context(), q, b.ID); err != nil {
			e.t.Fatal(err)
		}
	}
}

// FuzzCampaignLeadFilter: any JSON object is an accepted lead filter or a
// 422 naming a field under recipients.lead_filter; any list of phones is
// normalised E.164 digits without duplicates, or a 422 listing bad ones.
func FuzzCampaignLeadFilter(f *testing.F) {
	for _, s := range []string{`{}`, `{"tag":["a","b"],"status":"new"}`, `{"nope":1}`, `{"q":"%_"}`, `{"created_after":"2026-01-01"}`,
		`{"tag":7}`, `{"phone":"+55 11 98888-0001"}`, `{"":"x"}`} {
		f.Add(s, "5511988880001,+55 (11) 98888-0001,12")
	}
	f.Fuzz(func(t *testing.T, raw, phones string) {
		var m map[string]json.RawMessage
		if json.Unmarshal([]byte(raw), &m) == nil && m != nil {
			if _, err := campaignLeadFilter(m); err != nil {
				fe, ok := err.(*leadFieldError)
				if !ok || !strings.HasPrefix(fe.Field, "recipients.lead_filter") || (fe.Code != codeInvalidField && fe.Code != codeUnknownParameter) {
					t.Fatalf("%q: error %#v", raw, err)
				}
			}
		}
		out, err := campaignPhones(strings.Split(phones, ","))
		if err != nil {
			le, ok := err.(*campaignListError)
			if !ok || le.Field != "recipients.phones" || len(le.Invalid) == 0 || len(le.Invalid) > campaignMaxListed {
				t.Fatalf("%q: error %#v", phones, err)
			}
			return
		}
		seen := map[string]bool{}
		for _, p := range out {
			if seen[p] || p == "" || strings.Trim(p, "0123456789") != "" {
				t.Fatalf("%q: phones %v", phones, out)
			}
			seen[p] = true
		}
	})
}

// TestSendLimitsFromEnv: the operator's maxima come from ZAPBUS_SEND_*
// through Flags (a bad value is an error naming the variable) and bound
// what the API accepts: a pacing profile under the minimum gap, a setting
// over a maximum, a send TTL over the queue maximum.
func TestSendLimitsFromEnv(t *testing.T) {
	env := func(kv map[string]string) (Config, error) {
		var c Config
		c.AdminToken = testAdminToken
		c.Flags(flag.NewFlagSet("notifier", flag.ContinueOnError), config.NewEnv(func(k string) string { return kv[k] }))
		return c, c.Validate()
	}
	c, err := env(map[string]string{"ZAPBUS_SEND_MIN_BULK_GAP_SECONDS": "10", "ZAPBUS_SEND_MAX_DAILY_CAP": "300", "ZAPBUS_SEND_MAX_QUEUE_TTL_SECONDS": "60"})
	if err != nil || c.SendLimits.MinBulkGapSeconds != 10 || c.SendLimits.MaxDailyCap != 300 || c.SendLimits.MaxQueueTTL != 60 {
		t.Fatalf("limits %+v (%v)", c.SendLimits, err)
	}
	if _, err := env(map[string]string{"ZAPBUS_SEND_MAX_DAILY_CAP": "lots"}); err == nil || !strings.Contains(err.Error(), "ZAPBUS_SEND_MAX_DAILY_CAP") {
		t.Fatalf("bad limit: %v", err)
	}

	e := newEnv(t, func(cfg *Config) { cfg.SendLimits = c.SendLimits })
	a := e.createMentorado("Ana")
	e.fakeConnector(defaultAnswer)
	body := map[string]any{"name": "x", "message": map[string]any{"text": "oi"}, "recipients": map[string]any{"phones": []string{"5511988880001"}}, "pacing": "fast"}
	var ce campaignError
	e.expect(e.do("POST", "/v1/campaigns", a.Token, body), 422).json(t, &ce)
	if ce.Error.Field != "pacing" || !strings.Contains(ce.Error.Message, "10") {
		t.Fatalf("fast under a 10 s minimum: %+v", ce.Error)
	}
	body["pacing"] = "standard"
	e.expect(e.do("POST", "/v1/campaigns", a.Token, body), 201)
	e.expect(e.do("PATCH", "/v1/sending", a.Token, `{"daily_cap": 301}`), 422)
	e.expect(e.do("PATCH", "/v1/sending", a.Token, `{"daily_cap": 300, "queue_ttl_seconds": 60}`), 200)
	if code := e.expect(e.do("POST", "/v1/messages", a.Token, map[string]any{"phone": "5511988880001", "text": "oi", "ttl_seconds": 61}), 400).errorCode(t); code != event.CodeTTL {
		t.Fatalf("ttl over the queue maximum: %s", code)
	}
	e.expect(e.do("POST", "/v1/messages", a.Token, map[string]any{"phone": "5511988880001", "text": "oi", "ttl_seconds": 60}), 201)
}

// TestCampaignMaxRecipients: 100,000 phones (a body over the API's usual
// 1 MiB) make one campaign with every recipient stored.
func TestCampaignMaxRecipients(t *testing.T) {
	if raceEnabled {
		// 100,000 phone normalisations take over a minute under the race
		// detector; the concurrency here is the other tests'.
		t.Skip("CPU-bound; runs without -race")
	}
	e := newEnv(t)
	a := e.createMentorado("Ana")
	phones := make([]string, campaignMaxRecipients)
	for i := range phones {
		phones[i] = fmt.Sprintf("+55 11 9%08d", i)
	}
	c := e.createCampaign(a.Token, map[string]any{"name": "big", "message": map[string]any{"text": "oi {{first_name|você}}"},
		"recipients": map[string]any{"phones": phones}})
	var n, distinct int
	if err := e.db.Pool.QueryRow(t.Context(), `SELECT count(*), count(DISTINCT phone) FROM campaign_recipients WHERE campaign_id = $1 AND text = 'oi você'`, c.ID).
		Scan(&n, &distinct); err != nil || n != campaignMaxRecipients || distinct != n || c.Counts.Total != n {
		t.Fatalf("%d recipients (%d distinct), total %d (%v)", n, distinct, c.Counts.Total, err)
	}
}
