package connector

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
)

// A message that cannot be decrypted because the device store is down
// takes the session off WhatsApp until the store answers; one that fails
// on its own, or that WhatsApp marks unavailable, changes nothing.
func TestStateMachineLeavesWhatsAppWhileStoreIsDown(t *testing.T) {
	var down atomic.Bool
	m := newMachineWith(t, Policy{MaxAttempts: 1}, func(d *sessionDeps) {
		d.storeCheck = func(context.Context) error {
			if down.Load() {
				return errors.New("connection refused")
			}
			return nil
		}
	})
	m.deliver(&events.Connected{})
	m.wantConnections("connecting: ", "connected: ")
	info := types.MessageInfo{ID: "M1"}

	// The store answers: whatsmeow's retry receipt handles it.
	if !m.deliver(&events.UndecryptableMessage{Info: info}) {
		t.Fatal("an undecryptable message must be acked (whatsmeow asked for a retry)")
	}
	down.Store(true)
	m.deliver(&events.UndecryptableMessage{Info: info, IsUnavailable: true})
	if got := m.status().Status; got != event.StatusConnected {
		t.Fatalf("after failures that are not the store's: %s", got)
	}

	// The store is down: off WhatsApp, no attempt counted.
	m.deliver(&events.UndecryptableMessage{Info: info})
	cli := m.factory.last()
	testWait(t, func() bool { return m.status().Reason == ReasonStoreDown }, "session did not leave WhatsApp")
	if got := m.status().Status; got != event.StatusBackoff {
		t.Fatalf("status %s, want backoff", got)
	}
	cli.mu.Lock()
	disconnects := cli.disconnects
	cli.mu.Unlock()
	if disconnects != 1 {
		t.Fatalf("disconnects %d, want 1", disconnects)
	}
	connects := cli.connectCount()
	// Still down after several checks (more than MaxAttempts): it waits.
	for range 3 {
		m.clock.Advance(storeRecheck)
		m.do(func(context.Context) {})
	}
	if st := m.status(); st.Status != event.StatusBackoff || cli.connectCount() != connects {
		t.Fatalf("reconnected while the store is down: %+v", st)
	}
	// Back: it reconnects on the next check.
	down.Store(false)
	m.clock.Advance(storeRecheck)
	m.do(func(context.Context) {})
	testWait(t, func() bool { return cli.connectCount() > connects }, "no reconnect once the store answers")
	m.deliver(&events.Connected{})
	if got := m.status().Status; got != event.StatusConnected {
		t.Fatalf("after reconnect: %s", got)
	}
	m.wantConnections("connecting: ", "connected: ", "backoff: "+ReasonStoreDown, "connecting: "+ReasonStoreDown, "connected: ")
}
