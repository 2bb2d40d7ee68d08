// Package sim is a simulated WhatsApp for connector tests and the dev
// stack's sim mode: a World (WhatsApp's side: devices, who is connected,
// messages waiting for an ack) and Clients that satisfy connector.Client and
// emit the same whatsmeow event structs the real client emits when it is
// configured as connector.WhatsmeowFactory configures it (no built-in
// reconnects, ManualLoginReconnect on stream error 515, synchronous acks).
//
// Groups: World.SetGroup makes a mentorado's number a member of a group
// (GetGroupInfo answers with it, sends to it succeed), LeaveGroup removes
// it (ErrNotInGroup, as whatsmeow returns), InjectGroupText delivers a
// group message built as whatsmeow builds it.
//
// Sending at scale (issue #14): IsOnWhatsApp answers from a registry —
// every number is on WhatsApp unless NotOnWhatsApp / SetRegistered(n,
// false); SetRegistered(n, true) registers a Brazilian mobile under exactly
// that form (the other 9th-digit form answers "out"); SetStrict(true) makes
// only registered and Canonical numbers "in". SendChatPresence is recorded
// (ChatStates); FailSends / FailSendsTo make the next sends fail
// (ServerError(479) is what whatsmeow returns for the server's error ack);
// Sent and ChatState carry At on a settable clock (SetClock) and a Seq
// that orders them.
//
// It is not on the production path: the real whatsmeow client is the
// connector's default factory.
package sim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/phone"
)

// Interval is a span during which a client of a mentorado was connected.
type Interval struct {
	Client     int
	Start, End time.Time // End is zero while connected
}

// Sent is a message a client sent.
type Sent struct {
	ID      string
	To      types.JID
	Text    string
	Message *waE2E.Message // as sent: reactions, edits, revokes, quotes
	At      time.Time      // on the world's clock (SetClock)
	Seq     int64          // orders Sent and ChatState of one world
}

// ChatState is a chat presence a client sent (SendChatPresence).
type ChatState struct {
	To    types.JID
	State types.ChatPresence // composing or paused
	Media types.ChatPresenceMedia
	At    time.Time // on the world's clock (SetClock)
	Seq   int64     // orders chat states and Sent of one world (Sent.Seq)
}

// Read is a read receipt a client sent (MarkRead).
type Read struct {
	IDs    []types.MessageID
	Chat   types.JID
	Sender types.JID
}

// World is the simulated WhatsApp server shared by every sim client.
type World struct {
	mu         sync.Mutex
	devices    map[types.JID]int64 // paired device → mentorado
	clients    map[int64][]*Client
	active     map[int64][]*Client // connected and logged in, by mentorado
	intervals  map[int64][]Interval
	maxActive  map[int64]int
	violations []string
	pending    map[int64][]*events.Message // not acked, redelivered on connect
	connectErr map[int64]error
	notOnWA    map[string]bool
	canonical  map[string]string
	registered map[string]bool // numbers registered under exactly this form
	strict     bool            // only registered (or canonical) numbers are on WhatsApp
	sendErrs   map[int64][]error
	sendErrsTo map[int64]map[string][]error // by the chat's user (phone)
	clock      func() time.Time
	seq        int64
	groups     map[int64]map[types.JID]*simGroup // per mentorado: the groups its number is or was in
	groupErrs  map[int64][]error                 // the next GetGroupInfo calls fail with these
	groupCalls map[int64]int
	nextID     int
	nextDevice uint16
	msgSeq     atomic.Int64
}

