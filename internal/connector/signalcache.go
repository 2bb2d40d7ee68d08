package connector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"

	zstore "github.com/zapbus/zapbus/internal/store"
)

// The inbound hot path (docs/decisions/0014-signal-store-cache.md).
//
// whatsmeow handles one session's messages one at a time, and for a text
// from a known contact its sqlstore makes about ten Postgres round trips in
// that serial path: the event buffer lookup, then in one transaction
// HasSession, GetSession, IsTrustedIdentity, PutIdentity (the same key
// again), PutSession and PutBufferedEvent, then ClearBufferedEventPlaintext
// after the handler. The round trips, not the CPU, bound a session at
// ~400 messages/s.
//
// signalStores wraps a device's identity, session and event-buffer stores
// (and guards its prekey and sender-key stores):
//   - reads of sessions and identity keys are answered from a write-through
//     cache of what Postgres has committed for this device (one connector
//     owns a device at a time: the lease), so HasSession, GetSession and
//     IsTrustedIdentity cost nothing once a contact is known;
//   - PutIdentity of the key Postgres already has is skipped (an upsert of
//     the same value);
//   - a decryption's writes (session, identity, plaintext) are kept aside
//     while it runs and written together in one batch, one round trip and
//     one transaction, before DoDecryptionTxn returns, so before the
//     handler runs and before whatsmeow acks; a decryption that needs
//     another write (a prekey used up, a sender key) runs again in
//     whatsmeow's own transaction;
//   - a write enters the cache only once committed; a failed write or
//     transaction evicts what it touched;
//   - ClearBufferedEventPlaintext (dropping the decrypted copy once the
//     handler succeeded) runs off the serial path: losing it in a crash
//     only leaves a plaintext that whatsmeow would hand to the handler
//     again, which republishes under the same Nats-Msg-Id.

// signalCacheMax bounds the entries cached per device; past it the cache
// starts over (a device with more live contacts pays the reads again).
const signalCacheMax = 8192

type overlayKey struct{}

// txOverlay collects the writes made inside one DoDecryptionTxn, which
// enter the cache only if it commits.
type txOverlay struct {
	sessions   map[string][]byte
	identities map[string][32]byte
	evictAll   bool // a delete or migration: forget everything afterwards

	// deferred: no transaction is open; the writes above and events are
	// kept here and written in one round trip when fn succeeded (flush).
	deferred bool
	events   []bufferedEvent
	// needTxn: fn asked for a write that is not deferred (a prekey used
	// up, a sender key, a delete): it runs again in whatsmeow's own
	// transaction.
	needTxn bool
}

type bufferedEvent struct {
	hash      [32]byte
	plaintext []byte
	ts        time.Time
}

// errNeedTxn stops a deferred decryption that needs a write only
// whatsmeow's transaction makes; DoDecryptionTxn runs it again in one.
var errNeedTxn = errors.New("connector: this decryption needs whatsmeow's transaction")

// deferredOverlay returns ov when writes are being deferred.
func deferredOverlay(ctx context.Context) *txOverlay {
	if ov := overlayOf(ctx); ov != nil && ov.deferred {
		return ov
	}
	return nil
}

// refuseDeferred marks a deferred decryption as needing a transaction and
// reports whether the caller must not write.
func refuseDeferred(ctx context.Context) bool {
	if ov := deferredOverlay(ctx); ov != nil {
		ov.needTxn = true
		return true
	}
	return false
}

func overlayOf(ctx context.Context) *txOverlay {
	ov, _ := ctx.Value(overlayKey{}).(*txOverlay)
	return ov
}

// signalCache holds one device's committed sessions and identity keys.
type signalCache struct {
	mu         sync.Mutex
	gen        uint64 // bumped by every change; a read fills only if unchanged
	sessions   map[string][]byte
	identities map[string][32]byte
}

func newSignalCache() *signalCache {
	return &signalCache{sessions: map[string][]byte{}, identities: map[string][32]byte{}}
}

func (c *signalCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *signalCache) session(addr string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[addr]
	return s, ok
}

