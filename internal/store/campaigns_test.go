package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// TestCampaignQueries: create stores a campaign and its recipients in one
// go; the lifecycle changes only from their states (a *CampaignStateError
// naming the current one), cancel cancels the pending recipients only,
// resume clears the bulk pause; another mentorado's campaign is not found;
// recipients show their message's status.
func TestCampaignQueries(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.Campaigns()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	other, _ := db.Mentorados().Create(ctx, "o", nil)
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

	rcpts := make([]store.RecipientInput, 3)
	for i := range rcpts {
		rcpts[i] = store.RecipientInput{Phone: fmt.Sprintf("551198888000%d", i), Name: fmt.Sprint("n", i), Text: fmt.Sprint("oi ", i)}
	}
	c, err := q.Create(ctx, m, store.CampaignInput{Name: "c", State: event.CampaignDraft, Message: store.CampaignMessage{Kind: event.KindText, Text: "oi"},
		Pacing: json.RawMessage(`{"min_gap_seconds":20,"max_gap_seconds":60}`), Recipients: rcpts})
	if err != nil || c.Total != 3 || c.State != event.CampaignDraft || c.Message.Text != "oi" || string(c.Source) != "{}" {
		t.Fatalf("create %+v %v", c, err)
	}
	if _, err := q.Get(ctx, other, c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other tenant's get: %v", err)
	}
	if _, err := q.Change(ctx, other, c.ID, store.CampaignSchedule, now); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other tenant's change: %v", err)
	}
	if err := q.Delete(ctx, other, c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other tenant's delete: %v", err)
	}
	var se *store.CampaignStateError
	if _, err := q.Change(ctx, m, c.ID, store.CampaignPause, now); !errors.As(err, &se) || se.State != event.CampaignDraft {
		t.Fatalf("pause a draft: %v", err)
	}
	if c, err = q.Change(ctx, m, c.ID, store.CampaignSchedule, now); err != nil || c.State != event.CampaignScheduled {
		t.Fatalf("schedule %+v %v", c, err)
	}
	if err := q.Delete(ctx, m, c.ID); !errors.As(err, &se) || se.State != event.CampaignScheduled {
		t.Fatalf("delete a scheduled campaign: %v", err)
	}

	// Sent to the first (read), the second in flight.
	exec(t, db, `UPDATE campaigns SET state = 'running', started_at = now() WHERE id = $1`, c.ID)
	rs, err := q.Recipients(ctx, m, c.ID, "", 0, 10)
	if err != nil || len(rs) != 3 || rs[0].Status != "pending" {
		t.Fatalf("recipients %+v %v", rs, err)
	}
	exec(t, db, `INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, phone, direction, kind, status, status_rank, sent_at)
		VALUES ($1, 'W1', 'x@s.whatsapp.net', 'me', $2, 'out', 'text', 'read', 3, now())`, m, rs[0].Phone)
	exec(t, db, `UPDATE campaign_recipients SET state = 'sent', wa_message_id = 'W1' WHERE id = $1`, rs[0].ID)
	exec(t, db, `UPDATE campaign_recipients SET state = 'sending', wa_message_id = 'W2' WHERE id = $1`, rs[1].ID)
	exec(t, db, `INSERT INTO send_settings (mentorado_id, bulk_paused_at, bulk_paused_reason) VALUES ($1, now(), 'temporary_ban')`, m)
	if c, err = q.Change(ctx, m, c.ID, store.CampaignPause, now); err != nil || c.State != event.CampaignPaused || c.PauseReason != store.CampaignPausedByUser {
		t.Fatalf("pause %+v %v", c, err)
	}
	if c, err = q.Change(ctx, m, c.ID, store.CampaignResume, now); err != nil || c.State != event.CampaignRunning || c.PauseReason != "" {
		t.Fatalf("resume %+v %v", c, err)
	}
	if st, err := db.SendSettings(ctx, m); err != nil || st.PausedAt != nil {
		t.Fatalf("resume left the bulk pause %+v %v", st, err)
	}
	if c, err = q.Change(ctx, m, c.ID, store.CampaignCancel, now); err != nil || c.State != event.CampaignCancelled || c.FinishedAt == nil {
		t.Fatalf("cancel %+v %v", c, err)
	}
	rs, _ = q.Recipients(ctx, m, c.ID, "", 0, 10)
	got := []string{rs[0].Status, rs[1].Status, rs[2].Status}
	if !slices.Equal(got, []string{"read", "sending", "cancelled"}) {
		t.Fatalf("after cancel %v", got)
	}
	if only, _ := q.Recipients(ctx, m, c.ID, store.RecipientCancelled, 0, 10); len(only) != 1 || only[0].ID != rs[2].ID {
		t.Fatalf("cancelled only %+v", only)
	}
	if page, _ := q.Recipients(ctx, m, c.ID, "", rs[0].ID, 1); len(page) != 1 || page[0].ID != rs[1].ID {
		t.Fatalf("page after the first %+v", page)
	}
	if _, err := q.Change(ctx, m, c.ID, store.CampaignResume, now); !errors.As(err, &se) || se.State != event.CampaignCancelled {
		t.Fatalf("resume a cancelled campaign: %v", err)
	}
	counts, err := db.CampaignCounts(ctx, []int64{c.ID})
	if err != nil || counts[c.ID] != (event.CampaignCounts{Total: 3, Pending: 1, Sent: 1, Delivered: 1, Read: 1, Cancelled: 1}) {
		t.Fatalf("counts %+v %v", counts, err)
	}
	if err := q.Delete(ctx, m, c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(ctx, m, c.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted campaign: %v", err)
	}
}

