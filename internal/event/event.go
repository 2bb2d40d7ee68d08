// Package event is zapbus's wire contract: the versioned JSON envelope that
// connectors publish to NATS JetStream, the typed payloads inside it, the
// subjects and the deterministic message ids that make every publish
// idempotent. Backend teams consume exactly these shapes; docs/events.md and
// schema/events/*.json describe them field by field.
//
// The package imports nothing else from zapbus.
package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Version is the envelope version this package writes and accepts.
const Version = 1

// MaxEnvelopeBytes bounds an encoded envelope. WhatsApp text messages are
// limited to 65,536 characters (MaxTextRunes); JSON needs at most 6 bytes
// for one (a control character or U+2028 is written \u00XX; nothing is
// HTML-escaped), so 384 KiB of text plus the envelope's other fields stays
// well under this, and any text within MaxTextRunes fits.
const MaxEnvelopeBytes = 512 * 1024

// MaxTextRunes is the longest message text the connector accepts for sending.
const MaxTextRunes = 65536

// Type names the kind of event in an envelope.
type Type string

// Event types. Connection, message, receipt and contact are stored in the
// WA_EVENTS stream; qr goes to the short-lived WA_QR stream.
const (
	TypeConnection Type = "connection"
	TypeQR         Type = "qr"
	TypeMessage    Type = "message"
	TypeReceipt    Type = "receipt"
	TypeContact    Type = "contact"
	TypeMedia      Type = "media"
	TypeGroup      Type = "group"
	TypeHistory    Type = "history"
	TypeLead       Type = "lead"
	TypeWebhook    Type = "webhook"
	TypeCampaign   Type = "campaign"
	TypeSending    Type = "sending"
)

// registry is the one table of event types: each type with the payload it
// carries and the subject it is published on (stored events on
// wa.<m>.evt.<type>, in WA_EVENTS; qr on wa.<m>.qr, in the short-lived
// WA_QR stream). Types, Valid, Subject and Payload all read it, so a new
// event type is one row here (plus its payload, docs/events.md and its JSON
// Schema).
var registry = []struct {
	typ     Type
	payload func() Payload
	subject func(mentorado int64, t Type) string
}{
	{TypeConnection, func() Payload { return new(Connection) }, EventSubject},
	{TypeQR, func() Payload { return new(QR) }, func(m int64, _ Type) string { return QRSubject(m) }},
	{TypeMessage, func() Payload { return new(Message) }, EventSubject},
	{TypeReceipt, func() Payload { return new(Receipt) }, EventSubject},
	{TypeContact, func() Payload { return new(Contact) }, EventSubject},
	{TypeMedia, func() Payload { return new(MediaDone) }, EventSubject},
	{TypeGroup, func() Payload { return new(Group) }, EventSubject},
	{TypeHistory, func() Payload { return new(HistoryProgress) }, EventSubject},
	{TypeLead, func() Payload { return new(Lead) }, EventSubject},
	{TypeWebhook, func() Payload { return new(Webhook) }, EventSubject},
	{TypeCampaign, func() Payload { return new(Campaign) }, EventSubject},
	{TypeSending, func() Payload { return new(Sending) }, EventSubject},
}

// Types lists every event type.
var Types = func() []Type {
	ts := make([]Type, len(registry))
	for i, r := range registry {
		ts[i] = r.typ
	}
	return ts
}()

// entry finds t in the registry (index -1 when unknown).
func entry(t Type) int {
	for i, r := range registry {
		if r.typ == t {
			return i
		}
	}
	return -1
}

// Valid reports whether t is a known event type.
func (t Type) Valid() bool { return entry(t) >= 0 }

// Envelope wraps every event. ID is deterministic for the thing it describes
// and doubles as the JetStream Nats-Msg-Id, so a retried publish is dropped.
type Envelope struct {
	V           int             `json:"v"`
	ID          string          `json:"id"`
	Type        Type            `json:"type"`
	MentoradoID int64           `json:"mentorado_id"`
	OccurredAt  time.Time       `json:"occurred_at"`
	Data        json.RawMessage `json:"data"`
	// Provider is the provider that published the event (issue #16):
	// meta, whatsapp_web or zapi. Empty from publishers before issue #16
	// and from zapbus's own events (lead, webhook, campaign, sending).
	Provider Provider `json:"provider,omitempty"`
}

// Payload is implemented by the typed payloads.
type Payload interface {
	EventType() Type
	Validate() error
}

