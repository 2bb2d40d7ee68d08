package connector

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// Sending at scale (issue #14, docs/decisions/0020-outbox-pacing-campaigns.md):
// the session that owns a mentorado runs one outbound.Worker while it is
// connected and gives it a Sender over its whatsmeow client. A send
// command goes out at once when the worker says TryNow, and is queued in
// the outbox (outbound.Enqueue) while the session is connecting, in
// backoff, or paced; a user's disconnect or logout fails what is queued.

// Why queued sends fail when the user ends the session (the status_reason
// of their failed message events).
const (
	ReasonDisconnectedByUser = "disconnected_by_user"
	ReasonLoggedOut          = "logged_out"
)

// SendingConfig configures the outbox worker of each session and the
// connector's TTL sweeper. Zero values take defaults.
type SendingConfig struct {
	// Limits are the operator maxima (outbound.LimitsFromEnv); zero:
	// outbound.DefaultLimits.
	Limits outbound.Limits
	// Poll is how often a worker looks for campaign and settings changes
	// (0: the worker's default).
	Poll time.Duration
	// SweepInterval is how often queued sends past their TTL are expired
	// (default 30 s; negative: never, tests).
	SweepInterval time.Duration
	// Seed seeds the workers' jitter (0: random).
	Seed uint64
}

// WithDefaults fills zero values.
func (c SendingConfig) WithDefaults() SendingConfig {
	if c.Limits == (outbound.Limits{}) {
		c.Limits = outbound.DefaultLimits()
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = 30 * time.Second
	}
	return c
}

// sendingDeps is what a session needs to run its worker; nil in the
// state-machine tests (no Postgres): no worker, sends go out at once.
type sendingDeps struct {
	db     *store.DB
	pub    outbound.Publisher
	cfg    SendingConfig
	clock  Clock // the pacer's
	sender func(s *session) outbound.Sender
}

func (c *Connector) sendingDeps() *sendingDeps {
	return &sendingDeps{
		db:     c.db,
		pub:    eventPublisher{c},
		cfg:    c.cfg.Sending,
		clock:  c.sendClock,
		sender: func(s *session) outbound.Sender { return sessionSender{c: c, s: s} },
	}
}

// eventPublisher is outbound.Publisher over the connector's command
// publish path (three tries, counted).
type eventPublisher struct{ c *Connector }

func (p eventPublisher) Publish(ctx context.Context, env event.Envelope) error {
	return p.c.publish(ctx, env)
}

// outWorker is a session's running outbox worker.
type outWorker struct {
	w      *outbound.Worker
	cli    Client
	cancel context.CancelFunc
}

// startOutbound starts the session's worker (the session is connected);
// called on the session goroutine.
func (s *session) startOutbound() {
	sd := s.d.sending
	if sd == nil || s.cli == nil || s.ctx == nil {
		return
	}
	if w := s.outbound.Load(); w != nil && w.cli == s.cli {
		return
	}
	s.stopOutbound()
	ctx, cancel := context.WithCancel(s.ctx)
	w := outbound.NewWorker(outbound.WorkerConfig{
		DB:        sd.db,
		Mentorado: s.m,
		Sender:    sd.sender(s),
		Publisher: sd.pub,
		Clock:     sd.clock,
		Limits:    sd.cfg.Limits,
		Log:       s.log.With().Str("part", "outbound").Logger(),
		Poll:      sd.cfg.Poll,
		Seed:      sd.cfg.Seed,
	})
	s.outbound.Store(&outWorker{w: w, cli: s.cli, cancel: cancel})
	s.outboundWG.Add(1)
	go func() {
		defer s.outboundWG.Done()
		if err := w.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error().Err(err).Msg("outbox worker stopped")
		}
	}()
}

// stopOutbound stops the worker without waiting for it; session.stop waits.
func (s *session) stopOutbound() {
	if w := s.outbound.Swap(nil); w != nil {
		w.cancel()
	}
}

// worker is the running worker, nil when the session is not connected.
func (s *session) worker() *outbound.Worker {
	if w := s.outbound.Load(); w != nil {
		return w.w
	}
	return nil
}

