package persister

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// openDB opens a fresh migrated database with mentorados 1..n.
func openDB(t testing.TB, n int) *store.DB {
	t.Helper()
	return openDBAt(t, testenv.Postgres(t), n)
}

func openDBAt(t testing.TB, url string, n int) *store.DB {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(db.Close)
	if n > 0 {
		_, err = db.Pool.Exec(ctx, `INSERT INTO mentorados (id, name) OVERRIDING SYSTEM VALUE
			SELECT g, 'mentorado ' || g FROM generate_series(1, $1::int) g`, n)
		if err != nil {
			t.Fatalf("insert mentorados: %v", err)
		}
		for m := int64(1); m <= int64(n); m++ {
			set := testSettings(m)
			if _, err := db.Pool.Exec(ctx, `UPDATE mentorados SET group_leads = $2, history_leads = $3, history_lead_days = $4 WHERE id = $1`,
				m, set.groupLeads, set.historyLeads, set.historyDays); err != nil {
				t.Fatalf("settings: %v", err)
			}
		}
	}
	return db
}

// testSettings are the lead settings of test mentorado m: 1 the defaults
// (no group leads, recent history for 30 days), 2 group leads and all
// history, 3 no history leads and 7 days, then again.
func testSettings(m int64) settings {
	switch m % 3 {
	case 2:
		return settings{groupLeads: true, historyLeads: "all", historyDays: 30}
	case 0:
		return settings{historyLeads: "none", historyDays: 7}
	}
	return settings{historyLeads: "recent", historyDays: 30}
}

func mustEnv(t testing.TB, m int64, id string, at time.Time, p event.Payload) event.Envelope {
	t.Helper()
	env, err := event.New(m, id, at, p)
	if err != nil {
		t.Fatalf("event.New: %v", err)
	}
	return env
}

// inboundText is mentorado 1's inbound text "oi" from 5511911112222 with
// WhatsApp id id.
func inboundText(t testing.TB, id string, at time.Time) event.Envelope {
	t.Helper()
	return mustEnv(t, 1, event.MessageEventID(1, id), at, &event.Message{WAID: id, ChatJID: "5511911112222@s.whatsapp.net",
		SenderJID: "5511911112222@s.whatsapp.net", Phone: "5511911112222", Direction: event.DirectionIn,
		Kind: event.KindText, Text: "oi", Timestamp: at, Status: event.MessageReceived})
}

func item(t testing.TB, env event.Envelope, seq uint64) Item {
	t.Helper()
	b, err := env.Encode()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return Item{Subject: env.Subject(), Seq: seq, Data: b}
}

