package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// WebhookDispatchQueries are the webhook dispatcher's queries
// (internal/webhook): which endpoints to run, their health, state changes
// the dispatcher decides (auto-pause, 410 Gone) and the delivery log. The
// API's side of the webhooks table is in webhooks.go.
type WebhookDispatchQueries struct{ db *DB }

// WebhookDispatch returns the dispatcher's queries.
func (db *DB) WebhookDispatch() WebhookDispatchQueries { return WebhookDispatchQueries{db: db} }

// All returns every webhook row, by id.
func (q WebhookDispatchQueries) All(ctx context.Context) ([]Webhook, error) {
	var rows []Webhook
	if err := q.db.Bun.NewSelect().Model(&rows).Order("id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("store: webhooks: %w", err)
	}
	return rows, nil
}

// WebhookHealth is an endpoint's health after a failed attempt was
// recorded, with its state (to judge an automatic pause).
type WebhookHealth struct {
	ConsecutiveFailures int
	FailingSince        time.Time
	State               string
	StateAt             time.Time
}

// RecordFailure counts a failed attempt at at: consecutive_failures+1,
// failing_since set when this failure starts a run, last_failure_at.
func (q WebhookDispatchQueries) RecordFailure(ctx context.Context, id int64, at time.Time) (WebhookHealth, error) {
	var h WebhookHealth
	err := q.db.Pool.QueryRow(ctx, `UPDATE webhooks SET consecutive_failures = consecutive_failures + 1,
			failing_since = coalesce(failing_since, $2), last_failure_at = $2
		WHERE id = $1 RETURNING consecutive_failures, failing_since, state, state_at`, id, at).
		Scan(&h.ConsecutiveFailures, &h.FailingSince, &h.State, &h.StateAt)
	if err != nil {
		return h, fmt.Errorf("store: webhook failure: %w", notFound(err))
	}
	return h, nil
}

// RecordSuccess notes a delivered attempt at at: last_success_at, and
// when endRun is set the end of a run of failures (consecutive_failures 0,
// failing_since NULL). The dispatcher calls it on the first success after
// failures and now and then otherwise, not on every delivery.
func (q WebhookDispatchQueries) RecordSuccess(ctx context.Context, id int64, at time.Time, endRun bool) error {
	sql := `UPDATE webhooks SET last_success_at = greatest(last_success_at, $2) WHERE id = $1`
	if endRun {
		sql = `UPDATE webhooks SET last_success_at = greatest(last_success_at, $2),
			consecutive_failures = 0, failing_since = NULL WHERE id = $1`
	}
	if _, err := q.db.Pool.Exec(ctx, sql, id, at); err != nil {
		return fmt.Errorf("store: webhook success: %w", err)
	}
	return nil
}

// SetState moves an endpoint from state from to state to (paused or
// disabled by the dispatcher) with the reason, and signals the other
// dispatchers (NOTIFY WebhooksChannel). changed is false when the row was
// no longer in state from (someone else changed it first).
func (q WebhookDispatchQueries) SetState(ctx context.Context, id int64, from, to, reason string, at time.Time) (changed bool, err error) {
	err = q.db.InTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE webhooks SET state = $3, state_reason = $4, state_at = $5, updated_at = $5
			WHERE id = $1 AND state = $2`, id, from, to, reason, at)
		if err != nil {
			return err
		}
		changed = tag.RowsAffected() == 1
		if changed {
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, WebhooksChannel, strconv.FormatInt(id, 10))
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: webhook state: %w", err)
	}
	return changed, nil
}

// InsertDeliveries appends rows to the delivery log in one COPY.
func (q WebhookDispatchQueries) InsertDeliveries(ctx context.Context, rows []WebhookDelivery) error {
	if len(rows) == 0 {
		return nil
	}
	_, err := q.db.Pool.CopyFrom(ctx, pgx.Identifier{"webhook_deliveries"},
		[]string{"webhook_id", "delivery_id", "event_id", "event_type", "mentorado_id", "stream_seq", "attempt",
			"outcome", "status_code", "latency_ms", "error", "attempted_at"},
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{r.WebhookID, r.DeliveryID, r.EventID, r.EventType, r.MentoradoID, r.StreamSeq, r.Attempt,
				r.Outcome, r.StatusCode, r.LatencyMS, r.Error, r.AttemptedAt}, nil
		}))
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) && pgErr.SQLState() == "23503" {
		// A webhook deleted meanwhile: keep the others' rows.
		return q.insertEach(ctx, rows)
	}
	if err != nil {
		return fmt.Errorf("store: webhook deliveries: %w", err)
	}
	return nil
}

// insertEach inserts rows one by one, skipping those of deleted webhooks.
func (q WebhookDispatchQueries) insertEach(ctx context.Context, rows []WebhookDelivery) error {
	for _, r := range rows {
		_, err := q.db.Pool.Exec(ctx, `INSERT INTO webhook_deliveries (webhook_id, delivery_id, event_id, event_type,
				mentorado_id, stream_seq, attempt, outcome, status_code, latency_ms, error, attempted_at)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12 WHERE EXISTS (SELECT 1 FROM webhooks WHERE id = $1)`,
			r.WebhookID, r.DeliveryID, r.EventID, r.EventType, r.MentoradoID, r.StreamSeq, r.Attempt,
			r.Outcome, r.StatusCode, r.LatencyMS, r.Error, r.AttemptedAt)
		if err != nil {
			return fmt.Errorf("store: webhook deliveries: %w", err)
		}
	}
	return nil
}

// PruneDeliveries keeps the newest keep rows of each webhook of ids in
// the delivery log and deletes the rest.
func (q WebhookDispatchQueries) PruneDeliveries(ctx context.Context, ids []int64, keep int) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	tag, err := q.db.Pool.Exec(ctx, `DELETE FROM webhook_deliveries d USING (
			SELECT w.id, (SELECT x.id FROM webhook_deliveries x WHERE x.webhook_id = w.id
				ORDER BY x.id DESC OFFSET $2 LIMIT 1) AS cut
			FROM unnest($1::bigint[]) AS w(id)) c
		WHERE d.webhook_id = c.id AND d.id <= c.cut`, ids, keep)
	if err != nil {
		return 0, fmt.Errorf("store: prune webhook deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ListenWebhooks LISTENs on WebhooksChannel on a connection of its own
// (taken out of the pool for good) and calls notify for every signal, and
// once when listening has started (changes made before it are covered).
// It returns when ctx ends or the connection fails; the caller listens
// again.
func (db *DB) ListenWebhooks(ctx context.Context, notify func()) error {
	pc, err := db.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: listen webhooks: %w", err)
	}
	conn := pc.Hijack() // a LISTENing connection never goes back to the pool
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+WebhooksChannel); err != nil {
		return fmt.Errorf("store: listen webhooks: %w", err)
	}
	notify()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("store: listen webhooks: %w", err)
		}
		notify()
	}
}
