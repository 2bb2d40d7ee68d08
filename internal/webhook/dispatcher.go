package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// Config holds the dispatcher's settings. Zero values take the defaults.
type Config struct {
	// Policy decides which URLs may be called (SSRF protection).
	Policy Policy
	// Timeout bounds one delivery attempt, connection included (default 10 s).
	Timeout time.Duration
	// Backoff is the delay before each retry: Backoff[i] after the
	// (i+1)-th failed attempt, with ±20% jitter. The default spans more
	// than 24 hours even at -20%: 5s 30s 2m 5m 10m 30m 1h 2h 4h 8h 8h 8h
	// (13 attempts, 31.8 h). After the last, the event is dead-lettered.
	Backoff []time.Duration
	// AutoPauseAfter pauses an endpoint whose attempts have all failed for
	// this long (default 24 h), with a webhook event. Negative: never.
	AutoPauseAfter time.Duration
	// ReconcileInterval is how often the webhooks table is read again
	// besides the NOTIFY signal (default 10 s).
	ReconcileInterval time.Duration
	// LogKeep is how many delivery attempts are kept per endpoint (default 1000).
	LogKeep int
	// Name identifies this dispatcher in logs and metrics.
	Name string
}

// DefaultBackoff is Config.Backoff's default.
var DefaultBackoff = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 8 * time.Hour, 8 * time.Hour}

// WithDefaults fills zero values.
func (c Config) WithDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if len(c.Backoff) == 0 {
		c.Backoff = DefaultBackoff
	}
	if c.AutoPauseAfter == 0 {
		c.AutoPauseAfter = 24 * time.Hour
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = 10 * time.Second
	}
	if c.LogKeep <= 0 {
		c.LogKeep = 1000
	}
	if c.Name == "" {
		c.Name = "webhooks"
	}
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	c = c.WithDefaults()
	for _, b := range c.Backoff {
		if b <= 0 {
			return errors.New("webhook: backoff delays must be positive")
		}
	}
	if c.Timeout > 5*time.Minute {
		return errors.New("webhook: timeout above 5 minutes")
	}
	return nil
}

// MaxAttempts is how many times an event is tried: len(Backoff)+1.
func (c Config) MaxAttempts() int { return len(c.WithDefaults().Backoff) + 1 }

// AckWait is the webhook consumers' AckWait: one attempt plus a margin for
// settling it. A dispatcher that dies mid-delivery hands the event to
// another one after this long.
func (c Config) AckWait() time.Duration {
	c = c.WithDefaults()
	return c.Timeout + max(c.Timeout/2, time.Second)
}

// Dispatcher delivers webhook events. Any number of dispatchers may run
// against the same database and stream.
type Dispatcher struct {
	cfg     Config
	db      *store.DB
	bus     *bus.Bus
	log     zerolog.Logger
	metrics *metrics
	client  *http.Client
	logs    *logWriter

	kick       chan struct{}
	reconciled atomic.Pointer[error] // the last reconcile's error (nil pointer: none yet)

	running sync.WaitGroup // every pull loop's goroutine

	mu      sync.Mutex
	loops   map[int64]*loop   // running pull loops, by webhook id
	ensured map[string]string // consumer name -> fingerprint of the config last applied
	rowErrs map[int64]string  // the last consumer error logged per webhook
}

// New returns a dispatcher; Run starts it.
func New(cfg Config, db *store.DB, b *bus.Bus, log zerolog.Logger) (*Dispatcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil || b == nil {
		return nil, errors.New("webhook: dispatcher needs a database and a bus")
	}
	cfg = cfg.WithDefaults()
	d := &Dispatcher{
		cfg:     cfg,
		db:      db,
		bus:     b,
		log:     log.With().Str("dispatcher", cfg.Name).Logger(),
		metrics: newMetrics(),
		client:  newClient(cfg.Policy, cfg.Timeout),
		kick:    make(chan struct{}, 1),
		loops:   map[int64]*loop{},
		ensured: map[string]string{},
		rowErrs: map[int64]string{},
	}
	d.logs = newLogWriter(db, cfg.LogKeep, d.log, d.metrics)
	return d, nil
}

