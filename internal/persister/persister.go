// Package persister turns the WA_EVENTS stream into Postgres state.
//
// A durable pull consumer (shared by every persister process) fetches a
// batch, Apply writes it in one transaction with a handful of set-based
// statements (multi-row upserts over unnest arrays, pipelined in one round
// trip), and the batch is acked only after the commit. Every write is
// idempotent and order-tolerant, so redelivery, several persisters and
// Replay all converge on the same rows:
//
//   - connection: mentorados.wa_status moves only to a newer
//     (occurred_at, stream sequence); phone and JID follow the newest event
//     that carried a phone (wa_phone_at/wa_phone_seq), and are kept when an
//     event omits them.
//   - message: one row per (mentorado, WhatsApp id). Reactions, edits and
//     revokes are rows of their own (kind reaction/edit/revoke, target_id);
//     the latest edit rewrites the target's body (edited = true); a revoke
//     marks the target revoked and clears its body and caption and the
//     text of its edits (the sender deleted it for everyone, so we drop the
//     content and keep a tombstone). Effects are recomputed from those rows
//     whenever the target or one of them lands, so arrival order does not
//     matter. A reaction with empty text means the reaction was removed;
//     readers take the latest reaction row per (target, sender).
//   - leads: an inbound message finds or creates the lead of its phone
//     (source whatsapp; its name from the best source, the push name of
//     the earliest message by (occurred_at, stream sequence) among them,
//     see below); with only a LID, a lead
//     keyed by LID (phone NULL). Every message links to its counterpart's
//     lead once one exists, outbound included.
//   - chats (issue #12): group messages never create or link leads unless
//     the mentorado's group_leads is on; history messages are stored with
//     history = true (a live copy wins) and create leads only for direct
//     chats as history_leads allows; group events keep the newest
//     snapshot in whatsapp_groups. A lead's name comes from the best
//     source (crm > address_book > push > business); lead changes are
//     written to the lead_events outbox in the same transaction and
//     published on wa.<m>.evt.lead after the commit (outbox.go). Lead and
//     history events on the stream are acked without writing.
//   - receipts raise status by rank only; a receipt that comes before its
//     message waits in whatsapp_pending_receipts.
//   - contacts are stored under the phone JID once the phone is known, the
//     LID JID before; each name follows its newest fact by (occurred_at,
//     stream sequence), so a late or redelivered event never moves it
//     back; empty fields never erase known ones (decision 0006).
//   - LIDs: the first event that carries both a LID and a phone records the
//     mapping in whatsapp_lid_phones and merges the LID-only lead and
//     contact into the phone's (messages move to the phone's lead and get
//     the phone), or converts them when the phone has none. Later LID-only
//     events resolve through the mapping.
//
// Each transaction first takes an advisory lock per mentorado in its batch
// (in id order), so persisters sharing the consumer serialize on a tenant
// and never miss each other's pending receipts, orphans or edits; the
// statements run with hash and merge joins off, since they always probe
// big tables with a few hundred keys.
//
// Poison events (undecodable, invalid, unknown mentorado, or rejected by a
// constraint) are isolated from their batch, dead-lettered to WA_DLQ with
// the reason and terminated; transient failures nak the whole batch with
// backoff.
//
// A batch is held unacked only while this process works on it: it is
// reported in progress every AckWait/3 while it is applied, retried or
// queued behind the batch being applied, so JetStream redelivers it to
// another persister only when this one died (after Config.AckWait, 10 s by
// default; docs/decisions/0007-persister-ack-wait.md).
package persister

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/startup"
	"github.com/zapbus/zapbus/internal/store"
)

// Config tunes the persister. Zero values take the defaults.
type Config struct {
	Consumer string        // durable consumer name (default "persister")
	Batch    int           // events per fetch, split into Partitions transactions (default DefaultBatch)
	MaxWait  time.Duration // longest a partial batch is held for more events (default 500 ms; see bus.ConsumeOptions)
	// AckWait is how long JetStream waits for an ack before it redelivers
	// a batch to another persister (default 10 s): the recovery time after
	// a persister dies mid-batch. A batch still being applied or retried is
	// kept alive with InProgress every AckWait/3, so a slow transaction is
	// not redelivered meanwhile. Changing it updates the durable consumer.
	AckWait       time.Duration
	MaxAckPending int           // unacked events the consumer hands out across all persisters (default 20 × Batch)
	RetryMin      time.Duration // first backoff after a transient failure (default 200 ms)
	RetryMax      time.Duration // backoff cap (default 10 s)
	// Partitions is how many transactions a batch is split into, by
	// mentorado, applied concurrently (default 4; 1 applies a batch in one
	// transaction). See ApplyDecoded.
	Partitions int
	// OutboxInterval is how often lead events left in the outbox (a
	// crash between a commit and its publish, NATS down) are published
	// again (default 30 s); a commit that wrote some publishes at once.
	OutboxInterval time.Duration
	// CampaignInterval is how often the campaign progress reporter looks
	// for changed campaigns (default 1 s; campaigns.go), and
	// CampaignFinishedInterval how often it also looks at campaigns that
	// finished in the last 48 h (default 15 s).
	CampaignInterval         time.Duration
	CampaignFinishedInterval time.Duration
}

