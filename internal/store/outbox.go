package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
)

// OutboxQueries are the connector-side queries of sending at scale (issue
// #14, docs/decisions/0020-outbox-pacing-campaigns.md): the outbox rows,
// the campaign lane's recipient claims and marks, the daily counters of
// unsolicited sends, and the bulk pause. The session that owns a
// mentorado (one process, by its lease) is the only writer of that
// mentorado's outbox and recipient send states.
type OutboxQueries struct{ db *DB }

// Outbox returns the connector-side sending queries.
func (db *DB) Outbox() OutboxQueries { return OutboxQueries{db: db} }

// outboxRequest is the stored request: the send request and, beside it,
// the mentorado's own JID when it was queued (the queued message's
// sender), so Lookup can rebuild the queued message.
type outboxRequest struct {
	event.SendRequest
	OwnJID string `json:"outbox_own_jid,omitempty"`
}

// LastBulkSend is when mentorado m's worker last sent a campaign message
// or a queued send (zero when never): a new worker's bulk gap runs from
// it.
func (q OutboxQueries) LastBulkSend(ctx context.Context, m int64) (time.Time, error) {
	var t *time.Time
	err := q.db.Pool.QueryRow(ctx, `SELECT greatest(
	(SELECT max(sent_at) FROM campaign_recipients WHERE mentorado_id = $1 AND state = 'sent'),
	(SELECT max(sent_at) FROM outbox WHERE mentorado_id = $1 AND state = 'sent'))`, m).Scan(&t)
	if err != nil || t == nil {
		return time.Time{}, err
	}
	return *t, nil
}

const outboxColumns = `id, mentorado_id, wa_message_id, coalesce(client_id, ''), request, state, coalesce(reason, ''), attempts, expires_at, created_at, sent_at`

func scanOutbox(row pgx.CollectableRow) (OutboxRow, error) {
	var r OutboxRow
	var req []byte
	if err := row.Scan(&r.ID, &r.MentoradoID, &r.WAMessageID, &r.ClientID, &req, &r.State, &r.Reason, &r.Attempts, &r.ExpiresAt, &r.CreatedAt, &r.SentAt); err != nil {
		return r, err
	}
	var or outboxRequest
	if err := json.Unmarshal(req, &or); err != nil {
		return r, fmt.Errorf("outbox %d request: %w", r.ID, err)
	}
	r.Request, r.OwnJID = or.SendRequest, or.OwnJID
	return r, nil
}

// Insert stores a queued send (state queued). A row of the same mentorado
// with the same client id (or WhatsApp id) already there is returned
// instead, with created false: a retried request never queues twice.
func (q OutboxQueries) Insert(ctx context.Context, r OutboxRow) (OutboxRow, bool, error) {
	req, err := json.Marshal(outboxRequest{SendRequest: r.Request, OwnJID: r.OwnJID})
	if err != nil {
		return r, false, fmt.Errorf("store: outbox insert: %w", err)
	}
	var clientID *string
	if r.ClientID != "" {
		clientID = &r.ClientID
	}
	rows, err := q.db.Pool.Query(ctx, `INSERT INTO outbox (mentorado_id, wa_message_id, client_id, request, expires_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING RETURNING `+outboxColumns,
		r.MentoradoID, r.WAMessageID, clientID, req, r.ExpiresAt, r.CreatedAt)
	if err != nil {
		return r, false, fmt.Errorf("store: outbox insert: %w", err)
	}
	got, err := pgx.CollectRows(rows, scanOutbox)
	if err != nil {
		return r, false, fmt.Errorf("store: outbox insert: %w", err)
	}
	if len(got) == 1 {
		return got[0], true, nil
	}
	rows, err = q.db.Pool.Query(ctx, `SELECT `+outboxColumns+` FROM outbox
		WHERE mentorado_id = $1 AND (client_id = $2 OR wa_message_id = $3) ORDER BY id LIMIT 1`, r.MentoradoID, clientID, r.WAMessageID)
	if err != nil {
		return r, false, fmt.Errorf("store: outbox insert: %w", err)
	}
	got, err = pgx.CollectRows(rows, scanOutbox)
	if err != nil || len(got) == 0 {
		return r, false, fmt.Errorf("store: outbox insert: conflict but no row: %v", err)
	}
	return got[0], false, nil
}