// Registry is the dispatcher's own Prometheus registry.
func (d *Dispatcher) Registry() *prometheus.Registry { return d.metrics.reg }

// Reconcile asks the dispatcher to read the webhooks table now (as the
// NOTIFY signal does).
func (d *Dispatcher) Reconcile() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// Run delivers until ctx ends: it reads the webhooks table at start, on
// every NOTIFY on store.WebhooksChannel and every ReconcileInterval, keeps
// one consumer per row and one pull loop per active endpoint. At the end
// it stops the loops (an event in flight is nak'd, so another dispatcher
// takes it at once), flushes the delivery log and returns nil.
func (d *Dispatcher) Run(ctx context.Context) error {
	logCtx, stopLogs := context.WithCancel(context.WithoutCancel(ctx))
	logsDone := make(chan struct{})
	go func() { defer close(logsDone); d.logs.run(logCtx) }()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.listen(ctx) }()

	t := time.NewTicker(d.cfg.ReconcileInterval)
	defer t.Stop()
	backoff := 200 * time.Millisecond
	for {
		err := d.reconcile(ctx)
		if err != nil {
			err = fmt.Errorf("webhook: reconcile: %w", err)
		}
		d.reconciled.Store(&err)
		if err != nil && ctx.Err() == nil {
			d.log.Warn().Err(err).Msg("reconcile webhooks")
			bus.Sleep(ctx, backoff)
			backoff = min(backoff*2, d.cfg.ReconcileInterval)
			d.Reconcile()
		} else {
			backoff = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-d.kick:
		}
		if ctx.Err() != nil {
			break
		}
	}
	d.mu.Lock()
	loops := d.loops
	d.loops = map[int64]*loop{}
	d.mu.Unlock()
	for _, l := range loops {
		l.cancel()
	}
	d.running.Wait() // those too that stopped themselves and are finishing
	wg.Wait()
	stopLogs()
	<-logsDone
	d.log.Info().Msg("webhook dispatcher stopped")
	return nil
}

// Ready reports whether the dispatcher is doing its job: Postgres answers,
// NATS is connected, and the last reconcile succeeded.
func (d *Dispatcher) Ready(ctx context.Context) error {
	if err := d.db.Ready(ctx); err != nil {
		return fmt.Errorf("webhook: postgres: %w", err)
	}
	if !d.bus.Connected() {
		return errors.New("webhook: nats not connected")
	}
	last := d.reconciled.Load()
	if last == nil {
		return errors.New("webhook: not reconciled yet")
	}
	return *last
}

// listen keeps a LISTEN on the webhooks channel, reconnecting when the
// connection is lost.
func (d *Dispatcher) listen(ctx context.Context) {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := d.db.ListenWebhooks(ctx, d.Reconcile)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > time.Minute {
			backoff = 200 * time.Millisecond
		}
		d.log.Warn().Err(err).Dur("retry_in", backoff).Msg("webhook listen lost; reconnecting")
		bus.Sleep(ctx, backoff)
		backoff = min(backoff*2, 10*time.Second)
	}
}

// consumerConfig is the durable consumer of webhook row w.
func (d *Dispatcher) consumerConfig(w *store.Webhook) jetstream.ConsumerConfig {
	types := slices.Clone(w.EventTypes)
	slices.Sort(types)
	types = slices.Compact(types)
	filters := make([]string, 0, len(types))
	for _, t := range types {
		if w.MentoradoID != nil {
			filters = append(filters, event.EventSubject(*w.MentoradoID, event.Type(t)))
		} else {
			filters = append(filters, "wa.*.evt."+t)
		}
	}
	cc := jetstream.ConsumerConfig{
		Durable:        bus.WebhookConsumerName(w.ID, w.Generation),
		Description:    fmt.Sprintf("zapbus webhook %d", w.ID),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        d.cfg.AckWait(),
		MaxDeliver:     -1,
		MaxAckPending:  1,
		FilterSubjects: filters,
	}
	if len(filters) == 1 {
		cc.FilterSubject, cc.FilterSubjects = filters[0], nil
	}
	if w.StartSeq != nil && *w.StartSeq > 0 {
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = uint64(*w.StartSeq)
	} else {
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		st := w.StartTime.UTC()
		cc.OptStartTime = &st
	}
	return cc
}

