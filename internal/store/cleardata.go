package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Cleared counts what ClearWhatsAppData deleted.
type Cleared struct {
	Messages, Contacts, Leads int64
	// Outbox counts the sends that were waiting in the outbox (issue #14).
	Outbox int64
}

// ClearWhatsAppData deletes mentorado m's WhatsApp data in one transaction
// under the mentorado's lock (so a persister batch never links to a lead
// deleted under it): messages, contacts, the leads WhatsApp created, and
// the persister's private tables (pending receipts and media events, LID
// mappings) and the groups' snapshots, whose rows would otherwise outlive
// the messages they describe.
//
// Sending (issue #14): the outbox goes too (sends still waiting would
// otherwise go out after the clear and reappear in an empty thread; they
// end without an event, their queued rows are deleted with the other
// messages). Opt-outs stay, those inbound replies made (source keyword)
// too: they record a person's wish not to get bulk messages, which
// deleting the message history does not undo. Campaigns and their recipients stay: the
// API created them, they are the record of what was sent to whom, and a
// recipient's wa_message_id is what keeps a resend after a crash from
// sending twice. Their messages are gone, so a sent recipient counts as
// sent but no longer as delivered or read (nor failed, for a message that
// failed after it was sent). The daily send counters and the sending
// settings stay: clearing data must not reset the daily cap.
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
		if tag, err = tx.Exec(ctx, `DELETE FROM outbox WHERE mentorado_id = $1`, m); err != nil {
			return fmt.Errorf("delete outbox: %w", err)
		}
		out.Outbox = tag.RowsAffected()
		return nil
	})
	return out, err
}
