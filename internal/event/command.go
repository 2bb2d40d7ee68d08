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
)

// Verbs lists every verb.
var Verbs = []Verb{VerbConnect, VerbDisconnect, VerbLogout, VerbStatus, VerbSend}

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
type SendRequest struct {
	ClientID string `json:"client_id,omitempty"`
	Phone    string `json:"phone"`
	Text     string `json:"text"`
}

// MaxClientIDRunes bounds SendRequest.ClientID, in characters.
const MaxClientIDRunes = 128

// Validate checks the send rules the contract sets on the text and the
// client id (CheckSendText, then CheckClientID): the notifier answers with
// them before any round trip and the connector checks them again on the
// command it receives. The phone is normalised by the caller
// (internal/phone), which this package cannot import.
func (r SendRequest) Validate() *CommandError {
	if ce := CheckSendText(r.Text); ce != nil {
		return ce
	}
	return CheckClientID(r.ClientID)
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
)

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
