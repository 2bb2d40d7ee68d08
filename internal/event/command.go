package event

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Verb names a command a connector answers on wa.<mentorado>.cmd.<verb>.
// Commands are NATS request/reply and are not stored.
type Verb string

// Command verbs.
const (
	VerbConnect    Verb = "connect"
	VerbDisconnect Verb = "disconnect"
	VerbLogout     Verb = "logout"
	VerbStatus     Verb = "status"
	VerbSend       Verb = "send"
	VerbReact      Verb = "react"  // ActionRequest: react to a message ("" removes)
	VerbEdit       Verb = "edit"   // ActionRequest: edit one of our own text messages
	VerbRevoke     Verb = "revoke" // ActionRequest: delete a message for everyone
	VerbRead       Verb = "read"   // ReadRequest: send read receipts for a chat
)

// Verbs lists every verb.
var Verbs = []Verb{VerbConnect, VerbDisconnect, VerbLogout, VerbStatus, VerbSend, VerbReact, VerbEdit, VerbRevoke, VerbRead}

// ConnectMethod picks how a new device pairs.
type ConnectMethod string

// Pairing methods.
const (
	ConnectQR    ConnectMethod = "qr"
	ConnectPhone ConnectMethod = "phone"
)

// ConnectRequest is the body of a connect command. Phone is required for the
// phone method (pairing code) and ignored otherwise.
type ConnectRequest struct {
	Method ConnectMethod `json:"method"`
	Phone  string        `json:"phone,omitempty"`
}

// SendRequest is the body of a send command. ClientID, when set, makes the
// command idempotent: a retried request with the same ClientID does not send
// twice and gets the same message back.
//
// Kind is text (the default, Text required) or a media kind (MediaKinds:
// MediaID names a file the mentorado uploaded to the media store; Caption
// for image, video and document; FileName for documents). ReplyTo quotes a
// stored message of the same chat (its WhatsApp id); the notifier resolves
// it to ReplyToChat/ReplyToSender/ReplyToText before the command.
type SendRequest struct {
	ClientID string `json:"client_id,omitempty"`
	Phone    string `json:"phone,omitempty"`
	// Chat addresses the message to a chat JID instead of a phone: a LID
	// (<digits>@lid, a contact known only by LID) or a group (<id>@g.us).
	// Exactly one of Phone and Chat is set; the notifier turns a phone
	// JID given as chat into Phone.
	Chat     string `json:"chat,omitempty"`
	Kind     Kind   `json:"kind,omitempty"`
	Text     string `json:"text,omitempty"`
	MediaID  string `json:"media_id,omitempty"`
	Caption  string `json:"caption,omitempty"`
	FileName string `json:"file_name,omitempty"`
	ReplyTo  string `json:"reply_to,omitempty"`
	// Template is the Meta message template of a template send (Kind
	// template): the only kind Meta delivers outside the 24-hour window.
	// Other providers answer not_supported.
	Template *Template `json:"template,omitempty"`
	// TTLSeconds bounds how long the send may wait in the outbox (queued)
	// before it expires; 0 means the mentorado's default.
	TTLSeconds int `json:"ttl_seconds,omitempty"`

	// Resolved by the notifier from the stored message ReplyTo names.
	ReplyToSender string `json:"reply_to_sender,omitempty"` // author JID of the quoted message
	ReplyToText   string `json:"reply_to_text,omitempty"`   // its text or caption, shown in the quote
	ReplyToKind   Kind   `json:"reply_to_kind,omitempty"`
}

// ActionRequest is the body of react, edit and revoke commands: an action
// on a stored message (MessageID, its WhatsApp id) of chat ChatJID, sent by
// SenderJID; FromMe when the mentorado sent it. The notifier fills these
// from the message row, which also proves the message belongs to the
// mentorado. Emoji is the reaction ("" removes ours); Text the new text of
// an edit. ClientID makes the command idempotent like a send.
type ActionRequest struct {
	ClientID  string    `json:"client_id,omitempty"`
	MessageID string    `json:"message_id"`
	ChatJID   string    `json:"chat_jid"`
	SenderJID string    `json:"sender_jid,omitempty"`
	FromMe    bool      `json:"from_me,omitempty"`
	SentAt    time.Time `json:"sent_at"`
	Emoji     string    `json:"emoji,omitempty"`
	Text      string    `json:"text,omitempty"`
}

// EditWindow is how long after sending WhatsApp accepts an edit of a
// message (15 minutes in the official clients); edits later are refused.
const EditWindow = 15 * time.Minute

// ReadRequest is the body of a read command: send read receipts for the
// unread inbound messages of one chat (the notifier lists them).
type ReadRequest struct {
	ChatJID  string    `json:"chat_jid"`
	Messages []ReadRef `json:"messages"`
}

// ReadRef is one message to mark read: its id and author.
type ReadRef struct {
	ID        string    `json:"id"`
	SenderJID string    `json:"sender_jid"`
	SentAt    time.Time `json:"sent_at"`
}

