package webhook

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

type metrics struct {
	reg         *prometheus.Registry
	deliveries  *prometheus.CounterVec
	latency     prometheus.Histogram
	endpoints   *prometheus.GaugeVec
	deadLetters prometheus.Counter
	logDropped  prometheus.Counter
	badConsumer prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_webhook_attempts_total",
			Help: "Webhook delivery attempts, by outcome (delivered, retry, dead, gone, refused).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zapbus_webhook_attempt_duration_seconds",
			Help:    "Time from sending a webhook delivery to its response (or failure).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}),
		endpoints: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zapbus_webhook_endpoints",
			Help: "Webhook endpoints by state (active, paused, disabled), at the last reconcile.",
		}, []string{"state"}),
		deadLetters: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_webhook_dead_letters_total",
			Help: "Webhook events dead-lettered to WA_DLQ after their last attempt.",
		}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_webhook_log_rows_dropped_total",
			Help: "Delivery log rows not written (queue full or Postgres failing).",
		}),
		badConsumer: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zapbus_webhook_consumer_errors",
			Help: "Endpoints whose consumer could not be created or updated at the last reconcile (see the log).",
		}),
	}
	m.reg.MustRegister(m.deliveries, m.latency, m.endpoints, m.deadLetters, m.logDropped, m.badConsumer)
	for _, o := range []string{store.DeliveryDelivered, store.DeliveryRetry, store.DeliveryDead, store.DeliveryGone, store.DeliveryRefused} {
		m.deliveries.WithLabelValues(o)
	}
	for _, s := range event.WebhookStates {
		m.endpoints.WithLabelValues(string(s))
	}
	return m
}
