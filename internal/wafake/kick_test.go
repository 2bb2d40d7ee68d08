package wafake_test

import (
	"context"
	"testing"
	"time"

	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/wafake"
)

func TestKick401LogsOut(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990040", nil)
	s.kicked(t, wafake.Kick{Kind: wafake.Kick401})
	lo := next[*events.LoggedOut](t, s.rec)
	if !lo.OnConnect || lo.Reason != events.ConnectFailureLoggedOut {
		t.Fatalf("LoggedOut %+v", lo)
	}
	testenv.Eventually(t, waitTimeout, func() bool {
		devs, err := s.store.GetAllDevices(context.Background())
		return err == nil && len(devs) == 0
	}, "device deleted from the store")
	if s.cli.Store.ID != nil {
		t.Fatalf("client store still has ID %v", s.cli.Store.ID)
	}
	if s.acct.Paired() || s.acct.Connected() {
		t.Fatal("server still has the device")
	}
	logins := srv.Count("out:success")
	never(t, 300*time.Millisecond, func() bool { return srv.Count("out:success") != logins }, "client reconnected after 401")
}

func TestKickDeviceRemoved(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990041", nil)
	s.kicked(t, wafake.Kick{Kind: wafake.KickDeviceRemoved})
	if lo := next[*events.LoggedOut](t, s.rec); lo.OnConnect {
		t.Fatalf("LoggedOut %+v", lo)
	}
	testenv.Eventually(t, waitTimeout, func() bool {
		devs, err := s.store.GetAllDevices(context.Background())
		return err == nil && len(devs) == 0
	}, "device deleted from the store")
}

func TestKick515Reconnects(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990050", nil)
	if err := s.acct.Kick(wafake.Kick{Kind: wafake.Kick515}); err != nil {
		t.Fatal(err)
	}
	next[*events.Connected](t, s.rec) // the second Connected
	testenv.Eventually(t, waitTimeout, s.acct.Connected, "reconnected on the server")
	if n := count[*events.LoggedOut](s.rec); n != 0 {
		t.Fatal("logged out")
	}
	// The session still works.
	id, err := srv.Contact("5511988880050").SendText(ctxT(t), s.phone, "after 515")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WaitReceipt(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
}

func TestKickDropReconnectsAndRedelivers(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990055", nil)
	bob := srv.Contact("5511988880055")
	if err := s.acct.Kick(wafake.Kick{Kind: wafake.KickDrop}); err != nil {
		t.Fatal(err)
	}
	// Queued while the client is away (or racing its reconnect): delivered
	// on the next login, followed by <ib><offline/>.
	id, err := bob.SendText(ctxT(t), s.phone, "while you were away")
	if err != nil {
		t.Fatal(err)
	}
	next[*events.Disconnected](t, s.rec)
	next[*events.Connected](t, s.rec)
	if m := next[*events.Message](t, s.rec); m.Info.ID != id {
		t.Fatalf("got %s, want %s", m.Info.ID, id)
	}
	if _, err := srv.WaitReceipt(ctxT(t), id); err != nil {
		t.Fatal(err)
	}
}

func TestKickReplaced(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990060", nil)
	logins := srv.Count("out:success")
	s.kicked(t, wafake.Kick{Kind: wafake.KickReplaced})
	next[*events.StreamReplaced](t, s.rec)
	// Kick returned after the server closed the socket. (Do not poll
	// cli.IsConnected here: it reads the socket without a lock and races
	// with whatsmeow's own close under -race.)
	never(t, 300*time.Millisecond, func() bool {
		return srv.Count("out:success") != logins || count[*events.Disconnected](s.rec) != 0
	}, "client reconnected after replaced")
}

// The race: the server closes the socket right after the replaced stream
// error. whatsmeow may handle the stanza (StreamReplaced, no reconnect), lose
// it (Disconnected + automatic reconnect), or both. This test documents the
// outcomes; the connector must cope with each.
func TestKickReplacedRace(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990070", nil)
	cli, rec, cl := s.cli, s.rec, s.log
	outcomes := map[string]int{}
	for i := 0; i < 5; i++ {
		if i > 0 {
			// A fresh client on the same device for every round.
			dev, err := s.store.GetDevice(context.Background(), *cli.Store.ID)
			if err != nil || dev == nil {
				t.Fatalf("device: %v", err)
			}
			cli.Disconnect()
			cl = wafake.NewClientLog(nil)
			cli = srv.NewClient(dev, cl)
			rec = newRecorder(cli)
			t.Cleanup(cli.Disconnect)
			if err := cli.Connect(); err != nil {
				t.Fatal(err)
			}
			next[*events.Connected](t, rec)
			testenv.Eventually(t, waitTimeout, s.acct.Connected, "round %d: connected", i)
		}
		closes := cl.SocketCloses()
		if err := s.acct.Kick(wafake.Kick{Kind: wafake.KickReplaced, CloseAfter: true}); err != nil {
			t.Fatal(err)
		}
		if err := cl.WaitSocketCloses(ctxT(t), closes+1); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, waitTimeout, func() bool {
			return count[*events.StreamReplaced](rec) > 0 || count[*events.Disconnected](rec) > 0
		}, "StreamReplaced or Disconnected")
		// Let the other event (if any) arrive: both are dispatched from
		// goroutines in whatsmeow.
		end := time.Now().Add(300 * time.Millisecond)
		for time.Now().Before(end) && (count[*events.StreamReplaced](rec) == 0 || count[*events.Disconnected](rec) == 0) {
			time.Sleep(10 * time.Millisecond)
		}
		if count[*events.Disconnected](rec) == 0 {
			outcomes["StreamReplaced only (no reconnect)"]++
			continue
		}
		// whatsmeow saw the EOF before it handled the stanza: Disconnected,
		// then an automatic reconnect, unless the late StreamReplaced
		// handler marked the disconnect as expected before the reconnect
		// loop looked.
		reconnected := func() bool { return count[*events.Connected](rec) > 1 && s.acct.Connected() }
		testenv.Eventually(t, waitTimeout, func() bool {
			return reconnected() || count[*events.StreamReplaced](rec) > 0
		}, "auto-reconnect after a lost replaced")
		if !reconnected() {
			end := time.Now().Add(time.Second)
			for time.Now().Before(end) && !reconnected() {
				time.Sleep(10 * time.Millisecond)
			}
		}
		key := "Disconnected"
		if count[*events.StreamReplaced](rec) > 0 {
			key = "StreamReplaced+Disconnected"
		}
		if reconnected() {
			key += "+reconnect"
		} else {
			key += " (no reconnect)"
		}
		outcomes[key]++
	}
	t.Logf("replaced+CloseAfter outcomes over 5 runs: %v", outcomes)
}

