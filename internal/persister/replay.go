package persister

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
)

// ReplayOptions selects what Replay re-applies: events stored since a
// time (Since ago) or from a stream sequence (FromSeq), optionally of one
// mentorado only.
type ReplayOptions struct {
	Since     time.Duration
	FromSeq   uint64
	Mentorado int64
	Progress  io.Writer // a progress line per batch (at most one a second); nil for none
}

// ReplayStats summarises a replay.
type ReplayStats struct {
	Applied      int
	DeadLettered int
	LastSeq      uint64 // the stream's last sequence when the replay started
	Duration     time.Duration
}

// Replay re-applies stored events through an ephemeral ordered consumer,
// up to the stream's last sequence at the start. Writes are idempotent, so
// the result equals a single pass. Transient failures are retried until ctx
// ends; poison events are dead-lettered.
func (p *Persister) Replay(ctx context.Context, opt ReplayOptions) (ReplayStats, error) {
	start := time.Now()
	var st ReplayStats
	if p.bus == nil {
		return st, errors.New("persister: replay needs a bus")
	}
	if (opt.Since > 0) == (opt.FromSeq > 0) {
		return st, errors.New("persister: replay needs exactly one of since and from-seq")
	}
	if err := p.bus.Verify(ctx, bus.StreamEvents, bus.StreamDLQ); err != nil {
		return st, fmt.Errorf("persister: %w", err)
	}
	info, err := p.bus.StreamInfo(ctx, bus.StreamEvents)
	if err != nil {
		return st, fmt.Errorf("persister: replay: %w", err)
	}
	st.LastSeq = info.State.LastSeq
	if st.LastSeq == 0 || (opt.FromSeq > st.LastSeq) {
		st.Duration = time.Since(start)
		return st, nil
	}
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{event.EventsWildcard}}
	if opt.Mentorado > 0 {
		cc.FilterSubjects = []string{event.MentoradoEvents(opt.Mentorado)}
	}
	if opt.FromSeq > 0 {
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = opt.FromSeq
	} else {
		t := time.Now().Add(-opt.Since)
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cc.OptStartTime = &t
	}
	cons, err := p.bus.OrderedConsumer(ctx, bus.StreamEvents, cc)
	if err != nil {
		return st, fmt.Errorf("persister: replay consumer: %w", err)
	}
	// Fetching and decoding the next batch overlaps applying this one.
	fctx, stop := context.WithCancel(ctx)
	defer stop()
	batches := make(chan replayBatch, 1)
	go p.replayFetch(fctx, cons, st.LastSeq, batches)
	var lastProgress time.Time
	for b := range batches {
		if b.err != nil {
			return st, b.err
		}
		n, dl, err := p.applyRetrying(ctx, b.dec)
		st.Applied += n
		st.DeadLettered += dl
		if err != nil {
			return st, err
		}
		if opt.Progress != nil && (b.last || time.Since(lastProgress) >= time.Second) {
			lastProgress = time.Now()
			fmt.Fprintf(opt.Progress, "replay: seq %d/%d, %d applied, %d dead-lettered, %s\n",
				b.seq, st.LastSeq, st.Applied, st.DeadLettered, time.Since(start).Round(time.Millisecond))
		}
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	// Lead events the replay wrote (and any leftovers): published now.
	if _, err := p.FlushLeadEvents(ctx); err != nil {
		p.log.Warn().Err(err).Msg("lead events not all published after the replay; the running persister will")
	}
	st.Duration = time.Since(start)
	return st, nil
}

// replayBatch is one fetched and decoded batch of a replay, or the error
// that ended the fetching.
type replayBatch struct {
	dec  *Decoded
	seq  uint64 // stream sequence of its last event
	last bool   // the replay's final batch
	err  error
}

// replayFetch fetches cons's events up to lastSeq in batches, decodes them
// and sends them to out, which it closes at the end. A fetch asks for no
// more than the consumer still has pending (so the last one does not wait
// MaxWait for events that will not come).
func (p *Persister) replayFetch(ctx context.Context, cons jetstream.Consumer, lastSeq uint64, out chan<- replayBatch) {
	defer close(out)
	want := p.cfg.Batch
	for done := false; !done; {
		if ctx.Err() != nil {
			return
		}
		batch, err := cons.Fetch(want, jetstream.FetchMaxWait(p.cfg.MaxWait))
		if err != nil {
			out <- replayBatch{err: fmt.Errorf("persister: replay fetch: %w", err)}
			return
		}
		var items []Item
		var seq uint64
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream > lastSeq {
				done = true
				break
			}
			seq = md.Sequence.Stream
			items = append(items, Item{Subject: m.Subject(), Seq: seq, Data: m.Data()})
			if seq == lastSeq || md.NumPending == 0 {
				done = true
			}
			want = int(min(uint64(p.cfg.Batch), max(md.NumPending, 1)))
		}
		if len(items) == 0 && !done {
			ci, err := cons.Info(ctx)
			if err != nil {
				out <- replayBatch{err: fmt.Errorf("persister: replay: %w", err)}
				return
			}
			if ci.NumPending == 0 {
				done = true
			}
			continue
		}
		if len(items) == 0 {
			return
		}
		select {
		case out <- replayBatch{dec: Decode(items), seq: seq, last: done}:
		case <-ctx.Done():
			return
		}
	}
}

// applyRetrying applies a decoded batch, retrying transient failures with
// backoff (decoding again, so poison found by a failed attempt does not
// carry over), and dead-letters poison. It returns how many were applied
// and dead-lettered.
func (p *Persister) applyRetrying(ctx context.Context, d *Decoded) (int, int, error) {
	backoff := p.cfg.RetryMin
	items := d.items
	for {
		poison, err := p.ApplyDecoded(ctx, d)
		if err == nil {
			applied, dl := 0, 0
			for i, perr := range poison {
				if perr == nil {
					applied++
					continue
				}
				if err := p.deadLetter(ctx, items[i], perr); err != nil {
					return applied, dl, err
				}
				dl++
			}
			return applied, dl, nil
		}
		if ctx.Err() != nil {
			return 0, 0, err
		}
		p.log.Warn().Err(err).Dur("retry_in", backoff).Msg("replay batch not applied; will retry")
		bus.Sleep(ctx, backoff)
		backoff = min(backoff*2, p.cfg.RetryMax)
		d = Decode(items)
	}
}
