package wafake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
)

// Contact is a fake person: a phone number with a primary phone (device 0)
// and its own Signal identity. Every account's phone is a Contact too.
type Contact struct {
	s     *Server
	phone string
	pn    types.JID
	lid   types.JID
	peer  *peer

	// guarded by s.mu
	account  *Account
	received []Received
	next     int
	// phone.go: arrivals per "chat|id" (a repeated id is recorded once),
	// the chat states clients sent
	deliveries map[string]int
	chatStates []ChatState
	pushName   string
	usePN      bool
	onDemand   bool // created because a client used the number, not by the test (registry.go)
	lidOnly    bool // messages carry no sender_pn; lookups do not reveal the phone
	// Which address the account's client uses for this contact's session.
	// The client encrypts to the LID when it knows the PN→LID mapping and
	// to the PN otherwise; a reply must come from the matching address.
	lidKnown  map[*Account]bool // the client learned this contact's LID
	pnSession map[*Account]bool // the client's session is under the PN
	skdmSent  map[skdmKey]bool  // which clients have this contact's current sender key
}

// Received is a message a client sent to a contact, decrypted by the
// contact's phone.
type Received struct {
	ID        string
	Text      string // Conversation / ExtendedTextMessage text / media caption
	Message   *waE2E.Message
	From      string    // sending account's phone
	FromJID   types.JID // sending device (LID device JID)
	To        types.JID // the "to" attribute the client used (PN or LID chat, or the group)
	Chat      types.JID // the group for a group message; empty for a 1:1 message
	Type      string    // the stanza's type attribute ("text", "media", …)
	Timestamp time.Time // wall clock
	// At is when the phone received it on the server's clock (SetClock);
	// Seq orders it among every message and chat state the server saw.
	At  time.Time
	Seq int64
	// Media is the attachment (image, video, ptv, audio, document,
	// sticker) as the contact's phone downloaded it from the fake CDN by
	// its direct path: FileEncSHA256, MAC, FileSHA256 and FileLength
	// verified, decrypted. MediaErr says why that failed; both are nil
	// for messages without an attachment.
	Media    []byte
	MediaErr error
}

// Receipt is a receipt the client sent for an inbound message.
type Receipt struct {
	ID   string
	Type string // "" (delivered), "inactive", "read", "played", "sender", "retry", …
	From string // account phone
	To   types.JID
	At   time.Time
}

type inboundMsg struct {
	id       string
	acct     *Account
	from     *Contact
	node     waBinary.Node
	sentOn   *conn
	force    bool // redeliver even though receipted
	sends    int
	receipts []Receipt
	acks     int  // client acks (sent instead of a receipt, e.g. decrypt failure)
	stanza   bool // a notification or receipt: sent until the client acks it
	acked    bool
	plain    []byte // contact messages: the marshalled waE2E.Message, for retries
	group    types.JID
}

func (m *inboundMsg) receipted() bool {
	for _, r := range m.receipts {
		if r.Type != "retry" {
			return true
		}
	}
	return false
}

// Contact returns the person with this phone number (E.164 digits), created
// on first use. Sending to an unknown phone number from a client creates one
// too, so by default every number "is on WhatsApp" (registry.go for
// numbers that are not).
func (s *Server) Contact(phone string) *Contact {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.userLocked(phone)
	u.onDemand = false
	return u
}

// Phone is the contact's phone number.
func (c *Contact) Phone() string { return c.phone }

// JID is the contact's phone-number JID (phone@s.whatsapp.net).
func (c *Contact) JID() types.JID { return c.pn }

// LID is the contact's LID JID (…@lid). Inbound messages come from the LID
// with sender_pn set to JID, as WhatsApp does today.
func (c *Contact) LID() types.JID { return c.lid }

// UsePNAddressing makes the contact's messages come from its phone-number
// JID (with sender_lid) instead of its LID (with sender_pn, the default).
// Even by default, a reply on a session the client created by sending to the
// phone number (before it knew the LID) comes from the phone number, so that
// whatsmeow migrates the session to the LID, as with the real server.
func (c *Contact) UsePNAddressing(v bool) {
	c.s.mu.Lock()
	c.usePN = v
	c.s.mu.Unlock()
}

