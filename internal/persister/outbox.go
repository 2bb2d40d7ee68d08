package persister

import (
	"context"
	"encoding/json"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// Lead events (issue #12) go through a transactional outbox: the batch's
// lead statements insert them into lead_events in the transaction that
// changed the lead (store/lead_events.go), and the persister publishes them
// on wa.<m>.evt.lead after the commit, then deletes them. A crash between
// the commit and the publish leaves the rows: Run publishes leftovers when
// it starts and every Config.OutboxInterval. Ids are deterministic
// (event.LeadEventID), so a row published twice is dropped by JetStream as
// a duplicate within its window.
//
// The leads API (issue #13) writes lead events from the notifier, in the
// transaction that changed the lead, and NOTIFYs store.LeadEventsChannel.
// The outbox loop LISTENs on it over a dedicated connection (reconnected
// with backoff when lost, flushing after each reconnect, since
// notifications sent meanwhile are gone), so those events go out within a
// moment; the interval stays the fallback.

// outboxBatch is how many lead events one flush transaction publishes.
const outboxBatch = 500

// FlushLeadEvents publishes every lead event waiting in the outbox and
// deletes them. It returns how many were published; on a publish error the
// rest stay for the next flush.
func (p *Persister) FlushLeadEvents(ctx context.Context) (int, error) {
	total := 0
	for {
		n, err := p.db.FlushLeadEvents(ctx, outboxBatch, p.publishLead)
		total += n
		p.metrics.leadEvents.Add(float64(n))
		if err != nil || n < outboxBatch {
			return total, err
		}
	}
}

// publishLead publishes one outbox row. A row that is not a valid lead
// event cannot be published ever; it is logged (with its id) and dropped
// rather than block the outbox.
func (p *Persister) publishLead(ctx context.Context, e store.LeadEvent) error {
	var l event.Lead
	err := json.Unmarshal(e.Data, &l)
	var env event.Envelope
	if err == nil {
		env, err = event.New(e.MentoradoID, e.EventID, e.OccurredAt, &l)
	}
	if err != nil {
		p.log.Error().Err(err).Str("event", e.EventID).Msg("invalid lead event in the outbox; dropped")
		return nil
	}
	_, err = p.bus.Publish(ctx, env)
	return err
}

// kickOutbox asks the outbox loop to flush (after a commit that wrote lead
// events). It never blocks: one pending kick is enough.
func (p *Persister) kickOutbox() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// outbox publishes leftovers at start, then after each kick (a commit of
// this persister, a notification on store.LeadEventsChannel) and every
// interval, until ctx ends.
func (p *Persister) outbox(ctx context.Context) {
	t := time.NewTicker(p.cfg.OutboxInterval)
	defer t.Stop()
	listening := make(chan struct{})
	go func() { defer close(listening); p.listenLeadEvents(ctx) }()
	defer func() { <-listening }()
	for {
		if n, err := p.FlushLeadEvents(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn().Err(err).Int("published", n).Msg("lead events not all published; will retry")
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-t.C:
		}
	}
}

// listenLeadEvents kicks the outbox on every notification of
// store.LeadEventsChannel until ctx ends. A lost connection is opened again
// after a backoff (RetryMin doubling up to RetryMax); each (re)connection
// kicks the outbox once, for what was notified while nobody listened.
func (p *Persister) listenLeadEvents(ctx context.Context) {
	backoff := p.cfg.RetryMin
	for ctx.Err() == nil {
		ln, err := p.db.ListenLeadEvents(ctx)
		if err == nil {
			backoff = p.cfg.RetryMin
			p.kickOutbox()
			for err == nil {
				if err = ln.Wait(ctx); err == nil {
					p.kickOutbox()
				}
			}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = ln.Close(cctx)
			cancel()
		}
		if ctx.Err() != nil {
			return
		}
		p.log.Warn().Err(err).Dur("retry_in", backoff).Msg("lead events listener lost; outbox falls back to its interval meanwhile")
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, p.cfg.RetryMax)
	}
}
