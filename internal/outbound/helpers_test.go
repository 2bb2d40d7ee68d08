package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// openDB opens a fresh migrated database with one mentorado, whose id it
// returns.
func openDB(t *testing.T) (*store.DB, int64) {
	t.Helper()
	db, err := store.Open(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db, addMentorado(t, db)
}

func addMentorado(t *testing.T, db *store.DB) int64 {
	t.Helper()
	var id int64
	if err := db.Pool.QueryRow(context.Background(), `INSERT INTO mentorados (name) VALUES ('m') RETURNING id`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func exec(t *testing.T, db *store.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryOne[T any](t *testing.T, db *store.DB, sql string, args ...any) T {
	t.Helper()
	var v T
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// recPub records published envelopes; fail makes Publish fail.
type recPub struct {
	mu   sync.Mutex
	envs []event.Envelope
	fail bool
}

func (p *recPub) Publish(_ context.Context, env event.Envelope) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return errors.New("nats down")
	}
	p.envs = append(p.envs, env)
	return nil
}

func (p *recPub) setFail(f bool) {
	p.mu.Lock()
	p.fail = f
	p.mu.Unlock()
}

// all returns the envelopes published so far.
func (p *recPub) all() []event.Envelope {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]event.Envelope(nil), p.envs...)
}

// messages returns the message payloads published, by event id.
func (p *recPub) messages(t *testing.T) map[string]event.Message {
	t.Helper()
	out := map[string]event.Message{}
	for _, env := range p.all() {
		if env.Type != event.TypeMessage {
			continue
		}
		var m event.Message
		if err := json.Unmarshal(env.Data, &m); err != nil {
			t.Fatal(err)
		}
		out[env.ID] = m
	}
	return out
}

// sendings returns the sending payloads published, in order.
func (p *recPub) sendings(t *testing.T) []event.Sending {
	t.Helper()
	var out []event.Sending
	for _, env := range p.all() {
		if env.Type != event.TypeSending {
			continue
		}
		var s event.Sending
		if err := json.Unmarshal(env.Data, &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// addCampaign inserts a campaign of m in state with pacing and one
// recipient per phone (text "hi <phone>"), returning its id.
func addCampaign(t *testing.T, db *store.DB, m int64, state event.CampaignState, pacing Pacing, phones ...string) int64 {
	t.Helper()
	p, _ := json.Marshal(pacing)
	id := queryOne[int64](t, db, `INSERT INTO campaigns (mentorado_id, name, state, message, pacing, total)
		VALUES ($1, 'c', $2, '{"kind": "text", "text": "hi {{phone}}"}', $3, $4) RETURNING id`, m, state, p, len(phones))
	for _, ph := range phones {
		exec(t, db, `INSERT INTO campaign_recipients (campaign_id, mentorado_id, phone, text) VALUES ($1, $2, $3, $4)`,
			id, m, ph, fmt.Sprintf("hi %s", ph))
	}
	return id
}

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