// ByClientID returns mentorado m's outbox row with client id clientID, or
// nil.
func (q OutboxQueries) ByClientID(ctx context.Context, m int64, clientID string) (*OutboxRow, error) {
	rows, err := q.db.Pool.Query(ctx, `SELECT `+outboxColumns+` FROM outbox WHERE mentorado_id = $1 AND client_id = $2`, m, clientID)
	if err != nil {
		return nil, fmt.Errorf("store: outbox by client id: %w", err)
	}
	got, err := pgx.CollectRows(rows, scanOutbox)
	if err != nil {
		return nil, fmt.Errorf("store: outbox by client id: %w", err)
	}
	if len(got) == 0 {
		return nil, nil
	}
	return &got[0], nil
}

// Next returns mentorado m's first unfinished send (queued or sending, by
// id), or nil when the outbox is empty.
func (q OutboxQueries) Next(ctx context.Context, m int64) (*OutboxRow, error) {
	rows, err := q.db.Pool.Query(ctx, `SELECT `+outboxColumns+` FROM outbox
		WHERE mentorado_id = $1 AND state IN ('queued', 'sending') ORDER BY id LIMIT 1`, m)
	if err != nil {
		return nil, fmt.Errorf("store: outbox next: %w", err)
	}
	got, err := pgx.CollectRows(rows, scanOutbox)
	if err != nil {
		return nil, fmt.Errorf("store: outbox next: %w", err)
	}
	if len(got) == 0 {
		return nil, nil
	}
	return &got[0], nil
}

// Pending counts mentorado m's unfinished sends (queued or sending).
func (q OutboxQueries) Pending(ctx context.Context, m int64) (int, error) {
	var n int
	err := q.db.Pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE mentorado_id = $1 AND state IN ('queued', 'sending')`, m).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: outbox pending: %w", err)
	}
	return n, nil
}

// MarkSending moves send id to sending and counts the attempt, before it
// is given to WhatsApp. False when it is no longer queued or sending
// (expired or failed meanwhile).
func (q OutboxQueries) MarkSending(ctx context.Context, id int64) (bool, error) {
	tag, err := q.db.Pool.Exec(ctx, `UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = now()
		WHERE id = $1 AND state IN ('queued', 'sending')`, id)
	if err != nil {
		return false, fmt.Errorf("store: outbox mark sending: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// MarkSent records that WhatsApp took send id.
func (q OutboxQueries) MarkSent(ctx context.Context, id int64, at time.Time) error {
	_, err := q.db.Pool.Exec(ctx, `UPDATE outbox SET state = 'sent', sent_at = $2, reason = NULL, updated_at = now()
		WHERE id = $1 AND state = 'sending'`, id, at)
	if err != nil {
		return fmt.Errorf("store: outbox mark sent: %w", err)
	}
	return nil
}

// Requeue puts send id back to queued: the session went away before
// WhatsApp took it (countAttempt false: the attempt does not count), or
// the attempt failed and will be retried (countAttempt true, reason the
// error's code).
func (q OutboxQueries) Requeue(ctx context.Context, id int64, reason string, countAttempt bool) error {
	var r *string
	if reason != "" {
		r = &reason
	}
	_, err := q.db.Pool.Exec(ctx, `UPDATE outbox SET state = 'queued', reason = coalesce($2, reason),
		attempts = CASE WHEN $3 THEN attempts ELSE greatest(attempts - 1, 0) END, updated_at = now()
		WHERE id = $1 AND state = 'sending'`, id, r, countAttempt)
	if err != nil {
		return fmt.Errorf("store: outbox requeue: %w", err)
	}
	return nil
}

// OutboxFinish selects the unfinished sends Finish ends.
type OutboxFinish struct {
	Mentorado int64      // 0: every mentorado
	ID        int64      // 0: every send
	DueBefore *time.Time // only those whose expires_at is at or before it
	States    []string   // the states taken (default queued)
	State     string     // the final state: failed or expired
	Reason    string
	Limit     int // default 500
}

// Finish moves the sends f selects to f.State with f.Reason in one
// transaction, calling each for every row (with the new state and reason)
// before the commit, under FOR UPDATE SKIP LOCKED: each publishes the
// row's event, and an error rolls the whole batch back. It returns how
// many rows it finished.
func (q OutboxQueries) Finish(ctx context.Context, f OutboxFinish, each func(context.Context, OutboxRow) error) (int, error) {
	if f.State != OutboxFailed && f.State != OutboxExpired {
		return 0, fmt.Errorf("store: outbox finish: state %q", f.State)
	}
	states := f.States
	if len(states) == 0 {
		states = []string{OutboxQueued}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 500
	}
	n := 0
	err := q.db.InTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+outboxColumns+` FROM outbox
			WHERE state = ANY($1) AND ($2 = 0 OR mentorado_id = $2) AND ($3 = 0 OR id = $3)
			AND ($4::timestamptz IS NULL OR expires_at <= $4)
			ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED`, states, f.Mentorado, f.ID, f.DueBefore, limit)
		if err != nil {
			return err
		}
		got, err := pgx.CollectRows(rows, scanOutbox)
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return nil
		}
		ids := make([]int64, len(got))
		for i, r := range got {
			ids[i] = r.ID
		}
		if _, err := tx.Exec(ctx, `UPDATE outbox SET state = $2, reason = $3, updated_at = now() WHERE id = ANY($1)`,
			ids, f.State, f.Reason); err != nil {
			return err
		}
		for _, r := range got {
			r.State, r.Reason = f.State, f.Reason
			if err := each(ctx, r); err != nil {
				return err
			}
		}
		n = len(got)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: outbox finish: %w", err)
	}
	return n, nil
}

// WroteSince reports whether chat jid of mentorado m sent a message at or
// after since (the conversational window).
func (q OutboxQueries) WroteSince(ctx context.Context, m int64, jid string, since time.Time) (bool, error) {
	var ok bool
	err := q.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM whatsapp_messages
		WHERE mentorado_id = $1 AND (chat = $2 OR chat_jid = $2) AND direction = 'in' AND sent_at >= $3)`, m, jid, since).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: wrote since: %w", err)
	}
	return ok, nil
}

