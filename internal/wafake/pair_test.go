package wafake_test

import (
	"context"
	"testing"

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
