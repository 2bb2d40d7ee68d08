package store

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
)

// Campaigns of gateway-hosted mentorados (issue #16,
// docs/decisions/0021-providers.md): a mentorado whose active provider is
// meta or zapi has no connector session, so the provider gateways run its
// campaign worker, one gateway at a time under a session advisory lock.

// GatewayCampaignLockClass is the advisory-lock class of the gateways'
// campaign workers: a gateway holds (class, mentorado id mod 2^31-1) with
// pg_try_advisory_lock on its lock connection while it runs that
// mentorado's worker. It is distinct from MentoradoLockClass (31330), and
// the two-key form never meets the one-key locks (migrations,
// hashtextextended keys) in Postgres's lock space.
const GatewayCampaignLockClass = 31331

// gatewayCampaignLockSQL and gatewayCampaignUnlockSQL take and release a
// mentorado's campaign lock ($1 bigint: the mentorado id) on a session.
var (
	gatewayCampaignLockSQL   = `SELECT pg_try_advisory_lock(` + strconv.Itoa(GatewayCampaignLockClass) + `, ($1::bigint % 2147483647)::int)`
	gatewayCampaignUnlockSQL = `SELECT pg_advisory_unlock(` + strconv.Itoa(GatewayCampaignLockClass) + `, ($1::bigint % 2147483647)::int)`
)

// CampaignLocks is a connection of its own (outside the pool) holding
// gateway campaign locks: session advisory locks live as long as the
// session, so they must not sit on a pooled connection that others use.
// Not safe for concurrent use. When the connection fails its locks are
// gone: Ping says so.
type CampaignLocks struct{ conn *pgx.Conn }

// OpenCampaignLocks opens a lock connection with the pool's settings.
func (db *DB) OpenCampaignLocks(ctx context.Context) (*CampaignLocks, error) {
	conn, err := pgx.ConnectConfig(ctx, db.Pool.Config().ConnConfig.Copy())
	if err != nil {
		return nil, fmt.Errorf("store: campaign lock connection: %w", err)
	}
	return &CampaignLocks{conn: conn}, nil
}

// Ping checks the connection (and so that its locks still hold).
func (l *CampaignLocks) Ping(ctx context.Context) error {
	if err := l.conn.Ping(ctx); err != nil {
		return fmt.Errorf("store: campaign lock connection: %w", err)
	}
	return nil
}

// TryLock takes mentorado m's campaign lock if no other session holds it.
func (l *CampaignLocks) TryLock(ctx context.Context, m int64) (bool, error) {
	var ok bool
	if err := l.conn.QueryRow(ctx, gatewayCampaignLockSQL, m).Scan(&ok); err != nil {
		return false, fmt.Errorf("store: campaign lock: %w", err)
	}
	return ok, nil
}

// Unlock releases mentorado m's campaign lock.
func (l *CampaignLocks) Unlock(ctx context.Context, m int64) error {
	if _, err := l.conn.Exec(ctx, gatewayCampaignUnlockSQL, m); err != nil {
		return fmt.Errorf("store: campaign unlock: %w", err)
	}
	return nil
}

// Close closes the connection, releasing every lock it holds.
func (l *CampaignLocks) Close(ctx context.Context) error { return l.conn.Close(ctx) }

// GatewayCampaignMentorado is a mentorado with campaigns to send whose
// active provider is a gateway's.
type GatewayCampaignMentorado struct {
	ID       int64
	Provider event.Provider
}

// GatewayCampaignMentorados returns the enabled mentorados with a running
// campaign, or a scheduled one due at now, whose active provider
// (event.PickProvider over provider_configs and mentorados.active_provider)
// is one of providers; by id.
func (db *DB) GatewayCampaignMentorados(ctx context.Context, providers []event.Provider, now time.Time) ([]GatewayCampaignMentorado, error) {
	rows, err := db.Pool.Query(ctx, `SELECT m.id, m.active_provider,
	coalesce((SELECT array_agg(provider) FROM provider_configs WHERE mentorado_id = m.id), '{}')
FROM mentorados m
WHERE m.disabled_at IS NULL AND m.id IN (SELECT mentorado_id FROM campaigns
	WHERE state = 'running' OR (state = 'scheduled' AND (start_at IS NULL OR start_at <= $1)))
	AND EXISTS (SELECT 1 FROM provider_configs p WHERE p.mentorado_id = m.id AND p.provider = ANY($2))
ORDER BY m.id`, now, providerStrings(providers))
	if err != nil {
		return nil, fmt.Errorf("store: gateway campaigns: %w", err)
	}
	defer rows.Close()
	var out []GatewayCampaignMentorado
	for rows.Next() {
		var id int64
		var ov *string
		var configured []string
		if err := rows.Scan(&id, &ov, &configured); err != nil {
			return nil, fmt.Errorf("store: gateway campaigns: %w", err)
		}
		ps := make([]event.Provider, len(configured))
		for i, c := range configured {
			ps[i] = event.Provider(c)
		}
		var o event.Provider
		if ov != nil {
			o = event.Provider(*ov)
		}
		// The active-provider rule is Go's (event.PickProvider), as
		// ProviderQueries.Active applies it.
		if p := event.PickProvider(ps, o); slices.Contains(providers, p) {
			out = append(out, GatewayCampaignMentorado{ID: id, Provider: p})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: gateway campaigns: %w", err)
	}
	return out, nil
}

func providerStrings(ps []event.Provider) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}
