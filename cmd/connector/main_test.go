package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/startup/startuptest"
	"github.com/zapbus/zapbus/internal/testenv"
)

func TestSettingsErrorsNameTheSetting(t *testing.T) {
	cases := map[string]map[string]string{
		"DATABASE_URL":               {},
		"ZAPBUS_LEASE_TTL":           {"DATABASE_URL": "postgres://x", "ZAPBUS_LEASE_TTL": "soon"},
		"ZAPBUS_RESTORE_CONCURRENCY": {"DATABASE_URL": "postgres://x", "ZAPBUS_RESTORE_CONCURRENCY": "-1"},
		"ZAPBUS_LOG_LEVEL":           {"DATABASE_URL": "postgres://x", "ZAPBUS_LOG_LEVEL": "loud"},
	}
	for name, env := range cases {
		err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRunServesHealth(t *testing.T) {
	env := map[string]string{
		"DATABASE_URL":          testenv.Postgres(t),
		"NATS_URL":              testenv.NATS(t),
		"ZAPBUS_NATS_PROVISION": "true",
		"ZAPBUS_HTTP_ADDR":      "127.0.0.1:0",
		"ZAPBUS_LEASE_TTL":      "2s",
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, out) }()
	addrRE := regexp.MustCompile(`"http":"([^"]+)"`)
	var addr string
	testenv.Eventually(t, 30*time.Second, func() bool {
		m := addrRE.FindStringSubmatch(out.String())
		if m == nil {
			return false
		}
		addr = m[1]
		resp, err := http.Get(fmt.Sprintf("http://%s/readyz", addr))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "readyz")
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "zapbus_connector_sessions") {
		t.Fatal("metrics missing session gauge")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return")
	}
}

// TestRunWaitsForPostgresAndNATS: a connector started while Postgres
// refuses connections and NATS is not running stays up with /healthz 200
// and /readyz 503 naming what it waits for, and becomes ready once both
// come back.
func TestRunWaitsForPostgresAndNATS(t *testing.T) {
	gate := startuptest.NewGate(t)
	gatedURL, pgAddr := gate.Redirect(t, testenv.Postgres(t))
	natsPort := startuptest.FreePort(t)
	env := map[string]string{
		"DATABASE_URL":          gatedURL,
		"NATS_URL":              startuptest.NATSURL(natsPort),
		"ZAPBUS_NATS_PROVISION": "true",
		"ZAPBUS_HTTP_ADDR":      "127.0.0.1:0",
		"ZAPBUS_LEASE_TTL":      "2s",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, out) }()
	alive := func() {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("connector exited while a dependency was down: %v\n%s", err, out.String())
		default:
		}
	}
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	addrRE := regexp.MustCompile(`"http_addr":"([^"]+)"`)
	var base string
	testenv.Eventually(t, 20*time.Second, func() bool {
		alive()
		m := addrRE.FindStringSubmatch(out.String())
		if m != nil {
			base = "http://" + m[1]
		}
		return m != nil
	}, "no address logged:\n%s", out)
	testenv.Eventually(t, 20*time.Second, func() bool {
		alive()
		code, body := get(base + "/readyz")
		hc, _ := get(base + "/healthz")
		return hc == http.StatusOK && code == http.StatusServiceUnavailable && strings.Contains(body, "waiting for postgres") &&
			strings.Count(out.String(), "postgres unavailable; retrying") >= 2
	}, "no 503 readyz naming postgres with logged retries:\n%s", out)

	gate.Open(pgAddr)
	testenv.Eventually(t, 30*time.Second, func() bool {
		alive()
		code, body := get(base + "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "waiting for nats") && !strings.Contains(body, "postgres")
	}, "readyz never moved on to waiting for nats:\n%s", out)
	testenv.NATSServerAt(t, natsPort, t.TempDir())
	testenv.Eventually(t, 60*time.Second, func() bool {
		alive()
		code, _ := get(base + "/readyz")
		return code == http.StatusOK
	}, "connector never ready after its dependencies came back:\n%s", out)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return")
	}
}
