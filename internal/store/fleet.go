package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The operator console's view of the fleet (docs/decisions/0019): every
// mentorado with its session state, what the console derives from its
// messages and connection_log, and the fleet's counts by state.

// Fleet states: each mentorado is in exactly one. A disabled mentorado is
// "disabled" whatever its stored session status; otherwise the status
// maps as FleetStateOf says.
const (
	FleetConnected    = "connected"
	FleetPairing      = "pairing"
	FleetBackoff      = "backoff"
	FleetBanned       = "banned"
	FleetLoggedOut    = "logged_out"
	FleetDisconnected = "disconnected"
	FleetDisabled     = "disabled"
)

// FleetStates lists the fleet states, in the console's order.
var FleetStates = []string{FleetConnected, FleetPairing, FleetBackoff, FleetBanned, FleetLoggedOut, FleetDisconnected, FleetDisabled}

// FleetStateOf maps a stored session status (event.Status) of an enabled
// mentorado to its fleet state: qr and pairing are pairing, connecting and
// backoff are backoff (on the way back), conflict (another client took
// the session) is disconnected.
func FleetStateOf(status string, disabled bool) string {
	switch {
	case disabled:
		return FleetDisabled
	case status == "qr" || status == "pairing":
		return FleetPairing
	case status == "connecting" || status == "backoff":
		return FleetBackoff
	case status == "conflict" || status == "":
		return FleetDisconnected
	}
	return status
}

// fleetStateSQL is FleetStateOf in SQL, on mentorados m.
const fleetStateSQL = `CASE WHEN m.disabled_at IS NOT NULL THEN 'disabled'
	WHEN m.wa_status IN ('qr', 'pairing') THEN 'pairing'
	WHEN m.wa_status IN ('connecting', 'backoff') THEN 'backoff'
	WHEN m.wa_status = 'conflict' THEN 'disconnected'
	ELSE m.wa_status END`

// FleetCounts are how many mentorados are in each fleet state, over the
// whole fleet.
type FleetCounts struct {
	Connected    int64 `json:"connected"`
	Pairing      int64 `json:"pairing"`
	Backoff      int64 `json:"backoff"`
	Banned       int64 `json:"banned"`
	LoggedOut    int64 `json:"logged_out"`
	Disconnected int64 `json:"disconnected"`
	Disabled     int64 `json:"disabled"`
	Total        int64 `json:"total"`
}

func (c *FleetCounts) add(state string, n int64) {
	switch state {
	case FleetConnected:
		c.Connected += n
	case FleetPairing:
		c.Pairing += n
	case FleetBackoff:
		c.Backoff += n
	case FleetBanned:
		c.Banned += n
	case FleetLoggedOut:
		c.LoggedOut += n
	case FleetDisabled:
		c.Disabled += n
	default:
		c.Disconnected += n
	}
	c.Total += n
}

// FleetFilter selects a page of the fleet.
type FleetFilter struct {
	// Query matches a mentorado's name (case-insensitive substring), its
	// phone (substring of the digits) or its id (exactly); "" matches all.
	Query string
	// State is a fleet state; "" matches all.
	State string
	After int64 // keyset: ids above this
	Limit int
}

// FleetRow is one mentorado as the console shows it.
type FleetRow struct {
	ID        int64
	Name      string
	Status    string // the stored session status (event.Status)
	State     string // its fleet state
	Reason    string
	Phone     string
	Connector string
	Disabled  bool
	StatusAt  *time.Time // when the stored status was reached
	// LastMessageAt is the newest message's time (nil without messages).
	LastMessageAt *time.Time
	// Reconnects24h: backoff events in the last 24 h (each a lost
	// connection or failed attempt the connector retries, as its
	// zapbus_connector_reconnects_total counts them); Bans24h: banned
	// events in the last 24 h.
	Reconnects24h, Bans24h int64
	// Unread: inbound messages not read yet, as the chats API counts them.
	Unread    int64
	CreatedAt time.Time
}

// FleetQueries are the console's queries on the fleet.
type FleetQueries struct{ db *DB }

// Fleet returns the console's queries.
func (db *DB) Fleet() FleetQueries { return FleetQueries{db: db} }

