package startup

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHealthHandler pins the routes, status codes and bodies the connector
// and persister have always served.
func TestHealthHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "zapbus_test_total", Help: "test"}))
	var notReady error
	h := Health{Ready: func(context.Context) error { return notReady }, Metrics: reg}.Handler()
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Body)
		return rec.Code, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthz %d %q", code, body)
	}
	if code, body := get("/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("readyz %d %q", code, body)
	}
	notReady = errors.New("nats disconnected")
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || body != "nats disconnected\n" {
		t.Errorf("readyz not ready %d %q", code, body)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "zapbus_test_total 0") {
		t.Errorf("metrics %d %q", code, body)
	}
	if code, _ := get("/nothing"); code != http.StatusNotFound {
		t.Errorf("unknown path %d", code)
	}
}
