package connector

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
)

// pairing modes of a session without a device.
type pairMode int

const (
	pairNone pairMode = iota
	pairQR
	pairPhone
)

// snapshot is what other goroutines may read about a session.
type snapshot struct {
	reply event.StatusReply
	cli   Client
	jid   types.JID
}

// session is the runtime of one mentorado's WhatsApp session. All state
// changes happen in one goroutine (run), fed by inbox: whatsmeow events,
// command requests, timer fires and connect results are closures posted
// there, so the reconnect policy is a sequential state machine.
type session struct {
	m   int64
	c   *Connector
	log zerolog.Logger
	out *outbox

	inbox  chan func()
	quit   chan struct{} // closed when run returns
	exit   bool
	connWG sync.WaitGroup // in-flight Connect calls

	// Owned by run.
	cli         Client
	gen         int // client generation: events of older clients are ignored
	handlerID   uint32
	detach      chan struct{}
	jid         types.JID
	phone       string
	desired     bool
	status      event.Status
	since       time.Time
	reason      string
	attempt     int
	retryAt     *time.Time
	timer       Timer
	timerGen    int
	qrCancel    context.CancelFunc
	mode        pairMode
	pairPhone   string
	pairWaiter  chan connectResult
	qrSeen      bool
	lastConnect time.Time

	snap atomic.Pointer[snapshot]
}

type connectResult struct {
	reply *event.StatusReply
	err   error
}

func newSession(c *Connector, m int64, row deviceRow) *session {
	s := &session{
		m:       m,
		c:       c,
		log:     c.log.With().Int64("mentorado", m).Logger(),
		inbox:   make(chan func(), 256),
		quit:    make(chan struct{}),
		jid:     row.JID,
		phone:   row.Phone,
		desired: row.Desired == desiredConnected && !row.JID.IsEmpty(),
		status:  event.StatusDisconnected,
		since:   c.clock.Now(),
	}
	s.out = newOutbox(c, s.log)
	s.c.metrics.sessions.WithLabelValues(string(s.status)).Inc()
	s.publishSnapshot()
	return s
}

func (s *session) start() {
	go s.out.run(s.c.runCtx)
	go s.run()
}

func (s *session) run() {
	defer close(s.quit)
	for !s.exit {
		f := <-s.inbox
		f()
	}
}

// post queues f for the session goroutine; false when the session ended.
func (s *session) post(f func()) bool {
	select {
	case s.inbox <- f:
		return true
	case <-s.quit:
		return false
	}
}

// call runs f on the session goroutine and waits for its result.
func call[T any](ctx context.Context, s *session, f func() T) (T, error) {
	ch := make(chan T, 1)
	var zero T
	if !s.post(func() { ch <- f() }) {
		return zero, event.NewCommandError(event.CodeNotOwner, "session moved to another connector")
	}
	select {
	case v := <-ch:
		return v, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-s.quit:
		select {
		case v := <-ch:
			return v, nil
		default:
		}
		return zero, event.NewCommandError(event.CodeNotOwner, "session moved to another connector")
	}
}

func (s *session) snapshot() *snapshot { return s.snap.Load() }

func (s *session) publishSnapshot() {
	r := event.StatusReply{Status: s.status, Phone: s.phone, Since: s.since, Reason: s.reason, RetryAt: s.retryAt}
	if !s.jid.IsEmpty() {
		r.JID = s.jid.String()
	}
	s.snap.Store(&snapshot{reply: r, cli: s.cli, jid: s.jid})
}

// idle reports whether the session neither runs nor wants to: its lease
// can be given back.
func (s *session) idle() bool {
	snap := s.snapshot()
	switch snap.reply.Status {
	case event.StatusDisconnected, event.StatusLoggedOut, event.StatusConflict:
		return snap.cli == nil
	}
	return false
}

// setStatus records a state change and publishes it as a connection event.
func (s *session) setStatus(st event.Status, reason string) {
	s.setStatusVia(st, reason, s.out.push)
}

