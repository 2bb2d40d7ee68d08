package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// HistorySyncQueries are the queries on history_syncs, the connector's
// durable queue of history sync chunks (issue #12): one row per
// notification the phone sent, from just before WhatsApp's message is
// acked until the chunk's messages and its progress event are published.
// A row holds what decrypts the chunk's blob (media key, direct path), so
// like media_downloads it lives next to whatsmeow's keys, never on a
// subject.
//
// Workers claim due rows with a lease (locked_until) under FOR UPDATE SKIP
// LOCKED, so two workers never stream the same chunk at once and a crashed
// worker's chunk comes back when its lease runs out.
type HistorySyncQueries struct {
	q  Querier
	lq leasedQueue
}

// HistorySyncs returns the queries on history_syncs.
func (db *DB) HistorySyncs() HistorySyncQueries {
	return HistorySyncQueries{q: db.Pool, lq: leasedQueue{q: db.Pool, table: "history_syncs", what: "history sync",
		order: "next_at, created_at, synced_at", cols: historySyncColumns}}
}

// HistorySyncJob is one queued chunk (a row of history_syncs).
type HistorySyncJob struct {
	Mentorado    int64
	WAID         string    // the notification message's WhatsApp id
	Notification []byte    // serialized waE2E.HistorySyncNotification (secret)
	SyncedAt     time.Time // the notification message's timestamp
	Attempts     int
	NextAt       time.Time
	LastError    string
	CreatedAt    time.Time
}

const historySyncColumns = `mentorado_id, wa_message_id, notification, synced_at, attempts, next_at, coalesce(last_error, ''), created_at`

func scanHistorySync(row pgx.CollectableRow) (HistorySyncJob, error) {
	var h HistorySyncJob
	err := row.Scan(&h.Mentorado, &h.WAID, &h.Notification, &h.SyncedAt, &h.Attempts, &h.NextAt, &h.LastError, &h.CreatedAt)
	return h, err
}

// Enqueue adds a chunk, due at once. It is idempotent on (mentorado,
// wa_message_id): a notification WhatsApp redelivers keeps the row already
// queued (created reports whether this call added it).
func (q HistorySyncQueries) Enqueue(ctx context.Context, h HistorySyncJob) (created bool, err error) {
	tag, err := q.q.Exec(ctx, `INSERT INTO history_syncs (mentorado_id, wa_message_id, notification, synced_at)
		VALUES ($1, $2, $3, $4) ON CONFLICT (mentorado_id, wa_message_id) DO NOTHING`,
		h.Mentorado, h.WAID, h.Notification, h.SyncedAt)
	if err != nil {
		return false, fmt.Errorf("store: enqueue history sync: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Claim takes up to limit due chunks of mentorado m that no live lease
// holds, leasing them for lease. Oldest first: the phone numbers its
// chunks, and the first ones hold the most recent chats.
func (q HistorySyncQueries) Claim(ctx context.Context, m int64, lease time.Duration, limit int) ([]HistorySyncJob, error) {
	return claim(ctx, q.lq, m, lease, limit, scanHistorySync)
}

// Retry records a failed attempt: attempts+1, the error, due again after
// delay (the caller's backoff), lease released. It returns the attempts
// made so far.
func (q HistorySyncQueries) Retry(ctx context.Context, m int64, waID, reason string, delay time.Duration) (int, error) {
	return q.lq.retry(ctx, m, waID, reason, delay)
}

// Release gives a claimed chunk back without counting an attempt (its
// worker is stopping), due at once.
func (q HistorySyncQueries) Release(ctx context.Context, m int64, waID string) error {
	return q.lq.release(ctx, m, waID)
}

// Done removes a chunk whose progress event is published.
func (q HistorySyncQueries) Done(ctx context.Context, m int64, waID string) error {
	return q.lq.done(ctx, m, waID)
}

// Get returns one chunk (ErrNotFound when none is queued).
func (q HistorySyncQueries) Get(ctx context.Context, m int64, waID string) (HistorySyncJob, error) {
	return get(ctx, q.lq, m, waID, scanHistorySync)
}

// Pending counts the chunks queued for mentorado m (queue depth).
func (q HistorySyncQueries) Pending(ctx context.Context, m int64) (int, error) {
	return q.lq.pending(ctx, m)
}
