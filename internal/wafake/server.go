package wafake

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"go.mau.fi/whatsmeow"
	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/socket"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/keys"
	waLog "go.mau.fi/whatsmeow/util/log"
)

// Errors returned by the fake.
var (
	ErrNotConnected   = errors.New("wafake: account has no live connection")
	ErrUnknownAccount = errors.New("wafake: no such account")
	ErrUnknownRef     = errors.New("wafake: unknown or expired QR ref")
	ErrUnknownMessage = errors.New("wafake: unknown message id")
	ErrClosed         = errors.New("wafake: server closed")
)

// Timeouts the fake uses internally.
const (
	handshakeTimeout = 20 * time.Second
	// probeTimeout bounds how long a kick waits for the client to have
	// handled the stream error before the socket is closed anyway.
	probeTimeout = 5 * time.Second
	// clientCloseTimeout bounds how long the fake waits for the client to
	// close the socket itself (after 515).
	clientCloseTimeout = 10 * time.Second
	maxStanzaLog       = 20000
)

// Stanza is one entry of the server's stanza log (see Server.Stanzas).
type Stanza struct {
	At    time.Time
	In    bool   // true: sent by the client; false: sent by the fake
	Phone string // account phone, "" while pairing
	Tag   string
	ID    string
	Type  string
	XMLNS string
	Child string // tag of the first child, if any
}

// Server is a fake WhatsApp chat server on a loopback port.
type Server struct {
	log    zerolog.Logger
	hs     *httptest.Server
	addr   string
	static *keys.KeyPair
	http   *http.Client
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	changed   chan struct{}
	closed    bool
	users     map[string]*Contact // by phone
	byUser    map[string]*Contact // by "user@server" for both PN and LID
	refs      map[string]*conn
	conns     map[*conn]struct{}
	inbound   map[string]*inboundMsg
	codePairs map[string]*codePairing
	retries   map[string]int
	stanzas   []Stanza
	counters  map[string]int
	groups    map[types.JID]*group
	onDemand  func(accountPhone string, req *waE2E.PeerDataOperationRequestMessage_HistorySyncOnDemandRequest) *waHistorySync.HistorySync

	// fake CDN (media.go)
	mediaAuth    string
	blobs        map[string]*blob     // by direct path without query
	media        map[string]*mediaMsg // attachments contacts sent, by message id
	mediaUploads int
	mediaRetries int

	closeImmediately bool
	noAutoProvision  bool

	// registry.go: who is on WhatsApp
	unregistered   map[string]bool
	strictRegistry bool
	brazilAlias    bool

	// phone.go: the contacts' phones
	clock   func() time.Time
	seq     int64      // orders Received and ChatState across contacts
	sentLog []Received // every message contacts received, in arrival order
	chatLog []ChatState
	failAll map[*Account][]int            // codes for the account's next sends
	failTo  map[*Account]map[string][]int // per contact phone
	refused []refusal
	repeats int
}

// NewServer starts a fake server listening on 127.0.0.1:0. Stanzas are
// logged at debug level to log (use zerolog.Nop() for silence). It calls
// InstallRoot.
func NewServer(log zerolog.Logger) (*Server, error) {
	return NewServerAt(log, "")
}

// NewServerAt is NewServer listening on addr (host:port) instead of a
// random loopback port, for the standalone fake (cmd/wafake) that other
// processes dial. An empty addr is NewServer's 127.0.0.1:0.
func NewServerAt(log zerolog.Logger, addr string) (*Server, error) {
	InstallRoot()
	var ln net.Listener
	if addr != "" {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("wafake: listen %s: %w", addr, err)
		}
	}
	s := &Server{
		log:       log.With().Str("component", "wafake").Logger(),
		static:    keys.NewKeyPair(),
		changed:   make(chan struct{}),
		users:     map[string]*Contact{},
		byUser:    map[string]*Contact{},
		refs:      map[string]*conn{},
		conns:     map[*conn]struct{}{},
		inbound:   map[string]*inboundMsg{},
		codePairs: map[string]*codePairing{},
		retries:   map[string]int{},
		counters:  map[string]int{},
		groups:    map[types.JID]*group{},
		mediaAuth: base64.RawURLEncoding.EncodeToString(randomBytes(24)),
		blobs:     map[string]*blob{},
		media:     map[string]*mediaMsg{},

		unregistered: map[string]bool{},
		failAll:      map[*Account][]int{},
		failTo:       map[*Account]map[string][]int{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	mux := http.NewServeMux()
	mux.HandleFunc("/ws/chat", s.serveWS)
	mux.HandleFunc("/mms/", s.serveUpload)
	mux.HandleFunc("/v/", s.serveDownload)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.log.Debug().Str("host", r.Host).Str("path", r.URL.Path).Msg("unhandled HTTP request")
		http.NotFound(w, r)
	})
	s.hs = httptest.NewUnstartedServer(mux)
	if ln != nil {
		_ = s.hs.Listener.Close()
		s.hs.Listener = ln
	}
	s.hs.Start()
	s.addr = s.hs.Listener.Addr().String()
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.addr)
	}
	// DialTLSContext makes net/http treat the plain loopback connection as
	// an established TLS connection, so wss:// works without certificates.
	s.http = &http.Client{Transport: &http.Transport{
		DialContext:       dial,
		DialTLSContext:    dial,
		DisableKeepAlives: true,
	}}
	return s, nil
}

