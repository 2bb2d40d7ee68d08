package web

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics live in the server's own registry, so several servers in one
// process (tests, the dev binary) never collide.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	clients  *prometheus.GaugeVec
	dropped  *prometheus.CounterVec
	commands *prometheus.CounterVec
	rejected *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		clients: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "zapbus_stream_clients",
			Help: "Open live stream clients by transport (sse, ws).",
		}, []string{"transport"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_stream_dropped_total",
			Help: "Stream clients dropped for being too slow, by transport and reason.",
		}, []string{"transport", "reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_commands_total",
			Help: "Commands sent to connectors by verb and result code.",
		}, []string{"verb", "result"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zapbus_http_rejected_total",
			Help: "Requests refused with 429 by limit (send_rate, stream_open_rate, stream_cap).",
		}, []string{"limit"}),
	}
	m.reg.MustRegister(m.requests, m.clients, m.dropped, m.commands, m.rejected,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// metricValue sums a metric's samples whose labels include value (tests and
// debugging).
func (s *Server) metricValue(name, labelValue string) float64 {
	mfs, err := s.metrics.reg.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := labelValue == ""
			for _, l := range m.GetLabel() {
				if l.GetValue() == labelValue {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.Counter.GetValue()
			case m.Gauge != nil:
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}
