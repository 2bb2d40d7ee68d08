package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// The operator console's stream lag: how far a durable consumer (the
// persister's) is behind WA_EVENTS, for the fleet and per mentorado.
// Everything here reads; the probes are ephemeral consumers deleted at
// once (InactiveThreshold is the backstop).

// Backlog is a durable consumer's unacknowledged work.
type Backlog struct {
	// Pending: stored events not yet acknowledged (not yet delivered plus
	// delivered and waiting for their ack).
	Pending uint64
	// AckFloor: the stream sequence up to which everything is acknowledged.
	AckFloor uint64
}

// ConsumerBacklog reads durable's backlog on stream (CONSUMER.INFO).
func (b *Bus) ConsumerBacklog(ctx context.Context, stream, durable string) (Backlog, error) {
	c, err := b.JS.Consumer(ctx, stream, durable)
	if err != nil {
		return Backlog{}, fmt.Errorf("bus: consumer %s: %w", durable, err)
	}
	ci := c.CachedInfo()
	return Backlog{Pending: ci.NumPending + uint64(max(ci.NumAckPending, 0)), AckFloor: ci.AckFloor.Stream}, nil
}

// lagProbePrefix names the probe consumers.
const lagProbePrefix = "notifier_lag_"

func (b *Bus) probe(ctx context.Context, stream, filter string, after uint64) (jetstream.Consumer, string, error) {
	name := lagProbePrefix + nuid.Next()
	c, err := b.JS.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Name:              name,
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       after + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return nil, "", err
	}
	return c, name, nil
}

func (b *Bus) dropProbe(stream, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.JS.DeleteConsumer(ctx, stream, name) // else the server removes it after InactiveThreshold
}

// CountAfter counts the events of stream on filter stored after sequence
// after (e.g. one mentorado's events past a consumer's ack floor).
func (b *Bus) CountAfter(ctx context.Context, stream, filter string, after uint64) (uint64, error) {
	c, name, err := b.probe(ctx, stream, filter, after)
	if err != nil {
		return 0, fmt.Errorf("bus: count %s: %w", filter, err)
	}
	defer b.dropProbe(stream, name)
	return c.CachedInfo().NumPending, nil
}

// FirstAfter returns when the first event of stream on filter stored after
// sequence after was stored; ok is false when there is none.
func (b *Bus) FirstAfter(ctx context.Context, stream, filter string, after uint64) (at time.Time, ok bool, err error) {
	c, name, err := b.probe(ctx, stream, filter, after)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("bus: first after %d: %w", after, err)
	}
	defer b.dropProbe(stream, name)
	if c.CachedInfo().NumPending == 0 {
		return time.Time{}, false, nil
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	batch, err := c.Fetch(1, jetstream.FetchContext(fctx))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("bus: first after %d: %w", after, err)
	}
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			return time.Time{}, false, err
		}
		at, ok = md.Timestamp, true
	}
	if err := batch.Error(); err != nil && !ok && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return time.Time{}, false, fmt.Errorf("bus: first after %d: %w", after, err)
	}
	return at, ok, nil
}