// Addr is the loopback address the server listens on.
func (s *Server) Addr() string { return s.addr }

// Close disconnects every client and stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.notifyLocked()
	s.mu.Unlock()
	s.cancel()
	for _, c := range conns {
		c.close()
	}
	for _, c := range conns {
		<-c.done
	}
	s.hs.Close()
}

// HTTPClient returns an HTTP client whose every connection goes to the fake.
// Give it to cli.SetPreLoginHTTPClient and cli.SetWebsocketHTTPClient (or
// call Configure).
func (s *Server) HTTPClient() *http.Client { return s.http }

// Configure points a whatsmeow client at the fake: pre-login, websocket and
// media HTTP clients.
func (s *Server) Configure(cli *whatsmeow.Client) {
	cli.SetPreLoginHTTPClient(s.http)
	cli.SetWebsocketHTTPClient(s.http)
	cli.SetMediaHTTPClient(s.http)
}

// NewClient is whatsmeow.NewClient followed by Configure.
func (s *Server) NewClient(dev *store.Device, log waLog.Logger) *whatsmeow.Client {
	cli := whatsmeow.NewClient(dev, log)
	s.Configure(cli)
	return cli
}

// SetCloseImmediately makes the fake close a socket right after writing the
// stream error when a new login for the same device replaces an older live
// connection, like Kick with CloseAfter. Default false: the fake closes only
// after the client has handled the stream error.
func (s *Server) SetCloseImmediately(v bool) {
	s.mu.Lock()
	s.closeImmediately = v
	s.mu.Unlock()
}

// SetAutoProvision controls what happens when a client logs in with a
// device the server has never paired (for example after the fake was
// restarted while the device store survived): when true (the default) the
// account is created on the fly and the login succeeds; when false the login
// fails with <failure reason="401"/>.
func (s *Server) SetAutoProvision(v bool) {
	s.mu.Lock()
	s.noAutoProvision = !v
	s.mu.Unlock()
}

// Stanzas returns a copy of the stanza log (oldest first, bounded).
func (s *Server) Stanzas() []Stanza {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Stanza(nil), s.stanzas...)
}

// CountReplaced is the Count key of logins that replaced a live connection
// of the same device (the old one got the "replaced" stream error).
const CountReplaced = "login:replaced"

// Count returns how many stanzas were seen with the given key: "in:<tag>",
// "out:<tag>", or for IQs "in:iq:<xmlns>" / "out:iq:<xmlns>"; and
// CountReplaced.
func (s *Server) Count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counters[key]
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// waitFor blocks until cond (called with s.mu held) is true.
func (s *Server) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ok := cond()
		ch, closed := s.changed, s.closed
		s.mu.Unlock()
		if ok {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func newID() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	return "3EB0" + strings.ToUpper(hex.EncodeToString(b))
}

