// Package wafakeclient points a real whatsmeow client at the standalone fake
// WhatsApp server (cmd/wafake) running in another process. It holds no
// server code: it is what a connector links when an operator deliberately
// runs it against the fake (staging, chaos), see docs/staging.md.
//
// It lives outside internal/wafake on purpose: the import rules
// (internal/archtest) keep the fake server out of every production binary,
// and this package is the only part of the fake a production binary may
// carry.
package wafakeclient

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"go.mau.fi/whatsmeow"
)

// realRoot is WhatsApp's real certificate root, captured before anything
// can replace it; a fake root equal to it is refused.
var realRoot = whatsmeow.WACertPubKey

// Config says where the fake listens and which root key signs its
// certificates.
type Config struct {
	Addr    string   // host:port of the fake's chat/CDN listener
	RootKey [32]byte // the fake's certificate root public key
}

// Parse builds a Config from the two settings (ZAPBUS_WA_FAKE_ADDR and
// ZAPBUS_WA_FAKE_ROOT_KEY). Both must be given and valid: one without the
// other is an error, so the switch cannot be half-enabled by accident.
// Parse("", "") returns ok=false and no error: the real WhatsApp.
func Parse(addr, rootKeyHex string) (cfg Config, ok bool, err error) {
	addr, rootKeyHex = strings.TrimSpace(addr), strings.TrimSpace(rootKeyHex)
	switch {
	case addr == "" && rootKeyHex == "":
		return cfg, false, nil
	case addr == "":
		return cfg, false, errors.New("ZAPBUS_WA_FAKE_ROOT_KEY is set but ZAPBUS_WA_FAKE_ADDR is not: set both to use the fake WhatsApp, or neither")
	case rootKeyHex == "":
		return cfg, false, errors.New("ZAPBUS_WA_FAKE_ADDR is set but ZAPBUS_WA_FAKE_ROOT_KEY is not: set both to use the fake WhatsApp, or neither")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return cfg, false, fmt.Errorf("ZAPBUS_WA_FAKE_ADDR %q: want host:port", addr)
	}
	key, err := hex.DecodeString(rootKeyHex)
	if err != nil || len(key) != len(cfg.RootKey) {
		return cfg, false, fmt.Errorf("ZAPBUS_WA_FAKE_ROOT_KEY: want the fake's %d-byte root public key as hex (cmd/wafake prints it)", len(cfg.RootKey))
	}
	copy(cfg.RootKey[:], key)
	if bytes.Equal(cfg.RootKey[:], realRoot[:]) {
		return cfg, false, errors.New("ZAPBUS_WA_FAKE_ROOT_KEY is WhatsApp's real root key, not a fake's")
	}
	if cfg.RootKey == ([32]byte{}) {
		return cfg, false, errors.New("ZAPBUS_WA_FAKE_ROOT_KEY is all zeros")
	}
	cfg.Addr = addr
	return cfg, true, nil
}

// RootKeyHex is the root key as the setting spells it.
func (c Config) RootKeyHex() string { return hex.EncodeToString(c.RootKey[:]) }

// Install replaces whatsmeow.WACertPubKey with the fake's root key — for the
// whole process: from then on it cannot talk to the real WhatsApp — and
// returns the Configure func to give connector.NewWhatsmeowFactory. Every
// connection of a configured client (chat websocket before and after
// pairing, media CDN) goes to c.Addr.
func Install(c Config) func(*whatsmeow.Client) {
	whatsmeow.WACertPubKey = c.RootKey
	h := HTTPClient(c.Addr)
	return func(cli *whatsmeow.Client) {
		cli.SetPreLoginHTTPClient(h)
		cli.SetWebsocketHTTPClient(h)
		cli.SetMediaHTTPClient(h)
	}
}

// HTTPClient returns an HTTP client whose every connection goes to addr,
// whatever host the URL names. DialTLSContext makes net/http treat the
// plain TCP connection as already past TLS, so wss://web.whatsapp.com and
// https://mmg.whatsapp.net reach the fake without certificates; the
// Noise handshake, checked against the fake's root, is the authentication.
func HTTPClient(addr string) *http.Client {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	return &http.Client{Transport: &http.Transport{
		DialContext:       dial,
		DialTLSContext:    dial,
		DisableKeepAlives: true,
	}}
}
