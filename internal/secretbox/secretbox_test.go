package secretbox

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func key(b byte) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{b}, KeySize)) }

func mustLoad(t *testing.T, keys string) *Keyring {
	t.Helper()
	k, err := Load(env(map[string]string{EnvKeys: keys}))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoundTripAndAAD(t *testing.T) {
	k := mustLoad(t, "k1:"+key(1))
	plain := []byte(`{"access_token":"EAAG-secret"}`)
	sealed, id, err := k.Seal(plain, []byte("zapbus:provider:7:meta"))
	if err != nil {
		t.Fatal(err)
	}
	if id != "k1" || k.Primary() != "k1" {
		t.Fatalf("sealed under %q", id)
	}
	if bytes.Contains(sealed, []byte("secret")) || len(sealed) != NonceSize+len(plain)+16 {
		t.Fatalf("sealed %d bytes: %q", len(sealed), sealed)
	}
	got, err := k.Open(sealed, id, []byte("zapbus:provider:7:meta"))
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("open: %q %v", got, err)
	}
	// Another sealing of the same text differs (random nonce).
	again, _, _ := k.Seal(plain, []byte("zapbus:provider:7:meta"))
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals are equal: nonce reused")
	}
	// Bound to the aad: another mentorado's row does not open.
	if _, err := k.Open(sealed, id, []byte("zapbus:provider:8:meta")); !errors.Is(err, ErrOpen) {
		t.Fatalf("wrong aad: %v", err)
	}
}

func TestUnknownKeyAndTampered(t *testing.T) {
	k := mustLoad(t, "k1:"+key(1))
	sealed, _, err := k.Seal([]byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Open(sealed, "k2", nil); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key id: %v", err)
	}
	for i := range sealed {
		bad := bytes.Clone(sealed)
		bad[i] ^= 1
		if _, err := k.Open(bad, "k1", nil); !errors.Is(err, ErrOpen) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	if _, err := k.Open(sealed[:10], "k1", nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("short: %v", err)
	}
	// Same id, other material: does not open.
	other := mustLoad(t, "k1:"+key(2))
	if _, err := other.Open(sealed, "k1", nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("other key under the same id: %v", err)
	}
}

func TestRotation(t *testing.T) {
	old := mustLoad(t, "old:"+key(1))
	sealed, id, _ := old.Seal([]byte("creds"), []byte("aad"))
	rotated := mustLoad(t, "new:"+key(2)+", old:"+key(1))
	if rotated.Primary() != "new" || strings.Join(rotated.IDs(), ",") != "new,old" {
		t.Fatalf("primary %q ids %v", rotated.Primary(), rotated.IDs())
	}
	got, err := rotated.Open(sealed, id, []byte("aad"))
	if err != nil || string(got) != "creds" {
		t.Fatalf("old key after rotation: %q %v", got, err)
	}
	resealed, nid, _ := rotated.Seal(got, []byte("aad"))
	if nid != "new" {
		t.Fatalf("sealed under %q", nid)
	}
	// Once the old key is dropped, only the re-sealed data opens.
	dropped := mustLoad(t, "new:"+key(2))
	if _, err := dropped.Open(sealed, id, []byte("aad")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("dropped key: %v", err)
	}
	if got, err := dropped.Open(resealed, nid, []byte("aad")); err != nil || string(got) != "creds" {
		t.Fatalf("re-sealed: %q %v", got, err)
	}
}

func TestLoadErrors(t *testing.T) {
	secret := key(7)
	dir := t.TempDir()
	file := filepath.Join(dir, "keys")
	if err := os.WriteFile(file, []byte("f1:"+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := Load(env(map[string]string{EnvKeysFile: file}))
	if err != nil || k.Primary() != "f1" {
		t.Fatalf("file: %v %v", k, err)
	}
	if _, err := Load(env(nil)); !errors.Is(err, ErrNoKey) {
		t.Fatalf("none: %v", err)
	}
	short := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{9}, 16))
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"both", map[string]string{EnvKeys: "a:" + secret, EnvKeysFile: file}, "not both"},
		{"bad base64", map[string]string{EnvKeys: "a:" + secret[:10] + "!!" + secret[12:]}, "not standard base64"},
		{"url base64", map[string]string{EnvKeys: "a:" + strings.NewReplacer("+", "-", "/", "_").Replace(key(0xfb))}, "not standard base64"},
		{"short key", map[string]string{EnvKeys: "a:" + short}, "16 bytes, want 32"},
		{"duplicate", map[string]string{EnvKeys: "a:" + secret + ",a:" + key(8)}, `"a" appears twice`},
		{"no colon", map[string]string{EnvKeys: secret}, "key 1 is not id:base64key"},
		{"bad id", map[string]string{EnvKeys: "a b:" + secret}, "id must be"},
		{"long id", map[string]string{EnvKeys: strings.Repeat("x", 33) + ":" + secret}, "id must be"},
		{"empty second", map[string]string{EnvKeys: "a:" + secret + ","}, "key 2"},
		{"missing file", map[string]string{EnvKeysFile: filepath.Join(dir, "nope")}, "no such file"},
	} {
		_, err := Load(env(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
			continue
		}
		for _, v := range c.env {
			_, b64, _ := strings.Cut(v, ":")
			if len(b64) > 8 && strings.Contains(err.Error(), b64[:8]) {
				t.Errorf("%s: error shows key material: %v", c.name, err)
			}
		}
	}
}

func TestGenerate(t *testing.T) {
	line, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	k, err := Parse(line)
	if err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	sealed, id, _ := k.Seal([]byte("x"), nil)
	if got, err := k.Open(sealed, id, nil); err != nil || string(got) != "x" {
		t.Fatal(got, err)
	}
	other, _ := Generate()
	if other == line {
		t.Fatal("two generated keys are equal")
	}
	if strings.Contains(k.String(), line[strings.IndexByte(line, ':')+1:]) {
		t.Fatal("String shows the key")
	}
}

// FuzzParse: any keyring text parses or fails without panicking, and a
// failure never quotes a key.
func FuzzParse(f *testing.F) {
	f.Add("k1:" + key(1))
	f.Add("a:" + key(1) + ",b:" + key(2))
	f.Add("a:AAAA,,")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := Parse(s)
		if err != nil {
			var ids []string // ids are named in errors; they are not secret
			for _, part := range strings.Split(s, ",") {
				id, _, _ := strings.Cut(part, ":")
				ids = append(ids, id)
			}
			for _, part := range strings.Split(s, ",") {
				_, b64, ok := strings.Cut(part, ":")
				b64 = strings.TrimSpace(b64)
				if ok && len(b64) >= 12 && strings.Contains(err.Error(), b64) && !strings.Contains(strings.Join(ids, ","), b64) {
					t.Fatalf("error quotes key material: %v", err)
				}
			}
			return
		}
		sealed, id, err := k.Seal([]byte("x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := k.Open(sealed, id, nil); err != nil || string(got) != "x" {
			t.Fatal(got, err)
		}
	})
}
