package store

import (
	"time"

	"github.com/uptrace/bun"
)

// Webhook is one webhook endpoint (webhooks, migration 0008). MentoradoID
// nil is an admin-level endpoint receiving every tenant's events.
//
// The API side (create, list, update, delete, rotate, pause/resume,
// redeliver) is in webhooks.go; the dispatcher's side (which endpoints to
// run, health, the delivery log) in webhook_dispatch.go.
type Webhook struct {
	bun.BaseModel `bun:"table:webhooks"`

	ID                  int64      `bun:"id,pk,autoincrement"`
	MentoradoID         *int64     `bun:"mentorado_id"`
	URL                 string     `bun:"url,notnull"`
	Description         string     `bun:"description,notnull"`
	EventTypes          []string   `bun:"event_types,array,notnull"`
	Secret              string     `bun:"secret,notnull"`
	PreviousSecret      *string    `bun:"previous_secret"`
	PreviousSecretUntil *time.Time `bun:"previous_secret_until"`
	State               string     `bun:"state,notnull"` // event.WebhookState
	StateReason         string     `bun:"state_reason,notnull"`
	StateAt             time.Time  `bun:"state_at,notnull"`
	StartTime           time.Time  `bun:"start_time,notnull"`
	StartSeq            *int64     `bun:"start_seq"`
	Generation          int        `bun:"generation,notnull"`
	ConsecutiveFailures int        `bun:"consecutive_failures,notnull"`
	FailingSince        *time.Time `bun:"failing_since"`
	LastSuccessAt       *time.Time `bun:"last_success_at"`
	LastFailureAt       *time.Time `bun:"last_failure_at"`
	CreatedAt           time.Time  `bun:"created_at,notnull"`
	UpdatedAt           time.Time  `bun:"updated_at,notnull"`
}

// WebhookDelivery is one delivery attempt (webhook_deliveries).
type WebhookDelivery struct {
	bun.BaseModel `bun:"table:webhook_deliveries"`

	ID          int64     `bun:"id,pk,autoincrement"`
	WebhookID   int64     `bun:"webhook_id,notnull"`
	DeliveryID  string    `bun:"delivery_id,notnull"`
	EventID     string    `bun:"event_id,notnull"`
	EventType   string    `bun:"event_type,notnull"`
	MentoradoID int64     `bun:"mentorado_id,notnull"`
	StreamSeq   int64     `bun:"stream_seq,notnull"`
	Attempt     int       `bun:"attempt,notnull"`
	Outcome     string    `bun:"outcome,notnull"` // delivered | retry | dead | gone | refused
	StatusCode  *int      `bun:"status_code"`
	LatencyMS   int       `bun:"latency_ms,notnull"`
	Error       string    `bun:"error,notnull"`
	AttemptedAt time.Time `bun:"attempted_at,notnull"`
}

// Delivery outcomes.
const (
	DeliveryDelivered = "delivered"
	DeliveryRetry     = "retry"
	DeliveryDead      = "dead"
	DeliveryGone      = "gone"
	DeliveryRefused   = "refused"
)

// WebhooksChannel is the Postgres NOTIFY channel the API signals after
// changing a webhook, so dispatchers reconcile at once instead of at their
// next poll.
const WebhooksChannel = "zapbus_webhooks"
