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

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/startup/startuptest"
	"github.com/zapbus/zapbus/internal/testenv"
)

func TestSettingsErrorsNameTheSetting(t *testing.T) {
	cases := map[string]map[string]string{
		"DATABASE_URL":               {},
		"ZAPBUS_LEASE_TTL":           {"DATABASE_URL": "postgres://x", "ZAPBUS_LEASE_TTL": "soon"},
		"ZAPBUS_RESTORE_CONCURRENCY": {"DATABASE_URL": "postgres://x", "ZAPBUS_RESTORE_CONCURRENCY": "-1"},
		"ZAPBUS_LOG_LEVEL":           {"DATABASE_URL": "postgres://x", "ZAPBUS_LOG_LEVEL": "loud"},
		"ZAPBUS_MEDIA_MAX_IMAGE":     {"DATABASE_URL": "postgres://x", "ZAPBUS_MEDIA_MAX_IMAGE": "huge"},
		"ZAPBUS_MEDIA_CONCURRENCY":   {"DATABASE_URL": "postgres://x", "ZAPBUS_MEDIA_CONCURRENCY": "0"},
		"ZAPBUS_MEDIA_MAX_AGE":       {"DATABASE_URL": "postgres://x", "ZAPBUS_MEDIA_MAX_AGE": "forever"},
	}
	for name, env := range cases {
		err := run(context.Background(), nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func TestMediaSettings(t *testing.T) {
	env := map[string]string{"DATABASE_URL": "postgres://x", "ZAPBUS_MEDIA_MAX_PTT": "2MiB", "ZAPBUS_MEDIA_CONCURRENCY": "4", "ZAPBUS_MEDIA_REUPLOAD_WAIT": "30s"}
	s, err := loadSettings(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	md := s.Connector.Media
	if md.Limits.For(event.KindPTT) != 2<<20 || md.Limits.For(event.KindImage) != media.DefaultLimits().Image || md.Concurrency != 4 || md.ReuploadWait != 30*time.Second {
		t.Fatalf("media settings %+v", md)
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
	proc := startuptest.Start(t, "connector", func(ctx context.Context, out io.Writer) error {
		return run(ctx, nil, func(k string) string { return env[k] }, out)
	})
	base := proc.BaseURL(startuptest.LoggedHTTPAddr)
	proc.WaitsForPostgresThenNATS(base, gate, pgAddr)
	testenv.NATSServerAt(t, natsPort, t.TempDir())
	proc.WaitReady(base)
	proc.Stop()
}
