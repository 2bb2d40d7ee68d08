package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/sendkv"
)

// QueueGroup is the queue group every connector serves commands in.
const QueueGroup = "connectors"

// relayPrefix + instance id + "." + original subject is where a connector
// forwards a command to the lease holder.
const relayPrefix = "zapbus.connector."

// Command routing (documented in docs/decisions/0002-reconnect-policy.md):
// every connector subscribes to wa.*.cmd.> in one queue group, so NATS
// hands each request to exactly one connector, and that connector sends
// exactly one reply:
//   - it owns the session: it executes the command;
//   - nobody owns it: it takes the lease (kv.Create) and executes;
//   - another connector owns it: it relays the request to the owner's
//     private subject and passes the owner's reply back, or replies
//     unavailable when the owner does not answer;
//   - nobody owns it and the mentorado's active provider is meta or zapi
//     (issue #16): it relays the request to the provider gateways
//     (event.ProviderCommandSubject) and passes their reply back, without
//     taking a lease; unavailable when no gateway runs.
//
// A template send never reaches whatsmeow: not_supported.
//
// With no connector running a request fails fast with no responders.
func (c *Connector) subscribe() ([]*nats.Subscription, error) {
	nc := c.natsConn()
	q, err := nc.QueueSubscribe(event.CommandWildcard, QueueGroup, func(msg *nats.Msg) {
		go c.onCommand(msg, false)
	})
	if err != nil {
		return nil, fmt.Errorf("connector: subscribe commands: %w", err)
	}
	r, err := nc.Subscribe(relayPrefix+c.cfg.InstanceID+".>", func(msg *nats.Msg) {
		go c.onCommand(msg, true)
	})
	if err != nil {
		_ = q.Unsubscribe()
		return nil, fmt.Errorf("connector: subscribe relayed commands: %w", err)
	}
	if err := nc.Flush(); err != nil {
		return nil, fmt.Errorf("connector: subscribe: %w", err)
	}
	return []*nats.Subscription{q, r}, nil
}

func (c *Connector) onCommand(msg *nats.Msg, relayed bool) {
	subject := msg.Subject
	if relayed {
		subject = strings.TrimPrefix(subject, relayPrefix+c.cfg.InstanceID+".")
	}
	m, verb, err := event.ParseSubject(subject)
	if err != nil || !strings.Contains(subject, ".cmd.") {
		c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeBadRequest, "bad command subject")})
		return
	}
	ctx, cancel := context.WithTimeout(c.runCtx, c.cfg.CommandTimeout)
	defer cancel()
	c.metrics.commands.WithLabelValues(verb).Inc()

	c.mu.Lock()
	l := c.owned[m]
	if l != nil {
		l.inCommands++
	}
	c.mu.Unlock()
	if l == nil && relayed {
		c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeNotOwner, "session is not owned by this connector")})
		return
	}
	if l == nil || verb == string(event.VerbConnect) {
		// Anyone allowed to publish commands may name any id: never take a
		// lease or start a session for a mentorado that does not exist, and
		// never connect or send for one an admin disabled. A session this
		// connector already holds skips the look-up for sends (the hot
		// path): disabling disconnects it, and the notifier refuses the
		// disabled tenant's token before any command.
		exists, disabled, err := c.db.Mentorados().Check(ctx, m)
		if err != nil {
			c.decCommands(l)
			c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeUnavailable, "cannot check the mentorado: %v", err)})
			return
		}
		if !exists {
			c.decCommands(l)
			c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeUnknown, "no mentorado %d", m)})
			return
		}
		if disabled && verb != string(event.VerbStatus) && verb != string(event.VerbDisconnect) && verb != string(event.VerbLogout) {
			c.decCommands(l)
			c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeDisabled, "mentorado %d is disabled", m)})
			return
		}
	}
	if l == nil || verb == string(event.VerbConnect) {
		// Issue #16: a mentorado whose active provider is Meta or Z-API is
		// served by the provider gateways: never take its session, and
		// never connect one this connector still holds (the notifier
		// disconnected it before the switch).
		p, err := c.db.Providers().Active(ctx, m)
		if err != nil {
			c.decCommands(l)
			c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeUnavailable, "cannot look up the mentorado's provider: %v", err)})
			return
		}
		if p == event.ProviderMeta || p == event.ProviderZAPI {
			c.decCommands(l)
			c.relayProvider(ctx, msg, p, m, event.Verb(verb))
			return
		}
	}
	if l == nil {
		l, err = c.claim(ctx, m)
		var oe *ownedElsewhere
		switch {
		case errors.As(err, &oe):
			c.relay(ctx, msg, oe.owner)
			return
		case errors.Is(err, errStopping):
			c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeUnavailable, "connector shutting down, retry")})
			return
		case err != nil:
			c.log.Error().Err(err).Int64("mentorado", m).Msg("claim for command")
			c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeUnavailable, "cannot take the session: %v", err)})
			return
		}
		c.mu.Lock()
		l.inCommands++
		c.mu.Unlock()
	}
	defer func() {
		c.mu.Lock()
		l.inCommands--
		c.mu.Unlock()
	}()
	c.respond(msg, c.execute(ctx, l.sess, event.Verb(verb), msg.Data))
}

