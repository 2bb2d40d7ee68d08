package wafake

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
)

// Account is a phone number with a paired companion device (the whatsmeow
// client). The fake supports one companion device per account; pairing the
// same phone again replaces the previous device.
type Account struct {
	s      *Server
	user   *Contact // the account's own phone (device 0) and identity
	advKey *keys.KeyPair

	// guarded by s.mu
	device      uint16 // current companion device id; 0 = none (logged out)
	nextDevice  uint16
	conn        *conn
	bundle      *bundle
	preKeys     []*keys.PreKey // uploaded, not yet handed out
	bannedUntil time.Time
	banCode     int
	inbox       []*inboundMsg // stanzas for the client, in order
	appState    *appStateData // nil until SetAddressBook
	peerReqs    []*waE2E.PeerDataOperationRequestMessage
	presence    string // the client's last <presence type>: available, unavailable

	deliverMu sync.Mutex // serialises deliveries so the client sees inbox order
}

// Phone is the account's phone number (E.164 digits).
func (a *Account) Phone() string { return a.user.phone }

// JID is the account's phone-number user JID (device 0).
func (a *Account) JID() types.JID { return a.user.pn }

// LID is the account's LID user JID (device 0).
func (a *Account) LID() types.JID { return a.user.lid }

// DeviceJID is the companion device's phone-number JID (empty when logged out).
func (a *Account) DeviceJID() types.JID {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if a.device == 0 {
		return types.EmptyJID
	}
	j := a.user.pn
	j.Device = a.device
	return j
}

// Connected reports whether the account's client is logged in on a live
// connection.
func (a *Account) Connected() bool {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return a.conn != nil && a.conn.loggedIn
}

// WaitSettled waits until the client on the live connection has answered
// everything the fake delivered to it on that connection: a receipt (or a
// nack) for every message, an ack for every notification and receipt. It
// returns at once when the account has no ready connection. Call it before
// cli.Disconnect in tests: whatsmeow sends receipts and acks from
// goroutines, and under -race such a send racing Disconnect is reported
// (whatsmeow's FrameSocket is not synchronised).
func (a *Account) WaitSettled(ctx context.Context) error {
	return a.s.waitFor(ctx, func() bool {
		c := a.conn
		if c == nil || !c.ready {
			return true
		}
		for _, m := range a.inbox {
			switch {
			case m.sentOn != c:
			case m.stanza && !m.acked:
				return false
			case !m.stanza && !m.receipted() && m.acks == 0:
				return false
			}
		}
		return true
	})
}

// WaitQuiet waits until the client on the live connection has sent
// nothing for quiet. WaitSettled cannot see a receipt whatsmeow has yet to
// send (a read receipt after a delivery one, a receipt for a message it
// is still decrypting); a quiet moment after it is the tests' best sign
// that no goroutine of the client is about to write to its socket.
func (a *Account) WaitQuiet(ctx context.Context, quiet time.Duration) error {
	for {
		a.s.mu.Lock()
		c := a.conn
		a.s.mu.Unlock()
		if c == nil {
			return nil
		}
		since := time.Since(time.Unix(0, c.lastIn.Load()))
		if since >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(quiet - since):
		}
	}
}

// Paired reports whether the account currently has a companion device.
func (a *Account) Paired() bool {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return a.device != 0
}

func (a *Account) lidDeviceLocked() types.JID {
	j := a.user.lid
	j.Device = a.device
	return j
}

func (a *Account) pnDeviceLocked() types.JID {
	j := a.user.pn
	j.Device = a.device
	return j
}

// KickKind selects what Kick sends.
type KickKind int