// setStatusVia is setStatus with the outbox method that queues the event.
func (s *session) setStatusVia(st event.Status, reason string, push func(event.Envelope)) {
	now := s.c.clock.Now()
	if st != s.status {
		s.c.metrics.sessions.WithLabelValues(string(s.status)).Dec()
		s.c.metrics.sessions.WithLabelValues(string(st)).Inc()
	}
	if st != event.StatusBackoff && st != event.StatusBanned {
		s.retryAt = nil
	}
	s.status, s.reason, s.since = st, reason, now
	s.publishSnapshot()
	conn := &event.Connection{Status: st, Phone: s.phone, Reason: reason, RetryAt: s.retryAt}
	if !s.jid.IsEmpty() {
		conn.JID = s.jid.String()
	}
	if st == event.StatusBackoff {
		conn.Attempt = s.attempt
	}
	env, err := event.New(s.m, event.ConnectionEventID(s.m, st, now), now, conn)
	if err != nil {
		s.log.Error().Err(err).Msg("build connection event")
		return
	}
	ev := s.log.Info().Str("status", string(st)).Str("reason", reason)
	if s.retryAt != nil {
		ev = ev.Time("retry_at", *s.retryAt)
	}
	ev.Msg("session state")
	push(env)
}

func (s *session) cancelTimer() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.timerGen++
}

// schedule runs f on the session goroutine after d, unless another timer
// is scheduled or cancelled first.
func (s *session) schedule(d time.Duration, f func()) {
	s.cancelTimer()
	gen := s.timerGen
	s.timer = s.c.clock.AfterFunc(d, func() {
		s.post(func() {
			if gen == s.timerGen {
				s.timer = nil
				f()
			}
		})
	})
}

// ensureClient creates the client for the current device when there is none.
func (s *session) ensureClient() error {
	if s.cli != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(s.c.runCtx, s.c.cfg.CommandTimeout)
	defer cancel()
	cli, err := s.c.factory.NewClient(ctx, ClientParams{Mentorado: s.m, Device: s.jid, PrePair: s.prePair, Log: s.log})
	if err != nil {
		return err
	}
	s.gen++
	s.cli = cli
	s.detach = make(chan struct{})
	s.handlerID = cli.AddEventHandlerWithSuccessStatus(s.handler(s.gen, cli, s.detach))
	s.publishSnapshot()
	return nil
}

// dropClient disconnects and forgets the client; its later events are ignored.
func (s *session) dropClient() {
	if s.qrCancel != nil {
		s.qrCancel()
		s.qrCancel = nil
	}
	if s.cli == nil {
		return
	}
	cli, id := s.cli, s.handlerID
	close(s.detach)
	cli.Disconnect()
	// RemoveEventHandler waits for running handlers; never from here.
	go cli.RemoveEventHandler(id)
	s.cli = nil
	s.gen++
	s.mode = pairNone
	s.publishSnapshot()
}

// connectAsync dials in the background; the result comes back through the inbox.
func (s *session) connectAsync(reconnect bool) {
	cli, gen := s.cli, s.gen
	s.lastConnect = s.c.clock.Now()
	s.connWG.Add(1)
	go func() {
		defer s.connWG.Done()
		if reconnect {
			cli.Disconnect()
		}
		err := cli.Connect()
		s.post(func() { s.onConnectResult(gen, err) })
	}()
	if !s.jid.IsEmpty() {
		// Watchdog: a paired device that neither connects nor fails.
		s.schedule(s.c.cfg.ConnectTimeout, func() {
			if s.status == event.StatusConnecting {
				s.cli.Disconnect()
				s.backoff("connect timeout")
			}
		})
	}
}

func (s *session) onConnectResult(gen int, err error) {
	if gen != s.gen || err == nil {
		return
	}
	if errors.Is(err, whatsmeow.ErrAlreadyConnected) {
		return
	}
	s.log.Warn().Err(err).Msg("connect failed")
	if s.jid.IsEmpty() {
		s.terminate(event.StatusDisconnected, fmt.Sprintf("connect failed: %v", err))
		return
	}
	s.backoff(fmt.Sprintf("connect failed: %v", err))
}

// restore connects a paired session whose desired state is connected.
func (s *session) restore() {
	if s.exit || !s.desired || s.jid.IsEmpty() || s.cli != nil {
		return
	}
	s.attempt = 0
	s.startPaired()
}

func (s *session) startPaired() {
	if err := s.ensureClient(); err != nil {
		if errors.Is(err, ErrNoDevice) {
			s.loggedOut("device missing from store")
			return
		}
		s.log.Error().Err(err).Msg("create client")
		s.backoff(fmt.Sprintf("create client: %v", err))
		return
	}
	s.setStatus(event.StatusConnecting, "")
	s.connectAsync(false)
}

