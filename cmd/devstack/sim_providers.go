package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"

	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta/metafake"
	"github.com/zapbus/zapbus/internal/provider/zapi/zapifake"
	"github.com/zapbus/zapbus/internal/store"
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

// webOnly guards a sim endpoint that only the fake WhatsApp server
// simulates.
func (s *simulator) webOnly(name string, h func(http.ResponseWriter, *http.Request, int64)) func(http.ResponseWriter, *http.Request, int64) {
	return func(w http.ResponseWriter, r *http.Request, m int64) {
		p, err := s.activeProvider(r.Context(), m)
		if err == nil && event.Provider(p) != event.ProviderWeb {
			web.WriteError(w, http.StatusConflict, "not_simulated", "the simulator's "+name+" is WhatsApp Web only; this mentorado's active provider is "+p)
			return
		}
		h(w, r, m)
	}
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
	case event.ProviderMeta, event.ProviderZAPI:
		if s.providers == nil {
			return false
		}
		s.providers.setOutage(event.Provider(p), down)
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
	case event.ProviderMeta, event.ProviderZAPI:
		if s.providers == nil {
			return false, 0, false
		}
		down, attempts = s.providers.outage(event.Provider(p))
		return down, attempts, true
	}
	return false, 0, false
}

// providerSim holds the simulated Meta and Z-API (nil without -sim) and
// the fake accounts made for mentorados, by provider number id.
type providerSim struct {
	meta    *metafake.Server
	zapi    *zapifake.Server
	configs *provider.Configs
	gateway string // the gateway's base URL, where the fakes deliver webhooks

	mu        sync.Mutex
	numbers   map[string]*metafake.Number   // by phone_number_id
	instances map[string]*zapifake.Instance // by instance id
	metaBase  int                           // metafake's attempts when its outage started
	zapiBase  int
	metaDown  bool
	zapiDown  bool
	// delivered are the inbound webhooks delivered, by message id, for
	// redeliver (the providers retry byte-identical bodies).
	delivered map[string]delivered
}

type delivered struct {
	sa   *simAccount
	body []byte
}

// fakeLog adapts a zerolog logger to the fakes' Logf (debug level: the
// fakes log request paths, never secrets).
type fakeLog struct{ log zerolog.Logger }

func (l fakeLog) Logf(format string, args ...any) { l.log.Debug().Msgf(format, args...) }

func newProviderSim(log zerolog.Logger, configs *provider.Configs) *providerSim {
	return &providerSim{
		meta:      metafake.New(fakeLog{log.With().Str("component", "metafake").Logger()}),
		zapi:      zapifake.New(nil),
		configs:   configs,
		numbers:   map[string]*metafake.Number{},
		instances: map[string]*zapifake.Instance{},
		delivered: map[string]delivered{},
	}
}

func (ps *providerSim) Close() {
	ps.meta.Close()
	ps.zapi.Close()
}

