package persister

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zapbus/zapbus/internal/event"
)

// Item is one stored event to apply: the raw envelope and where it sits in
// the stream.
type Item struct {
	Subject string // stream subject; when set it must agree with the envelope
	Seq     uint64 // stream sequence (orders connection events that share a time)
	Data    []byte // encoded envelope
}

// ErrUnknownMentorado marks events of a mentorado that has no row.
var ErrUnknownMentorado = errors.New("unknown mentorado")

// PoisonError wraps why one event can never be applied. Retrying cannot fix
// it: the event goes to the dead-letter stream.
type PoisonError struct{ Err error }

func (e *PoisonError) Error() string { return "poison event: " + e.Err.Error() }
func (e *PoisonError) Unwrap() error { return e.Err }

func poisonf(format string, args ...any) error {
	return &PoisonError{Err: fmt.Errorf(format, args...)}
}

// Apply writes items to Postgres. It returns one entry per item: nil when
// the item is applied (committed), a *PoisonError when it can never be.
// A non-nil error means a transient failure (Postgres unreachable,
// serialization failure, deadlock, cancelled context): nothing is known to
// be applied and the whole batch must be retried. Applying the same items
// again is always safe.
func (p *Persister) Apply(ctx context.Context, items []Item) ([]error, error) {
	start := time.Now()
	poison := make([]error, len(items))
	evs := make([]decoded, 0, len(items))
	for i, it := range items {
		env, pl, err := event.Decode(it.Data)
		if err != nil {
			poison[i] = &PoisonError{Err: fmt.Errorf("decode: %w", err)}
			continue
		}
		if err := checkSubject(it.Subject, env); err != nil {
			poison[i] = err
			continue
		}
		evs = append(evs, decoded{idx: i, seq: it.Seq, env: env, p: pl})
	}
	if err := p.applyDecoded(ctx, evs, poison); err != nil {
		p.metrics.transient.Inc()
		return nil, err
	}
	for _, d := range evs {
		if poison[d.idx] == nil {
			p.metrics.applied.WithLabelValues(string(d.env.Type)).Inc()
		}
	}
	p.metrics.batchSize.Observe(float64(len(items)))
	p.metrics.batchSeconds.Observe(time.Since(start).Seconds())
	return poison, nil
}

func checkSubject(subject string, env event.Envelope) error {
	if env.Type == event.TypeQR {
		return poisonf("qr events are not persisted")
	}
	if subject == "" {
		return nil
	}
	m, kind, err := event.ParseSubject(subject)
	if err != nil {
		return &PoisonError{Err: err}
	}
	if m != env.MentoradoID || kind != string(env.Type) {
		return poisonf("subject %s does not match envelope (mentorado %d, type %s)", subject, env.MentoradoID, env.Type)
	}
	return nil
}

// applyDecoded applies evs in one transaction. On a permanent database
// error it bisects, so the offending event is isolated as poison and the
// rest commits.
func (p *Persister) applyDecoded(ctx context.Context, evs []decoded, poison []error) error {
	if len(evs) == 0 {
		return nil
	}
	err := p.tx(ctx, evs, poison)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("persist batch: %w", ctx.Err())
	}
	if Transient(err) {
		return fmt.Errorf("persist batch: %w", err)
	}
	if len(evs) == 1 {
		poison[evs[0].idx] = &PoisonError{Err: err}
		p.log.Warn().Err(err).Str("event", evs[0].env.ID).Uint64("seq", evs[0].seq).Msg("event rejected by the database")
		return nil
	}
	p.log.Debug().Err(err).Int("events", len(evs)).Msg("permanent error in batch; bisecting")
	mid := len(evs) / 2
	if err := p.applyDecoded(ctx, evs[:mid], poison); err != nil {
		return err
	}
	return p.applyDecoded(ctx, evs[mid:], poison)
}

// tx is one attempt: look up mentorados and LID mappings, plan, write,
// commit. Two round trips plus begin and commit.
func (p *Persister) tx(ctx context.Context, evs []decoded, poison []error) error {
	return pgx.BeginFunc(ctx, p.db.Pool, func(tx pgx.Tx) error {
		seenM := map[int64]bool{}
		var mids []int64
		seenL := map[mkey]bool{}
		var lm []int64
		var ll []string
		for _, d := range evs {
			m := d.env.MentoradoID
			if !seenM[m] {
				seenM[m] = true
				mids = append(mids, m)
			}
			var lid string
			switch pl := d.p.(type) {
			case *event.Message:
				lid = pl.LID
			case *event.Contact:
				lid = normalizeContact(*pl).LID
			}
			if k := (mkey{m, lid}); lid != "" && !seenL[k] {
				seenL[k] = true
				lm, ll = append(lm, m), append(ll, lid)
			}
		}
		b := &pgx.Batch{}
		b.Queue(sqlKnownMentorados, mids)
		if len(lm) > 0 {
			b.Queue(sqlKnownLIDs, lm, ll)
		}
		br := tx.SendBatch(ctx, b)
		rows, _ := br.Query()
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			br.Close()
			return fmt.Errorf("look up mentorados: %w", err)
		}
		known := map[mkey]string{}
		if len(lm) > 0 {
			rows, _ := br.Query()
			var (
				m        int64
				lid, phn string
			)
			_, err := pgx.ForEachRow(rows, []any{&m, &lid, &phn}, func() error {
				known[mkey{m, lid}] = phn
				return nil
			})
			if err != nil {
				br.Close()
				return fmt.Errorf("look up lids: %w", err)
			}
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("look up: %w", err)
		}
		exists := make(map[int64]bool, len(ids))
		for _, id := range ids {
			exists[id] = true
		}

		pl := newPlanner(known)
		for _, d := range evs {
			if !exists[d.env.MentoradoID] {
				poison[d.idx] = &PoisonError{Err: fmt.Errorf("%w %d", ErrUnknownMentorado, d.env.MentoradoID)}
				continue
			}
			pl.add(d)
		}
		wb := &pgx.Batch{}
		pl.queue(wb)
		if wb.Len() == 0 {
			return nil
		}
		br = tx.SendBatch(ctx, wb)
		for i := range wb.QueuedQueries {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return fmt.Errorf("statement %d (%s): %w", i, firstLine(wb.QueuedQueries[i].SQL), err)
			}
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if p.beforeCommit != nil {
			if err := p.beforeCommit(ctx); err != nil {
				return err
			}
		}
		return nil
	})
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// Transient reports whether err is worth retrying: connection failures,
// timeouts, serialization failures, deadlocks, server shutting down or out
// of resources. Other Postgres errors (constraint and data errors) are
// permanent.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock
			return true
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"), // insufficient resources
			strings.HasPrefix(pgErr.Code, "57"), // operator intervention (shutdown, cancel)
			strings.HasPrefix(pgErr.Code, "58"): // system error (I/O)
			return true
		}
		return false
	}
	var poison *PoisonError
	if errors.As(err, &poison) {
		return false
	}
	// Everything else is the network, a closed pool, a timeout or a
	// cancelled context: retry.
	return true
}
