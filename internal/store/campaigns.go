package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
)

// The notifier's side of campaigns, sending settings and opt-outs (issue
// #14): the campaigns API creates campaigns with their recipients, moves
// them through their lifecycle and lists them; the sending API reads and
// writes a mentorado's send_settings and opt_outs. The connector's worker
// sends (outbox.go), the persister reports progress.

// CampaignQueries are the campaigns API's reads and writes.
type CampaignQueries struct{ db *DB }

// Campaigns returns the queries on campaigns and their recipients.
func (db *DB) Campaigns() CampaignQueries { return CampaignQueries{db: db} }

// CampaignInput is a campaign to create with its recipients (already
// normalised, de-duplicated and rendered).
type CampaignInput struct {
	Name       string
	State      event.CampaignState // draft or scheduled
	Message    CampaignMessage
	Pacing     json.RawMessage
	Source     json.RawMessage
	StartAt    *time.Time
	Recipients []RecipientInput
}

// RecipientInput is one recipient of a new campaign.
type RecipientInput struct {
	Phone  string
	LeadID *int64
	Name   string
	Text   string
}

// CampaignStateError is a lifecycle change the campaign's current state
// does not allow (the API answers 409 with State).
type CampaignStateError struct {
	State event.CampaignState
}

func (e *CampaignStateError) Error() string {
	return fmt.Sprintf("store: campaign is %s", e.State)
}

const campaignColumns = `id, mentorado_id, name, state, message, pacing, source, start_at, coalesce(pause_reason, ''), total,
	created_at, updated_at, started_at, finished_at`

func scanCampaign(row pgx.Row) (CampaignRow, error) {
	var c CampaignRow
	var msg []byte
	err := row.Scan(&c.ID, &c.MentoradoID, &c.Name, &c.State, &msg, &c.Pacing, &c.Source, &c.StartAt, &c.PauseReason, &c.Total,
		&c.CreatedAt, &c.UpdatedAt, &c.StartedAt, &c.FinishedAt)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(msg, &c.Message); err != nil {
		return c, fmt.Errorf("campaign %d message: %w", c.ID, err)
	}
	return c, nil
}

// Create stores a campaign and its recipients in one transaction (COPY for
// the recipients) and returns the campaign.
func (q CampaignQueries) Create(ctx context.Context, m int64, in CampaignInput) (CampaignRow, error) {
	var out CampaignRow
	msg, err := json.Marshal(in.Message)
	if err != nil {
		return out, fmt.Errorf("store: create campaign: %w", err)
	}
	source := in.Source
	if len(source) == 0 {
		source = json.RawMessage(`{}`)
	}
	err = q.db.InTx(ctx, func(tx pgx.Tx) error {
		c, err := scanCampaign(tx.QueryRow(ctx, `INSERT INTO campaigns (mentorado_id, name, state, message, pacing, source, start_at, total)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING `+campaignColumns,
			m, in.Name, in.State, msg, in.Pacing, source, in.StartAt, len(in.Recipients)))
		if err != nil {
			return err
		}
		rows := make([][]any, len(in.Recipients))
		for i, r := range in.Recipients {
			rows[i] = []any{c.ID, m, r.Phone, r.LeadID, r.Name, r.Text}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"campaign_recipients"},
			[]string{"campaign_id", "mentorado_id", "phone", "lead_id", "name", "text"}, pgx.CopyFromRows(rows)); err != nil {
			return err
		}
		out = c
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("store: create campaign: %w", err)
	}
	return out, nil
}

