// Package bus is zapbus's JetStream layer: connecting with sane reconnect
// options, a per-service inbox prefix and a server version check,
// provisioning the streams and KV buckets (an admin step; services only
// verify that theirs exist), publishing envelopes with their deterministic
// Nats-Msg-Id and waiting for the PubAck, and consuming durable pull
// consumers in batches by one contract (Consume: ack after the handler,
// nak with backoff on failure, dead-letter then term on poison). Callers
// go through Bus's methods, never the connection itself.
package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
)

// Stream and bucket names.
const (
	StreamEvents = "WA_EVENTS"
	StreamQR     = "WA_QR"
	StreamDLQ    = "WA_DLQ"
	BucketLeases = "WA_LEASES"
	BucketSends  = "WA_SENDS"
	// BucketMedia is the object store of media files (internal/media);
	// StreamMedia is its stream, as Requires and Verify name it.
	BucketMedia = media.Bucket
	StreamMedia = "OBJ_" + BucketMedia

	// LivePrefix is where WA_EVENTS republishes what it stored, for live
	// fan-out: live.wa.<mentorado>.evt.<type>, with Nats-Sequence headers.
	// A core subscriber there sees each stored event once, never the
	// duplicates the stream dropped.
	LivePrefix = "live."
	// DLQSubjectPrefix + stream name is where dead letters go.
	DLQSubjectPrefix = "zapbus.dlq."
)

// Headers set on dead letters.
const (
	HeaderError           = "Zapbus-Error"
	HeaderOriginalSubject = "Zapbus-Original-Subject"
	HeaderOriginalStream  = "Zapbus-Original-Stream"
	HeaderOriginalSeq     = "Zapbus-Original-Sequence"
)

// Config holds stream and bucket settings. Zero values take the defaults.
type Config struct {
	EventsMaxAge    time.Duration // WA_EVENTS retention (default 7 days)
	EventsMaxBytes  int64         // WA_EVENTS byte cap (default unlimited, -1)
	DuplicateWindow time.Duration // dedupe window for Nats-Msg-Id (default 10 minutes)
	QRMaxAge        time.Duration // WA_QR retention (default 2 minutes)
	DLQMaxAge       time.Duration // WA_DLQ retention (default 30 days)
	Replicas        int           // stream replicas (default 1; 3 in a cluster)
	LeaseTTL        time.Duration // WA_LEASES key TTL (default 15 s)
	SendsTTL        time.Duration // WA_SENDS (idempotent send ids) TTL (default 24 h)
	// MediaMaxAge is WA_MEDIA's retention: files older than this are
	// removed by the server. Zero keeps the server's setting (forever on
	// creation); MediaForever (negative) sets "forever" explicitly.
	MediaMaxAge  time.Duration
	SyncInterval time.Duration // informational: set sync_interval on the server (nats.conf)

	// Provision makes Open create or update the streams and buckets. Only
	// the admin step (zapbus-admin provision), the dev binary and tests set
	// it: service users are not allowed to, and Open only verifies that
	// the objects the service needs exist (ErrNotProvisioned otherwise).
	Provision bool
	// ProvisionIfMissing makes Open provision when verifying finds the
	// service's objects missing or outdated, instead of returning
	// ErrNotProvisioned: the "auto" setting on a server without
	// authentication (a development or test server), where nobody runs an
	// admin step.
	ProvisionIfMissing bool
}

// MediaForever as Config.MediaMaxAge keeps media files forever.
const MediaForever time.Duration = -1

// WithDefaults fills zero values.
func (c Config) WithDefaults() Config {
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = 7 * 24 * time.Hour
	}
	if c.EventsMaxBytes == 0 {
		c.EventsMaxBytes = -1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 10 * time.Minute
	}
	if c.QRMaxAge == 0 {
		c.QRMaxAge = 2 * time.Minute
	}
	if c.DLQMaxAge == 0 {
		c.DLQMaxAge = 30 * 24 * time.Hour
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 15 * time.Second
	}
	if c.SendsTTL == 0 {
		c.SendsTTL = 24 * time.Hour
	}
	return c
}

