package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Webhooks: the API's side (issue #13, docs/api.md#webhooks). Every query
// is scoped: a tenant's endpoints (mentorado_id = m) or, with a nil
// mentorado, the admin-level ones (mentorado_id IS NULL); an endpoint
// outside the scope is ErrNotFound. Every change is followed, in the same
// transaction, by NOTIFY zapbus_webhooks (WebhooksChannel) with the
// endpoint's id, so dispatchers reconcile at once after the commit.

// ErrWebhookLimit is returned by Create when the scope already has the
// maximum number of endpoints.
var ErrWebhookLimit = errors.New("store: webhook endpoint limit reached")

// WebhookReasonPausedByUser is the state_reason of an endpoint paused
// through the API.
const WebhookReasonPausedByUser = "paused by user"

// WebhookAPIQueries are the API's queries on webhooks and
// webhook_deliveries.
type WebhookAPIQueries struct{ db *DB }

// WebhookAPI returns the API's webhook queries.
func (db *DB) WebhookAPI() WebhookAPIQueries { return WebhookAPIQueries{db: db} }

// WebhookCreate is a new endpoint.
type WebhookCreate struct {
	URL         string
	Description string
	EventTypes  []string
	Secret      string
	// StartTime is where its consumer starts in the stream.
	StartTime time.Time
	// Max is how many endpoints the scope may have (0: no limit).
	Max int
}

// WebhookPatch changes the fields given. A change of EventTypes changes
// the filter of the endpoint's consumer in place (the dispatcher updates
// it; the generation stays): the position is kept, so nothing waiting for
// a retry is skipped, and events of newly added types are delivered from
// the consumer's current position on. A change of URL clears the health
// counters, which were about the old URL.
type WebhookPatch struct {
	URL         *string
	Description *string
	EventTypes  []string // nil: unchanged
}

const webhookColumns = `id, mentorado_id, url, description, event_types, secret, previous_secret, previous_secret_until,
	state, state_reason, state_at, start_time, start_seq, generation, consecutive_failures, failing_since,
	last_success_at, last_failure_at, created_at, updated_at`

func scanWebhook(row pgx.Row) (Webhook, error) {
	var w Webhook
	err := row.Scan(&w.ID, &w.MentoradoID, &w.URL, &w.Description, &w.EventTypes, &w.Secret, &w.PreviousSecret,
		&w.PreviousSecretUntil, &w.State, &w.StateReason, &w.StateAt, &w.StartTime, &w.StartSeq, &w.Generation,
		&w.ConsecutiveFailures, &w.FailingSince, &w.LastSuccessAt, &w.LastFailureAt, &w.CreatedAt, &w.UpdatedAt)
	return w, notFound(err)
}

// webhookScope is the WHERE condition of scope m on table alias t, with m
// as parameter $n.
func webhookScope(t string, n int) string {
	p := "$" + strconv.Itoa(n)
	return "((" + p + "::bigint IS NULL AND " + t + ".mentorado_id IS NULL) OR " + t + ".mentorado_id = " + p + "::bigint)"
}

// webhookNotify signals the dispatchers in tx (delivered at commit).
func webhookNotify(ctx context.Context, tx pgx.Tx, id int64) error {
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, WebhooksChannel, strconv.FormatInt(id, 10)); err != nil {
		return fmt.Errorf("store: notify webhooks: %w", err)
	}
	return nil
}

// webhookChange runs one statement returning a webhook row and notifies in
// the same transaction.
func (q WebhookAPIQueries) webhookChange(ctx context.Context, sql string, args ...any) (Webhook, error) {
	var w Webhook
	err := q.db.InTx(ctx, func(tx pgx.Tx) error {
		var err error
		if w, err = scanWebhook(tx.QueryRow(ctx, sql, args...)); err != nil {
			return err
		}
		return webhookNotify(ctx, tx, w.ID)
	})
	return w, err
}