// NewWorld returns an empty simulated WhatsApp.
func NewWorld() *World {
	return &World{
		devices:    map[types.JID]int64{},
		clients:    map[int64][]*Client{},
		active:     map[int64][]*Client{},
		intervals:  map[int64][]Interval{},
		maxActive:  map[int64]int{},
		pending:    map[int64][]*events.Message{},
		connectErr: map[int64]error{},
		notOnWA:    map[string]bool{},
		canonical:  map[string]string{},
		registered: map[string]bool{},
		sendErrs:   map[int64][]error{},
		sendErrsTo: map[int64]map[string][]error{},
		groups:     map[int64]map[types.JID]*simGroup{},
		groupErrs:  map[int64][]error{},
		groupCalls: map[int64]int{},
	}
}

// simGroup is a group as the server knows it for one mentorado.
type simGroup struct {
	info types.GroupInfo
	left bool // the mentorado's number left or was removed
}

// Factory makes sim clients; it satisfies connector.Factory.
type Factory struct{ W *World }

var _ connector.Factory = (*Factory)(nil)

// NewClient returns a client for p.Device (ErrNoDevice when the world no
// longer knows it) or for a new device.
func (f *Factory) NewClient(_ context.Context, p connector.ClientParams) (connector.Client, error) {
	w := f.W
	w.mu.Lock()
	defer w.mu.Unlock()
	if !p.Device.IsEmpty() {
		if _, ok := w.devices[p.Device]; !ok {
			return nil, connector.ErrNoDevice
		}
	}
	w.nextID++
	c := &Client{w: w, m: p.Mentorado, id: w.nextID, device: p.Device, prePair: p.PrePair}
	w.clients[p.Mentorado] = append(w.clients[p.Mentorado], c)
	return c, nil
}

// DeleteDevice forgets a device.
func (f *Factory) DeleteDevice(_ context.Context, jid types.JID) error {
	f.W.mu.Lock()
	delete(f.W.devices, jid)
	f.W.mu.Unlock()
	return nil
}

// Client is a simulated *whatsmeow.Client.
type Client struct {
	w       *World
	m       int64
	id      int
	prePair func(types.JID) bool

	// guarded by w.mu
	device    types.JID
	connected bool
	loggedIn  bool
	qr        chan whatsmeow.QRChannelItem
	pairPhone string
	sent      []Sent
	reads     []Read
	states    []ChatState

	hmu      sync.RWMutex
	handlers []handler
}

type handler struct {
	id uint32
	fn whatsmeow.EventHandlerWithSuccessStatus
}

var _ connector.Client = (*Client)(nil)

var nextHandler atomic.Uint32

// ErrNoSession is returned when a mentorado has no connected sim client.
var ErrNoSession = errors.New("sim: no connected client")

func (c *Client) dispatch(evt any) (ok bool) {
	c.hmu.RLock()
	hs := slices.Clone(c.handlers)
	c.hmu.RUnlock()
	for _, h := range hs {
		if !h.fn(evt) {
			return false
		}
	}
	return true
}

// AddEventHandlerWithSuccessStatus registers a handler.
func (c *Client) AddEventHandlerWithSuccessStatus(fn whatsmeow.EventHandlerWithSuccessStatus) uint32 {
	id := nextHandler.Add(1)
	c.hmu.Lock()
	c.handlers = append(c.handlers, handler{id, fn})
	c.hmu.Unlock()
	return id
}

// RemoveEventHandler removes a handler.
func (c *Client) RemoveEventHandler(id uint32) bool {
	c.hmu.Lock()
	defer c.hmu.Unlock()
	for i, h := range c.handlers {
		if h.id == id {
			c.handlers = slices.Delete(c.handlers, i, i+1)
			return true
		}
	}
	return false
}