// Validate reports settings that cannot work.
func (c Config) Validate() error {
	c = c.WithDefaults()
	switch {
	case c.EventsMaxAge < time.Minute:
		return errors.New("bus: events max age below one minute")
	case c.DuplicateWindow > c.EventsMaxAge:
		return errors.New("bus: duplicate window longer than events max age")
	case c.Replicas < 1 || c.Replicas > 5:
		return errors.New("bus: replicas must be 1 to 5")
	case c.LeaseTTL < time.Second:
		return errors.New("bus: lease TTL below one second")
	case c.MediaMaxAge > 0 && c.MediaMaxAge < time.Hour:
		return errors.New("bus: media retention below one hour (files would vanish before a message is read)")
	}
	return nil
}

// Connect dials NATS with options suited to long-running services: reconnect
// forever with jitter, buffer while reconnecting, and log state changes.
func Connect(url, name string, log zerolog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	base := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.RetryOnFailedConnect(true),
		nats.PingInterval(10 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // closed on purpose
			}
			log.Warn().Err(err).Msg("nats disconnected")
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("nats reconnected")
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Error().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("nats async error")
		}),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect %s: %w", name, err)
	}
	return nc, nil
}

// Bus publishes, consumes and provisions on one NATS connection. Callers
// use its methods (conn.go, consume.go): no production package outside bus
// touches NC or JS, which stay exported only for tests that set up or
// inspect the server's state directly (an import guard cannot tell; a
// review can).
type Bus struct {
	NC  *nats.Conn          // tests only, outside this package
	JS  jetstream.JetStream // tests only, outside this package
	cfg Config
	raw Config // as given: zero fields were not chosen by this process
	// requires names the streams (KV buckets as KV_<bucket>) Ensure
	// verifies: Requires(name) of the service that Opened it.
	requires []string
}

// New wraps a connection.
func New(nc *nats.Conn, cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	return &Bus{NC: nc, JS: js, cfg: cfg.WithDefaults(), raw: cfg}, nil
}

// Config returns the effective configuration.
func (b *Bus) Config() Config { return b.cfg }

// StreamConfigs returns the configuration of every zapbus stream.
func (c Config) StreamConfigs() []jetstream.StreamConfig {
	c = c.WithDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        StreamEvents,
			Description: "zapbus WhatsApp events: connection, message, receipt, contact",
			Subjects:    []string{event.EventsWildcard},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      c.EventsMaxAge,
			MaxBytes:    c.EventsMaxBytes,
			MaxMsgSize:  event.MaxEnvelopeBytes,
			Duplicates:  c.DuplicateWindow,
			Replicas:    c.Replicas,
			Discard:     jetstream.DiscardOld,
			RePublish: &jetstream.RePublish{
				Source:      event.EventsWildcard,
				Destination: LivePrefix + "wa.{{wildcard(1)}}.evt.>",
			},
		},
		{
			Name:              StreamQR,
			Description:       "zapbus pairing secrets (QR and pairing codes), short-lived",
			Subjects:          []string{event.QRWildcard},
			Retention:         jetstream.LimitsPolicy,
			Storage:           jetstream.MemoryStorage,
			MaxAge:            c.QRMaxAge,
			MaxMsgsPerSubject: 1,
			Duplicates:        min(c.QRMaxAge, time.Minute),
			Replicas:          c.Replicas,
			Discard:           jetstream.DiscardOld,
		},
		{
			Name:        StreamDLQ,
			Description: "zapbus dead letters: events no consumer could apply, with the reason",
			Subjects:    []string{DLQSubjectPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      c.DLQMaxAge,
			Duplicates:  c.DuplicateWindow,
			Replicas:    c.Replicas,
		},
	}
}

