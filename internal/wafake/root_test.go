package wafake

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/util/keys"
)

// TestRootKeyFile: the root key file is created once and read back the
// same, and a malformed one is refused.
func TestRootKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "root.key")
	a, err := LoadOrCreateRootKey(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %v, mode %v; want 0600", err, st.Mode())
	}
	b, err := LoadOrCreateRootKey(path)
	if err != nil || a != b {
		t.Fatalf("second load: %v, same key %v", err, a == b)
	}
	if a == ([32]byte{}) {
		t.Fatal("zero key")
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("not hex\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateRootKey(bad); err == nil {
		t.Fatal("malformed key file accepted")
	}
}

// TestInstallRootKey: the root is process-global, so whichever came first
// wins; InstallRootKey says whether its key is the one installed, and
// whatsmeow trusts exactly RootPublicKey.
func TestInstallRootKey(t *testing.T) {
	var priv [32]byte
	copy(priv[:], "a fixed root key for this test!!")
	want := keys.NewKeyPairFromPrivateKey(priv).Pub
	err := InstallRootKey(priv)
	got := RootPublicKey()
	switch {
	case err == nil && got != *want:
		t.Fatal("InstallRootKey succeeded but another root is installed")
	case errors.Is(err, ErrRootInstalled) && got == *want:
		t.Fatal("ErrRootInstalled for the installed key")
	case err != nil && !errors.Is(err, ErrRootInstalled):
		t.Fatal(err)
	}
	if !bytes.Equal(whatsmeow.WACertPubKey[:], got[:]) {
		t.Fatal("whatsmeow does not trust RootPublicKey")
	}
	if err == nil && InstallRootKey(priv) != nil {
		t.Fatal("installing the same key twice failed")
	}
}
