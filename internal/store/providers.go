package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zapbus/zapbus/internal/event"
)

// Providers (issue #16, docs/decisions/0021-providers.md): the rows of
// migration 0011. Credentials arrive here sealed (internal/secretbox via
// internal/provider); this package never sees them in the clear.

// ProviderRow is a provider_configs row.
type ProviderRow struct {
	MentoradoID int64
	Provider    event.Provider
	Settings    json.RawMessage // non-secret, shown by the API
	Sealed      []byte          // sealed credentials; nil for whatsapp_web
	KeyID       string          // key that sealed them
	ExternalID  string          // Meta phone_number_id / Z-API instance id

	LastWebhookAt      *time.Time
	LastWebhookError   string
	LastWebhookErrorAt *time.Time
	CreatedAt          time.Time
	UpdatedAt          time.Time
}

// ErrExternalIDTaken is returned by Put when another mentorado already
// has the provider's number (external id).
var ErrExternalIDTaken = errors.New("store: this provider number belongs to another mentorado")

// ProviderQueries are the queries on provider_configs.
type ProviderQueries struct{ db *DB }

// Providers returns the queries on provider configurations.
func (db *DB) Providers() ProviderQueries { return ProviderQueries{db: db} }

const providerCols = `mentorado_id, provider, settings, credentials, coalesce(key_id, ''), coalesce(external_id, ''),
	last_webhook_at, coalesce(last_webhook_error, ''), last_webhook_error_at, created_at, updated_at`

func scanProvider(row pgx.Row) (ProviderRow, error) {
	var r ProviderRow
	var p string
	err := row.Scan(&r.MentoradoID, &p, &r.Settings, &r.Sealed, &r.KeyID, &r.ExternalID,
		&r.LastWebhookAt, &r.LastWebhookError, &r.LastWebhookErrorAt, &r.CreatedAt, &r.UpdatedAt)
	r.Provider = event.Provider(p)
	return r, err
}

// List returns mentorado m's configured providers (in priority order) and
// its override of the active one ("" for the priority rule). A missing
// mentorado gives ErrNotFound.
func (q ProviderQueries) List(ctx context.Context, m int64) (rows []ProviderRow, override event.Provider, err error) {
	var ov *string
	if err := q.db.Pool.QueryRow(ctx, `SELECT active_provider FROM mentorados WHERE id = $1`, m).Scan(&ov); err != nil {
		return nil, "", notFound(err)
	}
	if ov != nil {
		override = event.Provider(*ov)
	}
	res, err := q.db.Pool.Query(ctx, `SELECT `+providerCols+` FROM provider_configs WHERE mentorado_id = $1
ORDER BY array_position(ARRAY['meta','whatsapp_web','zapi'], provider)`, m)
	if err != nil {
		return nil, "", err
	}
	defer res.Close()
	for res.Next() {
		r, err := scanProvider(res)
		if err != nil {
			return nil, "", err
		}
		rows = append(rows, r)
	}
	return rows, override, res.Err()
}

// Get returns one provider row of mentorado m (ErrNotFound when that
// provider is not configured).
func (q ProviderQueries) Get(ctx context.Context, m int64, p event.Provider) (ProviderRow, error) {
	r, err := scanProvider(q.db.Pool.QueryRow(ctx, `SELECT `+providerCols+` FROM provider_configs WHERE mentorado_id = $1 AND provider = $2`, m, string(p)))
	return r, notFound(err)
}

// Active returns mentorado m's active provider: the override when it is
// configured, otherwise the first configured by event.ProviderPriority;
// "" when none is. A missing mentorado gives ErrNotFound.
func (q ProviderQueries) Active(ctx context.Context, m int64) (event.Provider, error) {
	var ov *string
	var configured []string
	err := q.db.Pool.QueryRow(ctx, `SELECT m.active_provider,
	coalesce((SELECT array_agg(provider) FROM provider_configs WHERE mentorado_id = m.id), '{}')
FROM mentorados m WHERE m.id = $1`, m).Scan(&ov, &configured)
	if err != nil {
		return "", notFound(err)
	}
	ps := make([]event.Provider, len(configured))
	for i, c := range configured {
		ps[i] = event.Provider(c)
	}
	var o event.Provider
	if ov != nil {
		o = event.Provider(*ov)
	}
	return event.PickProvider(ps, o), nil
}

