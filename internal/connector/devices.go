package connector

import (
	"context"
	"fmt"

	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/store"
)

// Desired states of a mentorado's session in wa_devices.
const (
	desiredConnected    = store.DesiredConnected
	desiredDisconnected = store.DesiredDisconnected
)

// deviceRow is a mentorado's wa_devices row.
type deviceRow struct {
	JID     types.JID // empty when not paired
	Phone   string
	Desired string
}

// devices is the connector's access to wa_devices: a thin wrapper over
// store.DeviceQueries that speaks whatsmeow's JIDs and adds the connector's
// error context.
type devices struct{ queries store.DeviceQueries }

func (d devices) get(ctx context.Context, m int64) (deviceRow, bool, error) {
	st, found, err := d.queries.Get(ctx, m)
	if err != nil {
		return deviceRow{}, false, fmt.Errorf("load wa_devices %d: %w", m, err)
	}
	if !found {
		return deviceRow{Desired: desiredDisconnected}, false, nil
	}
	row := deviceRow{Phone: st.Phone, Desired: st.Desired}
	if st.JID != "" {
		if row.JID, err = types.ParseJID(st.JID); err != nil {
			return row, false, fmt.Errorf("wa_devices %d: bad device_jid: %w", m, err)
		}
	}
	return row, true, nil
}

func (d devices) setDesired(ctx context.Context, m int64, desired string) error {
	if err := d.queries.SetDesired(ctx, m, desired); err != nil {
		return fmt.Errorf("set desired state of %d: %w", m, err)
	}
	return nil
}

func (d devices) paired(ctx context.Context, m int64, jid types.JID, phone string) error {
	if err := d.queries.Paired(ctx, m, jid.String(), phone); err != nil {
		return fmt.Errorf("record paired device of %d: %w", m, err)
	}
	return nil
}

// phoneOwner returns the mentorado a number is paired to, other than m.
func (d devices) phoneOwner(ctx context.Context, phone string, m int64) (int64, bool, error) {
	owner, taken, err := d.queries.PhoneOwner(ctx, phone, m)
	if err != nil {
		return 0, false, fmt.Errorf("look up phone owner: %w", err)
	}
	return owner, taken, nil
}

func (d devices) delete(ctx context.Context, m int64) error {
	if err := d.queries.Delete(ctx, m); err != nil {
		return fmt.Errorf("delete wa_devices %d: %w", m, err)
	}
	return nil
}

func (d devices) wantConnected(ctx context.Context) ([]int64, error) {
	ids, err := d.queries.WantConnected(ctx)
	if err != nil {
		return nil, fmt.Errorf("list sessions to restore: %w", err)
	}
	return ids, nil
}
