package event

import (
	"errors"
	"fmt"
	"time"
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