func (c *signalCache) identity(addr string) ([32]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.identities[addr]
	return k, ok
}

// fill caches what a read returned, unless something changed since gen.
func (c *signalCache) fill(gen uint64, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if len(c.sessions)+len(c.identities) >= signalCacheMax {
		c.resetLocked()
	}
	f()
}

// change applies a committed write (f may be nil: only evict) and bumps
// the generation so reads in flight do not fill older values.
func (c *signalCache) change(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if f != nil {
		f()
	}
}

func (c *signalCache) resetLocked() {
	c.sessions = map[string][]byte{}
	c.identities = map[string][32]byte{}
}

func (c *signalCache) reset() { c.change(c.resetLocked) }

// finish applies a transaction's writes if it committed, else evicts them.
func (c *signalCache) finish(ov *txOverlay, committed bool) {
	c.change(func() {
		if ov.evictAll {
			c.resetLocked()
			return
		}
		for addr, s := range ov.sessions {
			if committed {
				c.sessions[addr] = s
			} else {
				delete(c.sessions, addr)
			}
		}
		for addr, k := range ov.identities {
			if committed {
				c.identities[addr] = k
			} else {
				delete(c.identities, addr)
			}
		}
	})
}

// signalStores implements whatsmeow's IdentityStore, SessionStore and
// EventBuffer over the device's sqlstore.
type signalStores struct {
	ids   store.IdentityStore
	sess  store.SessionStore
	buf   store.EventBuffer
	cache *signalCache
	// pool and jid write a decryption's state in one round trip (flush);
	// nil pool: whatsmeow's transaction does, statement by statement.
	pool *pgxpool.Pool
	jid  string
	// clears bounds the plaintext clears running in the background; when
	// they are all busy a clear runs inline (back-pressure, no queue).
	clears chan struct{}
	log    zerolog.Logger
}

var (
	_ store.IdentityStore = (*signalStores)(nil)
	_ store.SessionStore  = (*signalStores)(nil)
	_ store.EventBuffer   = (*signalStores)(nil)
)

// wrapSignalStores puts the cache in front of dev's stores; a device whose
// stores are already wrapped, or not yet initialized, is left alone.
func wrapSignalStores(dev *store.Device, pool *pgxpool.Pool, log zerolog.Logger) {
	if dev == nil || dev.ID == nil || dev.Identities == nil || dev.Sessions == nil || dev.EventBuffer == nil || dev.PreKeys == nil || dev.SenderKeys == nil {
		return
	}
	if _, done := dev.Sessions.(*signalStores); done {
		return
	}
	w := &signalStores{ids: dev.Identities, sess: dev.Sessions, buf: dev.EventBuffer, cache: newSignalCache(),
		pool: pool, jid: dev.ID.String(), clears: make(chan struct{}, 4), log: log}
	dev.Identities, dev.Sessions, dev.EventBuffer = w, w, w
	dev.PreKeys = guardedPreKeys{dev.PreKeys}
	dev.SenderKeys = guardedSenderKeys{dev.SenderKeys}
}

// guardedPreKeys and guardedSenderKeys refuse writes during a deferred
// decryption (a prekey message uses up a prekey; a group message may store
// a sender key), which then runs again in whatsmeow's transaction.
type guardedPreKeys struct{ store.PreKeyStore }

func (g guardedPreKeys) RemovePreKey(ctx context.Context, id uint32) error {
	if refuseDeferred(ctx) {
		return errNeedTxn
	}
	return g.PreKeyStore.RemovePreKey(ctx, id)
}

func (g guardedPreKeys) GetOrGenPreKeys(ctx context.Context, count uint32) ([]*keys.PreKey, error) {
	if refuseDeferred(ctx) {
		return nil, errNeedTxn
	}
	return g.PreKeyStore.GetOrGenPreKeys(ctx, count)
}

func (g guardedPreKeys) GenOnePreKey(ctx context.Context) (*keys.PreKey, error) {
	if refuseDeferred(ctx) {
		return nil, errNeedTxn
	}
	return g.PreKeyStore.GenOnePreKey(ctx)
}

