package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MediaDownloadQueries are the queries on media_downloads, the connector's
// durable queue of files to fetch from WhatsApp: one row per received
// media message from just after its message event until its file is
// stored or failed for good. A row holds what decrypts the file (the
// serialized WhatsApp message: media key, direct path, hashes), which is
// why the queue lives here and not on a NATS subject
// (docs/decisions/0011-media.md).
//
// Workers claim due rows with a lease (locked_until) under FOR UPDATE SKIP
// LOCKED, so two workers never fetch the same file at once and a crashed
// worker's rows come back when its lease runs out.
type MediaDownloadQueries struct {
	q  Querier
	lq leasedQueue
}

// MediaDownloads returns the queries on media_downloads.
func (db *DB) MediaDownloads() MediaDownloadQueries {
	return MediaDownloadQueries{q: db.Pool, lq: leasedQueue{q: db.Pool, table: "media_downloads", what: "media download",
		order: "next_at, created_at", cols: mediaDownloadColumns}}
}

// DownloadJob is one queued download (a row of media_downloads).
type DownloadJob struct {
	Mentorado int64
	WAID      string // the media message's WhatsApp id
	ChatJID   string
	Kind      string
	MediaID   string          // sha256 hex of the file
	Message   []byte          // serialized waE2E.Message holding the media (secret)
	Source    json.RawMessage // chat, sender, from_me, is_group: for a re-upload request
	Attempts  int
	NextAt    time.Time
	LastError string
	CreatedAt time.Time
}

const mediaDownloadColumns = `mentorado_id, wa_message_id, chat_jid, kind, media_id, message, source, attempts, next_at, coalesce(last_error, ''), created_at`

func scanMediaDownload(row pgx.CollectableRow) (DownloadJob, error) {
	var d DownloadJob
	var src []byte
	err := row.Scan(&d.Mentorado, &d.WAID, &d.ChatJID, &d.Kind, &d.MediaID, &d.Message, &src, &d.Attempts, &d.NextAt, &d.LastError, &d.CreatedAt)
	d.Source = src
	return d, err
}

// Enqueue adds a download, due at once. It is idempotent on (mentorado,
// wa_message_id): a message WhatsApp redelivers, or an event replayed,
// keeps the row already queued (created reports whether this call added it).
func (q MediaDownloadQueries) Enqueue(ctx context.Context, d DownloadJob) (created bool, err error) {
	src := d.Source
	if len(src) == 0 {
		src = json.RawMessage("{}")
	}
	tag, err := q.q.Exec(ctx, `INSERT INTO media_downloads (mentorado_id, wa_message_id, chat_jid, kind, media_id, message, source)
		VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (mentorado_id, wa_message_id) DO NOTHING`,
		d.Mentorado, d.WAID, d.ChatJID, d.Kind, d.MediaID, d.Message, []byte(src))
	if err != nil {
		return false, fmt.Errorf("store: enqueue media download: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Claim takes up to limit due downloads of mentorado m that no live lease
// holds, leasing them for lease: until then no other Claim returns them.
// Oldest due first.
func (q MediaDownloadQueries) Claim(ctx context.Context, m int64, lease time.Duration, limit int) ([]DownloadJob, error) {
	return claim(ctx, q.lq, m, lease, limit, scanMediaDownload)
}

// Retry records a failed attempt: attempts+1, the error, due again after
// delay (the caller's backoff), lease released. It returns the attempts
// made so far.
func (q MediaDownloadQueries) Retry(ctx context.Context, m int64, waID, reason string, delay time.Duration) (int, error) {
	return q.lq.retry(ctx, m, waID, reason, delay)
}

// Release gives a claimed download back without counting an attempt (its
// worker is stopping), due at once.
func (q MediaDownloadQueries) Release(ctx context.Context, m int64, waID string) error {
	return q.lq.release(ctx, m, waID)
}

// UpdateMessage replaces the stored WhatsApp message of a download (a new
// direct path after the sender's phone re-uploaded the file).
func (q MediaDownloadQueries) UpdateMessage(ctx context.Context, m int64, waID string, msg []byte) error {
	tag, err := q.q.Exec(ctx, `UPDATE media_downloads SET message = $3 WHERE mentorado_id = $1 AND wa_message_id = $2`, m, waID, msg)
	if err != nil {
		return fmt.Errorf("store: update media download: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("store: update media download: %w", ErrNotFound)
	}
	return nil
}

// Done removes a download whose file is stored or failed for good.
func (q MediaDownloadQueries) Done(ctx context.Context, m int64, waID string) error {
	return q.lq.done(ctx, m, waID)
}

// Get returns one download (ErrNotFound when none is queued).
func (q MediaDownloadQueries) Get(ctx context.Context, m int64, waID string) (DownloadJob, error) {
	return get(ctx, q.lq, m, waID, scanMediaDownload)
}

// Pending counts the downloads queued for mentorado m (queue depth).
func (q MediaDownloadQueries) Pending(ctx context.Context, m int64) (int, error) {
	return q.lq.pending(ctx, m)
}
