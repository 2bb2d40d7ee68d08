package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Cleared counts what ClearWhatsAppData deleted.
type Cleared struct {
	Messages, Contacts, Leads int64
}

// ClearWhatsAppData deletes mentorado m's WhatsApp data in one transaction
// under the mentorado's lock (so a persister batch never links to a lead
// deleted under it): messages, contacts, the leads WhatsApp created, and
// the persister's private tables (pending receipts and media events, LID
// mappings) and the groups' snapshots, whose rows would otherwise outlive
// the messages they describe.
func (db *DB) ClearWhatsAppData(ctx context.Context, m int64) (Cleared, error) {
	var out Cleared
	err := db.WithMentoradoLock(ctx, m, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM whatsapp_messages WHERE mentorado_id = $1`, m)
		if err != nil {
			return fmt.Errorf("delete messages: %w", err)
		}
		out.Messages = tag.RowsAffected()
		if _, err := tx.Exec(ctx, `DELETE FROM whatsapp_pending_receipts WHERE mentorado_id = $1`, m); err != nil {
			return fmt.Errorf("delete pending receipts: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM whatsapp_pending_media WHERE mentorado_id = $1`, m); err != nil {
			return fmt.Errorf("delete pending media events: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM whatsapp_lid_phones WHERE mentorado_id = $1`, m); err != nil {
			return fmt.Errorf("delete LID mappings: %w", err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM whatsapp_groups WHERE mentorado_id = $1`, m); err != nil {
			return fmt.Errorf("delete groups: %w", err)
		}
		if tag, err = tx.Exec(ctx, `DELETE FROM whatsapp_contacts WHERE mentorado_id = $1`, m); err != nil {
			return fmt.Errorf("delete contacts: %w", err)
		}
		out.Contacts = tag.RowsAffected()
		if tag, err = tx.Exec(ctx, `DELETE FROM leads WHERE mentorado_id = $1 AND source = 'whatsapp'`, m); err != nil {
			return fmt.Errorf("delete leads: %w", err)
		}
		out.Leads = tag.RowsAffected()
		return nil
	})
	return out, err
}
