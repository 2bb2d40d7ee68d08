package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// leadMsg inserts one message of mentorado m: phone and lid may be "",
// group names the group chat (else a direct chat).
func leadMsg(t *testing.T, db *store.DB, m int64, waID, ph, lid, group string) {
	t.Helper()
	chat := group
	switch {
	case chat != "":
	case ph != "":
		chat = ph + "@s.whatsapp.net"
	default:
		chat = lid
	}
	sender := chat
	if group != "" {
		sender = ph + "@s.whatsapp.net"
		if ph == "" {
			sender = lid
		}
	}
	exec(t, db, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, phone, lid, direction, kind,
		status, status_rank, sent_at) VALUES ($1, $2, $3, $4, nullif($5, ''), nullif($6, ''), 'in', 'text', 'received', 1, now())`,
		m, waID, chat, sender, ph, lid)
}

// leadOf is the lead_id of message waID (0 none).
func leadOf(t *testing.T, db *store.DB, m int64, waID string) int64 {
	t.Helper()
	var id *int64
	if err := db.Pool.QueryRow(context.Background(), `SELECT lead_id FROM whatsapp_messages WHERE mentorado_id = $1 AND wa_message_id = $2`,
		m, waID).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if id == nil {
		return 0
	}
	return *id
}

// leadEventRows are the outbox rows of mentorado m, oldest first.
func leadEventRows(t *testing.T, db *store.DB, m int64) []store.LeadEvent {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT id, event_id, occurred_at, data::text FROM lead_events WHERE mentorado_id = $1 ORDER BY id`, m)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []store.LeadEvent
	for rows.Next() {
		var e store.LeadEvent
		var data string
		if err := rows.Scan(&e.ID, &e.EventID, &e.OccurredAt, &data); err != nil {
			t.Fatal(err)
		}
		e.MentoradoID, e.Data = m, []byte(data)
		out = append(out, e)
	}
	return out
}

