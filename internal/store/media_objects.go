package store

import (
	"context"
	"fmt"
	"time"

	"github.com/zapbus/zapbus/internal/media"
)

// Origins of a stored file (media_objects.origin).
const (
	MediaDownload = "download" // received: downloaded from WhatsApp by the connector
	MediaUpload   = "upload"   // uploaded by the mentorado (POST /v1/media) to be sent
)

// MediaObjectQueries are the queries on media_objects, the ledger of the
// files in the media store (internal/media) per mentorado: what a tenant
// may reference as a media id, the storage accounting in metrics, and
// what to delete with a tenant.
type MediaObjectQueries struct{ q Querier }

// MediaObjects returns the queries on media_objects.
func (db *DB) MediaObjects() MediaObjectQueries { return MediaObjectQueries{q: db.Pool} }

// MediaObjectsOn returns the queries on media_objects run through q (a
// pool or a transaction).
func MediaObjectsOn(q Querier) MediaObjectQueries { return MediaObjectQueries{q: q} }

// MediaObject is one ledger row.
type MediaObject struct {
	Mentorado int64
	ID        string // sha256 hex
	Size      int64
	MIME      string
	Origin    string // MediaDownload or MediaUpload
	Created   time.Time
}

// Record notes that mentorado m's media store holds file id. It is
// idempotent: recording a file again (a replayed download, the same file
// uploaded twice) changes nothing and reports created false. Record after
// the store's Put succeeded, so the ledger never names a file the store
// does not hold.
func (q MediaObjectQueries) Record(ctx context.Context, m int64, id string, size int64, mime, origin string) (created bool, err error) {
	if origin != MediaDownload && origin != MediaUpload {
		return false, fmt.Errorf("store: record media %s: origin %q is not %s or %s", id, origin, MediaDownload, MediaUpload)
	}
	tag, err := q.q.Exec(ctx, `INSERT INTO media_objects (mentorado_id, media_id, size, mime, origin)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (mentorado_id, media_id) DO NOTHING`, m, id, size, mime, origin)
	if err != nil {
		return false, fmt.Errorf("store: record media %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Get returns mentorado m's ledger row for file id (ErrNotFound when the
// tenant has no such file: another tenant's id is not found either).
func (q MediaObjectQueries) Get(ctx context.Context, m int64, id string) (MediaObject, error) {
	o := MediaObject{Mentorado: m, ID: id}
	err := q.q.QueryRow(ctx, `SELECT size, mime, origin, created_at FROM media_objects
		WHERE mentorado_id = $1 AND media_id = $2`, m, id).Scan(&o.Size, &o.MIME, &o.Origin, &o.Created)
	if err != nil {
		return MediaObject{}, notFound(err)
	}
	return o, nil
}

// Usage returns every mentorado's stored files and bytes (mentorados
// without files are absent), for media.NewUsageCollector.
func (q MediaObjectQueries) Usage(ctx context.Context) (map[int64]media.Usage, error) {
	rows, err := q.q.Query(ctx, `SELECT mentorado_id, count(*), coalesce(sum(size), 0)::bigint
		FROM media_objects GROUP BY mentorado_id`)
	if err != nil {
		return nil, fmt.Errorf("store: media usage: %w", err)
	}
	defer rows.Close()
	out := map[int64]media.Usage{}
	for rows.Next() {
		var m int64
		var u media.Usage
		if err := rows.Scan(&m, &u.Files, &u.Bytes); err != nil {
			return nil, fmt.Errorf("store: media usage: %w", err)
		}
		out[m] = u
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: media usage: %w", err)
	}
	return out, nil
}

// Delete removes file id from mentorado m's ledger (after the store's
// Delete); deleting an absent row is not an error.
func (q MediaObjectQueries) Delete(ctx context.Context, m int64, id string) error {
	if _, err := q.q.Exec(ctx, `DELETE FROM media_objects WHERE mentorado_id = $1 AND media_id = $2`, m, id); err != nil {
		return fmt.Errorf("store: delete media %s: %w", id, err)
	}
	return nil
}

// DeleteAll removes mentorado m's whole ledger (tenant deletion, after the
// store's DeleteAll) and returns how many rows it removed.
func (q MediaObjectQueries) DeleteAll(ctx context.Context, m int64) (int64, error) {
	tag, err := q.q.Exec(ctx, `DELETE FROM media_objects WHERE mentorado_id = $1`, m)
	if err != nil {
		return 0, fmt.Errorf("store: delete media of mentorado %d: %w", m, err)
	}
	return tag.RowsAffected(), nil
}