// Provision creates or updates the streams and KV buckets. It is safe to
// run from every process at every start, concurrently. Subjects, storage and
// republishing always follow this build; retention, dedupe window, replicas
// and TTLs follow this process's Config only where it set them explicitly,
// and otherwise keep what the server has (the defaults apply on creation).
// So a notifier started with defaults never resets the lease TTL or the
// retention that the connector or ops chose.
func (b *Bus) Provision(ctx context.Context) error {
	for _, sc := range b.cfg.StreamConfigs() {
		if existing, err := b.JS.Stream(ctx, sc.Name); err == nil {
			b.keepTunables(&sc, existing.CachedInfo().Config)
		} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("bus: provision stream %s: %w", sc.Name, err)
		}
		if _, err := b.JS.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("bus: provision stream %s: %w", sc.Name, err)
		}
	}
	for _, kc := range b.cfg.BucketConfigs() {
		if existing, err := b.JS.KeyValue(ctx, kc.Bucket); err == nil {
			st, err := existing.Status(ctx)
			if err != nil {
				return fmt.Errorf("bus: provision bucket %s: %w", kc.Bucket, err)
			}
			b.keepBucketTunables(&kc, st)
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("bus: provision bucket %s: %w", kc.Bucket, err)
		}
		if _, err := b.JS.CreateOrUpdateKeyValue(ctx, kc); err != nil {
			return fmt.Errorf("bus: provision bucket %s: %w", kc.Bucket, err)
		}
	}
	for _, oc := range b.cfg.ObjectStoreConfigs() {
		if existing, err := b.JS.ObjectStore(ctx, oc.Bucket); err == nil {
			st, err := existing.Status(ctx)
			if err != nil {
				return fmt.Errorf("bus: provision object store %s: %w", oc.Bucket, err)
			}
			if b.raw.Replicas == 0 {
				oc.Replicas = st.Replicas()
			}
			if b.raw.MediaMaxAge == 0 {
				oc.TTL = st.TTL()
			}
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			return fmt.Errorf("bus: provision object store %s: %w", oc.Bucket, err)
		}
		if _, err := b.JS.CreateOrUpdateObjectStore(ctx, oc); err != nil {
			return fmt.Errorf("bus: provision object store %s: %w", oc.Bucket, err)
		}
	}
	return nil
}

// ObjectStoreConfigs returns the object store buckets: WA_MEDIA, the
// media files, on file storage, kept forever unless MediaMaxAge is set.
func (c Config) ObjectStoreConfigs() []jetstream.ObjectStoreConfig {
	c = c.WithDefaults()
	return []jetstream.ObjectStoreConfig{{
		Bucket:      BucketMedia,
		Description: "zapbus media files per mentorado (<mentorado>/<sha256>), docs/decisions/0011-media.md",
		TTL:         max(c.MediaMaxAge, 0),
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}}
}

// MediaStore binds the provisioned media bucket (WA_MEDIA) as a
// media.Store for this bus's user.
func (b *Bus) MediaStore(ctx context.Context, opts ...media.Option) (*media.ObjectStore, error) {
	return media.NewObjectStore(ctx, b.JS, BucketMedia, opts...)
}

// keepTunables copies into sc the server's values of settings this process
// did not choose.
func (b *Bus) keepTunables(sc *jetstream.StreamConfig, have jetstream.StreamConfig) {
	if b.raw.Replicas == 0 {
		sc.Replicas = have.Replicas
	}
	if b.raw.DuplicateWindow == 0 && sc.Name != StreamQR {
		sc.Duplicates = have.Duplicates
	}
	switch sc.Name {
	case StreamEvents:
		if b.raw.EventsMaxAge == 0 {
			sc.MaxAge = have.MaxAge
		}
		if b.raw.EventsMaxBytes == 0 {
			sc.MaxBytes = have.MaxBytes
		}
	case StreamQR:
		if b.raw.QRMaxAge == 0 {
			sc.MaxAge = have.MaxAge
			sc.Duplicates = have.Duplicates
		}
	case StreamDLQ:
		if b.raw.DLQMaxAge == 0 {
			sc.MaxAge = have.MaxAge
		}
	}
}

func (b *Bus) keepBucketTunables(kc *jetstream.KeyValueConfig, have jetstream.KeyValueStatus) {
	if b.raw.Replicas == 0 {
		kc.Replicas = have.Config().Replicas
	}
	switch kc.Bucket {
	case BucketLeases:
		if b.raw.LeaseTTL == 0 {
			kc.TTL = have.TTL()
			kc.LimitMarkerTTL = have.LimitMarkerTTL()
		}
	case BucketSends:
		if b.raw.SendsTTL == 0 {
			kc.TTL = have.TTL()
		}
	}
}

// BucketConfigs returns the KV buckets the connector uses.
func (c Config) BucketConfigs() []jetstream.KeyValueConfig {
	c = c.WithDefaults()
	return []jetstream.KeyValueConfig{
		{
			Bucket:         BucketLeases,
			Description:    "zapbus session leases: mentorado -> owning connector",
			TTL:            c.LeaseTTL,
			LimitMarkerTTL: c.LeaseTTL,
			History:        1,
			Storage:        jetstream.FileStorage,
			Replicas:       c.Replicas,
		},
		{
			Bucket:      BucketSends,
			Description: "zapbus send command results by client id, for idempotent retries",
			TTL:         c.SendsTTL,
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    c.Replicas,
		},
	}
}