func (g guardedPreKeys) MarkPreKeysAsUploaded(ctx context.Context, upToID uint32) error {
	if refuseDeferred(ctx) {
		return errNeedTxn
	}
	return g.PreKeyStore.MarkPreKeysAsUploaded(ctx, upToID)
}

type guardedSenderKeys struct{ store.SenderKeyStore }

// GetSenderKey refuses already at the load: libsignal's group cipher
// decrypts the message's ciphertext in place (cipher.DecryptCbc) before it
// stores the advanced sender key, so a group decryption run twice on the
// same message fails its signature check the second time ("sender key
// state failed verification"). Refusing before anything is decrypted
// leaves the message intact for the run in whatsmeow's transaction.
func (g guardedSenderKeys) GetSenderKey(ctx context.Context, group, user string) ([]byte, error) {
	if refuseDeferred(ctx) {
		return nil, errNeedTxn
	}
	return g.SenderKeyStore.GetSenderKey(ctx, group, user)
}

func (g guardedSenderKeys) PutSenderKey(ctx context.Context, group, user string, session []byte) error {
	if refuseDeferred(ctx) {
		return errNeedTxn
	}
	return g.SenderKeyStore.PutSenderKey(ctx, group, user, session)
}

// signalContainer wraps the device container so that a device paired in
// this process gets the cache too: sqlstore installs the device's stores
// in PutDevice, on whatsmeow's pairing goroutine, and the wrapper follows
// on the same goroutine before anything else uses them.
type signalContainer struct {
	store.DeviceContainer
	pool *pgxpool.Pool
	log  zerolog.Logger
}

func (c *signalContainer) PutDevice(ctx context.Context, dev *store.Device) error {
	err := c.DeviceContainer.PutDevice(ctx, dev)
	if dev.Initialized {
		if _, ok := dev.Container.(*signalContainer); !ok {
			c.DeviceContainer = dev.Container
			dev.Container = c
		}
		wrapSignalStores(dev, c.pool, c.log)
	}
	return err
}

// IdentityStore.

// knownIdentity is the key Postgres holds for address as far as this
// transaction (ov, may be nil) and the cache know.
func (w *signalStores) knownIdentity(ov *txOverlay, address string) ([32]byte, bool) {
	if ov != nil {
		if k, ok := ov.identities[address]; ok {
			return k, true
		}
		if ov.evictAll {
			return [32]byte{}, false
		}
	}
	return w.cache.identity(address)
}

func (w *signalStores) PutIdentity(ctx context.Context, address string, key [32]byte) error {
	ov := overlayOf(ctx)
	if have, ok := w.knownIdentity(ov, address); ok && have == key {
		return nil // Postgres has this key already: the upsert would change nothing
	}
	if ov != nil && ov.deferred {
		if ov.identities == nil {
			ov.identities = map[string][32]byte{}
		}
		ov.identities[address] = key
		return nil
	}
	if err := w.ids.PutIdentity(ctx, address, key); err != nil {
		w.evict(ctx, func() { delete(w.cache.identities, address) })
		return err
	}
	if ov != nil {
		if ov.identities == nil {
			ov.identities = map[string][32]byte{}
		}
		ov.identities[address] = key
		return nil
	}
	w.cache.change(func() { w.cache.identities[address] = key })
	return nil
}

// IsTrustedIdentity answers from the cache once the key is known; a key
// read from Postgres is cached by the PutIdentity that libsignal makes
// right after a successful decryption (an unknown address is trusted and
// has no key to cache).
func (w *signalStores) IsTrustedIdentity(ctx context.Context, address string, key [32]byte) (bool, error) {
	if have, ok := w.knownIdentity(overlayOf(ctx), address); ok {
		return have == key, nil
	}
	return w.ids.IsTrustedIdentity(ctx, address, key)
}

func (w *signalStores) DeleteIdentity(ctx context.Context, address string) error {
	if refuseDeferred(ctx) {
		return errNeedTxn
	}
	defer w.evictAllAfter(ctx)
	return w.ids.DeleteIdentity(ctx, address)
}