// Unsolicited returns mentorado m's count of unsolicited sends on UTC day
// day.
func (q OutboxQueries) Unsolicited(ctx context.Context, m int64, day time.Time) (int, error) {
	var n int
	err := q.db.Pool.QueryRow(ctx, `SELECT coalesce((SELECT unsolicited FROM send_counters WHERE mentorado_id = $1 AND day = $2), 0)`,
		m, outboxDay(day)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: unsolicited count: %w", err)
	}
	return n, nil
}

// AddUnsolicited counts one more unsolicited send of mentorado m on UTC day
// day and returns the day's count.
func (q OutboxQueries) AddUnsolicited(ctx context.Context, m int64, day time.Time) (int, error) {
	var n int
	err := q.db.Pool.QueryRow(ctx, `INSERT INTO send_counters (mentorado_id, day, unsolicited) VALUES ($1, $2, 1)
		ON CONFLICT (mentorado_id, day) DO UPDATE SET unsolicited = send_counters.unsolicited + 1 RETURNING unsolicited`,
		m, outboxDay(day)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("store: add unsolicited: %w", err)
	}
	return n, nil
}

// outboxDay is the UTC date of t as a Postgres date.
func outboxDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// SetBulkPause records mentorado m's bulk pause (reason, at) and pauses
// its running campaigns with the reason, in one transaction; before the
// commit, publish is called (the sending event): its error rolls the pause
// back. It returns the ids of the campaigns it paused.
func (q OutboxQueries) SetBulkPause(ctx context.Context, m int64, reason string, at time.Time, publish func(context.Context) error) ([]int64, error) {
	var ids []int64
	err := q.db.InTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO send_settings (mentorado_id, bulk_paused_at, bulk_paused_reason) VALUES ($1, $2, $3)
			ON CONFLICT (mentorado_id) DO UPDATE SET bulk_paused_at = $2, bulk_paused_reason = $3, updated_at = now()`,
			m, at, reason); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `UPDATE campaigns SET state = 'paused', pause_reason = $2, updated_at = now()
			WHERE mentorado_id = $1 AND state = 'running' RETURNING id`, m, reason)
		if err != nil {
			return err
		}
		if ids, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
			return err
		}
		return publish(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("store: bulk pause: %w", err)
	}
	return ids, nil
}

const outboxCampaignColumns = `id, mentorado_id, name, state, message, pacing, source, start_at, coalesce(pause_reason, ''), total,
	created_at, updated_at, started_at, finished_at`

func outboxScanCampaign(row pgx.CollectableRow) (CampaignRow, error) {
	var c CampaignRow
	var msg, pacing, source []byte
	err := row.Scan(&c.ID, &c.MentoradoID, &c.Name, &c.State, &msg, &pacing, &source, &c.StartAt, &c.PauseReason, &c.Total,
		&c.CreatedAt, &c.UpdatedAt, &c.StartedAt, &c.FinishedAt)
	if err != nil {
		return c, err
	}
	c.Pacing, c.Source = pacing, source
	if err := json.Unmarshal(msg, &c.Message); err != nil {
		return c, fmt.Errorf("campaign %d message: %w", c.ID, err)
	}
	return c, nil
}

// StartDueCampaigns moves mentorado m's scheduled campaigns whose start
// time has come (start_at at or before now, or none) to running, and
// returns how many it started.
func (q OutboxQueries) StartDueCampaigns(ctx context.Context, m int64, now time.Time) (int, error) {
	tag, err := q.db.Pool.Exec(ctx, `UPDATE campaigns SET state = 'running', started_at = coalesce(started_at, $2), updated_at = now()
		WHERE mentorado_id = $1 AND state = 'scheduled' AND (start_at IS NULL OR start_at <= $2)`, m, now)
	if err != nil {
		return 0, fmt.Errorf("store: start campaigns: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// RunningCampaigns returns mentorado m's running campaigns, oldest first.
func (q OutboxQueries) RunningCampaigns(ctx context.Context, m int64) ([]CampaignRow, error) {
	rows, err := q.db.Pool.Query(ctx, `SELECT `+outboxCampaignColumns+` FROM campaigns
		WHERE mentorado_id = $1 AND state = 'running' ORDER BY id`, m)
	if err != nil {
		return nil, fmt.Errorf("store: running campaigns: %w", err)
	}
	got, err := pgx.CollectRows(rows, outboxScanCampaign)
	if err != nil {
		return nil, fmt.Errorf("store: running campaigns: %w", err)
	}
	return got, nil
}

// CampaignState returns campaign id's state ("" when it is gone).
func (q OutboxQueries) CampaignState(ctx context.Context, id int64) (event.CampaignState, error) {
	var s event.CampaignState
	err := q.db.Pool.QueryRow(ctx, `SELECT state FROM campaigns WHERE id = $1`, id).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("store: campaign state: %w", err)
	}
	return s, nil
}

// CompleteCampaign moves running campaign id to completed when no
// recipient is pending or sending, and all its total recipients are
// stored (a campaign whose recipients are still being inserted outside
// one transaction is not complete); it reports whether it did.
func (q OutboxQueries) CompleteCampaign(ctx context.Context, id int64, now time.Time) (bool, error) {
	tag, err := q.db.Pool.Exec(ctx, `UPDATE campaigns c SET state = 'completed', finished_at = $2, updated_at = now()
		WHERE c.id = $1 AND c.state = 'running'
		AND NOT EXISTS (SELECT 1 FROM campaign_recipients WHERE campaign_id = $1 AND state IN ('pending', 'sending'))
		AND (SELECT count(*) FROM campaign_recipients WHERE campaign_id = $1) >= c.total`, id, now)
	if err != nil {
		return false, fmt.Errorf("store: complete campaign: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

const outboxRecipientColumns = `id, campaign_id, mentorado_id, phone, lead_id, name, text, state, coalesce(reason, ''),
	coalesce(wa_message_id, ''), coalesce(jid, ''), attempts, updated_at, sent_at`

func outboxScanRecipient(row pgx.CollectableRow) (RecipientRow, error) {
	var r RecipientRow
	err := row.Scan(&r.ID, &r.CampaignID, &r.MentoradoID, &r.Phone, &r.LeadID, &r.Name, &r.Text, &r.State, &r.Reason,
		&r.WAMessageID, &r.JID, &r.Attempts, &r.UpdatedAt, &r.SentAt)
	r.Status = r.State
	return r, err
}

// NextRecipient returns campaign id's next recipient to send to: one left
// in sending (a crash between the claim and the mark) first, then the
// first pending by id; nil when none is left.
func (q OutboxQueries) NextRecipient(ctx context.Context, campaign int64) (*RecipientRow, error) {
	rows, err := q.db.Pool.Query(ctx, `SELECT `+outboxRecipientColumns+` FROM campaign_recipients
		WHERE campaign_id = $1 AND state IN ('pending', 'sending') ORDER BY state = 'sending' DESC, id LIMIT 1`, campaign)
	if err != nil {
		return nil, fmt.Errorf("store: next recipient: %w", err)
	}
	got, err := pgx.CollectRows(rows, outboxScanRecipient)
	if err != nil {
		return nil, fmt.Errorf("store: next recipient: %w", err)
	}
	if len(got) == 0 {
		return nil, nil
	}
	return &got[0], nil
}

// ClaimRecipient moves recipient id to sending with WhatsApp id waID (kept
// if it already has one: a recipient's id never changes) and chat jid,
// counting the attempt, only while its campaign is running: false when the
// campaign was paused or cancelled meanwhile, or the recipient is done.
// It returns the WhatsApp id to send with.
func (q OutboxQueries) ClaimRecipient(ctx context.Context, id int64, waID, jid string) (string, bool, error) {
	var got string
	err := q.db.Pool.QueryRow(ctx, `UPDATE campaign_recipients r SET state = 'sending', wa_message_id = coalesce(r.wa_message_id, $2),
		jid = $3, attempts = r.attempts + 1, updated_at = now()
		WHERE r.id = $1 AND r.state IN ('pending', 'sending')
		AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = r.campaign_id AND c.state = 'running')
		RETURNING r.wa_message_id`, id, waID, jid).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: claim recipient: %w", err)
	}
	return got, true, nil
}

// FinishRecipient moves recipient id from pending or sending to state
// (sent, skipped, failed) with reason; sentAt is set for sent.
func (q OutboxQueries) FinishRecipient(ctx context.Context, id int64, state, reason string, sentAt *time.Time) error {
	var r *string
	if reason != "" {
		r = &reason
	}
	_, err := q.db.Pool.Exec(ctx, `UPDATE campaign_recipients SET state = $2, reason = $3, sent_at = $4, updated_at = now()
		WHERE id = $1 AND state IN ('pending', 'sending')`, id, state, r, sentAt)
	if err != nil {
		return fmt.Errorf("store: finish recipient: %w", err)
	}
	return nil
}

// FinishRecipientSentAs moves recipient id from pending or sending to sent
// at sentAt with the message id the provider gave it, replacing the one
// chosen before the send (providers that choose their own ids: Meta,
// Z-API), so the recipient's status follows its message's receipts.
func (q OutboxQueries) FinishRecipientSentAs(ctx context.Context, id int64, waID string, sentAt time.Time) error {
	_, err := q.db.Pool.Exec(ctx, `UPDATE campaign_recipients SET state = 'sent', reason = NULL, sent_at = $3,
		wa_message_id = $2, updated_at = now()
		WHERE id = $1 AND state IN ('pending', 'sending')`, id, waID, sentAt)
	if err != nil {
		return fmt.Errorf("store: finish recipient: %w", err)
	}
	return nil
}

// RequeueRecipient puts recipient id back to pending (the session went
// away before WhatsApp took it), keeping its WhatsApp id; the attempt does
// not count. With reason, it records the error of a failed attempt.
func (q OutboxQueries) RequeueRecipient(ctx context.Context, id int64, reason string, countAttempt bool) error {
	var r *string
	if reason != "" {
		r = &reason
	}
	_, err := q.db.Pool.Exec(ctx, `UPDATE campaign_recipients SET state = 'pending', reason = $2,
		attempts = CASE WHEN $3 THEN attempts ELSE greatest(attempts - 1, 0) END, updated_at = now()
		WHERE id = $1 AND state = 'sending'`, id, r, countAttempt)
	if err != nil {
		return fmt.Errorf("store: requeue recipient: %w", err)
	}
	return nil
}

// SentToJID reports whether another recipient (not id) of campaign was
// already sent to WhatsApp account jid.
func (q OutboxQueries) SentToJID(ctx context.Context, campaign, id int64, jid string) (bool, error) {
	var ok bool
	err := q.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM campaign_recipients
		WHERE campaign_id = $1 AND jid = $2 AND id <> $3 AND state = 'sent')`, campaign, jid, id).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: sent to jid: %w", err)
	}
	return ok, nil
}

// OptedOut reports whether mentorado m has an opt-out for any of phones.
func (q OutboxQueries) OptedOut(ctx context.Context, m int64, phones []string) (bool, error) {
	var ok bool
	err := q.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM opt_outs WHERE mentorado_id = $1 AND phone = ANY($2))`, m, phones).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: opted out: %w", err)
	}
	return ok, nil
}
