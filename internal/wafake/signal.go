package wafake

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.mau.fi/libsignal/ecc"
	groupRecord "go.mau.fi/libsignal/groups/state/record"
	"go.mau.fi/libsignal/keys/identity"
	"go.mau.fi/libsignal/keys/prekey"
	"go.mau.fi/libsignal/protocol"
	"go.mau.fi/libsignal/session"
	"go.mau.fi/libsignal/state/record"
	"go.mau.fi/libsignal/util/optional"
	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/util/keys"
)

var serializer = store.SignalProtobufSerializer

// memStore is an in-memory libsignal store (store.SignalProtocol). Records
// are kept serialized so that no state is shared between calls. Identities
// are always trusted.
type memStore struct {
	identity *identity.KeyPair
	regID    uint32

	mu         sync.Mutex
	sessions   map[string][]byte
	preKeys    map[uint32][]byte
	signed     map[uint32][]byte
	senderKeys map[string][]byte
}

func newMemStore(ik *keys.KeyPair, regID uint32) *memStore {
	return &memStore{
		identity: identity.NewKeyPair(
			identity.NewKey(ecc.NewDjbECPublicKey(*ik.Pub)),
			ecc.NewDjbECPrivateKey(*ik.Priv),
		),
		regID:      regID,
		sessions:   map[string][]byte{},
		preKeys:    map[uint32][]byte{},
		signed:     map[uint32][]byte{},
		senderKeys: map[string][]byte{},
	}
}

func (m *memStore) GetIdentityKeyPair() *identity.KeyPair { return m.identity }
func (m *memStore) GetLocalRegistrationID() uint32        { return m.regID }
func (m *memStore) SaveIdentity(context.Context, *protocol.SignalAddress, *identity.Key) error {
	return nil
}
func (m *memStore) IsTrustedIdentity(context.Context, *protocol.SignalAddress, *identity.Key) (bool, error) {
	return true, nil
}

func (m *memStore) LoadPreKey(_ context.Context, id uint32) (*record.PreKey, error) {
	m.mu.Lock()
	raw := m.preKeys[id]
	m.mu.Unlock()
	if raw == nil {
		return nil, nil
	}
	return record.NewPreKeyFromBytes(raw, serializer.PreKeyRecord)
}
func (m *memStore) StorePreKey(_ context.Context, id uint32, r *record.PreKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.preKeys[id] = r.Serialize()
	return nil
}
func (m *memStore) ContainsPreKey(_ context.Context, id uint32) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.preKeys[id]
	return ok, nil
}
func (m *memStore) RemovePreKey(_ context.Context, id uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.preKeys, id)
	return nil
}

func (m *memStore) LoadSession(_ context.Context, addr *protocol.SignalAddress) (*record.Session, error) {
	m.mu.Lock()
	raw := m.sessions[addr.String()]
	m.mu.Unlock()
	if raw == nil {
		return record.NewSession(serializer.Session, serializer.State), nil
	}
	return record.NewSessionFromBytes(raw, serializer.Session, serializer.State)
}
func (m *memStore) GetSubDeviceSessions(context.Context, string) ([]uint32, error) {
	return nil, errors.New("not implemented")
}
func (m *memStore) StoreSession(_ context.Context, addr *protocol.SignalAddress, r *record.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions[addr.String()] = r.Serialize()
	return nil
}
func (m *memStore) ContainsSession(_ context.Context, addr *protocol.SignalAddress) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.sessions[addr.String()]
	return ok, nil
}
func (m *memStore) DeleteSession(_ context.Context, addr *protocol.SignalAddress) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, addr.String())
	return nil
}
func (m *memStore) DeleteAllSessions(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sessions = map[string][]byte{}
	return nil
}

func (m *memStore) LoadSignedPreKey(_ context.Context, id uint32) (*record.SignedPreKey, error) {
	m.mu.Lock()
	raw := m.signed[id]
	m.mu.Unlock()
	if raw == nil {
		return nil, nil
	}
	return record.NewSignedPreKeyFromBytes(raw, serializer.SignedPreKeyRecord)
}
func (m *memStore) LoadSignedPreKeys(ctx context.Context) ([]*record.SignedPreKey, error) {
	m.mu.Lock()
	ids := make([]uint32, 0, len(m.signed))
	for id := range m.signed {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	out := make([]*record.SignedPreKey, 0, len(ids))
	for _, id := range ids {
		r, err := m.LoadSignedPreKey(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
func (m *memStore) StoreSignedPreKey(_ context.Context, id uint32, r *record.SignedPreKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.signed[id] = r.Serialize()
	return nil
}
func (m *memStore) ContainsSignedPreKey(_ context.Context, id uint32) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.signed[id]
	return ok, nil
}
func (m *memStore) RemoveSignedPreKey(_ context.Context, id uint32) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.signed, id)
	return nil
}

func (m *memStore) StoreSenderKey(_ context.Context, name *protocol.SenderKeyName, r *groupRecord.SenderKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.senderKeys[name.GroupID()+"|"+name.Sender().String()] = r.Serialize()
	return nil
}
func (m *memStore) LoadSenderKey(_ context.Context, name *protocol.SenderKeyName) (*groupRecord.SenderKey, error) {
	m.mu.Lock()
	raw := m.senderKeys[name.GroupID()+"|"+name.Sender().String()]
	m.mu.Unlock()
	if raw == nil {
		return groupRecord.NewSenderKey(serializer.SenderKeyRecord, serializer.SenderKeyState), nil
	}
	return groupRecord.NewSenderKeyFromBytes(raw, serializer.SenderKeyRecord, serializer.SenderKeyState)
}

func (m *memStore) deleteSenderKey(name *protocol.SenderKeyName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.senderKeys, name.GroupID()+"|"+name.Sender().String())
}

