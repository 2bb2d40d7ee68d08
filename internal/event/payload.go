package event

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Status is a WhatsApp session state, as carried by connection events.
type Status string

// Session states.
const (
	StatusDisconnected Status = "disconnected"
	StatusConnecting   Status = "connecting"
	StatusQR           Status = "qr"
	StatusPairing      Status = "pairing"
	StatusConnected    Status = "connected"
	StatusBackoff      Status = "backoff"
	StatusLoggedOut    Status = "logged_out"
	StatusConflict     Status = "conflict"
	StatusBanned       Status = "banned"
)

// Statuses lists every session state.
var Statuses = []Status{StatusDisconnected, StatusConnecting, StatusQR, StatusPairing, StatusConnected, StatusBackoff, StatusLoggedOut, StatusConflict, StatusBanned}

// Valid reports whether s is a known state.
func (s Status) Valid() bool { return slices.Contains(Statuses, s) }

// Connection reports a change of session state.
type Connection struct {
	Status  Status     `json:"status"`
	Phone   string     `json:"phone,omitempty"`    // E.164 digits of the paired number, when known
	JID     string     `json:"jid,omitempty"`      // device JID, when paired
	Reason  string     `json:"reason,omitempty"`   // why the state changed, e.g. "stream error 515"
	Attempt int        `json:"attempt,omitempty"`  // reconnect attempt number in backoff
	RetryAt *time.Time `json:"retry_at,omitempty"` // next attempt (backoff) or ban expiry (banned)
	// Connector is the id of the connector process that holds the session
	// (the operator console's "owning connector"); empty from publishers
	// before issue #13.
	Connector string `json:"connector,omitempty"`
}

func (*Connection) EventType() Type { return TypeConnection }

func (c *Connection) Validate() error {
	if c.Status == "" {
		return missing("data.status")
	}
	if !c.Status.Valid() {
		return invalid("data.status", fmt.Sprintf("%q", c.Status))
	}
	if c.Attempt < 0 {
		return invalid("data.attempt", "negative")
	}
	return checkPhone("data.phone", c.Phone)
}

// QR carries a pairing secret: a QR code to render, or a phone pairing code
// to type on the phone. Exactly one is set. These are secrets: they live a
// minute at most and are never logged.
type QR struct {
	Code        string    `json:"code,omitempty"`
	PairingCode string    `json:"pairing_code,omitempty"`
	ExpiresAt   time.Time `json:"expires_at"`
}

func (*QR) EventType() Type { return TypeQR }

func (q *QR) Validate() error {
	if (q.Code == "") == (q.PairingCode == "") {
		return invalid("data", "exactly one of code and pairing_code must be set")
	}
	if q.ExpiresAt.IsZero() {
		return missing("data.expires_at")
	}
	return nil
}

// Direction tells whether a message was received or sent by the mentorado.
type Direction string

// Message directions.
const (
	DirectionIn  Direction = "in"
	DirectionOut Direction = "out"
)

// Kind is the content type of a message.
type Kind string

// Message kinds.
const (
	KindText     Kind = "text"
	KindImage    Kind = "image"
	KindVideo    Kind = "video"
	KindAudio    Kind = "audio"
	KindPTT      Kind = "ptt" // voice note (push to talk): OGG/Opus audio
	KindDocument Kind = "document"
	KindSticker  Kind = "sticker"
	KindLocation Kind = "location"
	KindContact  Kind = "contact"
	KindReaction Kind = "reaction"
	KindEdit     Kind = "edit"
	KindRevoke   Kind = "revoke"
	KindPoll     Kind = "poll"
	KindOther    Kind = "other"
	// KindTemplate is a Meta message template sent through the Cloud API
	// (issue #16); Text holds Template.Text().
	KindTemplate Kind = "template"
)

// Kinds lists every message kind.
var Kinds = []Kind{KindText, KindImage, KindVideo, KindAudio, KindPTT, KindDocument, KindSticker, KindLocation, KindContact, KindReaction, KindEdit, KindRevoke, KindPoll, KindOther, KindTemplate}