// randDigits is n random decimal digits (the first not 0).
func randDigits(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	if b[0] == '0' {
		b[0] = '1'
	}
	return string(b)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newMetaAccount makes a number on the fake Graph API and returns its
// credentials, as an admin would copy them from Meta's console.
func (ps *providerSim) newMetaAccount(display string) *provider.MetaCredentials {
	creds := &provider.MetaCredentials{PhoneNumberID: randDigits(15), WABAID: randDigits(15), DisplayPhone: display,
		AccessToken: "EAAG" + randHex(24), AppSecret: randHex(16), VerifyToken: "verify-" + randHex(8)}
	n := ps.meta.AddAccount(metafake.Account{PhoneNumberID: creds.PhoneNumberID, DisplayPhone: display, WABAID: creds.WABAID, Token: creds.AccessToken})
	ps.mu.Lock()
	ps.numbers[creds.PhoneNumberID] = n
	ps.mu.Unlock()
	return creds
}

// newZAPIInstance makes an instance on the fake Z-API (not connected: it
// shows a QR code until scanned) and returns its credentials without a
// webhook secret (zapbus picks one when it is configured).
func (ps *providerSim) newZAPIInstance(phone string) *provider.ZAPICredentials {
	in := ps.zapi.AddInstance(zapifake.InstanceConfig{Phone: phone})
	ps.mu.Lock()
	ps.instances[in.ID] = in
	ps.mu.Unlock()
	return in.Credentials("")
}

// simAccount is a mentorado's active provider account on a fake.
type simAccount struct {
	acc      provider.Account
	number   *metafake.Number   // meta
	instance *zapifake.Instance // zapi
	webhook  string             // where the fake delivers
}

// account finds mentorado m's account of provider p on its fake.
func (ps *providerSim) account(ctx context.Context, m int64, p event.Provider) (*simAccount, error) {
	acc, err := ps.configs.Account(ctx, m, p)
	if err != nil {
		return nil, err
	}
	sa := &simAccount{acc: acc}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	switch {
	case p == event.ProviderMeta && acc.Meta != nil:
		sa.number = ps.numbers[acc.Meta.PhoneNumberID]
		sa.webhook = fmt.Sprintf("%s/providers/meta/%d/webhook", ps.gateway, m)
		if sa.number == nil {
			return nil, errors.New("the fake Graph API does not know this phone_number_id (make the account with POST /v1/dev/sim/{mentorado}/provider-account)")
		}
	case p == event.ProviderZAPI && acc.ZAPI != nil:
		sa.instance = ps.instances[acc.ZAPI.InstanceID]
		sa.webhook = fmt.Sprintf("%s/providers/zapi/%d/webhook/%s", ps.gateway, m, url.PathEscape(acc.ZAPI.WebhookSecret))
		if sa.instance == nil {
			return nil, errors.New("the fake Z-API does not know this instance (make it with POST /v1/dev/sim/{mentorado}/provider-account)")
		}
	default:
		return nil, fmt.Errorf("provider %s is not simulated", p)
	}
	return sa, nil
}

// deliver posts a webhook body as the provider does (Meta: signed with
// the app secret) and returns the gateway's status.
func (ps *providerSim) deliver(ctx context.Context, sa *simAccount, body []byte) (int, error) {
	if sa.number != nil {
		return ps.meta.Deliver(ctx, sa.webhook, sa.acc.Meta.AppSecret, body)
	}
	return ps.zapi.Deliver(ctx, sa.webhook, body)
}

// simAccountOf resolves the sim request's mentorado to its account on a
// fake provider; ok false when its active provider is WhatsApp Web (the
// caller serves it through wafake). It writes the error response itself.
func (s *simulator) simAccountOf(w http.ResponseWriter, r *http.Request, m int64) (sa *simAccount, handled bool) {
	p, err := s.activeProvider(r.Context(), m)
	if err != nil {
		web.WriteError(w, http.StatusNotFound, "not_found", "no such mentorado")
		return nil, true
	}
	if event.Provider(p) == event.ProviderWeb {
		return nil, false
	}
	if s.providers == nil {
		web.WriteError(w, http.StatusConflict, "not_simulated", "provider "+p+" is not simulated here")
		return nil, true
	}
	sa, err = s.providers.account(r.Context(), m, event.Provider(p))
	if err != nil {
		web.WriteError(w, http.StatusConflict, "not_simulated", err.Error())
		return nil, true
	}
	return sa, true
}

// writeDelivered answers a sim request that delivered a webhook: 202 with
// out when the gateway took it, 502 with its status otherwise.
func writeDelivered(w http.ResponseWriter, status int, err error, out map[string]any) {
	switch {
	case err != nil:
		web.WriteError(w, http.StatusBadGateway, "delivery_failed", "the gateway could not be reached: "+err.Error())
	case status != http.StatusOK:
		web.WriteError(w, http.StatusBadGateway, "delivery_refused", fmt.Sprintf("the gateway answered the webhook %d", status))
	default:
		web.WriteJSON(w, http.StatusAccepted, out)
	}
}

// providerInbound is inbound for a mentorado on Meta or Z-API: the fake
// builds the provider's webhook for the message and delivers it.
func (s *simulator) providerInbound(w http.ResponseWriter, r *http.Request, sa *simAccount, req inboundRequest) {
	from, err := phone.Normalize(req.Phone)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "invalid_phone", err.Error())
		return
	}
	kind := cmp.Or(req.Kind, "text")
	switch {
	case req.Group != "" || req.LIDOnly != nil:
		web.WriteError(w, http.StatusBadRequest, "not_supported", "groups and LIDs are WhatsApp Web only")
		return
	case kind == "text" && req.Text == "":
		web.WriteError(w, http.StatusBadRequest, "bad_request", "text is required")
		return
	case kind == "image" && len(req.Data) == 0:
		web.WriteError(w, http.StatusBadRequest, "bad_request", "data (the file) is required for kind image")
		return
	case kind != "text" && kind != "image":
		web.WriteError(w, http.StatusBadRequest, "bad_request", "the simulated "+string(sa.acc.Provider)+" contact sends text or image")
		return
	}
	mime := cmp.Or(req.MIME, "image/jpeg")
	var id string
	var body []byte
	switch {
	case sa.number != nil && kind == "text" && req.ReplyTo != "":
		id, body = sa.number.InboundReply(from, req.PushName, req.Text, req.ReplyTo)
	case sa.number != nil && kind == "text":
		id, body = sa.number.InboundText(from, req.PushName, req.Text)
	case sa.number != nil:
		id, _, body = sa.number.InboundMedia(from, req.PushName, "image", mime, req.Data, req.Caption, "")
	case kind == "text":
		id, body = sa.instance.ReceivedText(from, req.PushName, req.Text)
	default:
		id, body = sa.instance.ReceivedImage(from, req.Caption)
		// The fake's own image is a sample; serve the one given instead.
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			if img, ok := m["image"].(map[string]any); ok {
				u := s.providers.zapi.AddMedia(id+"-sim", mime, req.Data)
				img["imageUrl"], img["mimeType"] = u, mime
				body, _ = json.Marshal(m)
			}
		}
	}
	status, err := s.providers.deliver(r.Context(), sa, body)
	s.providers.mu.Lock()
	s.providers.delivered[id] = delivered{sa: sa, body: body}
	s.providers.mu.Unlock()
	out := map[string]any{"id": id}
	if kind == "image" {
		sum := sha256.Sum256(req.Data)
		out["sha256"], out["size"] = hex.EncodeToString(sum[:]), len(req.Data)
	}
	writeDelivered(w, status, err, out)
}

