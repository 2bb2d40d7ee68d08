package wafake

import (
	"fmt"
	"slices"
	"time"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/types"
)

// What the contacts' phones observe of the messages clients send them —
// when each arrived (on an injectable clock), repeated ids, typing — and
// the server refusing sends: what tests of pacing and exactly-once sending
// assert on.

// SetClock sets the clock that stamps what the contacts' phones observe
// (Received.At, ChatState.At, RefusedSend.At), so that a test driving its
// code with a fake clock can check the gaps between messages in that
// clock's time. nil restores the wall clock. Protocol timestamps (the "t"
// of stanzas) stay on the wall clock. The fake calls now with its lock
// held: it must not block on anything that waits for the fake (a fake
// clock that fires its timers outside its own lock is fine).
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	s.clock = now
	s.mu.Unlock()
}

func (s *Server) nowLocked() time.Time {
	if s.clock != nil {
		return s.clock()
	}
	return time.Now()
}

// receiveLocked records a message a client sent that u's phone decrypted.
// A phone shows a repeated message id once: a message whose id u already
// has (in the same chat) is not recorded again, only counted
// (Contact.Deliveries). It reports whether r was new.
func (s *Server) receiveLocked(u *Contact, r Received) bool {
	key := r.Chat.String() + "|" + r.ID
	if u.deliveries == nil {
		u.deliveries = map[string]int{}
	}
	u.deliveries[key]++
	if u.deliveries[key] > 1 {
		s.repeats++
		s.log.Debug().Str("id", r.ID).Str("to", u.phone).Int("times", u.deliveries[key]).Msg("repeated message id: shown once")
		return false
	}
	s.seq++
	r.At, r.Seq = s.nowLocked(), s.seq
	u.received = append(u.received, r)
	s.sentLog = append(s.sentLog, r)
	return true
}

// Deliveries returns how many times a message with this id reached the
// contact's phone (1:1; for a group message use DeliveriesIn). Messages
// records it once however often it arrived.
func (c *Contact) Deliveries(id string) int {
	return c.DeliveriesIn(types.EmptyJID, id)
}

// DeliveriesIn is Deliveries for a message in group chat.
func (c *Contact) DeliveriesIn(chat types.JID, id string) int {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return c.deliveries[chat.String()+"|"+id]
}

// Repeats is how many times, across all contacts, a message arrived whose
// id the contact already had (0 when nothing was ever sent twice).
func (s *Server) Repeats() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.repeats
}

// SentBy returns the messages the clients of account accountPhone sent
// that contacts' phones received, in arrival order (each id once per
// contact), across contacts: the gaps between their At are the account's
// pacing.
func (s *Server) SentBy(accountPhone string) []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Received
	for _, r := range s.sentLog {
		if r.From == accountPhone {
			out = append(out, r)
		}
	}
	return out
}

// ChatState is a chat state (typing indicator) a client sent: whatsmeow's
// SendChatPresence, <chatstate to=…><composing/> or <paused/>.
type ChatState struct {
	From  string    // the sending account's phone
	To    types.JID // the chat as the client addressed it (PN, LID or group)
	State string    // "composing" or "paused"
	Media string    // "audio" for recording a voice message, else ""
	At    time.Time // on the server's clock (SetClock)
	Seq   int64     // orders chat states and Received (Seq) across contacts
}

// handleChatState records a client's <chatstate>. The server answers
// nothing (whatsmeow sends it without waiting) and, as the fake has no
// presence subscriptions, relays it nowhere.
func (s *Server) handleChatState(c *conn, n *waBinary.Node) {
	to, _ := n.Attrs["to"].(types.JID)
	cs := ChatState{To: to}
	if children := n.GetChildren(); len(children) > 0 {
		cs.State = children[0].Tag
		cs.Media = attrString(&children[0], "media")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.acct == nil {
		return
	}
	cs.From = c.acct.user.phone
	s.seq++
	cs.At, cs.Seq = s.nowLocked(), s.seq
	s.chatLog = append(s.chatLog, cs)
	if u := s.lookupLocked(to, true); u != nil { // typing may come before the first message
		u.chatStates = append(u.chatStates, cs)
	}
	s.notifyLocked()
}

// handlePresence records the client's own presence (cli.SendPresence:
// <presence type="available"|"unavailable" name=…/>); subscriptions
// (type="subscribe") are ignored. Nothing is answered.
func (s *Server) handlePresence(c *conn, n *waBinary.Node) {
	typ := attrString(n, "type")
	if typ != "available" && typ != "unavailable" {
		return
	}
	s.mu.Lock()
	if c.acct != nil {
		c.acct.presence = typ
		s.notifyLocked()
	}
	s.mu.Unlock()
}

// Presence is the presence the account's client last sent
// (cli.SendPresence): "available", "unavailable", or "" if none.
func (a *Account) Presence() string {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return a.presence
}

// ChatStates returns the chat states clients sent to this contact (1:1),
// in order.
func (c *Contact) ChatStates() []ChatState {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return slices.Clone(c.chatStates)
}

// ChatStates returns every chat state the clients of account accountPhone
// sent, in order (groups included).
func (s *Server) ChatStates(accountPhone string) []ChatState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ChatState
	for _, cs := range s.chatLog {
		if cs.From == accountPhone {
			out = append(out, cs)
		}
	}
	return out
}

