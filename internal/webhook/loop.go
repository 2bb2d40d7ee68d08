package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// loop pulls one endpoint's consumer and delivers its events one at a
// time (the consumer's MaxAckPending is 1, so whichever dispatcher holds
// the endpoint's next event, the others wait: stream order per endpoint).
type loop struct {
	id     int64
	gen    int
	name   string
	cancel context.CancelFunc
	ep     atomic.Pointer[endpoint]
	log    zerolog.Logger

	// Health, known to this loop: a run of failures may be open in the
	// row (so the next success must close it), and when last_success_at
	// was last written.
	failing     atomic.Bool
	lastSuccess time.Time
}

func (l *loop) update(w store.Webhook) {
	l.ep.Store(newEndpoint(w))
	if w.ConsecutiveFailures > 0 {
		l.failing.Store(true)
	}
}

func (d *Dispatcher) startLoop(parent context.Context, w store.Webhook) *loop {
	ctx, cancel := context.WithCancel(parent)
	l := &loop{id: w.ID, gen: w.Generation, name: bus.WebhookConsumerName(w.ID, w.Generation), cancel: cancel,
		log: d.log.With().Int64("webhook", w.ID).Int("generation", w.Generation).Logger()}
	l.update(w)
	d.running.Add(1)
	go func() {
		defer d.running.Done()
		defer cancel()
		d.pull(ctx, l)
	}()
	return l
}

// pull delivers the endpoint's events until ctx ends or the loop stops
// itself (the endpoint was paused or disabled here).
func (d *Dispatcher) pull(ctx context.Context, l *loop) {
	backoff := 100 * time.Millisecond
	fail := func(err error) {
		l.log.Warn().Err(err).Dur("retry_in", backoff).Msg("webhook pull failed")
		bus.Sleep(ctx, backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
	for ctx.Err() == nil {
		cons, err := d.bus.WebhookConsumer(ctx, l.name)
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			continue
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(5*time.Second))
		if err != nil {
			fail(err)
			continue
		}
		for ctx.Err() == nil {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				if errors.Is(err, jetstream.ErrNoHeartbeat) {
					continue
				}
				fail(err)
				break
			}
			backoff = 100 * time.Millisecond
			if stop := d.handle(ctx, l, msg); stop {
				l.cancel()
				d.dropLoop(l)
			}
		}
		// Whatever was pulled but not handled goes back now.
		it.Drain()
		for {
			m, err := it.Next(jetstream.NextMaxWait(100 * time.Millisecond))
			if err != nil {
				break
			}
			_ = m.Nak()
		}
	}
}

// envelopeHead is what the dispatcher reads of an envelope.
type envelopeHead struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	MentoradoID int64  `json:"mentorado_id"`
}

