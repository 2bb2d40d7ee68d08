package media

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Usage is what one mentorado stores: how many files, how many bytes.
type Usage struct {
	Files int64
	Bytes int64
}

// UsageFunc returns every mentorado's usage (store.MediaObjectQueries.Usage
// reads it from the media_objects ledger).
type UsageFunc func(ctx context.Context) (map[int64]Usage, error)

// UsageCollector is a Prometheus collector of per-tenant storage:
// zapbus_media_stored_bytes{mentorado} and
// zapbus_media_stored_files{mentorado}, read from the ledger on each
// scrape (one grouped query), so every replica of a process reports the
// same numbers. A failed read reports the error to the scrape.
type UsageCollector struct {
	usage   UsageFunc
	timeout time.Duration
	bytes   *prometheus.Desc
	files   *prometheus.Desc
}

// NewUsageCollector returns a collector reading usage on each scrape.
func NewUsageCollector(usage UsageFunc) *UsageCollector {
	return &UsageCollector{
		usage:   usage,
		timeout: 10 * time.Second,
		bytes: prometheus.NewDesc("zapbus_media_stored_bytes",
			"Bytes of media files stored for the mentorado (WA_MEDIA, per the media_objects ledger).", []string{"mentorado"}, nil),
		files: prometheus.NewDesc("zapbus_media_stored_files",
			"Media files stored for the mentorado (WA_MEDIA, per the media_objects ledger).", []string{"mentorado"}, nil),
	}
}

var _ prometheus.Collector = (*UsageCollector)(nil)

// Describe implements prometheus.Collector.
func (c *UsageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.files
}

// Collect implements prometheus.Collector.
func (c *UsageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	usage, err := c.usage(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.bytes, err)
		return
	}
	for m, u := range usage {
		id := strconv.FormatInt(m, 10)
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(u.Bytes), id)
		ch <- prometheus.MustNewConstMetric(c.files, prometheus.GaugeValue, float64(u.Files), id)
	}
}
