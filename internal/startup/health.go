package startup

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health is what a worker process (connector, persister) serves on its
// HTTP address once it runs, after the Front's start-up answers: /healthz
// (200 "ok" while the process lives), /readyz (200 "ready", or 503 with
// why not) and /metrics.
type Health struct {
	// Ready returns nil when the process serves; otherwise its error
	// text is the 503 body of /readyz. It gets at most two seconds.
	Ready func(ctx context.Context) error
	// Metrics is the process's Prometheus registry.
	Metrics prometheus.Gatherer
}

// readyTimeout bounds one /readyz check.
const readyTimeout = 2 * time.Second

// Handler serves /healthz, /readyz and /metrics.
func (h Health) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		if err := h.Ready(ctx); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(h.Metrics, promhttp.HandlerOpts{}))
	return mux
}

// ServeHealth takes the Front's socket over (Handoff) and serves h on it.
// The returned stop shuts the server down, letting requests in flight
// finish for at most five seconds.
func (f *Front) ServeHealth(h Health) (stop func()) {
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 5 * time.Second}
	ln := f.Handoff()
	go func() { _ = srv.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
