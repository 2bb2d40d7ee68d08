package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/provider"
)

// Connection state. A gateway-hosted provider has no session to watch:
// what zapbus knows of the number's state is what the provider's answers
// and webhooks say. The gateway publishes a connection event (the same
// type and ids as the connector's) whenever a driver call shows a change
// from the last state it published or the persister stored: a status
// reply that differs, a call failing with unavailable after the driver's
// own retries (status backoff, reason "<provider> unreachable: …",
// retry_at a hint), and the next call that succeeds after that
// (connected). The persister stores it as it stores the connector's, so
// the dashboard and the API show a provider outage as they show a
// WhatsApp Web reconnect.

type stateKey struct {
	m int64
	p event.Provider
}

type connState struct {
	status event.Status
	phone  string
	at     time.Time // when this gateway published it
}

// stateFresh is how long a state this gateway published is trusted over
// the stored one: long enough for the persister to store it, short
// enough that what another gateway (or a webhook it took) published
// since wins.
const stateFresh = 30 * time.Second

// observe records what a status-returning driver call showed.
func (g *Gateway) observe(ctx context.Context, acc provider.Account, st event.StatusReply, err error) {
	if err != nil {
		g.observeCall(ctx, acc, err)
		return
	}
	if !st.Status.Valid() {
		return
	}
	g.setState(ctx, acc, &event.Connection{Status: st.Status, Phone: st.Phone, JID: st.JID, Reason: st.Reason, RetryAt: st.RetryAt})
}

// observeCall records what any driver call showed of the provider's
// reachability: unavailable → backoff; success after that → connected.
func (g *Gateway) observeCall(ctx context.Context, acc provider.Account, err error) {
	var ce *event.CommandError
	switch {
	case err == nil:
		cur := g.state(ctx, acc)
		if cur.status == event.StatusBackoff {
			g.setState(ctx, acc, &event.Connection{Status: event.StatusConnected, Phone: cur.phone})
		}
	case errors.As(err, &ce) && ce.Code == event.CodeUnavailable:
		retry := g.now().Add(g.cfg.RetryAfter)
		reason := ce.Message // the drivers say "meta unreachable: …" themselves
		if !strings.Contains(reason, "unreachable") {
			reason = fmt.Sprintf("%s unreachable: %s", acc.Provider, reason)
		}
		g.setState(ctx, acc, &event.Connection{Status: event.StatusBackoff, Reason: reason, RetryAt: &retry})
	}
}

// state is the last known state of acc's number: the one this gateway
// published, else the one the persister stored.
func (g *Gateway) state(ctx context.Context, acc provider.Account) connState {
	k := stateKey{acc.Mentorado, acc.Provider}
	g.mu.Lock()
	cur := g.states[k]
	g.mu.Unlock()
	if cur != nil && g.now().Sub(cur.at) < stateFresh {
		return *cur
	}
	var st connState
	if stored, err := g.db.Mentorados().Status(ctx, acc.Mentorado); err == nil {
		st.status = event.Status(stored.Status)
		if stored.Phone != nil {
			st.phone = *stored.Phone
		}
	}
	return st
}

// setState publishes c when it differs from the last known state.
func (g *Gateway) setState(ctx context.Context, acc provider.Account, c *event.Connection) {
	cur := g.state(ctx, acc)
	if c.Phone == "" {
		c.Phone = cur.phone
		if c.Phone == "" && acc.Meta != nil {
			c.Phone = acc.Meta.DisplayPhone
		}
	}
	if c.Phone != "" && c.JID == "" && c.Status == event.StatusConnected {
		c.JID = phone.JID(c.Phone)
	}
	if cur.status == c.Status && cur.phone == c.Phone {
		return
	}
	now := g.now()
	env, err := event.New(acc.Mentorado, event.ConnectionEventID(acc.Mentorado, c.Status, now), now, c)
	if err != nil {
		g.log.Error().Err(err).Int64("mentorado", acc.Mentorado).Msg("build connection event")
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.PublishTimeout)
	defer cancel()
	if err := g.publish(pctx, acc.Provider, env); err != nil {
		g.log.Warn().Err(err).Int64("mentorado", acc.Mentorado).Msg("publish connection change (the next call retries)")
		return
	}
	g.metrics.connection.WithLabelValues(string(acc.Provider), string(c.Status)).Inc()
	g.log.Info().Int64("mentorado", acc.Mentorado).Str("provider", string(acc.Provider)).Str("status", string(c.Status)).Str("reason", c.Reason).Msg("connection state")
	g.remember(acc, c)
}

// remember records c as the last state this gateway published for acc.
func (g *Gateway) remember(acc provider.Account, c *event.Connection) {
	g.mu.Lock()
	g.states[stateKey{acc.Mentorado, acc.Provider}] = &connState{status: c.Status, phone: c.Phone, at: g.now()}
	g.mu.Unlock()
}

