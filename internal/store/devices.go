package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Desired states of a mentorado's session (wa_devices.desired_state).
const (
	DesiredConnected    = "connected"
	DesiredDisconnected = "disconnected"
)

// DeviceQueries are the queries on wa_devices, the connector's record of
// which whatsmeow device serves a mentorado and whether its session should
// run.
type DeviceQueries struct{ q Querier }

// Devices returns the queries on wa_devices.
func (db *DB) Devices() DeviceQueries { return DeviceQueries{q: db.Pool} }

// DevicesOn returns the queries on wa_devices run through q (a pool or a
// transaction).
func DevicesOn(q Querier) DeviceQueries { return DeviceQueries{q: q} }

// DeviceState is a mentorado's wa_devices row as the connector reads it.
type DeviceState struct {
	JID     string // empty when not paired
	Phone   string
	Desired string // DesiredDisconnected for a disabled mentorado
}

// Get returns mentorado m's device row; found is false when it has none. A
// disabled mentorado (mentorados.disabled_at) is never restored or taken
// over: its desired state reads as disconnected.
func (d DeviceQueries) Get(ctx context.Context, m int64) (st DeviceState, found bool, err error) {
	var jid, phone *string
	err = d.q.QueryRow(ctx, `SELECT d.device_jid, d.phone,
		CASE WHEN m.disabled_at IS NULL THEN d.desired_state ELSE 'disconnected' END
		FROM wa_devices d JOIN mentorados m ON m.id = d.mentorado_id WHERE d.mentorado_id = $1`, m).
		Scan(&jid, &phone, &st.Desired)
	if err != nil {
		if notFound(err) == ErrNotFound {
			return DeviceState{}, false, nil
		}
		return DeviceState{}, false, err
	}
	if jid != nil {
		st.JID = *jid
	}
	if phone != nil {
		st.Phone = *phone
	}
	return st, true, nil
}

// SetDesired records whether mentorado m's session should run.
func (d DeviceQueries) SetDesired(ctx context.Context, m int64, desired string) error {
	_, err := d.q.Exec(ctx, `INSERT INTO wa_devices (mentorado_id, desired_state) VALUES ($1, $2)
		ON CONFLICT (mentorado_id) DO UPDATE SET desired_state = EXCLUDED.desired_state, updated_at = now()`, m, desired)
	return err
}

// Paired records the device mentorado m paired and its number; its session
// should run.
func (d DeviceQueries) Paired(ctx context.Context, m int64, deviceJID, phone string) error {
	_, err := d.q.Exec(ctx, `INSERT INTO wa_devices (mentorado_id, device_jid, phone, desired_state) VALUES ($1, $2, $3, 'connected')
		ON CONFLICT (mentorado_id) DO UPDATE SET device_jid = EXCLUDED.device_jid, phone = EXCLUDED.phone,
			desired_state = 'connected', updated_at = now()`, m, deviceJID, phone)
	return err
}

// PhoneOwner returns the mentorado other than m that phone is paired to.
func (d DeviceQueries) PhoneOwner(ctx context.Context, phone string, m int64) (owner int64, taken bool, err error) {
	err = d.q.QueryRow(ctx, `SELECT mentorado_id FROM wa_devices WHERE phone = $1 AND mentorado_id <> $2`, phone, m).Scan(&owner)
	if err != nil {
		if notFound(err) == ErrNotFound {
			return 0, false, nil
		}
		return 0, false, err
	}
	return owner, true, nil
}

// Phone returns the number mentorado m's session is paired with; "" when
// it has none.
func (d DeviceQueries) Phone(ctx context.Context, m int64) (string, error) {
	var ph *string
	err := d.q.QueryRow(ctx, "SELECT phone FROM wa_devices WHERE mentorado_id = $1", m).Scan(&ph)
	if err != nil {
		if notFound(err) == ErrNotFound {
			return "", nil
		}
		return "", err
	}
	if ph == nil {
		return "", nil
	}
	return *ph, nil
}

// Delete forgets mentorado m's device.
func (d DeviceQueries) Delete(ctx context.Context, m int64) error {
	_, err := d.q.Exec(ctx, `DELETE FROM wa_devices WHERE mentorado_id = $1`, m)
	return err
}

// WantConnected lists, by id, the enabled mentorados whose paired session
// should run: what a connector restores at start-up.
func (d DeviceQueries) WantConnected(ctx context.Context) ([]int64, error) {
	rows, err := d.q.Query(ctx, `SELECT d.mentorado_id FROM wa_devices d JOIN mentorados m ON m.id = d.mentorado_id
		WHERE d.desired_state = 'connected' AND d.device_jid IS NOT NULL AND m.disabled_at IS NULL ORDER BY d.mentorado_id`)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("store: list sessions to restore: %w", err)
	}
	return ids, nil
}