// Connect opens the simulated socket: a new device gets QR codes, a paired
// one logs in (Connected) and receives what was not acked before.
func (c *Client) Connect() error {
	w := c.w
	w.mu.Lock()
	if err := w.connectErr[c.m]; err != nil {
		w.mu.Unlock()
		return err
	}
	if c.connected {
		w.mu.Unlock()
		return whatsmeow.ErrAlreadyConnected
	}
	c.connected = true
	if c.device.IsEmpty() {
		qr := c.qr
		w.mu.Unlock()
		codes := make([]string, 6)
		for i := range codes {
			codes[i] = fmt.Sprintf("sim-qr-%d-%d-%d", c.m, c.id, i)
		}
		go func() {
			c.dispatch(&events.QR{Codes: codes})
			if qr != nil {
				c.sendQR(qr, whatsmeow.QRChannelItem{Event: whatsmeow.QRChannelEventCode, Code: codes[0], Timeout: 60 * time.Second})
			}
		}()
		return nil
	}
	if _, ok := w.devices[c.device]; !ok {
		// The server rejects a removed device: connect failure 401.
		c.connected = false
		w.mu.Unlock()
		go c.dispatch(&events.LoggedOut{OnConnect: true, Reason: events.ConnectFailureLoggedOut})
		return nil
	}
	var replaced []*Client
	if others := w.active[c.m]; len(others) > 0 {
		w.violations = append(w.violations, fmt.Sprintf("mentorado %d: client %d connected while %d clients were connected", c.m, c.id, len(others)))
		replaced = slices.Clone(others)
	}
	c.loggedIn = true
	w.active[c.m] = append(w.active[c.m], c)
	w.maxActive[c.m] = max(w.maxActive[c.m], len(w.active[c.m]))
	w.intervals[c.m] = append(w.intervals[c.m], Interval{Client: c.id, Start: time.Now()})
	w.mu.Unlock()
	for _, o := range replaced {
		// WhatsApp keeps the newest connection and kicks the older one.
		o.drop()
		go o.dispatch(&events.StreamReplaced{})
	}
	go func() {
		c.dispatch(&events.Connected{})
		c.w.Redeliver(c.m)
	}()
	return nil
}

// drop marks the client disconnected; callers dispatch what follows.
func (c *Client) drop() {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	c.dropLocked()
}

func (c *Client) dropLocked() {
	w := c.w
	c.connected = false
	if !c.loggedIn {
		return
	}
	c.loggedIn = false
	w.active[c.m] = slices.DeleteFunc(w.active[c.m], func(o *Client) bool { return o == c })
	for i := len(w.intervals[c.m]) - 1; i >= 0; i-- {
		iv := &w.intervals[c.m][i]
		if iv.Client == c.id && iv.End.IsZero() {
			iv.End = time.Now()
			break
		}
	}
}

// Disconnect closes the simulated socket without emitting events, like
// whatsmeow's.
func (c *Client) Disconnect() {
	c.w.mu.Lock()
	c.dropLocked()
	qr := c.qr
	c.qr = nil
	c.w.mu.Unlock()
	if qr != nil {
		c.closeQR(qr)
	}
}

// Logout unlinks the device.
func (c *Client) Logout(context.Context) error {
	c.w.mu.Lock()
	if !c.loggedIn {
		c.w.mu.Unlock()
		return whatsmeow.ErrNotLoggedIn
	}
	delete(c.w.devices, c.device)
	c.w.mu.Unlock()
	c.Disconnect()
	return nil
}

func (c *Client) IsConnected() bool {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return c.connected
}

func (c *Client) IsLoggedIn() bool {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	return c.loggedIn
}

var qrClosed sync.Map // chan → struct{}: closed QR channels

func (c *Client) sendQR(ch chan whatsmeow.QRChannelItem, item whatsmeow.QRChannelItem) {
	defer func() { _ = recover() }() // closed concurrently
	if _, closed := qrClosed.Load(ch); closed {
		return
	}
	select {
	case ch <- item:
	default:
	}
}

func (c *Client) closeQR(ch chan whatsmeow.QRChannelItem) {
	if _, loaded := qrClosed.LoadOrStore(ch, struct{}{}); !loaded {
		close(ch)
	}
}