// connect runs a connect command. The driver brings the number up or
// reports what it needs; a provider that pairs by QR (Z-API) then gets
// its codes published on wa.<m>.qr as the connector publishes WhatsApp
// Web's, refreshed in the background until the number is connected or
// Config.PairTimeout passes, so the dashboard's QR card works unchanged.
// A phone connect asks a PhonePairer for a pairing code instead.
func (g *Gateway) connect(ctx context.Context, d provider.Driver, acc provider.Account, req event.ConnectRequest) event.Reply {
	method := req.Method
	if method == "" {
		method = event.ConnectQR
	}
	if method != event.ConnectQR && method != event.ConnectPhone {
		return errReply(event.NewCommandError(event.CodeBadRequest, "method must be qr or phone"))
	}
	st, err := d.Connect(ctx, acc, req)
	g.observe(ctx, acc, st, err)
	if err != nil || st.Status == event.StatusConnected {
		return statusReply(st, err)
	}
	switch method {
	case event.ConnectPhone:
		pp, ok := d.(provider.PhonePairer)
		if !ok {
			return errReply(event.NewCommandError(event.CodeNotSupported, "%s does not pair by phone code", acc.Provider))
		}
		number, err := phone.Normalize(req.Phone)
		if err != nil {
			return errReply(event.NewCommandError(event.CodeInvalidPhone, "%v", err))
		}
		code, err := pp.PairingCode(ctx, acc, number)
		g.observeCall(ctx, acc, err)
		if err != nil {
			return errorReply(err)
		}
		if err := g.publishQR(ctx, acc, &event.QR{PairingCode: code, ExpiresAt: g.now().Add(g.cfg.PairTimeout)}); err != nil {
			return errReply(event.NewCommandError(event.CodeUnavailable, "pairing code not published: %v", err))
		}
		g.setState(ctx, acc, &event.Connection{Status: event.StatusPairing, Reason: "enter the pairing code on the phone"})
		g.startPairing(d, acc, nil, "")
		st.Status, st.PairingCode, st.Reason = event.StatusPairing, code, "enter the pairing code on the phone"
		return event.Reply{Status: &st}
	default:
		qp, ok := d.(provider.QRPairer)
		if !ok {
			return event.Reply{Status: &st} // nothing to pair (Meta): the state is the answer
		}
		code, exp, err := qp.QR(ctx, acc)
		g.observeCall(ctx, acc, err)
		if err != nil {
			return errorReply(err)
		}
		if code == "" {
			// Connected meanwhile (the provider has no code to show).
			st, err := d.Status(ctx, acc)
			g.observe(ctx, acc, st, err)
			return statusReply(st, err)
		}
		if exp.IsZero() {
			exp = g.now().Add(g.cfg.QRRefresh)
		}
		if err := g.publishQR(ctx, acc, &event.QR{Code: code, ExpiresAt: exp}); err != nil {
			return errReply(event.NewCommandError(event.CodeUnavailable, "QR not published: %v", err))
		}
		g.setState(ctx, acc, &event.Connection{Status: event.StatusQR, Reason: "scan the QR code"})
		g.startPairing(d, acc, qp, code)
		st.Status, st.Reason = event.StatusQR, "scan the QR code"
		return event.Reply{Status: &st}
	}
}

// startPairing watches a pairing in the background (one per mentorado and
// provider): it asks the provider for the state every Config.QRRefresh,
// publishes each new QR code, and stops when the number is connected, a
// disconnect or logout command stops it, Run ends, or PairTimeout passes
// (then the state is disconnected, "pairing timed out").
func (g *Gateway) startPairing(d provider.Driver, acc provider.Account, qp provider.QRPairer, last string) {
	k := stateKey{acc.Mentorado, acc.Provider}
	g.mu.Lock()
	if _, running := g.pairing[k]; running {
		g.mu.Unlock()
		return
	}
	rc := g.runCtx
	ctx, cancel := context.WithTimeout(context.WithoutCancel(rc), g.cfg.PairTimeout)
	g.pairing[k] = cancel
	g.inflight.Add(1)
	g.mu.Unlock()
	go func() {
		defer g.inflight.Done()
		defer func() {
			g.mu.Lock()
			delete(g.pairing, k)
			g.mu.Unlock()
			cancel()
		}()
		stop := context.AfterFunc(rc, cancel)
		defer stop()
		t := time.NewTicker(g.cfg.QRRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					fctx, fcancel := context.WithTimeout(context.Background(), g.cfg.PublishTimeout)
					if g.state(fctx, acc).status != event.StatusConnected {
						g.setState(fctx, acc, &event.Connection{Status: event.StatusDisconnected, Reason: "pairing timed out"})
					}
					fcancel()
				}
				return
			case <-t.C:
			}
			// Only the end of the pairing is a change to publish: the
			// provider says disconnected until the code is scanned.
			st, err := d.Status(ctx, acc)
			if err == nil && st.Status == event.StatusConnected {
				g.observe(ctx, acc, st, nil)
				return
			}
			g.observeCall(ctx, acc, err)
			if qp == nil || ctx.Err() != nil {
				continue
			}
			code, exp, err := qp.QR(ctx, acc)
			g.observeCall(ctx, acc, err)
			if err != nil || code == "" || code == last {
				continue
			}
			if exp.IsZero() {
				exp = g.now().Add(g.cfg.QRRefresh)
			}
			if err := g.publishQR(ctx, acc, &event.QR{Code: code, ExpiresAt: exp}); err == nil {
				last = code
			}
		}
	}()
}

// stopPairing ends acc's pairing watch, if any (disconnect, logout).
func (g *Gateway) stopPairing(acc provider.Account) {
	g.mu.Lock()
	cancel := g.pairing[stateKey{acc.Mentorado, acc.Provider}]
	g.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// publishQR stores a pairing secret on wa.<m>.qr (WA_QR keeps the last).
// The code itself is never logged.
func (g *Gateway) publishQR(ctx context.Context, acc provider.Account, q *event.QR) error {
	env, err := event.New(acc.Mentorado, event.QREventID(acc.Mentorado, q), g.now(), q)
	if err != nil {
		return err
	}
	if err := g.publish(ctx, acc.Provider, env); err != nil {
		g.log.Warn().Err(err).Int64("mentorado", acc.Mentorado).Msg("publish pairing secret")
		return err
	}
	g.log.Debug().Int64("mentorado", acc.Mentorado).Msg("pairing secret published")
	return nil
}
