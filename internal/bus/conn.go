package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/event"
)

// What leaves the bus: the operations zapbus's processes perform on their
// NATS connection, so that none of them needs the connection or the
// JetStream handle itself.

// Close closes the connection at once (pending publishes are dropped).
func (b *Bus) Close() { b.NC.Close() }

// Drain unsubscribes, lets subscriptions and pending publishes finish, and
// then closes the connection (in the background).
func (b *Bus) Drain() error { return b.NC.Drain() }

// Connected reports whether the connection is up now.
func (b *Bus) Connected() bool { return b.NC.IsConnected() }

// Status is the connection's state, for readiness answers.
func (b *Bus) Status() nats.Status { return b.NC.Status() }

// Request sends a core NATS request (a command) and waits for its reply
// until ctx ends.
func (b *Bus) Request(ctx context.Context, subject string, data []byte) (*nats.Msg, error) {
	return b.NC.RequestWithContext(ctx, subject, data)
}

// Subscribe receives the core NATS messages published on subject (live
// republished events, QR codes, revocations), not stored ones.
func (b *Bus) Subscribe(subject string, h nats.MsgHandler) (*nats.Subscription, error) {
	return b.NC.Subscribe(subject, h)
}

// PublishCore publishes data on a core NATS subject, unstored (e.g. a
// notice to the other notifiers); Flush confirms the server has it.
func (b *Bus) PublishCore(subject string, data []byte) error { return b.NC.Publish(subject, data) }

// Flush waits until the server has processed everything sent so far (so
// subscriptions made before it are active); ctx must have a deadline.
func (b *Bus) Flush(ctx context.Context) error { return b.NC.FlushWithContext(ctx) }

// Core is the core NATS request/reply part of the connection that a
// command server needs: subscribe (in a queue group), forward a request,
// flush.
type Core interface {
	Subscribe(subject string, h nats.MsgHandler) (*nats.Subscription, error)
	QueueSubscribe(subject, queue string, h nats.MsgHandler) (*nats.Subscription, error)
	RequestMsgWithContext(ctx context.Context, msg *nats.Msg) (*nats.Msg, error)
	Flush() error
}

var _ Core = (*nats.Conn)(nil)

// Core returns the connection as a command server sees it.
func (b *Bus) Core() Core { return b.NC }

// KeyValue opens a provisioned KV bucket (BucketLeases, BucketSends).
func (b *Bus) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	return b.JS.KeyValue(ctx, bucket)
}

// StreamInfo looks a stream up (STREAM.INFO) and returns what the server
// says of it now: configuration and state (e.g. State.LastSeq).
func (b *Bus) StreamInfo(ctx context.Context, stream string) (*jetstream.StreamInfo, error) {
	st, err := b.JS.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return st.CachedInfo(), nil
}

// Purge removes the messages of stream stored on subject.
func (b *Bus) Purge(ctx context.Context, stream, subject string) error {
	st, err := b.JS.Stream(ctx, stream)
	if err != nil {
		return err
	}
	return st.Purge(ctx, jetstream.WithPurgeSubject(subject))
}

// CreateOrUpdateConsumer creates a durable consumer on stream, or updates
// it to cfg (a service joining its shared consumer, with its settings).
func (b *Bus) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return b.JS.CreateOrUpdateConsumer(ctx, stream, cfg)
}

// CreateConsumer creates a consumer on stream, failing if one of that name
// exists with another configuration (the notifier's per-stream replays).
func (b *Bus) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return b.JS.CreateConsumer(ctx, stream, cfg)
}

// DeleteConsumer deletes a consumer of stream.
func (b *Bus) DeleteConsumer(ctx context.Context, stream, name string) error {
	return b.JS.DeleteConsumer(ctx, stream, name)
}

// OrderedConsumer reads stream in order through an ephemeral consumer the
// client recreates on gaps (one-shot reads such as the persister's replay).
func (b *Bus) OrderedConsumer(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	return b.JS.OrderedConsumer(ctx, stream, cfg)
}

// Errors of LiveQR.
var (
	// ErrNoQR: no pairing secret of the mentorado is stored, or the last
	// one expired.
	ErrNoQR = errors.New("bus: no live pairing secret")
	// ErrBadQR: the message stored on the mentorado's QR subject is not a
	// valid qr event of that mentorado.
	ErrBadQR = errors.New("bus: undecodable pairing secret")
)

// LiveQR is a pairing secret read back from WA_QR.
type LiveQR struct {
	Raw        []byte    // the stored envelope, as published
	OccurredAt time.Time // when it was shown
	QR         *event.QR
}

// LiveQR returns the live pairing secret (QR or pairing code) of mentorado
// m: the last message stored on wa.<m>.qr, when it has not expired. The
// connector publishes one per code shown; WA_QR keeps only the last.
// Errors: ErrNoQR, ErrBadQR, or the stream lookup's.
func (b *Bus) LiveQR(ctx context.Context, m int64) (LiveQR, error) {
	st, err := b.JS.Stream(ctx, StreamQR)
	if err != nil {
		return LiveQR{}, fmt.Errorf("bus: qr stream: %w", err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, event.QRSubject(m))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return LiveQR{}, ErrNoQR
	}
	if err != nil {
		return LiveQR{}, fmt.Errorf("bus: read qr: %w", err)
	}
	env, p, err := event.Decode(msg.Data)
	if err != nil {
		return LiveQR{}, fmt.Errorf("%w: %w", ErrBadQR, err)
	}
	if env.MentoradoID != m {
		return LiveQR{}, fmt.Errorf("%w: stored for mentorado %d", ErrBadQR, env.MentoradoID)
	}
	qr, ok := p.(*event.QR)
	if !ok || !qr.ExpiresAt.After(time.Now()) {
		return LiveQR{}, ErrNoQR
	}
	return LiveQR{Raw: msg.Data, OccurredAt: env.OccurredAt, QR: qr}, nil
}