// providerReceipt is receipt for a mentorado on Meta or Z-API: the
// provider's status webhook for the message.
func (s *simulator) providerReceipt(w http.ResponseWriter, r *http.Request, sa *simAccount, number, id, kind string) {
	to, err := phone.Normalize(number)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "invalid_phone", err.Error())
		return
	}
	var body []byte
	switch {
	case sa.number != nil && kind == "played":
		web.WriteError(w, http.StatusBadRequest, "bad_request", "Meta reports delivered and read only")
		return
	case sa.number != nil:
		body = sa.number.Status(id, to, cmp.Or(kind, "delivered"))
	default:
		body = sa.instance.Status(to, []string{id}, map[string]string{"": "RECEIVED", "delivered": "RECEIVED", "read": "READ", "played": "PLAYED"}[kind])
	}
	status, err := s.providers.deliver(r.Context(), sa, body)
	writeDelivered(w, status, err, map[string]any{"ok": true})
}

// providerReceived is received for a mentorado on Meta or Z-API: what the
// fake accepted from it for that contact.
func (s *simulator) providerReceived(w http.ResponseWriter, sa *simAccount, number string) {
	out := []simReceived{}
	str := func(m map[string]any, path ...string) string {
		var v any = m
		for _, k := range path {
			mm, ok := v.(map[string]any)
			if !ok {
				return ""
			}
			v = mm[k]
		}
		sv, _ := v.(string)
		return sv
	}
	if sa.number != nil {
		for _, m := range s.providers.meta.Sent() {
			if m.PhoneNumberID != sa.acc.Meta.PhoneNumberID || m.To != number {
				continue
			}
			e := simReceived{ID: m.WAID, From: sa.acc.Meta.DisplayPhone, Kind: m.Type, ReplyTo: str(m.Body, "context", "message_id")}
			e.Text = cmp.Or(str(m.Body, "text", "body"), str(m.Body, m.Type, "caption"))
			out = append(out, e)
		}
	} else {
		for _, m := range s.providers.zapi.Sent() {
			if m.Instance != sa.instance.ID || m.Phone != number {
				continue
			}
			e := simReceived{ID: m.MessageID, From: sa.instance.Phone, Kind: m.Endpoint, ReplyTo: str(m.Body, "messageId"), MIME: m.MIME, MediaSize: len(m.Data)}
			e.Text = cmp.Or(str(m.Body, "message"), str(m.Body, "caption"))
			if len(m.Data) > 0 {
				sum := sha256.Sum256(m.Data)
				e.MediaSHA256 = hex.EncodeToString(sum[:])
			}
			out = append(out, e)
		}
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"messages": out})
}