// WithDefaults fills zero values.
func (c Config) WithDefaults() Config {
	if c.Consumer == "" {
		c.Consumer = "persister"
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.MaxWait == 0 {
		c.MaxWait = 500 * time.Millisecond
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = 20 * c.Batch
	}
	if c.RetryMin == 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 10 * time.Second
	}
	if c.OutboxInterval == 0 {
		c.OutboxInterval = DefaultOutboxInterval
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.CampaignInterval == 0 {
		c.CampaignInterval = DefaultCampaignInterval
	}
	if c.CampaignFinishedInterval == 0 {
		c.CampaignFinishedInterval = max(DefaultCampaignFinishedInterval, c.CampaignInterval)
	}
	return c
}

// DefaultBatch is how many events a persister takes at once: 2,000, split
// by mentorado into DefaultPartitions transactions (decision 0013: four
// times 500 ran 1.5–2× faster than one 500-event transaction at a time).
const DefaultBatch = 2000

// DefaultPartitions is how many concurrent transactions a batch is split
// into (Config.Partitions).
const DefaultPartitions = 4

// DefaultOutboxInterval is how often leftover lead events are published.
const DefaultOutboxInterval = 30 * time.Second

// DefaultAckWait is the persister consumer's AckWait unless configured.
const DefaultAckWait = 10 * time.Second

// Heartbeat is how often a held batch is reported in progress: a third of
// AckWait, so two heartbeats may be lost before JetStream redelivers.
func (c Config) Heartbeat() time.Duration { return c.WithDefaults().AckWait / 3 }

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.Batch < 1 || c.Batch > 10000:
		return fmt.Errorf("persister: batch size %d: want 1 to 10000", c.Batch)
	case c.MaxWait < time.Millisecond:
		return fmt.Errorf("persister: max wait %s: want at least 1ms", c.MaxWait)
	case c.AckWait < time.Second || c.AckWait > time.Hour:
		return fmt.Errorf("persister: ack wait %s: want 1s to 1h", c.AckWait)
	case c.MaxAckPending < c.Batch:
		return fmt.Errorf("persister: max ack pending %d below batch size %d", c.MaxAckPending, c.Batch)
	case c.RetryMin <= 0 || c.RetryMax < c.RetryMin:
		return fmt.Errorf("persister: retry backoff %s..%s is not a range", c.RetryMin, c.RetryMax)
	case c.Partitions < 1 || c.Partitions > 64:
		return fmt.Errorf("persister: partitions %d: want 1 to 64", c.Partitions)
	case c.OutboxInterval < 0:
		return fmt.Errorf("persister: outbox interval %s is negative", c.OutboxInterval)
	case c.CampaignInterval < 10*time.Millisecond || c.CampaignInterval > time.Hour:
		return fmt.Errorf("persister: campaign interval %s: want 10ms to 1h", c.CampaignInterval)
	case c.CampaignFinishedInterval < c.CampaignInterval:
		return fmt.Errorf("persister: campaign finished interval %s below the campaign interval %s", c.CampaignFinishedInterval, c.CampaignInterval)
	}
	return nil
}

// Persister applies WA_EVENTS to Postgres.
type Persister struct {
	cfg     Config
	db      *store.DB
	bus     *bus.Bus
	log     zerolog.Logger
	metrics *metrics
	kick    chan struct{}    // a commit wrote lead events: flush the outbox
	clock   func() time.Time // nil: time.Now (tests)
	optOuts optOutCache

	// Test hooks.
	hookMu       sync.Mutex                  // beforeCommit runs in concurrent transactions
	beforeCommit func(context.Context) error // inside the transaction, after the writes
	afterApply   func()                      // after a commit, before the acks
	onHeartbeat  func()                      // after each in-progress heartbeat of a held batch
}

// New builds a persister. b may be nil when only Apply is used.
func New(cfg Config, db *store.DB, b *bus.Bus, log zerolog.Logger) (*Persister, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("persister: nil database")
	}
	return &Persister{cfg: cfg.WithDefaults(), db: db, bus: b, log: log, metrics: newMetrics(), kick: make(chan struct{}, 1)}, nil
}

// Registry is the persister's own Prometheus registry.
func (p *Persister) Registry() *prometheus.Registry { return p.metrics.reg }