// Create inserts an endpoint of scope m (nil: admin-level), unless the
// scope already has in.Max of them (ErrWebhookLimit).
func (q WebhookAPIQueries) Create(ctx context.Context, m *int64, in WebhookCreate) (Webhook, error) {
	var w Webhook
	err := q.db.InTx(ctx, func(tx pgx.Tx) error {
		// One creation at a time per scope, so the limit holds.
		scope := "admin"
		if m != nil {
			scope = strconv.FormatInt(*m, 10)
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('zapbus webhooks ' || $1, 0))`, scope); err != nil {
			return err
		}
		if in.Max > 0 {
			var n int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM webhooks w WHERE `+webhookScope("w", 1), m).Scan(&n); err != nil {
				return err
			}
			if n >= in.Max {
				return ErrWebhookLimit
			}
		}
		var err error
		w, err = scanWebhook(tx.QueryRow(ctx, `
INSERT INTO webhooks (mentorado_id, url, description, event_types, secret, start_time)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING `+webhookColumns,
			m, in.URL, in.Description, in.EventTypes, in.Secret, in.StartTime))
		if err != nil {
			return fmt.Errorf("store: create webhook: %w", err)
		}
		return webhookNotify(ctx, tx, w.ID)
	})
	return w, err
}

// List returns scope m's endpoints by id, after id after (0: from the
// first), at most limit.
func (q WebhookAPIQueries) List(ctx context.Context, m *int64, after int64, limit int) ([]Webhook, error) {
	rows, err := q.db.Pool.Query(ctx, `SELECT `+webhookColumns+` FROM webhooks w WHERE `+webhookScope("w", 1)+
		` AND w.id > $2 ORDER BY w.id LIMIT $3`, m, after, limit)
	if err != nil {
		return nil, fmt.Errorf("store: list webhooks: %w", err)
	}
	defer rows.Close()
	var out []Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// Get returns endpoint id of scope m.
func (q WebhookAPIQueries) Get(ctx context.Context, m *int64, id int64) (Webhook, error) {
	return scanWebhook(q.db.Pool.QueryRow(ctx, `SELECT `+webhookColumns+` FROM webhooks w WHERE w.id = $2 AND `+webhookScope("w", 1), m, id))
}

// Update applies p to endpoint id of scope m.
func (q WebhookAPIQueries) Update(ctx context.Context, m *int64, id int64, p WebhookPatch) (Webhook, error) {
	return q.webhookChange(ctx, `
UPDATE webhooks w SET
	url = coalesce($3, w.url),
	description = coalesce($4, w.description),
	event_types = coalesce($5, w.event_types),
	consecutive_failures = CASE WHEN $3::text IS NOT NULL AND $3 <> w.url THEN 0 ELSE w.consecutive_failures END,
	failing_since = CASE WHEN $3::text IS NOT NULL AND $3 <> w.url THEN NULL ELSE w.failing_since END,
	updated_at = now()
WHERE w.id = $2 AND `+webhookScope("w", 1)+` RETURNING `+webhookColumns, m, id, p.URL, p.Description, p.EventTypes)
}

// Delete removes endpoint id of scope m (its delivery log goes with it).
func (q WebhookAPIQueries) Delete(ctx context.Context, m *int64, id int64) error {
	return q.db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM webhooks w WHERE w.id = $2 AND `+webhookScope("w", 1), m, id)
		if err != nil {
			return fmt.Errorf("store: delete webhook: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return webhookNotify(ctx, tx, id)
	})
}

// RotateSecret makes secret endpoint id's signing secret; the current one
// becomes the previous secret, which still signs for grace. Only one
// previous secret is kept: rotating twice within grace drops the oldest.
func (q WebhookAPIQueries) RotateSecret(ctx context.Context, m *int64, id int64, secret string, grace time.Duration) (Webhook, error) {
	return q.webhookChange(ctx, `
UPDATE webhooks w SET previous_secret = w.secret, previous_secret_until = now() + $4 * interval '1 microsecond',
	secret = $3, updated_at = now()
WHERE w.id = $2 AND `+webhookScope("w", 1)+` RETURNING `+webhookColumns, m, id, secret, grace.Microseconds())
}

// Pause pauses endpoint id of scope m ("paused by user"). Pausing an
// endpoint the user already paused changes nothing.
func (q WebhookAPIQueries) Pause(ctx context.Context, m *int64, id int64) (Webhook, error) {
	return q.webhookChange(ctx, `
UPDATE webhooks w SET state = 'paused', state_reason = $3,
	state_at = CASE WHEN w.state = 'paused' AND w.state_reason = $3 THEN w.state_at ELSE now() END, updated_at = now()
WHERE w.id = $2 AND `+webhookScope("w", 1)+` RETURNING `+webhookColumns, m, id, WebhookReasonPausedByUser)
}

// Resume makes endpoint id of scope m active again, whether paused (by the
// user or automatically) or disabled (410), and starts its health afresh.
// Its consumer keeps its position: what arrived meanwhile is delivered.
func (q WebhookAPIQueries) Resume(ctx context.Context, m *int64, id int64) (Webhook, error) {
	return q.webhookChange(ctx, `
UPDATE webhooks w SET state = 'active', state_reason = '',
	state_at = CASE WHEN w.state = 'active' THEN w.state_at ELSE now() END,
	consecutive_failures = 0, failing_since = NULL, updated_at = now()
WHERE w.id = $2 AND `+webhookScope("w", 1)+` RETURNING `+webhookColumns, m, id)
}

// Redeliver restarts endpoint id's consumer (generation+1) from stream
// sequence seq when it is set, else from time from.
func (q WebhookAPIQueries) Redeliver(ctx context.Context, m *int64, id int64, seq *int64, from time.Time) (Webhook, error) {
	if seq == nil && from.IsZero() {
		return Webhook{}, errors.New("store: redeliver needs a sequence or a time")
	}
	if seq != nil {
		from = time.Now()
	}
	return q.webhookChange(ctx, `
UPDATE webhooks w SET start_seq = $3, start_time = $4, generation = w.generation + 1, updated_at = now()
WHERE w.id = $2 AND `+webhookScope("w", 1)+` RETURNING `+webhookColumns, m, id, seq, from)
}

// DeliverySeq returns the stream sequence of delivery deliveryID (the
// webhook-id header) of endpoint id of scope m.
func (q WebhookAPIQueries) DeliverySeq(ctx context.Context, m *int64, id int64, deliveryID string) (int64, error) {
	var seq int64
	err := q.db.Pool.QueryRow(ctx, `
SELECT d.stream_seq FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
WHERE d.webhook_id = $2 AND d.delivery_id = $3 AND `+webhookScope("w", 1)+`
ORDER BY d.id DESC LIMIT 1`, m, id, deliveryID).Scan(&seq)
	return seq, notFound(err)
}

// WebhookDeliveryFilter selects delivery log rows.
type WebhookDeliveryFilter struct {
	Before  int64  // rows with a smaller log id (0: from the newest)
	Outcome string // one outcome, or "" for all
	Limit   int
}

// Deliveries returns the delivery log of endpoint id of scope m, newest
// first. An endpoint outside the scope is ErrNotFound.
func (q WebhookAPIQueries) Deliveries(ctx context.Context, m *int64, id int64, f WebhookDeliveryFilter) ([]WebhookDelivery, error) {
	if _, err := q.Get(ctx, m, id); err != nil {
		return nil, err
	}
	var where strings.Builder
	where.WriteString(`d.webhook_id = $1`)
	args := []any{id}
	if f.Before > 0 {
		args = append(args, f.Before)
		fmt.Fprintf(&where, ` AND d.id < $%d`, len(args))
	}
	if f.Outcome != "" {
		args = append(args, f.Outcome)
		fmt.Fprintf(&where, ` AND d.outcome = $%d`, len(args))
	}
	args = append(args, f.Limit)
	rows, err := q.db.Pool.Query(ctx, `
SELECT d.id, d.webhook_id, d.delivery_id, d.event_id, d.event_type, d.mentorado_id, d.stream_seq, d.attempt,
	d.outcome, d.status_code, d.latency_ms, d.error, d.attempted_at
FROM webhook_deliveries d WHERE `+where.String()+fmt.Sprintf(` ORDER BY d.id DESC LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("store: webhook deliveries: %w", err)
	}
	defer rows.Close()
	var out []WebhookDelivery
	for rows.Next() {
		var d WebhookDelivery
		if err := rows.Scan(&d.ID, &d.WebhookID, &d.DeliveryID, &d.EventID, &d.EventType, &d.MentoradoID, &d.StreamSeq,
			&d.Attempt, &d.Outcome, &d.StatusCode, &d.LatencyMS, &d.Error, &d.AttemptedAt); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