func attrString(n *waBinary.Node, key string) string {
	switch v := n.Attrs[key].(type) {
	case string:
		return v
	case types.JID:
		return v.String()
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

func (s *Server) record(in bool, c *conn, n *waBinary.Node) {
	st := Stanza{At: time.Now(), In: in, Tag: n.Tag, ID: attrString(n, "id"), Type: attrString(n, "type"), XMLNS: attrString(n, "xmlns")}
	if children := n.GetChildren(); len(children) > 0 {
		st.Child = children[0].Tag
	}
	dir := "out"
	if in {
		dir = "in"
	}
	s.mu.Lock()
	if c != nil && c.acct != nil {
		st.Phone = c.acct.user.phone
	}
	if len(s.stanzas) >= maxStanzaLog {
		s.stanzas = append(s.stanzas[:0], s.stanzas[len(s.stanzas)/2:]...)
	}
	s.stanzas = append(s.stanzas, st)
	s.counters[dir+":"+n.Tag]++
	if n.Tag == "iq" && st.XMLNS != "" {
		s.counters[dir+":iq:"+st.XMLNS]++
	}
	s.mu.Unlock()
	if e := s.log.Debug(); e.Enabled() {
		xml := n.XMLString()
		if len(xml) > 4000 {
			xml = xml[:4000] + "…(truncated)"
		}
		e.Str("dir", dir).Str("phone", st.Phone).Str("conn", c.name).Msg(xml)
	}
}

// conn is one client websocket connection.
type conn struct {
	s      *Server
	ws     *websocket.Conn
	fc     *frameConn
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the connection is gone
	name   string

	clientStatic []byte

	// guarded by s.mu
	acct     *Account
	loggedIn bool
	ready    bool // passive/active answered: offline queue flushed
	refs     []string

	lastIn atomic.Int64 // unix nanoseconds of the last frame from the client

	wmu        sync.Mutex
	iqWaiters  map[string]chan *waBinary.Node
	ackWaiters map[string]chan struct{}
}

func (s *Server) serveWS(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.Warn().Err(err).Msg("websocket accept failed")
		return
	}
	ws.SetReadLimit(socket.FrameMaxSize + 64)
	c := &conn{
		s: s, ws: ws, fc: &frameConn{ws: ws}, done: make(chan struct{}),
		name:       r.RemoteAddr,
		iqWaiters:  map[string]chan *waBinary.Node{},
		ackWaiters: map[string]chan struct{}{},
	}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.CloseNow()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer s.dropConn(c)

	hctx, hcancel := context.WithTimeout(c.ctx, handshakeTimeout)
	clientStatic, payload, err := c.fc.handshake(hctx, s.static)
	hcancel()
	if err != nil {
		s.log.Debug().Err(err).Str("conn", c.name).Msg("handshake failed")
		return
	}
	c.clientStatic = clientStatic
	if payload.GetDevicePairingData() != nil || payload.Username == nil {
		s.log.Debug().Str("conn", c.name).Msg("registration handshake: starting QR pairing")
		go s.startPairing(c)
	} else {
		s.login(c, fmt.Sprintf("%d", payload.GetUsername()), uint16(payload.GetDevice()))
	}
	c.readLoop()
}

func (s *Server) dropConn(c *conn) {
	c.close()
	s.mu.Lock()
	delete(s.conns, c)
	for _, ref := range c.refs {
		if s.refs[ref] == c {
			delete(s.refs, ref)
		}
	}
	for phone, p := range s.codePairs {
		if p.c == c {
			delete(s.codePairs, phone)
		}
	}
	if c.acct != nil && c.acct.conn == c {
		c.acct.conn = nil
	}
	c.ready, c.loggedIn = false, false
	s.notifyLocked()
	s.mu.Unlock()
	close(c.done)
}

func (c *conn) close() {
	c.cancel()
	_ = c.ws.CloseNow()
}

func (c *conn) readLoop() {
	for {
		plain, err := c.fc.readPlain(c.ctx)
		c.lastIn.Store(time.Now().UnixNano())
		if err != nil {
			if c.ctx.Err() == nil {
				c.s.log.Debug().Err(err).Str("conn", c.name).Msg("connection closed")
			}
			return
		}
		data, err := waBinary.Unpack(plain)
		if err != nil {
			c.s.log.Warn().Err(err).Msg("unpack frame")
			continue
		}
		node, err := waBinary.Unmarshal(data)
		if err != nil {
			c.s.log.Warn().Err(err).Msg("unmarshal node")
			continue
		}
		c.s.record(true, c, node)
		c.s.handleNode(c, node)
	}
}

func (c *conn) send(n waBinary.Node) error {
	data, err := waBinary.Marshal(n)
	if err != nil {
		return err
	}
	c.s.record(false, c, &n)
	if err = c.fc.writePlain(c.ctx, data); err != nil {
		return fmt.Errorf("wafake: send %s: %w", n.Tag, err)
	}
	return nil
}

func (c *conn) expectIQ(id string) chan *waBinary.Node {
	ch := make(chan *waBinary.Node, 1)
	c.wmu.Lock()
	c.iqWaiters[id] = ch
	c.wmu.Unlock()
	return ch
}

func (c *conn) expectAck(id string) chan struct{} {
	ch := make(chan struct{})
	c.wmu.Lock()
	c.ackWaiters[id] = ch
	c.wmu.Unlock()
	return ch
}

func (c *conn) resolve(n *waBinary.Node) {
	id := attrString(n, "id")
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if n.Tag == "iq" {
		if ch, ok := c.iqWaiters[id]; ok {
			delete(c.iqWaiters, id)
			ch <- n
		}
	} else if ch, ok := c.ackWaiters[id]; ok {
		delete(c.ackWaiters, id)
		close(ch)
	}
}

// probe sends a harmless notification and waits until the client acks it.
// whatsmeow handles incoming nodes strictly in order, so the ack proves that
// every node sent before it has been handled.
func (c *conn) probe(timeout time.Duration) bool {
	id := newID()
	ch := c.expectAck(id)
	err := c.send(waBinary.Node{Tag: "notification", Attrs: waBinary.Attrs{
		"from": types.ServerJID, "id": id, "type": "server", "t": fmt.Sprint(time.Now().Unix()),
	}})
	if err != nil {
		return false
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-c.done:
	case <-t.C:
	}
	return false
}

// terminate sends n (a stream error or failure) and closes the connection:
// immediately when closeNow, after the client closed it itself when
// waitClient (515: the client reconnects on its own), otherwise after a probe
// showed the client handled n. It returns when the connection is gone.
func (c *conn) terminate(n waBinary.Node, closeNow, waitClient bool) error {
	err := c.send(n)
	switch {
	case err != nil || closeNow:
	case waitClient:
		t := time.NewTimer(clientCloseTimeout)
		select {
		case <-c.done:
		case <-t.C:
		}
		t.Stop()
	default:
		c.probe(probeTimeout)
	}
	c.close()
	<-c.done
	return err
}

func (s *Server) handleNode(c *conn, n *waBinary.Node) {
	switch n.Tag {
	case "iq":
		s.handleIQ(c, n)
	case "ack":
		c.resolve(n)
		s.handleClientAck(c, n)
	case "receipt":
		s.handleClientReceipt(c, n)
	case "message":
		s.handleClientMessage(c, n)
	case "chatstate":
		s.handleChatState(c, n)
	case "presence":
		s.handlePresence(c, n)
	}
}

func iqResult(req *waBinary.Node, content ...waBinary.Node) waBinary.Node {
	n := waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{
		"from": types.ServerJID, "id": attrString(req, "id"), "type": "result",
	}}
	if len(content) > 0 {
		n.Content = content
	}
	return n
}