// GetQRChannel works like whatsmeow's: call it before Connect on a new device.
func (c *Client) GetQRChannel(ctx context.Context) (<-chan whatsmeow.QRChannelItem, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if c.connected {
		return nil, whatsmeow.ErrQRAlreadyConnected
	}
	if !c.device.IsEmpty() {
		return nil, whatsmeow.ErrQRStoreContainsID
	}
	ch := make(chan whatsmeow.QRChannelItem, 8)
	c.qr = ch
	go func() {
		<-ctx.Done()
		c.closeQR(ch)
	}()
	return ch, nil
}

// PairPhone returns a pairing code; World.EnterPairingCode completes it.
func (c *Client) PairPhone(_ context.Context, phone string, _ bool, _ whatsmeow.PairClientType, _ string) (string, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if !c.connected {
		return "", whatsmeow.ErrNotConnected
	}
	c.pairPhone = strings.TrimPrefix(phone, "+")
	return fmt.Sprintf("SIM%d-%04d", c.id%10, c.m%10000), nil
}

// IsOnWhatsApp answers from the world's directory: every number is on
// WhatsApp unless marked otherwise (NotOnWhatsApp, SetRegistered), under
// its canonical form (Canonical). A Brazilian mobile registered under one
// form (SetRegistered(phone, true)) answers "in" only for that form: the
// other form (phone.BrazilVariants) is "out", as on the fake server. In
// strict mode (SetStrict) only registered and canonical numbers are in.
func (c *Client) IsOnWhatsApp(_ context.Context, phones []string) ([]types.IsOnWhatsAppResponse, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if !c.loggedIn {
		return nil, whatsmeow.ErrNotConnected
	}
	var out []types.IsOnWhatsAppResponse
	for _, p := range phones {
		d := strings.TrimPrefix(p, "+")
		canon, in := c.w.lookupLocked(d)
		out = append(out, types.IsOnWhatsAppResponse{Query: p, JID: types.NewJID(canon, types.DefaultUserServer), IsIn: in})
	}
	return out, nil
}

// lookupLocked answers a contact query for number d: the form to answer
// with and whether it is on WhatsApp.
func (w *World) lookupLocked(d string) (string, bool) {
	if canon, ok := w.canonical[d]; ok {
		return canon, !w.notOnWA[d] && !w.notOnWA[canon]
	}
	switch {
	case w.notOnWA[d]:
		return d, false
	case w.registered[d]:
		return d, true
	}
	for _, v := range phone.BrazilVariants(d)[1:] {
		if w.registered[v] && !w.notOnWA[v] {
			return d, false // registered under the other form
		}
	}
	return d, !w.strict
}

// SendChatPresence records a chat state (typing) like whatsmeow sends it.
func (c *Client) SendChatPresence(_ context.Context, jid types.JID, state types.ChatPresence, media types.ChatPresenceMedia) error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if !c.loggedIn {
		return whatsmeow.ErrNotConnected
	}
	c.states = append(c.states, ChatState{To: jid, State: state, Media: media, At: c.w.nowLocked(), Seq: c.w.seqLocked()})
	return nil
}

// GenerateMessageID returns a fresh message id.
func (c *Client) GenerateMessageID() types.MessageID {
	return fmt.Sprintf("3EB0SIM%012X", c.w.msgSeq.Add(1))
}

// SendMessage records a text message.
func (c *Client) SendMessage(_ context.Context, to types.JID, msg *waE2E.Message, extra ...whatsmeow.SendRequestExtra) (whatsmeow.SendResponse, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if !c.loggedIn {
		return whatsmeow.SendResponse{}, whatsmeow.ErrNotConnected
	}
	if to.Server == types.GroupServer {
		// whatsmeow fetches the members before encrypting.
		if err := c.w.groupErrLocked(c.m, to); err != nil {
			return whatsmeow.SendResponse{}, fmt.Errorf("failed to get group members: %w", err)
		}
	}
	id := ""
	if len(extra) > 0 {
		id = extra[0].ID
	}
	if id == "" {
		id = fmt.Sprintf("3EB0SIM%012X", c.w.msgSeq.Add(1))
	}
	if err := c.w.sendErrLocked(c.m, to); err != nil {
		return whatsmeow.SendResponse{}, err
	}
	text := msg.GetConversation()
	if text == "" {
		text = msg.GetExtendedTextMessage().GetText()
	}
	c.sent = append(c.sent, Sent{ID: id, To: to, Text: text, Message: msg, At: c.w.nowLocked(), Seq: c.w.seqLocked()})
	return whatsmeow.SendResponse{ID: id, Timestamp: time.Now()}, nil
}

