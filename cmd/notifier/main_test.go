package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/startup/startuptest"
	"github.com/zapbus/zapbus/internal/testenv"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestSettingsErrorsNameTheVariable(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no database", map[string]string{"ZAPBUS_ADMIN_TOKEN": "0123456789abcdef"}, nil, "DATABASE_URL"},
		{"no admin token", map[string]string{"DATABASE_URL": "postgres://x"}, nil, "ZAPBUS_ADMIN_TOKEN"},
		{"short admin token", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "short"}, nil, "ZAPBUS_ADMIN_TOKEN"},
		{"missing token file", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN_FILE": filepath.Join(dir, "nope")}, nil, "ZAPBUS_ADMIN_TOKEN_FILE"},
		{"bad timeout", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef", "ZAPBUS_COMMAND_TIMEOUT": "soon"}, nil, "ZAPBUS_COMMAND_TIMEOUT"},
		{"bad buffer", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef", "ZAPBUS_STREAM_BUFFER": "-1"}, nil, "ZAPBUS_STREAM_BUFFER"},
		{"bad log level", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef", "ZAPBUS_LOG_LEVEL": "loud"}, nil, "ZAPBUS_LOG_LEVEL"},
		{"short ticket key", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef", "ZAPBUS_TICKET_KEY": "k"}, nil, "ZAPBUS_TICKET_KEY"},
		{"bad flag", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef"}, []string{"-nope"}, "nope"},
		{"bad send rate", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef", "ZAPBUS_SEND_RATE": "fast"}, nil, "ZAPBUS_SEND_RATE"},
		{"bad stream cap", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef", "ZAPBUS_MAX_STREAMS_PER_MENTORADO": "0"}, nil, "ZAPBUS_MAX_STREAMS_PER_MENTORADO"},
		{"bad body timeout", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef", "ZAPBUS_BODY_READ_TIMEOUT": "-1s"}, nil, "ZAPBUS_BODY_READ_TIMEOUT"},
		{"short credentials key", map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef", "ZAPBUS_CREDENTIALS_KEYS": "k1:AAAA"}, nil, "ZAPBUS_CREDENTIALS_KEYS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), tc.args, envOf(tc.env), &out)
			if err == nil || !strings.Contains(err.Error()+out.String(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	// Flags override the environment; the admin token can come from a file.
	tokFile := filepath.Join(dir, "admin")
	if err := os.WriteFile(tokFile, []byte("from-a-file-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := loadSettings([]string{"-http-addr", "127.0.0.1:9999"}, envOf(map[string]string{
		"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN_FILE": tokFile, "ZAPBUS_HTTP_ADDR": "127.0.0.1:1"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Web.AdminToken != "from-a-file-0123456789" || s.HTTPAddr != "127.0.0.1:9999" || s.NATSURL != "nats://127.0.0.1:4222" {
		t.Fatalf("settings %+v", s)
	}
	s, _ = loadSettings(nil, envOf(map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef"}), &bytes.Buffer{})
	if s.HTTPAddr != DefaultHTTPAddr {
		t.Fatalf("default addr %q", s.HTTPAddr)
	}
	// Limits reach web.Config; "off" turns one off.
	s, err = loadSettings([]string{"-send-burst", "3"}, envOf(map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef",
		"ZAPBUS_SEND_RATE": "0.5", "ZAPBUS_STREAM_OPEN_RATE": "off", "ZAPBUS_MAX_STREAMS_PER_MENTORADO": "4", "ZAPBUS_REPLAY_BATCH": "8"}), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Web.SendRate != 0.5 || s.Web.SendBurst != 3 || s.Web.StreamOpenRate != -1 || s.Web.MaxStreamsPerMentorado != 4 || s.Web.ReplayBatch != 8 {
		t.Fatalf("limits %+v", s.Web)
	}
	if s.Web.CredentialKeys != nil {
		t.Fatal("a keyring without ZAPBUS_CREDENTIALS_KEYS")
	}
	// The credentials keyring reaches web.Config.
	s, err = loadSettings(nil, envOf(map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_ADMIN_TOKEN": "0123456789abcdef",
		"ZAPBUS_CREDENTIALS_KEYS": "new:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=,old:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}), &bytes.Buffer{})
	if err != nil || s.Web.CredentialKeys == nil || s.Web.CredentialKeys.Primary() != "new" {
		t.Fatalf("keyring %v %v", s.Web.CredentialKeys, err)
	}
}

func TestRunServesAndShutsDown(t *testing.T) {
	const admin = "notifier-admin-token-0123456789"
	env := map[string]string{
		"DATABASE_URL":          testenv.Postgres(t),
		"NATS_URL":              testenv.NATS(t),
		"ZAPBUS_NATS_PROVISION": "true",
		"ZAPBUS_HTTP_ADDR":      "127.0.0.1:0",
		"ZAPBUS_ADMIN_TOKEN":    admin,
		"ZAPBUS_LOG_LEVEL":      "debug",
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envOf(env), out) }()

	addrRe := regexp.MustCompile(`notifier listening on (http://[0-9.:]+)`)
	var base string
	testenv.Eventually(t, 30*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("run returned early: %v\n%s", err, out.String())
		default:
		}
		m := addrRe.FindStringSubmatch(out.String())
		if m == nil {
			return false
		}
		base = m[1]
		res, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	}, "notifier ready")

	req, _ := http.NewRequest("POST", base+"/v1/admin/mentorados", strings.NewReader(`{"name":"Ana"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	_ = json.NewDecoder(res.Body).Decode(&created)
	res.Body.Close()
	if res.StatusCode != 201 || created.Token == "" {
		t.Fatalf("create mentorado: %d %+v", res.StatusCode, created)
	}
	// An open stream does not hold up shutdown.
	sreq, _ := http.NewRequest("GET", base+"/v1/events", nil)
	sreq.Header.Set("Authorization", "Bearer "+created.Token)
	stream, err := http.DefaultClient.Do(sreq)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("open stream: %v", err)
	}
	defer stream.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if logs := out.String(); strings.Contains(logs, admin) || strings.Contains(logs, created.Token) {
		t.Fatal("secrets in the notifier's output")
	}
}

// TestRunWaitsForPostgresAndNATS: a notifier started while Postgres
// refuses connections and NATS is not running listens at once, answers
// /healthz and a JSON 503 /readyz naming what it waits for, and serves
// the API once both come back.
func TestRunWaitsForPostgresAndNATS(t *testing.T) {
	const admin = "notifier-admin-token-0123456789"
	gate := startuptest.NewGate(t)
	gatedURL, pgAddr := gate.Redirect(t, testenv.Postgres(t))
	natsPort := startuptest.FreePort(t)
	env := map[string]string{
		"DATABASE_URL": gatedURL,
		"NATS_URL":     startuptest.NATSURL(natsPort),
		// ZAPBUS_NATS_PROVISION unset: auto, and this server has no
		// authentication, so the notifier creates the streams itself.

		"ZAPBUS_HTTP_ADDR":   "127.0.0.1:0",
		"ZAPBUS_ADMIN_TOKEN": admin,
	}
	proc := startuptest.Start(t, "notifier", func(ctx context.Context, out io.Writer) error {
		return run(ctx, nil, envOf(env), out)
	})
	base := proc.BaseURL(regexp.MustCompile(`notifier listening on http://([0-9.:]+)`))
	proc.WaitsForPostgresThenNATS(base, gate, pgAddr)
	testenv.NATSServerAt(t, natsPort, t.TempDir())
	proc.WaitReady(base)
	req, _ := http.NewRequest("POST", base+"/v1/admin/mentorados", strings.NewReader(`{"name":"Ana"}`))
	req.Header.Set("Authorization", "Bearer "+admin)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 201 {
		t.Fatalf("create mentorado after start-up: %d", res.StatusCode)
	}
	proc.Stop()
}
