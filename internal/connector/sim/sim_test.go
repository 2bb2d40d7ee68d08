package sim_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/connector/sim"
)

const m = 7

// connected returns a logged-in sim client of mentorado m.
func connected(t *testing.T, w *sim.World) *sim.Client {
	t.Helper()
	dev := w.AddDevice(m, "5511999990001")
	c, err := (&sim.Factory{W: w}).NewClient(context.Background(), connector.ClientParams{Mentorado: m, Device: dev})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Disconnect)
	return c.(*sim.Client)
}

func answers(t *testing.T, c *sim.Client, numbers ...string) map[string]types.IsOnWhatsAppResponse {
	t.Helper()
	q := make([]string, len(numbers))
	for i, n := range numbers {
		q[i] = "+" + n
	}
	resp, err := c.IsOnWhatsApp(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]types.IsOnWhatsAppResponse{}
	for _, r := range resp {
		out[strings.TrimPrefix(r.Query, "+")] = r
	}
	return out
}

func TestIsOnWhatsApp(t *testing.T) {
	w := sim.NewWorld()
	c := connected(t, w)
	w.SetRegistered("551187654321", true) // the old 8-digit form
	w.SetRegistered("5511976543210", false)

	got := answers(t, c, "5511987654321", "551187654321", "5511976543210", "14155550100")
	if r := got["5511987654321"]; r.IsIn {
		t.Errorf("unregistered 9-digit form of an 8-digit registration: %+v", r)
	}
	if r := got["551187654321"]; !r.IsIn || r.JID.User != "551187654321" {
		t.Errorf("registered form: %+v", r)
	}
	if r := got["5511976543210"]; r.IsIn {
		t.Errorf("unregistered: %+v", r)
	}
	if r := got["14155550100"]; !r.IsIn {
		t.Errorf("default mode, unknown number: %+v", r)
	}

	w.SetStrict(true)
	got = answers(t, c, "14155550100", "551187654321")
	if got["14155550100"].IsIn || !got["551187654321"].IsIn {
		t.Errorf("strict: %+v", got)
	}
}

func TestChatPresenceAndClock(t *testing.T) {
	w := sim.NewWorld()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	w.SetClock(func() time.Time { return now })
	c := connected(t, w)
	to := types.NewJID("5511988880001", types.DefaultUserServer)
	ctx := context.Background()

	if err := c.SendChatPresence(ctx, to, types.ChatPresenceComposing, ""); err != nil {
		t.Fatal(err)
	}
	now = now.Add(3 * time.Second)
	if _, err := c.SendMessage(ctx, to, &waE2E.Message{Conversation: proto.String("oi")}); err != nil {
		t.Fatal(err)
	}
	cs, sent := w.ChatStates(m), w.Sent(m)
	if len(cs) != 1 || cs[0].State != types.ChatPresenceComposing || cs[0].To != to || len(sent) != 1 {
		t.Fatalf("chat states %+v, sent %+v", cs, sent)
	}
	if sent[0].At.Sub(cs[0].At) != 3*time.Second || cs[0].Seq >= sent[0].Seq {
		t.Fatalf("typing at %v (seq %d), message at %v (seq %d)", cs[0].At, cs[0].Seq, sent[0].At, sent[0].Seq)
	}
	c.Disconnect()
	if err := c.SendChatPresence(ctx, to, types.ChatPresencePaused, ""); !errors.Is(err, whatsmeow.ErrNotConnected) {
		t.Fatalf("disconnected: %v", err)
	}
}

func TestFailSends(t *testing.T) {
	w := sim.NewWorld()
	c := connected(t, w)
	ctx := context.Background()
	bob := types.NewJID("5511988880001", types.DefaultUserServer)
	carol := types.NewJID("5511988880002", types.DefaultUserServer)
	send := func(to types.JID) error {
		_, err := c.SendMessage(ctx, to, &waE2E.Message{Conversation: proto.String("x")})
		return err
	}

	w.FailSends(m, sim.ServerError(479), sim.ServerError(421))
	w.FailSendsTo(m, carol.User, sim.ServerError(463))
	if err := send(carol); err == nil || !strings.Contains(err.Error(), "463") || !errors.Is(err, whatsmeow.ErrServerReturnedError) {
		t.Fatalf("to carol: %v", err)
	}
	for _, code := range []string{"479", "421"} {
		if err := send(bob); err == nil || !strings.Contains(err.Error(), code) {
			t.Fatalf("to bob: %v, want %s", err, code)
		}
	}
	if err := send(bob); err != nil {
		t.Fatal(err)
	}
	if n := len(w.Sent(m)); n != 1 {
		t.Fatalf("sent %d, want 1 (failed sends are not sent)", n)
	}
}
