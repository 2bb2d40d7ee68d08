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

// Sending at scale (issue #14, docs/decisions/0020-outbox-pacing-campaigns.md).
// The rows of migration 0010 as the connector (outbox.go: the outbox and
// the campaign lane), the notifier (campaigns.go: the campaigns API) and
// the persister (opt-outs, campaign progress) read them. This file holds
// what more than one of them needs.

// CampaignMessage is what a campaign sends: a text with {{variables}}, or
// a media file the mentorado uploaded (media_id) with an optional caption.
type CampaignMessage struct {
	Kind     event.Kind `json:"kind"`
	Text     string     `json:"text,omitempty"`
	MediaID  string     `json:"media_id,omitempty"`
	Caption  string     `json:"caption,omitempty"`
	FileName string     `json:"file_name,omitempty"`
}

// CampaignRow is a campaigns row.
type CampaignRow struct {
	ID          int64
	MentoradoID int64
	Name        string
	State       event.CampaignState
	Message     CampaignMessage
	Pacing      json.RawMessage // outbound.Pacing
	Source      json.RawMessage
	StartAt     *time.Time
	PauseReason string
	Total       int
	CreatedAt   time.Time
	UpdatedAt   time.Time
	StartedAt   *time.Time
	FinishedAt  *time.Time
}

// Recipient states (campaign_recipients.state).
const (
	RecipientPending   = "pending"
	RecipientSending   = "sending"
	RecipientSent      = "sent"
	RecipientSkipped   = "skipped"
	RecipientFailed    = "failed"
	RecipientCancelled = "cancelled"
)

// Skip and failure reasons of recipients (campaign_recipients.reason).
const (
	ReasonOptedOut      = "opted_out"
	ReasonNotOnWhatsApp = "not_on_whatsapp"
	ReasonDuplicate     = "duplicate" // another recipient resolved to the same WhatsApp account
)

// RecipientRow is a campaign_recipients row. Status is what the API shows:
// the state, or for a sent recipient its message's status (sent,
// delivered, read, played, failed).
type RecipientRow struct {
	ID          int64
	CampaignID  int64
	MentoradoID int64
	Phone       string
	LeadID      *int64
	Name        string
	Text        string
	State       string
	Status      string
	Reason      string
	WAMessageID string
	JID         string
	Attempts    int
	UpdatedAt   time.Time
	SentAt      *time.Time
}

// Outbox states (outbox.state).
const (
	OutboxQueued  = "queued"
	OutboxSending = "sending"
	OutboxSent    = "sent"
	OutboxExpired = "expired"
	OutboxFailed  = "failed"
)

// OutboxRow is an outbox row: a send waiting for the session.
type OutboxRow struct {
	ID          int64
	MentoradoID int64
	WAMessageID string
	ClientID    string
	Request     event.SendRequest
	State       string
	Reason      string
	Attempts    int
	ExpiresAt   time.Time
	CreatedAt   time.Time
	SentAt      *time.Time
	// OwnJID is the mentorado's own JID when the send was queued: the
	// queued message's sender (stored beside the request).
	OwnJID string
}

// campaignCountsSQL counts recipients by outcome; a sent recipient counts
// as delivered or read by its message's status rank (2 delivered, 3 read,
// 4 played), and as failed when the message failed after sending.
const campaignCountsSQL = `
SELECT r.campaign_id,
	count(*),
	count(*) FILTER (WHERE r.state IN ('pending', 'sending')),
	count(*) FILTER (WHERE r.state = 'sent' AND coalesce(m.status_rank, 1) < 9),
	count(*) FILTER (WHERE r.state = 'sent' AND m.status_rank BETWEEN 2 AND 4),
	count(*) FILTER (WHERE r.state = 'sent' AND m.status_rank BETWEEN 3 AND 4),
	count(*) FILTER (WHERE r.state = 'failed' OR (r.state = 'sent' AND m.status_rank = 9)),
	count(*) FILTER (WHERE r.state = 'skipped'),
	count(*) FILTER (WHERE r.state = 'cancelled')
FROM campaign_recipients r
LEFT JOIN whatsapp_messages m ON m.mentorado_id = r.mentorado_id AND m.wa_message_id = r.wa_message_id
WHERE r.campaign_id = ANY($1)
GROUP BY r.campaign_id`

// CampaignCounts returns the counts of each campaign in ids (a campaign
// with no recipients is absent: all zero).
func (db *DB) CampaignCounts(ctx context.Context, ids []int64) (map[int64]event.CampaignCounts, error) {
	out, err := campaignCounts(ctx, db.Pool, ids)
	if err != nil {
		return nil, fmt.Errorf("store: campaign %w", err)
	}
	return out, nil
}

// campaignCounts runs campaignCountsSQL on q (the pool, or a transaction).
func campaignCounts(ctx context.Context, q Querier, ids []int64) (map[int64]event.CampaignCounts, error) {
	rows, err := q.Query(ctx, campaignCountsSQL, ids)
	if err != nil {
		return nil, fmt.Errorf("counts: %w", err)
	}
	out := make(map[int64]event.CampaignCounts, len(ids))
	for rows.Next() {
		var id int64
		var c event.CampaignCounts
		if err := rows.Scan(&id, &c.Total, &c.Pending, &c.Sent, &c.Delivered, &c.Read, &c.Failed, &c.Skipped, &c.Cancelled); err != nil {
			rows.Close()
			return nil, fmt.Errorf("counts: %w", err)
		}
		out[id] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("counts: %w", err)
	}
	return out, nil
}

// SendSettingsRow is a mentorado's send_settings row: the stored overrides
// (outbound.Settings JSON) and the bulk pause.
type SendSettingsRow struct {
	Settings    json.RawMessage
	PausedAt    *time.Time
	PauseReason string
}

// SendSettings reads mentorado m's sending settings; no row reads as no
// overrides and not paused.
func (db *DB) SendSettings(ctx context.Context, m int64) (SendSettingsRow, error) {
	var r SendSettingsRow
	var reason *string
	err := db.Pool.QueryRow(ctx, `SELECT settings, bulk_paused_at, bulk_paused_reason FROM send_settings WHERE mentorado_id = $1`, m).
		Scan(&r.Settings, &r.PausedAt, &reason)
	if errors.Is(err, pgx.ErrNoRows) {
		return SendSettingsRow{Settings: json.RawMessage(`{}`)}, nil
	}
	if err != nil {
		return r, fmt.Errorf("store: send settings: %w", err)
	}
	if reason != nil {
		r.PauseReason = *reason
	}
	return r, nil
}