// The SQL rendering of the 9th-digit rule is phone.BrazilVariants.
func TestLeadBrazilVariantSQL(t *testing.T) {
	db := openStore(t)
	for _, p := range []string{"5511987654321", "551187654321", "5511912345678", "551112345678", "5511812345678", "551152345678", "5511987654321", "551198765432",
		"14155552671", "5521999990000", "552199990000", "55119", "55", "5511512345678", "447911123456", "551192345678"} {
		got, err := db.Leads().BrazilVariantSQL(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if vs := phone.BrazilVariants(p); len(vs) == 2 {
			want = vs[1]
		}
		if got != want {
			t.Errorf("%s: SQL variant %q, phone.BrazilVariants %q", p, got, want)
		}
	}
}

func TestLeadsCreateListFilter(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m := newMentorado(t, db, "a")
	other := newMentorado(t, db, "b")
	q := db.Leads()

	mk := func(mm int64, in store.LeadInput) store.LeadRow {
		t.Helper()
		if in.Source == "" {
			in.Source = "api"
		}
		if in.Status == "" {
			in.Status = "new"
		}
		l, _, err := q.Create(ctx, mm, in)
		if err != nil {
			t.Fatalf("create %+v: %v", in, err)
		}
		return l
	}
	ana := mk(m, store.LeadInput{Phone: "5511987654321", Name: "Ana Souza", Source: "site", Tags: []string{"vip", "sp"}, Fields: map[string]string{"plan": "gold"}})
	if ana.Name != "Ana Souza" || ana.NameSource != "crm" || ana.Source != "site" || ana.Status != "new" || !slices.Equal(ana.Tags, []string{"vip", "sp"}) ||
		ana.Fields["plan"] != "gold" || ana.CreatedAt.IsZero() || ana.MessageCount != 0 || ana.LastMessageAt != nil {
		t.Fatalf("created %+v", ana)
	}
	bia := mk(m, store.LeadInput{Phone: "5521988887777", Name: "Bia 100%_off", Status: "qualified", Tags: []string{"vip"}})
	noName := mk(m, store.LeadInput{Phone: "14155552671"})
	if noName.NameSource != "" || noName.Name != "" || len(noName.Tags) != 0 || len(noName.Fields) != 0 {
		t.Fatalf("no-name lead %+v", noName)
	}
	mk(other, store.LeadInput{Phone: "5511987654321", Name: "Ana of B"})

	// The 9th-digit variant, or the same number, is the same person.
	for _, p := range []string{"551187654321", "5511987654321"} {
		_, _, err := q.Create(ctx, m, store.LeadInput{Phone: p, Source: "api", Status: "new"})
		var ex *store.LeadExistsError
		if !errors.As(err, &ex) || ex.ID != ana.ID {
			t.Fatalf("create %s: %v, want exists %d", p, err, ana.ID)
		}
	}

	ids := func(f store.LeadFilter) []int64 {
		t.Helper()
		rows, err := q.List(ctx, m, f, nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, r := range rows {
			out = append(out, r.ID)
		}
		return out
	}
	before := time.Now().Add(time.Hour)
	after := time.Now().Add(-time.Hour)
	for _, c := range []struct {
		name string
		f    store.LeadFilter
		want []int64
	}{
		{"all, newest first", store.LeadFilter{}, []int64{noName.ID, bia.ID, ana.ID}},
		{"name", store.LeadFilter{Q: "souza"}, []int64{ana.ID}},
		{"name wildcards are literal", store.LeadFilter{Q: "%_"}, []int64{bia.ID}},
		{"name with a wildcard", store.LeadFilter{Q: "a%"}, nil},
		{"phone", store.LeadFilter{Phone: "5511987654321"}, []int64{ana.ID}},
		{"phone variant", store.LeadFilter{Phone: "551187654321"}, []int64{ana.ID}},
		{"source", store.LeadFilter{Source: "site"}, []int64{ana.ID}},
		{"status", store.LeadFilter{Status: "qualified"}, []int64{bia.ID}},
		{"tag", store.LeadFilter{Tags: []string{"vip"}}, []int64{bia.ID, ana.ID}},
		{"tags", store.LeadFilter{Tags: []string{"vip", "sp"}}, []int64{ana.ID}},
		{"created range", store.LeadFilter{CreatedAfter: &after, CreatedBefore: &before}, []int64{noName.ID, bia.ID, ana.ID}},
		{"created after", store.LeadFilter{CreatedAfter: &before}, nil},
		{"everything", store.LeadFilter{Q: "ana", Phone: "5511987654321", Source: "site", Status: "new", Tags: []string{"sp"},
			CreatedAfter: &after, CreatedBefore: &before}, []int64{ana.ID}},
	} {
		if got := ids(c.f); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if _, err := q.Get(ctx, other, ana.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other tenant's get: %v", err)
	}
	got, err := q.Get(ctx, m, ana.ID)
	if err != nil || got.ID != ana.ID || got.Phone != "5511987654321" {
		t.Fatalf("get %+v %v", got, err)
	}
}

// Pages walk every lead once, also when many share created_at.
func TestLeadsKeysetPages(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m := newMentorado(t, db, "a")
	for i := range 25 {
		if _, _, err := db.Leads().Create(ctx, m, store.LeadInput{Phone: fmt.Sprintf("1415555%04d", i), Source: "api", Status: "new"}); err != nil {
			t.Fatal(err)
		}
	}
	// Three timestamps for 25 leads.
	exec(t, db, `UPDATE leads SET created_at = '2026-01-01T00:00:00Z'::timestamptz + (id % 3) * interval '1 second' WHERE mentorado_id = $1`, m)
	var seen []int64
	var after *store.LeadKeyset
	for range 20 {
		rows, err := db.Leads().List(ctx, m, store.LeadFilter{}, after, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			seen = append(seen, r.ID)
		}
		if len(rows) < 4 {
			break
		}
		last := rows[len(rows)-1]
		after = &store.LeadKeyset{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	all, err := db.Leads().List(ctx, m, store.LeadFilter{}, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	var want []int64
	for _, r := range all {
		want = append(want, r.ID)
	}
	if len(want) != 25 || !slices.Equal(seen, want) {
		t.Fatalf("pages %v, want %v", seen, want)
	}
	for i := 1; i < len(all); i++ {
		a, b := all[i-1], all[i]
		if a.CreatedAt.Before(b.CreatedAt) || (a.CreatedAt.Equal(b.CreatedAt) && a.ID < b.ID) {
			t.Fatalf("not newest first at %d: %+v %+v", i, a, b)
		}
	}
}

// A lead created through the API adopts its person's orphan messages:
// its phone, the 9th-digit variant, LID-only messages of its LID or of a
// LID mapped to its phone; group messages only with group_leads on.
// LinkOrphans links by the same rule.
func TestLeadCreateAdoptsOrphans(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	for _, groupLeads := range []bool{false, true} {
		t.Run(fmt.Sprintf("group_leads=%v", groupLeads), func(t *testing.T) {
			m := newMentorado(t, db, "a")
			other := newMentorado(t, db, "b")
			exec(t, db, `UPDATE mentorados SET group_leads = $2 WHERE id = $1`, m, groupLeads)
			const p, p8, lid, mapped = "5511987654321", "551187654321", "111@lid", "222@lid"
			exec(t, db, `INSERT INTO whatsapp_lid_phones (mentorado_id, lid, phone) VALUES ($1, $2, $3)`, m, mapped, p)
			leadMsg(t, db, m, "plain", p, "", "")
			leadMsg(t, db, m, "ninth", p8, "", "")
			leadMsg(t, db, m, "lid", "", lid, "")
			leadMsg(t, db, m, "mapped", "", mapped, "")
			leadMsg(t, db, m, "group", p, "", "120363000000000042@g.us")
			leadMsg(t, db, m, "stranger", "5511933334444", "", "")
			leadMsg(t, db, m, "strangelid", "", "333@lid", "")
			leadMsg(t, db, other, "plain", p, "", "")

			l, linked, err := db.Leads().Create(ctx, m, store.LeadInput{Phone: p, LID: lid, Name: "Ana", Source: "api", Status: "new"})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{"plain": l.ID, "ninth": l.ID, "lid": l.ID, "mapped": l.ID, "stranger": 0, "strangelid": 0, "group": 0}
			if groupLeads {
				want["group"] = l.ID
			}
			n := int64(0)
			for id, lead := range want {
				if got := leadOf(t, db, m, id); got != lead {
					t.Errorf("%s linked to %d, want %d", id, got, lead)
				}
				if lead != 0 {
					n++
				}
			}
			if linked != n || l.MessageCount != n {
				t.Errorf("linked %d, count %d, want %d", linked, l.MessageCount, n)
			}
			if leadOf(t, db, other, "plain") != 0 {
				t.Error("another tenant's message adopted")
			}

			// The same rule by LinkOrphans, after the lead existed first.
			exec(t, db, `UPDATE whatsapp_messages SET lead_id = NULL WHERE mentorado_id = $1`, m)
			leadMsg(t, db, m, "late-ninth", p8, "", "")
			got, err := db.Messages().LinkOrphans(ctx, m)
			if err != nil || got != n+1 {
				t.Fatalf("link orphans %d %v, want %d", got, err, n+1)
			}
			for id, lead := range want {
				if got := leadOf(t, db, m, id); got != lead {
					t.Errorf("link orphans: %s linked to %d, want %d", id, got, lead)
				}
			}
			// An exact lead of the variant wins over the variant rule.
			exact, _, err := db.Leads().Create(ctx, m, store.LeadInput{Phone: "5521988887777", Source: "api", Status: "new"})
			if err != nil {
				t.Fatal(err)
			}
			leadMsg(t, db, m, "exact", "5521988887777", "", "")
			if _, err := db.Messages().LinkOrphans(ctx, m); err != nil {
				t.Fatal(err)
			}
			if leadOf(t, db, m, "exact") != exact.ID {
				t.Error("exact phone not linked to its lead")
			}
		})
	}
}

// A LID whose phone is known gives the lead that phone; the LID of an
// existing lead is a conflict.
func TestLeadCreateByLID(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m := newMentorado(t, db, "a")
	exec(t, db, `INSERT INTO whatsapp_lid_phones (mentorado_id, lid, phone) VALUES ($1, '222@lid', '5511987654321')`, m)
	l, _, err := db.Leads().Create(ctx, m, store.LeadInput{LID: "222@lid", Source: "api", Status: "new"})
	if err != nil || l.Phone != "5511987654321" || l.LID != "222@lid" {
		t.Fatalf("lead %+v %v", l, err)
	}
	only, _, err := db.Leads().Create(ctx, m, store.LeadInput{LID: "333@lid", Source: "api", Status: "new"})
	if err != nil || only.Phone != "" || only.LID != "333@lid" {
		t.Fatalf("LID-only lead %+v %v", only, err)
	}
	var ex *store.LeadExistsError
	if _, _, err := db.Leads().Create(ctx, m, store.LeadInput{Phone: "5521988887777", LID: "333@lid", Source: "api", Status: "new"}); !errors.As(err, &ex) || ex.ID != only.ID {
		t.Fatalf("same LID: %v", err)
	}
}

// Updates merge fields, set crm names, write one updated event per change
// and none for a patch that changes nothing; deletes keep the messages.
func TestLeadUpdateDeleteEvents(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m := newMentorado(t, db, "a")
	other := newMentorado(t, db, "b")
	q := db.Leads()
	leadMsg(t, db, m, "w1", "5511987654321", "", "")
	l, linked, err := q.Create(ctx, m, store.LeadInput{Phone: "5511987654321", Source: "api", Status: "new", Fields: map[string]string{"a": "1", "b": "2"}})
	if err != nil || linked != 1 {
		t.Fatalf("create %v %d", err, linked)
	}
	str := func(s string) *string { return &s }
	tags := []string{"x"}
	up, err := q.Update(ctx, m, l.ID, store.LeadPatch{Name: str("Ana"), Status: str("won"), Tags: &tags,
		Fields: map[string]*string{"a": nil, "c": str("3")}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up.Name != "Ana" || up.NameSource != "crm" || up.Status != "won" || !slices.Equal(up.Tags, tags) ||
		len(up.Fields) != 2 || up.Fields["b"] != "2" || up.Fields["c"] != "3" || !up.UpdatedAt.After(l.UpdatedAt) || up.MessageCount != 1 {
		t.Fatalf("updated %+v", up)
	}
	same, err := q.Update(ctx, m, l.ID, store.LeadPatch{Status: str("won")}, nil)
	if err != nil || !same.UpdatedAt.Equal(up.UpdatedAt) {
		t.Fatalf("no-op update %+v %v", same, err)
	}
	refuse := errors.New("too many")
	if _, err := q.Update(ctx, m, l.ID, store.LeadPatch{Fields: map[string]*string{"d": str("4")}}, func(r store.LeadRow) error {
		if len(r.Fields) > 2 {
			return refuse
		}
		return nil
	}); !errors.Is(err, refuse) {
		t.Fatalf("check: %v", err)
	}
	if _, err := q.Update(ctx, other, l.ID, store.LeadPatch{Status: str("x")}, nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other tenant's update: %v", err)
	}
	cleared, err := q.Update(ctx, m, l.ID, store.LeadPatch{Name: str("")}, nil)
	if err != nil || cleared.Name != "" || cleared.NameSource != "" {
		t.Fatalf("cleared name %+v %v", cleared, err)
	}
	if err := q.Delete(ctx, other, l.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other tenant's delete: %v", err)
	}
	if err := q.Delete(ctx, m, l.ID); err != nil {
		t.Fatal(err)
	}
	if err := q.Delete(ctx, m, l.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if leadOf(t, db, m, "w1") != 0 {
		t.Fatal("message still linked")
	}

	evs := leadEventRows(t, db, m)
	if len(evs) != 4 {
		t.Fatalf("events %d, want created-as-updated, update, clear, delete", len(evs))
	}
	type lead struct {
		LeadID     int64             `json:"lead_id"`
		Change     string            `json:"change"`
		Phone      string            `json:"phone"`
		Name       string            `json:"name"`
		NameSource string            `json:"name_source"`
		Source     string            `json:"source"`
		Status     string            `json:"status"`
		Tags       []string          `json:"tags"`
		Fields     map[string]string `json:"fields"`
	}
	var data []lead
	for _, e := range evs {
		var d lead
		if err := json.Unmarshal(e.Data, &d); err != nil {
			t.Fatal(err)
		}
		data = append(data, d)
	}
	for i, c := range []string{"updated", "updated", "updated", "deleted"} {
		if data[i].Change != c || data[i].LeadID != l.ID || data[i].Phone != "5511987654321" {
			t.Errorf("event %d: %+v", i, data[i])
		}
	}
	if d := data[1]; d.Name != "Ana" || d.NameSource != "crm" || d.Status != "won" || !slices.Equal(d.Tags, tags) || d.Fields["c"] != "3" || d.Source != "api" {
		t.Errorf("update event %+v", d)
	}
	wantID := fmt.Sprintf("%d:lead:%d:updated:%d", m, l.ID, up.UpdatedAt.UnixNano())
	if evs[1].EventID != wantID || !evs[1].OccurredAt.Equal(up.UpdatedAt) {
		t.Errorf("update event id %s at %v, want %s at %v", evs[1].EventID, evs[1].OccurredAt, wantID, up.UpdatedAt)
	}
	if evs[3].EventID != fmt.Sprintf("%d:lead:%d:deleted", m, l.ID) {
		t.Errorf("delete event id %s", evs[3].EventID)
	}
}

// A notification reaches a listener when the transaction that wrote a
// lead event commits.
func TestLeadEventsListener(t *testing.T) {
	db := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := newMentorado(t, db, "a")
	ln, err := db.ListenLeadEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close(context.Background())
	if _, _, err := db.Leads().Create(ctx, m, store.LeadInput{Phone: "5511987654321", Source: "api", Status: "new"}); err != nil {
		t.Fatal(err)
	}
	if err := ln.Wait(ctx); err != nil {
		t.Fatalf("no notification: %v", err)
	}
}

// A LID-only lead the CRM tagged, merged into the phone's lead when
// WhatsApp tells the mapping, leaves its tags and fields on the phone lead.
func TestLeadMergeKeepsCRMData(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m := newMentorado(t, db, "a")
	lidLead, _, err := db.Leads().Create(ctx, m, store.LeadInput{LID: "333@lid", Source: "api", Status: "new",
		Tags: []string{"vip", "sp"}, Fields: map[string]string{"plan": "gold", "city": "SP"}})
	if err != nil {
		t.Fatal(err)
	}
	phoneLead, _, err := db.Leads().Create(ctx, m, store.LeadInput{Phone: "5511987654321", Source: "api", Status: "new",
		Tags: []string{"sp", "new"}, Fields: map[string]string{"city": "Rio"}})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, db, store.MergeFillLeadSQL, []int64{m}, []string{"333@lid"}, []string{"5511987654321"})
	got, err := db.Leads().Get(ctx, m, phoneLead.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Tags, []string{"sp", "new", "vip"}) || got.Fields["plan"] != "gold" || got.Fields["city"] != "Rio" || got.LID != "333@lid" {
		t.Fatalf("merged %+v (from %+v)", got, lidLead)
	}
}
