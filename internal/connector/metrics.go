package connector

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/zapbus/zapbus/internal/event"
)

type metrics struct {
	reg             *prometheus.Registry
	sessions        *prometheus.GaugeVec
	published       *prometheus.CounterVec
	publishFailures *prometheus.CounterVec
	reconnects      *prometheus.CounterVec
	commands        *prometheus.CounterVec
	dropped         prometheus.Counter
	waEventsIgnored *prometheus.CounterVec
	leases          prometheus.Gauge
	fenced          prometheus.Counter
	takeovers       prometheus.Counter
	restoreTotal    prometheus.Gauge
	restoreDone     prometheus.Counter
	mediaDownloads  *prometheus.CounterVec
	mediaQueued     prometheus.Counter
	mediaQueueDepth prometheus.Gauge
	mediaBytes      *prometheus.CounterVec
	mediaSends      *prometheus.CounterVec
	historyMessages prometheus.Counter
	historyChunks   *prometheus.CounterVec
	// republishPending counts sent messages whose event is being published
	// again in the background (republish.go).
	republishPending prometheus.Gauge
}

func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		reg: reg,
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zapbus_connector_sessions", Help: "Sessions owned by this connector, by state.",
		}, []string{"state"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_connector_events_published_total", Help: "Events acknowledged by JetStream, by type.",
		}, []string{"type"}),
		publishFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_connector_publish_failures_total", Help: "Failed JetStream publishes, by type.",
		}, []string{"type"}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_connector_reconnects_total", Help: "Reconnect policy decisions, by reason.",
		}, []string{"reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_connector_commands_total", Help: "Commands received, by verb.",
		}, []string{"verb"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_connector_unconvertible_events_total", Help: "whatsmeow events that could not be converted and were dead-lettered.",
		}),
		waEventsIgnored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_connector_wa_events_ignored_total",
			Help: "whatsmeow events acked without being published or changing state, by Go type and decision (ignored: deliberately, see waconv.Decide; unknown: no decision yet).",
		}, []string{"type", "decision"}),
		leases: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zapbus_connector_leases", Help: "Session leases held by this connector.",
		}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_connector_fenced_total", Help: "Sessions stopped because their lease could not be renewed.",
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_connector_takeovers_total", Help: "Sessions taken over from a released or expired lease.",
		}),
		restoreTotal: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zapbus_connector_restore_sessions", Help: "Sessions to restore at start-up.",
		}),
		restoreDone: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_connector_restore_done_total", Help: "Start-up restores finished.",
		}),
		mediaDownloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_connector_media_downloads_total", Help: "Media download attempts, by result (stored, failed, retry, reupload).",
		}, []string{"result"}),
		mediaQueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_connector_media_queued_total", Help: "Media downloads queued.",
		}),
		mediaQueueDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "zapbus_connector_media_queue_depth", Help: "Media downloads queued for the connected sessions of this connector.",
		}),
		mediaBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_connector_media_bytes_total", Help: "Media bytes downloaded (in) and uploaded to WhatsApp (out).",
		}, []string{"direction"}),
		mediaSends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_connector_media_sends_total", Help: "Media messages sent, by kind.",
		}, []string{"kind"}),
		historyMessages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zapbus_connector_history_messages_total", Help: "Message events published from the phone's history sync.",
		}),
		historyChunks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_connector_history_chunks_total", Help: "History sync chunks, by result (imported, failed, retry).",
		}, []string{"result"}),
	}
	m.republishPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "zapbus_connector_unrecorded_sends", Help: "Messages WhatsApp took whose event is still being published again in the background.",
	})
	reg.MustRegister(m.historyMessages, m.historyChunks, m.republishPending)
	reg.MustRegister(m.sessions, m.published, m.publishFailures, m.reconnects, m.commands, m.dropped, m.waEventsIgnored,
		m.leases, m.fenced, m.takeovers, m.restoreTotal, m.restoreDone,
		m.mediaDownloads, m.mediaQueued, m.mediaQueueDepth, m.mediaBytes, m.mediaSends,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, s := range event.Statuses {
		m.sessions.WithLabelValues(string(s))
	}
	return m
}

// Registry exposes the connector's metrics (for tests and embedding).
func (c *Connector) Registry() *prometheus.Registry { return c.metrics.reg }

// CheckReady reports why the connector cannot serve yet (nil when it can):
// the text of the error is what /readyz answers.
func (c *Connector) CheckReady(ctx context.Context) error {
	switch {
	case !c.ready.Load():
		return errors.New("not running")
	case !c.bus.Connected():
		return errors.New("nats disconnected")
	case c.db.Ready(ctx) != nil:
		return errors.New("postgres unreachable")
	}
	return nil
}