// Get returns mentorado m's campaign id (ErrNotFound when m has none with
// that id, another tenant's included).
func (q CampaignQueries) Get(ctx context.Context, m, id int64) (CampaignRow, error) {
	c, err := scanCampaign(q.db.Pool.QueryRow(ctx, `SELECT `+campaignColumns+` FROM campaigns WHERE mentorado_id = $1 AND id = $2`, m, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return c, ErrNotFound
	}
	if err != nil {
		return c, fmt.Errorf("store: get campaign: %w", err)
	}
	return c, nil
}

// List returns at most n of mentorado m's campaigns, newest first, with
// ids below before (0: from the newest).
func (q CampaignQueries) List(ctx context.Context, m, before int64, n int) ([]CampaignRow, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := q.db.Pool.Query(ctx, `SELECT `+campaignColumns+` FROM campaigns
		WHERE mentorado_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3`, m, before, n)
	if err != nil {
		return nil, fmt.Errorf("store: list campaigns: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (CampaignRow, error) { return scanCampaign(r) })
	if err != nil {
		return nil, fmt.Errorf("store: list campaigns: %w", err)
	}
	return out, nil
}

// CampaignChange is a lifecycle change: the states it may start from and
// the state it leads to.
type CampaignChange string

// Campaign lifecycle changes through the API.
const (
	CampaignSchedule CampaignChange = "schedule" // draft → scheduled
	CampaignPause    CampaignChange = "pause"    // scheduled, running → paused (reason user)
	CampaignResume   CampaignChange = "resume"   // paused → running (scheduled if it never started); clears the bulk pause
	CampaignCancel   CampaignChange = "cancel"   // draft, scheduled, running, paused → cancelled; pending recipients cancelled
)

// CampaignPausedByUser is the pause_reason of a campaign paused through
// the API.
const CampaignPausedByUser = "user"

var campaignChangeFrom = map[CampaignChange][]event.CampaignState{
	CampaignSchedule: {event.CampaignDraft},
	CampaignPause:    {event.CampaignScheduled, event.CampaignRunning},
	CampaignResume:   {event.CampaignPaused},
	CampaignCancel:   {event.CampaignDraft, event.CampaignScheduled, event.CampaignRunning, event.CampaignPaused},
}

// Change applies a lifecycle change to mentorado m's campaign id in one
// transaction: ErrNotFound, or a *CampaignStateError when its state does
// not allow it. It returns the campaign as changed.
func (q CampaignQueries) Change(ctx context.Context, m, id int64, ch CampaignChange, now time.Time) (CampaignRow, error) {
	from, ok := campaignChangeFrom[ch]
	if !ok {
		return CampaignRow{}, fmt.Errorf("store: unknown campaign change %q", ch)
	}
	var out CampaignRow
	err := q.db.InTx(ctx, func(tx pgx.Tx) error {
		c, err := scanCampaign(tx.QueryRow(ctx, `SELECT `+campaignColumns+` FROM campaigns WHERE mentorado_id = $1 AND id = $2 FOR UPDATE`, m, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if !slices.Contains(from, c.State) {
			return &CampaignStateError{State: c.State}
		}
		var sql string
		switch ch {
		case CampaignSchedule:
			sql = `UPDATE campaigns SET state = 'scheduled', pause_reason = NULL, updated_at = $3 WHERE mentorado_id = $1 AND id = $2`
		case CampaignPause:
			sql = `UPDATE campaigns SET state = 'paused', pause_reason = '` + CampaignPausedByUser + `', updated_at = $3 WHERE mentorado_id = $1 AND id = $2`
		case CampaignResume:
			sql = `UPDATE campaigns SET state = CASE WHEN started_at IS NULL THEN 'scheduled' ELSE 'running' END, pause_reason = NULL,
				updated_at = $3 WHERE mentorado_id = $1 AND id = $2`
			// Resuming is the user's decision to send again: the
			// mentorado's bulk pause (a ban or a run of errors) ends too.
			if _, err := tx.Exec(ctx, `UPDATE send_settings SET bulk_paused_at = NULL, bulk_paused_reason = NULL, updated_at = $2
				WHERE mentorado_id = $1 AND bulk_paused_at IS NOT NULL`, m, now); err != nil {
				return err
			}
		case CampaignCancel:
			sql = `UPDATE campaigns SET state = 'cancelled', updated_at = $3, finished_at = $3 WHERE mentorado_id = $1 AND id = $2`
			if _, err := tx.Exec(ctx, `UPDATE campaign_recipients SET state = 'cancelled', updated_at = $2
				WHERE campaign_id = $1 AND state = 'pending'`, id, now); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, sql, m, id, now); err != nil {
			return err
		}
		out, err = scanCampaign(tx.QueryRow(ctx, `SELECT `+campaignColumns+` FROM campaigns WHERE id = $1`, id))
		return err
	})
	var se *CampaignStateError
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.As(err, &se) {
		return out, fmt.Errorf("store: %s campaign: %w", ch, err)
	}
	return out, err
}

// Delete deletes mentorado m's campaign id with its recipients when it is
// a draft or has ended (else a *CampaignStateError; ErrNotFound).
func (q CampaignQueries) Delete(ctx context.Context, m, id int64) error {
	err := q.db.InTx(ctx, func(tx pgx.Tx) error {
		var st event.CampaignState
		err := tx.QueryRow(ctx, `SELECT state FROM campaigns WHERE mentorado_id = $1 AND id = $2 FOR UPDATE`, m, id).Scan(&st)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if st != event.CampaignDraft && !st.Final() {
			return &CampaignStateError{State: st}
		}
		_, err = tx.Exec(ctx, `DELETE FROM campaigns WHERE mentorado_id = $1 AND id = $2`, m, id)
		return err
	})
	var se *CampaignStateError
	if err != nil && !errors.Is(err, ErrNotFound) && !errors.As(err, &se) {
		return fmt.Errorf("store: delete campaign: %w", err)
	}
	return err
}

// Recipients returns at most n recipients of mentorado m's campaign id in
// id order after afterID, only those in state when state is not "". A
// sent recipient's Status is its message's status.
func (q CampaignQueries) Recipients(ctx context.Context, m, id int64, state string, afterID int64, n int) ([]RecipientRow, error) {
	rows, err := q.db.Pool.Query(ctx, `SELECT r.id, r.campaign_id, r.mentorado_id, r.phone, r.lead_id, r.name, r.text, r.state,
		CASE WHEN r.state = 'sent' THEN coalesce(m.status, 'sent') ELSE r.state END,
		coalesce(r.reason, m.status_reason, ''), coalesce(r.wa_message_id, ''), coalesce(r.jid, ''), r.attempts, r.updated_at, r.sent_at
	FROM campaign_recipients r
	LEFT JOIN whatsapp_messages m ON m.mentorado_id = r.mentorado_id AND m.wa_message_id = r.wa_message_id
	WHERE r.mentorado_id = $1 AND r.campaign_id = $2 AND r.id > $3 AND ($4 = '' OR r.state = $4)
	ORDER BY r.id LIMIT $5`, m, id, afterID, state, n)
	if err != nil {
		return nil, fmt.Errorf("store: campaign recipients: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (RecipientRow, error) {
		var x RecipientRow
		err := r.Scan(&x.ID, &x.CampaignID, &x.MentoradoID, &x.Phone, &x.LeadID, &x.Name, &x.Text, &x.State, &x.Status,
			&x.Reason, &x.WAMessageID, &x.JID, &x.Attempts, &x.UpdatedAt, &x.SentAt)
		return x, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: campaign recipients: %w", err)
	}
	return out, nil
}

// AudienceLead is a lead a campaign's lead filter selected.
type AudienceLead struct {
	ID     int64
	Phone  string
	Name   string
	Fields map[string]string
}

// Audience returns at most n of mentorado m's leads with a phone that f
// selects, oldest first.
func (q CampaignQueries) Audience(ctx context.Context, m int64, f LeadFilter, n int) ([]AudienceLead, error) {
	cond, args := f.SQL("l", []any{m})
	args = append(args, n)
	rows, err := q.db.Pool.Query(ctx, `SELECT l.id, l.phone, l.name, l.fields FROM leads l
		WHERE l.mentorado_id = $1 AND l.phone IS NOT NULL AND `+cond+fmt.Sprintf(`
		ORDER BY l.created_at, l.id LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("store: campaign audience: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AudienceLead, error) {
		var a AudienceLead
		err := r.Scan(&a.ID, &a.Phone, &a.Name, &a.Fields)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: campaign audience: %w", err)
	}
	return out, nil
}

// LeadsByPhone returns mentorado m's leads with these phones, by phone
// (the template variables of a campaign to a list of numbers).
func (q CampaignQueries) LeadsByPhone(ctx context.Context, m int64, phones []string) (map[string]AudienceLead, error) {
	rows, err := q.db.Pool.Query(ctx, `SELECT l.id, l.phone, l.name, l.fields FROM leads l
		WHERE l.mentorado_id = $1 AND l.phone = ANY($2)`, m, phones)
	if err != nil {
		return nil, fmt.Errorf("store: campaign leads by phone: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AudienceLead, error) {
		var a AudienceLead
		err := r.Scan(&a.ID, &a.Phone, &a.Name, &a.Fields)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: campaign leads by phone: %w", err)
	}
	out := make(map[string]AudienceLead, len(list))
	for _, a := range list {
		out[a.Phone] = a
	}
	return out, nil
}

// SaveSendSettings stores mentorado m's settings overrides (the bulk pause
// stays as it is).
func (q CampaignQueries) SaveSendSettings(ctx context.Context, m int64, settings json.RawMessage, now time.Time) error {
	_, err := q.db.Pool.Exec(ctx, `INSERT INTO send_settings (mentorado_id, settings, updated_at) VALUES ($1, $2, $3)
		ON CONFLICT (mentorado_id) DO UPDATE SET settings = EXCLUDED.settings, updated_at = EXCLUDED.updated_at`, m, settings, now)
	if err != nil {
		return fmt.Errorf("store: save send settings: %w", err)
	}
	return nil
}

// System pause reasons of campaigns (and of the bulk pause): a temporary
// ban, or a run of send errors.
const (
	PauseTemporaryBan = "temporary_ban"
	PauseSendErrors   = "send_errors"
)

// ResumeBulk clears mentorado m's bulk pause and resumes the campaigns the
// system paused (reason temporary_ban or send_errors), in one transaction.
// It returns when the pause it ended began (nil when bulk sending was not
// paused) and the campaigns resumed.
func (q CampaignQueries) ResumeBulk(ctx context.Context, m int64, now time.Time) (*time.Time, []int64, error) {
	var pausedAt *time.Time
	var ids []int64
	err := q.db.InTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `SELECT bulk_paused_at FROM send_settings WHERE mentorado_id = $1 FOR UPDATE`, m).Scan(&pausedAt)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if pausedAt != nil {
			if _, err := tx.Exec(ctx, `UPDATE send_settings SET bulk_paused_at = NULL, bulk_paused_reason = NULL, updated_at = $2
				WHERE mentorado_id = $1`, m, now); err != nil {
				return err
			}
		}
		rows, err := tx.Query(ctx, `UPDATE campaigns SET state = CASE WHEN started_at IS NULL THEN 'scheduled' ELSE 'running' END,
			pause_reason = NULL, updated_at = $2
			WHERE mentorado_id = $1 AND state = 'paused' AND pause_reason = ANY($3) RETURNING id`,
			m, now, []string{PauseTemporaryBan, PauseSendErrors})
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: resume bulk: %w", err)
	}
	slices.Sort(ids)
	return pausedAt, ids, nil
}

// UnsolicitedOn is mentorado m's count of unsolicited sends on UTC day.
func (q CampaignQueries) UnsolicitedOn(ctx context.Context, m int64, day time.Time) (int, error) {
	var n int
	err := q.db.Pool.QueryRow(ctx, `SELECT coalesce(sum(unsolicited), 0) FROM send_counters WHERE mentorado_id = $1 AND day = $2::date`,
		m, day.UTC().Format(time.DateOnly)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: send counter: %w", err)
	}
	return n, nil
}

// OptOutRow is an opt_outs row.
type OptOutRow struct {
	Phone       string
	Source      string // keyword | api
	Keyword     string
	WAMessageID string
	CreatedAt   time.Time
}

// OptOuts returns at most n of mentorado m's opt-outs by phone, after
// phone after ("" from the first).
func (q CampaignQueries) OptOuts(ctx context.Context, m int64, after string, n int) ([]OptOutRow, error) {
	rows, err := q.db.Pool.Query(ctx, `SELECT phone, source, coalesce(keyword, ''), coalesce(wa_message_id, ''), created_at
		FROM opt_outs WHERE mentorado_id = $1 AND phone > $2 ORDER BY phone LIMIT $3`, m, after, n)
	if err != nil {
		return nil, fmt.Errorf("store: opt-outs: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OptOutRow, error) {
		var o OptOutRow
		err := r.Scan(&o.Phone, &o.Source, &o.Keyword, &o.WAMessageID, &o.CreatedAt)
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: opt-outs: %w", err)
	}
	return out, nil
}

// AddOptOut opts phone out of mentorado m's campaigns through the API; an
// existing opt-out stays as it is. It returns the row and whether it is new.
func (q CampaignQueries) AddOptOut(ctx context.Context, m int64, phone string, now time.Time) (OptOutRow, bool, error) {
	tag, err := q.db.Pool.Exec(ctx, `INSERT INTO opt_outs (mentorado_id, phone, source, created_at) VALUES ($1, $2, 'api', $3)
		ON CONFLICT (mentorado_id, phone) DO NOTHING`, m, phone, now)
	if err != nil {
		return OptOutRow{}, false, fmt.Errorf("store: add opt-out: %w", err)
	}
	var o OptOutRow
	err = q.db.Pool.QueryRow(ctx, `SELECT phone, source, coalesce(keyword, ''), coalesce(wa_message_id, ''), created_at
		FROM opt_outs WHERE mentorado_id = $1 AND phone = $2`, m, phone).Scan(&o.Phone, &o.Source, &o.Keyword, &o.WAMessageID, &o.CreatedAt)
	if err != nil {
		return o, false, fmt.Errorf("store: add opt-out: %w", err)
	}
	return o, tag.RowsAffected() > 0, nil
}

// RemoveOptOut removes mentorado m's opt-out of phone (ErrNotFound when
// there is none).
func (q CampaignQueries) RemoveOptOut(ctx context.Context, m int64, phone string) error {
	tag, err := q.db.Pool.Exec(ctx, `DELETE FROM opt_outs WHERE mentorado_id = $1 AND phone = $2`, m, phone)
	if err != nil {
		return fmt.Errorf("store: remove opt-out: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}
