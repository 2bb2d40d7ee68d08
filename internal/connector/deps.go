package connector

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
)

// sessionDeps is everything a session uses from outside itself. The
// connector fills it (Connector.sessionDeps); the state-machine tests fill
// it with in-memory fakes and a fake clock, without Postgres or NATS. A
// session never sees the Connector: leases, command routing and the
// restore scan stay there.
type sessionDeps struct {
	cfg       Config // timeouts, pairing code TTL, reconnect policy
	clock     Clock
	rand      func() float64 // backoff jitter, a float in [0,1)
	log       zerolog.Logger
	metrics   *metrics
	factory   Factory // makes clients, deletes device credentials
	devices   deviceStore
	publisher publisher
	convert   ConvertFunc
	media     media.Store   // nil: media is not downloaded
	downloads downloadQueue // the media download queue
	ledger    mediaLedger   // media_objects; nil in state-machine tests
	histories historyQueue  // history_syncs; nil: history is not imported
	// storeCheck tells whether whatsmeow's device store (Postgres)
	// answers; nil: never checked (storedown.go).
	storeCheck func(context.Context) error
	// sending runs the outbox worker; nil: none (state-machine tests).
	sending *sendingDeps
}

// deviceStore is the session's access to its wa_devices row.
type deviceStore interface {
	setDesired(ctx context.Context, m int64, desired string) error
	paired(ctx context.Context, m int64, jid types.JID, phone string) error
	// phoneOwner returns the mentorado a number is paired to, other than m.
	phoneOwner(ctx context.Context, phone string, m int64) (int64, bool, error)
	delete(ctx context.Context, m int64) error
}

// publisher stores a session's events in JetStream.
type publisher interface {
	Publish(ctx context.Context, env event.Envelope) (*jetstream.PubAck, error)
	PublishIfLatest(ctx context.Context, env event.Envelope, lastSeq uint64) (*jetstream.PubAck, error)
	DeadLetterFrom(ctx context.Context, source, id, subject string, data []byte, reason error) error
}

var (
	_ deviceStore = devices{}
	_ publisher   = (*bus.Bus)(nil)
)

// sessionDeps wires a session to this connector.
func (c *Connector) sessionDeps() sessionDeps {
	return sessionDeps{
		cfg:        c.cfg,
		clock:      c.clock,
		rand:       c.rand,
		log:        c.log,
		metrics:    c.metrics,
		factory:    c.factory,
		devices:    c.devices,
		publisher:  c.bus,
		convert:    c.convert,
		media:      c.media,
		downloads:  c.db.MediaDownloads(),
		ledger:     c.db.MediaObjects(),
		histories:  c.db.HistorySyncs(),
		storeCheck: c.db.Ready,
		sending:    c.sendingDeps(),
	}
}
