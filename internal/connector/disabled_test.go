package connector_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// A mentorado an admin disabled (mentorados.disabled_at) keeps its paired
// device and desired state, but no connector restores it at start-up, and
// a connect or send command for it is refused.
func TestDisabledMentoradoNotRestored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ids := e.mentorados(3)
	for i, m := range ids {
		e.paired(m, "5531988880"+string(rune('0'+i))+"00")
	}
	if _, err := e.db.Pool.Exec(context.Background(), "UPDATE mentorados SET disabled_at = now() WHERE id = $1", ids[1]); err != nil {
		t.Fatal(err)
	}
	a := e.start("a", nil, nil)
	want := []int64{ids[0], ids[2]}
	testenv.Eventually(t, wait, func() bool {
		for _, m := range want {
			if s, ok := a.c.Status(m); !ok || s.Status != event.StatusConnected {
				return false
			}
		}
		return true
	}, "enabled sessions restored")
	owned := a.c.Owned()
	slices.Sort(owned)
	if !slices.Equal(owned, want) {
		t.Fatalf("owned %v, want %v (the disabled mentorado must not be restored)", owned, want)
	}
	if e.world.Connected(ids[1]) {
		t.Fatal("disabled mentorado connected")
	}
	for _, verb := range []event.Verb{event.VerbConnect, event.VerbSend} {
		var body any = event.ConnectRequest{Method: event.ConnectQR}
		if verb == event.VerbSend {
			body = event.SendRequest{Phone: "5531977776666", Text: "hi"}
		}
		reply := e.mustRequest(ids[1], verb, body)
		if reply.Error == nil || reply.Error.Code != event.CodeDisabled {
			t.Errorf("%s for a disabled mentorado: %+v, want %s", verb, reply, event.CodeDisabled)
		}
	}
	if e.world.Connected(ids[1]) {
		t.Fatal("disabled mentorado connected by a command")
	}
	if d := e.desired(ids[1]); d != "connected" {
		t.Fatalf("desired state of the disabled mentorado changed to %s; its data must be kept", d)
	}
}