func TestKickTemporaryBan(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990080", nil)
	s.kicked(t, wafake.Kick{Kind: wafake.KickBan, BanExpiry: 90 * time.Minute, BanCode: 102})
	ban := next[*events.TemporaryBan](t, s.rec)
	if ban.Code != events.TempBanBlockedByUsers || ban.Expire != 90*time.Minute {
		t.Fatalf("TemporaryBan %+v", ban)
	}
	devs, err := s.store.GetAllDevices(context.Background())
	if err != nil || len(devs) != 1 {
		t.Fatalf("a ban must not delete the device: %v %v", devs, err)
	}
	// Logging in during the ban fails again, with the remaining time (a
	// new client: the banned one does not reconnect by itself).
	cl2 := wafake.NewClientLog(nil)
	cli2 := srv.NewClient(devs[0], cl2)
	rec2 := newRecorder(cli2)
	t.Cleanup(cli2.Disconnect)
	if err := cli2.Connect(); err != nil {
		t.Fatal(err)
	}
	ban = next[*events.TemporaryBan](t, rec2)
	if err := cl2.WaitSocketCloses(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	if ban.Expire <= 0 || ban.Expire > 90*time.Minute {
		t.Fatalf("second TemporaryBan %+v", ban)
	}
	if s.acct.Connected() {
		t.Fatal("banned account connected")
	}
}

// Two clients on one device: the newer login replaces the older connection.
func TestSecondLoginReplacesFirst(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990090", nil)
	dev, err := openContainer(t, s.url).GetDevice(context.Background(), *s.cli.Store.ID)
	if err != nil || dev == nil {
		t.Fatal(err)
	}
	cli2 := srv.NewClient(dev, nil)
	rec2 := newRecorder(cli2)
	t.Cleanup(cli2.Disconnect)
	if err := cli2.Connect(); err != nil {
		t.Fatal(err)
	}
	next[*events.Connected](t, rec2)
	next[*events.StreamReplaced](t, s.rec)
	if err := s.log.WaitSocketCloses(ctxT(t), 1); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitTimeout, s.acct.Connected, "second client connected")
}
