package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/store"
)

// Command routing (docs/decisions/0021-providers.md): the notifier sends a
// command for a mentorado whose active provider is meta or zapi to
// zapbus.provider.<p>.wa.<m>.cmd.<verb>, and a connector relays there one
// it was given on wa.<m>.cmd.<verb>. Every gateway subscribes to its
// drivers' subjects in one queue group, so NATS hands each request to one
// gateway, which sends exactly one reply. A gateway serves a command only
// for a mentorado whose active provider is the subject's: otherwise it
// answers wrong_provider (503, retried by the caller) — the mentorado was
// just moved, and the next request goes where it now belongs.
func (g *Gateway) onCommand(runCtx context.Context, msg *nats.Msg) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(runCtx), g.cfg.CommandTimeout)
	defer cancel()
	p, verb, r := g.command(ctx, msg.Subject, msg.Data)
	result := "ok"
	if r.Error != nil {
		result = r.Error.Code
	}
	g.metrics.commands.WithLabelValues(string(p), verb, result).Inc()
	if msg.Reply == "" {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		g.log.Error().Err(err).Msg("encode reply")
		return
	}
	if err := msg.Respond(b); err != nil {
		g.log.Warn().Err(err).Msg("respond")
	}
}

func (g *Gateway) command(ctx context.Context, subject string, data []byte) (event.Provider, string, event.Reply) {
	p, cmd, err := event.ParseProviderSubject(subject)
	if err != nil {
		return "", "", errReply(event.NewCommandError(event.CodeBadRequest, "bad command subject"))
	}
	m, verb, err := event.ParseSubject(cmd)
	if err != nil || cmd != event.CommandSubject(m, event.Verb(verb)) {
		return p, "", errReply(event.NewCommandError(event.CodeBadRequest, "bad command subject"))
	}
	d := g.drivers[p]
	if d == nil {
		return p, verb, errReply(event.NewCommandError(event.CodeWrongProvider, "this gateway has no %s driver", p))
	}
	v := event.Verb(verb)
	// Anyone allowed to publish commands may name any id: never act for
	// a mentorado that does not exist or (but to stop it) is disabled.
	exists, disabled, err := g.db.Mentorados().Check(ctx, m)
	switch {
	case err != nil:
		return p, verb, errReply(event.NewCommandError(event.CodeUnavailable, "cannot check the mentorado: %v", err))
	case !exists:
		return p, verb, errReply(event.NewCommandError(event.CodeUnknown, "no mentorado %d", m))
	case disabled && v != event.VerbStatus && v != event.VerbDisconnect && v != event.VerbLogout:
		return p, verb, errReply(event.NewCommandError(event.CodeDisabled, "mentorado %d is disabled", m))
	}
	active, err := g.accounts.Active(ctx, m)
	if err != nil {
		return p, verb, errReply(event.NewCommandError(event.CodeUnavailable, "cannot read the active provider: %v", err))
	}
	if active != p {
		return p, verb, errReply(event.NewCommandError(event.CodeWrongProvider, "mentorado %d's active provider is %q, not %s; retry", m, active, p))
	}
	acc, err := g.accounts.Account(ctx, m, p)
	if errors.Is(err, store.ErrNotFound) {
		return p, verb, errReply(event.NewCommandError(event.CodeNoProvider, "mentorado %d has no %s configuration", m, p))
	}
	if err != nil {
		g.log.Error().Err(err).Int64("mentorado", m).Str("provider", string(p)).Msg("open provider account")
		return p, verb, errReply(event.NewCommandError(event.CodeUnavailable, "cannot open the %s configuration", p))
	}
	return p, verb, g.execute(ctx, d, acc, v, data)
}