// MessageStatus is the delivery state of a message. Outbound messages move
// pending → sent → delivered → read → played, never backwards; failed is
// terminal. Inbound messages are received, then read once read on a device.
// A send accepted while the session could not send it at once is queued
// (the outbox), then sent, or expired (its TTL passed) or failed (e.g. the
// user disconnected): both terminal, with StatusReason saying why.
type MessageStatus string

// Message statuses.
const (
	MessagePending   MessageStatus = "pending"
	MessageSent      MessageStatus = "sent"
	MessageReceived  MessageStatus = "received"
	MessageDelivered MessageStatus = "delivered"
	MessageRead      MessageStatus = "read"
	MessagePlayed    MessageStatus = "played"
	MessageFailed    MessageStatus = "failed"
	MessageQueued    MessageStatus = "queued"
	MessageExpired   MessageStatus = "expired"
)

// Rank orders statuses; a status may only replace one of lower rank.
// Failed outranks everything, so it is terminal.
func (s MessageStatus) Rank() int {
	switch s {
	case MessagePending, MessageQueued:
		return 0
	case MessageSent, MessageReceived:
		return 1
	case MessageDelivered:
		return 2
	case MessageRead:
		return 3
	case MessagePlayed:
		return 4
	case MessageFailed, MessageExpired:
		return 9
	}
	return -1
}

// Message is a WhatsApp message received or sent by the mentorado's number,
// including those sent from the phone itself.
type Message struct {
	WAID      string        `json:"wa_id"`               // WhatsApp message id
	ChatJID   string        `json:"chat_jid"`            // conversation JID
	SenderJID string        `json:"sender_jid"`          // author JID (the mentorado's own for outbound)
	Phone     string        `json:"phone,omitempty"`     // counterpart's E.164 digits, when known
	LID       string        `json:"lid,omitempty"`       // counterpart's LID, when known
	PushName  string        `json:"push_name,omitempty"` // counterpart's self-chosen name (inbound)
	Direction Direction     `json:"direction"`
	Kind      Kind          `json:"kind"`
	Text      string        `json:"text,omitempty"`        // body, reaction emoji, or new text of an edit
	Caption   string        `json:"caption,omitempty"`     // media caption
	ReplyToID string        `json:"reply_to_id,omitempty"` // quoted message id
	TargetID  string        `json:"target_id,omitempty"`   // message a reaction, edit or revoke applies to
	Media     *Media        `json:"media,omitempty"`       // image, video, audio, ptt, document, sticker
	Timestamp time.Time     `json:"timestamp"`
	Status    MessageStatus `json:"status"`
	// History is set on messages imported from the phone's history sync
	// (the same id as if seen live: stored once either way).
	History *History `json:"history,omitempty"`
	// Outbound messages sent through zapbus: the client_id of the send
	// request, the campaign that sent it, and why it failed or expired.
	ClientID     string `json:"client_id,omitempty"`
	CampaignID   int64  `json:"campaign_id,omitempty"`
	StatusReason string `json:"status_reason,omitempty"`
}

// MediaKinds are the message kinds that carry a file.
var MediaKinds = []Kind{KindImage, KindVideo, KindAudio, KindPTT, KindDocument, KindSticker}

// IsMedia reports whether messages of kind k carry a file.
func (k Kind) IsMedia() bool { return slices.Contains(MediaKinds, k) }

// MaxThumbnailBytes bounds the inline JPEG thumbnail a message event
// carries; a larger one is dropped (the file itself is still fetched).
const MaxThumbnailBytes = 64 * 1024