// GetGroupInfo answers like whatsmeow's: the group's info, or
// ErrNotInGroup (403) for a group the number left, ErrGroupNotFound (404)
// for one the world does not know.
func (c *Client) GetGroupInfo(_ context.Context, jid types.JID) (*types.GroupInfo, error) {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if !c.loggedIn {
		return nil, whatsmeow.ErrNotConnected
	}
	c.w.groupCalls[c.m]++
	if errs := c.w.groupErrs[c.m]; len(errs) > 0 {
		c.w.groupErrs[c.m] = errs[1:]
		return nil, errs[0]
	}
	if err := c.w.groupErrLocked(c.m, jid); err != nil {
		return nil, err
	}
	info := c.w.groups[c.m][jid].info
	info.Participants = slices.Clone(info.Participants)
	return &info, nil
}

// groupErrLocked is what whatsmeow returns for a group m cannot use.
func (w *World) groupErrLocked(m int64, jid types.JID) error {
	g := w.groups[m][jid]
	switch {
	case g == nil:
		return fmt.Errorf("sim: %w", whatsmeow.ErrGroupNotFound)
	case g.left:
		return fmt.Errorf("sim: %w", whatsmeow.ErrNotInGroup)
	}
	return nil
}

// MarkRead records read receipts.
func (c *Client) MarkRead(_ context.Context, ids []types.MessageID, _ time.Time, chat, sender types.JID, _ ...types.ReceiptType) error {
	c.w.mu.Lock()
	defer c.w.mu.Unlock()
	if !c.loggedIn {
		return whatsmeow.ErrNotConnected
	}
	c.reads = append(c.reads, Read{IDs: slices.Clone(ids), Chat: chat, Sender: sender})
	return nil
}

// --- World: the test's side ---

func (w *World) latest(m int64) *Client {
	cs := w.clients[m]
	if len(cs) == 0 {
		return nil
	}
	return cs[len(cs)-1]
}

// Client returns the newest client made for m, or nil.
func (w *World) Client(m int64) *Client {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.latest(m)
}

// ScanQR pairs the mentorado's waiting client with phone, as if the QR code
// were scanned: PairSuccess, then the stream error 515 whatsmeow reports as
// ManualLoginReconnect.
func (w *World) ScanQR(m int64, phone string) error {
	return w.pair(m, phone)
}

// EnterPairingCode completes a phone pairing started with PairPhone.
func (w *World) EnterPairingCode(m int64) error {
	w.mu.Lock()
	c := w.latest(m)
	p := ""
	if c != nil {
		p = c.pairPhone
	}
	w.mu.Unlock()
	if p == "" {
		return fmt.Errorf("sim: mentorado %d has no pairing code", m)
	}
	return w.pair(m, p)
}

