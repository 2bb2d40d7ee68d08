package wafake

import (
	"context"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/coder/websocket"
	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/hkdf"
	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow/proto/waWa6"
	"go.mau.fi/whatsmeow/socket"
	"go.mau.fi/whatsmeow/util/gcmutil"
	"go.mau.fi/whatsmeow/util/keys"
)

// frameConn speaks WhatsApp's framing over a websocket: the client's first
// message starts with the 4-byte "WA" header, and every frame is prefixed
// with a 3-byte big-endian length. The server sends no header.
type frameConn struct {
	ws         *websocket.Conn
	buf        []byte
	header     []byte
	writeMu    sync.Mutex
	readKey    cipher.AEAD
	writeKey   cipher.AEAD
	readCount  uint32
	writeCount uint32
}

func (f *frameConn) readFrame(ctx context.Context) ([]byte, error) {
	for {
		if f.header == nil && len(f.buf) >= len(socket.WAConnHeader) {
			f.header = append([]byte(nil), f.buf[:len(socket.WAConnHeader)]...)
			f.buf = f.buf[len(socket.WAConnHeader):]
			if f.header[0] != 'W' || f.header[1] != 'A' {
				return nil, fmt.Errorf("bad connection header %x", f.header)
			}
		}
		if f.header != nil && len(f.buf) >= socket.FrameLengthSize {
			n := int(f.buf[0])<<16 | int(f.buf[1])<<8 | int(f.buf[2])
			if len(f.buf) >= socket.FrameLengthSize+n {
				frame := append([]byte(nil), f.buf[socket.FrameLengthSize:socket.FrameLengthSize+n]...)
				f.buf = f.buf[socket.FrameLengthSize+n:]
				return frame, nil
			}
		}
		typ, data, err := f.ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		if typ != websocket.MessageBinary {
			continue
		}
		f.buf = append(f.buf, data...)
	}
}

func (f *frameConn) writeFrame(ctx context.Context, data []byte) error {
	if len(data) >= socket.FrameMaxSize {
		return socket.ErrFrameTooLarge
	}
	out := make([]byte, socket.FrameLengthSize+len(data))
	out[0], out[1], out[2] = byte(len(data)>>16), byte(len(data)>>8), byte(len(data))
	copy(out[socket.FrameLengthSize:], data)
	return f.ws.Write(ctx, websocket.MessageBinary, out)
}

func counterIV(n uint32) []byte {
	iv := make([]byte, 12)
	binary.BigEndian.PutUint32(iv[8:], n)
	return iv
}

// readPlain reads one transport frame and decrypts it.
func (f *frameConn) readPlain(ctx context.Context) ([]byte, error) {
	frame, err := f.readFrame(ctx)
	if err != nil {
		return nil, err
	}
	plain, err := f.readKey.Open(nil, counterIV(f.readCount), frame, nil)
	f.readCount++
	if err != nil {
		return nil, fmt.Errorf("decrypt frame: %w", err)
	}
	return plain, nil
}

// writePlain encrypts and writes one transport frame.
func (f *frameConn) writePlain(ctx context.Context, plain []byte) error {
	f.writeMu.Lock()
	defer f.writeMu.Unlock()
	ct := f.writeKey.Seal(nil, counterIV(f.writeCount), plain, nil)
	f.writeCount++
	return f.writeFrame(ctx, ct)
}

// serverNoise is the responder side of Noise_XX_25519_AESGCM_SHA256 as used by
// WhatsApp. whatsmeow's socket.NoiseHandshake does the hashing and AEAD, but
// keeps its chaining key private, so the responder tracks it alongside.
type serverNoise struct {
	nh *socket.NoiseHandshake
	ck []byte
}

func hkdf2(salt, ikm []byte) (a, b []byte, err error) {
	r := hkdf.New(sha256.New, ikm, salt, nil)
	a, b = make([]byte, 32), make([]byte, 32)
	if _, err = io.ReadFull(r, a); err == nil {
		_, err = io.ReadFull(r, b)
	}
	return
}

func (sn *serverNoise) mixDH(priv *[32]byte, pub []byte) error {
	secret, err := curve25519.X25519(priv[:], pub)
	if err != nil {
		return err
	}
	if err = sn.nh.MixIntoKey(secret); err != nil {
		return err
	}
	sn.ck, _, err = hkdf2(sn.ck, secret)
	return err
}

// handshake runs the server side of the handshake on f and leaves f ready
// for transport frames. It returns the client's static noise key and its
// ClientPayload (login or registration).
func (f *frameConn) handshake(ctx context.Context, static *keys.KeyPair) (clientStatic []byte, payload *waWa6.ClientPayload, err error) {
	first, err := f.readFrame(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read client hello: %w", err)
	}
	var hello waWa6.HandshakeMessage
	if err = proto.Unmarshal(first, &hello); err != nil {
		return nil, nil, fmt.Errorf("unmarshal client hello: %w", err)
	}
	clientEph := hello.GetClientHello().GetEphemeral()
	if len(clientEph) != 32 {
		return nil, nil, errors.New("client hello without ephemeral key")
	}

	sn := &serverNoise{nh: socket.NewNoiseHandshake(), ck: []byte(socket.NoiseStartPattern)}
	sn.nh.Start(socket.NoiseStartPattern, f.header)
	sn.nh.Authenticate(clientEph)

	eph := keys.NewKeyPair()
	sn.nh.Authenticate(eph.Pub[:])
	if err = sn.mixDH(eph.Priv, clientEph); err != nil {
		return nil, nil, err
	}
	staticCT := sn.nh.Encrypt(static.Pub[:])
	if err = sn.mixDH(static.Priv, clientEph); err != nil {
		return nil, nil, err
	}
	certCT := sn.nh.Encrypt(certChainFor(static))
	serverHello, err := proto.Marshal(&waWa6.HandshakeMessage{ServerHello: &waWa6.HandshakeMessage_ServerHello{
		Ephemeral: eph.Pub[:],
		Static:    staticCT,
		Payload:   certCT,
	}})
	if err != nil {
		return nil, nil, err
	}
	if err = f.writeFrame(ctx, serverHello); err != nil {
		return nil, nil, fmt.Errorf("write server hello: %w", err)
	}

	finishRaw, err := f.readFrame(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read client finish: %w", err)
	}
	var finish waWa6.HandshakeMessage
	if err = proto.Unmarshal(finishRaw, &finish); err != nil {
		return nil, nil, fmt.Errorf("unmarshal client finish: %w", err)
	}
	clientStatic, err = sn.nh.Decrypt(finish.GetClientFinish().GetStatic())
	if err != nil || len(clientStatic) != 32 {
		return nil, nil, fmt.Errorf("decrypt client static: %v", err)
	}
	if err = sn.mixDH(eph.Priv, clientStatic); err != nil {
		return nil, nil, err
	}
	payloadRaw, err := sn.nh.Decrypt(finish.GetClientFinish().GetPayload())
	if err != nil {
		return nil, nil, fmt.Errorf("decrypt client payload: %w", err)
	}
	payload = &waWa6.ClientPayload{}
	if err = proto.Unmarshal(payloadRaw, payload); err != nil {
		return nil, nil, fmt.Errorf("unmarshal client payload: %w", err)
	}

	clientWrite, clientRead, err := hkdf2(sn.ck, nil)
	if err != nil {
		return nil, nil, err
	}
	if f.readKey, err = gcmutil.Prepare(clientWrite); err != nil {
		return nil, nil, err
	}
	if f.writeKey, err = gcmutil.Prepare(clientRead); err != nil {
		return nil, nil, err
	}
	return clientStatic, payload, nil
}
