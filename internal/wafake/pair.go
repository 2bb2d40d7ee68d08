package wafake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.mau.fi/libsignal/ecc"
	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waAdv"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
)

const qrRefCount = 6

// startPairing sends the pair-device refs to a fresh, unregistered client.
func (s *Server) startPairing(c *conn) {
	refs := make([]waBinary.Node, qrRefCount)
	s.mu.Lock()
	for i := range refs {
		b := make([]byte, 18)
		_, _ = rand.Read(b)
		ref := "2@" + base64.StdEncoding.EncodeToString(b)
		s.refs[ref] = c
		c.refs = append(c.refs, ref)
		refs[i] = waBinary.Node{Tag: "ref", Content: []byte(ref)}
	}
	s.notifyLocked()
	s.mu.Unlock()
	_ = c.send(waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{
		"from": types.ServerJID, "id": newID(), "type": "set", "xmlns": "md",
	}, Content: []waBinary.Node{{Tag: "pair-device", Content: refs}}})
}

// ScanQR plays the phone of account `phone` (E.164 digits) scanning a QR
// code the client emitted (any string of events.QR.Codes): it sends
// pair-success with a device identity signed by the account key, waits for
// the client's pair-device-sign, then sends <stream:error code="515"/> so
// the client reconnects and logs in. It returns once the client confirmed
// the pairing (whatsmeow then emits events.PairSuccess); wait for
// events.Connected (or Account.Connected) before using the session.
func (s *Server) ScanQR(ctx context.Context, qrCode string, phone string) error {
	parts := strings.Split(qrCode, ",")
	if len(parts) != 4 {
		return fmt.Errorf("wafake: QR code has %d parts, want 4", len(parts))
	}
	if !isDigits(phone) {
		return fmt.Errorf("wafake: phone %q is not E.164 digits", phone)
	}
	noisePub, err1 := base64.StdEncoding.DecodeString(parts[1])
	identityPub, err2 := base64.StdEncoding.DecodeString(parts[2])
	advSecret, err3 := base64.StdEncoding.DecodeString(parts[3])
	if err := errors.Join(err1, err2, err3); err != nil || len(identityPub) != 32 {
		return fmt.Errorf("wafake: bad QR code: %v", err)
	}

	s.mu.Lock()
	c := s.refs[parts[0]]
	if c == nil {
		s.mu.Unlock()
		return ErrUnknownRef
	}
	if !bytes.Equal(noisePub, c.clientStatic) {
		s.mu.Unlock()
		return errors.New("wafake: QR noise key does not match the connection")
	}
	s.mu.Unlock()
	return s.pairConn(ctx, c, phone, identityPub, advSecret)
}

// pairConn is the phone's side of pairing once it knows the companion's
// identity key and the ADV secret: pair-success, wait for pair-device-sign,
// then 515.
func (s *Server) pairConn(ctx context.Context, c *conn, phone string, identityPub, advSecret []byte) error {
	s.mu.Lock()
	if c.acct != nil || c.loggedIn {
		s.mu.Unlock()
		return errors.New("wafake: connection is not a pairing connection")
	}
	a := s.accountLocked(phone)
	device := a.nextDevice
	a.nextDevice++
	for _, ref := range c.refs {
		delete(s.refs, ref)
	}
	c.refs = nil
	advPriv, advPub := *a.advKey.Priv, *a.advKey.Pub
	s.mu.Unlock()

	var raw [4]byte
	_, _ = rand.Read(raw[:])
	details, err := proto.Marshal(&waAdv.ADVDeviceIdentity{
		RawID:     proto.Uint32(binary.BigEndian.Uint32(raw[:])),
		Timestamp: proto.Uint64(uint64(time.Now().Unix())),
		KeyIndex:  proto.Uint32(uint32(device)),
	})
	if err != nil {
		return err
	}
	msg := make([]byte, 0, 2+len(details)+32)
	msg = append(append(append(msg, whatsmeow.AdvAccountSignaturePrefix...), details...), identityPub...)
	sig := ecc.CalculateSignature(ecc.NewDjbECPrivateKey(advPriv), msg)
	signed, err := proto.Marshal(&waAdv.ADVSignedDeviceIdentity{
		Details:             details,
		AccountSignatureKey: advPub[:],
		AccountSignature:    sig[:],
	})
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, advSecret)
	mac.Write(signed)
	container, err := proto.Marshal(&waAdv.ADVSignedDeviceIdentityHMAC{Details: signed, HMAC: mac.Sum(nil)})
	if err != nil {
		return err
	}

	u := s.Contact(phone)
	jid, lid := u.pn, u.lid
	jid.Device, lid.Device = device, device
	id := newID()
	respCh := c.expectIQ(id)
	err = c.send(waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{
		"from": types.ServerJID, "id": id, "type": "set", "xmlns": "md",
	}, Content: []waBinary.Node{{Tag: "pair-success", Content: []waBinary.Node{
		{Tag: "device-identity", Content: container},
		{Tag: "platform", Attrs: waBinary.Attrs{"name": "android"}},
		{Tag: "device", Attrs: waBinary.Attrs{"jid": jid, "lid": lid}},
	}}}})
	if err != nil {
		return err
	}
	var resp *waBinary.Node
	select {
	case resp = <-respCh:
	case <-c.done:
		return errors.New("wafake: client disconnected during pairing")
	case <-ctx.Done():
		return ctx.Err()
	}
	if attrString(resp, "type") != "result" {
		return fmt.Errorf("wafake: client rejected pairing: %s", resp.XMLString())
	}
	if _, ok := resp.GetOptionalChildByTag("pair-device-sign"); !ok {
		return fmt.Errorf("wafake: unexpected pairing response: %s", resp.XMLString())
	}

	s.mu.Lock()
	var old *conn
	if a.conn != nil && a.conn != c {
		old = a.conn
	}
	a.forgetDeviceLocked()
	a.device = device
	a.bannedUntil = time.Time{}
	s.notifyLocked()
	s.mu.Unlock()
	if old != nil {
		go func() { _ = old.terminate(Kick{Kind: KickDeviceRemoved}.node(), false, false) }()
	}
	// Like the real server: restart the stream so the client logs in.
	go func() {
		_ = c.terminate(waBinary.Node{Tag: "stream:error", Attrs: waBinary.Attrs{"code": "515"}}, false, true)
	}()
	return nil
}

// PairClient pairs a fresh (unpaired) client as account `phone`: it connects
// the client if needed, scans the first QR code it emits and waits for
// events.Connected. The client must already be configured (Configure).
func (s *Server) PairClient(ctx context.Context, cli *whatsmeow.Client, phone string) error {
	qr := make(chan string, 1)
	connected := make(chan struct{}, 1)
	failed := make(chan error, 1)
	h := cli.AddEventHandler(func(evt any) {
		switch e := evt.(type) {
		case *events.QR:
			if len(e.Codes) > 0 {
				select {
				case qr <- e.Codes[0]:
				default:
				}
			}
		case *events.Connected:
			select {
			case connected <- struct{}{}:
			default:
			}
		case *events.PairError:
			select {
			case failed <- e.Error:
			default:
			}
		}
	})
	defer cli.RemoveEventHandler(h)
	if !cli.IsConnected() {
		if err := cli.Connect(); err != nil {
			return err
		}
	}
	select {
	case code := <-qr:
		if err := s.ScanQR(ctx, code, phone); err != nil {
			return err
		}
	case err := <-failed:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-connected:
		return nil
	case err := <-failed:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