// SetLIDOnly hides the contact's phone number from the account's clients,
// like a WhatsApp user the account only knows by LID (for example a group
// member with a hidden number): while on, its messages come from the LID
// with no sender_pn (whatsmeow's events.Message has Sender = the LID and no
// SenderAlt, and its LID store learns no phone), group stanzas carry no
// participant_pn, group info lists the LID with no phone_number, and usync
// LID queries for its phone number answer no LID. Turning it off again
// makes the next message carry sender_pn: whatsmeow stores the mapping and
// the phone "becomes known". UsePNAddressing wins over it.
func (c *Contact) SetLIDOnly(v bool) {
	c.s.mu.Lock()
	c.lidOnly = v
	c.s.mu.Unlock()
}

// SetPushName sets the notify attribute of the contact's future messages.
func (c *Contact) SetPushName(name string) {
	c.s.mu.Lock()
	c.pushName = name
	c.s.mu.Unlock()
}

func (c *Contact) accountFor(phone string) (*Account, error) { return c.s.pairedAccount(phone) }

// SendText sends an encrypted 1:1 text message from the contact's phone to
// the account's companion device and returns its id. The message is queued
// like on the real server: delivered now if the client is online, else when
// it next logs in, and again on every login until the client sends a
// receipt for it.
func (c *Contact) SendText(ctx context.Context, toAccountPhone, text string) (string, error) {
	return c.SendMessage(ctx, toAccountPhone, &waE2E.Message{Conversation: proto.String(text)})
}

// SendMessage is SendText for any message.
func (c *Contact) SendMessage(ctx context.Context, toAccountPhone string, msg *waE2E.Message) (string, error) {
	a, err := c.accountFor(toAccountPhone)
	if err != nil {
		return "", err
	}
	id := newID()
	if err := c.sendMessageID(ctx, a, id, msg); err != nil {
		return "", err
	}
	return id, nil
}

// sendMessageID encrypts msg to the account's device and queues it with the
// given id.
func (c *Contact) sendMessageID(ctx context.Context, a *Account, id string, msg *waE2E.Message) error {
	plain, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	s := c.s
	s.mu.Lock()
	addr := a.lidDeviceLocked().SignalAddress()
	var b *bundle
	if !c.peer.hasSession(addr) {
		b = a.accountBundleLocked()
	}
	pushName := c.pushName
	fromPN := c.usePN || c.pnSession[a]
	lidOnly := c.lidOnly && !c.usePN
	c.pnSession[a] = false
	c.lidKnown[a] = true
	s.mu.Unlock()
	if b == nil && !c.peer.hasSession(addr) {
		return fmt.Errorf("wafake: account %s has not uploaded prekeys yet", a.user.phone)
	}
	ct, encType, err := c.peer.encrypt(ctx, addr, b, plain)
	if err != nil {
		return fmt.Errorf("wafake: encrypt: %w", err)
	}
	attrs := waBinary.Attrs{
		"from":      c.lid,
		"sender_pn": c.pn,
		"id":        id,
		"t":         fmt.Sprint(time.Now().Unix()),
		"type":      stanzaType(msg),
	}
	if e := editAttr(msg); e != "" {
		attrs["edit"] = e
	}
	encAttrs := waBinary.Attrs{"v": "2", "type": encType}
	if mt := mediaTypeAttr(msg); mt != "" {
		encAttrs["mediatype"] = mt
	}
	if fromPN {
		delete(attrs, "sender_pn")
		attrs["from"], attrs["sender_lid"] = c.pn, c.lid
	}
	if lidOnly {
		// A session the client made by phone number still needs the
		// phone-number address, but the LID is not revealed.
		delete(attrs, "sender_pn")
		delete(attrs, "sender_lid")
	}
	if pushName != "" {
		attrs["notify"] = pushName
	}
	node := waBinary.Node{Tag: "message", Attrs: attrs, Content: []waBinary.Node{{
		Tag: "enc", Attrs: encAttrs, Content: ct,
	}}}
	m := &inboundMsg{id: id, acct: a, from: c, node: node, plain: plain}
	s.mu.Lock()
	s.inbound[id] = m
	a.inbox = append(a.inbox, m)
	s.notifyLocked()
	s.mu.Unlock()
	s.flush(a)
	return nil
}

