package webhook

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/store"
)

// The delivery log is written in the background, in batches: attempts are
// queued (dropped and counted when the queue is full, never blocking a
// delivery), flushed every logFlushEvery or logFlushRows rows, and each
// endpoint's log is pruned to LogKeep rows every logPruneEvery. A crash
// loses the last few rows; delivery state is the consumer's, not the log's.
const (
	logQueue      = 8192
	logFlushRows  = 500
	logFlushEvery = 200 * time.Millisecond
	logPruneEvery = 30 * time.Second
)

type logWriter struct {
	db      *store.DB
	keep    int
	log     zerolog.Logger
	metrics *metrics
	queue   chan store.WebhookDelivery
}

func newLogWriter(db *store.DB, keep int, log zerolog.Logger, m *metrics) *logWriter {
	return &logWriter{db: db, keep: keep, log: log, metrics: m, queue: make(chan store.WebhookDelivery, logQueue)}
}

func (w *logWriter) add(row store.WebhookDelivery) {
	select {
	case w.queue <- row:
	default:
		w.metrics.logDropped.Inc()
	}
}

// run writes until ctx ends, then flushes what is queued (bounded).
func (w *logWriter) run(ctx context.Context) {
	flush := time.NewTicker(logFlushEvery)
	defer flush.Stop()
	prune := time.NewTicker(logPruneEvery)
	defer prune.Stop()
	batch := make([]store.WebhookDelivery, 0, logFlushRows)
	touched := map[int64]bool{}
	write := func(ctx context.Context) {
		if len(batch) == 0 {
			return
		}
		if err := w.db.WebhookDispatch().InsertDeliveries(ctx, batch); err != nil {
			w.log.Warn().Err(err).Int("rows", len(batch)).Msg("webhook delivery log not written")
			w.metrics.logDropped.Add(float64(len(batch)))
		}
		for _, r := range batch {
			touched[r.WebhookID] = true
		}
		batch = batch[:0]
	}
	for {
		select {
		case r := <-w.queue:
			batch = append(batch, r)
			if len(batch) >= logFlushRows {
				write(ctx)
			}
		case <-flush.C:
			write(ctx)
		case <-prune.C:
			ids := make([]int64, 0, len(touched))
			for id := range touched {
				ids = append(ids, id)
			}
			clear(touched)
			if _, err := w.db.WebhookDispatch().PruneDeliveries(ctx, ids, w.keep); err != nil {
				w.log.Warn().Err(err).Msg("prune webhook delivery log")
			}
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				select {
				case r := <-w.queue:
					batch = append(batch, r)
					continue
				default:
				}
				break
			}
			write(fctx)
			return
		}
	}
}
