package persister

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
)

// TestConnectionLog: every connection event is one connection_log row,
// however often it is delivered and in whatever batches; events older than
// the retention are not recorded, and rows past it are pruned with the
// mentorado's next event. The stored status names the connector of the
// newest event.
func TestConnectionLog(t *testing.T) {
	p := newTestPersister(t, 2)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	conn := func(m int64, st event.Status, at time.Time, connector string) event.Envelope {
		c := &event.Connection{Status: st, Reason: "r-" + string(st), Connector: connector}
		return mustEnv(t, m, event.ConnectionEventID(m, st, at), at, c)
	}
	// An old row the next event of mentorado 1 prunes.
	if _, err := p.db.Pool.Exec(ctx, `INSERT INTO connection_log (mentorado_id, event_id, status, occurred_at)
		VALUES (1, 'old', 'connected', now() - interval '8 days'), (2, 'old', 'connected', now() - interval '8 days')`); err != nil {
		t.Fatal(err)
	}
	envs := []event.Envelope{
		conn(1, event.StatusConnecting, now.Add(-3*time.Minute), "node-a"),
		conn(1, event.StatusBackoff, now.Add(-2*time.Minute), "node-a"),
		conn(1, event.StatusConnected, now.Add(-time.Minute), "node-b"),
		conn(1, event.StatusBanned, now.Add(-10*24*time.Hour), "node-a"), // older than the retention
	}
	var items []Item
	for i, e := range envs {
		items = append(items, item(t, e, uint64(i+1)))
	}
	// Delivered in two batches, then all again (redelivery), then one by one.
	for _, b := range [][]Item{items[:2], items[2:], items, items[:1], items[1:2], items[2:3]} {
		poison, err := p.Apply(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range poison {
			if e != nil {
				t.Fatalf("poison: %v", e)
			}
		}
	}
	rows, err := p.db.Pool.Query(ctx, `SELECT mentorado_id, event_id, status, reason FROM connection_log ORDER BY mentorado_id, occurred_at`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var (
			m              int64
			id, st, reason string
		)
		if err := rows.Scan(&m, &id, &st, &reason); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d|%s|%s|%s", m, id, st, reason))
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	want := []string{
		fmt.Sprintf("1|%s|connecting|r-connecting", envs[0].ID),
		fmt.Sprintf("1|%s|backoff|r-backoff", envs[1].ID),
		fmt.Sprintf("1|%s|connected|r-connected", envs[2].ID),
		"2|old|connected|", // no event of 2: kept until its next one
	}
	diffLines(t, "connection_log", want, got)

	var status, connector string
	if err := p.db.Pool.QueryRow(ctx, `SELECT wa_status, coalesce(wa_connector, '') FROM mentorados WHERE id = 1`).Scan(&status, &connector); err != nil {
		t.Fatal(err)
	}
	if status != "connected" || connector != "node-b" {
		t.Fatalf("mentorado 1: status %q connector %q, want connected on node-b", status, connector)
	}
}