// due reports whether m must be sent on c (s.mu held).
func (m *inboundMsg) due(c *conn) bool {
	switch {
	case m.force:
		return true
	case m.stanza:
		// Notifications and receipts: once per connection until acked (the
		// client may close the socket before it handled the stanza).
		return m.sentOn != c && !m.acked
	default:
		return m.sentOn != c && !m.receipted() // messages: once per connection until receipted
	}
}

// flush delivers the account's due stanzas, in order, if its client is
// ready. It returns how many it sent.
func (s *Server) flush(a *Account) int {
	a.deliverMu.Lock()
	defer a.deliverMu.Unlock()
	s.mu.Lock()
	c := a.conn
	if c == nil || !c.ready {
		s.mu.Unlock()
		return 0
	}
	var todo []*inboundMsg
	kept := a.inbox[:0]
	for _, m := range a.inbox {
		if m.due(c) {
			m.sentOn, m.force = c, false
			m.sends++
			todo = append(todo, m)
		}
		// keep what may have to be sent again
		if m.force || m.sentOn == nil || (m.stanza && !m.acked) || (!m.stanza && !m.receipted()) {
			kept = append(kept, m)
		}
	}
	clear(a.inbox[len(kept):])
	a.inbox = kept
	s.mu.Unlock()
	for _, m := range todo {
		_ = c.send(m.node)
	}
	return len(todo)
}

// onActive runs when the client set itself active after login: it is the
// moment the fake delivers the offline queue, then <ib><offline count/>.
func (s *Server) onActive(c *conn) {
	s.mu.Lock()
	a := c.acct
	if a == nil || a.conn != c {
		s.mu.Unlock()
		return
	}
	c.ready = true
	s.notifyLocked()
	s.mu.Unlock()
	s.shareAppStateKey(a)
	n := s.flush(a)
	_ = c.send(waBinary.Node{Tag: "ib", Attrs: waBinary.Attrs{"from": types.ServerJID}, Content: []waBinary.Node{
		{Tag: "offline", Attrs: waBinary.Attrs{"count": fmt.Sprint(n)}},
	}})
}

// queueStanza queues a stanza (like a receipt) that is delivered once.
func (s *Server) queueStanza(a *Account, n waBinary.Node) {
	s.mu.Lock()
	a.inbox = append(a.inbox, &inboundMsg{id: attrString(&n, "id"), acct: a, node: n, stanza: true})
	s.mu.Unlock()
	s.flush(a)
}

// Redeliver sends the inbound message msgID to its account's client again
// (the identical stanza, same ciphertext), now if it is online, else at its
// next login.
func (s *Server) Redeliver(ctx context.Context, msgID string) error {
	s.mu.Lock()
	m := s.inbound[msgID]
	if m == nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownMessage, msgID)
	}
	m.force = true
	a := m.acct
	if !slices.Contains(a.inbox, m) {
		a.inbox = append(a.inbox, m)
	}
	s.mu.Unlock()
	s.flush(a)
	return ctx.Err()
}

// Deliveries returns how many times the inbound message was sent to a client.
func (s *Server) Deliveries(msgID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.inbound[msgID]; m != nil {
		return m.sends
	}
	return 0
}

// ReceiptSent reports whether the client sent a (non-retry) receipt for the
// inbound message msgID.
func (s *Server) ReceiptSent(msgID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.inbound[msgID]
	return m != nil && m.receipted()
}

// Receipts returns every receipt the client sent for msgID, in order.
func (s *Server) Receipts(msgID string) []Receipt {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.inbound[msgID]; m != nil {
		return append([]Receipt(nil), m.receipts...)
	}
	return nil
}

// WaitReceipt waits for the first (non-retry) receipt the client sends for
// the inbound message msgID.
func (s *Server) WaitReceipt(ctx context.Context, msgID string) (Receipt, error) {
	var r Receipt
	err := s.waitFor(ctx, func() bool {
		m := s.inbound[msgID]
		if m == nil {
			return false
		}
		for _, rc := range m.receipts {
			if rc.Type != "retry" {
				r = rc
				return true
			}
		}
		return false
	})
	return r, err
}