func (w *World) pair(m int64, phone string) error {
	w.mu.Lock()
	c := w.latest(m)
	if c == nil || !c.connected || !c.device.IsEmpty() {
		w.mu.Unlock()
		return fmt.Errorf("sim: mentorado %d has no client waiting to pair", m)
	}
	w.nextDevice++
	jid := types.JID{User: phone, Device: w.nextDevice, Server: types.DefaultUserServer}
	qr := c.qr
	w.mu.Unlock()
	if c.prePair != nil && !c.prePair(jid) {
		c.Disconnect()
		go c.dispatch(&events.PairError{ID: jid, Error: whatsmeow.ErrPairRejectedLocally})
		return fmt.Errorf("sim: pairing refused by the client")
	}
	w.mu.Lock()
	w.devices[jid] = m
	c.device = jid
	c.qr = nil
	w.mu.Unlock()
	if qr != nil {
		c.sendQR(qr, whatsmeow.QRChannelSuccess)
		c.closeQR(qr)
	}
	go func() {
		c.dispatch(&events.PairSuccess{ID: jid, Platform: "sim"})
		c.drop()
		c.dispatch(&events.ManualLoginReconnect{})
	}()
	return nil
}

// InjectText delivers an inbound text message from phone to m's connected
// client. acked is false when the handler failed: the message stays
// pending and is redelivered on the next connect or Redeliver.
func (w *World) InjectText(m int64, from, text string) (id string, acked bool, err error) {
	id = fmt.Sprintf("SIMIN%012X", w.msgSeq.Add(1))
	sender := types.NewJID(from, types.DefaultUserServer)
	evt := &events.Message{
		Info: types.MessageInfo{
			MessageSource: types.MessageSource{Chat: sender, Sender: sender},
			ID:            id,
			PushName:      "Sim " + from,
			Timestamp:     time.Now().Truncate(time.Second),
			Type:          "text",
		},
		Message:    &waE2E.Message{Conversation: proto.String(text)},
		RawMessage: &waE2E.Message{Conversation: proto.String(text)},
	}
	acked, err = w.InjectMessage(m, evt)
	return id, acked, err
}

// SetGroup makes m's number a member of the group info describes (its
// JID, subject, participants), replacing what the world knew of it.
func (w *World) SetGroup(m int64, info types.GroupInfo) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.groups[m] == nil {
		w.groups[m] = map[types.JID]*simGroup{}
	}
	info.Participants = slices.Clone(info.Participants)
	w.groups[m][info.JID] = &simGroup{info: info}
}

// LeaveGroup removes m's number from a group: its info can no longer be
// fetched and sends to it fail, as on WhatsApp.
func (w *World) LeaveGroup(m int64, group types.JID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if g := w.groups[m][group]; g != nil {
		g.left = true
	}
}

// FailGroupInfo makes m's next GetGroupInfo calls fail, one per error.
func (w *World) FailGroupInfo(m int64, errs ...error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.groupErrs[m] = append(w.groupErrs[m], errs...)
}

// GroupInfoCalls is how many times m's clients asked for a group's info.
func (w *World) GroupInfoCalls(m int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.groupCalls[m]
}

// InjectGroupText delivers a text message written in a group by sender
// (a device JID in the group's addressing mode; senderAlt its other
// address, or empty), built as whatsmeow builds it. fromMe: the
// mentorado wrote it from the phone.
func (w *World) InjectGroupText(m int64, group, sender, senderAlt types.JID, fromMe bool, text string) (id string, acked bool, err error) {
	id = fmt.Sprintf("SIMGR%012X", w.msgSeq.Add(1))
	mode := types.AddressingModePN
	if sender.Server == types.HiddenUserServer {
		mode = types.AddressingModeLID
	}
	evt := &events.Message{
		Info: types.MessageInfo{
			MessageSource: types.MessageSource{Chat: group, Sender: sender, SenderAlt: senderAlt, IsFromMe: fromMe, IsGroup: true, AddressingMode: mode},
			ID:            id,
			PushName:      "Sim " + sender.User,
			Timestamp:     time.Now().Truncate(time.Second),
			Type:          "text",
		},
		Message:    &waE2E.Message{Conversation: proto.String(text)},
		RawMessage: &waE2E.Message{Conversation: proto.String(text)},
	}
	acked, err = w.InjectMessage(m, evt)
	return id, acked, err
}

