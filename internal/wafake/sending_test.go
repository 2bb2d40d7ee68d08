package wafake_test

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/wafake"
)

// onWhatsApp asks the real client about numbers (E.164 digits) and returns
// the answers by query.
func onWhatsApp(t *testing.T, s *session, numbers ...string) map[string]types.IsOnWhatsAppResponse {
	t.Helper()
	q := make([]string, len(numbers))
	for i, n := range numbers {
		q[i] = "+" + n
	}
	resp, err := s.cli.IsOnWhatsApp(ctxT(t), q)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]types.IsOnWhatsAppResponse{}
	for _, r := range resp {
		out[strings.TrimPrefix(r.Query, "+")] = r
	}
	if len(out) != len(numbers) {
		t.Fatalf("asked %v, got %+v", numbers, resp)
	}
	return out
}

// resolve is what the connector does: ask for every 9th-digit variant,
// take the JID of the first "in" answer.
func resolve(t *testing.T, s *session, number string) types.JID {
	t.Helper()
	vs := phone.BrazilVariants(number)
	got := onWhatsApp(t, s, vs...)
	for _, v := range vs {
		if got[v].IsIn {
			return got[v].JID
		}
	}
	return types.EmptyJID
}

// IsOnWhatsApp is answered truthfully: registered numbers "in" with their
// JID, unregistered ones "out"; a Brazilian mobile is "in" only under the
// form it is registered with, so resolving either form reaches it.
func TestIsOnWhatsApp(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990500", nil)
	bob := srv.Contact("5511988880500")
	srv.SetRegistered("5511988880501", false)
	old8 := srv.Contact("551187650502")  // registered without the 9th digit
	new9 := srv.Contact("5511976540503") // registered with it

	got := onWhatsApp(t, s, bob.Phone(), "5511988880501", "14155550504")
	if r := got[bob.Phone()]; !r.IsIn || r.JID != bob.JID() {
		t.Errorf("registered contact: %+v", r)
	}
	if r := got["5511988880501"]; r.IsIn {
		t.Errorf("unregistered number answered in: %+v", r)
	}
	if r := got["14155550504"]; !r.IsIn {
		t.Errorf("unknown number, default mode: %+v, want in (every number is on WhatsApp by default)", r)
	}

	// Both forms of each Brazilian mobile: only the registered one is in.
	got = onWhatsApp(t, s, "5511987650502", "551187650502", "5511976540503", "551176540503")
	if got["5511987650502"].IsIn || !got["551187650502"].IsIn || got["551187650502"].JID != old8.JID() {
		t.Errorf("8-digit registration: %+v", got)
	}
	if !got["5511976540503"].IsIn || got["5511976540503"].JID != new9.JID() || got["551176540503"].IsIn {
		t.Errorf("9-digit registration: %+v", got)
	}
	for _, typed := range []string{"5511987650502", "551187650502"} {
		if j := resolve(t, s, typed); j != old8.JID() {
			t.Errorf("resolve(%s) = %v, want %v", typed, j, old8.JID())
		}
	}
	if j := resolve(t, s, "551176540503"); j != new9.JID() {
		t.Errorf("resolve(551176540503) = %v, want %v", j, new9.JID())
	}

	// A message to the resolved JID reaches the registered form.
	ctx := ctxT(t)
	to := resolve(t, s, "5511987650502")
	resp, err := s.cli.SendMessage(ctx, to, &waE2E.Message{Conversation: proto.String("oi")})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := old8.WaitMessage(ctx); err != nil || m.ID != resp.ID {
		t.Fatalf("registered form got %+v %v", m, err)
	}

	// The wrong form is a ghost chat: acked, received by no one.
	if _, err := s.cli.SendMessage(ctx, types.NewJID("5511987650502", types.DefaultUserServer), &waE2E.Message{Conversation: proto.String("ghost")}); err != nil {
		t.Fatal(err)
	}
	if sent := srv.SentBy(s.phone); len(sent) != 1 || sent[0].ID != resp.ID {
		t.Fatalf("after a send to the wrong form, received: %+v", sent)
	}

	// Aliasing: the other form answers in, with the registered JID.
	srv.SetBrazilAliasing(true)
	got = onWhatsApp(t, s, "5511987650502")
	if r := got["5511987650502"]; !r.IsIn || r.JID != old8.JID() {
		t.Errorf("aliased 9-digit form: %+v, want in as %v", r, old8.JID())
	}
	srv.SetBrazilAliasing(false)

	// SetRegistered(true) after false puts it back.
	srv.SetRegistered("5511988880501", true)
	if r := onWhatsApp(t, s, "5511988880501")["5511988880501"]; !r.IsIn {
		t.Errorf("re-registered: %+v", r)
	}
}

