package store

import (
	"context"
	"fmt"
)

// WhatsmeowQueries are zapbus's own statements on whatsmeow's sqlstore
// tables (whatsmeow_*), which whatsmeow creates and upgrades itself through
// DB.SQL. Only what whatsmeow does not do for us lives here.
type WhatsmeowQueries struct{ q Querier }

// Whatsmeow returns zapbus's statements on whatsmeow's tables.
func (db *DB) Whatsmeow() WhatsmeowQueries { return WhatsmeowQueries{q: db.Pool} }

// DeleteDevice removes device jid's row (its keys, sessions and secrets
// cascade) and its privacy tokens, which whatsmeow does not cascade.
func (w WhatsmeowQueries) DeleteDevice(ctx context.Context, jid string) error {
	if _, err := w.q.Exec(ctx, "DELETE FROM whatsmeow_privacy_tokens WHERE our_jid = $1", jid); err != nil {
		return fmt.Errorf("delete privacy tokens: %w", err)
	}
	if _, err := w.q.Exec(ctx, "DELETE FROM whatsmeow_device WHERE jid = $1", jid); err != nil {
		return fmt.Errorf("delete device: %w", err)
	}
	return nil
}
