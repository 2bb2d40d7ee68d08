package connector

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/zapbus/zapbus/internal/store"
)

// sqlstoreLockKey serialises whatsmeow's own schema upgrades between
// connectors starting together.
const sqlstoreLockKey int64 = 0x7a6170776d // "zapwm"

// WhatsmeowFactory makes real whatsmeow clients whose device store is
// whatsmeow's sqlstore on zapbus's Postgres.
type WhatsmeowFactory struct {
	db        *store.DB
	container *sqlstore.Container
	log       zerolog.Logger
	// Configure, when set, is called on every new client before use; the
	// dev stack and tests point clients at the fake WhatsApp server with it.
	Configure func(*whatsmeow.Client)
	// NoSignalCache leaves whatsmeow's sqlstore without the cache in
	// front of its sessions and identity keys (signalcache.go): every
	// read is a Postgres round trip again. For comparisons (zapbench
	// inbound -signal-cache=false); production keeps the cache.
	NoSignalCache bool
}

var _ Factory = (*WhatsmeowFactory)(nil)

// NewWhatsmeowFactory opens whatsmeow's device store on db and upgrades its
// tables under a Postgres advisory lock.
func NewWhatsmeowFactory(ctx context.Context, db *store.DB, log zerolog.Logger, configure func(*whatsmeow.Client)) (*WhatsmeowFactory, error) {
	container := sqlstore.NewWithDB(db.SQL, "postgres", waLog.Zerolog(log.With().Str("component", "whatsmeow-store").Logger()))
	err := db.WithSessionLock(ctx, sqlstoreLockKey, func() error {
		if err := container.Upgrade(ctx); err != nil {
			return fmt.Errorf("connector: upgrade whatsmeow store: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &WhatsmeowFactory{db: db, container: container, log: log, Configure: configure}, nil
}

// Container is whatsmeow's device store.
func (f *WhatsmeowFactory) Container() *sqlstore.Container { return f.container }

// NewClient returns a client for p.Device, or for a new device when it is empty.
func (f *WhatsmeowFactory) NewClient(ctx context.Context, p ClientParams) (Client, error) {
	dev := f.container.NewDevice()
	if !p.Device.IsEmpty() {
		d, err := f.container.GetDevice(ctx, p.Device)
		if err != nil {
			return nil, fmt.Errorf("connector: load device: %w", err)
		}
		if d == nil {
			return nil, ErrNoDevice
		}
		dev = d
	}
	if !f.NoSignalCache {
		// A loaded device is wrapped now; a new one when whatsmeow stores
		// it at pairing (signalContainer.PutDevice).
		wrapSignalStores(dev, f.db.Pool, p.Log)
		dev.Container = &signalContainer{DeviceContainer: dev.Container, pool: f.db.Pool, log: p.Log}
	}
	cli := whatsmeow.NewClient(dev, waLog.Zerolog(p.Log.With().Str("component", "whatsmeow").Logger()))
	// Sessions own the reconnect policy (docs/decisions/0002-reconnect-policy.md).
	cli.EnableAutoReconnect = false
	cli.InitialAutoReconnect = false
	cli.DisableLoginAutoReconnect = true
	// Nothing received is lost: ack only after the handler (JetStream) succeeded.
	cli.SynchronousAck = true
	cli.EnableDecryptedEventBuffer = true
	// The phone's address book (app state contacts) flows as contact events
	// from the first full sync on, not only for later changes (issue #12).
	cli.EmitAppStateEventsOnFullSync = true
	// History sync chunks are queued durably and streamed by the session's
	// history worker (history.go) instead of being downloaded and decoded
	// whole in memory by whatsmeow.
	cli.ManualHistorySyncDownload = true
	if p.PrePair != nil {
		cli.PrePairCallback = func(jid types.JID, _, _ string) bool { return p.PrePair(jid) }
	}
	if f.Configure != nil {
		f.Configure(cli)
	}
	return cli, nil
}

// DeleteDevice removes the device row (its keys, sessions and secrets
// cascade) and its privacy tokens, which whatsmeow does not cascade.
func (f *WhatsmeowFactory) DeleteDevice(ctx context.Context, device types.JID) error {
	if device.IsEmpty() {
		return nil
	}
	if err := f.db.Whatsmeow().DeleteDevice(ctx, device.String()); err != nil {
		return fmt.Errorf("connector: %w", err)
	}
	return nil
}
