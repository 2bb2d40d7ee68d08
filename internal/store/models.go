package store

import (
	"time"

	"github.com/uptrace/bun"
)

// Bun models of zapbus's tables, one per table, field for field with
// schema/migrations (TestModelsMatchSchema fails when they drift). They are
// the schema as Go sees it: the query types below select and write through
// them where bun reads well, and the persister's set-based statements
// (persist.go) name the same columns.

// Mentorado is a tenant (mentorados).
type Mentorado struct {
	bun.BaseModel `bun:"table:mentorados"`

	ID             int64      `bun:"id,pk,autoincrement"`
	Name           string     `bun:"name,notnull"`
	TokenHash      []byte     `bun:"token_hash"` // SHA-256 of the API token
	TokenCreatedAt *time.Time `bun:"token_created_at"`
	WAStatus       string     `bun:"wa_status,notnull"`
	WAPhone        *string    `bun:"wa_phone"`
	WAJID          *string    `bun:"wa_jid"`
	WAReason       *string    `bun:"wa_reason"`
	WAStatusAt     *time.Time `bun:"wa_status_at"`
	WAStatusSeq    int64      `bun:"wa_status_seq,notnull"`
	WAPhoneAt      *time.Time `bun:"wa_phone_at"`
	WAPhoneSeq     int64      `bun:"wa_phone_seq,notnull"`
	DisabledAt     *time.Time `bun:"disabled_at"`
	CreatedAt      time.Time  `bun:"created_at,notnull"`
}

// Device is the connector's record of a mentorado's whatsmeow device and
// whether its session should run (wa_devices).
type Device struct {
	bun.BaseModel `bun:"table:wa_devices"`

	MentoradoID  int64     `bun:"mentorado_id,pk"`
	DeviceJID    *string   `bun:"device_jid"`
	Phone        *string   `bun:"phone"`
	DesiredState string    `bun:"desired_state,notnull"`
	UpdatedAt    time.Time `bun:"updated_at,notnull"`
}

// Lead is a person a mentorado talks to (leads); WhatsApp creates them for
// inbound messages (source 'whatsapp').
type Lead struct {
	bun.BaseModel `bun:"table:leads"`

	ID          int64      `bun:"id,pk,autoincrement"`
	MentoradoID int64      `bun:"mentorado_id,notnull"`
	Phone       *string    `bun:"phone"`
	LID         *string    `bun:"lid"`
	Name        string     `bun:"name,notnull"`
	NameAt      *time.Time `bun:"name_at"`
	NameSeq     int64      `bun:"name_seq,notnull"`
	Source      string     `bun:"source,notnull"`
	Stage       string     `bun:"stage,notnull"`
	CreatedAt   time.Time  `bun:"created_at,notnull"`
	UpdatedAt   time.Time  `bun:"updated_at,notnull"`
}

// Message is one WhatsApp message, or an edit, revoke or reaction acting on
// one (whatsapp_messages). MessageColumns lists the columns the persister
// writes, in its order.
type Message struct {
	bun.BaseModel `bun:"table:whatsapp_messages"`

	ID          int64     `bun:"id,pk,autoincrement"`
	MentoradoID int64     `bun:"mentorado_id,notnull"`
	WAMessageID string    `bun:"wa_message_id,notnull"`
	ChatJID     string    `bun:"chat_jid,notnull"`
	SenderJID   string    `bun:"sender_jid,notnull"`
	Phone       *string   `bun:"phone"`
	LID         *string   `bun:"lid"`
	PushName    string    `bun:"push_name,notnull"`
	Direction   string    `bun:"direction,notnull"`
	Kind        string    `bun:"kind,notnull"`
	Body        string    `bun:"body,notnull"`
	Caption     string    `bun:"caption,notnull"`
	ReplyToID   *string   `bun:"reply_to_id"`
	TargetID    *string   `bun:"target_id"`
	Status      string    `bun:"status,notnull"`
	StatusRank  int16     `bun:"status_rank,notnull"`
	Edited      bool      `bun:"edited,notnull"`
	Revoked     bool      `bun:"revoked,notnull"`
	LeadID      *int64    `bun:"lead_id"`
	SentAt      time.Time `bun:"sent_at,notnull"`
	CreatedAt   time.Time `bun:"created_at,notnull"`
	UpdatedAt   time.Time `bun:"updated_at,notnull"`

	// The file of a media message (event.Media) and what became of it:
	// MediaState is nil for messages without a file, else pending, stored
	// or failed (the media event; never back to pending).
	MediaID        *string `bun:"media_id"`
	MediaMIME      *string `bun:"media_mime"`
	MediaSize      *int64  `bun:"media_size"`
	MediaFileName  *string `bun:"media_file_name"`
	MediaSeconds   *int32  `bun:"media_seconds"`
	MediaWidth     *int32  `bun:"media_width"`
	MediaHeight    *int32  `bun:"media_height"`
	MediaRound     bool    `bun:"media_round,notnull"`
	MediaThumbnail []byte  `bun:"media_thumbnail"`
	MediaState     *string `bun:"media_state"`
	MediaError     *string `bun:"media_error"`
}