// Put inserts or replaces mentorado r.MentoradoID's configuration of
// r.Provider (settings, sealed credentials, external id). It keeps the
// webhook health columns. ErrExternalIDTaken when another mentorado has
// the same external id for that provider; ErrNotFound when the mentorado
// does not exist.
func (q ProviderQueries) Put(ctx context.Context, r ProviderRow) error {
	settings := r.Settings
	if len(settings) == 0 {
		settings = json.RawMessage(`{}`)
	}
	_, err := q.db.Pool.Exec(ctx, `
INSERT INTO provider_configs (mentorado_id, provider, settings, credentials, key_id, external_id)
VALUES ($1, $2, $3, $4, nullif($5, ''), nullif($6, ''))
ON CONFLICT (mentorado_id, provider) DO UPDATE SET settings = excluded.settings,
	credentials = excluded.credentials, key_id = excluded.key_id, external_id = excluded.external_id,
	updated_at = now()`, r.MentoradoID, string(r.Provider), settings, r.Sealed, r.KeyID, r.ExternalID)
	var pe *pgconn.PgError
	switch {
	case errors.As(err, &pe) && pe.Code == "23505":
		return ErrExternalIDTaken
	case errors.As(err, &pe) && pe.Code == "23503":
		return ErrNotFound
	case err != nil:
		return fmt.Errorf("store: put provider: %w", err)
	}
	return nil
}

// Delete removes mentorado m's configuration of p; false when there was none.
func (q ProviderQueries) Delete(ctx context.Context, m int64, p event.Provider) (bool, error) {
	tag, err := q.db.Pool.Exec(ctx, `DELETE FROM provider_configs WHERE mentorado_id = $1 AND provider = $2`, m, string(p))
	if err != nil {
		return false, fmt.Errorf("store: delete provider: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}

// SetOverride sets (p != "") or clears (p == "") mentorado m's choice of
// active provider. ErrNotFound when the mentorado does not exist.
func (q ProviderQueries) SetOverride(ctx context.Context, m int64, p event.Provider) error {
	var v *string
	if p != "" {
		s := string(p)
		v = &s
	}
	tag, err := q.db.Pool.Exec(ctx, `UPDATE mentorados SET active_provider = $2 WHERE id = $1`, m, v)
	if err != nil {
		return fmt.Errorf("store: set active provider: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// MarkWebhook records a webhook of provider p for mentorado m: accepted
// (reason "") or rejected (reason says why, never a secret).
func (q ProviderQueries) MarkWebhook(ctx context.Context, m int64, p event.Provider, reason string) error {
	var err error
	if reason == "" {
		_, err = q.db.Pool.Exec(ctx, `UPDATE provider_configs SET last_webhook_at = now() WHERE mentorado_id = $1 AND provider = $2`, m, string(p))
	} else {
		_, err = q.db.Pool.Exec(ctx, `UPDATE provider_configs SET last_webhook_error = $3, last_webhook_error_at = now() WHERE mentorado_id = $1 AND provider = $2`, m, string(p), reason)
	}
	return err
}

// Sealed returns every row with sealed credentials not sealed under
// keyID (all of them when keyID is ""), for re-sealing after a key
// rotation.
func (q ProviderQueries) Sealed(ctx context.Context, keyID string) ([]ProviderRow, error) {
	res, err := q.db.Pool.Query(ctx, `SELECT `+providerCols+` FROM provider_configs
WHERE credentials IS NOT NULL AND ($1 = '' OR key_id <> $1) ORDER BY mentorado_id, provider`, keyID)
	if err != nil {
		return nil, err
	}
	defer res.Close()
	var rows []ProviderRow
	for res.Next() {
		r, err := scanProvider(res)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, res.Err()
}

// Reseal replaces the sealed credentials of (m, p) if they are still the
// ones sealed under oldKeyID; false when they changed meanwhile.
func (q ProviderQueries) Reseal(ctx context.Context, m int64, p event.Provider, oldKeyID string, sealed []byte, keyID string) (bool, error) {
	tag, err := q.db.Pool.Exec(ctx, `UPDATE provider_configs SET credentials = $4, key_id = $5
WHERE mentorado_id = $1 AND provider = $2 AND key_id = $3`, m, string(p), oldKeyID, sealed, keyID)
	if err != nil {
		return false, fmt.Errorf("store: reseal provider credentials: %w", err)
	}
	return tag.RowsAffected() > 0, nil
}