// observeInbound tells the worker who wrote (their chat is
// conversational for 24 h), under every address a send may name them by.
func (s *session) observeInbound(envs []event.Envelope) {
	w := s.worker()
	if w == nil {
		return
	}
	for _, env := range envs {
		if env.Type != event.TypeMessage {
			continue
		}
		p, err := env.Payload()
		if err != nil {
			continue
		}
		msg, ok := p.(*event.Message)
		if !ok || msg.Direction != event.DirectionIn || msg.History != nil {
			continue
		}
		// When it arrived on the pacer's clock (the message's own
		// timestamp is WhatsApp's).
		at := s.d.sending.clock.Now()
		seen := map[string]bool{}
		for _, j := range []string{msg.ChatJID, msg.LID, phoneJID(msg.Phone)} {
			if j != "" && !seen[j] {
				seen[j] = true
				w.ObserveInbound(j, at)
			}
		}
	}
}

func phoneJID(p string) string {
	if p == "" {
		return ""
	}
	return types.NewJID(p, types.DefaultUserServer).String()
}

// failQueued fails the queued sends of the session (the user disconnected
// or logged out): they must not go out hours later.
func (s *session) failQueued(ctx context.Context, reason string) {
	sd := s.d.sending
	if sd == nil {
		return
	}
	tctx, cancel := s.withTimeout(ctx)
	defer cancel()
	// FailQueued fails the rows left in sending too: the worker (stopped
	// with the client) must have finished its send in flight.
	s.stopOutbound()
	s.waitUntil(tctx, &s.outboundWG, "outbox worker")
	n, err := outbound.FailQueued(tctx, sd.db, sd.pub, s.m, reason)
	if err != nil {
		s.log.Error().Err(err).Str("reason", reason).Msg("fail queued sends")
		return
	}
	if n > 0 {
		s.log.Info().Int("sends", n).Str("reason", reason).Msg("queued sends failed")
	}
}

// pauseBulk pauses the mentorado's bulk sending (a temporary ban).
func (s *session) pauseBulk(reason string, until *time.Time) {
	sd := s.d.sending
	if sd == nil || s.ctx == nil {
		return
	}
	tctx, cancel := s.withTimeout(s.ctx)
	defer cancel()
	// A login refused while the ban lasts is a ban again: paused once
	// (until someone resumes), not once per reconnect attempt.
	if row, err := sd.db.SendSettings(tctx, s.m); err == nil && row.PausedAt != nil {
		return
	}
	if err := outbound.PauseBulk(tctx, sd.db, sd.pub, s.m, reason, until, 0, sd.clock.Now()); err != nil {
		s.log.Error().Err(err).Str("reason", reason).Msg("pause bulk sending")
	}
}

// sweepLoop expires queued sends past their TTL, every SweepInterval.
func (c *Connector) sweepLoop(ctx context.Context) {
	every := c.cfg.Sending.SweepInterval
	if every < 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sctx, cancel := context.WithTimeout(ctx, c.cfg.CommandTimeout)
		n, err := outbound.Sweep(sctx, c.db, eventPublisher{c}, c.sendClock.Now())
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			c.log.Warn().Err(err).Msg("sweep queued sends")
		case n > 0:
			c.log.Info().Int("expired", n).Msg("queued sends expired")
		}
	}
}

// sessionSender is outbound.Sender over a session's whatsmeow client.
type sessionSender struct {
	c *Connector
	s *session
}

var _ outbound.Sender = sessionSender{}

func (ss sessionSender) Resolve(ctx context.Context, number string) (string, error) {
	snap, err := connectedClient(ss.s)
	if err != nil {
		return "", err
	}
	to, err := resolvePhone(ctx, snap.cli, number)
	if err != nil {
		var ce *event.CommandError
		if errors.As(err, &ce) && ce.Code == event.CodeNotOnWhatsApp {
			return "", nil
		}
		return "", err
	}
	return to.String(), nil
}

// presenceClient shows typing; *whatsmeow.Client is one (the simulated
// client is not: it shows nothing).
type presenceClient interface {
	SendChatPresence(ctx context.Context, jid types.JID, state types.ChatPresence, media types.ChatPresenceMedia) error
}

var _ presenceClient = (*whatsmeow.Client)(nil)

func (ss sessionSender) Typing(ctx context.Context, jid string, on bool) error {
	snap, err := connectedClient(ss.s)
	if err != nil {
		return err
	}
	pc, ok := snap.cli.(presenceClient)
	if !ok {
		return nil
	}
	j, err := types.ParseJID(jid)
	if err != nil {
		return event.NewCommandError(event.CodeInvalidChat, "chat %q: %v", jid, err)
	}
	state := types.ChatPresencePaused
	if on {
		state = types.ChatPresenceComposing
	}
	return pc.SendChatPresence(ctx, j, state, "")
}

