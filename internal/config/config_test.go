package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnv(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secret, []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"A": "plain", "TOKEN_FILE": secret, "D": "15s", "N": "8",
		"BAD_D": "soon", "NEG_D": "-1s", "BAD_N": "many", "ZERO_N": "0", "MISSING_FILE": "/nonexistent/zapbus",
	}
	e := NewEnv(func(k string) string { return vars[k] })
	if v := e.String("A", "x"); v != "plain" {
		t.Errorf("A = %q", v)
	}
	if v := e.String("TOKEN", ""); v != "s3cret-from-file" {
		t.Errorf("TOKEN from file = %q", v)
	}
	if v := e.String("UNSET", "def"); v != "def" {
		t.Errorf("default = %q", v)
	}
	if d := e.Duration("D", time.Second); d != 15*time.Second {
		t.Errorf("D = %v", d)
	}
	if n := e.Int("N", 1); n != 8 {
		t.Errorf("N = %d", n)
	}
	if e.Err() != nil {
		t.Fatalf("unexpected error: %v", e.Err())
	}
	e.Duration("BAD_D", time.Second)
	e.Duration("NEG_D", time.Second)
	e.Int("BAD_N", 1)
	e.Int("ZERO_N", 1)
	e.String("MISSING", "")
	err := e.Err()
	for _, name := range []string{"BAD_D", "NEG_D", "BAD_N", "ZERO_N", "MISSING_FILE"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestRateAndCap(t *testing.T) {
	vars := map[string]string{"R": "2.5", "ROFF": "off", "C": "7", "COFF": "off", "BAD_R": "-1", "NAN_R": "NaN", "BAD_C": "-3"}
	e := NewEnv(func(k string) string { return vars[k] })
	if r := e.Rate("R", 1); r != 2.5 {
		t.Errorf("R = %v", r)
	}
	if r := e.Rate("ROFF", 1); r != -1 {
		t.Errorf("ROFF = %v, want -1 (off)", r)
	}
	if r := e.Rate("UNSET", 3); r != 3 {
		t.Errorf("default rate = %v", r)
	}
	if c := e.Cap("C", 1); c != 7 {
		t.Errorf("C = %d", c)
	}
	if c := e.Cap("COFF", 1); c != -1 {
		t.Errorf("COFF = %d, want -1 (off)", c)
	}
	if e.Err() != nil {
		t.Fatalf("unexpected error: %v", e.Err())
	}
	e.Rate("BAD_R", 1)
	e.Rate("NAN_R", 1)
	e.Cap("BAD_C", 1)
	for _, name := range []string{"BAD_R", "NAN_R", "BAD_C"} {
		if err := e.Err(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}

func TestLogLevel(t *testing.T) {
	if l, err := LogLevel("debug"); err != nil || l.String() != "debug" {
		t.Fatalf("debug: %v %v", l, err)
	}
	for _, bad := range []string{"", "loud"} {
		if _, err := LogLevel(bad); err == nil || !strings.Contains(err.Error(), "ZAPBUS_LOG_LEVEL") {
			t.Errorf("LogLevel(%q) = %v", bad, err)
		}
	}
}

func TestBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"524288": 524288, "16MiB": 16 << 20, "100MB": 100e6, "1 GiB": 1 << 30, "500KB": 500e3, "2KiB": 2048, "7B": 7,
	} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1MB", "16mb", "16 MB MB", "MiB", "1.5MB", "99999999999GiB", "12XB"} {
		if got, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, got)
		}
	}
	vars := map[string]string{"S": "2MiB", "BAD": "lots"}
	e := NewEnv(func(k string) string { return vars[k] })
	if got := e.Bytes("S", 1); got != 2<<20 {
		t.Errorf("S = %d", got)
	}
	if got := e.Bytes("UNSET", 9); got != 9 {
		t.Errorf("default = %d", got)
	}
	if e.Err() != nil {
		t.Fatal(e.Err())
	}
	if got := e.Bytes("BAD", 9); got != 9 || e.Err() == nil || !strings.Contains(e.Err().Error(), "BAD") {
		t.Errorf("BAD = %d, err %v", got, e.Err())
	}
}
