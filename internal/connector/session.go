package connector

import (
	"context"
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
	"github.com/zapbus/zapbus/internal/outbound"
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
// there, so the reconnect policy is a sequential state machine. Each
// closure gets the session's run context.
//
// The files split its jobs: this one is the state machine, inbound.go what
// runs on whatsmeow goroutines (publishing before the ack), pairing.go the
// connect command and pairing.
type session struct {
	m   int64
	d   sessionDeps
	log zerolog.Logger
	out *outbox

	inbox  chan func(context.Context)
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

	// ignoredSeen holds the event types (%T) already logged as ignored or
	// unknown, so each is logged once per session; written on whatsmeow
	// goroutines.
	ignoredSeen sync.Map

	snap atomic.Pointer[snapshot]

	ctx     context.Context             // the run context, set when run starts
	groups  *groups                     // groups described, first-sight fetches (groups.go)
	media   atomic.Pointer[mediaWorker] // the media download worker while connected
	mediaWG sync.WaitGroup              // running media workers

	history   atomic.Pointer[historyWorker] // the history sync worker while connected (history.go)
	historyWG sync.WaitGroup                // running history workers

	outbound   atomic.Pointer[outWorker] // the outbox worker while connected (sending.go)
	outboundWG sync.WaitGroup            // running outbox workers
}

type connectResult struct {
	reply *event.StatusReply
	err   error
}

func newSession(d sessionDeps, m int64, row deviceRow) *session {
	log := d.log.With().Int64("mentorado", m).Logger()
	s := &session{
		m:       m,
		d:       d,
		log:     log,
		inbox:   make(chan func(context.Context), 256),
		quit:    make(chan struct{}),
		jid:     row.JID,
		phone:   row.Phone,
		desired: row.Desired == desiredConnected && !row.JID.IsEmpty(),
		status:  event.StatusDisconnected,
		since:   d.clock.Now(),
		groups:  newGroups(),
	}
	s.out = newOutbox(d.publisher, d.cfg.PublishTimeout, d.metrics, log)
	s.d.metrics.sessions.WithLabelValues(string(s.status)).Inc()
	s.publishSnapshot()
	return s
}

// start runs the session and its outbox until ctx is done or stop.
func (s *session) start(ctx context.Context) {
	s.ctx = ctx
	go s.out.run(ctx)
	go s.run(ctx)
}

func (s *session) run(ctx context.Context) {
	defer close(s.quit)
	defer s.stopOutbound()
	defer s.stopMedia()
	defer s.stopHistory()
	defer s.stopGroups()
	for !s.exit {
		f := <-s.inbox
		f(ctx)
	}
}

// post queues f for the session goroutine; false when the session ended.
func (s *session) post(f func(context.Context)) bool {
	select {
	case s.inbox <- f:
		return true
	case <-s.quit:
		return false
	}
}

// call runs f on the session goroutine and waits for its result.
func call[T any](ctx context.Context, s *session, f func(context.Context) T) (T, error) {
	ch := make(chan T, 1)
	var zero T
	if !s.post(func(ctx context.Context) { ch <- f(ctx) }) {
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

// withTimeout bounds one store or WhatsApp round trip of the session.
func (s *session) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.d.cfg.CommandTimeout)
}

// setStatus records a state change and publishes it as a connection event.
func (s *session) setStatus(st event.Status, reason string) {
	s.setStatusVia(st, reason, s.out.push)
}

// setStatusVia is setStatus with the outbox method that queues the event.
func (s *session) setStatusVia(st event.Status, reason string, push func(event.Envelope)) {
	now := s.d.clock.Now()
	if st != s.status {
		s.d.metrics.sessions.WithLabelValues(string(s.status)).Dec()
		s.d.metrics.sessions.WithLabelValues(string(st)).Inc()
	}
	if st != event.StatusBackoff && st != event.StatusBanned {
		s.retryAt = nil
	}
	s.status, s.reason, s.since = st, reason, now
	s.publishSnapshot()
	if st == event.StatusConnected {
		s.startMedia()
		s.startHistory()
		s.startOutbound()
	} else {
		s.stopOutbound()
		s.stopMedia()
		s.stopHistory()
	}
	// Connector: this process's id, as its leases name it (the operator
	// console's owning connector).
	conn := &event.Connection{Status: st, Phone: s.phone, Reason: reason, RetryAt: s.retryAt, Connector: s.d.cfg.InstanceID}
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
func (s *session) schedule(d time.Duration, f func(context.Context)) {
	s.cancelTimer()
	gen := s.timerGen
	s.timer = s.d.clock.AfterFunc(d, func() {
		s.post(func(ctx context.Context) {
			if gen == s.timerGen {
				s.timer = nil
				f(ctx)
			}
		})
	})
}

// ensureClient creates the client for the current device when there is
// none. ctx is the session's run context: the client's handler and
// pre-pair check keep it.
func (s *session) ensureClient(ctx context.Context) error {
	if s.cli != nil {
		return nil
	}
	tctx, cancel := s.withTimeout(ctx)
	defer cancel()
	prePair := func(jid types.JID) bool { return s.prePair(ctx, jid) }
	cli, err := s.d.factory.NewClient(tctx, ClientParams{Mentorado: s.m, Device: s.jid, PrePair: prePair, Log: s.log})
	if err != nil {
		return err
	}
	s.gen++
	s.cli = cli
	s.detach = make(chan struct{})
	s.handlerID = cli.AddEventHandlerWithSuccessStatus(s.handler(ctx, s.gen, cli, s.detach))
	s.publishSnapshot()
	return nil
}

// dropClient disconnects and forgets the client; its later events are ignored.
func (s *session) dropClient() {
	if s.qrCancel != nil {
		s.qrCancel()
		s.qrCancel = nil
	}
	s.stopOutbound()
	s.stopMedia()
	s.stopHistory()
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
	s.lastConnect = s.d.clock.Now()
	s.connWG.Add(1)
	go func() {
		defer s.connWG.Done()
		if reconnect {
			cli.Disconnect()
		}
		err := cli.Connect()
		s.post(func(ctx context.Context) { s.onConnectResult(ctx, gen, err) })
	}()
	if !s.jid.IsEmpty() {
		// Watchdog: a paired device that neither connects nor fails.
		s.schedule(s.d.cfg.ConnectTimeout, func(ctx context.Context) {
			if s.status == event.StatusConnecting {
				s.cli.Disconnect()
				s.backoff(ctx, "connect timeout")
			}
		})
	}
}

func (s *session) onConnectResult(ctx context.Context, gen int, err error) {
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
	s.backoff(ctx, fmt.Sprintf("connect failed: %v", err))
}

// restore connects a paired session whose desired state is connected.
func (s *session) restore(ctx context.Context) {
	if s.exit || !s.desired || s.jid.IsEmpty() || s.cli != nil {
		return
	}
	s.attempt = 0
	s.startPaired(ctx)
}

func (s *session) startPaired(ctx context.Context) {
	if err := s.ensureClient(ctx); err != nil {
		if errors.Is(err, ErrNoDevice) {
			s.loggedOut(ctx, "device missing from store")
			return
		}
		s.log.Error().Err(err).Msg("create client")
		s.backoff(ctx, fmt.Sprintf("create client: %v", err))
		return
	}
	s.setStatus(event.StatusConnecting, "")
	s.connectAsync(false)
}

// onEvent is the reaction to the connection events the registry
// (waconv.Decide) marks as state changes.
func (s *session) onEvent(ctx context.Context, gen int, evt any) {
	if gen != s.gen || s.exit {
		return
	}
	switch e := evt.(type) {
	case *events.PairSuccess:
		tctx, cancel := s.withTimeout(ctx)
		defer cancel()
		s.jid = e.ID
		s.phone = e.ID.User
		if err := s.d.devices.paired(tctx, s.m, e.ID, e.ID.User); err != nil {
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
		s.d.metrics.reconnects.WithLabelValues("515").Inc()
		s.cancelTimer()
		s.setStatus(event.StatusConnecting, "stream error 515: restart required")
		s.connectAsync(true)
	case *events.LoggedOut:
		reason := "logged out: " + e.Reason.String()
		if !e.OnConnect {
			reason = "logged out: device removed (stream error 401)"
		}
		s.loggedOut(ctx, reason)
	case *events.StreamReplaced:
		s.d.metrics.reconnects.WithLabelValues("replaced").Inc()
		s.setDesired(ctx, false)
		s.terminate(event.StatusConflict, "stream replaced: this device connected elsewhere")
	case *events.TemporaryBan:
		s.ban(e.Expire, "temporarily banned: "+e.Code.String())
	case *events.ConnectFailure:
		switch {
		case e.Reason.IsLoggedOut():
			s.loggedOut(ctx, "logged out: "+e.Reason.String())
		case e.Reason == events.ConnectFailureTempBanned:
			s.ban(0, "temporarily banned")
		default:
			s.backoff(ctx, "connect failure "+e.Reason.String())
		}
	case *events.ClientOutdated:
		s.setDesired(ctx, false)
		s.terminate(event.StatusDisconnected, "client outdated (405)")
	case *events.CATRefreshError:
		s.backoff(ctx, "CAT refresh failed")
	case *events.KeepAliveTimeout:
		if s.status == event.StatusConnected && s.d.clock.Now().Sub(e.LastSuccess) > s.d.cfg.Policy.KeepAliveMaxFail {
			s.cli.Disconnect()
			s.backoff(ctx, "keepalive timeout")
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
			s.backoff(ctx, "connection lost")
		}
	}
}

func (s *session) setDesired(ctx context.Context, want bool) {
	s.desired = want
	d := desiredDisconnected
	if want {
		d = desiredConnected
	}
	tctx, cancel := s.withTimeout(ctx)
	defer cancel()
	if err := s.d.devices.setDesired(tctx, s.m, d); err != nil {
		s.log.Error().Err(err).Msg("store desired state")
	}
}

// backoff schedules the next reconnect, or gives up after MaxAttempts.
func (s *session) backoff(ctx context.Context, reason string) {
	pol := s.d.cfg.Policy
	s.attempt++
	if s.attempt > pol.MaxAttempts {
		s.setDesired(ctx, false)
		s.terminate(event.StatusDisconnected, fmt.Sprintf("gave up after %d attempts: %s", pol.MaxAttempts, reason))
		return
	}
	s.d.metrics.reconnects.WithLabelValues("backoff").Inc()
	d := pol.Delay(s.attempt, s.d.rand)
	at := s.d.clock.Now().Add(d)
	s.retryAt = &at
	s.setStatus(event.StatusBackoff, reason)
	s.schedule(d, s.reconnect)
}

func (s *session) reconnect(ctx context.Context) {
	if s.cli == nil {
		s.startPaired(ctx)
		return
	}
	s.setStatus(event.StatusConnecting, s.reason)
	s.connectAsync(true)
}

func (s *session) ban(expire time.Duration, reason string) {
	s.d.metrics.reconnects.WithLabelValues("ban").Inc()
	if expire <= 0 {
		expire = s.d.cfg.Policy.DefaultBanWait
	}
	if s.cli != nil {
		s.cli.Disconnect()
	}
	at := s.d.clock.Now().Add(expire)
	s.retryAt = &at
	s.attempt = 0
	s.setStatus(event.StatusBanned, reason)
	s.schedule(expire, s.reconnect)
	// Bulk sending waits for more than the ban: campaigns pause until
	// someone resumes them.
	until := at
	s.pauseBulk(outbound.ReasonTemporaryBan, &until)
}

// loggedOut clears the device everywhere and stops.
func (s *session) loggedOut(ctx context.Context, reason string) {
	s.d.metrics.reconnects.WithLabelValues("logged_out").Inc()
	tctx, cancel := s.withTimeout(ctx)
	defer cancel()
	s.cancelTimer()
	s.dropClient()
	if err := s.d.factory.DeleteDevice(tctx, s.jid); err != nil {
		s.log.Error().Err(err).Msg("delete device")
	}
	if err := s.d.devices.delete(tctx, s.m); err != nil {
		s.log.Error().Err(err).Msg("delete wa_devices row")
	}
	s.jid = types.EmptyJID
	s.phone = ""
	s.desired = false
	s.attempt = 0
	s.setStatus(event.StatusLoggedOut, reason)
	// Never send to anyone for a number the user unpaired.
	s.failQueued(ctx, ReasonLoggedOut)
}

// terminate ends the session in a final state.
func (s *session) terminate(st event.Status, reason string) {
	s.cancelTimer()
	s.dropClient()
	s.attempt = 0
	s.setStatus(st, reason)
}

func (s *session) onDisconnectCmd(ctx context.Context) event.StatusReply {
	s.setDesired(ctx, false)
	s.terminate(event.StatusDisconnected, "disconnect command")
	s.failQueued(ctx, ReasonDisconnectedByUser)
	return s.snapshot().reply
}

func (s *session) onLogoutCmd(ctx context.Context) event.StatusReply {
	if s.cli != nil && s.cli.IsLoggedIn() {
		tctx, cancel := s.withTimeout(ctx)
		err := s.cli.Logout(tctx)
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Msg("logout request failed; clearing the device locally")
		}
	}
	s.loggedOut(ctx, "logout command")
	return s.snapshot().reply
}

// stop ends the session because this connector no longer owns it
// (shutdown, lease lost): the client is disconnected, the desired state
// is kept so the next owner restores it.
func (s *session) stop(ctx context.Context, reason string) {
	cliCh := make(chan Client, 1)
	posted := s.post(func(context.Context) {
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
	s.waitUntil(ctx, &s.connWG, "connect")
	// Media downloads in flight release their jobs to the queue.
	s.waitUntil(ctx, &s.mediaWG, "media downloads")
	s.waitUntil(ctx, &s.historyWG, "history sync import")
	// The worker's send in flight ends before the lease is given back:
	// the next owner re-sends a row left in sending with the same id.
	s.waitUntil(ctx, &s.outboundWG, "outbox worker")
	s.waitUntil(ctx, &s.groups.wg, "group fetches")
	select {
	case cli := <-cliCh:
		if cli != nil {
			cli.Disconnect()
		}
	default:
	}
	s.d.metrics.sessions.WithLabelValues(string(s.snapshot().reply.Status)).Dec()
	s.out.close(ctx)
}

// waitUntil waits for wg, or for ctx's deadline (then logs that what is
// still in flight).
func (s *session) waitUntil(ctx context.Context, wg *sync.WaitGroup, what string) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.log.Warn().Msgf("stop: %s still in flight at deadline", what)
	}
}
