package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotFound is returned by a query for one row that found none.
var ErrNotFound = errors.New("store: not found")

// notFound maps pgx's and database/sql's "no rows" to ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) || errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// MentoradoQueries are the queries on mentorados: tenants, their API
// tokens, their stored session status and their lifecycle. Token lookups
// run on every API request and stay on pgx; the admin's cold paths use bun.
type MentoradoQueries struct{ db *DB }

// Mentorados returns the queries on mentorados.
func (db *DB) Mentorados() MentoradoQueries { return MentoradoQueries{db: db} }

// Create inserts a tenant with the hash of its first API token and returns
// its id.
// A new mentorado runs on WhatsApp Web (its provider_configs row) until an
// admin configures another provider (issue #16).
func (q MentoradoQueries) Create(ctx context.Context, name string, tokenHash []byte) (int64, error) {
	var id int64
	err := q.db.Pool.QueryRow(ctx, `
WITH m AS (INSERT INTO mentorados (name, token_hash, token_created_at) VALUES ($1, $2, now()) RETURNING id),
p AS (INSERT INTO provider_configs (mentorado_id, provider) SELECT id, 'whatsapp_web' FROM m)
SELECT id FROM m`, name, tokenHash).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: create mentorado: %w", err)
	}
	return id, nil
}

// RotateToken replaces mentorado id's token hash and returns the hash it
// replaced, read in the same statement (the row is locked), so a caller
// revoking "the old token" names exactly the one that stopped working.
func (q MentoradoQueries) RotateToken(ctx context.Context, id int64, tokenHash []byte) (old []byte, err error) {
	err = q.db.Pool.QueryRow(ctx, `
UPDATE mentorados m SET token_hash = $2, token_created_at = now()
FROM (SELECT id, token_hash FROM mentorados WHERE id = $1 FOR UPDATE) o
WHERE m.id = o.id RETURNING o.token_hash`, id, tokenHash).Scan(&old)
	if err != nil {
		return nil, notFound(err)
	}
	return old, nil
}

// ByTokenHash returns the mentorado owning a token hash and whether it is
// disabled.
func (q MentoradoQueries) ByTokenHash(ctx context.Context, tokenHash []byte) (id int64, disabled bool, err error) {
	err = q.db.Pool.QueryRow(ctx, `SELECT id, disabled_at IS NOT NULL FROM mentorados WHERE token_hash = $1`, tokenHash).
		Scan(&id, &disabled)
	return id, disabled, notFound(err)
}

// TokenHash returns mentorado id's current token hash (nil when it has
// none) and whether it is disabled.
func (q MentoradoQueries) TokenHash(ctx context.Context, id int64) (hash []byte, disabled bool, err error) {
	err = q.db.Pool.QueryRow(ctx, `SELECT token_hash, disabled_at IS NOT NULL FROM mentorados WHERE id = $1`, id).
		Scan(&hash, &disabled)
	return hash, disabled, notFound(err)
}