// onConnect handles a connect command.
func (s *session) onConnect(req event.ConnectRequest, res chan connectResult) {
	reply := func() { r := s.snapshot().reply; res <- connectResult{reply: &r} }
	switch s.status {
	case event.StatusConnected, event.StatusConnecting, event.StatusQR, event.StatusPairing, event.StatusBackoff, event.StatusBanned:
		if s.cli != nil || s.status == event.StatusBanned {
			reply()
			return
		}
	}
	method := req.Method
	if method == "" {
		method = event.ConnectQR
	}
	if method != event.ConnectQR && method != event.ConnectPhone {
		res <- connectResult{err: event.NewCommandError(event.CodeBadRequest, "method must be qr or phone")}
		return
	}
	ctx, cancel := context.WithTimeout(s.c.runCtx, s.c.cfg.CommandTimeout)
	defer cancel()
	if !s.jid.IsEmpty() {
		if err := s.c.devices.setDesired(ctx, s.m, desiredConnected); err != nil {
			res <- connectResult{err: err}
			return
		}
		s.desired = true
		s.attempt = 0
		s.startPaired()
		reply()
		return
	}
	var pairTo string
	if method == event.ConnectPhone {
		p, err := phone.Normalize(req.Phone)
		if err != nil {
			res <- connectResult{err: event.NewCommandError(event.CodeInvalidPhone, "%v", err)}
			return
		}
		if owner, taken, err := s.c.devices.phoneOwner(ctx, p, s.m); err != nil {
			res <- connectResult{err: err}
			return
		} else if taken {
			s.log.Warn().Int64("owner", owner).Msg("pairing refused: number already paired")
			res <- connectResult{err: event.NewCommandError(event.CodeAlreadyPaired, "this number is paired to another account")}
			return
		}
		pairTo = p
	}
	if err := s.ensureClient(); err != nil {
		res <- connectResult{err: err}
		return
	}
	qrCtx, qrCancel := context.WithCancel(s.c.runCtx)
	ch, err := s.cli.GetQRChannel(qrCtx)
	if err != nil {
		qrCancel()
		s.dropClient()
		res <- connectResult{err: fmt.Errorf("qr channel: %w", err)}
		return
	}
	s.qrCancel = qrCancel
	s.qrSeen = false
	s.mode = pairQR
	if method == event.ConnectPhone {
		s.mode = pairPhone
		s.pairPhone = pairTo
		s.pairWaiter = res
	}
	gen := s.gen
	go func() {
		for item := range ch {
			if !s.post(func() { s.onQR(gen, item) }) {
				return
			}
		}
	}()
	s.desired = true
	s.attempt = 0
	s.setStatus(event.StatusConnecting, "pairing")
	s.connectAsync(false)
	if method == event.ConnectQR {
		reply()
	}
}

func (s *session) onQR(gen int, item whatsmeow.QRChannelItem) {
	if gen != s.gen {
		return
	}
	now := s.c.clock.Now()
	switch item.Event {
	case whatsmeow.QRChannelEventCode:
		first := !s.qrSeen
		s.qrSeen = true
		if s.mode == pairQR {
			s.publishQR(&event.QR{Code: item.Code, ExpiresAt: now.Add(item.Timeout)})
			if s.status != event.StatusQR {
				s.setStatus(event.StatusQR, "scan the QR code")
			}
		} else if s.mode == pairPhone && first {
			s.requestPairingCode()
		}
	case whatsmeow.QRChannelSuccess.Event:
		// PairSuccess arrives through the event handler.
	case whatsmeow.QRChannelTimeout.Event:
		if s.jid.IsEmpty() {
			s.failPairing(event.StatusDisconnected, "pairing timed out")
		}
	case whatsmeow.QRChannelEventError:
		if s.jid.IsEmpty() {
			s.failPairing(event.StatusDisconnected, fmt.Sprintf("pairing failed: %v", item.Error))
		}
	case whatsmeow.QRChannelClientOutdated.Event, whatsmeow.QRChannelScannedWithoutMultidevice.Event:
		if s.jid.IsEmpty() {
			s.failPairing(event.StatusDisconnected, item.Event)
		}
	}
}