// providerScan is scan for a Z-API mentorado: the phone scans the
// instance's QR and Z-API posts its connected webhook. Meta has no QR.
func (s *simulator) providerScan(w http.ResponseWriter, r *http.Request, sa *simAccount) {
	if sa.instance == nil {
		web.WriteError(w, http.StatusConflict, "no_qr", "a Meta number has no QR code: POST /v1/whatsapp/connect checks its credentials")
		return
	}
	if sa.instance.QR() == "" && sa.instance.IsConnected() {
		web.WriteError(w, http.StatusConflict, "no_qr", "the Z-API instance is already connected")
		return
	}
	sa.instance.Scan()
	status, err := s.providers.deliver(r.Context(), sa, sa.instance.Connected())
	if err != nil || status != http.StatusOK {
		writeDelivered(w, status, err, nil)
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]string{"phone": sa.instance.Phone})
}

// providerAccount: POST {"provider":"meta"|"zapi","phone":optional} — a
// new account on that provider's fake, its credentials in the answer (to
// configure through the admin API) with the webhook URL the fake
// delivers to.
func (s *simulator) providerAccount(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Provider string `json:"provider"`
		Phone    string `json:"phone"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	if s.providers == nil {
		web.WriteError(w, http.StatusConflict, "not_simulated", "providers are not simulated here")
		return
	}
	ph := SimPhone(m)
	if req.Phone != "" {
		p, err := phone.Normalize(req.Phone)
		if err != nil {
			web.WriteError(w, http.StatusBadRequest, "invalid_phone", err.Error())
			return
		}
		ph = p
	}
	switch event.Provider(req.Provider) {
	case event.ProviderMeta:
		web.WriteJSON(w, http.StatusCreated, map[string]any{"provider": req.Provider, "credentials": s.providers.newMetaAccount(ph),
			"webhook_url": fmt.Sprintf("%s/providers/meta/%d/webhook", s.providers.gateway, m)})
	case event.ProviderZAPI:
		web.WriteJSON(w, http.StatusCreated, map[string]any{"provider": req.Provider, "credentials": s.providers.newZAPIInstance(ph),
			"webhook_url": fmt.Sprintf("%s/providers/zapi/%d/webhook/{webhook_secret}", s.providers.gateway, m)})
	default:
		web.WriteError(w, http.StatusBadRequest, "bad_request", "provider must be meta or zapi")
	}
}

// setOutage breaks (down) or restores provider p's fake API; the attempt
// counter restarts when an outage starts.
func (ps *providerSim) setOutage(p event.Provider, down bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p == event.ProviderMeta {
		if down && !ps.metaDown {
			ps.metaBase = ps.meta.Attempts()
		}
		ps.metaDown = down
		ps.meta.Outage(down)
		return
	}
	if down && !ps.zapiDown {
		ps.zapiBase = ps.zapi.TotalAttempts()
	}
	ps.zapiDown = down
	ps.zapi.Outage(down)
}

// outage reports provider p's fake outage and the API requests since it
// started.
func (ps *providerSim) outage(p event.Provider) (bool, int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p == event.ProviderMeta {
		return ps.metaDown, ps.meta.Attempts() - ps.metaBase
	}
	return ps.zapiDown, ps.zapi.TotalAttempts() - ps.zapiBase
}

// Demo mentorados of -sim mode: one on Meta and one on Z-API, each on its
// fake, so a person can try both providers at once.
const (
	metaDemoName  = "Meta demo"
	zapiDemoName  = "Z-API demo"
	metaDemoPhone = "5511930000001" // the Meta number's display phone
	zapiDemoPhone = "5511940000002" // the Z-API instance's paired phone
)

// demo is a demo mentorado ready to use.
type demo struct {
	Name     string
	ID       int64
	Token    string
	Provider event.Provider
}

// callAPI sends a JSON request to the notifier's handler in-process.
func callAPI(h http.Handler, method, path, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if out != nil && rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			return rec.Code, fmt.Errorf("%s %s: %d: %w", method, path, rec.Code, err)
		}
	}
	return rec.Code, nil
}

// setupDemos creates (or, after a restart, takes over with a new token)
// the demo mentorados and configures each with a fresh account on its
// fake: the Meta demo on Meta (its WhatsApp Web row kept: Meta wins by
// priority), the Z-API demo on Z-API only, its instance already paired.
func (ps *providerSim) setupDemos(ctx context.Context, api http.Handler, admin string, db *store.DB) ([]demo, error) {
	existing := map[string]int64{}
	var after int64
	for {
		page, err := db.Mentorados().List(ctx, after, 500)
		if err != nil {
			return nil, err
		}
		for _, m := range page {
			if m.Name == metaDemoName || m.Name == zapiDemoName {
				existing[m.Name] = m.ID
			}
			after = m.ID
		}
		if len(page) < 500 {
			break
		}
	}
	var out []demo
	for _, d := range []demo{{Name: metaDemoName, Provider: event.ProviderMeta}, {Name: zapiDemoName, Provider: event.ProviderZAPI}} {
		var tok struct {
			ID    int64  `json:"id"`
			Token string `json:"token"`
		}
		var code int
		var err error
		if id, ok := existing[d.Name]; ok {
			code, err = callAPI(api, "POST", fmt.Sprintf("/v1/admin/mentorados/%d/tokens", id), admin, nil, &tok)
			tok.ID = id
		} else {
			code, err = callAPI(api, "POST", "/v1/admin/mentorados", admin, map[string]string{"name": d.Name}, &tok)
		}
		if err != nil || tok.Token == "" {
			return nil, fmt.Errorf("demo mentorado %q: %d %v", d.Name, code, err)
		}
		d.ID, d.Token = tok.ID, tok.Token
		acc := provider.Account{Mentorado: d.ID, Provider: d.Provider}
		if d.Provider == event.ProviderMeta {
			acc.Meta = ps.newMetaAccount(metaDemoPhone)
		} else {
			in := ps.zapi.AddInstance(zapifake.InstanceConfig{Phone: zapiDemoPhone, Connected: true})
			ps.mu.Lock()
			ps.instances[in.ID] = in
			ps.mu.Unlock()
			acc.ZAPI = in.Credentials("")
		}
		// A restart's fresh fake account replaces the old one's number.
		if err := ps.configs.Put(ctx, acc); err != nil {
			return nil, fmt.Errorf("demo mentorado %q: configure %s: %w", d.Name, d.Provider, err)
		}
		if d.Provider == event.ProviderZAPI {
			if _, err := ps.configs.Delete(ctx, d.ID, event.ProviderWeb); err != nil {
				return nil, err
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// startDemos brings the demo numbers up once the stack serves: the Z-API
// instance's connected webhook, the Meta number's credentials check (a
// connect command).
func (ps *providerSim) startDemos(ctx context.Context, api http.Handler, demos []demo, log zerolog.Logger) {
	for _, d := range demos {
		var err error
		switch d.Provider {
		case event.ProviderZAPI:
			var sa *simAccount
			if sa, err = ps.account(ctx, d.ID, d.Provider); err == nil {
				var status int
				status, err = ps.deliver(ctx, sa, sa.instance.Connected())
				if err == nil && status != http.StatusOK {
					err = fmt.Errorf("gateway answered %d", status)
				}
			}
		case event.ProviderMeta:
			var code int
			code, err = callAPI(api, "POST", "/v1/whatsapp/connect", d.Token, map[string]string{"method": "qr"}, nil)
			if err == nil && code/100 != 2 {
				err = fmt.Errorf("connect answered %d", code)
			}
		}
		if err != nil {
			log.Warn().Err(err).Str("mentorado", d.Name).Msg("demo mentorado not brought up")
		}
	}
}

// redeliver: {"message_id"} — the provider delivers a message the contact
// sent again, as a provider retrying a webhook does (byte-identical body)
// or WhatsApp resending a stanza (WhatsApp Web: the identical stanza).
func (s *simulator) redeliver(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		MessageID string `json:"message_id"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	if req.MessageID == "" {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "message_id is required")
		return
	}
	if sa, handled := s.simAccountOf(w, r, m); handled {
		if sa == nil {
			return
		}
		s.providers.mu.Lock()
		d, ok := s.providers.delivered[req.MessageID]
		s.providers.mu.Unlock()
		if !ok || d.sa.acc.Mentorado != m || d.sa.acc.Provider != sa.acc.Provider {
			web.WriteError(w, http.StatusNotFound, "not_found", "no message with this id was delivered to this mentorado by its provider")
			return
		}
		status, err := s.providers.deliver(r.Context(), sa, d.body)
		writeDelivered(w, status, err, map[string]any{"id": req.MessageID})
		return
	}
	if err := s.fake.Redeliver(r.Context(), req.MessageID); err != nil {
		web.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusAccepted, map[string]any{"id": req.MessageID, "deliveries": s.fake.Deliveries(req.MessageID)})
}
