package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/sendkv"
)

// send runs a send command: validate; resolve the recipient (a phone, or
// a phone chat: groups and LIDs are WhatsApp Web's); refuse a free-form
// message outside a windowed provider's window (outside_window); open the
// file of a media send; then, idempotent by client_id through WA_SENDS as
// the connector's sends are, send with the driver and publish the sent
// message's event before answering with it. A gateway never queues: the
// providers queue themselves, and a send the provider refused is answered
// with its error.
func (g *Gateway) send(ctx context.Context, d provider.Driver, acc provider.Account, req event.SendRequest) (*event.Message, error) {
	return g.sendMessage(ctx, d, acc, req, sendMeta{})
}

// sendMeta is what a campaign send (the gateway's campaign worker) adds
// to a send command.
type sendMeta struct {
	// idemID is the WA_SENDS id of the send when it is not the request's
	// client_id: a campaign recipient's, from the id the worker committed
	// before the send, so a recipient sent again after a crash or a
	// handover is answered with its first send instead of going out twice.
	idemID string
	// campaignID is set on the message event.
	campaignID int64
}

// sendMessage is a send command's path, shared by the send command and
// the campaign worker's Sender.
func (g *Gateway) sendMessage(ctx context.Context, d provider.Driver, acc provider.Account, req event.SendRequest, meta sendMeta) (*event.Message, error) {
	if ce := req.Validate(); ce != nil {
		return nil, ce
	}
	kind := req.Kind
	if kind == "" {
		kind = event.KindText
	}
	raw := req.Phone
	if req.Chat != "" {
		user, server, _ := strings.Cut(req.Chat, "@")
		if server != event.ServerPhone {
			return nil, event.NewCommandError(event.CodeNotSupported, "%s sends to phone numbers only; groups and LIDs are WhatsApp Web's", acc.Provider)
		}
		raw = user
	}
	number, err := phone.Normalize(raw)
	if err != nil {
		return nil, event.NewCommandError(event.CodeInvalidPhone, "%v", err)
	}
	if w, ok := d.(provider.Windowed); ok && kind != event.KindTemplate {
		// The chat that wrote decides, in whichever form the provider
		// gave its number (a Brazilian mobile with or without the 9th
		// digit): the send goes to that form, into that chat.
		since := g.now().Add(-w.Window())
		in := ""
		for _, v := range phone.BrazilVariants(number) {
			ok, err := g.db.Outbox().WroteSince(ctx, acc.Mentorado, phone.JID(v), since)
			if err != nil {
				return nil, event.NewCommandError(event.CodeUnavailable, "cannot check the conversation window: %v", err)
			}
			if ok {
				in = v
				break
			}
		}
		if in == "" {
			return nil, event.NewCommandError(event.CodeOutsideWindow, "this chat has not written in the last %s; only a template can be sent", windowText(w.Window()))
		}
		number = in
	}
	chatJID := phone.JID(number)
	var file *provider.MediaFile
	if kind.IsMedia() {
		if file, err = g.loadFile(ctx, acc.Mentorado, req); err != nil {
			return nil, err
		}
	}
	idemID := req.ClientID
	if meta.idemID != "" {
		idemID = meta.idemID
	}
	return g.idempotent(ctx, acc, event.VerbSend, idemID, func(ctx context.Context) (*event.Message, error) {
		msg, err := d.Send(ctx, acc, provider.SendRequest{SendRequest: req, To: number, ChatJID: chatJID, Media: file, ReplyToID: req.ReplyTo})
		g.observeCall(ctx, acc, err)
		if err != nil {
			return nil, err
		}
		if msg == nil || msg.WAID == "" {
			return nil, fmt.Errorf("%s driver returned no message id", acc.Provider)
		}
		g.complete(acc, msg, req, kind, number, chatJID, file)
		msg.CampaignID = meta.campaignID
		return msg, nil
	})
}

// complete fills what a driver left out of a sent message, as the
// connector sets it.
func (g *Gateway) complete(acc provider.Account, msg *event.Message, req event.SendRequest, kind event.Kind, number, chatJID string, file *provider.MediaFile) {
	if msg.ChatJID == "" {
		msg.ChatJID = chatJID
	}
	if msg.Phone == "" {
		msg.Phone = number
	}
	if msg.SenderJID == "" {
		msg.SenderJID = g.ownJID(acc)
	}
	if msg.Direction == "" {
		msg.Direction = event.DirectionOut
	}
	if msg.Kind == "" {
		msg.Kind = kind
	}
	if msg.Kind == event.KindTemplate && msg.Text == "" && req.Template != nil {
		msg.Text = req.Template.Text()
	}
	if msg.Status == "" {
		msg.Status = event.MessageSent
	}
	if msg.Timestamp.IsZero() {
		msg.Timestamp = g.now()
	}
	msg.Timestamp = msg.Timestamp.UTC()
	if msg.ReplyToID == "" {
		msg.ReplyToID = req.ReplyTo
	}
	msg.ClientID = req.ClientID
	if file != nil && msg.Media == nil {
		msg.Media = &event.Media{ID: file.ID, MIME: file.MIME, Size: file.Size, FileName: req.FileName}
	}
}

// ownJID is the mentorado's number as a JID, when known (Meta's display
// phone, or the phone the last status reported).
func (g *Gateway) ownJID(acc provider.Account) string {
	if acc.Meta != nil && acc.Meta.DisplayPhone != "" {
		return phone.JID(acc.Meta.DisplayPhone)
	}
	g.mu.Lock()
	st := g.states[stateKey{acc.Mentorado, acc.Provider}]
	g.mu.Unlock()
	if st != nil && st.phone != "" {
		return phone.JID(st.phone)
	}
	return "me@" + string(acc.Provider)
}