func (s *session) requestPairingCode() {
	cli, gen, p := s.cli, s.gen, s.pairPhone
	go func() {
		ctx, cancel := context.WithTimeout(s.c.runCtx, s.c.cfg.CommandTimeout)
		defer cancel()
		code, err := cli.PairPhone(ctx, p, true, whatsmeow.PairClientChrome, "Chrome (Linux)")
		s.post(func() {
			if gen != s.gen {
				return
			}
			if err != nil {
				s.failPairing(event.StatusDisconnected, fmt.Sprintf("pairing code: %v", err))
				return
			}
			s.publishQR(&event.QR{PairingCode: code, ExpiresAt: s.c.clock.Now().Add(s.c.cfg.PairingCodeTTL)})
			s.setStatus(event.StatusPairing, "enter the pairing code on the phone")
			if s.pairWaiter != nil {
				r := s.snapshot().reply
				r.PairingCode = code
				s.pairWaiter <- connectResult{reply: &r}
				s.pairWaiter = nil
			}
		})
	}()
}

func (s *session) publishQR(q *event.QR) {
	env, err := event.New(s.m, event.QREventID(s.m, q), s.c.clock.Now(), q)
	if err != nil {
		s.log.Error().Err(err).Msg("build qr event")
		return
	}
	s.log.Debug().Msg("pairing secret published")
	s.out.push(env)
}

func (s *session) failPairing(st event.Status, reason string) {
	if s.pairWaiter != nil {
		s.pairWaiter <- connectResult{err: event.NewCommandError(event.CodeInternal, "%s", reason)}
		s.pairWaiter = nil
	}
	s.desired = false
	s.terminate(st, reason)
}

// prePair refuses a number already paired to another mentorado. It runs
// on a whatsmeow goroutine.
func (s *session) prePair(jid types.JID) bool {
	ctx, cancel := context.WithTimeout(s.c.runCtx, 10*time.Second)
	defer cancel()
	owner, taken, err := s.c.devices.phoneOwner(ctx, jid.User, s.m)
	if err != nil {
		s.log.Error().Err(err).Msg("pre-pair check")
		return false
	}
	if taken {
		s.log.Warn().Int64("owner", owner).Msg("pairing refused: number already paired to another mentorado")
		return false
	}
	return true
}

// handler is registered on a client; it runs on whatsmeow goroutines.
// Messages, receipts and contacts are published before it returns: true
// (whatsmeow acks) only after every JetStream PubAck.
func (s *session) handler(gen int, cli Client, detach chan struct{}) whatsmeow.EventHandlerWithSuccessStatus {
	return func(evt any) bool {
		switch evt.(type) {
		case *events.Message, *events.Receipt, *events.PushName, *events.Contact, *events.BusinessName:
			return s.publishInbound(cli, evt)
		case *events.Connected, *events.Disconnected, *events.PairSuccess, *events.PairError,
			*events.LoggedOut, *events.StreamReplaced, *events.TemporaryBan, *events.ConnectFailure,
			*events.ClientOutdated, *events.ManualLoginReconnect, *events.KeepAliveTimeout,
			*events.StreamError, *events.CATRefreshError:
			f := func() { s.onEvent(gen, evt) }
			select {
			case s.inbox <- f:
			case <-s.quit:
			case <-detach:
			}
		}
		return true
	}
}

func (s *session) publishInbound(cli Client, evt any) bool {
	ctx, cancel := context.WithTimeout(s.c.runCtx, s.c.cfg.PublishTimeout)
	defer cancel()
	envs, err := s.c.convert(ctx, s.m, cli, evt)
	if err != nil {
		var perm *event.Error
		if errors.As(err, &perm) {
			// A fact that cannot be expressed in the contract: retrying
			// would loop forever. Keep it in the dead-letter stream with
			// the reason, and ack WhatsApp only once that is stored.
			if derr := s.deadLetter(ctx, evt, err); derr != nil {
				s.log.Warn().Err(derr).Msg("dead-letter unconvertible event; not acking")
				return false
			}
			s.log.Error().Err(err).Str("event", fmt.Sprintf("%T", evt)).Msg("unconvertible event dead-lettered")
			s.c.metrics.dropped.Inc()
			return true
		}
		s.log.Warn().Err(err).Str("event", fmt.Sprintf("%T", evt)).Msg("convert failed; not acking")
		return false
	}
	for _, env := range envs {
		if _, err := s.c.bus.Publish(ctx, env); err != nil {
			s.c.metrics.publishFailures.WithLabelValues(string(env.Type)).Inc()
			s.log.Warn().Err(err).Str("id", env.ID).Msg("publish failed; WhatsApp will redeliver")
			return false
		}
		s.c.metrics.published.WithLabelValues(string(env.Type)).Inc()
	}
	return true
}