// InjectMessage delivers any message event to m's connected client.
func (w *World) InjectMessage(m int64, evt *events.Message) (bool, error) {
	w.mu.Lock()
	cs := slices.Clone(w.active[m])
	w.mu.Unlock()
	if len(cs) == 0 {
		w.mu.Lock()
		w.pending[m] = append(w.pending[m], evt)
		w.mu.Unlock()
		return false, ErrNoSession
	}
	if cs[0].dispatch(evt) {
		return true, nil
	}
	w.mu.Lock()
	w.pending[m] = append(w.pending[m], evt)
	w.mu.Unlock()
	return false, nil
}

// Inject dispatches any event (e.g. *events.Receipt) to m's connected
// client and reports whether the handlers succeeded.
func (w *World) Inject(m int64, evt any) (bool, error) {
	w.mu.Lock()
	cs := slices.Clone(w.active[m])
	w.mu.Unlock()
	if len(cs) == 0 {
		return false, ErrNoSession
	}
	return cs[0].dispatch(evt), nil
}

// Redeliver offers m's pending messages again; it returns how many were acked.
func (w *World) Redeliver(m int64) int {
	w.mu.Lock()
	pend := w.pending[m]
	w.pending[m] = nil
	cs := slices.Clone(w.active[m])
	w.mu.Unlock()
	n := 0
	var still []*events.Message
	for _, evt := range pend {
		if len(cs) > 0 && cs[0].dispatch(evt) {
			n++
		} else {
			still = append(still, evt)
		}
	}
	if len(still) > 0 {
		w.mu.Lock()
		w.pending[m] = append(still, w.pending[m]...)
		w.mu.Unlock()
	}
	return n
}

// Pending is how many messages of m wait for an ack.
func (w *World) Pending(m int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending[m])
}

// Kick ends m's connection the way the server would and dispatches evt:
// *events.Disconnected, *events.StreamReplaced, *events.TemporaryBan,
// *events.LoggedOut (the device is removed), *events.ConnectFailure,
// *events.ManualLoginReconnect (515). *events.KeepAliveTimeout is
// dispatched without closing the socket.
func (w *World) Kick(m int64, evt any) error {
	w.mu.Lock()
	cs := slices.Clone(w.active[m])
	if len(cs) == 0 {
		w.mu.Unlock()
		return ErrNoSession
	}
	c := cs[0]
	switch evt.(type) {
	case *events.KeepAliveTimeout:
	case *events.LoggedOut:
		delete(w.devices, c.device)
		c.dropLocked()
	default:
		c.dropLocked()
	}
	w.mu.Unlock()
	go c.dispatch(evt)
	return nil
}

// FailConnect makes m's Connect calls fail with err until called with nil.
func (w *World) FailConnect(m int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil {
		delete(w.connectErr, m)
	} else {
		w.connectErr[m] = err
	}
}

// NotOnWhatsApp marks a number as not registered.
func (w *World) NotOnWhatsApp(phone string) {
	w.mu.Lock()
	w.notOnWA[phone] = true
	w.mu.Unlock()
}

// Canonical makes the server answer for number with canonical (the
// Brazilian 9th digit case).
func (w *World) Canonical(number, canonical string) {
	w.mu.Lock()
	w.canonical[number] = canonical
	w.mu.Unlock()
}

// Connected reports whether m has a connected, logged-in client.
func (w *World) Connected(m int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.active[m]) > 0
}

// Paired reports whether m has a device.
func (w *World) Paired(m int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, owner := range w.devices {
		if owner == m {
			return true
		}
	}
	return false
}

// Device returns m's device JID.
func (w *World) Device(m int64) (types.JID, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for jid, owner := range w.devices {
		if owner == m {
			return jid, true
		}
	}
	return types.EmptyJID, false
}

