package wafake

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.mau.fi/libsignal/ecc"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waCert"
	"go.mau.fi/whatsmeow/util/keys"
	"google.golang.org/protobuf/proto"
)

// The fake certificate root is process-global because whatsmeow.WACertPubKey
// is a package variable: every Server in the process shares it.
var (
	rootOnce         sync.Once
	rootKey          *keys.KeyPair
	intermediateKey  *keys.KeyPair
	intermediateCert *waCert.CertChain_NoiseCertificate
)

const (
	intermediateSerial = 1
	leafSerial         = 2
)

// InstallRoot sets whatsmeow.WACertPubKey to the fake root key, so that the
// real client accepts the certificate chain every fake Server presents. It is
// idempotent and safe for concurrent use; NewServer calls it too. It never
// restores the real key: a test binary that imports wafake talks only to fakes.
func InstallRoot() {
	installRoot(keys.NewKeyPair())
}

func installRoot(root *keys.KeyPair) {
	rootOnce.Do(func() {
		rootKey = root
		intermediateKey = keys.NewKeyPair()
		intermediateCert = signCert(rootKey, &waCert.CertChain_NoiseCertificate_Details{
			Serial:       proto.Uint32(intermediateSerial),
			IssuerSerial: proto.Uint32(whatsmeow.WACertIssuerSerial),
			Key:          intermediateKey.Pub[:],
			NotBefore:    proto.Uint64(uint64(time.Now().Add(-time.Hour).Unix())),
			NotAfter:     proto.Uint64(uint64(time.Now().Add(24 * 365 * time.Hour).Unix())),
		})
		whatsmeow.WACertPubKey = *rootKey.Pub
	})
}

// ErrRootInstalled is returned by InstallRootKey when the process already
// uses another fake root (InstallRoot or NewServer ran first).
var ErrRootInstalled = errors.New("wafake: a different fake root is already installed")

// InstallRootKey makes the fake root the key pair of the 32-byte private
// key priv instead of a random one, so that another process (a connector
// run against the standalone fake, cmd/wafake) can trust it knowing only
// RootPublicKey. Call it before NewServer; calling it again with the same
// key is a no-op.
func InstallRootKey(priv [32]byte) error {
	want := keys.NewKeyPairFromPrivateKey(priv)
	installRoot(want)
	if !bytes.Equal(rootKey.Pub[:], want.Pub[:]) {
		return ErrRootInstalled
	}
	return nil
}

// RootPublicKey is the public key of the fake root that the process's
// servers sign with (it installs a random root if none is yet).
func RootPublicKey() [32]byte {
	InstallRoot()
	return *rootKey.Pub
}

// LoadOrCreateRootKey reads a root private key from path (64 hex digits),
// or, when the file does not exist, writes a new random one there (mode
// 0600). The key is what the fake signs its certificates with: whoever
// holds it can impersonate the fake, so it is a dev-only secret, never a
// production one.
func LoadOrCreateRootKey(path string) ([32]byte, error) {
	var priv [32]byte
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := rand.Read(priv[:]); err != nil {
			return priv, fmt.Errorf("wafake: new root key: %w", err)
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(priv[:])+"\n"), 0o600); err != nil {
			return priv, fmt.Errorf("wafake: write root key: %w", err)
		}
		return priv, nil
	}
	if err != nil {
		return priv, fmt.Errorf("wafake: read root key: %w", err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(b) != len(priv) {
		return priv, fmt.Errorf("wafake: root key file %s: want %d bytes as hex", path, len(priv))
	}
	copy(priv[:], b)
	return priv, nil
}

func signCert(signer *keys.KeyPair, details *waCert.CertChain_NoiseCertificate_Details) *waCert.CertChain_NoiseCertificate {
	raw, err := proto.Marshal(details)
	if err != nil {
		panic(fmt.Errorf("wafake: marshal cert details: %w", err))
	}
	sig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(*signer.Priv), raw)
	return &waCert.CertChain_NoiseCertificate{Details: raw, Signature: sig[:]}
}

// certChainFor returns the marshalled CertChain whose leaf certifies the
// given server static key.
func certChainFor(static *keys.KeyPair) []byte {
	InstallRoot()
	leaf := signCert(intermediateKey, &waCert.CertChain_NoiseCertificate_Details{
		Serial:       proto.Uint32(leafSerial),
		IssuerSerial: proto.Uint32(intermediateSerial),
		Key:          static.Pub[:],
		NotBefore:    proto.Uint64(uint64(time.Now().Add(-time.Hour).Unix())),
		NotAfter:     proto.Uint64(uint64(time.Now().Add(24 * time.Hour).Unix())),
	})
	raw, err := proto.Marshal(&waCert.CertChain{Intermediate: intermediateCert, Leaf: leaf})
	if err != nil {
		panic(fmt.Errorf("wafake: marshal cert chain: %w", err))
	}
	return raw
}
