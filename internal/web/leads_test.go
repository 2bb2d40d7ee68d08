package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/persister"
	"github.com/zapbus/zapbus/internal/testenv"
)

// leadErr is the leads API's error body.
type leadErr struct {
	Error leadErrorDetail `json:"error"`
}

func (e *testEnv) createLead(tok string, body any) apiLead {
	e.t.Helper()
	var l apiLead
	e.expect(e.do("POST", "/v1/leads", tok, body), 201).json(e.t, &l)
	return l
}

func (e *testEnv) listLeads(tok, query string) leadsResponse {
	e.t.Helper()
	var lr leadsResponse
	e.expect(e.do("GET", "/v1/leads?"+query, tok, nil), 200).json(e.t, &lr)
	return lr
}

func leadIDs(ls []apiLead) []int64 {
	out := []int64{}
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

func TestLeadsCRUD(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	e.insertMessage(a.ID, msgRow{WAID: "w1", Phone: "5511987654321", Text: "oi", PushName: "Ana Push"})

	res := e.expect(e.do("POST", "/v1/leads", a.Token, map[string]any{"phone": "+55 (11) 98765-4321", "name": "  Ana Souza ",
		"tags": []string{"vip", "sp", "vip"}, "fields": map[string]string{"plan": "gold", "city": "SP"}}), 201)
	var l apiLead
	res.json(t, &l)
	if l.ID <= 0 || l.Phone != "5511987654321" || l.Name != "Ana Souza" || l.NameSource != "crm" || l.Source != "api" ||
		l.Status != "new" || !slices.Equal(l.Tags, []string{"vip", "sp"}) || l.Fields["plan"] != "gold" || l.MessageCount != 1 ||
		l.LastMessageAt == nil || l.CreatedAt.IsZero() || l.UpdatedAt.IsZero() {
		t.Fatalf("created %s", res.Body)
	}
	if loc := res.Header.Get("Location"); loc != fmt.Sprintf("/v1/leads/%d", l.ID) {
		t.Fatalf("Location %q", loc)
	}
	var got apiLead
	e.expect(e.do("GET", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, nil), 200).json(t, &got)
	if got.ID != l.ID || got.Name != "Ana Souza" || got.MessageCount != 1 {
		t.Fatalf("get %+v", got)
	}

	// The same person again, also by the number without the 9th digit: 409
	// with the existing lead.
	for _, p := range []string{"5511987654321", "+55 11 8765-4321"} {
		var le leadErr
		e.expect(e.do("POST", "/v1/leads", a.Token, map[string]any{"phone": p}), 409).json(t, &le)
		if le.Error.Code != codeLeadExists || le.Error.LeadID != l.ID {
			t.Fatalf("%s: %+v", p, le)
		}
	}

	// Patch: fields merge (null deletes), tags replace, status, name.
	var up apiLead
	e.expect(e.do("PATCH", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token,
		`{"status":"qualified","tags":["hot"],"fields":{"city":null,"plan":"platinum","ddd":"11"}}`), 200).json(t, &up)
	if up.Status != "qualified" || !slices.Equal(up.Tags, []string{"hot"}) || len(up.Fields) != 2 || up.Fields["plan"] != "platinum" ||
		up.Fields["ddd"] != "11" || up.Name != "Ana Souza" || up.NameSource != "crm" || !up.UpdatedAt.After(l.UpdatedAt) {
		t.Fatalf("patched %+v", up)
	}
	e.expect(e.do("PATCH", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, `{}`), 200).json(t, &got)
	if !got.UpdatedAt.Equal(up.UpdatedAt) {
		t.Fatal("an empty patch changed the lead")
	}
	e.expect(e.do("PATCH", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, `{"name":"Ana S."}`), 200).json(t, &got)
	if got.Name != "Ana S." || got.NameSource != "crm" {
		t.Fatalf("renamed %+v", got)
	}

	// A LID-only lead, default source and status.
	lidLead := e.createLead(a.Token, map[string]any{"lid": "201985678901234@lid", "source": "site", "status": "cold"})
	if lidLead.Phone != "" || lidLead.LID != "201985678901234@lid" || lidLead.Source != "site" || lidLead.Status != "cold" ||
		lidLead.Name != "" || lidLead.NameSource != "" || lidLead.Tags == nil || lidLead.Fields == nil {
		t.Fatalf("LID lead %+v", lidLead)
	}

	lr := e.listLeads(a.Token, "")
	if !slices.Equal(leadIDs(lr.Leads), []int64{lidLead.ID, l.ID}) || lr.NextCursor != "" {
		t.Fatalf("list %+v", lr)
	}

	res = e.expect(e.do("DELETE", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, nil), 204)
	if len(res.Body) != 0 {
		t.Fatalf("delete body %q", res.Body)
	}
	e.expect(e.do("GET", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, nil), 404)
	e.expect(e.do("DELETE", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, nil), 404)
	var mr messagesResponse
	e.expect(e.do("GET", "/v1/conversations/5511987654321/messages", a.Token, nil), 200).json(t, &mr)
	if len(mr.Messages) != 1 || mr.Messages[0].LeadID != nil {
		t.Fatalf("message after the delete %+v", mr)
	}
	for _, p := range []string{"/v1/leads/0", "/v1/leads/abc", "/v1/leads/99999999999999999999"} {
		if code := e.expect(e.do("GET", p, a.Token, nil), 404).errorCode(t); code != codeLeadNotFound {
			t.Fatalf("%s: %s", p, code)
		}
	}
}

func TestLeadsListFiltersAndPages(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	ana := e.createLead(a.Token, map[string]any{"phone": "5511987654321", "name": "Ana Souza", "source": "site", "tags": []string{"vip", "sp"}})
	bia := e.createLead(a.Token, map[string]any{"phone": "5521988887777", "name": "Bia_Lima", "status": "won", "tags": []string{"vip"}})
	var rest []int64
	for i := range 9 {
		rest = append(rest, e.createLead(a.Token, map[string]any{"phone": fmt.Sprintf("1415555%04d", i), "name": fmt.Sprintf("Lead %d", i)}).ID)
	}
	// Equal created_at across pages: three timestamps for the nine.
	if _, err := e.db.Pool.Exec(t.Context(), `UPDATE leads SET created_at = '2026-01-01T00:00:00Z'::timestamptz + (id % 3) * interval '1 second'
		WHERE mentorado_id = $1 AND id <> ALL($2)`, a.ID, []int64{ana.ID, bia.ID}); err != nil {
		t.Fatal(err)
	}
	all := e.listLeads(a.Token, "limit=200")
	if len(all.Leads) != 11 || all.NextCursor != "" {
		t.Fatalf("all: %d leads, cursor %q", len(all.Leads), all.NextCursor)
	}
	if all.Leads[0].ID != bia.ID || all.Leads[1].ID != ana.ID {
		t.Fatalf("newest first: %v", leadIDs(all.Leads))
	}
	for _, limit := range []int{1, 2, 4} {
		var walked []int64
		cur := ""
		for pages := 0; ; pages++ {
			if pages > 20 {
				t.Fatal("pages do not end")
			}
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if cur != "" {
				q.Set("cursor", cur)
			}
			lr := e.listLeads(a.Token, q.Encode())
			walked = append(walked, leadIDs(lr.Leads)...)
			if lr.NextCursor == "" {
				break
			}
			cur = lr.NextCursor
		}
		if !slices.Equal(walked, leadIDs(all.Leads)) {
			t.Fatalf("limit %d: pages %v, want %v", limit, walked, leadIDs(all.Leads))
		}
	}
	// A filtered walk keeps its filter across pages.
	lr := e.listLeads(a.Token, "tag=vip&limit=1")
	next := e.listLeads(a.Token, "tag=vip&limit=1&cursor="+lr.NextCursor)
	if !slices.Equal(leadIDs(lr.Leads), []int64{bia.ID}) || !slices.Equal(leadIDs(next.Leads), []int64{ana.ID}) || next.NextCursor != "" {
		t.Fatalf("filtered pages %v %v %q", leadIDs(lr.Leads), leadIDs(next.Leads), next.NextCursor)
	}

	now := time.Now().UTC()
	for _, c := range []struct {
		query string
		want  []int64
	}{
		{"q=SOUZA", []int64{ana.ID}},
		{"q=" + url.QueryEscape("_"), []int64{bia.ID}},
		{"q=lead+8", []int64{rest[8]}},
		{"phone=" + url.QueryEscape("+55 (11) 98765-4321"), []int64{ana.ID}},
		{"phone=" + url.QueryEscape("(11) 8765-4321"), []int64{ana.ID}}, // without the 9th digit
		{"phone=5521988887777", []int64{bia.ID}},
		{"source=site", []int64{ana.ID}},
		{"status=won", []int64{bia.ID}},
		{"tag=vip", []int64{bia.ID, ana.ID}},
		{"tag=vip&tag=sp", []int64{ana.ID}},
		{"tag=nope", []int64{}},
		{"created_after=" + url.QueryEscape(now.Add(-time.Hour).Format(time.RFC3339)), []int64{bia.ID, ana.ID}},
		{"created_before=2026-01-01T00:00:01Z", leadsCreatedAt(t, e, a.ID, "2026-01-01T00:00:00Z")},
		{"created_after=2025-12-31&created_before=" + now.Add(time.Hour).Format("2006-01-02T15:04:05Z") + "&status=new&source=api", leadIDs(all.Leads[2:])},
	} {
		if got := leadIDs(e.listLeads(a.Token, c.query).Leads); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.query, got, c.want)
		}
	}
}