// peer is a Signal identity the fake controls: a contact's phone, or an
// account's primary phone (device 0).
type peer struct {
	ik     *keys.KeyPair
	regID  uint32
	signed *keys.PreKey
	store  *memStore

	mu        sync.Mutex // serialises session operations
	nextPreID uint32
}

func randomRegID() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])%16380 + 1
}

func newPeer() *peer {
	p := &peer{ik: keys.NewKeyPair(), regID: randomRegID(), nextPreID: 1}
	p.signed = p.ik.CreateSignedPreKey(1)
	p.store = newMemStore(p.ik, p.regID)
	_ = p.store.StoreSignedPreKey(context.Background(), p.signed.KeyID, record.NewSignedPreKey(
		p.signed.KeyID, time.Now().UnixMilli(),
		ecc.NewECKeyPair(ecc.NewDjbECPublicKey(*p.signed.Pub), ecc.NewDjbECPrivateKey(*p.signed.Priv)),
		*p.signed.Signature, serializer.SignedPreKeyRecord))
	return p
}

// newOneTimePreKey creates, stores and returns a fresh one-time prekey.
func (p *peer) newOneTimePreKey() *keys.PreKey {
	p.mu.Lock()
	id := p.nextPreID
	p.nextPreID++
	p.mu.Unlock()
	pk := keys.NewPreKey(id)
	_ = p.store.StorePreKey(context.Background(), id, record.NewPreKey(id,
		ecc.NewECKeyPair(ecc.NewDjbECPublicKey(*pk.Pub), ecc.NewDjbECPrivateKey(*pk.Priv)), serializer.PreKeyRecord))
	return pk
}

// bundleNode answers a prekey fetch for this peer (the <user> child content).
func (p *peer) bundleNodes() []waBinary.Node {
	b := &bundle{regID: p.regID, identity: *p.ik.Pub, signed: p.signed, preKey: p.newOneTimePreKey()}
	return b.nodes()
}

// bundle is a prekey bundle as uploaded by a client or served for a peer.
type bundle struct {
	regID    uint32
	identity [32]byte
	signed   *keys.PreKey
	preKey   *keys.PreKey // may be nil
}

func keyNode(k *keys.PreKey) waBinary.Node {
	var id [4]byte
	binary.BigEndian.PutUint32(id[:], k.KeyID)
	n := waBinary.Node{Tag: "key", Content: []waBinary.Node{
		{Tag: "id", Content: id[1:]},
		{Tag: "value", Content: k.Pub[:]},
	}}
	if k.Signature != nil {
		n.Tag = "skey"
		n.Content = append(n.GetChildren(), waBinary.Node{Tag: "signature", Content: k.Signature[:]})
	}
	return n
}

func (b *bundle) nodes() []waBinary.Node {
	var reg [4]byte
	binary.BigEndian.PutUint32(reg[:], b.regID)
	out := []waBinary.Node{
		{Tag: "registration", Content: reg[:]},
		{Tag: "type", Content: []byte{ecc.DjbType}},
		{Tag: "identity", Content: b.identity[:]},
		keyNode(b.signed),
	}
	if b.preKey != nil {
		out = append(out, keyNode(b.preKey))
	}
	return out
}

func (b *bundle) libsignal(deviceID uint32) *prekey.Bundle {
	ik := identity.NewKey(ecc.NewDjbECPublicKey(b.identity))
	if b.preKey == nil {
		return prekey.NewBundle(b.regID, deviceID, optional.NewEmptyUint32(), b.signed.KeyID, nil,
			ecc.NewDjbECPublicKey(*b.signed.Pub), *b.signed.Signature, ik)
	}
	return prekey.NewBundle(b.regID, deviceID, optional.NewOptionalUint32(b.preKey.KeyID), b.signed.KeyID,
		ecc.NewDjbECPublicKey(*b.preKey.Pub), ecc.NewDjbECPublicKey(*b.signed.Pub), *b.signed.Signature, ik)
}