// handle makes one attempt at delivering msg and settles it. It returns
// true when the endpoint left the active state (this loop must stop).
func (d *Dispatcher) handle(ctx context.Context, l *loop, msg jetstream.Msg) (stop bool) {
	ep := l.ep.Load()
	md, err := msg.Metadata()
	if err != nil {
		l.log.Error().Err(err).Msg("webhook message without metadata")
		_ = msg.NakWithDelay(time.Second)
		return false
	}
	var head envelopeHead
	if err := json.Unmarshal(msg.Data(), &head); err != nil || head.ID == "" {
		head.ID = bus.StreamEvents + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	if head.MentoradoID == 0 {
		head.MentoradoID, head.Type, _ = event.ParseSubject(msg.Subject())
	}
	deliveryID := DeliveryID(head.ID)
	attemptN := int(md.NumDelivered)
	maxAttempts := len(d.cfg.Backoff) + 1

	a := d.post(ctx, ep, deliveryID, msg.Data())
	if ctx.Err() != nil {
		// Stopping (shutdown, pause, a new generation): this attempt does
		// not count; another dispatcher, or the resumed endpoint, takes it.
		_ = msg.Nak()
		return false
	}
	d.metrics.latency.Observe(a.latency.Seconds())
	// Settling the attempt finishes even when the loop is being stopped
	// now: its outcome is known and must not be lost.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	now := time.Now()
	row := store.WebhookDelivery{WebhookID: l.id, DeliveryID: deliveryID, EventID: head.ID, EventType: head.Type,
		MentoradoID: head.MentoradoID, StreamSeq: int64(md.Sequence.Stream), Attempt: attemptN,
		LatencyMS: int(a.latency.Milliseconds()), Error: truncate(a.err, 500), AttemptedAt: now}
	if a.status != 0 {
		s := a.status
		row.StatusCode = &s
	}
	log := l.log.With().Str("delivery", deliveryID).Uint64("seq", md.Sequence.Stream).Int("attempt", attemptN).Logger()

	switch {
	case a.ok():
		if err := msg.Ack(); err != nil {
			log.Warn().Err(err).Msg("ack delivered event")
		}
		row.Outcome = store.DeliveryDelivered
		d.record(row)
		d.succeeded(ctx, l, now)
		return false

	case a.gone():
		row.Outcome = store.DeliveryGone
		d.record(row)
		reason := fmt.Sprintf("the receiver answered 410 Gone (event %s, delivery %s)", head.ID, deliveryID)
		d.changeState(ctx, l, ep, event.WebhookDisabled, reason, now, 0, nil)
		// Not acked: resuming the endpoint delivers this event again. Nak'd
		// after the state change, so other dispatchers see it disabled.
		_ = msg.Nak()
		return true
	}

	// A failure: counted, then retried, dead-lettered or the endpoint paused.
	_ = msg.InProgress()
	if a.refused {
		row.Outcome = store.DeliveryRefused
	} else {
		row.Outcome = store.DeliveryRetry
	}
	l.failing.Store(true)
	h, herr := d.db.WebhookDispatch().RecordFailure(ctx, l.id, now)
	if herr != nil {
		log.Warn().Err(herr).Msg("record webhook failure")
	}
	if attemptN >= maxAttempts {
		reason := fmt.Errorf("webhook %d (%s): attempt %d of %d failed: %s", l.id, ep.host, attemptN, maxAttempts, a.err)
		if err := d.bus.DeadLetterWebhook(ctx, l.id, msg.Subject(), md.Sequence.Stream, msg.Data(), reason); err != nil {
			// Not dropped without a dead letter: tried again later.
			log.Error().Err(err).Msg("dead-letter webhook event; will retry")
			d.record(row)
			_ = msg.NakWithDelay(jitter(d.cfg.Backoff[len(d.cfg.Backoff)-1]))
			return false
		}
		row.Outcome = store.DeliveryDead
		d.record(row)
		d.metrics.deadLetters.Inc()
		log.Warn().Str("error", a.err).Msg("webhook event dead-lettered")
		_ = msg.TermWithReason(truncate(reason.Error(), bus.MaxTermReason))
	} else {
		d.record(row)
	}
	if herr == nil && h.State != string(event.WebhookActive) {
		// Paused or disabled meanwhile (by another dispatcher or the
		// user): hand the event back for the resume and stop.
		if row.Outcome != store.DeliveryDead {
			_ = msg.Nak()
		}
		return true
	}
	if herr == nil && d.cfg.AutoPauseAfter > 0 {
		since := h.FailingSince
		if h.StateAt.After(since) {
			since = h.StateAt // resumed since the run began: the clock starts again
		}
		if now.Sub(since) >= d.cfg.AutoPauseAfter {
			reason := fmt.Sprintf("failing for %s (%d consecutive failures); last: %s",
				now.Sub(since).Round(time.Second), h.ConsecutiveFailures, truncate(a.err, 200))
			fs := h.FailingSince
			d.changeState(ctx, l, ep, event.WebhookPaused, reason, now, h.ConsecutiveFailures, &fs)
			if row.Outcome != store.DeliveryDead {
				_ = msg.Nak() // kept for the resume
			}
			return true
		}
	}
	if row.Outcome != store.DeliveryDead {
		delay := jitter(d.cfg.Backoff[min(attemptN, len(d.cfg.Backoff))-1])
		if err := msg.NakWithDelay(delay); err != nil {
			log.Warn().Err(err).Msg("nak webhook event")
		}
		log.Debug().Str("error", a.err).Dur("retry_in", delay).Msg("webhook attempt failed")
	}
	return false
}

// settleTimeout bounds the writes that settle one attempt (health, state,
// dead letter, webhook event).
const settleTimeout = 10 * time.Second

// record queues a delivery log row and counts the outcome.
func (d *Dispatcher) record(row store.WebhookDelivery) {
	d.metrics.deliveries.WithLabelValues(row.Outcome).Inc()
	d.logs.add(row)
}

// successWriteEvery is how often last_success_at is written while an
// endpoint keeps succeeding (a success right after failures is written at
// once).
const successWriteEvery = 30 * time.Second

func (d *Dispatcher) succeeded(ctx context.Context, l *loop, now time.Time) {
	endRun := l.failing.Load()
	if !endRun && now.Sub(l.lastSuccess) < successWriteEvery {
		return
	}
	if err := d.db.WebhookDispatch().RecordSuccess(ctx, l.id, now, endRun); err != nil {
		l.log.Warn().Err(err).Msg("record webhook success")
		return
	}
	l.failing.Store(false)
	l.lastSuccess = now
}

// changeState pauses or disables the endpoint (when it is still active)
// and publishes a webhook event for a mentorado's endpoint.
func (d *Dispatcher) changeState(ctx context.Context, l *loop, ep *endpoint, to event.WebhookState, reason string,
	at time.Time, failures int, failingSince *time.Time) {
	changed, err := d.db.WebhookDispatch().SetState(ctx, l.id, string(event.WebhookActive), string(to), reason, at)
	if err != nil {
		l.log.Error().Err(err).Str("state", string(to)).Msg("change webhook state")
		return
	}
	if !changed {
		return
	}
	l.log.Warn().Str("state", string(to)).Str("reason", reason).Msg("webhook endpoint state changed")
	if ep.row.MentoradoID == nil {
		return
	}
	m := *ep.row.MentoradoID
	env, err := event.New(m, event.WebhookEventID(m, l.id, to, at), at, &event.Webhook{
		WebhookID: l.id, State: to, Reason: reason, Host: ep.host, Failures: failures, FailingSince: failingSince})
	if err == nil {
		_, err = d.bus.Publish(ctx, env)
	}
	if err != nil {
		l.log.Error().Err(err).Msg("publish webhook event")
	}
}

// jitter is d ± 20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