// dump returns the persister's tables as sorted lines of natural keys
// (no surrogate ids, no created/updated times), so two databases can be
// compared row by row. Name versions appear as their time only: the same
// fact stored again (a raw republish) has a higher sequence and rightly
// takes over an equal value.
func dump(t testing.TB, db *store.DB) []string {
	t.Helper()
	ctx := context.Background()
	queries := []string{
		`SELECT 'mentorado', id::text, wa_status, coalesce(wa_phone,'-'), coalesce(wa_jid,'-'), coalesce(wa_reason,'-'),
			coalesce(to_char(wa_status_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'),'-'), wa_status_seq::text,
			coalesce(to_char(wa_phone_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'),'-'), wa_phone_seq::text,
			coalesce(wa_connector,'-') FROM mentorados`,
		`SELECT 'lead', mentorado_id::text, coalesce(phone,'-'), coalesce(lid,'-'), name, source, stage,
			coalesce(to_char(name_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'),'-'), coalesce(name_source, '-') FROM leads`,
		`SELECT 'msg', t.mentorado_id::text, t.wa_message_id, t.chat_jid, t.sender_jid, coalesce(t.phone,'-'), coalesce(t.lid,'-'),
			t.push_name, t.direction, t.kind, t.body, t.caption, coalesce(t.reply_to_id,'-'), coalesce(t.target_id,'-'),
			t.status, t.status_rank::text, t.edited::text, t.revoked::text,
			coalesce(l.phone, 'lid:' || l.lid, '-'), to_char(t.sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'),
			coalesce(t.media_id,'-'), coalesce(t.media_mime,'-'), coalesce(t.media_size::text,'-'), coalesce(t.media_file_name,'-'),
			coalesce(t.media_seconds::text,'-'), coalesce(t.media_width::text,'-'), coalesce(t.media_height::text,'-'),
			t.media_round::text, coalesce(encode(t.media_thumbnail,'hex'),'-'), coalesce(t.media_state,'-'), coalesce(t.media_error,'-'),
			t.chat, t.history::text
			FROM whatsapp_messages t LEFT JOIN leads l ON l.id = t.lead_id`,
		`SELECT 'group', g.mentorado_id::text, g.jid, g.subject, g.topic,
			coalesce((SELECT string_agg((p->>'jid') || ',' || coalesce(p->>'phone','') || ',' || coalesce(p->>'lid','') || ',' ||
				coalesce(p->>'admin','false'), ';' ORDER BY ord) FROM jsonb_array_elements(g.participants) WITH ORDINALITY AS x(p, ord)), '-'),
			g."left"::text, to_char(g.info_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS') FROM whatsapp_groups g`,
		`SELECT 'pending', mentorado_id::text, wa_message_id, status, status_rank::text FROM whatsapp_pending_receipts`,
		`SELECT 'pmedia', mentorado_id::text, wa_message_id, state, coalesce(media_size::text,'0'), coalesce(media_error,'-') FROM whatsapp_pending_media`,
		`SELECT 'contact', mentorado_id::text, jid, coalesce(phone,'-'), coalesce(lid,'-'), name, push_name, business_name,
			coalesce(to_char(name_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'),'-'),
			coalesce(to_char(push_name_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'),'-'),
			coalesce(to_char(business_name_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS'),'-')
			FROM whatsapp_contacts`,
		`SELECT 'lidmap', mentorado_id::text, lid, phone FROM whatsapp_lid_phones`,
	}
	var out []string
	for _, q := range queries {
		rows, err := db.Pool.Query(ctx, q)
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		lines, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			vals, err := r.Values()
			if err != nil {
				return "", err
			}
			parts := make([]string, len(vals))
			for i, v := range vals {
				parts[i] = fmt.Sprint(v)
			}
			return strings.Join(parts, "|"), nil
		})
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		out = append(out, lines...)
	}
	slices.Sort(out)
	return out
}

// dumpLeadFacts renders the outbox like model.leadFacts: every lead event
// but renamed, by what it is about (the lead's phone, or LID for a lead
// created without one), sorted.
func dumpLeadFacts(t testing.TB, db *store.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT 'leadevent|' || mentorado_id || '|' || (data->>'change') || '|' ||
		CASE data->>'change' WHEN 'created' THEN coalesce(data->>'phone', 'lid:' || (data->>'lid'))
			WHEN 'phone' THEN (data->>'lid') || '>' || (data->>'phone') ELSE data->>'phone' END
		FROM lead_events WHERE data->>'change' <> 'renamed'`)
	if err != nil {
		t.Fatalf("lead facts: %v", err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("lead facts: %v", err)
	}
	slices.Sort(out)
	return out
}

// diffLines fails the test with the first differences between want and got.
func diffLines(t testing.TB, label string, want, got []string) {
	t.Helper()
	if slices.Equal(want, got) {
		return
	}
	w := map[string]bool{}
	for _, s := range want {
		w[s] = true
	}
	g := map[string]bool{}
	for _, s := range got {
		g[s] = true
	}
	var missing, extra []string
	for _, s := range want {
		if !g[s] {
			missing = append(missing, s)
		}
	}
	for _, s := range got {
		if !w[s] {
			extra = append(extra, s)
		}
	}
	if len(missing) > 10 {
		missing = missing[:10]
	}
	if len(extra) > 10 {
		extra = extra[:10]
	}
	t.Fatalf("%s: %d rows want, %d got\nmissing:\n  %s\nunexpected:\n  %s", label, len(want), len(got),
		strings.Join(missing, "\n  "), strings.Join(extra, "\n  "))
}
