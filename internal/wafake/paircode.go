package wafake

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/pbkdf2"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/hkdfutil"
	"go.mau.fi/whatsmeow/util/keys"
)

// codePairing is a pending phone-number pairing (cli.PairPhone).
type codePairing struct {
	c          *conn
	phone      string
	ref        string
	wrappedEph []byte // salt(32) | iv(16) | AES-CTR(companion ephemeral pub)
	finish     chan *waBinary.Node
}

// ErrNoCodePairing is returned by EnterPairingCode when no client asked for
// a pairing code for that phone number.
var ErrNoCodePairing = errors.New("wafake: no pending pairing code for this phone")

func (s *Server) handleLinkCode(c *conn, n *waBinary.Node, reg waBinary.Node) {
	switch attrString(&reg, "stage") {
	case "companion_hello":
		jid, _ := reg.Attrs["jid"].(types.JID)
		wrapped, _ := reg.GetChildByTag("link_code_pairing_wrapped_companion_ephemeral_pub").Content.([]byte)
		if jid.User == "" || len(wrapped) != 80 {
			_ = c.send(iqError(n, 400, "bad-request"))
			return
		}
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		p := &codePairing{c: c, phone: jid.User, ref: "2@" + base64.StdEncoding.EncodeToString(b),
			wrappedEph: append([]byte(nil), wrapped...), finish: make(chan *waBinary.Node, 1)}
		s.mu.Lock()
		s.codePairs[p.phone] = p
		s.notifyLocked()
		s.mu.Unlock()
		_ = c.send(iqResult(n, waBinary.Node{Tag: "link_code_companion_reg", Content: []waBinary.Node{
			{Tag: "link_code_pairing_ref", Content: []byte(p.ref)},
		}}))
	case "companion_finish":
		ref, _ := reg.GetChildByTag("link_code_pairing_ref").Content.([]byte)
		var p *codePairing
		s.mu.Lock()
		for _, cp := range s.codePairs {
			if cp.ref == string(ref) && cp.c == c {
				p = cp
			}
		}
		s.mu.Unlock()
		if p == nil {
			_ = c.send(iqError(n, 404, "item-not-found"))
			return
		}
		_ = c.send(iqResult(n))
		select {
		case p.finish <- &reg:
		default:
		}
	default:
		_ = c.send(iqError(n, 400, "bad-request"))
	}
}

func linkCodeKey(code string, salt []byte) cipher.Block {
	block, err := aes.NewCipher(pbkdf2.Key([]byte(code), salt, 2<<16, 32, sha256.New))
	if err != nil {
		panic(err)
	}
	return block
}

// WaitPairingCode waits until a client called PairPhone for phone.
func (s *Server) WaitPairingCode(ctx context.Context, phone string) error {
	return s.waitFor(ctx, func() bool { return s.codePairs[phone] != nil })
}

// EnterPairingCode plays the phone of account `phone` typing the 8-character
// code that cli.PairPhone returned ("ABCD-EFGH"; the dash is optional). It
// completes the link-code exchange, then pairs like ScanQR and returns once
// the client confirmed (events.PairSuccess follows, then Connected).
// A wrong code makes the key exchange fail on the client (it logs the error
// and stays unpaired); EnterPairingCode then returns an error when ctx ends.
func (s *Server) EnterPairingCode(ctx context.Context, phone, code string) error {
	code = strings.ToUpper(strings.ReplaceAll(code, "-", ""))
	if len(code) != 8 {
		return fmt.Errorf("wafake: pairing code %q must have 8 characters", code)
	}
	s.mu.Lock()
	p := s.codePairs[phone]
	var primary *keys.KeyPair
	if p != nil {
		primary = s.accountLocked(phone).advKey
	}
	s.mu.Unlock()
	if p == nil {
		return ErrNoCodePairing
	}
	defer func() {
		s.mu.Lock()
		if s.codePairs[phone] == p {
			delete(s.codePairs, phone)
		}
		s.mu.Unlock()
	}()

	// Unwrap the companion's ephemeral key with the code.
	companionEph := make([]byte, 32)
	cipher.NewCTR(linkCodeKey(code, p.wrappedEph[:32]), p.wrappedEph[32:48]).XORKeyStream(companionEph, p.wrappedEph[48:80])

	// Wrap the primary's ephemeral key the same way.
	eph := keys.NewKeyPair()
	wrapped := make([]byte, 80)
	_, _ = rand.Read(wrapped[:48])
	cipher.NewCTR(linkCodeKey(code, wrapped[:32]), wrapped[32:48]).XORKeyStream(wrapped[48:80], eph.Pub[:])

	finishTimeout := time.NewTimer(handshakeTimeout)
	defer finishTimeout.Stop()
	err := p.c.send(waBinary.Node{Tag: "notification", Attrs: waBinary.Attrs{
		"from": types.ServerJID, "id": newID(), "type": "link_code_companion_reg", "t": fmt.Sprint(time.Now().Unix()),
	}, Content: []waBinary.Node{{Tag: "link_code_companion_reg", Content: []waBinary.Node{
		{Tag: "link_code_pairing_ref", Content: []byte(p.ref)},
		{Tag: "link_code_pairing_wrapped_primary_ephemeral_pub", Content: wrapped},
		{Tag: "primary_identity_pub", Content: primary.Pub[:]},
	}}}})
	if err != nil {
		return err
	}
	var fin *waBinary.Node
	select {
	case fin = <-p.finish:
	case <-p.c.done:
		return errors.New("wafake: client disconnected during code pairing")
	case <-finishTimeout.C:
		return errors.New("wafake: client did not finish code pairing (wrong code?)")
	case <-ctx.Done():
		return ctx.Err()
	}

	wrappedBundle, _ := fin.GetChildByTag("link_code_pairing_wrapped_key_bundle").Content.([]byte)
	identityPub, _ := fin.GetChildByTag("companion_identity_public").Content.([]byte)
	if len(wrappedBundle) < 32+12+16 || len(identityPub) != 32 {
		return errors.New("wafake: malformed companion_finish")
	}
	shared, err := curve25519.X25519(eph.Priv[:], companionEph)
	if err != nil {
		return err
	}
	block, err := aes.NewCipher(hkdfutil.SHA256(shared, wrappedBundle[:32], []byte("link_code_pairing_key_bundle_encryption_key"), 32))
	if err != nil {
		return err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return err
	}
	bundle, err := gcm.Open(nil, wrappedBundle[32:44], wrappedBundle[44:], nil)
	if err != nil || len(bundle) != 96 {
		return fmt.Errorf("wafake: cannot open the companion key bundle (wrong code?): %v", err)
	}
	if string(bundle[:32]) != string(identityPub) || string(bundle[32:64]) != string(primary.Pub[:]) {
		return errors.New("wafake: companion key bundle does not match")
	}
	identityShared, err := curve25519.X25519(primary.Priv[:], identityPub)
	if err != nil {
		return err
	}
	advInput := append(append(append([]byte(nil), shared...), identityShared...), bundle[64:96]...)
	advSecret := hkdfutil.SHA256(advInput, nil, []byte("adv_secret"), 32)
	return s.pairConn(ctx, p.c, phone, identityPub, advSecret)
}
