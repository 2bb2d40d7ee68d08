package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"

	"go.mau.fi/whatsmeow"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/wafake"
	"github.com/zapbus/zapbus/internal/web"
)

// The simulated providers (issue #16): in -sim mode WhatsApp Web is the
// fake WhatsApp server (internal/wafake) behind a gate that can simulate
// an outage, and Meta and Z-API are their fakes (metafake, zapifake) with
// the provider gateway's drivers pointed at them. The sim endpoints drive
// whichever provider is a mentorado's active one.

// webGate stands between the whatsmeow clients and the fake WhatsApp
// server: while down, every connection attempt is refused (and counted),
// as when WhatsApp's servers cannot be reached.
type webGate struct {
	fake *wafake.Server

	mu       sync.Mutex
	down     bool
	attempts int // connection attempts since the gate was last closed
}

func newWebGate(fake *wafake.Server) *webGate { return &webGate{fake: fake} }

func (g *webGate) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	g.mu.Lock()
	g.attempts++
	down := g.down
	g.mu.Unlock()
	if down {
		return nil, errors.New("simulated outage: the WhatsApp server refuses connections")
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", g.fake.Addr())
}

// configure points a whatsmeow client at the fake through the gate (the
// media CDN stays reachable).
func (g *webGate) configure(cli *whatsmeow.Client) {
	g.fake.Configure(cli)
	// DialTLSContext makes net/http treat the plain loopback connection
	// as an established TLS connection (as wafake's own client does).
	c := &http.Client{Transport: &http.Transport{DialContext: g.dial, DialTLSContext: g.dial, DisableKeepAlives: true}}
	cli.SetPreLoginHTTPClient(c)
	cli.SetWebsocketHTTPClient(c)
}

// setDown starts (true) or ends (false) the outage; starting it resets the
// attempt counter and drops every live connection.
func (g *webGate) setDown(down bool) {
	g.mu.Lock()
	g.down = down
	if down {
		g.attempts = 0
	}
	g.mu.Unlock()
	if down {
		for _, a := range g.fake.Accounts() {
			if a.Connected() {
				_ = a.Kick(wafake.Kick{Kind: wafake.KickDrop})
			}
		}
	}
}

// state reports whether the gate is down and the attempts since it went down.
func (g *webGate) state() (bool, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.down, g.attempts
}

// outageState is the answer of the outage endpoints.
type outageState struct {
	Provider string `json:"provider"`
	Down     bool   `json:"down"`
	// Attempts counts the provider's connection attempts (WhatsApp Web)
	// or API requests (Meta, Z-API) since the outage started.
	Attempts int `json:"attempts"`
}

// outage: POST {"down": true|false} — the mentorado's active provider
// (the whole simulated provider, every mentorado on it) goes down or comes
// back; GET reports it with the attempt counter.
func (s *simulator) outage(w http.ResponseWriter, r *http.Request, m int64) {
	p, err := s.activeProvider(r.Context(), m)
	if err != nil {
		web.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	if r.Method == http.MethodPost {
		var req struct {
			Down *bool `json:"down"`
		}
		if !s.web.ReadJSON(w, r, &req) {
			return
		}
		if req.Down == nil {
			web.WriteError(w, http.StatusBadRequest, "bad_request", "down (true or false) is required")
			return
		}
		if !s.setOutage(p, *req.Down) {
			web.WriteError(w, http.StatusConflict, "not_simulated", "provider "+p+" is not simulated here")
			return
		}
	}
	down, n, ok := s.outageOf(p)
	if !ok {
		web.WriteError(w, http.StatusConflict, "not_simulated", "provider "+p+" is not simulated here")
		return
	}
	web.WriteJSON(w, http.StatusOK, outageState{Provider: p, Down: down, Attempts: n})
}

// activeProvider is mentorado m's active provider, whatsapp_web when it
// has none configured (the connector serves it).
func (s *simulator) activeProvider(ctx context.Context, m int64) (string, error) {
	p, err := s.db.Providers().Active(ctx, m)
	if err != nil {
		return "", err
	}
	if p == "" {
		p = event.ProviderWeb
	}
	return string(p), nil
}

// setOutage starts or ends provider p's simulated outage; false when p
// is not simulated here.
func (s *simulator) setOutage(p string, down bool) bool {
	switch event.Provider(p) {
	case event.ProviderWeb:
		if s.gate == nil {
			return false
		}
		s.gate.setDown(down)
		return true
	}
	return false
}

// outageOf reports provider p's simulated outage and attempt counter.
func (s *simulator) outageOf(p string) (down bool, attempts int, ok bool) {
	switch event.Provider(p) {
	case event.ProviderWeb:
		if s.gate == nil {
			return false, 0, false
		}
		down, attempts = s.gate.state()
		return down, attempts, true
	}
	return false, 0, false
}
