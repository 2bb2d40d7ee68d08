package connector_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/store"
)

// Helpers of the sending tests (issue #14): rows as the notifier and the
// persister write them, and what the connector made of them.

// sendSettings stores mentorado m's sending settings (JSON overrides) and
// clears its bulk pause.
func (e *env) sendSettings(m int64, settings string) {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), `
INSERT INTO send_settings (mentorado_id, settings) VALUES ($1, $2)
ON CONFLICT (mentorado_id) DO UPDATE SET settings = EXCLUDED.settings, bulk_paused_at = NULL, bulk_paused_reason = NULL, updated_at = now()`,
		m, settings); err != nil {
		e.t.Fatal(err)
	}
}

// campaign inserts a running campaign of m to phones, as the notifier
// creates one (each recipient's text rendered).
func (e *env) campaign(m int64, name string, pacing outbound.Pacing, phones []string) int64 {
	e.t.Helper()
	ctx := context.Background()
	msg, _ := json.Marshal(store.CampaignMessage{Kind: event.KindText, Text: "Oi {{first_name|amigo}}, novidades!"})
	pj, _ := json.Marshal(pacing)
	var id int64
	if err := e.db.Pool.QueryRow(ctx, `
INSERT INTO campaigns (mentorado_id, name, state, message, pacing, source, total, started_at)
VALUES ($1, $2, 'running', $3, $4, '{"phones": true}', $5, now()) RETURNING id`,
		m, name, msg, pj, len(phones)).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	texts := make([]string, len(phones))
	names := make([]string, len(phones))
	for i, p := range phones {
		names[i] = fmt.Sprintf("Pessoa %d", i)
		texts[i] = fmt.Sprintf("Oi Pessoa %d, novidades! (%s)", i, p)
	}
	if _, err := e.db.Pool.Exec(ctx, `
INSERT INTO campaign_recipients (campaign_id, mentorado_id, phone, name, text)
SELECT $1, $2, p, n, t FROM unnest($3::text[], $4::text[], $5::text[]) AS u(p, n, t)`,
		id, m, phones, names, texts); err != nil {
		e.t.Fatal(err)
	}
	return id
}

type recipientState struct {
	phone, state, reason, waID, jid string
}

func (e *env) recipients(campaign int64) []recipientState {
	e.t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `
SELECT phone, state, coalesce(reason, ''), coalesce(wa_message_id, ''), coalesce(jid, '')
FROM campaign_recipients WHERE campaign_id = $1 ORDER BY id`, campaign)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []recipientState
	for rows.Next() {
		var r recipientState
		if err := rows.Scan(&r.phone, &r.state, &r.reason, &r.waID, &r.jid); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func (e *env) campaignState(campaign int64) (state, reason string) {
	e.t.Helper()
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT state, coalesce(pause_reason, '') FROM campaigns WHERE id = $1`, campaign).Scan(&state, &reason); err != nil {
		e.t.Fatal(err)
	}
	return state, reason
}

// unfinished counts the campaign's recipients still pending or sending.
func (e *env) unfinished(campaign int64) int {
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM campaign_recipients WHERE campaign_id = $1 AND state IN ('pending', 'sending')`, campaign).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// outboxStates are m's outbox rows' states by WhatsApp id.
func (e *env) outboxStates(m int64) map[string]string {
	e.t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT wa_message_id, state FROM outbox WHERE mentorado_id = $1`, m)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			e.t.Fatal(err)
		}
		out[id] = st
	}
	return out
}

// sentEvents are the message events of m by WhatsApp id, statuses in order.
func (e *env) messageStatuses(m int64) map[string][]event.MessageStatus {
	out := map[string][]event.MessageStatus{}
	for _, env := range e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage)) {
		p, err := env.Payload()
		if err != nil {
			e.t.Fatal(err)
		}
		msg := p.(*event.Message)
		if msg.Direction == event.DirectionOut {
			out[msg.WAID] = append(out[msg.WAID], msg.Status)
		}
	}
	return out
}