// MaxClientIDRunes bounds SendRequest.ClientID, in characters.
const MaxClientIDRunes = 128

// Validate checks the send rules the contract sets on the text and the
// client id (CheckSendText, then CheckClientID): the notifier answers with
// them before any round trip and the connector checks them again on the
// command it receives. The phone is normalised by the caller
// (internal/phone), which this package cannot import.
func (r SendRequest) Validate() *CommandError {
	switch {
	case r.Phone != "" && r.Chat != "":
		return NewCommandError(CodeBadRequest, "give phone or chat, not both")
	case r.Chat != "" && KindOfChat(r.Chat) == "":
		return NewCommandError(CodeInvalidChat, "chat must be a phone JID (<digits>@s.whatsapp.net), a LID (<digits>@lid) or a group (<id>@g.us)")
	}
	if r.Template != nil && r.Kind != KindTemplate {
		return NewCommandError(CodeBadRequest, "template is for kind template")
	}
	switch {
	case r.Kind == "" || r.Kind == KindText:
		if r.MediaID != "" || r.Caption != "" || r.FileName != "" {
			return NewCommandError(CodeBadRequest, "media_id, caption and file_name are for media kinds")
		}
		if ce := CheckSendText(r.Text); ce != nil {
			return ce
		}
	case r.Kind == KindTemplate:
		if r.Template == nil {
			return NewCommandError(CodeBadRequest, "a template send needs template {name, language, params}")
		}
		if r.Text != "" || r.MediaID != "" || r.Caption != "" || r.FileName != "" {
			return NewCommandError(CodeBadRequest, "a template send has only template")
		}
		if ce := r.Template.Validate(); ce != nil {
			return ce
		}
	case r.Kind.IsMedia():
		if r.Text != "" {
			return NewCommandError(CodeBadRequest, "a %s message has no text; use caption", r.Kind)
		}
		if !IsMediaID(r.MediaID) {
			return NewCommandError(CodeBadRequest, "media_id must be the id POST /v1/media returned")
		}
		if r.Caption != "" && r.Kind != KindImage && r.Kind != KindVideo && r.Kind != KindDocument {
			return NewCommandError(CodeBadRequest, "a %s message has no caption", r.Kind)
		}
		if r.FileName != "" && r.Kind != KindDocument {
			return NewCommandError(CodeBadRequest, "file_name is for documents")
		}
		if ce := checkOptionalText("caption", r.Caption, MaxCaptionRunes); ce != nil {
			return ce
		}
		if ce := checkOptionalText("file_name", r.FileName, MaxFileNameRunes); ce != nil {
			return ce
		}
	default:
		return NewCommandError(CodeBadRequest, "kind %q cannot be sent; want text, template or one of image, video, audio, ptt, document, sticker", r.Kind)
	}
	if ce := checkOptionalText("reply_to", r.ReplyTo, MaxClientIDRunes); ce != nil {
		return ce
	}
	if r.TTLSeconds < 0 || r.TTLSeconds > MaxTTLSeconds {
		return NewCommandError(CodeTTL, "ttl_seconds must be 1 to %d (or 0 for the default)", MaxTTLSeconds)
	}
	return CheckClientID(r.ClientID)
}

// MaxCaptionRunes bounds a media caption (WhatsApp shows 1,024).
const MaxCaptionRunes = 4096

// MaxFileNameRunes bounds a document's file name.
const MaxFileNameRunes = 255

// Validate checks the fields an action needs for verb v.
func (r ActionRequest) Validate(v Verb) *CommandError {
	switch {
	case r.MessageID == "" || r.ChatJID == "":
		return NewCommandError(CodeBadRequest, "message_id and chat_jid are required")
	case v == VerbEdit:
		if !r.FromMe {
			return NewCommandError(CodeNotEditable, "only messages you sent can be edited")
		}
		if ce := CheckSendText(r.Text); ce != nil {
			return ce
		}
	case v == VerbReact:
		if utf8.RuneCountInString(r.Emoji) > 16 || !utf8.ValidString(r.Emoji) || strings.ContainsAny(r.Emoji, " \t\n\x00") {
			return NewCommandError(CodeBadRequest, "emoji must be one emoji or empty")
		}
	case v == VerbRevoke:
	default:
		return NewCommandError(CodeBadRequest, "verb %q takes no action request", v)
	}
	return CheckClientID(r.ClientID)
}

func checkOptionalText(field, s string, max int) *CommandError {
	switch {
	case !utf8.ValidString(s):
		return NewCommandError(CodeBadRequest, "%s must be valid UTF-8", field)
	case strings.IndexByte(s, 0) >= 0:
		return NewCommandError(CodeBadRequest, "%s must not contain NUL (U+0000)", field)
	case utf8.RuneCountInString(s) > max:
		return NewCommandError(CodeBadRequest, "%s longer than %d characters", field, max)
	}
	return nil
}