const (
	// Kick401 sends <failure reason="401"/>: whatsmeow emits
	// events.LoggedOut{OnConnect: true} and deletes the device from its
	// store. The server forgets the device: later logins fail with 401.
	Kick401 KickKind = iota + 1
	// Kick515 sends <stream:error code="515"/>: whatsmeow reconnects by itself.
	Kick515
	// KickReplaced sends <stream:error><conflict type="replaced"/></stream:error>:
	// whatsmeow emits events.StreamReplaced and does not reconnect.
	KickReplaced
	// KickBan sends <failure reason="402" code=… expire=…/>: whatsmeow emits
	// events.TemporaryBan. Logins during the ban fail the same way.
	KickBan
	// KickDeviceRemoved sends <stream:error code="401"><conflict
	// type="device_removed"/></stream:error>: events.LoggedOut{OnConnect:
	// false}, store deleted. The server forgets the device.
	KickDeviceRemoved
	// KickDrop closes the socket without any stanza (network loss):
	// whatsmeow emits events.Disconnected and auto-reconnects.
	KickDrop
)

func (k KickKind) String() string {
	switch k {
	case Kick401:
		return "401"
	case Kick515:
		return "515"
	case KickReplaced:
		return "replaced"
	case KickBan:
		return "ban"
	case KickDeviceRemoved:
		return "device_removed"
	case KickDrop:
		return "drop"
	}
	return fmt.Sprintf("KickKind(%d)", int(k))
}

// Kick describes how to throw an account's client off.
type Kick struct {
	Kind KickKind
	// BanExpiry is the temporary ban duration (KickBan; default 1h). It is
	// sent in whole seconds as whatsmeow's events.TemporaryBan.Expire.
	BanExpiry time.Duration
	// BanCode is the ban reason code (KickBan; default 101,
	// events.TempBanSentToTooManyPeople).
	BanCode int
	// CloseAfter closes the socket immediately after writing the stanza,
	// like the real server may do. whatsmeow can then see the EOF before its
	// handler queue processed the stanza (see package doc: the race).
	// Without it the fake closes only after the client handled the stanza.
	CloseAfter bool
}

func (k Kick) node() waBinary.Node {
	switch k.Kind {
	case Kick401:
		return waBinary.Node{Tag: "failure", Attrs: waBinary.Attrs{"reason": "401", "location": "fake"}}
	case Kick515:
		return waBinary.Node{Tag: "stream:error", Attrs: waBinary.Attrs{"code": "515"}}
	case KickReplaced:
		return replacedNode()
	case KickDeviceRemoved:
		return waBinary.Node{Tag: "stream:error", Attrs: waBinary.Attrs{"code": "401"},
			Content: []waBinary.Node{{Tag: "conflict", Attrs: waBinary.Attrs{"type": "device_removed"}}}}
	case KickBan:
		return banNode(k.banCode(), k.banExpiry())
	}
	return waBinary.Node{}
}

func (k Kick) banExpiry() time.Duration {
	if k.BanExpiry <= 0 {
		return time.Hour
	}
	return k.BanExpiry
}

func (k Kick) banCode() int {
	if k.BanCode == 0 {
		return 101
	}
	return k.BanCode
}

func replacedNode() waBinary.Node {
	return waBinary.Node{Tag: "stream:error", Content: []waBinary.Node{{Tag: "conflict", Attrs: waBinary.Attrs{"type": "replaced"}}}}
}

func banNode(code int, expire time.Duration) waBinary.Node {
	return waBinary.Node{Tag: "failure", Attrs: waBinary.Attrs{
		"reason": "402", "code": fmt.Sprint(code), "expire": fmt.Sprint(int64(expire.Round(time.Second) / time.Second)),
	}}
}