// In strict mode only numbers the test created are on WhatsApp.
func TestIsOnWhatsAppStrict(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990510", nil)
	srv.SetStrictRegistry(true)
	bob := srv.Contact("5511988880510")
	srv.SetRegistered("14155550511", true)

	got := onWhatsApp(t, s, bob.Phone(), "14155550511", "14155550512", s.phone)
	if !got[bob.Phone()].IsIn || !got["14155550511"].IsIn || !got[s.phone].IsIn {
		t.Errorf("created numbers: %+v", got)
	}
	if got["14155550512"].IsIn {
		t.Errorf("number the test never created: %+v", got["14155550512"])
	}
	// A message to a number that is not on WhatsApp is acked and reaches
	// no one; the number stays unregistered.
	if _, err := s.cli.SendMessage(ctxT(t), types.NewJID("14155550513", types.DefaultUserServer), &waE2E.Message{Conversation: proto.String("x")}); err != nil {
		t.Fatal(err)
	}
	if sent := srv.SentBy(s.phone); len(sent) != 0 {
		t.Errorf("a message to an unregistered number arrived: %+v", sent)
	}
	if r := onWhatsApp(t, s, "14155550513")["14155550513"]; r.IsIn {
		t.Errorf("number sent to, strict mode: %+v", r)
	}
	// Contact() registers it.
	srv.Contact("14155550513")
	if r := onWhatsApp(t, s, "14155550513")["14155550513"]; !r.IsIn {
		t.Errorf("after Contact(): %+v", r)
	}
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// The phones stamp arrivals on the server's clock; SentBy lists them in
// order across contacts; a repeated id is shown once and counted.
func TestPhoneClockAndRepeats(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990520", nil)
	clock := &fakeClock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	srv.SetClock(clock.Now)
	bob, carol := srv.Contact("5511988880520"), srv.Contact("5511988880521")
	ctx := ctxT(t)

	gaps := []time.Duration{0, 37 * time.Second, 52 * time.Second}
	to := []*wafake.Contact{bob, carol, bob}
	var ids []string
	for i, g := range gaps {
		clock.Advance(g)
		resp, err := s.cli.SendMessage(ctx, to[i].JID(), &waE2E.Message{Conversation: proto.String("m")})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.ID)
	}
	sent := srv.SentBy(s.phone)
	if len(sent) != 3 {
		t.Fatalf("SentBy: %d messages, want 3", len(sent))
	}
	for i, r := range sent {
		if r.ID != ids[i] || r.From != s.phone {
			t.Fatalf("SentBy[%d] = %s from %s, want %s", i, r.ID, r.From, ids[i])
		}
		if i > 0 {
			if gap := r.At.Sub(sent[i-1].At); gap != gaps[i] {
				t.Errorf("gap %d = %v, want %v", i, gap, gaps[i])
			}
			if r.Seq <= sent[i-1].Seq {
				t.Errorf("seq not increasing: %d after %d", r.Seq, sent[i-1].Seq)
			}
		}
	}
	if got := bob.Messages(); len(got) != 2 || !got[0].At.Equal(clock.now.Add(-89*time.Second)) {
		t.Fatalf("bob's messages %+v", got)
	}

	// The same id sent again (a crash between send and commit): shown once.
	for range 2 {
		if _, err := s.cli.SendMessage(ctx, carol.JID(), &waE2E.Message{Conversation: proto.String("again")}, whatsmeow.SendRequestExtra{ID: ids[1]}); err != nil {
			t.Fatal(err)
		}
	}
	// A later message proves the repeats were handled (the server handles
	// one connection's stanzas in order).
	last, err := s.cli.SendMessage(ctx, carol.JID(), &waE2E.Message{Conversation: proto.String("last")})
	if err != nil {
		t.Fatal(err)
	}
	msgs := carol.Messages()
	if len(msgs) != 2 || msgs[0].ID != ids[1] || msgs[0].Text != "m" || msgs[1].ID != last.ID {
		t.Fatalf("carol's messages: %+v", msgs)
	}
	if n := carol.Deliveries(ids[1]); n != 3 {
		t.Errorf("Deliveries(%s) = %d, want 3", ids[1], n)
	}
	if n := carol.Deliveries(last.ID); n != 1 {
		t.Errorf("Deliveries(last) = %d, want 1", n)
	}
	if n := srv.Repeats(); n != 2 {
		t.Errorf("Repeats = %d, want 2", n)
	}
	if n := len(srv.SentBy(s.phone)); n != 4 {
		t.Errorf("SentBy after repeats: %d, want 4", n)
	}
}