// CheckClientID accepts an empty client id or up to MaxClientIDRunes
// printable characters (any script; spaces, dots, ':', '+', '@' included).
func CheckClientID(id string) *CommandError {
	switch {
	case !utf8.ValidString(id):
		return NewCommandError(CodeBadRequest, "client_id must be valid UTF-8")
	case utf8.RuneCountInString(id) > MaxClientIDRunes:
		return NewCommandError(CodeBadRequest, "client_id longer than %d characters", MaxClientIDRunes)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return NewCommandError(CodeBadRequest, "client_id must be printable characters (found %U)", r)
		}
	}
	return nil
}

// CheckSendText accepts a text to send: not blank, valid UTF-8, no NUL
// (U+0000, which no consumer can store), at most MaxTextRunes characters.
// Any such text fits in a message event (see MaxEnvelopeBytes).
func CheckSendText(text string) *CommandError {
	if strings.TrimSpace(text) == "" {
		return NewCommandError(CodeBadRequest, "text must not be empty")
	}
	if n := utf8.RuneCountInString(text); n > MaxTextRunes {
		return NewCommandError(CodeTextTooLong, "text has %d characters, limit %d", n, MaxTextRunes)
	}
	switch {
	case !utf8.ValidString(text):
		return NewCommandError(CodeBadRequest, "text must be valid UTF-8")
	case strings.IndexByte(text, 0) >= 0:
		return NewCommandError(CodeBadRequest, "text must not contain NUL (U+0000)")
	}
	return nil
}

// StatusReply describes a session.
type StatusReply struct {
	Status      Status     `json:"status"`
	Phone       string     `json:"phone,omitempty"`
	JID         string     `json:"jid,omitempty"`
	Since       time.Time  `json:"since"`
	Reason      string     `json:"reason,omitempty"`
	PairingCode string     `json:"pairing_code,omitempty"` // only in the reply to a phone connect
	RetryAt     *time.Time `json:"retry_at,omitempty"`
}

// Reply is the response to every command: Error is set on failure;
// otherwise Status (connect, disconnect, logout, status) or Message (send).
type Reply struct {
	Error   *CommandError `json:"error,omitempty"`
	Status  *StatusReply  `json:"status,omitempty"`
	Message *Message      `json:"message,omitempty"`
}

// Command error codes, stable for clients.
const (
	CodeNotConnected  = "not_connected"
	CodeNotOnWhatsApp = "not_on_whatsapp"
	CodeInvalidPhone  = "invalid_phone"
	CodeTextTooLong   = "text_too_long"
	CodeNotOwner      = "not_owner"
	CodeBadRequest    = "bad_request"
	CodeAlreadyPaired = "already_paired"
	CodeUnavailable   = "unavailable"
	CodeUnknown       = "unknown_mentorado"
	CodeDisabled      = "mentorado_disabled"
	CodeInternal      = "internal"

	CodeMediaNotFound  = "media_not_found"   // media_id names no file of this mentorado
	CodeMediaType      = "unsupported_media" // the file's type does not fit the kind (e.g. ptt not OGG/Opus)
	CodeMediaTooLarge  = "media_too_large"   // over the kind's size limit
	CodeNotEditable    = "not_editable"      // not our text message
	CodeEditExpired    = "edit_window_expired"
	CodeMessageUnknown = "message_not_found"

	CodeInvalidChat = "invalid_chat" // chat is not a phone JID, LID or group JID
	CodeNotInGroup  = "not_in_group" // the mentorado's number left (or is not in) the group

	CodeDailyCap = "daily_cap_reached" // the mentorado's daily cap of unsolicited sends is used up
	CodeTTL      = "invalid_ttl"       // ttl_seconds out of range

	// Providers (issue #16).
	CodeOutsideWindow = "outside_window"          // Meta: no message from this chat in the last 24 h; only a template may be sent
	CodeRateLimited   = "rate_limited"            // the provider refused for rate; retry later (Retry-After when it said)
	CodeNotSupported  = "not_supported"           // the active provider cannot do this (e.g. edit on Meta)
	CodeProviderError = "provider_error"          // the provider answered an error that is not ours to fix
	CodeNoProvider    = "provider_not_configured" // the mentorado has no configured provider of this kind
	CodeWrongProvider = "wrong_provider"          // the command reached a driver that is not the mentorado's active provider
)

// MaxTTLSeconds bounds SendRequest.TTLSeconds (7 days).
const MaxTTLSeconds = 7 * 24 * 3600

// CommandError is a typed command failure.
type CommandError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *CommandError) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is matches command errors by code, so errors.Is(err, &CommandError{Code: CodeNotConnected}) works.
func (e *CommandError) Is(target error) bool {
	var t *CommandError
	return errors.As(target, &t) && t.Code == e.Code
}

// NewCommandError builds a CommandError.
func NewCommandError(code, format string, args ...any) *CommandError {
	return &CommandError{Code: code, Message: fmt.Sprintf(format, args...)}
}