// relay forwards a request to the connector that owns the session.
func (c *Connector) relay(ctx context.Context, msg *nats.Msg, owner string) {
	fwd := &nats.Msg{Subject: relayPrefix + owner + "." + msg.Subject, Data: msg.Data, Header: msg.Header}
	resp, err := c.natsConn().RequestMsgWithContext(ctx, fwd)
	if err != nil {
		code := event.CodeUnavailable
		c.log.Warn().Err(err).Str("owner", owner).Str("subject", msg.Subject).Msg("relay command")
		c.respond(msg, event.Reply{Error: event.NewCommandError(code, "session owner %s not reachable, retry shortly", owner)})
		return
	}
	if err := msg.Respond(resp.Data); err != nil {
		c.log.Warn().Err(err).Msg("respond relayed command")
	}
}

// relayProvider forwards a command for a mentorado whose active provider
// is p (meta or zapi) to the provider gateways and passes their reply back.
func (c *Connector) relayProvider(ctx context.Context, msg *nats.Msg, p event.Provider, m int64, verb event.Verb) {
	fwd := &nats.Msg{Subject: event.ProviderCommandSubject(p, m, verb), Data: msg.Data, Header: msg.Header}
	resp, err := c.natsConn().RequestMsgWithContext(ctx, fwd)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeUnavailable, "no provider gateway running for %s, retry shortly", p)})
		return
	case err != nil:
		c.log.Warn().Err(err).Str("provider", string(p)).Str("subject", msg.Subject).Msg("relay command to the provider gateway")
		c.respond(msg, event.Reply{Error: event.NewCommandError(event.CodeUnavailable, "provider gateway for %s did not answer, retry shortly", p)})
		return
	}
	if err := msg.Respond(resp.Data); err != nil {
		c.log.Warn().Err(err).Msg("respond relayed command")
	}
}

func (c *Connector) respond(msg *nats.Msg, r event.Reply) {
	if msg.Reply == "" {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		c.log.Error().Err(err).Msg("encode reply")
		return
	}
	if err := msg.Respond(b); err != nil {
		c.log.Warn().Err(err).Msg("respond")
	}
}

func errorReply(err error) event.Reply {
	var ce *event.CommandError
	if errors.As(err, &ce) {
		return event.Reply{Error: ce}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return event.Reply{Error: event.NewCommandError(event.CodeUnavailable, "timed out")}
	}
	return event.Reply{Error: event.NewCommandError(event.CodeInternal, "%v", err)}
}

