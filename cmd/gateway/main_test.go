package main

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/testenv"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestSettingsErrorsNameTheVariable(t *testing.T) {
	key, err := secretbox.Generate()
	if err != nil {
		t.Fatal(err)
	}
	base := func(extra ...string) map[string]string {
		m := map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_CREDENTIALS_KEYS": key}
		for i := 0; i+1 < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no database", map[string]string{"ZAPBUS_CREDENTIALS_KEYS": key}, "DATABASE_URL"},
		{"no keys", map[string]string{"DATABASE_URL": "postgres://x"}, "ZAPBUS_CREDENTIALS_KEYS"},
		{"bad keys", base("ZAPBUS_CREDENTIALS_KEYS", "k1:short"), "ZAPBUS_CREDENTIALS_KEYS"},
		{"bad timeout", base("ZAPBUS_GATEWAY_COMMAND_TIMEOUT", "soon"), "ZAPBUS_GATEWAY_COMMAND_TIMEOUT"},
		{"tiny body", base("ZAPBUS_GATEWAY_MAX_BODY", "1KiB"), "ZAPBUS_GATEWAY_MAX_BODY"},
		{"bad log level", base("ZAPBUS_LOG_LEVEL", "loud"), "ZAPBUS_LOG_LEVEL"},
		{"bad provision", base("ZAPBUS_NATS_PROVISION", "maybe"), "ZAPBUS_NATS_PROVISION"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), nil, envOf(tc.env), &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
			if strings.Contains(err.Error(), key) {
				t.Fatal("the error shows the key")
			}
		})
	}
	s, err := loadSettings([]string{"-addr", "127.0.0.1:9999"}, envOf(base("ZAPBUS_META_GRAPH_URL", "http://graph.test/v21.0")), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr != "127.0.0.1:9999" || s.MetaURL != "http://graph.test/v21.0" || s.ZAPIURL != "https://api.z-api.io" || s.Gateway.MaxBody != 1<<20 {
		t.Fatalf("settings %+v", s)
	}
	if s, _ = loadSettings(nil, envOf(base()), &bytes.Buffer{}); s.Addr != DefaultAddr {
		t.Fatalf("default addr %q", s.Addr)
	}
}

func TestRunServesAndShutsDown(t *testing.T) {
	key, err := secretbox.Generate()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"DATABASE_URL":            testenv.Postgres(t),
		"NATS_URL":                testenv.NATS(t),
		"ZAPBUS_NATS_PROVISION":   "true",
		"ZAPBUS_GATEWAY_ADDR":     "127.0.0.1:0",
		"ZAPBUS_CREDENTIALS_KEYS": key,
		"ZAPBUS_LOG_LEVEL":        "debug",
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envOf(env), out) }()
	addrRe := regexp.MustCompile(`gateway listening on (http://[0-9.:]+)`)
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
		return res.StatusCode == http.StatusOK
	}, "gateway ready")
	// A webhook for nobody: 404, answered by the gateway's handler.
	res, err := http.Post(base+"/providers/meta/42/webhook", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("webhook for no mentorado: %d", res.StatusCode)
	}
	if res, err = http.Get(base + "/metrics"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %v", err)
	}
	res.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	_, k, _ := strings.Cut(key, ":")
	if strings.Contains(out.String(), k) {
		t.Fatal("the key is in the gateway's output")
	}
}
