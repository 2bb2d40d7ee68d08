package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The statements of whatsmeow's sqlstore (store/sqlstore/store.go) for the
// rows one decryption writes: the connector's Signal cache writes them in
// one round trip instead of sqlstore's transaction
// (docs/decisions/0014-signal-store-cache.md). They are whatsmeow's tables,
// written exactly as sqlstore writes them; the connector's
// TestSignalCacheFollowsPostgres reads them back through sqlstore, so a
// whatsmeow upgrade that changes these tables fails there.
const (
	flushIdentitySQL = `INSERT INTO whatsmeow_identity_keys (our_jid, their_id, identity) VALUES ($1, $2, $3)
		ON CONFLICT (our_jid, their_id) DO UPDATE SET identity=excluded.identity`
	flushSessionSQL = `INSERT INTO whatsmeow_sessions (our_jid, their_id, session) VALUES ($1, $2, $3)
		ON CONFLICT (our_jid, their_id) DO UPDATE SET session=excluded.session`
	flushEventSQL = `INSERT INTO whatsmeow_event_buffer (our_jid, ciphertext_hash, plaintext, server_timestamp, insert_timestamp)
		VALUES ($1, $2, $3, $4, $5)`
)

// SignalEvent is a decrypted message whatsmeow buffers until its handler
// took it.
type SignalEvent struct {
	Hash      [32]byte
	Plaintext []byte
	Time      time.Time // the server's timestamp
}

// FlushSignalState writes one decryption's state of device ourJID — new
// identity keys and sessions by address, and buffered plaintexts — in one
// batch: one round trip, one implicit transaction (all or nothing),
// committed when it returns.
func FlushSignalState(ctx context.Context, pool *pgxpool.Pool, ourJID string, identities map[string][32]byte, sessions map[string][]byte, events []SignalEvent) error {
	b := &pgx.Batch{}
	for _, addr := range slices.Sorted(maps.Keys(identities)) {
		k := identities[addr]
		b.Queue(flushIdentitySQL, ourJID, addr, k[:])
	}
	for _, addr := range slices.Sorted(maps.Keys(sessions)) {
		b.Queue(flushSessionSQL, ourJID, addr, sessions[addr])
	}
	now := time.Now().UnixMilli()
	for _, e := range events {
		b.Queue(flushEventSQL, ourJID, e.Hash[:], e.Plaintext, e.Time.Unix(), now)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store: write decryption state: %w", err)
	}
	return nil
}
