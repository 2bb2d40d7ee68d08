// Package sendkv is the scheme of WA_SENDS (bus.BucketSends), the KV
// bucket that makes send commands idempotent by client_id: the key of a
// client id and the record kept under it. The connector and the provider
// gateway (issue #16) both write it, so a client_id retried after the
// mentorado moved between providers still answers with the first send.
package sendkv

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/zapbus/zapbus/internal/event"
)

// States of a record.
const (
	Pending = "pending" // reserved before the send; nothing answered yet
	Sent    = "sent"    // the provider took it; Message is the answer
)

// Record is what WA_SENDS keeps per client id. ClientID is the id as the
// client sent it: the key is only its digest.
type Record struct {
	ClientID string         `json:"client_id"`
	State    string         `json:"state"` // pending | sent
	WAID     string         `json:"wa_id"`
	Message  *event.Message `json:"message,omitempty"`
}

// Key is <mentorado>.<sha256 hex of the client id>: any printable id
// makes a valid KV key, and distinct ids never share one.
func Key(m int64, clientID string) string {
	h := sha256.Sum256([]byte(clientID))
	return fmt.Sprintf("%d.%s", m, hex.EncodeToString(h[:]))
}

// ActionKey is the key of an action's client id (react, edit, revoke):
// its own namespace per verb, so a send and a reaction with the same
// client id do not answer for each other. recordID is what the record's
// ClientID holds.
func ActionKey(m int64, verb event.Verb, clientID string) (key, recordID string) {
	recordID = string(verb) + ":" + clientID
	return Key(m, recordID), recordID
}

// Mentorado is the mentorado a key belongs to (0 when it is not a key).
func Mentorado(key string) int64 {
	s, _, _ := strings.Cut(key, ".")
	m, _ := strconv.ParseInt(s, 10, 64)
	return m
}