// Ready reports whether Postgres answers and NATS is connected.
func (p *Persister) Ready(ctx context.Context) error {
	if err := p.db.Ready(ctx); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if p.bus != nil && !p.bus.Connected() {
		return fmt.Errorf("nats: %s", p.bus.Status())
	}
	return nil
}

// ConsumerConfig is the durable consumer every persister shares.
func (c Config) ConsumerConfig() jetstream.ConsumerConfig {
	c = c.WithDefaults()
	return jetstream.ConsumerConfig{
		Durable:       c.Consumer,
		Description:   "zapbus persister: WA_EVENTS into Postgres",
		FilterSubject: event.EventsWildcard,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxAckPending: c.MaxAckPending,
		MaxDeliver:    -1,
	}
}

// Run checks that the streams exist (provisioning is an admin step, see
// bus.Open), creates (or joins) the durable consumer and applies batches
// until ctx ends.
func (p *Persister) Run(ctx context.Context) error {
	if p.bus == nil {
		return errors.New("persister: run needs a bus")
	}
	// NATS may go away between the process's start-up and here: wait for
	// it rather than exit (see internal/startup).
	var cons jetstream.Consumer
	err := startup.Waiter{Log: p.log}.Wait(ctx, "persister consumer "+p.cfg.Consumer, func(ctx context.Context) error {
		if err := p.bus.Verify(ctx, bus.StreamEvents, bus.StreamDLQ); err != nil {
			return fmt.Errorf("persister: %w", err)
		}
		// CreateOrUpdate: a changed AckWait or MaxAckPending takes effect
		// on the existing durable consumer.
		c, err := p.bus.CreateOrUpdateConsumer(ctx, bus.StreamEvents, p.cfg.ConsumerConfig())
		if err != nil {
			return fmt.Errorf("persister: consumer %s: %w", p.cfg.Consumer, err)
		}
		cons = c
		return nil
	})
	if err != nil {
		return startup.Interrupted(ctx, err)
	}
	p.log.Info().Str("consumer", p.cfg.Consumer).Int("batch", p.cfg.Batch).Dur("ack_wait", p.cfg.AckWait).Msg("persister running")
	octx, stopOutbox := context.WithCancel(ctx)
	outboxDone := make(chan struct{})
	go func() { defer close(outboxDone); p.outbox(octx) }()
	campaignsDone := make(chan struct{})
	go func() { defer close(campaignsDone); p.campaigns(octx) }()
	err = p.consume(ctx, cons)
	stopOutbox()
	<-outboxDone
	<-campaignsDone
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// consume applies the consumer's batches by the consume contract of
// bus.Consume: each batch is decoded while the one before it is written,
// acked after its commit, nak'd with backoff when the transaction fails, and
// its poison dead-lettered and terminated.
func (p *Persister) consume(ctx context.Context, cons jetstream.Consumer) error {
	return bus.Consume(ctx, p.bus, cons, bus.ConsumeOptions{
		Batch:        p.cfg.Batch,
		MaxWait:      p.cfg.MaxWait,
		Log:          p.log,
		Heartbeat:    p.cfg.Heartbeat(),
		OnHeartbeat:  p.onHeartbeat,
		RetryMin:     p.cfg.RetryMin,
		RetryMax:     p.cfg.RetryMax,
		OnDeadLetter: p.metrics.dlq.Inc,
	}, bus.Handler[*Decoded]{
		Prepare: p.decodeBatch,
		Handle: func(ctx context.Context, _ []jetstream.Msg, dec *Decoded) ([]error, error) {
			poison, err := p.ApplyDecoded(ctx, dec)
			if err == nil && p.afterApply != nil {
				p.afterApply()
			}
			return poison, err
		},
	})
}

// decodeBatch turns pulled messages into decoded items and records the
// consumer's lag.
func (p *Persister) decodeBatch(msgs []jetstream.Msg) *Decoded {
	items := make([]Item, len(msgs))
	for i, m := range msgs {
		items[i] = Item{Subject: m.Subject(), Data: m.Data()}
		if md, err := m.Metadata(); err == nil {
			items[i].Seq = md.Sequence.Stream
			if i == len(msgs)-1 {
				p.metrics.lag.Set(float64(md.NumPending))
			}
		}
	}
	return Decode(items)
}

// deadLetter stores a poison event replay found in WA_DLQ (the consume
// loop's poison goes through bus.Consume).
func (p *Persister) deadLetter(ctx context.Context, it Item, reason error) error {
	p.log.Warn().Err(reason).Str("subject", it.Subject).Uint64("seq", it.Seq).Msg("dead-lettering event")
	if err := p.bus.DeadLetter(ctx, bus.StreamEvents, it.Subject, it.Seq, it.Data, reason); err != nil {
		return err
	}
	p.metrics.dlq.Inc()
	return nil
}
