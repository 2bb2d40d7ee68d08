package event

import (
	"errors"
	"fmt"
)

// Error kinds returned (wrapped in *Error) by Decode and Validate; test them
// with errors.Is.
var (
	ErrMalformed          = errors.New("malformed event")
	ErrUnsupportedVersion = errors.New("unsupported event version")
	ErrUnknownType        = errors.New("unknown event type")
	ErrMissingField       = errors.New("missing field")
	ErrInvalidField       = errors.New("invalid field")
	ErrTooLarge           = errors.New("event too large")
)

// Error describes why an envelope or payload was rejected.
type Error struct {
	Kind  error  // one of the Err* values
	Field string // JSON field, when one is at fault
	Msg   string
}

func (e *Error) Error() string {
	switch {
	case e.Field != "" && e.Msg != "":
		return fmt.Sprintf("event: %v: %s: %s", e.Kind, e.Field, e.Msg)
	case e.Field != "":
		return fmt.Sprintf("event: %v: %s", e.Kind, e.Field)
	case e.Msg != "":
		return fmt.Sprintf("event: %v: %s", e.Kind, e.Msg)
	}
	return fmt.Sprintf("event: %v", e.Kind)
}

// Unwrap lets errors.Is match the kind.
func (e *Error) Unwrap() error { return e.Kind }

func missing(field string) error { return &Error{Kind: ErrMissingField, Field: field} }

func invalid(field, msg string) error { return &Error{Kind: ErrInvalidField, Field: field, Msg: msg} }