// leadsCreatedAt are the ids of m's leads created at ts, newest id first.
func leadsCreatedAt(t *testing.T, e *testEnv, m int64, ts string) []int64 {
	t.Helper()
	rows, err := e.db.Pool.Query(t.Context(), `SELECT id FROM leads WHERE mentorado_id = $1 AND created_at = $2::timestamptz ORDER BY id DESC`, m, ts)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := []int64{}
	for rows.Next() {
		var id int64
		_ = rows.Scan(&id)
		out = append(out, id)
	}
	return out
}

func TestLeadsBadInput(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	l := e.createLead(a.Token, map[string]any{"phone": "5511987654321"})
	tags := func(n, size int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%0*d", size, i)
		}
		return out
	}
	fields := func(n int) map[string]string {
		out := map[string]string{}
		for i := range n {
			out[fmt.Sprint("k", i)] = "v"
		}
		return out
	}
	path := fmt.Sprintf("/v1/leads/%d", l.ID)
	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
		code, field        string
	}{
		{"malformed JSON", "POST", "/v1/leads", `{"phone":`, 400, codeBadJSON, ""},
		{"not an object", "POST", "/v1/leads", `[1]`, 400, codeBadJSON, ""},
		{"unknown field", "POST", "/v1/leads", `{"phone":"5511912340000","mentorado_id":2}`, 400, codeBadJSON, ""},
		{"fields not strings", "POST", "/v1/leads", `{"phone":"5511912340000","fields":{"a":1}}`, 400, codeBadJSON, ""},
		{"no phone", "POST", "/v1/leads", `{"name":"x"}`, 422, codeInvalidField, "phone"},
		{"bad phone", "POST", "/v1/leads", `{"phone":"abc"}`, 422, codeInvalidField, "phone"},
		{"short phone", "POST", "/v1/leads", `{"phone":"123"}`, 422, codeInvalidField, "phone"},
		{"bad lid", "POST", "/v1/leads", `{"lid":"abc@s.whatsapp.net"}`, 422, codeInvalidField, "lid"},
		{"long name", "POST", "/v1/leads", map[string]any{"phone": "5511912340000", "name": strings.Repeat("é", 201)}, 422, codeInvalidField, "name"},
		{"NUL in name", "POST", "/v1/leads", `{"phone":"5511912340000","name":"a\u0000b"}`, 422, codeInvalidField, "name"},
		{"bad status", "POST", "/v1/leads", `{"phone":"5511912340000","status":"two words"}`, 422, codeInvalidField, "status"},
		{"long status", "POST", "/v1/leads", map[string]any{"phone": "5511912340000", "status": strings.Repeat("s", 51)}, 422, codeInvalidField, "status"},
		{"empty source", "POST", "/v1/leads", `{"phone":"5511912340000","source":""}`, 422, codeInvalidField, "source"},
		{"too many tags", "POST", "/v1/leads", map[string]any{"phone": "5511912340000", "tags": tags(51, 2)}, 422, codeInvalidField, "tags"},
		{"long tag", "POST", "/v1/leads", map[string]any{"phone": "5511912340000", "tags": tags(1, 51)}, 422, codeInvalidField, "tags[0]"},
		{"empty tag", "POST", "/v1/leads", `{"phone":"5511912340000","tags":["a"," "]}`, 422, codeInvalidField, "tags[1]"},
		{"too many fields", "POST", "/v1/leads", map[string]any{"phone": "5511912340000", "fields": fields(51)}, 422, codeInvalidField, "fields"},
		{"long field key", "POST", "/v1/leads", map[string]any{"phone": "5511912340000", "fields": map[string]string{strings.Repeat("k", 65): "v"}}, 422, codeInvalidField, "fields"},
		{"long field value", "POST", "/v1/leads", map[string]any{"phone": "5511912340000", "fields": map[string]string{"k": strings.Repeat("v", 1001)}}, 422, codeInvalidField, "fields.k"},
		{"patch malformed", "PATCH", path, `{"name"`, 400, codeBadJSON, ""},
		{"patch phone", "PATCH", path, `{"phone":"5511912340000"}`, 400, codeBadJSON, ""},
		{"patch too many tags", "PATCH", path, map[string]any{"tags": tags(51, 2)}, 422, codeInvalidField, "tags"},
		{"patch merged fields over the limit", "PATCH", path, map[string]any{"fields": fields(51)}, 422, codeInvalidField, "fields"},
		{"patch bad status", "PATCH", path, `{"status":"é"}`, 422, codeInvalidField, "status"},
		{"unknown filter", "GET", "/v1/leads?stage=new&nope=1", nil, 422, codeUnknownParameter, "nope"},
		{"repeated filter", "GET", "/v1/leads?q=a&q=b", nil, 422, codeInvalidField, "q"},
		{"bad filter phone", "GET", "/v1/leads?phone=12", nil, 422, codeInvalidField, "phone"},
		{"bad created_after", "GET", "/v1/leads?created_after=yesterday", nil, 422, codeInvalidField, "created_after"},
		{"bad tag filter", "GET", "/v1/leads?tag=", nil, 422, codeInvalidField, "tag"},
		{"bad cursor", "GET", "/v1/leads?cursor=abc", nil, 422, codeInvalidField, "cursor"},
		{"limit 0", "GET", "/v1/leads?limit=0", nil, 422, codeInvalidField, "limit"},
		{"limit 201", "GET", "/v1/leads?limit=201", nil, 422, codeInvalidField, "limit"},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := e.expect(e.do(c.method, c.path, a.Token, c.body), c.status)
			var le leadErr
			res.json(t, &le)
			if le.Error.Code != c.code || le.Error.Field != c.field || le.Error.Message == "" {
				t.Fatalf("error %s, want code %s field %q", res.Body, c.code, c.field)
			}
		})
	}
	// Nothing was written by the refused requests.
	var n int
	if err := e.db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM leads WHERE mentorado_id = $1`, a.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d leads (%v)", n, err)
	}
	var got apiLead
	e.expect(e.do("GET", path, a.Token, nil), 200).json(t, &got)
	if !got.UpdatedAt.Equal(l.UpdatedAt) {
		t.Fatal("a refused patch changed the lead")
	}
}

func TestLeadsWrongTenant(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	mine := e.createLead(a.Token, map[string]any{"phone": "5511987654321", "name": "A's lead"})
	theirs := e.createLead(b.Token, map[string]any{"phone": "5511987654321", "name": "B secret"})
	p := fmt.Sprintf("/v1/leads/%d", theirs.ID)
	for _, c := range []struct {
		method string
		body   any
	}{{"GET", nil}, {"PATCH", `{"name":"x","fields":{"a":"b"}}`}, {"DELETE", nil}} {
		res := e.expect(e.do(c.method, p, a.Token, c.body), 404)
		if res.errorCode(t) != codeLeadNotFound || strings.Contains(string(res.Body), "secret") {
			t.Fatalf("%s: %s", c.method, res.Body)
		}
	}
	lr := e.listLeads(a.Token, "")
	if !slices.Equal(leadIDs(lr.Leads), []int64{mine.ID}) {
		t.Fatalf("A's list %+v", lr)
	}
	var got apiLead
	e.expect(e.do("GET", p, b.Token, nil), 200).json(t, &got)
	if got.Name != "B secret" || !got.UpdatedAt.Equal(theirs.UpdatedAt) {
		t.Fatalf("B's lead changed: %+v", got)
	}
}

// A lead created through the API adopts its person's orphan messages;
// link-orphans links by the same rule (LID-only messages whose LID maps
// to the phone, the 9th-digit variant, group messages with group_leads).
func TestLeadsLinkOrphans(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	const p, p8, mapped = "5511987654321", "551187654321", "222@lid"
	group := func(waID, ph string) {
		if _, err := e.db.Pool.Exec(t.Context(), `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, phone,
			direction, kind, status, status_rank, sent_at) VALUES ($1, $2, '120363000000000042@g.us', $3 || '@s.whatsapp.net', $3, 'in', 'text', 'received', 1, now())`,
			a.ID, waID, ph); err != nil {
			t.Fatal(err)
		}
	}
	lidOnly := func(waID, lid string) {
		if _, err := e.db.Pool.Exec(t.Context(), `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, lid,
			direction, kind, status, status_rank, sent_at) VALUES ($1, $2, $3, $3, $3, 'in', 'text', 'received', 1, now())`, a.ID, waID, lid); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.db.Pool.Exec(t.Context(), `INSERT INTO whatsapp_lid_phones (mentorado_id, lid, phone) VALUES ($1, $2, $3)`, a.ID, mapped, p); err != nil {
		t.Fatal(err)
	}
	e.insertMessage(a.ID, msgRow{WAID: "plain", Phone: p})
	e.insertMessage(a.ID, msgRow{WAID: "ninth", Phone: p8})
	lidOnly("mapped", mapped)
	group("group", p)

	l := e.createLead(a.Token, map[string]any{"phone": p})
	if l.MessageCount != 3 {
		t.Fatalf("adopted %d messages, want plain, ninth and mapped", l.MessageCount)
	}
	var linked map[string]int64
	e.expect(e.do("POST", "/v1/messages/link-orphans", a.Token, nil), 200).json(t, &linked)
	if linked["linked"] != 0 {
		t.Fatalf("group message linked with group_leads off: %v", linked)
	}
	e.expect(e.do("PATCH", "/v1/settings", a.Token, map[string]any{"group_leads": true}), 200)
	lidOnly("mapped-later", mapped)
	e.insertMessage(a.ID, msgRow{WAID: "ninth-later", Phone: p8})
	e.expect(e.do("POST", "/v1/messages/link-orphans", a.Token, nil), 200).json(t, &linked)
	if linked["linked"] != 3 {
		t.Fatalf("link-orphans linked %v, want the group message, the LID-only and the 9th-digit one", linked)
	}
	var got apiLead
	e.expect(e.do("GET", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, nil), 200).json(t, &got)
	if got.MessageCount != 6 {
		t.Fatalf("lead has %d messages, want 6", got.MessageCount)
	}
}

// With a persister running: the API's lead events reach the stream (and
// the SSE stream) at once, and a name set through the API survives a
// later message with a push name and an address-book name.
func TestLeadEventsAndCRMNameThroughPersister(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	p, err := persister.New(persister.Config{MaxWait: 50 * time.Millisecond, OutboxInterval: time.Hour}, e.db, e.bus, e.log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("persister: %v", err)
		}
	})
	sse := e.openSSE(bearerAuth(a.Token), "")
	cons, err := e.bus.OrderedConsumer(ctx, bus.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{event.EventSubject(a.ID, event.TypeLead)}})
	if err != nil {
		t.Fatal(err)
	}
	next := func() (event.Envelope, *event.Lead) {
		t.Helper()
		msg, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
		if err != nil {
			t.Fatalf("lead event on the stream: %v", err)
		}
		env, pl, err := event.Decode(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		return env, pl.(*event.Lead)
	}

	const ph = "5511987654321"
	l := e.createLead(a.Token, map[string]any{"phone": ph, "name": "Ana CRM", "source": "site"})
	env, ev := next()
	if ev.Change != event.LeadUpdated || ev.LeadID != l.ID || ev.Source != "site" || ev.Status != "new" || ev.Name != "Ana CRM" ||
		ev.NameSource != event.NameSourceCRM || env.ID != event.LeadEventID(a.ID, l.ID, event.LeadUpdated, fmt.Sprint(l.UpdatedAt.UnixNano())) {
		t.Fatalf("created: %s %+v", env.ID, ev)
	}
	var up apiLead
	e.expect(e.do("PATCH", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, `{"status":"qualified","tags":["vip"],"fields":{"plan":"gold"}}`), 200).json(t, &up)
	env, ev = next()
	if ev.Change != event.LeadUpdated || ev.Status != "qualified" || !slices.Equal(ev.Tags, []string{"vip"}) || ev.Fields["plan"] != "gold" ||
		env.ID != event.LeadEventID(a.ID, l.ID, event.LeadUpdated, fmt.Sprint(up.UpdatedAt.UnixNano())) || !env.OccurredAt.Equal(up.UpdatedAt.Truncate(time.Millisecond)) {
		t.Fatalf("updated: %s %+v", env.ID, ev)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, f := range sse.Events() {
			if f.Event == "lead" && strings.Contains(f.Data, `"qualified"`) {
				return true
			}
		}
		return false
	}, "the update on SSE")

	// WhatsApp's names come later: a push name and an address-book name.
	at := time.Now()
	msg := &event.Message{WAID: "W-1", ChatJID: ph + "@s.whatsapp.net", SenderJID: ph + "@s.whatsapp.net", Phone: ph, PushName: "Ana Push",
		Direction: event.DirectionIn, Kind: event.KindText, Text: "oi", Timestamp: at, Status: event.MessageReceived}
	contact := &event.Contact{JID: ph + "@s.whatsapp.net", Phone: ph, Name: "Ana Address Book", PushName: "Ana Push"}
	for _, x := range []struct {
		id string
		p  event.Payload
	}{{event.MessageEventID(a.ID, "W-1"), msg}, {fmt.Sprintf("%d:contact:test", a.ID), contact}} {
		env, err := event.New(a.ID, x.id, at, x.p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.bus.Publish(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	var got apiLead
	testenv.Eventually(t, 20*time.Second, func() bool {
		var n int
		_ = e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM whatsapp_contacts WHERE mentorado_id = $1 AND name = 'Ana Address Book'`, a.ID).Scan(&n)
		got = apiLead{}
		e.expect(e.do("GET", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, nil), 200).json(t, &got)
		return n == 1 && got.MessageCount == 1
	}, "the message and the contact stored")
	if got.Name != "Ana CRM" || got.NameSource != "crm" {
		t.Fatalf("the CRM's name was replaced: %+v", got)
	}
	var leads int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM leads WHERE mentorado_id = $1`, a.ID).Scan(&leads); err != nil || leads != 1 {
		t.Fatalf("%d leads (%v)", leads, err)
	}

	e.expect(e.do("DELETE", fmt.Sprintf("/v1/leads/%d", l.ID), a.Token, nil), 204)
	env, ev = next()
	if ev.Change != event.LeadDeleted || ev.LeadID != l.ID || env.ID != event.LeadEventID(a.ID, l.ID, event.LeadDeleted, "") {
		t.Fatalf("deleted: %s %+v", env.ID, ev)
	}
	if b, _ := json.Marshal(ev); !strings.Contains(string(b), `"phone":"`+ph+`"`) {
		t.Fatalf("deleted event without the phone: %s", b)
	}
}

// walkLeadRoutes walks every leads route for the tenant isolation tests:
// call sends a request as tenant A (whatever else it adds) and checks the
// status; other is tenant B, whose leads A must never find. list is the
// status the list answers (422 when call adds unknown query parameters).
// It returns the route patterns walked.
func walkLeadRoutes(t *testing.T, e *testEnv, other int64, newPhone string, list int,
	call func(method, path string, body map[string]any, want int) response) []string {
	t.Helper()
	var theirs int64
	if err := e.db.Pool.QueryRow(t.Context(), `SELECT min(id) FROM leads WHERE mentorado_id = $1`, other).Scan(&theirs); err != nil || theirs == 0 {
		t.Fatalf("the other tenant has no lead (%v)", err)
	}
	var before string
	_ = e.db.Pool.QueryRow(t.Context(), `SELECT l::text FROM leads l WHERE id = $1`, theirs).Scan(&before)
	if res := call("GET", "/v1/leads", nil, list); res.Status == 200 {
		var lr leadsResponse
		res.json(t, &lr)
		for _, l := range lr.Leads {
			if l.ID == theirs {
				t.Fatalf("A's list holds B's lead %+v", l)
			}
		}
	}
	call("POST", "/v1/leads", map[string]any{"phone": newPhone}, 201)
	p := fmt.Sprintf("/v1/leads/%d", theirs)
	call("GET", p, nil, 404)
	call("PATCH", p, map[string]any{"name": "x", "fields": map[string]any{"a": "b"}}, 404)
	call("DELETE", p, nil, 404)
	var after string
	_ = e.db.Pool.QueryRow(t.Context(), `SELECT l::text FROM leads l WHERE id = $1`, theirs).Scan(&after)
	if after != before {
		t.Fatalf("B's lead changed: %s, was %s", after, before)
	}
	return []string{"GET /v1/leads", "POST /v1/leads", "GET /v1/leads/{id}", "PATCH /v1/leads/{id}", "DELETE /v1/leads/{id}"}
}

// FuzzParseLeadList: any query string is a valid list query or a 422 that
// names a field; what is accepted is within the limits, and a cursor we
// accepted reads back the same.
func FuzzParseLeadList(f *testing.F) {
	c := cursor{T: time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC), I: 42}.encode()
	for _, s := range []string{"", "limit=10&cursor=" + c, "q=ana&phone=%2B55+11+98765-4321&tag=a&tag=b", "created_after=2026-01-01&created_before=2026-02-01T00:00:00Z",
		"nope=1", "q=a&q=b", "limit=0", "cursor=abc", "tag=", "status=two+words", "phone=12", "source=%00", "%zz", "q=%E2%28%A1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // net/http answers what it cannot parse before the handler
		}
		lq, err := parseLeadList(q)
		if err != nil {
			fe, ok := err.(*leadFieldError)
			if !ok || fe.Field == "" || (fe.Code != codeInvalidField && fe.Code != codeUnknownParameter) {
				t.Fatalf("%q: error %#v", raw, err)
			}
			return
		}
		if lq.Limit < 1 || lq.Limit > 200 || len(lq.Filter.Tags) > leadMaxTags {
			t.Fatalf("%q: accepted %+v", raw, lq)
		}
		for _, s := range append([]string{lq.Filter.Q, lq.Filter.Source, lq.Filter.Status, lq.Filter.Phone}, lq.Filter.Tags...) {
			if strings.ContainsRune(s, 0) || !utf8.ValidString(s) {
				t.Fatalf("%q: accepted text %q", raw, s)
			}
		}
		if lq.After != nil {
			back, err := parseCursor(cursor{T: lq.After.CreatedAt, I: lq.After.ID}.encode())
			if err != nil || back.I != lq.After.ID || !back.T.Equal(lq.After.CreatedAt) {
				t.Fatalf("%q: cursor round trip %+v, %v", raw, back, err)
			}
		}
	})
}