// Media describes the file of a media message. It never carries what
// decrypts the file on WhatsApp's servers (media key, direct path, URL):
// those stay in the connector's download queue (docs/decisions/0011-media.md).
// The bytes arrive later: a media event with state stored or failed follows
// the message event.
type Media struct {
	// ID is the file's id in the mentorado's media store: the lowercase hex
	// SHA-256 of the plaintext (WhatsApp's FileSHA256), so one file is
	// stored once per mentorado however often it is sent or replayed.
	ID        string `json:"id"`
	MIME      string `json:"mime"`
	Size      int64  `json:"size,omitempty"`      // bytes, as announced by the sender
	FileName  string `json:"file_name,omitempty"` // documents
	Seconds   int    `json:"seconds,omitempty"`   // audio and video duration
	Width     int    `json:"width,omitempty"`
	Height    int    `json:"height,omitempty"`
	Round     bool   `json:"round,omitempty"`     // round video note (WhatsApp "PTV")
	Thumbnail []byte `json:"thumbnail,omitempty"` // inline JPEG preview, base64 in JSON
}

// Validate checks a media description.
func (md *Media) Validate() error {
	switch {
	case !IsMediaID(md.ID):
		return invalid("data.media.id", "want 64 lowercase hex digits (sha256)")
	case md.MIME == "":
		return missing("data.media.mime")
	case md.Size < 0:
		return invalid("data.media.size", "negative")
	case len(md.Thumbnail) > MaxThumbnailBytes:
		return invalid("data.media.thumbnail", "too large")
	}
	return nil
}