// Kick throws the account's live connection off as described by k and
// returns once the connection is closed (a 515 reconnect may already be
// under way). Server-side state changes (401 / device_removed forget the
// device, a ban blocks logins until it expires) apply even when the account
// is offline, in which case ErrNotConnected is returned.
func (a *Account) Kick(k Kick) error {
	s := a.s
	s.mu.Lock()
	switch k.Kind {
	case Kick401, KickDeviceRemoved:
		a.forgetDeviceLocked()
	case KickBan:
		a.bannedUntil = time.Now().Add(k.banExpiry())
		a.banCode = k.banCode()
	case Kick515, KickReplaced, KickDrop:
	default:
		s.mu.Unlock()
		return fmt.Errorf("wafake: unknown kick kind %v", k.Kind)
	}
	c := a.conn
	s.notifyLocked()
	s.mu.Unlock()
	if c == nil {
		return ErrNotConnected
	}
	if k.Kind == KickDrop {
		c.close()
		<-c.done
		return nil
	}
	return c.terminate(k.node(), k.CloseAfter, k.Kind == Kick515 && !k.CloseAfter)
}

func (a *Account) forgetDeviceLocked() {
	a.device = 0
	a.bundle = nil
	a.preKeys = nil
	a.inbox = nil
}

// userLocked returns the Contact (person) for phone, creating it.
func (s *Server) userLocked(phone string) *Contact {
	if u := s.users[phone]; u != nil {
		return u
	}
	u := &Contact{
		s:     s,
		phone: phone,
		pn:    types.NewJID(phone, types.DefaultUserServer),
		// LIDs are derived from the phone number so that they stay stable
		// across fake server instances (a device store outlives the fake).
		lid:  types.NewJID("9"+phone, types.HiddenUserServer),
		peer: newPeer(),

		lidKnown:  map[*Account]bool{},
		pnSession: map[*Account]bool{},
		skdmSent:  map[skdmKey]bool{},
	}
	s.users[phone] = u
	s.byUser[u.pn.User+"@"+u.pn.Server] = u
	s.byUser[u.lid.User+"@"+u.lid.Server] = u
	return u
}

// lookupLocked finds the person behind a JID (PN or LID, any device).
func (s *Server) lookupLocked(j types.JID, create bool) *Contact {
	switch j.Server {
	case types.DefaultUserServer, types.HiddenUserServer:
	case types.LegacyUserServer:
		j.Server = types.DefaultUserServer
	default:
		return nil
	}
	if u := s.byUser[j.User+"@"+j.Server]; u != nil {
		return u
	}
	if create && j.Server == types.DefaultUserServer && isDigits(j.User) {
		u := s.userLocked(j.User)
		u.onDemand = true // a client used the number; the test did not create it
		return u
	}
	return nil
}

func isDigits(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func (s *Server) accountLocked(phone string) *Account {
	u := s.userLocked(phone)
	u.onDemand = false
	if u.account == nil {
		// The primary phone's Signal identity key is the ADV account key:
		// whatsmeow stores it as the identity of <lid>:0 when pairing.
		u.account = &Account{s: s, user: u, advKey: u.peer.ik, nextDevice: 1}
	}
	return u.account
}

// Account returns the account for phone, or nil if it was never paired
// (or auto-provisioned at login).
func (s *Server) Account(phone string) *Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[phone]; u != nil {
		return u.account
	}
	return nil
}

// Accounts returns every account the server knows, paired or not.
func (s *Server) Accounts() []*Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Account
	for _, u := range s.users {
		if u.account != nil {
			out = append(out, u.account)
		}
	}
	slices.SortFunc(out, func(a, b *Account) int { return strings.Compare(a.user.phone, b.user.phone) })
	return out
}