func (ss sessionSender) Send(ctx context.Context, req event.SendRequest, waID string, meta outbound.SendMeta) (*event.Message, error) {
	c, s := ss.c, ss.s
	chat, number, err := sendTarget(req)
	if err != nil {
		return nil, err
	}
	if chat.Server == types.GroupServer && s.groups.hasLeft(chat.String()) {
		return nil, event.NewCommandError(event.CodeNotInGroup, "the number left group %s", chat)
	}
	snap, err := connectedClient(s)
	if err != nil {
		return nil, err
	}
	to := chat
	if to.IsEmpty() && meta.CampaignID != 0 && req.Chat != "" {
		// A campaign recipient's chat is what Resolve answered: no second
		// lookup.
		to, _ = types.ParseJID(req.Chat)
	}
	if to.IsEmpty() {
		if to, err = resolvePhone(ctx, snap.cli, number); err != nil {
			return nil, err
		}
	}
	return c.sendNow(ctx, s, snap, req, to, waID, meta, nil)
}

// NewMessageID is a WhatsApp message id from the session's client (the
// worker picks a campaign recipient's before it sends).
func (ss sessionSender) NewMessageID() string { return newMessageID(ss.s.snapshot()) }

// resolvePhone asks WhatsApp for the account of number, trying the
// Brazilian 9th-digit variants; not_on_whatsapp when there is none.
func resolvePhone(ctx context.Context, cli Client, number string) (types.JID, error) {
	resp, err := cli.IsOnWhatsApp(ctx, plusAll(phone.BrazilVariants(number)))
	if err != nil {
		return types.EmptyJID, fmt.Errorf("check number: %w", err)
	}
	for _, r := range resp {
		if r.IsIn {
			return r.JID, nil
		}
	}
	return types.EmptyJID, event.NewCommandError(event.CodeNotOnWhatsApp, "number is not on WhatsApp")
}

// queueable reports whether a send may wait in the outbox for this
// session: it is paired and on its way to connected (connecting, in
// backoff, or connected but paced). A disconnect by the user, a logout, a
// ban, a conflict or a session never paired answers not_connected.
func queueable(snap *snapshot) bool {
	if snap.jid.IsEmpty() {
		return false
	}
	switch snap.reply.Status {
	case event.StatusConnected, event.StatusConnecting, event.StatusBackoff, event.StatusPairing:
		return true
	}
	return false
}

// enqueue queues req in the outbox under a pre-generated WhatsApp id and
// wakes the worker.
func (c *Connector) enqueue(ctx context.Context, s *session, snap *snapshot, req event.SendRequest) (*event.Message, error) {
	settings, _, err := outbound.LoadSettings(ctx, c.db, s.m)
	if err != nil {
		return nil, fmt.Errorf("sending settings: %w", err)
	}
	id := newMessageID(snap)
	msg, err := outbound.Enqueue(ctx, c.db, eventPublisher{c}, s.m, snap.jid.ToNonAD().String(), req, id, c.sendClock.Now(), settings)
	if err != nil {
		return nil, err
	}
	if w := s.worker(); w != nil {
		w.Wake()
	}
	return msg, nil
}

// newMessageID is a WhatsApp message id as whatsmeow makes them (3EB0 and
// a digest of the time, the own number and random bytes), also when the
// session has no client (backoff).
func newMessageID(snap *snapshot) string {
	if snap.cli != nil {
		return snap.cli.GenerateMessageID()
	}
	data := make([]byte, 8, 8+20+16)
	binary.BigEndian.PutUint64(data, uint64(time.Now().Unix()))
	if !snap.jid.IsEmpty() {
		data = append(data, []byte(snap.jid.User+"@c.us")...)
	}
	r := make([]byte, 16)
	_, _ = rand.Read(r)
	data = append(data, r...)
	h := sha256.Sum256(data)
	return whatsmeow.WebMessageIDPrefix + strings.ToUpper(hex.EncodeToString(h[:9]))
}

// recordQueuedSent records a send the worker made for a client id as sent
// in WA_SENDS, so a retry of the request replays it like a sync send. A
// record already there (this id sent before a crash) stands.
func (c *Connector) recordQueuedSent(ctx context.Context, s *session, m int64, msg *event.Message) {
	if msg.ClientID == "" || c.sends == nil {
		return
	}
	b, _ := json.Marshal(sendRecord{ClientID: msg.ClientID, State: "sent", WAID: msg.WAID, Message: msg})
	if _, err := c.sends.Create(ctx, sendKey(m, msg.ClientID), b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		s.log.Warn().Err(err).Msg("record queued send")
	}
}