// deadLetter stores a whatsmeow event the contract cannot express in WA_DLQ
// as JSON, under an id derived from its content.
func (s *session) deadLetter(ctx context.Context, evt any, reason error) error {
	data, err := json.Marshal(evt)
	if err != nil {
		data = []byte(fmt.Sprintf("%+v", evt))
	}
	sum := sha256.Sum256(data)
	id := fmt.Sprintf("%d:%x", s.m, sum[:12])
	subject := fmt.Sprintf("whatsmeow:%T", evt)
	return s.c.bus.DeadLetterFrom(ctx, "connector", id, subject, data, reason)
}

func (s *session) onEvent(gen int, evt any) {
	if gen != s.gen || s.exit {
		return
	}
	switch e := evt.(type) {
	case *events.PairSuccess:
		ctx, cancel := context.WithTimeout(s.c.runCtx, s.c.cfg.CommandTimeout)
		defer cancel()
		s.jid = e.ID
		s.phone = e.ID.User
		if err := s.c.devices.paired(ctx, s.m, e.ID, e.ID.User); err != nil {
			s.log.Error().Err(err).Msg("record paired device")
		}
		s.desired = true
		s.mode = pairNone
		if s.qrCancel != nil {
			s.qrCancel()
			s.qrCancel = nil
		}
		s.setStatus(event.StatusPairing, "paired, logging in")
	case *events.PairError:
		reason := fmt.Sprintf("pairing failed: %v", e.Error)
		if errors.Is(e.Error, whatsmeow.ErrPairRejectedLocally) {
			reason = "pairing refused: number already paired to another account"
		}
		s.failPairing(event.StatusDisconnected, reason)
	case *events.Connected:
		if s.jid.IsEmpty() {
			return
		}
		s.cancelTimer()
		s.attempt = 0
		s.setStatus(event.StatusConnected, "")
	case *events.ManualLoginReconnect:
		// Stream error 515 (restart required), also sent right after pairing.
		s.c.metrics.reconnects.WithLabelValues("515").Inc()
		s.cancelTimer()
		s.setStatus(event.StatusConnecting, "stream error 515: restart required")
		s.connectAsync(true)
	case *events.LoggedOut:
		reason := "logged out: " + e.Reason.String()
		if !e.OnConnect {
			reason = "logged out: device removed (stream error 401)"
		}
		s.loggedOut(reason)
	case *events.StreamReplaced:
		s.c.metrics.reconnects.WithLabelValues("replaced").Inc()
		s.setDesired(false)
		s.terminate(event.StatusConflict, "stream replaced: this device connected elsewhere")
	case *events.TemporaryBan:
		s.ban(e.Expire, "temporarily banned: "+e.Code.String())
	case *events.ConnectFailure:
		switch {
		case e.Reason.IsLoggedOut():
			s.loggedOut("logged out: " + e.Reason.String())
		case e.Reason == events.ConnectFailureTempBanned:
			s.ban(0, "temporarily banned")
		default:
			s.backoff("connect failure " + e.Reason.String())
		}
	case *events.ClientOutdated:
		s.setDesired(false)
		s.terminate(event.StatusDisconnected, "client outdated (405)")
	case *events.CATRefreshError:
		s.backoff("CAT refresh failed")
	case *events.KeepAliveTimeout:
		if s.status == event.StatusConnected && s.c.clock.Now().Sub(e.LastSuccess) > s.c.cfg.Policy.KeepAliveMaxFail {
			s.cli.Disconnect()
			s.backoff("keepalive timeout")
		}
	case *events.StreamError:
		s.log.Warn().Str("code", e.Code).Msg("unknown stream error")
	case *events.Disconnected:
		switch s.status {
		case event.StatusConnected, event.StatusConnecting, event.StatusPairing, event.StatusQR:
			if s.jid.IsEmpty() {
				s.failPairing(event.StatusDisconnected, "connection closed while pairing")
				return
			}
			s.backoff("connection lost")
		}
	}
}

func (s *session) setDesired(want bool) {
	s.desired = want
	d := desiredDisconnected
	if want {
		d = desiredConnected
	}
	ctx, cancel := context.WithTimeout(s.c.runCtx, s.c.cfg.CommandTimeout)
	defer cancel()
	if err := s.c.devices.setDesired(ctx, s.m, d); err != nil {
		s.log.Error().Err(err).Msg("store desired state")
	}
}

