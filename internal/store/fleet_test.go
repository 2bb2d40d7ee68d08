package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/store"
)

// TestFleet: the counts cover the whole fleet, one state per mentorado; a
// page carries each one's connection_log counts of the last 24 h, unread
// messages and newest message; search and the state filter select.
func TestFleet(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	exec(t, db, `INSERT INTO mentorados (name, wa_status, wa_phone, wa_connector, wa_status_at, disabled_at) VALUES
		('Ana', 'connected', '5511900000001', 'node-a', now() - interval '1 hour', NULL),
		('Bia', 'qr', NULL, 'node-a', now(), NULL),
		('Caio', 'backoff', '5511900000003', 'node-b', now(), NULL),
		('Davi', 'banned', '5511900000004', 'node-b', now(), NULL),
		('Eva', 'logged_out', NULL, NULL, now(), NULL),
		('Fábio', 'disconnected', NULL, NULL, NULL, NULL),
		('Gil 100%', 'connected', '5511900000007', 'node-a', now(), now()),
		('Hugo', 'conflict', NULL, NULL, now(), NULL)`)
	var ana, caio int64
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT id FROM mentorados WHERE name = 'Ana'), (SELECT id FROM mentorados WHERE name = 'Caio')`).Scan(&ana, &caio); err != nil {
		t.Fatal(err)
	}
	exec(t, db, `INSERT INTO connection_log (mentorado_id, event_id, status, occurred_at) VALUES
		($1, 'a1', 'backoff', now() - interval '1 hour'), ($1, 'a2', 'connecting', now() - interval '59 minutes'),
		($1, 'a3', 'backoff', now() - interval '2 hours'), ($1, 'a4', 'backoff', now() - interval '25 hours'),
		($1, 'a5', 'banned', now() - interval '3 hours'), ($2, 'c1', 'backoff', now())`, ana, caio)
	exec(t, db, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, phone, direction, kind, body, status, status_rank, sent_at)
		VALUES ($1, 'm1', '551198@s.whatsapp.net', '551198@s.whatsapp.net', '551198', 'in', 'text', 'a', 'delivered', 2, now() - interval '5 minutes'),
		       ($1, 'm2', '551198@s.whatsapp.net', '551198@s.whatsapp.net', '551198', 'in', 'text', 'b', 'read', 3, now() - interval '4 minutes'),
		       ($1, 'm3', '551198@s.whatsapp.net', '551198@s.whatsapp.net', '551198', 'in', 'reaction', '', 'delivered', 2, now() - interval '3 minutes'),
		       ($1, 'm4', '551197@s.whatsapp.net', '551197@s.whatsapp.net', '551197', 'in', 'text', 'c', 'delivered', 2, now() - interval '2 minutes')`, ana)

	c, err := db.Fleet().Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := store.FleetCounts{Connected: 1, Pairing: 1, Backoff: 1, Banned: 1, LoggedOut: 1, Disconnected: 2, Disabled: 1, Total: 8}
	if c != want {
		t.Fatalf("counts %+v, want %+v", c, want)
	}
	rows, err := db.Fleet().List(ctx, store.FleetFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 8 {
		t.Fatalf("%d rows", len(rows))
	}
	a := rows[0]
	if a.ID != ana || a.State != "connected" || a.Connector != "node-a" || a.Reconnects24h != 2 || a.Bans24h != 1 || a.Unread != 2 ||
		a.LastMessageAt == nil || a.StatusAt == nil || a.Phone != "5511900000001" {
		t.Fatalf("Ana %+v", a)
	}
	if rows[2].Reconnects24h != 1 || rows[2].State != "backoff" || rows[1].State != "pairing" || rows[6].State != "disabled" || rows[7].State != "disconnected" {
		t.Fatalf("rows %+v", rows)
	}

	names := func(f store.FleetFilter) string {
		t.Helper()
		f.Limit = 100
		rs, err := db.Fleet().List(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		f    store.FleetFilter
		want string
	}{
		{store.FleetFilter{Query: "bi"}, "Bia,Fábio"},
		{store.FleetFilter{Query: "900000003"}, "Caio"},
		{store.FleetFilter{Query: "100%"}, "Gil 100%"},
		{store.FleetFilter{Query: "_"}, ""},
		{store.FleetFilter{State: "disconnected"}, "Fábio,Hugo"},
		{store.FleetFilter{State: "connected"}, "Ana"},
		{store.FleetFilter{State: "disabled"}, "Gil 100%"},
		{store.FleetFilter{After: caio, State: "banned"}, "Davi"},
	} {
		if got := names(tc.f); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.f, got, tc.want)
		}
	}
}
