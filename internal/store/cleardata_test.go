package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/store"
)

// TestClearWhatsAppDataSending: clear-data (issue #14) deletes the
// mentorado's outbox; it keeps every opt-out (those inbound replies made
// too: a person's wish outlives the history), campaigns and their recipients (counted
// as sent, no longer delivered, once their messages are gone), the daily
// send counters and the settings; another mentorado keeps everything.
func TestClearWhatsAppDataSending(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	other, _ := db.Mentorados().Create(ctx, "o", nil)
	camps := map[int64]int64{}
	for _, id := range []int64{m, other} {
		seedMessage(t, db, store.MessageWrite{MentoradoID: id, WAMessageID: "C1", ChatJID: "5511900000001@s.whatsapp.net", SenderJID: "s",
			Direction: "out", Kind: "text", Status: "read", StatusRank: 3, SentAt: time.Now()})
		seedMessage(t, db, store.MessageWrite{MentoradoID: id, WAMessageID: "Q1", ChatJID: "5511900000002@s.whatsapp.net", SenderJID: "s",
			Direction: "out", Kind: "text", Status: "queued", StatusRank: 0, SentAt: time.Now()})
		exec(t, db, `INSERT INTO outbox (mentorado_id, wa_message_id, request, expires_at) VALUES ($1, 'Q1', '{}', now() + interval '1 hour')`, id)
		exec(t, db, `INSERT INTO opt_outs (mentorado_id, phone, source, keyword, wa_message_id) VALUES ($1, '5511900000003', 'keyword', 'SAIR', 'IN1')`, id)
		exec(t, db, `INSERT INTO opt_outs (mentorado_id, phone, source) VALUES ($1, '5511900000004', 'api')`, id)
		exec(t, db, `INSERT INTO send_counters (mentorado_id, day, unsolicited) VALUES ($1, current_date, 37)`, id)
		exec(t, db, `INSERT INTO send_settings (mentorado_id, settings) VALUES ($1, '{"daily_cap":50}')`, id)
		var c int64
		if err := db.Pool.QueryRow(ctx, `INSERT INTO campaigns (mentorado_id, name, state, message, pacing, total)
			VALUES ($1, 'c', 'completed', '{}', '{}', 1) RETURNING id`, id).Scan(&c); err != nil {
			t.Fatal(err)
		}
		camps[id] = c
		exec(t, db, `INSERT INTO campaign_recipients (campaign_id, mentorado_id, phone, state, wa_message_id) VALUES ($1, $2, '5511900000001', 'sent', 'C1')`, c, id)
	}
	got, err := db.ClearWhatsAppData(ctx, m)
	if err != nil || got != (store.Cleared{Messages: 2, Outbox: 1}) {
		t.Fatalf("clear: %+v %v", got, err)
	}
	for table, want := range map[string][2]int{
		"whatsapp_messages": {0, 2}, "outbox": {0, 1}, "opt_outs": {2, 2}, "send_counters": {1, 1}, "send_settings": {1, 1},
		"campaigns": {1, 1}, "campaign_recipients": {1, 1},
	} {
		for i, id := range []int64{m, other} {
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE mentorado_id = $1`, id).Scan(&n); err != nil || n != want[i] {
				t.Errorf("%s of %d: %d rows, want %d (%v)", table, id, n, want[i], err)
			}
		}
	}
	counts, err := db.CampaignCounts(ctx, []int64{camps[m], camps[other]})
	if err != nil {
		t.Fatal(err)
	}
	if c := counts[camps[m]]; c.Total != 1 || c.Sent != 1 || c.Delivered != 0 || c.Read != 0 {
		t.Errorf("cleared mentorado's campaign counts %+v, want sent 1, delivered 0", c)
	}
	if c := counts[camps[other]]; c.Total != 1 || c.Sent != 1 || c.Delivered != 1 || c.Read != 1 {
		t.Errorf("other mentorado's campaign counts %+v, want read", c)
	}
}