// parseUploadedKey parses a <key> or <skey> node from a prekey upload.
func parseUploadedKey(n waBinary.Node) (*keys.PreKey, error) {
	idB, _ := n.GetChildByTag("id").Content.([]byte)
	val, _ := n.GetChildByTag("value").Content.([]byte)
	if len(idB) != 3 || len(val) != 32 {
		return nil, fmt.Errorf("bad %s node", n.Tag)
	}
	k := &keys.PreKey{KeyID: uint32(idB[0])<<16 | uint32(idB[1])<<8 | uint32(idB[2])}
	k.Pub = (*[32]byte)(append([]byte(nil), val...))
	if n.Tag == "skey" {
		sig, _ := n.GetChildByTag("signature").Content.([]byte)
		if len(sig) != 64 {
			return nil, errors.New("bad skey signature")
		}
		k.Signature = (*[64]byte)(append([]byte(nil), sig...))
	}
	return k, nil
}

// hasSession reports whether the peer has a session with addr.
func (p *peer) hasSession(addr *protocol.SignalAddress) bool {
	ok, _ := p.store.ContainsSession(context.Background(), addr)
	return ok
}

// encrypt pads and encrypts plaintext for addr, building a session from b
// first when there is none. It returns the wire type ("pkmsg" or "msg").
func (p *peer) encrypt(ctx context.Context, addr *protocol.SignalAddress, b *bundle, plaintext []byte) (ct []byte, encType string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	builder := session.NewBuilderFromSignal(p.store, addr, serializer)
	if !p.hasSession(addr) {
		if b == nil {
			return nil, "", errors.New("no session and no prekey bundle")
		}
		if err = builder.ProcessBundle(ctx, b.libsignal(addr.DeviceID())); err != nil {
			return nil, "", fmt.Errorf("process bundle: %w", err)
		}
	}
	msg, err := session.NewCipher(builder, addr).Encrypt(ctx, pad(plaintext))
	if err != nil {
		return nil, "", err
	}
	encType = "msg"
	if msg.Type() == protocol.PREKEY_TYPE {
		encType = "pkmsg"
	}
	return msg.Serialize(), encType, nil
}

// decrypt decrypts an <enc> payload from addr and removes the padding.
func (p *peer) decrypt(ctx context.Context, addr *protocol.SignalAddress, encType string, content []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cipher := session.NewCipher(session.NewBuilderFromSignal(p.store, addr, serializer), addr)
	var plain []byte
	var err error
	switch encType {
	case "pkmsg":
		var m *protocol.PreKeySignalMessage
		m, err = protocol.NewPreKeySignalMessageFromBytes(content, serializer.PreKeySignalMessage, serializer.SignalMessage)
		if err == nil {
			plain, err = cipher.DecryptMessage(ctx, m)
		}
	case "msg":
		var m *protocol.SignalMessage
		m, err = protocol.NewSignalMessageFromBytes(content, serializer.SignalMessage)
		if err == nil {
			plain, err = cipher.Decrypt(ctx, m)
		}
	default:
		return nil, fmt.Errorf("unsupported enc type %q", encType)
	}
	if err != nil {
		return nil, err
	}
	return unpad(plain)
}

func pad(b []byte) []byte {
	var r [1]byte
	_, _ = rand.Read(r[:])
	n := r[0] & 0xf
	if n == 0 {
		n = 0xf
	}
	out := make([]byte, len(b), len(b)+int(n))
	copy(out, b)
	for i := byte(0); i < n; i++ {
		out = append(out, n)
	}
	return out
}

func unpad(b []byte) ([]byte, error) {
	if len(b) == 0 || int(b[len(b)-1]) > len(b) || b[len(b)-1] == 0 {
		return nil, errors.New("bad padding")
	}
	return b[:len(b)-int(b[len(b)-1])], nil
}

// messageText extracts the visible text of a message, if any.
func messageText(m *waE2E.Message) string {
	if m == nil {
		return ""
	}
	if m.GetDeviceSentMessage().GetMessage() != nil {
		m = m.GetDeviceSentMessage().GetMessage()
	}
	if m.GetDocumentWithCaptionMessage().GetMessage() != nil {
		m = m.GetDocumentWithCaptionMessage().GetMessage()
	}
	switch {
	case m.PtvMessage != nil:
		return m.GetPtvMessage().GetCaption()
	case m.Conversation != nil:
		return m.GetConversation()
	case m.ExtendedTextMessage != nil:
		return m.GetExtendedTextMessage().GetText()
	case m.ImageMessage != nil:
		return m.GetImageMessage().GetCaption()
	case m.VideoMessage != nil:
		return m.GetVideoMessage().GetCaption()
	case m.DocumentMessage != nil:
		return m.GetDocumentMessage().GetCaption()
	}
	return ""
}

func marshalText(text string) ([]byte, error) {
	return proto.Marshal(&waE2E.Message{Conversation: proto.String(text)})
}