// Publish stores env in its stream and waits for the PubAck. The envelope id
// is the Nats-Msg-Id, so publishing the same event again within the
// duplicate window returns an ack with Duplicate set and stores nothing.
func (b *Bus) Publish(ctx context.Context, env event.Envelope) (*jetstream.PubAck, error) {
	data, err := env.Encode()
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: env.Subject(), Data: data, Header: nats.Header{}}
	ack, err := b.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(env.ID))
	if err != nil {
		return nil, fmt.Errorf("bus: publish %s: %w", env.Type, err)
	}
	return ack, nil
}

// PublishAll stores envs in their streams, in order, and waits for every
// PubAck: the publishes are pipelined on the connection (one round trip
// for the lot, not one each), which keeps their order. It returns the
// first failure; what was stored before it stays stored, and publishing
// the same envelopes again stores each at most once (the envelope id is
// the Nats-Msg-Id).
func (b *Bus) PublishAll(ctx context.Context, envs []event.Envelope) error {
	if len(envs) == 1 {
		_, err := b.Publish(ctx, envs[0])
		return err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(envs))
	for _, env := range envs {
		data, err := env.Encode()
		if err != nil {
			return err
		}
		f, err := b.JS.PublishMsgAsync(&nats.Msg{Subject: env.Subject(), Data: data, Header: nats.Header{}}, jetstream.WithMsgID(env.ID))
		if err != nil {
			return fmt.Errorf("bus: publish %s: %w", env.Type, err)
		}
		futures = append(futures, f)
	}
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("bus: publish %s: %w", envs[i].Type, err)
		case <-ctx.Done():
			return fmt.Errorf("bus: publish %s: %w", envs[i].Type, ctx.Err())
		}
	}
	return nil
}

// ErrNotLatest is PublishIfLatest's answer when the subject's last stored
// message is not the one the caller expected: someone published since.
var ErrNotLatest = errors.New("bus: a newer message is stored on the subject")

// PublishIfLatest stores env only if the last message stored on its
// subject is still lastSeq (JetStream's expected last subject sequence,
// checked by the server when the message arrives, however late). It
// returns ErrNotLatest when another message was stored since, and stores
// nothing; a retry of a publish that was stored also gets ErrNotLatest
// (the server checks the sequence before the Nats-Msg-Id), so either way
// there is nothing left to publish. A connector that lost a session uses it so its final
// "disconnected" cannot land after the new owner's "connected".
func (b *Bus) PublishIfLatest(ctx context.Context, env event.Envelope, lastSeq uint64) (*jetstream.PubAck, error) {
	data, err := env.Encode()
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: env.Subject(), Data: data, Header: nats.Header{}}
	ack, err := b.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(env.ID), jetstream.WithExpectLastSequencePerSubject(lastSeq))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return nil, ErrNotLatest
	}
	if err != nil {
		return nil, fmt.Errorf("bus: publish %s: %w", env.Type, err)
	}
	return ack, nil
}

// DeadLetter stores a message no consumer can apply in WA_DLQ with the
// reason and where it came from. Dead letters of the same stream sequence
// are stored once.
func (b *Bus) DeadLetter(ctx context.Context, stream, subject string, seq uint64, data []byte, reason error) error {
	return b.deadLetter(ctx, stream, fmt.Sprintf("dlq:%s:%d", stream, seq), subject, strconv.FormatUint(seq, 10), data, reason)
}

// DeadLetterFrom stores in WA_DLQ something a process received but could
// not turn into an event (source names the process, e.g. "connector"; id
// identifies the input, so a retried dead letter is stored once).
func (b *Bus) DeadLetterFrom(ctx context.Context, source, id, subject string, data []byte, reason error) error {
	return b.deadLetter(ctx, source, "dlq:"+source+":"+id, subject, "", data, reason)
}

func (b *Bus) deadLetter(ctx context.Context, source, msgID, subject, seq string, data []byte, reason error) error {
	h := nats.Header{
		HeaderError:           []string{reason.Error()},
		HeaderOriginalSubject: []string{subject},
		HeaderOriginalStream:  []string{source},
	}
	if seq != "" {
		h.Set(HeaderOriginalSeq, seq)
	}
	msg := &nats.Msg{Subject: DLQSubjectPrefix + source, Data: data, Header: h}
	if _, err := b.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("bus: dead-letter %s: %w", msgID, err)
	}
	return nil
}