// Counts returns how many mentorados are in each fleet state.
func (q FleetQueries) Counts(ctx context.Context) (FleetCounts, error) {
	var c FleetCounts
	rows, err := q.db.Pool.Query(ctx, `SELECT `+fleetStateSQL+`, count(*) FROM mentorados m GROUP BY 1`)
	if err != nil {
		return c, fmt.Errorf("store: fleet counts: %w", err)
	}
	var (
		state string
		n     int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&state, &n}, func() error { c.add(state, n); return nil }); err != nil {
		return c, fmt.Errorf("store: fleet counts: %w", err)
	}
	return c, nil
}

// fleetSQL is a page of the fleet: the mentorados by id, then for each one
// of the page (LATERAL, on indexes) its newest message
// (whatsapp_messages_recent), its connection_log counts of the last 24 h
// (connection_log_recent) and its unread count (whatsapp_messages_unread).
// $1 after, $2 name pattern, $3 phone pattern, $4 id, $5 state, $6 limit.
const fleetSQL = `
WITH page AS (
	SELECT m.id, m.name, m.wa_status, ` + fleetStateSQL + ` AS state, coalesce(m.wa_reason, '') AS reason,
		coalesce(m.wa_phone, '') AS phone, coalesce(m.wa_connector, '') AS connector, m.disabled_at IS NOT NULL AS disabled,
		m.wa_status_at, m.created_at
	FROM mentorados m
	WHERE m.id > $1
	  AND ($2::text = '' OR m.name ILIKE $2 OR ($3::text <> '' AND m.wa_phone LIKE $3) OR m.id = $4)
	  AND ($5::text = '' OR ` + fleetStateSQL + ` = $5)
	ORDER BY m.id
	LIMIT $6
)
SELECT p.id, p.name, p.wa_status, p.state, p.reason, p.phone, p.connector, p.disabled, p.wa_status_at,
	lm.sent_at, coalesce(cl.reconnects, 0), coalesce(cl.bans, 0), coalesce(un.n, 0), p.created_at
FROM page p
LEFT JOIN LATERAL (
	SELECT x.sent_at FROM whatsapp_messages x WHERE x.mentorado_id = p.id ORDER BY x.sent_at DESC, x.id DESC LIMIT 1
) lm ON true
LEFT JOIN LATERAL (
	SELECT count(*) FILTER (WHERE c.status = 'backoff') AS reconnects, count(*) FILTER (WHERE c.status = 'banned') AS bans
	FROM connection_log c WHERE c.mentorado_id = p.id AND c.occurred_at > now() - interval '24 hours'
) cl ON true
LEFT JOIN LATERAL (
	SELECT count(*) AS n FROM whatsapp_messages u
	WHERE u.mentorado_id = p.id AND u.direction = 'in' AND u.status_rank < 3 AND NOT u.revoked AND u.kind NOT IN ` + actionKinds + `
) un ON true
ORDER BY p.id`

// List returns a page of the fleet in id order.
func (q FleetQueries) List(ctx context.Context, f FleetFilter) ([]FleetRow, error) {
	query := strings.TrimSpace(f.Query)
	var namePat, phonePat string
	var id int64 = -1
	if query != "" {
		namePat = "%" + likeEscape(query) + "%"
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, query)
		if digits != "" {
			phonePat = "%" + digits + "%"
		}
		if n, err := strconv.ParseInt(strings.TrimPrefix(query, "#"), 10, 64); err == nil {
			id = n
		}
	}
	rows, err := q.db.Pool.Query(ctx, fleetSQL, f.After, namePat, phonePat, id, f.State, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("store: fleet: %w", err)
	}
	out := []FleetRow{}
	var r FleetRow
	_, err = pgx.ForEachRow(rows, []any{&r.ID, &r.Name, &r.Status, &r.State, &r.Reason, &r.Phone, &r.Connector, &r.Disabled,
		&r.StatusAt, &r.LastMessageAt, &r.Reconnects24h, &r.Bans24h, &r.Unread, &r.CreatedAt}, func() error {
		x := r // pgx may reuse the time pointers' targets: copy them
		x.StatusAt, x.LastMessageAt = copyTime(r.StatusAt), copyTime(r.LastMessageAt)
		out = append(out, x)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: fleet: %w", err)
	}
	return out, nil
}

func copyTime(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.UTC()
	return &v
}