// EnabledTokenHashes returns the token hash of each enabled mentorado of
// ids (a nil hash when it has none); disabled and missing ones are absent.
func (q MentoradoQueries) EnabledTokenHashes(ctx context.Context, ids []int64) (map[int64][]byte, error) {
	rows, err := q.db.Pool.Query(ctx, `SELECT id, token_hash FROM mentorados WHERE id = ANY($1) AND disabled_at IS NULL`, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[int64][]byte, len(ids))
	var (
		id   int64
		hash []byte
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &hash}, func() error {
		out[id] = hash
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Check reports whether mentorado id exists and whether it is disabled.
func (q MentoradoQueries) Check(ctx context.Context, id int64) (exists, disabled bool, err error) {
	err = q.db.Pool.QueryRow(ctx,
		"SELECT count(*) > 0, coalesce(bool_or(disabled_at IS NOT NULL), false) FROM mentorados WHERE id = $1", id).
		Scan(&exists, &disabled)
	return exists, disabled, err
}

// Status is a mentorado's session status as the persister stored it.
type Status struct {
	Status        string
	Phone, Reason *string
	// Since is when the status was reached (the tenant's creation before
	// any status event).
	Since *time.Time
}

// Status returns mentorado id's stored session status.
func (q MentoradoQueries) Status(ctx context.Context, id int64) (Status, error) {
	var st Status
	err := q.db.Pool.QueryRow(ctx,
		`SELECT wa_status, wa_phone, wa_reason, coalesce(wa_status_at, created_at) FROM mentorados WHERE id = $1`, id).
		Scan(&st.Status, &st.Phone, &st.Reason, &st.Since)
	return st, notFound(err)
}

// ProviderChanged forgets mentorado id's stored session status when its
// active provider changed (issue #16): the stored status, number and
// reason were the previous provider's. The status becomes disconnected
// with reason, versioned now, so a connection event published before the
// change (the old provider's) never brings it back and any later one
// (the new provider's) replaces it.
func (q MentoradoQueries) ProviderChanged(ctx context.Context, id int64, reason string) error {
	_, err := q.db.Pool.Exec(ctx, `UPDATE mentorados SET wa_status = 'disconnected', wa_reason = $2,
	wa_status_at = greatest(now(), wa_status_at), wa_status_seq = 0, wa_connector = NULL,
	wa_phone = NULL, wa_jid = NULL, wa_phone_at = greatest(now(), wa_phone_at), wa_phone_seq = 0
WHERE id = $1`, id, reason)
	return err
}

// StatusVersion returns mentorado id's stored status and the time of the
// event it came from (nil before any).
func (q MentoradoQueries) StatusVersion(ctx context.Context, id int64) (status string, at *time.Time, err error) {
	err = q.db.Pool.QueryRow(ctx, `SELECT wa_status, wa_status_at FROM mentorados WHERE id = $1`, id).Scan(&status, &at)
	return status, at, notFound(err)
}

// infoColumns are the columns Get and List fill.
var infoColumns = []string{"id", "name", "wa_status", "wa_phone", "wa_status_at", "disabled_at", "token_created_at", "created_at"}

// Get returns mentorado id as the admin API shows it (the columns of
// infoColumns; the token hash and status versions are left empty).
func (q MentoradoQueries) Get(ctx context.Context, id int64) (Mentorado, error) {
	var m Mentorado
	err := q.db.Bun.NewSelect().Model(&m).Column(infoColumns...).Where("id = ?", id).Scan(ctx)
	return m, notFound(err)
}

// List returns at most n mentorados with ids above after, by id (keyset
// pagination), with the columns Get fills.
func (q MentoradoQueries) List(ctx context.Context, after int64, n int) ([]Mentorado, error) {
	out := []Mentorado{}
	err := q.db.Bun.NewSelect().Model(&out).Column(infoColumns...).
		Where("id > ?", after).Order("id").Limit(int64(n)).Scan(ctx)
	return out, err
}

// Disable marks mentorado id disabled, keeping an earlier disabled_at.
func (q MentoradoQueries) Disable(ctx context.Context, id int64) error {
	res, err := q.db.Bun.NewUpdate().Model((*Mentorado)(nil)).
		Set("disabled_at = coalesce(disabled_at, now())").Where("id = ?", id).Exec(ctx)
	return affectedOne(res, err)
}

// Enable clears mentorado id's disabled mark.
func (q MentoradoQueries) Enable(ctx context.Context, id int64) error {
	res, err := q.db.Bun.NewUpdate().Model((*Mentorado)(nil)).
		Set("disabled_at = NULL").Where("id = ?", id).Exec(ctx)
	return affectedOne(res, err)
}

// affectedOne is ErrNotFound when an update by id touched no row.
func affectedOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Delete removes mentorado id and, through ON DELETE CASCADE, every row
// of it in every tenant table, under the mentorado's lock so no persister
// batch of it is half applied. Deleting a mentorado that is gone is not an
// error.
func (q MentoradoQueries) Delete(ctx context.Context, id int64) error {
	return q.db.WithMentoradoLock(ctx, id, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM mentorados WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete mentorado: %w", err)
		}
		return nil
	})
}

// Settings are a mentorado's lead creation settings (docs/api.md#settings).
type Settings struct {
	GroupLeads      bool   // group messages create leads for their senders
	HistoryLeads    string // none | recent | all
	HistoryLeadDays int32  // recent: days before the sync, 1 to 3650
}

// History lead rules (mentorados.history_leads).
const (
	HistoryLeadsNone   = "none"
	HistoryLeadsRecent = "recent"
	HistoryLeadsAll    = "all"
)

// SettingsPatch changes the settings that are not nil.
type SettingsPatch struct {
	GroupLeads      *bool
	HistoryLeads    *string
	HistoryLeadDays *int32
}

// Settings returns mentorado id's settings.
func (q MentoradoQueries) Settings(ctx context.Context, id int64) (Settings, error) {
	var s Settings
	err := q.db.Pool.QueryRow(ctx, `SELECT group_leads, history_leads, history_lead_days FROM mentorados WHERE id = $1`, id).
		Scan(&s.GroupLeads, &s.HistoryLeads, &s.HistoryLeadDays)
	return s, notFound(err)
}

// UpdateSettings applies p to mentorado id's settings in one statement and
// returns them as stored. Values outside the schema's checks fail; the
// caller validates first.
func (q MentoradoQueries) UpdateSettings(ctx context.Context, id int64, p SettingsPatch) (Settings, error) {
	var s Settings
	err := q.db.Pool.QueryRow(ctx, `
UPDATE mentorados SET group_leads = coalesce($2, group_leads), history_leads = coalesce($3, history_leads),
	history_lead_days = coalesce($4, history_lead_days)
WHERE id = $1 RETURNING group_leads, history_leads, history_lead_days`, id, p.GroupLeads, p.HistoryLeads, p.HistoryLeadDays).
		Scan(&s.GroupLeads, &s.HistoryLeads, &s.HistoryLeadDays)
	return s, notFound(err)
}