func (w *signalStores) DeleteAllIdentities(ctx context.Context, phone string) error {
	if refuseDeferred(ctx) {
		return errNeedTxn
	}
	defer w.evictAllAfter(ctx)
	return w.ids.DeleteAllIdentities(ctx, phone)
}

// SessionStore.

func (w *signalStores) GetSession(ctx context.Context, address string) ([]byte, error) {
	ov := overlayOf(ctx)
	if ov != nil {
		if s, ok := ov.sessions[address]; ok {
			return s, nil
		}
	}
	fill := ov == nil || !ov.evictAll
	if fill {
		if s, ok := w.cache.session(address); ok {
			return s, nil
		}
	}
	// A read inside a transaction returns what Postgres committed: this
	// transaction's own writes of address are in ov.
	gen := w.cache.generation()
	s, err := w.sess.GetSession(ctx, address)
	if err == nil && s != nil && fill {
		w.cache.fill(gen, func() { w.cache.sessions[address] = s })
	}
	return s, err
}

func (w *signalStores) HasSession(ctx context.Context, address string) (bool, error) {
	s, err := w.GetSession(ctx, address)
	return s != nil, err
}

func (w *signalStores) GetManySessions(ctx context.Context, addresses []string) (map[string][]byte, error) {
	// The send path: rarer than receiving, passed through (and cached).
	gen := w.cache.generation()
	out, err := w.sess.GetManySessions(ctx, addresses)
	if err == nil && overlayOf(ctx) == nil {
		w.cache.fill(gen, func() {
			for addr, s := range out {
				if s != nil {
					w.cache.sessions[addr] = s
				}
			}
		})
	}
	return out, err
}

func (w *signalStores) PutSession(ctx context.Context, address string, session []byte) error {
	if ov := deferredOverlay(ctx); ov != nil {
		if ov.sessions == nil {
			ov.sessions = map[string][]byte{}
		}
		ov.sessions[address] = session
		return nil
	}
	if err := w.sess.PutSession(ctx, address, session); err != nil {
		w.evict(ctx, func() { delete(w.cache.sessions, address) })
		return err
	}
	if ov := overlayOf(ctx); ov != nil {
		if ov.sessions == nil {
			ov.sessions = map[string][]byte{}
		}
		ov.sessions[address] = session
		return nil
	}
	w.cache.change(func() { w.cache.sessions[address] = session })
	return nil
}

func (w *signalStores) PutManySessions(ctx context.Context, sessions map[string][]byte) error {
	if refuseDeferred(ctx) {
		return errNeedTxn
	}
	if err := w.sess.PutManySessions(ctx, sessions); err != nil {
		w.evict(ctx, func() {
			for addr := range sessions {
				delete(w.cache.sessions, addr)
			}
		})
		return err
	}
	if ov := overlayOf(ctx); ov != nil {
		if ov.sessions == nil {
			ov.sessions = map[string][]byte{}
		}
		for addr, s := range sessions {
			ov.sessions[addr] = s
		}
		return nil
	}
	w.cache.change(func() {
		for addr, s := range sessions {
			w.cache.sessions[addr] = s
		}
	})
	return nil
}

func (w *signalStores) DeleteSession(ctx context.Context, address string) error {
	if refuseDeferred(ctx) {
		return errNeedTxn
	}
	defer w.evictAllAfter(ctx)
	return w.sess.DeleteSession(ctx, address)
}

func (w *signalStores) DeleteAllSessions(ctx context.Context, phone string) error {
	if refuseDeferred(ctx) {
		return errNeedTxn
	}
	defer w.evictAllAfter(ctx)
	return w.sess.DeleteAllSessions(ctx, phone)
}

func (w *signalStores) MigratePNToLID(ctx context.Context, pn, lid types.JID) error {
	if refuseDeferred(ctx) {
		return errNeedTxn
	}
	// Moves rows in Postgres behind the cache's back: start over.
	defer w.evictAllAfter(ctx)
	return w.sess.MigratePNToLID(ctx, pn, lid)
}

