package wafake

import (
	"fmt"
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
	rootOnce.Do(func() {
		rootKey = keys.NewKeyPair()
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