// backoff schedules the next reconnect, or gives up after MaxAttempts.
func (s *session) backoff(reason string) {
	pol := s.c.cfg.Policy
	s.attempt++
	if s.attempt > pol.MaxAttempts {
		s.setDesired(false)
		s.terminate(event.StatusDisconnected, fmt.Sprintf("gave up after %d attempts: %s", pol.MaxAttempts, reason))
		return
	}
	s.c.metrics.reconnects.WithLabelValues("backoff").Inc()
	d := pol.Delay(s.attempt, s.c.rand)
	at := s.c.clock.Now().Add(d)
	s.retryAt = &at
	s.setStatus(event.StatusBackoff, reason)
	s.schedule(d, s.reconnect)
}

func (s *session) reconnect() {
	if s.cli == nil {
		s.startPaired()
		return
	}
	s.setStatus(event.StatusConnecting, s.reason)
	s.connectAsync(true)
}

func (s *session) ban(expire time.Duration, reason string) {
	s.c.metrics.reconnects.WithLabelValues("ban").Inc()
	if expire <= 0 {
		expire = s.c.cfg.Policy.DefaultBanWait
	}
	if s.cli != nil {
		s.cli.Disconnect()
	}
	at := s.c.clock.Now().Add(expire)
	s.retryAt = &at
	s.attempt = 0
	s.setStatus(event.StatusBanned, reason)
	s.schedule(expire, s.reconnect)
}

// loggedOut clears the device everywhere and stops.
func (s *session) loggedOut(reason string) {
	s.c.metrics.reconnects.WithLabelValues("logged_out").Inc()
	ctx, cancel := context.WithTimeout(s.c.runCtx, s.c.cfg.CommandTimeout)
	defer cancel()
	s.cancelTimer()
	s.dropClient()
	if err := s.c.factory.DeleteDevice(ctx, s.jid); err != nil {
		s.log.Error().Err(err).Msg("delete device")
	}
	if err := s.c.devices.delete(ctx, s.m); err != nil {
		s.log.Error().Err(err).Msg("delete wa_devices row")
	}
	s.jid = types.EmptyJID
	s.phone = ""
	s.desired = false
	s.attempt = 0
	s.setStatus(event.StatusLoggedOut, reason)
}

// terminate ends the session in a final state.
func (s *session) terminate(st event.Status, reason string) {
	s.cancelTimer()
	s.dropClient()
	s.attempt = 0
	s.setStatus(st, reason)
}

func (s *session) onDisconnectCmd() event.StatusReply {
	s.setDesired(false)
	s.terminate(event.StatusDisconnected, "disconnect command")
	return s.snapshot().reply
}

func (s *session) onLogoutCmd() event.StatusReply {
	if s.cli != nil && s.cli.IsLoggedIn() {
		ctx, cancel := context.WithTimeout(s.c.runCtx, s.c.cfg.CommandTimeout)
		err := s.cli.Logout(ctx)
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Msg("logout request failed; clearing the device locally")
		}
	}
	s.loggedOut("logout command")
	return s.snapshot().reply
}

// stop ends the session because this connector no longer owns it
// (shutdown, lease lost): the client is disconnected, the desired state
// is kept so the next owner restores it.
func (s *session) stop(ctx context.Context, reason string) {
	cliCh := make(chan Client, 1)
	posted := s.post(func() {
		cliCh <- s.cli
		wasActive := s.status != event.StatusDisconnected && s.status != event.StatusLoggedOut && s.status != event.StatusConflict
		s.cancelTimer()
		if s.pairWaiter != nil {
			s.pairWaiter <- connectResult{err: event.NewCommandError(event.CodeUnavailable, "session moved")}
			s.pairWaiter = nil
		}
		s.dropClient()
		if wasActive {
			// Stored only if nobody stored a newer connection state since
			// this session's last: when the lease moved while this
			// connector was cut off, the new owner's "connected" stands.
			s.setStatusVia(event.StatusDisconnected, reason, s.out.pushIfLatest)
		}
		s.exit = true
	})
	if posted {
		select {
		case <-s.quit:
		case <-ctx.Done():
		}
	}
	// A Connect that was in flight may finish after the disconnect above:
	// wait for it and disconnect again, so no socket outlives the lease.
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn().Msg("stop: connect still in flight at deadline")
	}
	select {
	case cli := <-cliCh:
		if cli != nil {
			cli.Disconnect()
		}
	default:
	}
	s.c.metrics.sessions.WithLabelValues(string(s.snapshot().reply.Status)).Dec()
	s.out.close(ctx)
}