func fingerprint(cc jetstream.ConsumerConfig) string {
	st := ""
	if cc.OptStartTime != nil {
		st = cc.OptStartTime.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s|%s|%d|%s|%d|%s", cc.FilterSubject, strings.Join(cc.FilterSubjects, ","), cc.DeliverPolicy, st, cc.OptStartSeq, cc.AckWait)
}

// reconcile makes the consumers and the pull loops match the webhooks
// table. Consumers are listed before the rows are read: a consumer in the
// list was made from a row committed before it, so a row missing from the
// later read was really deleted, and a generation in the list is never
// newer than the row's (ids are never reused). So dispatchers with
// different views never delete each other's fresh consumers.
func (d *Dispatcher) reconcile(ctx context.Context) error {
	names, err := d.bus.WebhookConsumerNames(ctx)
	if err != nil {
		return err
	}
	rows, err := d.db.WebhookDispatch().All(ctx)
	if err != nil {
		return err
	}
	have := make(map[string]bool, len(names))
	for _, n := range names {
		have[n] = true
	}
	byID := make(map[int64]*store.Webhook, len(rows))
	counts := map[string]int{}
	for i := range rows {
		w := &rows[i]
		byID[w.ID] = w
		counts[w.State]++
		cc := d.consumerConfig(w)
		fp := fingerprint(cc)
		if have[cc.Durable] && d.ensured[cc.Durable] == fp {
			continue
		}
		if _, err := d.bus.CreateOrUpdateConsumer(ctx, bus.StreamEvents, cc); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// One endpoint's problem (e.g. its start changed without a
			// new generation): logged when it changes, the others go on.
			if msg := err.Error(); d.rowErrs[w.ID] != msg {
				d.rowErrs[w.ID] = msg
				d.log.Error().Err(err).Int64("webhook", w.ID).Str("consumer", cc.Durable).Msg("webhook consumer not created")
			}
			continue
		}
		delete(d.rowErrs, w.ID)
		d.ensured[cc.Durable] = fp
	}
	for _, n := range names {
		id, gen, ok := bus.ParseWebhookConsumerName(n)
		if !ok {
			continue
		}
		if w := byID[id]; w != nil && w.Generation <= gen {
			continue
		}
		if err := d.bus.DeleteWebhookConsumer(ctx, n); err != nil {
			d.log.Warn().Err(err).Str("consumer", n).Msg("webhook consumer not deleted; will retry")
			continue
		}
		delete(d.ensured, n)
		d.log.Info().Str("consumer", n).Msg("webhook consumer deleted")
	}
	for _, s := range event.WebhookStates {
		d.metrics.endpoints.WithLabelValues(string(s)).Set(float64(counts[string(s)]))
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for id, l := range d.loops {
		w := byID[id]
		if w == nil || w.Generation != l.gen || w.State != string(event.WebhookActive) || !d.ensuredName(w) {
			l.cancel()
			delete(d.loops, id)
		}
	}
	for _, w := range rows {
		if w.State != string(event.WebhookActive) || !d.ensuredName(&w) {
			continue
		}
		if l := d.loops[w.ID]; l != nil {
			l.update(w)
			continue
		}
		l := d.startLoop(ctx, w)
		d.loops[w.ID] = l
	}
	for id := range d.rowErrs {
		if byID[id] == nil {
			delete(d.rowErrs, id)
		}
	}
	d.metrics.badConsumer.Set(float64(len(d.rowErrs)))
	return nil
}

func (d *Dispatcher) ensuredName(w *store.Webhook) bool {
	_, ok := d.ensured[bus.WebhookConsumerName(w.ID, w.Generation)]
	return ok
}

// dropLoop forgets l when it is still the running loop of its webhook (it
// stopped itself after changing the endpoint's state).
func (d *Dispatcher) dropLoop(l *loop) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loops[l.id] == l {
		delete(d.loops, l.id)
	}
}
