package gateway

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics live in the gateway's own registry, so several gateways in one
// process (tests, the dev binary) never collide.
type metrics struct {
	reg             *prometheus.Registry
	webhooks        *prometheus.CounterVec
	rejected        *prometheus.CounterVec
	duplicates      *prometheus.CounterVec
	published       *prometheus.CounterVec
	publishFailures *prometheus.CounterVec
	mediaFetches    *prometheus.CounterVec
	commands        *prometheus.CounterVec
	connection      *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_gateway_webhooks_total",
			Help: "Provider webhook deliveries by provider and result (accepted, verified, unauthenticated, bad_payload, not_found, too_large, publish_failed, error).",
		}, []string{"provider", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_gateway_webhook_parts_rejected_total",
			Help: "Parts of accepted webhook deliveries the driver dropped (e.g. an entry for another number), by provider.",
		}, []string{"provider"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_gateway_webhook_duplicates_total",
			Help: "Message events of webhook deliveries skipped because the message is already stored (a provider's late retry).",
		}, []string{"provider"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_gateway_events_published_total",
			Help: "Events acknowledged by JetStream, by provider and type.",
		}, []string{"provider", "type"}),
		publishFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_gateway_publish_failures_total",
			Help: "Failed JetStream publishes, by provider and type.",
		}, []string{"provider", "type"}),
		mediaFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_gateway_media_fetches_total",
			Help: "Received files fetched from providers, by provider and result (stored, failed, too_large).",
		}, []string{"provider", "result"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_gateway_commands_total",
			Help: "Commands served, by provider, verb and result code (ok or the error code).",
		}, []string{"provider", "verb", "result"}),
		connection: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_gateway_connection_changes_total",
			Help: "Connection events published from driver calls, by provider and status.",
		}, []string{"provider", "status"}),
	}
	m.reg.MustRegister(m.webhooks, m.rejected, m.duplicates, m.published, m.publishFailures, m.mediaFetches, m.commands, m.connection,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry exposes the gateway's metrics (tests and embedding).
func (g *Gateway) Registry() *prometheus.Registry { return g.metrics.reg }