// evict drops entries after a failed write (and, inside a transaction,
// everything it wrote when it ends: the transaction is failing).
func (w *signalStores) evict(ctx context.Context, f func()) {
	if ov := overlayOf(ctx); ov != nil {
		ov.evictAll = true
	}
	w.cache.change(f)
}

// evictAllAfter forgets the whole cache now and, inside a transaction,
// again when it ends (its outcome decides what Postgres holds).
func (w *signalStores) evictAllAfter(ctx context.Context) {
	if ov := overlayOf(ctx); ov != nil {
		ov.evictAll = true
	}
	w.cache.reset()
}

// EventBuffer.

func (w *signalStores) GetBufferedEvent(ctx context.Context, hash [32]byte) (*store.BufferedEvent, error) {
	return w.buf.GetBufferedEvent(ctx, hash)
}

func (w *signalStores) PutBufferedEvent(ctx context.Context, hash [32]byte, plaintext []byte, ts time.Time) error {
	if ov := deferredOverlay(ctx); ov != nil {
		ov.events = append(ov.events, bufferedEvent{hash: hash, plaintext: plaintext, ts: ts})
		return nil
	}
	return w.buf.PutBufferedEvent(ctx, hash, plaintext, ts)
}

// DoDecryptionTxn runs whatsmeow's decryption transaction (session state
// and the decrypted plaintext committed together) and lets the cache see
// its writes only once it committed.
//
// With a pool, fn first runs with its writes deferred: the new session,
// identity and plaintext are kept aside and written together by flush, in
// one round trip and one implicit transaction, before this returns. A
// decryption that needs any other write (a prekey message uses up a
// prekey) is run again in whatsmeow's transaction; nothing of the first
// run was written.
func (w *signalStores) DoDecryptionTxn(ctx context.Context, fn func(context.Context) error) error {
	if overlayOf(ctx) != nil {
		return w.buf.DoDecryptionTxn(ctx, fn) // nested: the outer one decides
	}
	if w.pool != nil {
		ov := &txOverlay{deferred: true}
		err := fn(context.WithValue(ctx, overlayKey{}, ov))
		if !ov.needTxn {
			if err == nil {
				err = w.flush(ctx, ov)
			}
			w.cache.finish(ov, err == nil)
			return err
		}
		w.cache.finish(ov, false)
	}
	ov := &txOverlay{}
	err := w.buf.DoDecryptionTxn(context.WithValue(ctx, overlayKey{}, ov), fn)
	w.cache.finish(ov, err == nil)
	return err
}

// ClearBufferedEventPlaintext drops the stored plaintext of a message the
// handler took. It is idempotent and losing it is harmless, so it runs in
// the background when a slot is free.
func (w *signalStores) ClearBufferedEventPlaintext(ctx context.Context, hash [32]byte) error {
	select {
	case w.clears <- struct{}{}:
		ctx := context.WithoutCancel(ctx)
		go func() {
			defer func() { <-w.clears }()
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := w.buf.ClearBufferedEventPlaintext(cctx, hash); err != nil {
				w.log.Warn().Err(err).Msg("clear buffered plaintext failed (it stays until whatsmeow's 14-day cleanup)")
			}
		}()
		return nil
	default:
		return w.buf.ClearBufferedEventPlaintext(ctx, hash)
	}
}

// flush writes a deferred decryption's state in one batch: one round trip,
// one implicit transaction (all or nothing), committed when it returns.
func (w *signalStores) flush(ctx context.Context, ov *txOverlay) error {
	events := make([]zstore.SignalEvent, len(ov.events))
	for i, e := range ov.events {
		events[i] = zstore.SignalEvent{Hash: e.hash, Plaintext: e.plaintext, Time: e.ts}
	}
	if err := zstore.FlushSignalState(ctx, w.pool, w.jid, ov.identities, ov.sessions, events); err != nil {
		return fmt.Errorf("connector: %w", err)
	}
	return nil
}

func (w *signalStores) DeleteOldBufferedHashes(ctx context.Context) error {
	return w.buf.DeleteOldBufferedHashes(ctx)
}