// PendingReceipt is a receipt that arrived before its message
// (whatsapp_pending_receipts); the persister applies it when the message
// lands.
type PendingReceipt struct {
	bun.BaseModel `bun:"table:whatsapp_pending_receipts"`

	MentoradoID int64     `bun:"mentorado_id,pk"`
	WAMessageID string    `bun:"wa_message_id,pk"`
	Status      string    `bun:"status,notnull"`
	StatusRank  int16     `bun:"status_rank,notnull"`
	ReceivedAt  time.Time `bun:"received_at,notnull"`
}

// PendingMedia is a media event that arrived before its message
// (whatsapp_pending_media); the persister applies it when the message
// lands.
type PendingMedia struct {
	bun.BaseModel `bun:"table:whatsapp_pending_media"`

	MentoradoID int64     `bun:"mentorado_id,pk"`
	WAMessageID string    `bun:"wa_message_id,pk"`
	State       string    `bun:"state,notnull"`
	StateRank   int16     `bun:"state_rank,notnull"`
	MediaSize   *int64    `bun:"media_size"`
	MediaError  *string   `bun:"media_error"`
	ReceivedAt  time.Time `bun:"received_at,notnull"`
}

// Contact is a WhatsApp contact of a mentorado (whatsapp_contacts); each
// name carries the version of the fact that set it.
type Contact struct {
	bun.BaseModel `bun:"table:whatsapp_contacts"`

	ID              int64      `bun:"id,pk,autoincrement"`
	MentoradoID     int64      `bun:"mentorado_id,notnull"`
	JID             string     `bun:"jid,notnull"`
	Phone           *string    `bun:"phone"`
	LID             *string    `bun:"lid"`
	Name            string     `bun:"name,notnull"`
	NameAt          *time.Time `bun:"name_at"`
	NameSeq         int64      `bun:"name_seq,notnull"`
	PushName        string     `bun:"push_name,notnull"`
	PushNameAt      *time.Time `bun:"push_name_at"`
	PushNameSeq     int64      `bun:"push_name_seq,notnull"`
	BusinessName    string     `bun:"business_name,notnull"`
	BusinessNameAt  *time.Time `bun:"business_name_at"`
	BusinessNameSeq int64      `bun:"business_name_seq,notnull"`
	UpdatedAt       time.Time  `bun:"updated_at,notnull"`
}

// LIDPhone is a learned WhatsApp LID → phone mapping (whatsapp_lid_phones),
// private to the persister's merges; first mapping wins.
type LIDPhone struct {
	bun.BaseModel `bun:"table:whatsapp_lid_phones"`

	MentoradoID int64     `bun:"mentorado_id,pk"`
	LID         string    `bun:"lid,pk"`
	Phone       string    `bun:"phone,notnull"`
	CreatedAt   time.Time `bun:"created_at,notnull"`
}

// models lists every model, for the schema test.
var models = []any{(*Mentorado)(nil), (*Device)(nil), (*Lead)(nil), (*Message)(nil),
	(*PendingReceipt)(nil), (*PendingMedia)(nil), (*Contact)(nil), (*LIDPhone)(nil)}