// login handles a login handshake for phone/device.
func (s *Server) login(c *conn, phone string, device uint16) {
	s.mu.Lock()
	var a *Account
	if u := s.users[phone]; u != nil {
		a = u.account
	}
	if a == nil && !s.noAutoProvision && device != 0 {
		a = s.accountLocked(phone)
		a.device = device
		a.nextDevice = device + 1
		s.log.Debug().Str("phone", phone).Uint16("device", device).Msg("auto-provisioned account for unknown login")
	}
	var fail *waBinary.Node
	var old *conn
	switch {
	case a == nil || a.device == 0 || a.device != device:
		fail = &waBinary.Node{Tag: "failure", Attrs: waBinary.Attrs{"reason": "401", "location": "fake"}}
	case time.Now().Before(a.bannedUntil):
		n := banNode(a.banCode, time.Until(a.bannedUntil))
		fail = &n
	default:
		old = a.conn
		if old != nil {
			// Two live logins of one device: two processes run the same
			// session. The chaos check (cmd/zapbus-stage) asserts it never
			// happens while leases work.
			s.counters[CountReplaced]++
		}
		a.conn = c
		c.acct = a
		c.loggedIn = true
	}
	closeNow := s.closeImmediately
	s.notifyLocked()
	s.mu.Unlock()

	if fail != nil {
		go func() { _ = c.terminate(*fail, false, false) }()
		return
	}
	if old != nil {
		go func() { _ = old.terminate(replacedNode(), closeNow, false) }()
	}
	s.mu.Lock()
	lid := a.lidDeviceLocked()
	s.mu.Unlock()
	_ = c.send(waBinary.Node{Tag: "success", Attrs: waBinary.Attrs{
		"t":        fmt.Sprint(time.Now().Unix()),
		"props":    "1",
		"abprops":  "1",
		"location": "fake",
		"creation": fmt.Sprint(time.Now().Add(-time.Hour).Unix()),
		"lid":      lid,
	}})
}

func (s *Server) preKeyCount(c *conn) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.acct == nil {
		return 0
	}
	return len(c.acct.preKeys)
}

func (s *Server) handlePreKeyUpload(c *conn, n *waBinary.Node) {
	reg, _ := n.GetChildByTag("registration").Content.([]byte)
	ident, _ := n.GetChildByTag("identity").Content.([]byte)
	skey, err := parseUploadedKey(n.GetChildByTag("skey"))
	if err != nil || len(reg) != 4 || len(ident) != 32 {
		_ = c.send(iqError(n, 400, "bad-request"))
		return
	}
	var list []*keys.PreKey
	for _, child := range childrenOf(n.GetChildByTag("list")) {
		k, err := parseUploadedKey(child)
		if err != nil {
			_ = c.send(iqError(n, 400, "bad-request"))
			return
		}
		list = append(list, k)
	}
	b := &bundle{regID: uint32(reg[0])<<24 | uint32(reg[1])<<16 | uint32(reg[2])<<8 | uint32(reg[3]), signed: skey}
	copy(b.identity[:], ident)
	s.mu.Lock()
	if a := c.acct; a != nil {
		if a.bundle == nil || a.bundle.identity != b.identity {
			a.preKeys = nil
		}
		a.bundle = b
		a.preKeys = append(a.preKeys, list...)
	}
	a := c.acct
	s.notifyLocked()
	s.mu.Unlock()
	_ = c.send(iqResult(n))
	if a != nil {
		s.shareAppStateKey(a)
	}
}

// accountBundleLocked hands out the account device's bundle with one
// one-time prekey (consumed), like the real server.
func (a *Account) accountBundleLocked() *bundle {
	if a.bundle == nil {
		return nil
	}
	b := *a.bundle
	if len(a.preKeys) > 0 {
		b.preKey = a.preKeys[0]
		a.preKeys = a.preKeys[1:]
	}
	return &b
}

func (s *Server) handlePreKeyFetch(c *conn, n *waBinary.Node, key waBinary.Node) {
	var users []waBinary.Node
	for _, req := range key.GetChildren() {
		jid, ok := req.Attrs["jid"].(types.JID)
		if req.Tag != "user" || !ok {
			continue
		}
		var content []waBinary.Node
		s.mu.Lock()
		u := s.lookupLocked(jid, true)
		switch {
		case u == nil:
		case jid.Device == 0:
			content = u.peer.bundleNodes()
		case u.account != nil && u.account.device == jid.Device:
			if b := u.account.accountBundleLocked(); b != nil {
				content = b.nodes()
			}
		}
		s.mu.Unlock()
		if content == nil {
			content = []waBinary.Node{{Tag: "error", Attrs: waBinary.Attrs{"code": "404", "text": "item-not-found"}}}
		}
		users = append(users, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid}, Content: content})
	}
	_ = c.send(iqResult(n, waBinary.Node{Tag: "list", Content: users}))
}

