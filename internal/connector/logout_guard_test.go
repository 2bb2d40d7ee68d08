package connector_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/wafake"
)

// devicesAtLoggedOut counts phone's whatsmeow device rows at the moment
// each logged_out connection event of m is published (a core subscription
// on the publish subject sees it as JetStream stores it).
func (re *realEnv) devicesAtLoggedOut(t *testing.T, m int64, phone string) <-chan int {
	t.Helper()
	ch := make(chan int, 4)
	sub, err := re.observer.NC.Subscribe(event.EventSubject(m, event.TypeConnection), func(msg *nats.Msg) {
		env, _, err := event.Decode(msg.Data)
		if err != nil {
			return
		}
		p, err := env.Payload()
		if err != nil || p.(*event.Connection).Status != event.StatusLoggedOut {
			return
		}
		var n int
		if err := re.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM whatsmeow_device WHERE jid LIKE $1", phone+"%").Scan(&n); err != nil {
			n = -1
		}
		ch <- n
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := re.observer.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ch
}

// waitingDeletes counts statements deleting whatsmeow_device rows that are
// waiting for a lock.
func (re *realEnv) waitingDeletes(t *testing.T) int {
	t.Helper()
	var n int
	if err := re.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock' AND query ILIKE 'DELETE FROM whatsmeow_device%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRealLoggedOutAfterDeviceDeleted: when logged_out is published, the
// device's whatsmeow rows are already gone, after a logout command on a
// paired, disconnected session (no whatsmeow client is involved) and after
// a 401 (whatsmeow deletes its store in the background too). To take the
// race with whatsmeow's own deletion out of the 401 cases, the test holds a
// lock on the device row: whatsmeow's background delete waits for it, so
// only the connector's own deletion, finished before publishing, can make
// the rows disappear.
func TestRealLoggedOutAfterDeviceDeleted(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, 30*time.Second))
	ids := re.mentorados(3)
	phones := []string{"5511955552001", "5511955552002", "5511955552003"}
	re.start("a", re.factory(t), nil)
	for i, m := range ids {
		re.pair(t, m, phones[i])
	}

	t.Run("logout command, paired and disconnected", func(t *testing.T) {
		m, p := ids[0], phones[0]
		if r := re.mustRequest(m, event.VerbDisconnect, nil); r.Error != nil || r.Status.Status != event.StatusDisconnected {
			t.Fatalf("disconnect: %+v", r)
		}
		if n := re.whatsmeowDevices(t, p); n != 1 {
			t.Fatalf("%d device rows before logout", n)
		}
		at := re.devicesAtLoggedOut(t, m, p)
		if r := re.mustRequest(m, event.VerbLogout, nil); r.Error != nil || r.Status.Status != event.StatusLoggedOut {
			t.Fatalf("logout: %+v", r)
		}
		select {
		case n := <-at:
			if n != 0 {
				t.Fatalf("logged_out published with %d whatsmeow device rows left", n)
			}
		case <-time.After(wait):
			t.Fatal("no logged_out event")
		}
		if n := re.whatsmeowDevices(t, p); n != 0 {
			t.Fatalf("%d device rows after logout", n)
		}
	})

	for i, kick := range []wafake.KickKind{wafake.Kick401, wafake.KickDeviceRemoved} {
		m, p := ids[i+1], phones[i+1]
		t.Run(kick.String(), func(t *testing.T) {
			ctx := t.Context()
			tx, err := re.db.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(context.Background()) }()
			var locked int
			if err := tx.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM whatsmeow_device WHERE jid LIKE $1 FOR NO KEY UPDATE) d`, p+"%").Scan(&locked); err != nil || locked != 1 {
				t.Fatalf("lock device row: %d (%v)", locked, err)
			}
			at := re.devicesAtLoggedOut(t, m, p)
			if err := re.srv.Account(p).Kick(wafake.Kick{Kind: kick}); err != nil {
				t.Fatal(err)
			}
			// Both whatsmeow's delete and the connector's wait for the lock;
			// logged_out must not be published before the rows are gone.
			deadline := time.Now().Add(wait)
			for re.waitingDeletes(t) < 2 {
				select {
				case n := <-at:
					t.Fatalf("logged_out published with %d whatsmeow device rows left (the connector did not delete the device itself)", n)
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("only %d deletes of the device waiting", re.waitingDeletes(t))
				}
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case n := <-at:
				if n != 0 {
					t.Fatalf("logged_out published with %d whatsmeow device rows left", n)
				}
			case <-time.After(wait):
				t.Fatal("no logged_out event")
			}
			testenv.Eventually(t, wait, func() bool { return re.desired(m) == "none" }, "wa_devices row deleted")
		})
	}
}