// execute runs a command on an owned session.
func (c *Connector) execute(ctx context.Context, s *session, verb event.Verb, data []byte) event.Reply {
	switch verb {
	case event.VerbStatus:
		r := s.snapshot().reply
		return event.Reply{Status: &r}
	case event.VerbConnect:
		var req event.ConnectRequest
		if len(data) > 0 {
			if err := json.Unmarshal(data, &req); err != nil {
				return event.Reply{Error: event.NewCommandError(event.CodeBadRequest, "connect body: %v", err)}
			}
		}
		res := make(chan connectResult, 1)
		if !s.post(func(ctx context.Context) { s.onConnect(ctx, req, res) }) {
			return event.Reply{Error: event.NewCommandError(event.CodeNotOwner, "session moved to another connector")}
		}
		select {
		case r := <-res:
			if r.err != nil {
				return errorReply(r.err)
			}
			return event.Reply{Status: r.reply}
		case <-ctx.Done():
			return errorReply(ctx.Err())
		}
	case event.VerbDisconnect:
		r, err := call(ctx, s, s.onDisconnectCmd)
		if err != nil {
			return errorReply(err)
		}
		return event.Reply{Status: &r}
	case event.VerbLogout:
		r, err := call(ctx, s, s.onLogoutCmd)
		if err != nil {
			return errorReply(err)
		}
		return event.Reply{Status: &r}
	case event.VerbSend:
		var req event.SendRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return event.Reply{Error: event.NewCommandError(event.CodeBadRequest, "send body: %v", err)}
		}
		if req.Kind == event.KindTemplate {
			// Templates are Meta's; WhatsApp Web cannot send one.
			return event.Reply{Error: event.NewCommandError(event.CodeNotSupported, "template messages need the meta provider; this mentorado runs on whatsapp_web")}
		}
		msg, err := c.send(ctx, s, req)
		if err != nil {
			return errorReply(err)
		}
		return event.Reply{Message: msg}
	case event.VerbReact, event.VerbEdit, event.VerbRevoke:
		var req event.ActionRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return event.Reply{Error: event.NewCommandError(event.CodeBadRequest, "%s body: %v", verb, err)}
		}
		msg, err := c.act(ctx, s, verb, req)
		if err != nil {
			return errorReply(err)
		}
		return event.Reply{Message: msg}
	case event.VerbRead:
		var req event.ReadRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return event.Reply{Error: event.NewCommandError(event.CodeBadRequest, "read body: %v", err)}
		}
		if err := c.markRead(ctx, s, req); err != nil {
			return errorReply(err)
		}
		return event.Reply{}
	}
	return event.Reply{Error: event.NewCommandError(event.CodeBadRequest, "unknown verb %q", verb)}
}

// sendRecord is what WA_SENDS keeps per client id, and sendKey its key
// (internal/sendkv: the provider gateway writes the same records).
type sendRecord = sendkv.Record

func sendKey(m int64, clientID string) string { return sendkv.Key(m, clientID) }

// send runs a send command: validate; with a client id, answer an earlier
// send of it (WA_SENDS, then the outbox); then send at once when the
// session is connected and its worker says TryNow (nothing queued ahead, a
// pacer token free), queue it in the outbox when the session is
// connecting, in backoff or paced (status queued: the web answers 202),
// and answer not_connected otherwise. The number is resolved with the
// server, which settles the Brazilian 9th digit.
func (c *Connector) send(ctx context.Context, s *session, req event.SendRequest) (*event.Message, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	// A LID or group chat is sent to as it is; a phone (or a phone JID
	// given as chat) is resolved with the server below.
	chat, number, err := sendTarget(req)
	if err != nil {
		return nil, err
	}
	if chat.Server == types.GroupServer && s.groups.hasLeft(chat.String()) {
		return nil, event.NewCommandError(event.CodeNotInGroup, "the number left group %s", chat)
	}

	var key string
	if req.ClientID != "" {
		key = sendKey(s.m, req.ClientID)
		if done, err := c.sendReplay(ctx, key, req.ClientID); done != nil || err != nil {
			return done, err
		}
		if s.d.sending != nil {
			queued, _, err := outbound.Lookup(ctx, c.db, s.m, req.ClientID)
			if err != nil {
				return nil, fmt.Errorf("look up queued send: %w", err)
			}
			if queued != nil {
				return queued, nil
			}
		}
	}

	snap := s.snapshot()
	if snap.reply.Status != event.StatusConnected || snap.cli == nil {
		if s.d.sending != nil && queueable(snap) {
			return c.enqueue(ctx, s, snap, req)
		}
		return nil, event.NewCommandError(event.CodeNotConnected, "session is %s", snap.reply.Status)
	}
	to := chat
	if to.IsEmpty() {
		if to, err = resolvePhone(ctx, snap.cli, number); err != nil {
			return nil, err
		}
	}
	if s.d.sending != nil {
		now := false
		if w := s.worker(); w != nil {
			now, err = w.TryNow(ctx, to.ToNonAD().String())
			if err != nil {
				return nil, err
			}
		}
		if !now {
			// Paced: queued to the account the number resolved to, so
			// the queued message names its chat and the worker paces it
			// as the chat TryNow saw.
			q := req
			if chat.IsEmpty() {
				q.Chat, q.Phone = to.ToNonAD().String(), ""
			}
			return c.enqueue(ctx, s, snap, q)
		}
	}
	id := snap.cli.GenerateMessageID()
	res, done, err := c.reserve(ctx, key, req.ClientID, id, "send")
	if done != nil || err != nil {
		return done, err
	}
	return c.sendNow(ctx, s, snap, req, to, id, outbound.SendMeta{ClientID: req.ClientID}, res)
}