// RefusedSend is a message the server refused (FailSends, FailSendsTo):
// the client got <ack class="message" error=Code>, the contact nothing.
type RefusedSend struct {
	ID   string
	To   types.JID
	Code int
	At   time.Time // on the server's clock (SetClock)
}

// Send error codes the real server answers in a message's ack (whatsmeow's
// SendMessage returns an error wrapping whatsmeow.ErrServerReturnedError
// with the code).
const (
	SendErrorInvalidStanza = 479 // smax-invalid
	SendErrorRateLimited   = 421
	SendErrorReachout      = 463 // reachout time-locked (new chats restricted)
)

// FailSends makes the server refuse the account's clients' next n messages
// (to anyone but the account's own devices) with <ack class="message"
// error=code>: whatsmeow's SendMessage returns an error wrapping
// whatsmeow.ErrServerReturnedError ("server returned error 479"). Refused
// messages never reach the contact. Calls add up; code 0 means
// SendErrorInvalidStanza.
func (a *Account) FailSends(n, code int) {
	if code == 0 {
		code = SendErrorInvalidStanza
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	for range n {
		a.s.failAll[a] = append(a.s.failAll[a], code)
	}
}

// FailSendsTo is FailSends for the account's next n messages to contact
// phone only (checked before FailSends).
func (a *Account) FailSendsTo(phone string, n, code int) {
	if code == 0 {
		code = SendErrorInvalidStanza
	}
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	m := a.s.failTo[a]
	if m == nil {
		m = map[string][]int{}
		a.s.failTo[a] = m
	}
	for range n {
		m[phone] = append(m[phone], code)
	}
}

// Refused returns the messages of the account's clients the server
// refused, in order.
func (a *Account) Refused() []RefusedSend {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	var out []RefusedSend
	for _, r := range a.s.refused {
		if r.acct == a {
			out = append(out, r.RefusedSend)
		}
	}
	return out
}

type refusal struct {
	RefusedSend
	acct *Account
}

// refuseLocked takes an injected failure for a message to `to`, if one is
// due, and returns its code.
func (s *Server) refuseLocked(a *Account, n *waBinary.Node, to types.JID) (int, bool) {
	if a == nil || attrString(n, "category") == "peer" {
		return 0, false
	}
	target := to.User
	if u := s.lookupLocked(to, false); u != nil {
		if u == a.user {
			return 0, false // the account's own phone
		}
		target = u.phone
	}
	var code int
	if q := s.failTo[a][target]; len(q) > 0 {
		code, s.failTo[a][target] = q[0], q[1:]
	} else if q := s.failAll[a]; len(q) > 0 {
		code, s.failAll[a] = q[0], q[1:]
	} else {
		return 0, false
	}
	s.refused = append(s.refused, refusal{RefusedSend{ID: attrString(n, "id"), To: to, Code: code, At: s.nowLocked()}, a})
	s.notifyLocked()
	return code, true
}

// refuse answers a refused message with an error ack.
func (s *Server) refuse(c *conn, n *waBinary.Node, to types.JID, code int) {
	ack := waBinary.Node{Tag: "ack", Attrs: waBinary.Attrs{
		"class": "message", "id": attrString(n, "id"), "t": fmt.Sprint(time.Now().Unix()), "error": fmt.Sprint(code),
	}}
	if !to.IsEmpty() {
		ack.Attrs["from"] = to
	}
	s.log.Debug().Str("id", attrString(n, "id")).Int("code", code).Msg("refusing the client's message (injected failure)")
	_ = c.send(ack)
}