// Injected failures: the server refuses the next sends with an error ack,
// whatsmeow's SendMessage returns ErrServerReturnedError, the contact gets
// nothing; later sends go through.
func TestInjectedSendFailures(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990530", nil)
	bob, carol := srv.Contact("5511988880530"), srv.Contact("5511988880531")
	ctx := ctxT(t)
	send := func(c *wafake.Contact, text string) (whatsmeow.SendResponse, error) {
		return s.cli.SendMessage(ctx, c.JID(), &waE2E.Message{Conversation: proto.String(text)})
	}

	s.acct.FailSends(2, wafake.SendErrorInvalidStanza)
	for i := range 2 {
		_, err := send(bob, "refused")
		if !errors.Is(err, whatsmeow.ErrServerReturnedError) || !strings.Contains(err.Error(), "479") {
			t.Fatalf("send %d: err = %v, want server returned error 479", i, err)
		}
	}
	ok, err := send(bob, "accepted")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := bob.WaitMessage(ctx); err != nil || m.ID != ok.ID || m.Text != "accepted" {
		t.Fatalf("bob got %+v %v", m, err)
	}
	if n := len(bob.Messages()); n != 1 {
		t.Fatalf("bob has %d messages, want 1 (refused ones never arrive)", n)
	}

	s.acct.FailSendsTo(carol.Phone(), 1, wafake.SendErrorReachout)
	if _, err := send(bob, "to bob"); err != nil {
		t.Fatalf("send to bob while carol's fail: %v", err)
	}
	if _, err := send(carol, "to carol"); err == nil || !strings.Contains(err.Error(), "463") {
		t.Fatalf("send to carol: %v, want error 463", err)
	}
	if _, err := send(carol, "to carol again"); err != nil {
		t.Fatal(err)
	}
	if m, err := carol.WaitMessage(ctx); err != nil || m.Text != "to carol again" {
		t.Fatalf("carol got %+v %v", m, err)
	}

	ref := s.acct.Refused()
	codes := make([]int, len(ref))
	for i, r := range ref {
		codes[i] = r.Code
	}
	if !slices.Equal(codes, []int{479, 479, 463}) || ref[2].To.User != carol.Phone() {
		t.Fatalf("refused %+v", ref)
	}
}

// Chat presence: the fake records the client's typing per contact, with
// its time, ordered against the messages.
func TestChatPresence(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990540", nil)
	clock := &fakeClock{now: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)}
	srv.SetClock(clock.Now)
	bob := srv.Contact("5511988880540")
	ctx := ctxT(t)

	s.cli.Store.PushName = "Ana"
	if err := s.cli.SendPresence(ctx, types.PresenceAvailable); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, waitTimeout, func() bool { return s.acct.Presence() == "available" }, "presence recorded")
	if err := s.cli.SendChatPresence(ctx, bob.JID(), types.ChatPresenceComposing, types.ChatPresenceMediaText); err != nil {
		t.Fatal(err)
	}
	// SendChatPresence returns once written: wait for the fake to read it
	// before moving the clock.
	testenv.Eventually(t, waitTimeout, func() bool { return len(bob.ChatStates()) == 1 }, "composing recorded")
	clock.Advance(4 * time.Second)
	if err := s.cli.SendChatPresence(ctx, bob.JID(), types.ChatPresencePaused, ""); err != nil {
		t.Fatal(err)
	}
	resp, err := s.cli.SendMessage(ctx, bob.JID(), &waE2E.Message{Conversation: proto.String("typed")})
	if err != nil {
		t.Fatal(err)
	}
	m, err := bob.WaitMessage(ctx)
	if err != nil || m.ID != resp.ID {
		t.Fatalf("%+v %v", m, err)
	}
	cs := bob.ChatStates()
	if len(cs) != 2 || cs[0].State != "composing" || cs[1].State != "paused" || cs[0].From != s.phone {
		t.Fatalf("chat states %+v", cs)
	}
	if cs[1].At.Sub(cs[0].At) != 4*time.Second || cs[1].Seq >= m.Seq || !cs[0].At.Before(m.At) {
		t.Fatalf("typing %+v did not precede the message (at %v, seq %d)", cs, m.At, m.Seq)
	}
	if all := srv.ChatStates(s.phone); len(all) != 2 {
		t.Fatalf("server chat states %+v", all)
	}
}
