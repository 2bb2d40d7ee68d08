package store_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// TestGatewayCampaignMentorados: the gateways' campaign query returns the
// enabled mentorados with a running or due scheduled campaign whose
// active provider (event.PickProvider: override when configured, else
// Meta > WhatsApp Web > Z-API) is one of the gateway's.
func TestGatewayCampaignMentorados(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	type setup struct {
		name      string
		providers []string // beside the whatsapp_web row every new mentorado gets
		dropWeb   bool
		override  string
		state     event.CampaignState
		startAt   *time.Time
		disabled  bool
		want      event.Provider // "" not listed
	}
	later, earlier := now.Add(time.Hour), now.Add(-time.Minute)
	cases := []setup{
		{name: "meta by priority", providers: []string{"meta"}, state: event.CampaignRunning, want: event.ProviderMeta},
		{name: "web before zapi", providers: []string{"zapi"}, state: event.CampaignRunning},
		{name: "zapi override", providers: []string{"zapi"}, override: "zapi", state: event.CampaignRunning, want: event.ProviderZAPI},
		{name: "unconfigured override", providers: []string{"zapi"}, dropWeb: true, override: "meta", state: event.CampaignRunning, want: event.ProviderZAPI},
		{name: "web override", providers: []string{"meta"}, override: "whatsapp_web", state: event.CampaignRunning},
		{name: "scheduled later", providers: []string{"meta"}, state: event.CampaignScheduled, startAt: &later},
		{name: "scheduled due", providers: []string{"meta"}, state: event.CampaignScheduled, startAt: &earlier, want: event.ProviderMeta},
		{name: "scheduled now", providers: []string{"meta"}, state: event.CampaignScheduled, want: event.ProviderMeta},
		{name: "paused", providers: []string{"meta"}, state: event.CampaignPaused},
		{name: "completed", providers: []string{"meta"}, state: event.CampaignCompleted},
		{name: "disabled", providers: []string{"meta"}, state: event.CampaignRunning, disabled: true},
	}
	want := map[int64]event.Provider{}
	names := map[int64]string{}
	for _, c := range cases {
		m, err := db.Mentorados().Create(ctx, c.name, nil)
		if err != nil {
			t.Fatal(err)
		}
		names[m] = c.name
		for _, p := range c.providers {
			exec(t, db, `INSERT INTO provider_configs (mentorado_id, provider) VALUES ($1, $2)`, m, p)
		}
		if c.dropWeb {
			exec(t, db, `DELETE FROM provider_configs WHERE mentorado_id = $1 AND provider = 'whatsapp_web'`, m)
		}
		if c.override != "" {
			exec(t, db, `UPDATE mentorados SET active_provider = $2 WHERE id = $1`, m, c.override)
		}
		if c.disabled {
			exec(t, db, `UPDATE mentorados SET disabled_at = now() WHERE id = $1`, m)
		}
		if _, err := db.Campaigns().Create(ctx, m, store.CampaignInput{Name: "c", State: event.CampaignScheduled,
			Message: store.CampaignMessage{Kind: event.KindText, Text: "oi"}, Pacing: json.RawMessage(`{}`), StartAt: c.startAt,
			Recipients: []store.RecipientInput{{Phone: "5511988880000", Text: "oi"}}}); err != nil {
			t.Fatal(err)
		}
		exec(t, db, `UPDATE campaigns SET state = $2 WHERE mentorado_id = $1`, m, c.state)
		if c.want != "" {
			want[m] = c.want
		}
	}
	got, err := db.GatewayCampaignMentorados(ctx, []event.Provider{event.ProviderMeta, event.ProviderZAPI}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(got, func(a, b store.GatewayCampaignMentorado) int { return int(a.ID - b.ID) }) {
		t.Fatalf("not by id: %v", got)
	}
	gotMap := map[int64]event.Provider{}
	for _, g := range got {
		gotMap[g.ID] = g.Provider
	}
	for m, name := range names {
		if gotMap[m] != want[m] {
			t.Errorf("%s: got %q, want %q", name, gotMap[m], want[m])
		}
	}
	// A gateway with only the zapi driver sees only the zapi ones.
	got, err = db.GatewayCampaignMentorados(ctx, []event.Provider{event.ProviderZAPI}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		if g.Provider != event.ProviderZAPI {
			t.Fatalf("zapi gateway got %+v", g)
		}
	}
	if len(got) != 2 {
		t.Fatalf("zapi gateway got %v, want the two zapi mentorados", got)
	}
}

// TestCampaignLocks: one session at a time holds a mentorado's campaign
// lock; unlocking or closing the connection lets another take it; the
// lock of one mentorado does not block another's.
func TestCampaignLocks(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	a, err := db.OpenCampaignLocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := db.OpenCampaignLocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	try := func(l *store.CampaignLocks, m int64) bool {
		t.Helper()
		ok, err := l.TryLock(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !try(a, 7) || try(b, 7) || !try(b, 8) {
		t.Fatal("7 should be a's alone, 8 free for b")
	}
	if err := a.Unlock(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if !try(b, 7) || try(a, 7) {
		t.Fatal("7 not handed over after unlock")
	}
	if err := b.Unlock(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if !try(a, 7) || a.Ping(ctx) != nil {
		t.Fatal("a cannot take 7 back")
	}
	// The mentorado lock class (persister batches) is another key space.
	if err := db.InTx(ctx, func(tx pgx.Tx) error { return store.LockMentorado(ctx, tx, 7) }); err != nil {
		t.Fatalf("mentorado lock blocked by the campaign lock: %v", err)
	}
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !try(b, 7) {
		t.Fatal("closing the connection did not release its locks")
	}
}
