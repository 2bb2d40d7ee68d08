package wafake_test

import (
	"context"
	"testing"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types/events"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/zapbus/zapbus/internal/testenv"
)

// Pairing by QR yields PairSuccess and Connected; a new client built from the
// same Postgres store (a process restart) logs in without QR.
func TestPairAndRestart(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990001", nil)
	if got := s.cli.Store.ID; got == nil || got.User != "5511999990001" || got.Device == 0 {
		t.Fatalf("store ID = %v", got)
	}
	if s.cli.Store.LID.User != srv.Contact("5511999990001").LID().User {
		t.Fatalf("store LID = %v, want %v", s.cli.Store.LID, srv.Contact("5511999990001").LID())
	}
	jid := *s.cli.Store.ID
	s.cli.Disconnect()
	testenv.Eventually(t, waitTimeout, func() bool { return !s.acct.Connected() }, "server sees the disconnect")

	// "Restart": a new container on the same database, a new client.
	store2 := openContainer(t, s.url)
	dev, err := store2.GetDevice(context.Background(), jid)
	if err != nil || dev == nil {
		t.Fatalf("device not in store after restart: %v", err)
	}
	cli2 := srv.NewClient(dev, waLog.Zerolog(clientLogger(t)))
	rec2 := newRecorder(cli2)
	t.Cleanup(cli2.Disconnect)
	if err := cli2.Connect(); err != nil {
		t.Fatal(err)
	}
	next[*events.Connected](t, rec2)
	if n := count[*events.QR](rec2); n != 0 {
		t.Fatalf("restarted client emitted %d QR events", n)
	}
	testenv.Eventually(t, waitTimeout, s.acct.Connected, "account connected again")
}

// Phone-number pairing: cli.PairPhone returns a code, the fake phone enters
// it, the client pairs and connects.
func TestPairPhoneCode(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	store := openContainer(t, newDB(t))
	cli := srv.NewClient(store.NewDevice(), waLog.Zerolog(clientLogger(t)))
	rec := newRecorder(cli)
	t.Cleanup(cli.Disconnect)
	if err := cli.Connect(); err != nil {
		t.Fatal(err)
	}
	next[*events.QR](t, rec) // the registration connection is up
	ctx := ctxT(t)
	const phone = "5511999990200"
	code, err := cli.PairPhone(ctx, phone, true, whatsmeow.PairClientChrome, "Chrome (Linux)")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.EnterPairingCode(ctx, phone, code); err != nil {
		t.Fatal(err)
	}
	if ps := next[*events.PairSuccess](t, rec); ps.ID.User != phone {
		t.Fatalf("paired as %v", ps.ID)
	}
	next[*events.Connected](t, rec)
	testenv.Eventually(t, waitTimeout, srv.Account(phone).Connected, "connected")
}

// The fake restarts but the device store survives (dev sim mode): the login
// is accepted, the account re-provisioned (same LID), prekeys re-uploaded,
// and messages flow again.
func TestFakeRestartAutoProvision(t *testing.T) {
	t.Parallel()
	srv1 := newServer(t)
	s := pair(t, srv1, "5511999990210", nil)
	jid := *s.cli.Store.ID
	s.cli.Disconnect()
	srv1.Close()

	srv2 := newServer(t)
	dev, err := openContainer(t, s.url).GetDevice(context.Background(), jid)
	if err != nil || dev == nil {
		t.Fatal(err)
	}
	cli := srv2.NewClient(dev, waLog.Zerolog(clientLogger(t)))
	rec := newRecorder(cli)
	t.Cleanup(cli.Disconnect)
	if err := cli.Connect(); err != nil {
		t.Fatal(err)
	}
	next[*events.Connected](t, rec)
	acct := srv2.Account(s.phone)
	if acct == nil || acct.DeviceJID() != jid {
		t.Fatalf("account not provisioned as %v", jid)
	}
	if cli.Store.LID.User != acct.LID().User || cli.Store.LID.Device != jid.Device {
		t.Fatalf("LID changed: %v vs %v", cli.Store.LID, acct.LID())
	}
	// Wait for the prekey re-upload, then a contact can write.
	testenv.Eventually(t, waitTimeout, func() bool { return srv2.Count("in:iq:encrypt") >= 3 }, "prekeys uploaded")
	bob := srv2.Contact("5511988880210")
	var id string
	testenv.Eventually(t, waitTimeout, func() bool {
		id, err = bob.SendText(context.Background(), s.phone, "back again")
		return err == nil
	}, "contact can encrypt to the account")
	if m := next[*events.Message](t, rec); m.Info.ID != id || m.Message.GetConversation() != "back again" {
		t.Fatalf("got %s %q", m.Info.ID, m.Message.GetConversation())
	}
}

// cli.Logout removes the companion device on the server too.
func TestLogout(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990220", nil)
	if err := s.cli.Logout(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitTimeout, func() bool { return !s.acct.Paired() && !s.acct.Connected() }, "device removed on the server")
}

// Pairing the same phone again (a new device) removes the old device: its
// client is logged out (device_removed) and the new one connects.
func TestRepairReplacesOldDevice(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	store := openContainer(t, newDB(t))
	old := pair(t, srv, "5511999990230", store)
	oldJID := *old.cli.Store.ID
	closes := old.log.SocketCloses()
	fresh := pair(t, srv, "5511999990230", store)
	if lo := next[*events.LoggedOut](t, old.rec); lo.OnConnect {
		t.Fatalf("old device LoggedOut %+v", lo)
	}
	if err := old.log.WaitSocketCloses(ctxT(t), closes+1); err != nil {
		t.Fatal(err)
	}
	if got := *fresh.cli.Store.ID; got.User != oldJID.User || got.Device == oldJID.Device {
		t.Fatalf("new device %v, old %v", got, oldJID)
	}
	if srv.Account("5511999990230").DeviceJID() != *fresh.cli.Store.ID {
		t.Fatal("server did not switch to the new device")
	}
}

// The PairClient helper (for the dev binary and other packages' tests).
func TestPairClientHelper(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	store := openContainer(t, newDB(t))
	cli := srv.NewClient(store.NewDevice(), nil)
	t.Cleanup(cli.Disconnect)
	if err := srv.PairClient(ctxT(t), cli, "5511999990240"); err != nil {
		t.Fatal(err)
	}
	if cli.Store.ID == nil || cli.Store.ID.User != "5511999990240" || !srv.Account("5511999990240").Connected() {
		t.Fatalf("not paired: %v", cli.Store.ID)
	}
}