// sendNow sends req to chat to under WhatsApp id id now and publishes its
// message event (status sent, with meta's client and campaign ids): the
// sync path of a send command and the worker's Sender.Send. res is the
// sync path's WA_SENDS reservation (released when nothing was sent,
// recorded as sent after); nil for the worker, whose send is recorded in
// WA_SENDS after it went out when it has a client id.
func (c *Connector) sendNow(ctx context.Context, s *session, snap *snapshot, req event.SendRequest, to types.JID, id string, meta outbound.SendMeta, res *reservation) (*event.Message, error) {
	cli := snap.cli
	release := func() {
		if res != nil {
			res.release(ctx)
		}
	}
	kind := req.Kind
	if kind == "" {
		kind = event.KindText
	}
	var file *outFile
	var mc mediaClient
	var err error
	if kind.IsMedia() {
		var ok bool
		if mc, ok = cli.(mediaClient); !ok {
			release()
			return nil, event.NewCommandError(event.CodeUnavailable, "this session cannot send media")
		}
		if file, err = c.loadOutFile(ctx, s.m, req); err != nil {
			release()
			return nil, err
		}
	}
	counterPhone, counterLID, err := chatCounterpart(ctx, cli, to)
	if err != nil {
		release()
		return nil, err
	}

	msg := &event.Message{
		WAID:       id,
		ChatJID:    to.String(),
		SenderJID:  snap.jid.ToNonAD().String(),
		Phone:      counterPhone,
		LID:        counterLID,
		Direction:  event.DirectionOut,
		Kind:       kind,
		Text:       req.Text,
		Caption:    req.Caption,
		ReplyToID:  req.ReplyTo,
		Timestamp:  c.clock.Now().UTC(),
		Status:     event.MessageSent,
		ClientID:   meta.ClientID,
		CampaignID: meta.CampaignID,
	}
	if file != nil {
		msg.Media = &event.Media{ID: file.info.ID, MIME: file.info.MIME, Size: file.info.Size, FileName: req.FileName}
		if kind == event.KindPTT {
			msg.Media.MIME = "audio/ogg; codecs=opus"
		}
	}
	// What WhatsApp receives must be recordable: check the event fits
	// before anything is sent, never after.
	if err := c.checkRecordable(s.m, msg); err != nil {
		release()
		return nil, err
	}
	ci := replyContext(req)
	content := textMessage(req.Text, ci)
	if file != nil {
		content, err = mediaMessage(ctx, mc, req, file, ci)
		if err != nil {
			release()
			return nil, err
		}
		c.metrics.mediaBytes.WithLabelValues("out").Add(float64(len(file.data)))
	}
	sent, err := cli.SendMessage(ctx, to, content, whatsmeow.SendRequestExtra{ID: id})
	if err != nil {
		release()
		return nil, sendError("send", err)
	}
	if !sent.Timestamp.IsZero() {
		msg.Timestamp = sent.Timestamp.UTC()
	}
	if res != nil {
		res.sent(ctx, s, msg)
	} else {
		c.recordQueuedSent(ctx, s, s.m, msg)
	}
	if err := c.recordSent(ctx, s.m, msg); err != nil {
		if res == nil {
			// The worker's send went out: its event is republished in the
			// background; failing here would make the worker retry it.
			s.log.Warn().Err(err).Str("id", id).Msg("sent message not recorded yet; retried in the background")
			return msg, nil
		}
		return nil, event.NewCommandError(event.CodeInternal, "message %s sent; recording it is retried in the background (retry with the same client_id to confirm): %v", id, err)
	}
	s.groupSeen(msg.ChatJID)
	if file != nil {
		c.metrics.mediaSends.WithLabelValues(string(kind)).Inc()
		if err := c.publishMediaStored(ctx, s.m, msg); err != nil {
			if res == nil {
				s.log.Warn().Err(err).Str("id", id).Msg("sent media message's media event not recorded")
				return msg, nil
			}
			return nil, event.NewCommandError(event.CodeInternal, "message %s sent but its media event not recorded (retry with the same client_id): %v", id, err)
		}
	}
	return msg, nil
}

