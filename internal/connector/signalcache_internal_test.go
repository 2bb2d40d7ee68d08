package connector

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/proto/waAdv"
	wastore "go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// The cache in front of whatsmeow's sqlstore (signalcache.go, decision
// 0014) on a real device in Postgres: it answers what Postgres committed,
// a rolled-back decryption transaction leaves no trace in it, deletes
// empty it, and a device stored at pairing gets it.
func TestSignalCacheFollowsPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	container := sqlstore.NewWithDB(db.SQL, "postgres", waLog.Noop)
	if err := container.Upgrade(ctx); err != nil {
		t.Fatal(err)
	}
	dev := container.NewDevice()
	jid := types.NewADJID("5511955550777", 0, 3)
	dev.ID = &jid
	dev.Account = &waAdv.ADVSignedDeviceIdentity{Details: []byte{1}, AccountSignature: make([]byte, 64), AccountSignatureKey: make([]byte, 32), DeviceSignature: make([]byte, 64)}
	// Pairing: whatsmeow stores the device through its container.
	dev.Container = &signalContainer{DeviceContainer: dev.Container, pool: db.Pool, log: testenv.Logger(t)}
	if err := dev.Save(ctx); err != nil {
		t.Fatal(err)
	}
	w, ok := dev.Sessions.(*signalStores)
	if !ok || dev.Identities != w || dev.EventBuffer != w {
		t.Fatalf("a device stored at pairing is not wrapped: %T %T %T", dev.Sessions, dev.Identities, dev.EventBuffer)
	}
	inner := w.sess
	get := func(addr string) (cached, stored []byte) {
		t.Helper()
		c, err := w.GetSession(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		s, err := inner.GetSession(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	const addr = "123456789.0:0"
	v1, v2, v3 := []byte("state one"), []byte("state two"), []byte("state three")
	if err := w.PutSession(ctx, addr, v1); err != nil {
		t.Fatal(err)
	}
	if c, s := get(addr); !bytes.Equal(c, v1) || !bytes.Equal(s, v1) {
		t.Fatalf("after put: cache %q, postgres %q", c, s)
	}

	// A decryption transaction that fails: neither Postgres nor the cache
	// keeps its write, though it saw it while running.
	boom := errors.New("handler-side failure")
	err = w.DoDecryptionTxn(ctx, func(ctx context.Context) error {
		if err := w.PutSession(ctx, addr, v2); err != nil {
			return err
		}
		if got, _ := w.GetSession(ctx, addr); !bytes.Equal(got, v2) {
			t.Errorf("inside the transaction: %q, want its own write", got)
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("transaction: %v", err)
	}
	if c, s := get(addr); !bytes.Equal(c, v1) || !bytes.Equal(s, v1) {
		t.Fatalf("after rollback: cache %q, postgres %q, want %q", c, s, v1)
	}

	// One that commits: both hold its writes.
	var k1, k2 [32]byte
	k1[0], k2[0] = 1, 2
	err = w.DoDecryptionTxn(ctx, func(ctx context.Context) error {
		if err := w.PutSession(ctx, addr, v3); err != nil {
			return err
		}
		return w.PutIdentity(ctx, addr, k1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, s := get(addr); !bytes.Equal(c, v3) || !bytes.Equal(s, v3) {
		t.Fatalf("after commit: cache %q, postgres %q, want %q", c, s, v3)
	}
	for _, k := range [][32]byte{k1, k2} {
		cached, err := w.IsTrustedIdentity(ctx, addr, k)
		if err != nil {
			t.Fatal(err)
		}
		stored, err := w.ids.IsTrustedIdentity(ctx, addr, k)
		if err != nil {
			t.Fatal(err)
		}
		if cached != stored || cached != (k == k1) {
			t.Fatalf("identity %x trusted: cache %v, postgres %v", k[0], cached, stored)
		}
	}

	// A deferred decryption (no transaction; its writes go in one batch)
	// that fails writes nothing; one that succeeds writes session, identity
	// and plaintext so that whatsmeow's sqlstore reads them back.
	if w.pool == nil {
		t.Fatal("the wrapper has no pool: decryption state is not batched")
	}
	const addr2 = "987654321.0:0"
	var hash1 [32]byte
	hash1[0] = 7
	err = w.DoDecryptionTxn(ctx, func(ctx context.Context) error {
		_ = w.PutSession(ctx, addr2, v1)
		_ = w.PutBufferedEvent(ctx, hash1, []byte("nada"), time.Now())
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("deferred transaction: %v", err)
	}
	if c, s := get(addr2); c != nil || s != nil {
		t.Fatalf("after a failed deferred decryption: cache %q, postgres %q", c, s)
	}
	if b, err := w.buf.GetBufferedEvent(ctx, hash1); err != nil || b != nil {
		t.Fatalf("after a failed deferred decryption the plaintext is stored: %+v %v", b, err)
	}
	err = w.DoDecryptionTxn(ctx, func(ctx context.Context) error {
		if err := w.PutSession(ctx, addr2, v2); err != nil {
			return err
		}
		if err := w.PutIdentity(ctx, addr2, k2); err != nil {
			return err
		}
		return w.PutBufferedEvent(ctx, hash1, []byte("tudo bem"), time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, s := get(addr2); !bytes.Equal(c, v2) || !bytes.Equal(s, v2) {
		t.Fatalf("after a deferred decryption: cache %q, postgres %q, want %q", c, s, v2)
	}
	if ok, err := w.ids.IsTrustedIdentity(ctx, addr2, k2); err != nil || !ok {
		t.Fatalf("identity written by flush not read back by sqlstore: %v %v", ok, err)
	}
	if ok, err := w.ids.IsTrustedIdentity(ctx, addr2, k1); err != nil || ok {
		t.Fatalf("sqlstore trusts another key after flush: %v %v", ok, err)
	}
	if b, err := w.buf.GetBufferedEvent(ctx, hash1); err != nil || b == nil || string(b.Plaintext) != "tudo bem" {
		t.Fatalf("plaintext written by flush not read back by sqlstore: %+v %v", b, err)
	}

	// A decryption that uses up a prekey needs whatsmeow's transaction: it
	// runs again there, and its writes land once.
	keysBefore, err := dev.PreKeys.UploadedPreKeyCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := w.guardlessPreKeys(dev).GenOnePreKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	runs := 0
	err = w.DoDecryptionTxn(ctx, func(ctx context.Context) error {
		runs++
		if err := dev.PreKeys.RemovePreKey(ctx, pk.KeyID); err != nil {
			return err
		}
		return w.PutSession(ctx, addr2, v3)
	})
	if err != nil || runs != 2 {
		t.Fatalf("prekey decryption: %v after %d runs, want success on the second", err, runs)
	}
	if got, err := dev.PreKeys.GetPreKey(ctx, pk.KeyID); err != nil || got != nil {
		t.Fatalf("prekey %d still there: %v %v", pk.KeyID, got, err)
	}
	if c, s := get(addr2); !bytes.Equal(c, v3) || !bytes.Equal(s, v3) {
		t.Fatalf("after the prekey decryption: cache %q, postgres %q, want %q", c, s, v3)
	}
	if n, err := dev.PreKeys.UploadedPreKeyCount(ctx); err != nil || n != keysBefore {
		t.Fatalf("uploaded prekeys %d → %d (%v)", keysBefore, n, err)
	}

	// A group decryption is refused at the sender key's load, before
	// libsignal decrypts the ciphertext in place, so the run in
	// whatsmeow's transaction is the only one that sees the message.
	if err := dev.SenderKeys.PutSenderKey(ctx, "g1", "u1", []byte("sk")); err != nil {
		t.Fatal(err)
	}
	var loads []string
	err = w.DoDecryptionTxn(ctx, func(ctx context.Context) error {
		sk, err := dev.SenderKeys.GetSenderKey(ctx, "g1", "u1")
		if err != nil {
			loads = append(loads, "refused")
			return err
		}
		loads = append(loads, string(sk))
		return nil
	})
	if err != nil || !slices.Equal(loads, []string{"refused", "sk"}) {
		t.Fatalf("group decryption: %v, loads %q, want refused then sk", err, loads)
	}

	// A delete behind the session's cached entry empties the cache.
	if err := w.DeleteSession(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if c, s := get(addr); c != nil || s != nil {
		t.Fatalf("after delete: cache %q, postgres %q", c, s)
	}
	if has, err := w.HasSession(ctx, addr); err != nil || has {
		t.Fatalf("has session after delete: %v %v", has, err)
	}

	// The plaintext clear runs in the background and gets there.
	var hash [32]byte
	hash[0] = 9
	if err := w.PutBufferedEvent(ctx, hash, []byte("oi"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := w.ClearBufferedEventPlaintext(ctx, hash); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool {
		b, err := w.GetBufferedEvent(ctx, hash)
		return err == nil && b != nil && b.Plaintext == nil
	}, "plaintext cleared")
}

const wait = 15 * time.Second

// guardlessPreKeys is the device's prekey store without the guard.
func (w *signalStores) guardlessPreKeys(dev *wastore.Device) wastore.PreKeyStore {
	return dev.PreKeys.(guardedPreKeys).PreKeyStore
}
