package persister

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
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
	return p.ApplyDecoded(ctx, Decode(items))
}

// Decoded is a batch decoded ahead of ApplyDecoded, so decoding the next
// batch can overlap writing the current one.
type Decoded struct {
	items  []Item
	poison []error
	evs    []decoded
}

// Decode decodes and validates items; undecodable ones are already poison.
func Decode(items []Item) *Decoded {
	d := &Decoded{items: items, poison: make([]error, len(items))}
	d.evs = decodeAll(items, d.poison)
	return d
}

// ApplyDecoded is Apply for a batch decoded with Decode. It may be called
// once per Decoded.
//
// The batch's events are split by mentorado into Config.Partitions parts,
// each applied in its own transaction, concurrently (docs/decisions/
// 0013-persister-partitions.md): every transaction locks the mentorados it
// writes, and parts never share a mentorado, so they do not wait on each
// other's locks and Postgres works on several at once. A mentorado's events
// stay in one transaction, in stream order. When a part fails transiently
// the whole batch is retried: parts that committed are applied again,
// which changes nothing (every write is idempotent).
func (p *Persister) ApplyDecoded(ctx context.Context, d *Decoded) ([]error, error) {
	start := time.Now()
	parts := partition(d.evs, p.cfg.Partitions)
	errs := make([]error, len(parts))
	if len(parts) == 1 {
		errs[0] = p.applyPart(ctx, d, parts[0])
	} else {
		var wg sync.WaitGroup
		for i, evs := range parts {
			wg.Go(func() { errs[i] = p.applyPart(ctx, d, evs) })
		}
		wg.Wait()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	p.metrics.batchSize.Observe(float64(len(d.items)))
	p.metrics.batchSeconds.Observe(time.Since(start).Seconds())
	return d.poison, nil
}

// partition splits evs (in stream order) into at most n non-empty parts by
// mentorado, keeping each part in stream order.
func partition(evs []decoded, n int) [][]decoded {
	if n <= 1 || len(evs) == 0 {
		return [][]decoded{evs}
	}
	parts := make([][]decoded, n)
	for _, e := range evs {
		k := int(uint64(e.env.MentoradoID) % uint64(n))
		parts[k] = append(parts[k], e)
	}
	out := parts[:0]
	for _, pt := range parts {
		if len(pt) > 0 {
			out = append(out, pt)
		}
	}
	return out
}

// applyPart applies evs, events of d, in one transaction (bisecting on a
// permanent error), recording poison in d.poison.
func (p *Persister) applyPart(ctx context.Context, d *Decoded, evs []decoded) error {
	poison := d.poison
	var leads int
	if err := p.applyDecoded(ctx, evs, poison, &leads); err != nil {
		p.metrics.transient.Inc()
		return err
	}
	if leads > 0 && p.bus != nil {
		p.kickOutbox()
	}
	for _, e := range evs {
		if poison[e.idx] == nil {
			p.metrics.applied.WithLabelValues(string(e.env.Type)).Inc()
		}
	}
	return nil
}

// decodeAll decodes items (in parallel for big batches: JSON decoding is
// most of the persister's CPU) and returns the valid ones in order,
// recording the others as poison.
func decodeAll(items []Item, poison []error) []decoded {
	all := make([]decoded, len(items))
	decodeRange := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			it := items[i]
			env, pl, err := event.Decode(it.Data)
			if err != nil {
				poison[i] = &PoisonError{Err: fmt.Errorf("decode: %w", err)}
				continue
			}
			if err := checkSubject(it.Subject, env); err != nil {
				poison[i] = err
				continue
			}
			all[i] = decoded{idx: i, seq: it.Seq, env: env, p: pl}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(items)/64+1)
	if workers <= 1 {
		decodeRange(0, len(items))
	} else {
		var wg sync.WaitGroup
		chunk := (len(items) + workers - 1) / workers
		for lo := 0; lo < len(items); lo += chunk {
			wg.Go(func() { decodeRange(lo, min(lo+chunk, len(items))) })
		}
		wg.Wait()
	}
	evs := all[:0]
	for i, d := range all {
		if poison[i] == nil {
			evs = append(evs, d)
		}
	}
	return evs
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
// leads counts the lead events the committed transactions wrote.
func (p *Persister) applyDecoded(ctx context.Context, evs []decoded, poison []error, leads *int) error {
	if len(evs) == 0 {
		return nil
	}
	err := p.tx(ctx, evs, poison, leads)
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
	if err := p.applyDecoded(ctx, evs[:mid], poison, leads); err != nil {
		return err
	}
	return p.applyDecoded(ctx, evs[mid:], poison, leads)
}

// tx is one attempt: look up mentorados and LID mappings, plan, write,
// commit. Two round trips plus begin and commit. It adds the lead events
// it wrote to *leads once committed.
func (p *Persister) tx(ctx context.Context, evs []decoded, poison []error, leads *int) error {
	wrote := 0
	keywords := p.optOutKeywords(ctx, evs)
	err := p.db.InTx(ctx, func(tx pgx.Tx) error {
		wrote = 0
		var lk lookup
		for _, d := range evs {
			lk.add(d)
		}
		b := &pgx.Batch{}
		lk.queue(b)
		pl := newPlanner(&lk)
		pl.optOutKeywords = keywords
		err := lk.read(ctx, tx.SendBatch(ctx, b), pl)
		if err != nil {
			return err
		}
		for _, d := range evs {
			if _, ok := pl.settings[d.env.MentoradoID]; !ok {
				poison[d.idx] = &PoisonError{Err: fmt.Errorf("%w %d", ErrUnknownMentorado, d.env.MentoradoID)}
				continue
			}
			pl.add(d)
		}
		wb := &pgx.Batch{}
		pl.queue(wb)
		if wb.Len() == 0 && len(pl.copyRows) == 0 {
			return nil
		}
		if len(pl.copyRows) > 0 {
			if err := store.CopyMessages(ctx, tx, pl.copyRows); err != nil {
				return fmt.Errorf("copy messages: %w", err)
			}
		}
		if wb.Len() > 0 {
			br := tx.SendBatch(ctx, wb)
			for i, q := range wb.QueuedQueries {
				tag, err := br.Exec()
				if err != nil {
					br.Close()
					return fmt.Errorf("statement %d (%s): %w", i, firstLine(q.SQL), err)
				}
				if leadStatements[q.SQL] {
					wrote += int(tag.RowsAffected())
				}
			}
			if err := br.Close(); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
		if p.beforeCommit != nil {
			p.hookMu.Lock() // parts commit concurrently; the test hooks count
			defer p.hookMu.Unlock()
			if err := p.beforeCommit(ctx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		*leads += wrote
	}
	return err
}

// leadStatements are the statements whose row count is the lead events
// they wrote (their outer statement is the outbox insert).
var leadStatements = map[string]bool{store.LeadsPhoneSQL: true, store.LeadsLIDSQL: true, store.LeadContactNamesSQL: true,
	store.MergeDeleteLeadSQL: true, store.MergeConvertLeadSQL: true}

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