// checkRecordable fails with text_too_long when msg's event would not fit
// in an envelope (event.MaxEnvelopeBytes).
func (c *Connector) checkRecordable(m int64, msg *event.Message) error {
	probe := *msg
	env, err := event.New(m, event.MessageEventID(m, probe.WAID), probe.Timestamp, &probe)
	if err == nil {
		_, err = env.Encode()
	}
	if errors.Is(err, event.ErrTooLarge) {
		return event.NewCommandError(event.CodeTextTooLong, "text does not fit in a message event: %v", err)
	}
	if err != nil {
		return event.NewCommandError(event.CodeBadRequest, "message cannot be recorded: %v", err)
	}
	return nil
}

// reservation is a WA_SENDS record taken for one WhatsApp send (no key:
// not idempotent, nothing recorded).
type reservation struct {
	c                   *Connector
	key, clientID, waID string
	rev                 uint64
}

// reserve records a pending send of waID under key before anything is
// sent. When a concurrent retry of the same command got there first, done
// is that retry's message (or an in-progress error): return it.
func (c *Connector) reserve(ctx context.Context, key, clientID, waID, what string) (res *reservation, done *event.Message, err error) {
	res = &reservation{c: c, key: key, clientID: clientID, waID: waID}
	if key == "" {
		return res, nil, nil
	}
	b, _ := json.Marshal(sendRecord{ClientID: clientID, State: "pending", WAID: waID})
	res.rev, err = c.sends.Create(ctx, key, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		if done, err := c.sendReplay(ctx, key, clientID); done != nil || err != nil {
			return nil, done, err
		}
		return nil, nil, event.NewCommandError(event.CodeUnavailable, "a %s with this client_id is in progress", what)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reserve client id: %w", err)
	}
	return res, nil, nil
}

// release drops the reservation of a send that did not happen, so a retry
// sends.
func (r *reservation) release(ctx context.Context) {
	if r.key != "" {
		_ = r.c.sends.Delete(context.WithoutCancel(ctx), r.key, jetstream.LastRevision(r.rev))
	}
}

// sent records the message WhatsApp took, which a retry then answers with.
func (r *reservation) sent(ctx context.Context, s *session, msg *event.Message) {
	if r.key == "" {
		return
	}
	b, _ := json.Marshal(sendRecord{ClientID: r.clientID, State: "sent", WAID: r.waID, Message: msg})
	if _, err := r.c.sends.Update(ctx, r.key, b, r.rev); err != nil {
		s.log.Warn().Err(err).Msg("record idempotent send")
	}
}

// sendTarget reads where a send goes: a LID or group chat JID (chat), or
// a phone number to resolve with the server (number).
func sendTarget(req event.SendRequest) (chat types.JID, number string, err error) {
	raw := req.Phone
	if req.Chat != "" {
		kind := event.KindOfChat(req.Chat)
		j, perr := types.ParseJID(req.Chat)
		if kind == "" || perr != nil {
			return types.EmptyJID, "", event.NewCommandError(event.CodeInvalidChat, "chat %q is not a phone JID, LID or group JID", req.Chat)
		}
		if j.Server != types.DefaultUserServer {
			return j, "", nil
		}
		raw = j.User
	}
	number, err = phone.Normalize(raw)
	if err != nil {
		return types.EmptyJID, "", event.NewCommandError(event.CodeInvalidPhone, "%v", err)
	}
	return types.EmptyJID, number, nil
}

