package connector

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.mau.fi/whatsmeow/types"
)

// Desired states of a mentorado's session in wa_devices.
const (
	desiredConnected    = "connected"
	desiredDisconnected = "disconnected"
)

// deviceRow is a mentorado's wa_devices row.
type deviceRow struct {
	JID     types.JID // empty when not paired
	Phone   string
	Desired string
}

// devices is the connector's access to wa_devices.
type devices struct{ pool *pgxpool.Pool }

func (d devices) get(ctx context.Context, m int64) (deviceRow, bool, error) {
	var jid, phone *string
	var row deviceRow
	// A disabled mentorado (mentorados.disabled_at) is never restored or
	// taken over: its desired state reads as disconnected.
	err := d.pool.QueryRow(ctx, `SELECT d.device_jid, d.phone,
		CASE WHEN m.disabled_at IS NULL THEN d.desired_state ELSE 'disconnected' END
		FROM wa_devices d JOIN mentorados m ON m.id = d.mentorado_id WHERE d.mentorado_id = $1`, m).
		Scan(&jid, &phone, &row.Desired)
	if errors.Is(err, pgx.ErrNoRows) {
		return deviceRow{Desired: desiredDisconnected}, false, nil
	}
	if err != nil {
		return row, false, fmt.Errorf("load wa_devices %d: %w", m, err)
	}
	if jid != nil && *jid != "" {
		if row.JID, err = types.ParseJID(*jid); err != nil {
			return row, false, fmt.Errorf("wa_devices %d: bad device_jid: %w", m, err)
		}
	}
	if phone != nil {
		row.Phone = *phone
	}
	return row, true, nil
}

func (d devices) setDesired(ctx context.Context, m int64, desired string) error {
	_, err := d.pool.Exec(ctx, `INSERT INTO wa_devices (mentorado_id, desired_state) VALUES ($1, $2)
		ON CONFLICT (mentorado_id) DO UPDATE SET desired_state = EXCLUDED.desired_state, updated_at = now()`, m, desired)
	if err != nil {
		return fmt.Errorf("set desired state of %d: %w", m, err)
	}
	return nil
}

func (d devices) paired(ctx context.Context, m int64, jid types.JID, phone string) error {
	_, err := d.pool.Exec(ctx, `INSERT INTO wa_devices (mentorado_id, device_jid, phone, desired_state) VALUES ($1, $2, $3, 'connected')
		ON CONFLICT (mentorado_id) DO UPDATE SET device_jid = EXCLUDED.device_jid, phone = EXCLUDED.phone,
			desired_state = 'connected', updated_at = now()`, m, jid.String(), phone)
	if err != nil {
		return fmt.Errorf("record paired device of %d: %w", m, err)
	}
	return nil
}

// phoneOwner returns the mentorado a number is paired to, other than m.
func (d devices) phoneOwner(ctx context.Context, phone string, m int64) (int64, bool, error) {
	var owner int64
	err := d.pool.QueryRow(ctx, `SELECT mentorado_id FROM wa_devices WHERE phone = $1 AND mentorado_id <> $2`, phone, m).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up phone owner: %w", err)
	}
	return owner, true, nil
}

func (d devices) delete(ctx context.Context, m int64) error {
	if _, err := d.pool.Exec(ctx, `DELETE FROM wa_devices WHERE mentorado_id = $1`, m); err != nil {
		return fmt.Errorf("delete wa_devices %d: %w", m, err)
	}
	return nil
}

func (d devices) wantConnected(ctx context.Context) ([]int64, error) {
	rows, err := d.pool.Query(ctx, `SELECT d.mentorado_id FROM wa_devices d JOIN mentorados m ON m.id = d.mentorado_id
		WHERE d.desired_state = 'connected' AND d.device_jid IS NOT NULL AND m.disabled_at IS NULL ORDER BY d.mentorado_id`)
	if err != nil {
		return nil, fmt.Errorf("list sessions to restore: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list sessions to restore: %w", err)
	}
	return ids, nil
}