// execute runs one command for acc with its driver.
func (g *Gateway) execute(ctx context.Context, d provider.Driver, acc provider.Account, v event.Verb, data []byte) event.Reply {
	switch v {
	case event.VerbStatus:
		st, err := d.Status(ctx, acc)
		g.observe(ctx, acc, st, err)
		return statusReply(st, err)
	case event.VerbConnect:
		var req event.ConnectRequest
		if len(data) > 0 {
			if err := json.Unmarshal(data, &req); err != nil {
				return errReply(event.NewCommandError(event.CodeBadRequest, "connect body: %v", err))
			}
		}
		return g.connect(ctx, d, acc, req)
	case event.VerbDisconnect:
		g.stopPairing(acc)
		st, err := d.Disconnect(ctx, acc)
		g.observe(ctx, acc, st, err)
		return statusReply(st, err)
	case event.VerbLogout:
		g.stopPairing(acc)
		st, err := d.Logout(ctx, acc)
		g.observe(ctx, acc, st, err)
		return statusReply(st, err)
	case event.VerbSend:
		var req event.SendRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return errReply(event.NewCommandError(event.CodeBadRequest, "send body: %v", err))
		}
		msg, err := g.send(ctx, d, acc, req)
		if err != nil {
			return errorReply(err)
		}
		return event.Reply{Message: msg}
	case event.VerbReact, event.VerbEdit, event.VerbRevoke:
		var req event.ActionRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return errReply(event.NewCommandError(event.CodeBadRequest, "%s body: %v", v, err))
		}
		msg, err := g.act(ctx, d, acc, v, req)
		if err != nil {
			return errorReply(err)
		}
		return event.Reply{Message: msg}
	case event.VerbRead:
		var req event.ReadRequest
		if err := json.Unmarshal(data, &req); err != nil {
			return errReply(event.NewCommandError(event.CodeBadRequest, "read body: %v", err))
		}
		rd, ok := d.(provider.Reader)
		if !ok {
			return errReply(event.NewCommandError(event.CodeNotSupported, "%s cannot send read receipts", acc.Provider))
		}
		err := rd.MarkRead(ctx, acc, req)
		g.observeCall(ctx, acc, err)
		if err != nil {
			return errorReply(err)
		}
		return event.Reply{}
	}
	return errReply(event.NewCommandError(event.CodeBadRequest, "unknown verb %q", v))
}

// act runs react, edit or revoke through the driver's optional interface
// and publishes the resulting message event before answering with it.
func (g *Gateway) act(ctx context.Context, d provider.Driver, acc provider.Account, v event.Verb, req event.ActionRequest) (*event.Message, error) {
	if ce := req.Validate(v); ce != nil {
		return nil, ce
	}
	var call func(context.Context, provider.Account, event.ActionRequest) (*event.Message, error)
	switch v {
	case event.VerbReact:
		if r, ok := d.(provider.Reactor); ok {
			call = r.React
		}
	case event.VerbEdit:
		if r, ok := d.(provider.Editor); ok {
			call = r.Edit
		}
	case event.VerbRevoke:
		if r, ok := d.(provider.Revoker); ok {
			call = r.Revoke
		}
	}
	if call == nil {
		return nil, event.NewCommandError(event.CodeNotSupported, "%s cannot %s messages", acc.Provider, v)
	}
	return g.idempotent(ctx, acc, v, req.ClientID, func(ctx context.Context) (*event.Message, error) {
		msg, err := call(ctx, acc, req)
		g.observeCall(ctx, acc, err)
		if err == nil && msg == nil {
			err = fmt.Errorf("%s driver returned no message for %s", acc.Provider, v)
		}
		return msg, err
	})
}

func statusReply(st event.StatusReply, err error) event.Reply {
	if err != nil {
		return errorReply(err)
	}
	return event.Reply{Status: &st}
}

func errReply(ce *event.CommandError) event.Reply { return event.Reply{Error: ce} }

// errorReply maps a driver's or the gateway's error to the reply: a
// *event.CommandError as it is, a timeout as unavailable, anything else
// internal.
func errorReply(err error) event.Reply {
	var ce *event.CommandError
	if errors.As(err, &ce) {
		return event.Reply{Error: ce}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errReply(event.NewCommandError(event.CodeUnavailable, "timed out"))
	}
	return errReply(event.NewCommandError(event.CodeInternal, "%v", err))
}