func iqError(req *waBinary.Node, code int, text string) waBinary.Node {
	return waBinary.Node{Tag: "iq", Attrs: waBinary.Attrs{
		"from": types.ServerJID, "id": attrString(req, "id"), "type": "error",
	}, Content: []waBinary.Node{{Tag: "error", Attrs: waBinary.Attrs{"code": fmt.Sprint(code), "text": text}}}}
}

func (s *Server) handleIQ(c *conn, n *waBinary.Node) {
	typ := attrString(n, "type")
	if typ == "result" || typ == "error" {
		c.resolve(n)
		return
	}
	xmlns := attrString(n, "xmlns")
	var first waBinary.Node
	if children := n.GetChildren(); len(children) > 0 {
		first = children[0]
	}
	switch {
	case xmlns == "w:p":
		_ = c.send(iqResult(n))
	case xmlns == "encrypt" && typ == "get" && first.Tag == "count":
		_ = c.send(iqResult(n, waBinary.Node{Tag: "count", Attrs: waBinary.Attrs{"value": fmt.Sprint(s.preKeyCount(c))}}))
	case xmlns == "encrypt" && typ == "set":
		s.handlePreKeyUpload(c, n)
	case xmlns == "encrypt" && typ == "get" && first.Tag == "key":
		s.handlePreKeyFetch(c, n, first)
	case xmlns == "passive" && typ == "set":
		_ = c.send(iqResult(n))
		if first.Tag == "active" {
			s.onActive(c)
		}
	case xmlns == "w:m" && first.Tag == "media_conn":
		s.handleMediaConn(c, n)
	case xmlns == "privacy" && typ == "get":
		s.handlePrivacyGet(c, n)
	case xmlns == "w:sync:app:state" && typ == "set":
		s.handleAppStateSync(c, n)
	case xmlns == "w:g2":
		s.handleGroupIQ(c, n, first)
	case xmlns == "usync":
		s.handleUsync(c, n)
	case xmlns == "md" && first.Tag == "link_code_companion_reg":
		s.handleLinkCode(c, n, first)
	case xmlns == "md" && first.Tag == "remove-companion-device":
		s.handleLogout(c, n)
	default:
		_ = c.send(iqError(n, 501, "feature-not-implemented"))
	}
}

func childrenOf(n waBinary.Node) []waBinary.Node { return n.GetChildren() }
