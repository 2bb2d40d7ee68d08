package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// leasedQueue is what the connector's durable work queues in Postgres
// (media_downloads, history_syncs) share: rows keyed by (mentorado_id,
// wa_message_id), due at next_at, claimed with a lease (locked_until)
// under FOR UPDATE SKIP LOCKED so two workers never take the same row and
// a crashed worker's rows come back when its lease runs out, retried with
// the caller's backoff, deleted when done.
type leasedQueue struct {
	q     Querier
	table string // the queue's table
	what  string // what a row is, for errors ("media download")
	order string // claim order of the due rows
	cols  string // the columns Claim returns
}

// claim leases up to limit due rows of mentorado m that no live lease
// holds and returns them, scanned by scan.
//
// The locking SELECT is a MATERIALIZED CTE, run exactly once. As a
// subquery in UPDATE … FROM the planner may rescan it per joined row; a
// rescan skips the rows this statement already updated and locks others it
// never leases, so concurrent claimers skip them and can stop early with
// work left (seen under load: 38 of 40 claimed).
func claim[T any](ctx context.Context, lq leasedQueue, m int64, lease time.Duration, limit int, scan pgx.RowToFunc[T]) ([]T, error) {
	// The CTE names its column id, so the RETURNING list of the table's
	// own columns is unambiguous.
	rows, err := lq.q.Query(ctx, `WITH due AS MATERIALIZED (SELECT wa_message_id AS id FROM `+lq.table+`
			WHERE mentorado_id = $1 AND next_at <= now() AND (locked_until IS NULL OR locked_until <= now())
			ORDER BY `+lq.order+` LIMIT $2 FOR UPDATE SKIP LOCKED)
		UPDATE `+lq.table+` SET locked_until = now() + make_interval(secs => $3)
		FROM due
		WHERE mentorado_id = $1 AND wa_message_id = due.id
		RETURNING `+lq.cols, m, limit, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("store: claim %ss: %w", lq.what, err)
	}
	out, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, fmt.Errorf("store: claim %ss: %w", lq.what, err)
	}
	return out, nil
}

// retry records a failed attempt: attempts+1, the error, due again after
// delay, lease released. It returns the attempts made so far.
func (lq leasedQueue) retry(ctx context.Context, m int64, waID, reason string, delay time.Duration) (int, error) {
	var n int
	err := lq.q.QueryRow(ctx, `UPDATE `+lq.table+` SET attempts = attempts + 1, last_error = $3,
		next_at = now() + make_interval(secs => $4), locked_until = NULL
		WHERE mentorado_id = $1 AND wa_message_id = $2 RETURNING attempts`, m, waID, reason, delay.Seconds()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: retry %s: %w", lq.what, notFound(err))
	}
	return n, nil
}

// release gives a claimed row back without counting an attempt, due at once.
func (lq leasedQueue) release(ctx context.Context, m int64, waID string) error {
	if _, err := lq.q.Exec(ctx, `UPDATE `+lq.table+` SET locked_until = NULL WHERE mentorado_id = $1 AND wa_message_id = $2`, m, waID); err != nil {
		return fmt.Errorf("store: release %s: %w", lq.what, err)
	}
	return nil
}

// done deletes a row.
func (lq leasedQueue) done(ctx context.Context, m int64, waID string) error {
	if _, err := lq.q.Exec(ctx, `DELETE FROM `+lq.table+` WHERE mentorado_id = $1 AND wa_message_id = $2`, m, waID); err != nil {
		return fmt.Errorf("store: finish %s: %w", lq.what, err)
	}
	return nil
}

// get returns one row (ErrNotFound when none is queued).
func get[T any](ctx context.Context, lq leasedQueue, m int64, waID string, scan pgx.RowToFunc[T]) (T, error) {
	var zero T
	rows, err := lq.q.Query(ctx, `SELECT `+lq.cols+` FROM `+lq.table+` WHERE mentorado_id = $1 AND wa_message_id = $2`, m, waID)
	if err != nil {
		return zero, fmt.Errorf("store: get %s: %w", lq.what, err)
	}
	v, err := pgx.CollectExactlyOneRow(rows, scan)
	if err != nil {
		return zero, notFound(err)
	}
	return v, nil
}

// pending counts the rows queued for mentorado m (queue depth).
func (lq leasedQueue) pending(ctx context.Context, m int64) (int, error) {
	var n int
	if err := lq.q.QueryRow(ctx, `SELECT count(*) FROM `+lq.table+` WHERE mentorado_id = $1`, m).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count %ss: %w", lq.what, err)
	}
	return n, nil
}
