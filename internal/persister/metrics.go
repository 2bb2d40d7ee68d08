package persister

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	reg          *prometheus.Registry
	applied      *prometheus.CounterVec
	batchSize    prometheus.Histogram
	batchSeconds prometheus.Histogram
	dlq          prometheus.Counter
	transient    prometheus.Counter
	lag          prometheus.Gauge
	leadEvents   prometheus.Counter
	// campaignEvents counts campaign progress events published.
	campaignEvents prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_persister_events_applied_total",
			Help: "Events committed to Postgres, by event type.",
		}, []string{"type"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zapbus_persister_batch_size",
			Help:    "Events per applied batch.",
			Buckets: []float64{1, 10, 50, 100, 250, 500, 1000, 2500},
		}),
		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zapbus_persister_batch_duration_seconds",
			Help:    "Time to decode, write and commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		dlq: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_persister_dead_letters_total",
			Help: "Poison events published to WA_DLQ.",
		}),
		transient: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_persister_transient_errors_total",
			Help: "Batches not applied because of a transient failure (retried).",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zapbus_persister_consumer_lag",
			Help: "Events waiting in the durable consumer (NumPending at the last fetch).",
		}),
		leadEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_persister_lead_events_published_total",
			Help: "Lead events published from the outbox (lead_events).",
		}),
		campaignEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_persister_campaign_events_published_total",
			Help: "Campaign progress events published (a campaign's state, reason or counts changed).",
		}),
	}
	m.reg.MustRegister(m.applied, m.batchSize, m.batchSeconds, m.dlq, m.transient, m.lag, m.leadEvents, m.campaignEvents,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, t := range []string{"connection", "message", "receipt", "contact", "media", "group", "history", "lead", "campaign", "sending"} {
		m.applied.WithLabelValues(t)
	}
	return m
}
