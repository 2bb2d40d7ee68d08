// Package outbound sends at scale without getting numbers banned (issue
// #14, docs/decisions/0020-outbox-pacing-campaigns.md): the per-mentorado
// durable outbox, the per-number pacer, campaigns and opt-outs.
//
// It knows nothing of WhatsApp: the connector session that owns a
// mentorado runs one Worker while connected and gives it a Sender (resolve
// a number, show typing, send with a chosen id); for a mentorado on Meta
// or Z-API (issue #16) a provider gateway runs it, campaign lane only,
// with a Sender over the provider's API. The notifier uses the
// settings, pacing profiles and templates to validate API input; the
// persister uses MatchOptOut on inbound replies.
package outbound

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// ErrNotImplemented marks scaffold stubs; nothing returns it once #14 lands.
var ErrNotImplemented = errors.New("outbound: not implemented")

// Settings are a mentorado's sending settings: the defaults (Defaults)
// overlaid with the mentorado's stored overrides, bounded by the
// operator's Limits. JSON names are the API's.
type Settings struct {
	// Conversational sends (to someone who wrote in the last 24 h): a
	// token bucket of ChatPerMinute tokens a minute holding ChatBurst.
	ChatPerMinute float64 `json:"chat_per_minute"`
	ChatBurst     int     `json:"chat_burst"`
	// Unsolicited sends (anyone else, and every campaign message): a
	// random gap between BulkMinGapSeconds and BulkMaxGapSeconds after the
	// previous one, and at most DailyCap a UTC day. A send through the API
	// to someone who has not written may take one of UnsolicitedBurst
	// tokens instead of waiting for the gap; a token comes back after
	// each drawn gap. Campaigns always keep the gap.
	BulkMinGapSeconds float64 `json:"bulk_min_gap_seconds"`
	BulkMaxGapSeconds float64 `json:"bulk_max_gap_seconds"`
	DailyCap          int     `json:"daily_cap"`
	UnsolicitedBurst  int     `json:"unsolicited_burst"`
	// Typing shows "typing…" before queued and campaign messages, for a
	// time that grows with the text (TypingMinSeconds to TypingMaxSeconds).
	Typing           bool    `json:"typing"`
	TypingMinSeconds float64 `json:"typing_min_seconds"`
	TypingMaxSeconds float64 `json:"typing_max_seconds"`
	// PauseAfterErrors consecutive send errors pause bulk sending.
	PauseAfterErrors int `json:"pause_after_errors"`
	// QueueTTLSeconds is how long a queued send waits before it expires,
	// unless the send says otherwise.
	QueueTTLSeconds int `json:"queue_ttl_seconds"`
	// OptOutKeywords: an inbound reply that is one of these (case,
	// accents, surrounding spaces and punctuation ignored) opts the
	// contact out of campaigns.
	OptOutKeywords []string `json:"opt_out_keywords"`
}

// Limits are the operator's maxima (environment ZAPBUS_SEND_*): no
// mentorado setting and no campaign pacing may go beyond them.
type Limits struct {
	MaxChatPerMinute  float64 `json:"max_chat_per_minute"`
	MaxChatBurst      int     `json:"max_chat_burst"`
	MinBulkGapSeconds float64 `json:"min_bulk_gap_seconds"`
	MaxDailyCap       int     `json:"max_daily_cap"`
	MaxQueueTTL       int     `json:"max_queue_ttl_seconds"`
}

// FieldError is a setting or campaign field that is out of bounds; the
// API answers 422 naming Field.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Pacing is how a campaign spaces its messages: a named profile, or a
// custom gap. Both gaps are seconds; each message waits a uniformly random
// gap in [MinGapSeconds, MaxGapSeconds] after the previous bulk message.
type Pacing struct {
	Profile       string  `json:"profile,omitempty"`
	MinGapSeconds float64 `json:"min_gap_seconds"`
	MaxGapSeconds float64 `json:"max_gap_seconds"`
}

// Vars are a recipient's template variables.
type Vars struct {
	Name   string            // the lead's (or contact's) name
	Phone  string            // E.164 digits
	Fields map[string]string // the lead's custom fields
}

// Publisher stores an event (the connector's publish path: JetStream, with
// the event id as Nats-Msg-Id).
type Publisher interface {
	Publish(ctx context.Context, env event.Envelope) error
}

// Sender is what a Worker needs from the session that owns the mentorado.
// Implemented by the connector over the real whatsmeow client.
//
// The worker shows typing before queued and campaign messages and does not
// clear it after a send (the message clears it on the recipient's phone);
// it calls Typing(jid, false) only when the send then fails. A Sender that
// also has NewMessageID() string (whatsmeow's GenerateMessageID) gives the
// ids of campaign messages; otherwise the worker makes ids of the same
// shape (3EB0 and 18 hex digits). A *event.CommandError with code
// not_connected from Send or Resolve means the session is going away: the
// item goes back to the queue uncounted.
type Sender interface {
	// Resolve asks WhatsApp whether phone (normalised E.164 digits) is on
	// WhatsApp, trying the Brazilian 9th-digit variants; it returns the
	// chat JID to send to, or "" when the number is not on WhatsApp.
	Resolve(ctx context.Context, phone string) (jid string, err error)
	// Typing shows (on) or clears "typing…" in chat jid.
	Typing(ctx context.Context, jid string, on bool) error
	// Send sends req now with WhatsApp message id waID and publishes its
	// message event (status sent, with meta's client and campaign ids);
	// a *event.CommandError says why WhatsApp refused it. A provider that
	// chooses its own ids (Meta, Z-API) answers a message with its id,
	// which the campaign recipient then keeps instead of waID; waID still
	// names the attempt (the gateway's idempotency key), so a send
	// repeated after a crash is not sent twice.
	Send(ctx context.Context, req event.SendRequest, waID string, meta SendMeta) (*event.Message, error)
}

// SendMeta is what a queued or campaign send adds to its message event.
type SendMeta struct {
	ClientID   string
	CampaignID int64
}

// Clock is the time source (the connector's, so tests drive the pacer
// with a fake clock). connector.Clock satisfies it.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) interface{ Stop() bool }
}

// WorkerConfig builds a Worker.
type WorkerConfig struct {
	DB        *store.DB
	Mentorado int64
	Sender    Sender
	Publisher Publisher
	Clock     Clock
	Limits    Limits
	Log       zerolog.Logger
	// Poll is how often the worker looks for campaign and settings
	// changes made through the API (DefaultPoll, on Clock).
	Poll time.Duration
	// Seed seeds the jitter (0: random).
	Seed uint64
	// CampaignsOnly runs the campaign lane alone (the provider gateway's
	// workers: its sends go out at once, so the outbox stays the
	// connector's).
	CampaignsOnly bool
}