// WaitReceiptType waits for the client's first receipt of type typ ("" for
// delivered, "read", "played", "server-error", …) for the inbound message
// msgID (MarkRead sends "read", or "read-self" when read receipts are off).
func (s *Server) WaitReceiptType(ctx context.Context, msgID, typ string) (Receipt, error) {
	var r Receipt
	err := s.waitFor(ctx, func() bool {
		if m := s.inbound[msgID]; m != nil {
			for _, rc := range m.receipts {
				if rc.Type == typ {
					r = rc
					return true
				}
			}
		}
		return false
	})
	return r, err
}

func (s *Server) handleClientReceipt(c *conn, n *waBinary.Node) {
	ids := []string{attrString(n, "id")}
	for _, item := range childrenOf(n.GetChildByTag("list")) {
		if item.Tag == "item" {
			ids = append(ids, attrString(&item, "id"))
		}
	}
	to, _ := n.Attrs["to"].(types.JID)
	typ := attrString(n, "type")
	s.mu.Lock()
	phone := ""
	if c.acct != nil {
		phone = c.acct.user.phone
	}
	for _, id := range ids {
		if m := s.inbound[id]; m != nil {
			m.receipts = append(m.receipts, Receipt{ID: id, Type: typ, From: phone, To: to, At: time.Now()})
		}
	}
	s.notifyLocked()
	s.mu.Unlock()
	if typ == "retry" {
		if err := s.answerClientRetry(c, n, ids[0]); err != nil {
			s.log.Warn().Err(err).Str("id", ids[0]).Msg("cannot answer the client's retry receipt")
		}
	}
	ack := waBinary.Node{Tag: "ack", Attrs: waBinary.Attrs{"class": "receipt", "id": ids[0]}}
	if !to.IsEmpty() {
		ack.Attrs["from"] = to
	}
	if typ != "" {
		ack.Attrs["type"] = typ
	}
	_ = c.send(ack)
	if typ == "server-error" {
		s.answerMediaRetry(c, n, ids[0])
	}
}

