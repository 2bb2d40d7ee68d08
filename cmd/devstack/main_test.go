package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

// TestDefaultDataDirFollowsTheDatabase: dev binaries against different
// databases (or servers) get different embedded NATS directories by
// default; an explicit one wins.
func TestDefaultDataDirFollowsTheDatabase(t *testing.T) {
	dir := func(env map[string]string, args ...string) string {
		t.Helper()
		s, err := loadSettings(args, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return s.DataDir
	}
	def := dir(nil)
	if def != filepath.Join(os.TempDir(), "zapbus-devstack-zapbus_dev") {
		t.Fatalf("default data dir %q", def)
	}
	other := dir(map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/crm_b?sslmode=disable"})
	if other == def || !strings.HasSuffix(other, "zapbus-devstack-crm_b") {
		t.Fatalf("another database shares or misnames the data dir: %q vs %q", other, def)
	}
	remote := dir(map[string]string{"DATABASE_URL": "postgres://u:secret@db.example:6543/zapbus_dev"})
	if !strings.HasSuffix(remote, "zapbus-devstack-zapbus_dev-db.example-6543") || strings.Contains(remote, "secret") {
		t.Fatalf("data dir for another server %q", remote)
	}
	if flag := dir(nil, "-database-url", "postgres://127.0.0.1/crm_c"); !strings.HasSuffix(flag, "zapbus-devstack-crm_c") {
		t.Fatalf("-database-url not followed: %q", flag)
	}
	if got := dir(map[string]string{"ZAPBUS_DATA_DIR": "/tmp/mine"}); got != "/tmp/mine" {
		t.Fatalf("explicit dir %q", got)
	}
}

// TestSecondDevstackOnSameDataDirFails: a second dev binary on the data
// dir of a running one stops at once with an error naming the directory
// and how to choose another, and the first keeps running.
func TestSecondDevstackOnSameDataDirFails(t *testing.T) {
	dsn := testenv.Postgres(t)
	dir := t.TempDir()
	env := func(k string) string {
		if k == "DATABASE_URL" {
			return dsn
		}
		return ""
	}
	args := []string{"-http-addr", "127.0.0.1:0", "-gateway-addr", "127.0.0.1:0", "-data-dir", dir, "-log", filepath.Join(dir, "devstack.log")}
	ctx, cancel := context.WithCancel(context.Background())
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, env, out) }()
	defer func() { cancel(); <-done }()
	banner := regexp.MustCompile(`dashboard:\s+http://`)
	testenv.Eventually(t, 60*time.Second, func() bool {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("first devstack exited: %v", err)
		default:
		}
		return banner.MatchString(out.String())
	}, "first devstack never started:\n%s", out)

	second := make(chan error, 1)
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	go func() { second <- run(sctx, args, env, io.Discard) }()
	select {
	case err := <-second:
		if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "in use") ||
			!strings.Contains(err.Error(), "ZAPBUS_DATA_DIR") {
			t.Fatalf("second devstack: %v; want an error naming %s and ZAPBUS_DATA_DIR", err, dir)
		}
	case <-time.After(60 * time.Second):
		scancel()
		<-second
		t.Fatal("a second devstack ran on the same data dir")
	}
	select {
	case err := <-done:
		done <- err
		t.Fatalf("first devstack exited after the second one's attempt: %v", err)
	default:
	}
}

// TestNotifierSettingsReachTheDevBinary: the dev binary takes the
// notifier's tunables (limits, timeouts) from the same variables and flags
// as the notifier, and refuses bad ones naming them.
func TestNotifierSettingsReachTheDevBinary(t *testing.T) {
	env := map[string]string{"ZAPBUS_SEND_RATE": "off", "ZAPBUS_MAX_STREAMS_PER_MENTORADO": "3", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef"}
	s, err := loadSettings([]string{"-send-burst", "7"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := s.webConfig()
	if c.SendRate != -1 || c.SendBurst != 7 || c.MaxStreamsPerMentorado != 3 || c.AdminToken != env["ZAPBUS_ADMIN_TOKEN"] {
		t.Fatalf("web config %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.CredentialKeys != nil {
		t.Fatal("a keyring without ZAPBUS_CREDENTIALS_KEYS (run generates one)")
	}
	env["ZAPBUS_CREDENTIALS_KEYS"] = "dev1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	if s, err := loadSettings(nil, func(k string) string { return env[k] }, io.Discard); err != nil || s.webConfig().CredentialKeys.Primary() != "dev1" {
		t.Fatalf("keyring: %v", err)
	}
	env["ZAPBUS_CREDENTIALS_KEYS"] = "dev1:AQEB"
	if _, err := loadSettings(nil, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "ZAPBUS_CREDENTIALS_KEYS") {
		t.Fatalf("short key: %v", err)
	}
	delete(env, "ZAPBUS_CREDENTIALS_KEYS")
	env["ZAPBUS_STREAM_OPEN_RATE"] = "quick"
	if _, err := loadSettings(nil, func(k string) string { return env[k] }, io.Discard); err == nil || !strings.Contains(err.Error(), "ZAPBUS_STREAM_OPEN_RATE") {
		t.Fatalf("bad rate: %v", err)
	}
}
