// Package secretbox seals provider credentials at rest (issue #16) with
// AES-256-GCM under a keyring read from the environment or a file, and
// supports key rotation: the first key seals, every key opens, and
// `zapbus-admin providers rekey` re-seals what an older key sealed.
//
// A keyring is written "id:base64key[,id:base64key…]": ids are 1 to 32 of
// [A-Za-z0-9_-], keys exactly 32 bytes in standard base64 (Generate makes
// one). Errors name the key id or its position, never key material.
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Environment variables Load reads.
const (
	EnvKeys     = "ZAPBUS_CREDENTIALS_KEYS"
	EnvKeysFile = "ZAPBUS_CREDENTIALS_KEYS_FILE"
)

// KeySize is the size of a key: AES-256.
const KeySize = 32

// NonceSize is the size of the random nonce at the start of sealed data.
const NonceSize = 12

// MaxIDLen bounds a key id.
const MaxIDLen = 32

// Keyring holds the keys: the primary seals, all open.
type Keyring struct {
	primary string
	keys    map[string][]byte
	ids     []string // in the order given, the primary first
}

// ErrNoKey is returned by Load when no key is configured.
var ErrNoKey = errors.New("secretbox: no credentials key configured (ZAPBUS_CREDENTIALS_KEYS or ZAPBUS_CREDENTIALS_KEYS_FILE)")

// ErrUnknownKey is returned by Open for a key id the keyring lacks.
var ErrUnknownKey = errors.New("secretbox: unknown key id")

// ErrOpen is returned by Open when the data does not authenticate: it was
// tampered with, sealed under another key with the same id, or bound to
// another aad.
var ErrOpen = errors.New("secretbox: sealed data does not authenticate (wrong key or aad, or tampered)")

// Load reads the keyring from getenv: ZAPBUS_CREDENTIALS_KEYS, or the file
// ZAPBUS_CREDENTIALS_KEYS_FILE names: "id:base64key[,id:base64key…]", the
// first the primary; each key 32 bytes. Setting both is an error; setting
// neither is ErrNoKey.
func Load(getenv func(string) string) (*Keyring, error) {
	v, file := getenv(EnvKeys), getenv(EnvKeysFile)
	switch {
	case v != "" && file != "":
		return nil, fmt.Errorf("secretbox: set %s or %s, not both", EnvKeys, EnvKeysFile)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			// The path is not a secret; the error says which file.
			return nil, fmt.Errorf("secretbox: %s: %w", EnvKeysFile, err)
		}
		k, err := Parse(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", EnvKeysFile, file, err)
		}
		return k, nil
	case v != "":
		k, err := Parse(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKeys, err)
		}
		return k, nil
	}
	return nil, ErrNoKey
}

// Parse reads a keyring line "id:base64key[,id:base64key…]" (surrounding
// whitespace and newlines, as in a file, are ignored).
func Parse(s string) (*Keyring, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, ErrNoKey
	}
	k := &Keyring{keys: map[string][]byte{}}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		id, b64, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("secretbox: key %d is not id:base64key", i+1)
		}
		if !validID(id) {
			return nil, fmt.Errorf("secretbox: key %d: id must be 1 to %d of A-Z a-z 0-9 _ -", i+1, MaxIDLen)
		}
		if _, dup := k.keys[id]; dup {
			return nil, fmt.Errorf("secretbox: key id %q appears twice", id)
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil {
			return nil, fmt.Errorf("secretbox: key %q is not standard base64", id)
		}
		if len(key) != KeySize {
			return nil, fmt.Errorf("secretbox: key %q is %d bytes, want %d", id, len(key), KeySize)
		}
		k.keys[id] = key
		k.ids = append(k.ids, id)
	}
	k.primary = k.ids[0]
	return k, nil
}

func validID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// Generate returns a fresh key line "id:base64key" for a new keyring or a
// rotation; the id is the UTC date and a random suffix (k20261130-1a2b3c).
func Generate() (string, error) {
	b := make([]byte, KeySize+3)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("secretbox: generate key: %w", err)
	}
	id := "k" + time.Now().UTC().Format("20060102") + "-" + hex.EncodeToString(b[KeySize:])
	return id + ":" + base64.StdEncoding.EncodeToString(b[:KeySize]), nil
}

// Primary is the id of the key Seal uses.
func (k *Keyring) Primary() string { return k.primary }

// IDs are the key ids, the primary first.
func (k *Keyring) IDs() []string { return append([]string(nil), k.ids...) }

// String names the keys without their material.
func (k *Keyring) String() string { return "secretbox keyring " + strings.Join(k.ids, ",") }

func (k *Keyring) aead(id string) (cipher.AEAD, error) {
	key, ok := k.keys[id]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownKey, id)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secretbox: %w", err)
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plain, bound to aad, under the primary key: a random
// 12-byte nonce followed by the ciphertext and tag.
func (k *Keyring) Seal(plain, aad []byte) (sealed []byte, keyID string, err error) {
	if k == nil || k.primary == "" {
		return nil, "", ErrNoKey
	}
	g, err := k.aead(k.primary)
	if err != nil {
		return nil, "", err
	}
	nonce := make([]byte, NonceSize, NonceSize+len(plain)+g.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, "", fmt.Errorf("secretbox: nonce: %w", err)
	}
	return g.Seal(nonce, nonce, plain, aad), k.primary, nil
}

// Open decrypts what Seal returned, with the key named keyID.
func (k *Keyring) Open(sealed []byte, keyID string, aad []byte) ([]byte, error) {
	if k == nil {
		return nil, ErrNoKey
	}
	g, err := k.aead(keyID)
	if err != nil {
		return nil, err
	}
	if len(sealed) < NonceSize+g.Overhead() {
		return nil, ErrOpen
	}
	plain, err := g.Open(nil, sealed[:NonceSize], sealed[NonceSize:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}