// TestResumeBulkAndOptOuts: resuming ends the bulk pause and resumes only
// the campaigns the system paused; opt-outs are per mentorado.
func TestResumeBulkAndOptOuts(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.Campaigns()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	other, _ := db.Mentorados().Create(ctx, "o", nil)
	now := time.Now()
	mk := func(mentorado int64, reason string, started bool) int64 {
		c, err := q.Create(ctx, mentorado, store.CampaignInput{Name: reason, State: event.CampaignScheduled,
			Message: store.CampaignMessage{Kind: event.KindText, Text: "oi"}, Pacing: json.RawMessage(`{}`),
			Recipients: []store.RecipientInput{{Phone: "5511988880000"}}})
		if err != nil {
			t.Fatal(err)
		}
		exec(t, db, `UPDATE campaigns SET state = 'paused', pause_reason = $2, started_at = CASE WHEN $3 THEN now() END WHERE id = $1`, c.ID, reason, started)
		return c.ID
	}
	ban, errs, user := mk(m, "temporary_ban", true), mk(m, "send_errors", false), mk(m, "user", true)
	theirs := mk(other, "temporary_ban", true)
	exec(t, db, `INSERT INTO send_settings (mentorado_id, bulk_paused_at, bulk_paused_reason) VALUES ($1, now(), 'temporary_ban'), ($2, now(), 'temporary_ban')`, m, other)
	was, ids, err := q.ResumeBulk(ctx, m, now)
	if err != nil || was == nil || !slices.Equal(ids, []int64{ban, errs}) {
		t.Fatalf("resume: %v %v %v", was, ids, err)
	}
	for id, want := range map[int64]event.CampaignState{ban: event.CampaignRunning, errs: event.CampaignScheduled, user: event.CampaignPaused} {
		if c, _ := q.Get(ctx, m, id); c.State != want {
			t.Errorf("campaign %d %s, want %s", id, c.State, want)
		}
	}
	if c, _ := q.Get(ctx, other, theirs); c.State != event.CampaignPaused {
		t.Fatalf("the other mentorado's campaign %s", c.State)
	}
	if st, _ := db.SendSettings(ctx, other); st.PausedAt == nil {
		t.Fatal("the other mentorado's bulk pause ended")
	}
	if was, ids, _ := q.ResumeBulk(ctx, m, now); was != nil || len(ids) != 0 {
		t.Fatalf("second resume %v %v", was, ids)
	}

	if _, created, err := q.AddOptOut(ctx, m, "5511988880001", now); err != nil || !created {
		t.Fatalf("add %v %v", created, err)
	}
	if o, created, err := q.AddOptOut(ctx, m, "5511988880001", now); err != nil || created || o.Source != "api" {
		t.Fatalf("add again %+v %v %v", o, created, err)
	}
	if list, _ := q.OptOuts(ctx, other, "", 10); len(list) != 0 {
		t.Fatalf("other's opt-outs %+v", list)
	}
	if err := q.RemoveOptOut(ctx, other, "5511988880001"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("other's remove: %v", err)
	}
	if err := q.RemoveOptOut(ctx, m, "5511988880001"); err != nil {
		t.Fatal(err)
	}
	exec(t, db, `INSERT INTO send_counters (mentorado_id, day, unsolicited) VALUES ($1, '2026-11-29', 9), ($1, '2026-11-28', 4)`, m)
	if n, err := q.UnsolicitedOn(ctx, m, time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC)); err != nil || n != 9 {
		t.Fatalf("counter %d %v", n, err)
	}
}