// IsMediaID reports whether id is a media id: 64 lowercase hex digits.
func IsMediaID(id string) bool {
	if len(id) != 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// MediaState is what became of a media message's file.
type MediaState string

// Media states. Pending is the state of a media message before its media
// event; it never appears in a media event.
const (
	MediaPending MediaState = "pending"
	MediaStored  MediaState = "stored"
	MediaFailed  MediaState = "failed"
)

// MediaDone reports that a media message's file was stored in the media
// store, or could not be and never will be (Reason says why). It follows
// the message event (wa.<m>.evt.media); exactly one is published per
// message.
type MediaDone struct {
	WAID    string     `json:"wa_id"`    // the media message
	ChatJID string     `json:"chat_jid"` // its conversation
	State   MediaState `json:"state"`    // stored | failed
	MediaID string     `json:"media_id"` // sha256 hex of the file
	MIME    string     `json:"mime,omitempty"`
	Size    int64      `json:"size,omitempty"`   // stored bytes
	Reason  string     `json:"reason,omitempty"` // failed: why
}

func (*MediaDone) EventType() Type { return TypeMedia }

func (d *MediaDone) Validate() error {
	switch {
	case d.WAID == "":
		return missing("data.wa_id")
	case d.ChatJID == "":
		return missing("data.chat_jid")
	case d.State != MediaStored && d.State != MediaFailed:
		return invalid("data.state", fmt.Sprintf("%q, want stored or failed", d.State))
	case !IsMediaID(d.MediaID):
		return invalid("data.media_id", "want 64 lowercase hex digits (sha256)")
	case d.State == MediaFailed && d.Reason == "":
		return missing("data.reason")
	case d.Size < 0:
		return invalid("data.size", "negative")
	}
	return nil
}

func (*Message) EventType() Type { return TypeMessage }

func (m *Message) Validate() error {
	switch {
	case m.WAID == "":
		return missing("data.wa_id")
	case m.ChatJID == "":
		return missing("data.chat_jid")
	case m.SenderJID == "":
		return missing("data.sender_jid")
	case m.Direction != DirectionIn && m.Direction != DirectionOut:
		return invalid("data.direction", fmt.Sprintf("%q, want in or out", m.Direction))
	case !slices.Contains(Kinds, m.Kind):
		return invalid("data.kind", fmt.Sprintf("%q", m.Kind))
	case m.Timestamp.IsZero():
		return missing("data.timestamp")
	case m.Status.Rank() < 0:
		return invalid("data.status", fmt.Sprintf("%q", m.Status))
	case utf8.RuneCountInString(m.Text) > MaxTextRunes:
		return invalid("data.text", "too long")
	case (m.Kind == KindEdit || m.Kind == KindRevoke || m.Kind == KindReaction) && m.TargetID == "":
		return missing("data.target_id")
	case m.Media != nil && !m.Kind.IsMedia():
		return invalid("data.media", fmt.Sprintf("set on a %s message", m.Kind))
	}
	if m.Media != nil {
		if err := m.Media.Validate(); err != nil {
			return err
		}
	}
	if m.History != nil {
		if err := m.History.Validate(); err != nil {
			return err
		}
	}
	return checkPhone("data.phone", m.Phone)
}

// ReceiptKind is what a receipt says about messages.
type ReceiptKind string

// Receipt kinds.
const (
	ReceiptDelivered ReceiptKind = "delivered"
	ReceiptRead      ReceiptKind = "read"
	ReceiptPlayed    ReceiptKind = "played"
)

// Status is the message status a receipt moves its messages to.
func (k ReceiptKind) Status() MessageStatus {
	switch k {
	case ReceiptDelivered:
		return MessageDelivered
	case ReceiptRead:
		return MessageRead
	case ReceiptPlayed:
		return MessagePlayed
	}
	return ""
}

// Receipt reports that messages were delivered, read or played. FromMe is
// set when one of the mentorado's own devices sent it (they read an inbound
// message on the phone); otherwise the counterpart received or read
// messages the mentorado sent.
type Receipt struct {
	MessageIDs []string    `json:"message_ids"`
	ChatJID    string      `json:"chat_jid"`
	Phone      string      `json:"phone,omitempty"`
	Kind       ReceiptKind `json:"kind"`
	FromMe     bool        `json:"from_me,omitempty"`
	Timestamp  time.Time   `json:"timestamp"`
}

func (*Receipt) EventType() Type { return TypeReceipt }

func (r *Receipt) Validate() error {
	switch {
	case len(r.MessageIDs) == 0:
		return missing("data.message_ids")
	case slices.Contains(r.MessageIDs, ""):
		return invalid("data.message_ids", "empty id")
	case r.ChatJID == "":
		return missing("data.chat_jid")
	case r.Kind.Status() == "":
		return invalid("data.kind", fmt.Sprintf("%q, want delivered, read or played", r.Kind))
	case r.Timestamp.IsZero():
		return missing("data.timestamp")
	}
	return checkPhone("data.phone", r.Phone)
}

// Contact is what the mentorado's account knows about a WhatsApp user.
type Contact struct {
	JID          string `json:"jid"`
	Phone        string `json:"phone,omitempty"`
	LID          string `json:"lid,omitempty"`
	Name         string `json:"name,omitempty"`          // name in the phone's address book
	PushName     string `json:"push_name,omitempty"`     // name the user chose
	BusinessName string `json:"business_name,omitempty"` // verified business name
}

func (*Contact) EventType() Type { return TypeContact }

func (c *Contact) Validate() error {
	if c.JID == "" {
		return missing("data.jid")
	}
	return checkPhone("data.phone", c.Phone)
}

// checkPhone accepts empty or E.164 digits without '+': 8 to 15 digits.
func checkPhone(field, p string) error {
	if p == "" {
		return nil
	}
	if len(p) < 8 || len(p) > 15 {
		return invalid(field, "want 8 to 15 digits")
	}
	for _, r := range p {
		if r < '0' || r > '9' {
			return invalid(field, "want digits only")
		}
	}
	return nil
}

// PlaceText is the text of a location message, the same from every
// provider: its name and address when shared, each on a line of its own,
// then "lat,lng".
func PlaceText(name, address string, lat, lng float64) string {
	var parts []string
	for _, s := range []string{name, address} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	parts = append(parts, strconv.FormatFloat(lat, 'f', -1, 64)+","+strconv.FormatFloat(lng, 'f', -1, 64))
	return strings.Join(parts, "\n")
}