// New builds an envelope around payload p after validating it.
func New(mentorado int64, id string, occurredAt time.Time, p Payload) (Envelope, error) {
	if mentorado <= 0 {
		return Envelope{}, invalid("mentorado_id", "must be positive")
	}
	if id == "" {
		return Envelope{}, missing("id")
	}
	clean(p)
	if err := p.Validate(); err != nil {
		return Envelope{}, err
	}
	data, err := marshal(p)
	if err != nil {
		return Envelope{}, fmt.Errorf("event: encode %s: %w", p.EventType(), err)
	}
	return Envelope{
		V:           Version,
		ID:          Clean(id),
		Type:        p.EventType(),
		MentoradoID: mentorado,
		OccurredAt:  occurredAt.UTC().Truncate(time.Millisecond),
		Data:        data,
	}, nil
}

// Encode returns the JSON form of the envelope, refusing oversized results.
func (e Envelope) Encode() ([]byte, error) {
	b, err := marshal(e)
	if err != nil {
		return nil, fmt.Errorf("event: encode envelope: %w", err)
	}
	if len(b) > MaxEnvelopeBytes {
		return nil, &Error{Kind: ErrTooLarge, Msg: fmt.Sprintf("%d bytes, limit %d", len(b), MaxEnvelopeBytes)}
	}
	return b, nil
}

// Subject is where the envelope is published.
func (e Envelope) Subject() string {
	if i := entry(e.Type); i >= 0 {
		return registry[i].subject(e.MentoradoID, e.Type)
	}
	return EventSubject(e.MentoradoID, e.Type)
}

// Decode parses and validates an envelope and its payload: unknown versions,
// unknown types, missing fields and oversized input are rejected with *Error.
func Decode(b []byte) (Envelope, Payload, error) {
	if len(b) > MaxEnvelopeBytes {
		return Envelope{}, nil, &Error{Kind: ErrTooLarge, Msg: fmt.Sprintf("%d bytes, limit %d", len(b), MaxEnvelopeBytes)}
	}
	var raw struct {
		V           *int            `json:"v"`
		ID          string          `json:"id"`
		Type        Type            `json:"type"`
		MentoradoID int64           `json:"mentorado_id"`
		OccurredAt  *time.Time      `json:"occurred_at"`
		Data        json.RawMessage `json:"data"`
		Provider    Provider        `json:"provider"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return Envelope{}, nil, &Error{Kind: ErrMalformed, Msg: err.Error()}
	}
	switch {
	case raw.V == nil:
		return Envelope{}, nil, missing("v")
	case *raw.V != Version:
		return Envelope{}, nil, &Error{Kind: ErrUnsupportedVersion, Field: "v", Msg: fmt.Sprintf("version %d, this build reads %d", *raw.V, Version)}
	case raw.ID == "":
		return Envelope{}, nil, missing("id")
	case raw.Type == "":
		return Envelope{}, nil, missing("type")
	case !raw.Type.Valid():
		return Envelope{}, nil, &Error{Kind: ErrUnknownType, Field: "type", Msg: fmt.Sprintf("%q", raw.Type)}
	case raw.MentoradoID <= 0:
		return Envelope{}, nil, invalid("mentorado_id", "must be a positive integer")
	case raw.OccurredAt == nil || raw.OccurredAt.IsZero():
		return Envelope{}, nil, missing("occurred_at")
	case len(raw.Data) == 0 || bytes.Equal(raw.Data, []byte("null")):
		return Envelope{}, nil, missing("data")
	case raw.Provider != "" && !raw.Provider.Valid():
		return Envelope{}, nil, invalid("provider", fmt.Sprintf("%q, want meta, whatsapp_web or zapi", raw.Provider))
	}
	env := Envelope{V: *raw.V, ID: raw.ID, Type: raw.Type, MentoradoID: raw.MentoradoID, OccurredAt: *raw.OccurredAt, Data: raw.Data, Provider: raw.Provider}
	p, err := env.Payload()
	if err != nil {
		return Envelope{}, nil, err
	}
	return env, p, nil
}

// Payload decodes, cleans (see Clean) and validates the typed payload of
// the envelope.
func (e Envelope) Payload() (Payload, error) {
	i := entry(e.Type)
	if i < 0 {
		return nil, &Error{Kind: ErrUnknownType, Field: "type", Msg: fmt.Sprintf("%q", e.Type)}
	}
	p := registry[i].payload()
	dec := json.NewDecoder(bytes.NewReader(e.Data))
	if err := dec.Decode(p); err != nil {
		return nil, &Error{Kind: ErrMalformed, Field: "data", Msg: err.Error()}
	}
	clean(p)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}