// AddDevice registers an already paired device for m (fixtures).
func (w *World) AddDevice(m int64, phone string) types.JID {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.nextDevice++
	jid := types.JID{User: phone, Device: w.nextDevice, Server: types.DefaultUserServer}
	w.devices[jid] = m
	return jid
}

// Intervals returns m's connected spans.
func (w *World) Intervals(m int64) []Interval {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.intervals[m])
}

// MaxConcurrent is the most clients of m ever connected at once.
func (w *World) MaxConcurrent(m int64) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.maxActive[m]
}

// Violations lists every moment two clients of one mentorado were connected.
func (w *World) Violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.violations)
}

// Reads returns the read receipts m's clients sent.
func (w *World) Reads(m int64) []Read {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Read
	for _, c := range w.clients[m] {
		out = append(out, c.reads...)
	}
	return out
}

// Sent returns what m's clients sent, in order.
func (w *World) Sent(m int64) []Sent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Sent
	for _, c := range w.clients[m] {
		out = append(out, c.sent...)
	}
	slices.SortStableFunc(out, func(a, b Sent) int { return int(a.Seq - b.Seq) })
	return out
}

// SetRegistered says whether number (E.164 digits) is on WhatsApp under
// exactly this form. true: "in" (even in strict mode), and for a Brazilian
// mobile the other form (with or without the 9th digit) answers "out";
// false: "out", like NotOnWhatsApp.
func (w *World) SetRegistered(number string, registered bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if registered {
		delete(w.notOnWA, number)
		w.registered[number] = true
		return
	}
	delete(w.registered, number)
	w.notOnWA[number] = true
}

// SetStrict makes only registered (SetRegistered) and canonical
// (Canonical) numbers be on WhatsApp. Default false: every number is,
// unless marked otherwise.
func (w *World) SetStrict(v bool) {
	w.mu.Lock()
	w.strict = v
	w.mu.Unlock()
}

// ServerError is the error whatsmeow's SendMessage returns when the
// server refuses a message with <ack error=code> (e.g. 479, 421, 463): it
// wraps whatsmeow.ErrServerReturnedError.
func ServerError(code int) error {
	return fmt.Errorf("%w %d", whatsmeow.ErrServerReturnedError, code)
}

// FailSends makes m's next sends fail, one per error (ServerError(479)
// for a refusal like the real server's). Failed sends are not in Sent.
func (w *World) FailSends(m int64, errs ...error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sendErrs[m] = append(w.sendErrs[m], errs...)
}

// FailSendsTo is FailSends for m's sends to the chat whose user is phone
// only (checked first).
func (w *World) FailSendsTo(m int64, phone string, errs ...error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sendErrsTo[m] == nil {
		w.sendErrsTo[m] = map[string][]error{}
	}
	w.sendErrsTo[m][phone] = append(w.sendErrsTo[m][phone], errs...)
}

func (w *World) sendErrLocked(m int64, to types.JID) error {
	if q := w.sendErrsTo[m][to.User]; len(q) > 0 {
		w.sendErrsTo[m][to.User] = q[1:]
		return q[0]
	}
	if q := w.sendErrs[m]; len(q) > 0 {
		w.sendErrs[m] = q[1:]
		return q[0]
	}
	return nil
}

// SetClock sets the clock that stamps Sent.At and ChatState.At (nil: the
// wall clock).
func (w *World) SetClock(now func() time.Time) {
	w.mu.Lock()
	w.clock = now
	w.mu.Unlock()
}

func (w *World) nowLocked() time.Time {
	if w.clock != nil {
		return w.clock()
	}
	return time.Now()
}

func (w *World) seqLocked() int64 {
	w.seq++
	return w.seq
}

// ChatStates returns the chat presences m's clients sent, in order.
func (w *World) ChatStates(m int64) []ChatState {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ChatState
	for _, c := range w.clients[m] {
		out = append(out, c.states...)
	}
	slices.SortFunc(out, func(a, b ChatState) int { return int(a.Seq - b.Seq) })
	return out
}