func (s *Server) handleUsync(c *conn, n *waBinary.Node) {
	us := n.GetChildByTag("usync")
	queryNode := us.GetChildByTag("query")
	listNode := us.GetChildByTag("list")
	queries := queryNode.GetChildren()
	var out []waBinary.Node
	for _, req := range listNode.GetChildren() {
		if req.Tag != "user" {
			continue
		}
		jid, ok := req.Attrs["jid"].(types.JID)
		var contactQuery []byte
		isContact := !ok
		s.mu.Lock()
		var u *Contact
		in := false
		if isContact {
			// IsOnWhatsApp: <user><contact>+5511…@c.us</contact></user>,
			// answered from the registry (registry.go).
			contactQuery, _ = req.GetChildByTag("contact").Content.([]byte)
			num := strings.TrimPrefix(strings.TrimSuffix(string(contactQuery), "@"+types.LegacyUserServer), "+")
			jid, in, u = s.contactQueryLocked(num)
		} else if jid.Server != types.DefaultUserServer || !s.offWhatsAppLocked(jid.User) {
			u = s.lookupLocked(jid, true)
		}
		// else: a phone number that is not on WhatsApp has no devices
		var devices []uint16
		var lid types.JID
		if u != nil {
			devices = []uint16{0}
			if a := u.account; a != nil && a.device != 0 {
				devices = append(devices, a.device)
			}
			if jid.Server == types.DefaultUserServer && !u.lidOnly {
				lid = u.lid
				if c.acct != nil && slices.ContainsFunc(queries, func(q waBinary.Node) bool { return q.Tag == "lid" }) {
					u.lidKnown[c.acct] = true
				}
			}
		}
		s.mu.Unlock()
		var content []waBinary.Node
		for _, q := range queries {
			switch q.Tag {
			case "devices":
				list := make([]waBinary.Node, 0, len(devices))
				for _, d := range devices {
					dn := waBinary.Node{Tag: "device", Attrs: waBinary.Attrs{"id": fmt.Sprint(d)}}
					if d != 0 {
						dn.Attrs["key-index"] = fmt.Sprint(d)
					}
					list = append(list, dn)
				}
				content = append(content, waBinary.Node{Tag: "devices", Content: []waBinary.Node{{Tag: "device-list", Content: list}}})
			case "lid":
				ln := waBinary.Node{Tag: "lid"}
				if !lid.IsEmpty() {
					ln.Attrs = waBinary.Attrs{"val": lid}
				}
				content = append(content, ln)
			case "contact":
				typ := "out"
				if in || (!isContact && u != nil) {
					typ = "in"
				}
				content = append(content, waBinary.Node{Tag: "contact", Attrs: waBinary.Attrs{"type": typ}, Content: contactQuery})
			case "status":
				content = append(content, waBinary.Node{Tag: "status"})
			}
		}
		out = append(out, waBinary.Node{Tag: "user", Attrs: waBinary.Attrs{"jid": jid}, Content: content})
	}
	attrs := waBinary.Attrs{}
	for k, v := range us.Attrs {
		attrs[k] = v
	}
	_ = c.send(iqResult(n, waBinary.Node{Tag: "usync", Attrs: attrs, Content: []waBinary.Node{
		{Tag: "result"},
		{Tag: "list", Content: out},
	}}))
}

func (s *Server) handleLogout(c *conn, n *waBinary.Node) {
	s.mu.Lock()
	if a := c.acct; a != nil {
		a.forgetDeviceLocked()
	}
	s.notifyLocked()
	s.mu.Unlock()
	_ = c.send(iqResult(n))
}