// chatCounterpart is the phone and LID an outbound message event carries
// for chat to, as waconv sets them for messages sent from the phone: a
// phone chat's number; a LID chat's LID, and its phone when the client's
// LID store knows it; nothing for a group (no single counterpart).
func chatCounterpart(ctx context.Context, cli Client, to types.JID) (phoneNum, lid string, err error) {
	switch to.Server {
	case types.DefaultUserServer:
		return phone.FromJID(to.ToNonAD().String()), "", nil
	case types.HiddenUserServer:
		lid = to.ToNonAD().String()
		if lids := lidStore(cli); lids != nil {
			pn, err := lids.GetPNForLID(ctx, to.ToNonAD())
			if err != nil {
				return "", "", fmt.Errorf("phone for %s: %w", lid, err)
			}
			if !pn.IsEmpty() {
				phoneNum = phone.FromJID(pn.ToNonAD().String())
			}
		}
		return phoneNum, lid, nil
	}
	return "", "", nil
}

// sendError maps a failed whatsmeow SendMessage: not_connected when the
// client is offline or logged out, not_in_group when the number is not in
// the group (whatsmeow fetches its members first and gets 403 or 404).
func sendError(what string, err error) error {
	if errors.Is(err, whatsmeow.ErrNotConnected) || errors.Is(err, whatsmeow.ErrNotLoggedIn) {
		return event.NewCommandError(event.CodeNotConnected, "%v", err)
	}
	if notInGroup(err) {
		return event.NewCommandError(event.CodeNotInGroup, "%v", err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// sendReplay returns the result of an earlier send with the same client id,
// republishing its event (deduplicated by id) in case that publish failed.
func (c *Connector) sendReplay(ctx context.Context, key, clientID string) (*event.Message, error) {
	e, err := c.sends.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up client id: %w", err)
	}
	var rec sendRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("decode send record: %w", err)
	}
	if rec.ClientID != clientID {
		// Two ids with one SHA-256 digest: never seen, but never answer
		// with another request's message.
		return nil, event.NewCommandError(event.CodeBadRequest, "client_id conflicts with another id; use a different one")
	}
	if rec.State != "sent" || rec.Message == nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "a send with this client_id is in progress")
	}
	m, _, _ := strings.Cut(key, ".")
	var mentorado int64
	_, _ = fmt.Sscanf(m, "%d", &mentorado)
	if err := c.publishMessage(ctx, mentorado, rec.Message); err != nil {
		return nil, event.NewCommandError(event.CodeInternal, "message sent but not recorded (retry): %v", err)
	}
	if err := c.publishMediaStored(ctx, mentorado, rec.Message); err != nil {
		return nil, event.NewCommandError(event.CodeInternal, "message sent but its media event not recorded (retry): %v", err)
	}
	return rec.Message, nil
}

func (c *Connector) publishMessage(ctx context.Context, m int64, msg *event.Message) error {
	env, err := event.New(m, event.MessageEventID(m, msg.WAID), msg.Timestamp, msg)
	if err != nil {
		return err
	}
	return c.publish(ctx, env)
}

// publish publishes a command's event, trying three times (the event id
// makes a retry that did reach the stream a duplicate JetStream drops).
func (c *Connector) publish(ctx context.Context, env event.Envelope) error {
	var last error
	for range 3 {
		if _, last = c.bus.Publish(ctx, webEnvelope(env)); last == nil {
			c.metrics.published.WithLabelValues(string(env.Type)).Inc()
			return nil
		}
		c.metrics.publishFailures.WithLabelValues(string(env.Type)).Inc()
		if ctx.Err() != nil {
			break
		}
	}
	return last
}

// webEnvelope marks an event as published by the WhatsApp Web provider
// (issue #16): every envelope the connector publishes goes through it.
// zapbus's own events (the outbox worker's sending and campaign events)
// name no provider (docs/events.md).
func webEnvelope(env event.Envelope) event.Envelope {
	switch env.Type {
	case event.TypeLead, event.TypeWebhook, event.TypeCampaign, event.TypeSending:
		return env
	}
	env.Provider = event.ProviderWeb
	return env
}

func plusAll(nums []string) []string {
	out := make([]string, len(nums))
	for i, n := range nums {
		out[i] = "+" + n
	}
	return out
}

// decCommands releases the in-flight command count taken on an owned
// session (l may be nil).
func (c *Connector) decCommands(l *lease) {
	if l == nil {
		return
	}
	c.mu.Lock()
	l.inCommands--
	c.mu.Unlock()
}
