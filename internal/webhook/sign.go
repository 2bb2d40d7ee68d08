package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every signing secret (Standard Webhooks).
const SecretPrefix = "whsec_"

// Standard Webhooks headers.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// ErrBadSecret: a secret that is not whsec_ + base64.
var ErrBadSecret = errors.New("webhook: secret is not whsec_ followed by base64")

// DeliveryID is the webhook-id of the event with envelope id envelopeID:
// "msg_" + 32 hex digits of its SHA-256. It is the same on every attempt,
// redelivery, endpoint and dispatcher, so receivers dedupe on it; the
// envelope id itself stays inside the signed body.
func DeliveryID(envelopeID string) string {
	h := sha256.Sum256([]byte(envelopeID))
	return "msg_" + hex.EncodeToString(h[:16])
}

// SecretKey decodes a whsec_ secret into the HMAC key.
func SecretKey(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil || len(key) == 0 {
		return nil, ErrBadSecret
	}
	return key, nil
}

// Sign returns the Standard Webhooks signature "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>" under secret (whsec_…).
func Sign(secret string, id string, ts time.Time, body []byte) (string, error) {
	key, err := SecretKey(secret)
	if err != nil {
		return "", err
	}
	return signKey(key, id, ts.Unix(), body), nil
}

func signKey(key []byte, id string, unix int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write(strconv.AppendInt(nil, unix, 10))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// NewSecret returns a fresh signing secret: whsec_ + base64 of 32 random
// bytes.
func NewSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("webhook: secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(b), nil
}
