// Package secretbox seals provider credentials at rest (issue #16) with
// AES-256-GCM under a keyring read from the environment or a file, and
// supports key rotation: the first key seals, every key opens, and
// `zapbus-admin providers rekey` re-seals what an older key sealed.
//
// SCAFFOLD: signatures fixed by the issue #16 scaffold; the helper that
// owns this package replaces the bodies.
package secretbox

import "errors"

// Keyring holds the keys: the primary seals, all open.
type Keyring struct {
	primary string
	keys    map[string][]byte
}

// ErrNoKey is returned by Load when no key is configured.
var ErrNoKey = errors.New("secretbox: no credentials key configured (ZAPBUS_CREDENTIALS_KEYS or ZAPBUS_CREDENTIALS_KEYS_FILE)")

// Load reads the keyring from getenv: ZAPBUS_CREDENTIALS_KEYS, or the file
// ZAPBUS_CREDENTIALS_KEYS_FILE names: "id:base64key[,id:base64key…]", the
// first the primary; each key 32 bytes.
func Load(getenv func(string) string) (*Keyring, error) {
	return nil, errors.New("secretbox: not implemented")
}

// Primary is the id of the key Seal uses.
func (k *Keyring) Primary() string { return k.primary }

// Seal encrypts plain, bound to aad, under the primary key.
func (k *Keyring) Seal(plain, aad []byte) (sealed []byte, keyID string, err error) {
	return nil, "", errors.New("secretbox: not implemented")
}

// Open decrypts what Seal returned, with the key named keyID.
func (k *Keyring) Open(sealed []byte, keyID string, aad []byte) ([]byte, error) {
	return nil, errors.New("secretbox: not implemented")
}