func (s *Server) handleClientAck(c *conn, n *waBinary.Node) {
	if class := attrString(n, "class"); class != "message" {
		// The first matching stanza sent on this connection: a message can
		// have several receipts with the same id (delivered, then read).
		id, typ := attrString(n, "id"), attrString(n, "type")
		s.mu.Lock()
		if a := c.acct; a != nil {
			for _, m := range a.inbox {
				if m.stanza && !m.acked && m.sentOn == c && m.node.Tag == class && m.id == id && attrString(&m.node, "type") == typ {
					m.acked = true
					break
				}
			}
		}
		s.notifyLocked()
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	if m := s.inbound[attrString(n, "id")]; m != nil {
		m.acks++
		s.notifyLocked()
	}
	s.mu.Unlock()
}

// handleClientMessage decrypts an outgoing message for every recipient
// device the fake knows and acks it.
func (s *Server) handleClientMessage(c *conn, n *waBinary.Node) {
	id := attrString(n, "id")
	to, _ := n.Attrs["to"].(types.JID)
	s.mu.Lock()
	code, refused := s.refuseLocked(c.acct, n, to)
	s.mu.Unlock()
	if refused {
		s.refuse(c, n, to, code)
		return
	}
	if to.Server == types.GroupServer {
		s.handleClientGroupMessage(c, n, to)
		return
	}
	s.mu.Lock()
	a := c.acct
	var senderLID, senderPN types.JID
	if a != nil {
		senderLID, senderPN = a.lidDeviceLocked(), a.pnDeviceLocked()
	}
	s.mu.Unlock()
	ack := waBinary.Node{Tag: "ack", Attrs: waBinary.Attrs{
		"class": "message", "id": id, "t": fmt.Sprint(time.Now().Unix()),
	}}
	if !to.IsEmpty() {
		ack.Attrs["from"] = to
	}
	if a == nil {
		ack.Attrs["error"] = "401"
		_ = c.send(ack)
		return
	}
	type target struct {
		jid types.JID
		enc waBinary.Node
	}
	var targets []target
	for _, p := range childrenOf(n.GetChildByTag("participants")) {
		jid, ok := p.Attrs["jid"].(types.JID)
		if p.Tag == "to" && ok {
			targets = append(targets, target{jid, p.GetChildByTag("enc")})
		}
	}
	if enc, ok := n.GetOptionalChildByTag("enc"); ok && !to.IsEmpty() {
		targets = append(targets, target{to, enc})
	}
	addr := senderLID.SignalAddress()
	var retries []waBinary.Node
	for _, t := range targets {
		content, _ := t.enc.Content.([]byte)
		encType := attrString(&t.enc, "type")
		s.mu.Lock()
		u := s.lookupLocked(t.jid, false)
		var fwd *Account
		if u != nil && t.jid.Device != 0 && u.account != nil && u.account.device == t.jid.Device && u.account != a {
			fwd = u.account
		}
		s.mu.Unlock()
		switch {
		case u == nil:
			s.log.Debug().Str("to", t.jid.String()).Msg("message for unknown device dropped")
		case fwd != nil:
			// Another fake account's companion device: relay it.
			node := waBinary.Node{Tag: "message", Attrs: waBinary.Attrs{
				"from": senderLID, "sender_pn": senderPN, "id": id,
				"t": fmt.Sprint(time.Now().Unix()), "type": attrString(n, "type"),
			}, Content: []waBinary.Node{t.enc}}
			m := &inboundMsg{id: id, acct: fwd, node: node}
			s.mu.Lock()
			if s.inbound[id] == nil {
				s.inbound[id] = m
			}
			fwd.inbox = append(fwd.inbox, m)
			s.mu.Unlock()
			s.flush(fwd)
		case t.jid.Device == 0:
			plain, err := u.peer.decrypt(s.ctx, addr, encType, content)
			if err != nil {
				s.log.Warn().Err(err).Str("to", t.jid.String()).Str("id", id).Msg("contact failed to decrypt message: sending retry receipt")
				if r, ok := s.retryReceipt(u, t.jid, id); ok {
					retries = append(retries, r)
				}
				continue
			}
			var msg waE2E.Message
			if err = proto.Unmarshal(plain, &msg); err != nil {
				s.log.Warn().Err(err).Str("id", id).Msg("contact got invalid protobuf")
				continue
			}
			if u.account == a {
				// A copy for the sender's own phone, or a peer message to it.
				s.onOwnPhoneMessage(a, &msg)
				continue
			}
			media, mediaErr := s.fetchMedia(id, &msg)
			s.mu.Lock()
			if t.jid.Server == types.DefaultUserServer && !u.lidKnown[a] {
				u.pnSession[a] = true
			}
			s.receiveLocked(u, Received{
				ID: id, Text: messageText(&msg), Message: &msg, From: a.user.phone, FromJID: senderLID,
				To: to, Type: attrString(n, "type"), Timestamp: time.Now(),
				Media: media, MediaErr: mediaErr,
			})
			s.notifyLocked()
			s.mu.Unlock()
		}
	}
	_ = c.send(ack)
	for _, r := range retries {
		_ = c.send(r)
	}
}

const maxRetries = 3

// retryReceipt builds the receipt a phone sends when it cannot decrypt a
// message: it carries a fresh prekey bundle, and whatsmeow answers with the
// message re-encrypted on a new session (if it still has it in memory).
func (s *Server) retryReceipt(u *Contact, from types.JID, id string) (waBinary.Node, bool) {
	s.mu.Lock()
	key := id + "|" + from.String()
	s.retries[key]++
	n := s.retries[key]
	s.mu.Unlock()
	if n > maxRetries {
		return waBinary.Node{}, false
	}
	nodes := u.peer.bundleNodes() // registration, type, identity, skey, key
	now := fmt.Sprint(time.Now().Unix())
	return waBinary.Node{Tag: "receipt", Attrs: waBinary.Attrs{
		"from": from.ToNonAD(), "id": id, "type": "retry", "t": now,
	}, Content: []waBinary.Node{
		{Tag: "retry", Attrs: waBinary.Attrs{"count": fmt.Sprint(n), "id": id, "t": now, "v": "1"}},
		nodes[0],
		{Tag: "keys", Content: nodes[1:]},
	}}, true
}

// answerClientRetry re-encrypts a contact's message on a new session when
// the client could not decrypt it: with the bundle in the retry receipt, or
// else a fresh one from the account's uploaded prekeys.
func (s *Server) answerClientRetry(c *conn, n *waBinary.Node, id string) error {
	retry := n.GetChildByTag("retry")
	count := attrString(&retry, "count")
	s.mu.Lock()
	m := s.inbound[id]
	a := c.acct
	if m == nil || m.from == nil || m.plain == nil || a == nil || m.acct != a || !m.group.IsEmpty() {
		s.mu.Unlock()
		return nil
	}
	addr := a.lidDeviceLocked().SignalAddress()
	var b *bundle
	if keysNode, ok := n.GetOptionalChildByTag("keys"); ok {
		reg, _ := n.GetChildByTag("registration").Content.([]byte)
		ident, _ := keysNode.GetChildByTag("identity").Content.([]byte)
		skey, err1 := parseUploadedKey(keysNode.GetChildByTag("skey"))
		pk, err2 := parseUploadedKey(keysNode.GetChildByTag("key"))
		if len(reg) == 4 && len(ident) == 32 && err1 == nil && err2 == nil {
			b = &bundle{regID: uint32(reg[0])<<24 | uint32(reg[1])<<16 | uint32(reg[2])<<8 | uint32(reg[3]), signed: skey, preKey: pk}
			copy(b.identity[:], ident)
		}
	}
	if b == nil {
		b = a.accountBundleLocked()
	}
	contact, plain, old := m.from, m.plain, m.node
	s.mu.Unlock()
	if b == nil {
		return errors.New("no bundle for the client")
	}
	contact.peer.mu.Lock()
	_ = contact.peer.store.DeleteSession(context.Background(), addr)
	contact.peer.mu.Unlock()
	ct, encType, err := contact.peer.encrypt(context.Background(), addr, b, plain)
	if err != nil {
		return err
	}
	attrs := waBinary.Attrs{}
	for k, v := range old.Attrs {
		attrs[k] = v
	}
	encAttrs := waBinary.Attrs{"v": "2", "type": encType}
	if count != "" {
		encAttrs["count"] = count
	}
	if oldEnc, ok := old.GetOptionalChildByTag("enc"); ok {
		if mt := attrString(&oldEnc, "mediatype"); mt != "" {
			encAttrs["mediatype"] = mt
		}
	}
	node := waBinary.Node{Tag: "message", Attrs: attrs, Content: []waBinary.Node{{Tag: "enc", Attrs: encAttrs, Content: ct}}}
	s.mu.Lock()
	m.node, m.force = node, true
	if !slices.Contains(a.inbox, m) {
		a.inbox = append(a.inbox, m)
	}
	s.mu.Unlock()
	s.flush(a)
	return nil
}

// ResetSessions makes the contact forget every Signal session, like a
// reinstall: the client's next message to it fails to decrypt, the contact
// answers with a retry receipt and whatsmeow re-sends on a new session.
func (c *Contact) ResetSessions() {
	c.peer.mu.Lock()
	defer c.peer.mu.Unlock()
	_ = c.peer.store.DeleteAllSessions(context.Background())
	c.s.mu.Lock()
	clear(c.pnSession)
	c.s.mu.Unlock()
}

// WaitMessage returns the next message a client sent to this contact (in
// order; each is returned once).
func (c *Contact) WaitMessage(ctx context.Context) (Received, error) {
	var r Received
	err := c.s.waitFor(ctx, func() bool {
		if c.next < len(c.received) {
			r = c.received[c.next]
			c.next++
			return true
		}
		return false
	})
	return r, err
}

// Messages returns every message clients sent to this contact so far.
func (c *Contact) Messages() []Received {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	return append([]Received(nil), c.received...)
}

// SendReceipt makes the contact acknowledge a message the account's client
// sent: kind "" (delivered), "read" or "played". The client gets an
// events.Receipt. Queued if the client is offline.
func (c *Contact) SendReceipt(ctx context.Context, toAccountPhone, msgID, kind string) error {
	a, err := c.accountFor(toAccountPhone)
	if err != nil {
		return err
	}
	from := c.pn
	c.s.mu.Lock()
	for _, r := range c.received {
		if r.ID == msgID && !r.To.IsEmpty() {
			from = r.To.ToNonAD()
		}
	}
	c.s.mu.Unlock()
	attrs := waBinary.Attrs{"from": from, "id": msgID, "t": fmt.Sprint(time.Now().Unix())}
	if kind != "" {
		attrs["type"] = kind
	}
	c.s.queueStanza(a, waBinary.Node{Tag: "receipt", Attrs: attrs})
	return ctx.Err()
}