// loadFile reads the file a media send names and checks it fits the kind,
// as the connector does: unknown id → media_not_found, wrong type →
// unsupported_media, over the kind's limit → media_too_large.
func (g *Gateway) loadFile(ctx context.Context, m int64, req event.SendRequest) (*provider.MediaFile, error) {
	if g.media == nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "this gateway has no media store")
	}
	info, data, err := media.ReadForSend(ctx, g.media, m, req.Kind, req.MediaID, g.cfg.MediaLimits)
	if err != nil {
		return nil, err
	}
	mime := info.MIME
	if req.Kind == event.KindPTT {
		mime = "audio/ogg; codecs=opus"
	}
	return &provider.MediaFile{ID: info.ID, MIME: mime, Size: info.Size, Data: data}, nil
}

// idempotent runs do (one send or action through the driver) at most once
// per client id, with the connector's WA_SENDS scheme (internal/sendkv):
// an earlier result is answered again (its events republished, deduped by
// id); a reservation is taken before the driver is called and released
// when it fails; the result is recorded before its events are published.
// Without a client id do just runs. Either way the message event is
// stored before the answer.
func (g *Gateway) idempotent(ctx context.Context, acc provider.Account, v event.Verb, clientID string, do func(context.Context) (*event.Message, error)) (*event.Message, error) {
	m := acc.Mentorado
	if clientID == "" {
		msg, err := do(ctx)
		if err != nil {
			return nil, err
		}
		return msg, g.publishSent(ctx, acc, msg)
	}
	key, recordID := sendkv.Key(m, clientID), clientID
	if v != event.VerbSend {
		key, recordID = sendkv.ActionKey(m, v, clientID)
	}
	kv, err := g.sendsKV(ctx)
	if err != nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "idempotency store: %v", err)
	}
	if done, err := g.replay(ctx, kv, acc, key, recordID); done != nil || err != nil {
		return done, err
	}
	b, _ := json.Marshal(sendkv.Record{ClientID: recordID, State: sendkv.Pending})
	rev, err := kv.Create(ctx, key, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		if done, err := g.replay(ctx, kv, acc, key, recordID); done != nil || err != nil {
			return done, err
		}
		return nil, event.NewCommandError(event.CodeUnavailable, "a %s with this client_id is in progress", v)
	}
	if err != nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "reserve client id: %v", err)
	}
	msg, err := do(ctx)
	if err != nil {
		_ = kv.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev))
		return nil, err
	}
	b, _ = json.Marshal(sendkv.Record{ClientID: recordID, State: sendkv.Sent, WAID: msg.WAID, Message: msg})
	if _, err := kv.Update(context.WithoutCancel(ctx), key, b, rev); err != nil {
		g.log.Warn().Err(err).Int64("mentorado", m).Msg("record idempotent send")
	}
	if err := g.publishSent(ctx, acc, msg); err != nil {
		return nil, event.NewCommandError(event.CodeInternal, "message %s sent but not recorded (retry with the same client_id to confirm): %v", msg.WAID, err)
	}
	return msg, nil
}

// replay answers an earlier send of the same client id, publishing its
// events again (deduplicated by id) in case that publish failed.
func (g *Gateway) replay(ctx context.Context, kv jetstream.KeyValue, acc provider.Account, key, recordID string) (*event.Message, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "look up client id: %v", err)
	}
	var rec sendkv.Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("decode send record: %w", err)
	}
	if rec.ClientID != recordID {
		return nil, event.NewCommandError(event.CodeBadRequest, "client_id conflicts with another id; use a different one")
	}
	if rec.State != sendkv.Sent || rec.Message == nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "a send with this client_id is in progress")
	}
	if err := g.publishSent(ctx, acc, rec.Message); err != nil {
		return nil, event.NewCommandError(event.CodeInternal, "message sent but not recorded (retry): %v", err)
	}
	return rec.Message, nil
}

// publishSent publishes a sent message's event and, for a file we sent
// (already in our store), its media event.
func (g *Gateway) publishSent(ctx context.Context, acc provider.Account, msg *event.Message) error {
	m := acc.Mentorado
	env, err := event.New(m, event.MessageEventID(m, msg.WAID), msg.Timestamp, msg)
	if err != nil {
		return err
	}
	if err := g.publish(ctx, acc.Provider, env); err != nil {
		return err
	}
	if msg.Media == nil || !msg.Kind.IsMedia() || !event.IsMediaID(msg.Media.ID) {
		return nil
	}
	d := &event.MediaDone{WAID: msg.WAID, ChatJID: msg.ChatJID, State: event.MediaStored, MediaID: msg.Media.ID, MIME: msg.Media.MIME, Size: msg.Media.Size}
	denv, err := event.New(m, event.MediaEventID(m, msg.WAID), msg.Timestamp, d)
	if err != nil {
		return err
	}
	return g.publish(ctx, acc.Provider, denv)
}

// sendsKV opens WA_SENDS once it is first needed.
func (g *Gateway) sendsKV(ctx context.Context) (jetstream.KeyValue, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.sends != nil {
		return g.sends, nil
	}
	kv, err := g.bus.KeyValue(ctx, bus.BucketSends)
	if err != nil {
		return nil, err
	}
	g.sends = kv
	return kv, nil
}

// windowText says a window in whole hours ("24 hours") where it is one.
func windowText(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return d.String()
}
