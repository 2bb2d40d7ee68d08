package wafakeclient

import (
	"encoding/hex"
	"strings"
	"testing"

	"go.mau.fi/whatsmeow"
)

func TestParseRefusesHalfOrWrongSettings(t *testing.T) {
	key := strings.Repeat("ab", 32)
	cases := []struct {
		name, addr, key, wantErr string
	}{
		{"addr only", "127.0.0.1:5290", "", "ZAPBUS_WA_FAKE_ROOT_KEY is not"},
		{"key only", "", key, "ZAPBUS_WA_FAKE_ADDR is not"},
		{"no port", "127.0.0.1", key, "host:port"},
		{"short key", "127.0.0.1:5290", "abcd", "32-byte"},
		{"not hex", "127.0.0.1:5290", strings.Repeat("zz", 32), "32-byte"},
		{"real root", "127.0.0.1:5290", hex.EncodeToString(whatsmeow.WACertPubKey[:]), "real root"},
		{"zero key", "127.0.0.1:5290", strings.Repeat("00", 32), "zeros"},
	}
	for _, c := range cases {
		_, ok, err := Parse(c.addr, c.key)
		if err == nil || ok || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%s: ok %v err %v, want %q", c.name, ok, err, c.wantErr)
		}
	}
	if _, ok, err := Parse("", ""); ok || err != nil {
		t.Fatalf("neither set: ok %v err %v", ok, err)
	}
	cfg, ok, err := Parse(" wafake:5290 ", key)
	if err != nil || !ok || cfg.Addr != "wafake:5290" || cfg.RootKeyHex() != key {
		t.Fatalf("both set: %+v %v %v", cfg, ok, err)
	}
}
