package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/wafake"
	"github.com/zapbus/zapbus/internal/web"
)

// simulator drives the fake WhatsApp server on behalf of the dev endpoints.
type simulator struct {
	web  *web.Server // reads request bodies by the API's rules
	fake *wafake.Server
	gate *webGate // the fake WhatsApp server's outage switch
	// providers are the simulated Meta and Z-API: the sim endpoints drive
	// them for a mentorado whose active provider is one of them.
	providers *providerSim
	db        *store.DB
	bus       *bus.Bus
	admin     string
	log       zerolog.Logger
}

// mountSim adds the sim-mode endpoints. Each is authenticated: the admin
// token, or the token of the mentorado in the path.
func mountSim(srv *web.Server, s *simulator) {
	s.web = srv
	route := func(name string, h func(w http.ResponseWriter, r *http.Request, m int64)) {
		srv.Mount("POST /v1/dev/sim/{mentorado}/"+name, s.auth(srv, h))
	}
	// What only the fake WhatsApp server simulates: a mentorado whose
	// active provider is Meta or Z-API gets a clear 409.
	webRoute := func(name string, h func(w http.ResponseWriter, r *http.Request, m int64)) {
		route(name, s.webOnly(name, h))
	}
	route("scan", s.scan)
	webRoute("pair-code", s.pairCode)
	route("inbound", s.inbound)
	route("receipt", s.receipt)
	webRoute("disconnect", s.disconnect)
	webRoute("react", s.react)
	webRoute("edit", s.edit)
	webRoute("revoke", s.revoke)
	mountSimChats(webRoute, s)
	srv.Mount("GET /v1/dev/sim/{mentorado}/received", s.auth(srv, s.received))
	route("outage", s.outage)
	route("provider-account", s.providerAccount)
	route("redeliver", s.redeliver)
	srv.Mount("GET /v1/dev/sim/{mentorado}/outage", s.auth(srv, s.outage))
}

func (s *simulator) auth(srv *web.Server, h func(http.ResponseWriter, *http.Request, int64)) http.Handler {
	asMentorado := srv.RequireMentorado(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m, _ := web.MentoradoFrom(r.Context())
		if strconv.FormatInt(m, 10) != r.PathValue("mentorado") {
			web.WriteError(w, http.StatusNotFound, "not_found", "no such mentorado")
			return
		}
		h(w, r, m)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.admin)) == 1 {
			m, err := strconv.ParseInt(r.PathValue("mentorado"), 10, 64)
			if err != nil || m <= 0 {
				web.WriteError(w, http.StatusBadRequest, "bad_request", "mentorado must be a positive integer")
				return
			}
			h(w, r, m)
			return
		}
		asMentorado.ServeHTTP(w, r)
	})
}

// SimPhone is the fake phone number a mentorado pairs with unless the scan
// names one: 55 11 9xxxx-xxxx built from the id.
func SimPhone(m int64) string { return fmt.Sprintf("55119%08d", m%100000000) }

// scan: {"phone": optional} — the fake phone scans the mentorado's live QR.
func (s *simulator) scan(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Phone string `json:"phone"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	if sa, handled := s.simAccountOf(w, r, m); handled {
		if sa != nil {
			s.providerScan(w, r, sa)
		}
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
	lq, err := s.bus.LiveQR(r.Context(), m)
	if err != nil || lq.QR.Code == "" {
		web.WriteError(w, http.StatusConflict, "no_qr", "no live QR code for this mentorado; call POST /v1/whatsapp/connect first")
		return
	}
	if err := s.fake.ScanQR(r.Context(), lq.QR.Code, ph); err != nil {
		web.WriteError(w, http.StatusConflict, "scan_failed", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]string{"phone": ph})
}

// pairCode: {"phone"} — the phone of that number types the live pairing
// code (after POST /v1/whatsapp/connect {"method":"phone","phone":…}).
func (s *simulator) pairCode(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Phone string `json:"phone"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	ph, err := phone.Normalize(req.Phone)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "invalid_phone", err.Error())
		return
	}
	lq, err := s.bus.LiveQR(r.Context(), m)
	if err != nil || lq.QR.PairingCode == "" {
		web.WriteError(w, http.StatusConflict, "no_pairing_code", "no live pairing code; call POST /v1/whatsapp/connect with method phone first")
		return
	}
	if err := s.fake.EnterPairingCode(r.Context(), ph, lq.QR.PairingCode); err != nil {
		web.WriteError(w, http.StatusConflict, "pairing_failed", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]string{"phone": ph})
}

// accountPhone is the number the mentorado's session is paired with.
func (s *simulator) accountPhone(ctx context.Context, m int64) (string, error) {
	ph, err := s.db.Devices().Phone(ctx, m)
	if err != nil {
		return "", err
	}
	if ph == "" {
		return "", errors.New("mentorado is not paired")
	}
	return ph, nil
}

// contactOf is the fake contact a sim request names and the account number
// it talks to; it writes the error response itself when either is missing.
func (s *simulator) contactOf(w http.ResponseWriter, r *http.Request, m int64, number string) (*wafake.Contact, string, bool) {
	from, err := phone.Normalize(number)
	if err != nil {
		web.WriteError(w, http.StatusBadRequest, "invalid_phone", err.Error())
		return nil, "", false
	}
	acct, err := s.accountPhone(r.Context(), m)
	if err != nil {
		web.WriteError(w, http.StatusConflict, "not_paired", err.Error())
		return nil, "", false
	}
	return s.fake.Contact(from), acct, true
}

// receipt: {"phone","message_id","kind"} — the contact's phone reports a
// message the mentorado sent as delivered (default), read or played.
func (s *simulator) receipt(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Phone     string `json:"phone"`
		MessageID string `json:"message_id"`
		Kind      string `json:"kind"`
		Group     string `json:"group"` // a message the mentorado sent to this group
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	kind := req.Kind
	switch kind {
	case "", "delivered":
		kind = ""
	case "read", "played":
	default:
		web.WriteError(w, http.StatusBadRequest, "bad_request", "kind must be delivered, read or played")
		return
	}
	if req.MessageID == "" {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "message_id is required")
		return
	}
	if sa, handled := s.simAccountOf(w, r, m); handled {
		if sa != nil {
			s.providerReceipt(w, r, sa, req.Phone, req.MessageID, req.Kind)
		}
		return
	}
	c, acct, ok := s.contactOf(w, r, m, req.Phone)
	if !ok {
		return
	}
	if req.Group != "" {
		g, ok := groupJID(w, req.Group)
		if !ok {
			return
		}
		if kind == "" {
			kind = "delivered"
		}
		if err := c.SendGroupReceipt(r.Context(), g, req.MessageID, kind); err != nil {
			web.WriteError(w, http.StatusConflict, "receipt_failed", err.Error())
			return
		}
		web.WriteJSON(w, http.StatusAccepted, map[string]bool{"ok": true})
		return
	}
	if err := c.SendReceipt(r.Context(), acct, req.MessageID, kind); err != nil {
		web.WriteError(w, http.StatusConflict, "receipt_failed", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusAccepted, map[string]bool{"ok": true})
}

// disconnect: {"reason": 401 | 515 | 402 | 440 | "replaced" | "drop" | "device_removed"}.
func (s *simulator) disconnect(w http.ResponseWriter, r *http.Request, m int64) {
	var req struct {
		Reason json.RawMessage `json:"reason"`
	}
	if !s.web.ReadJSON(w, r, &req) {
		return
	}
	kinds := map[string]wafake.KickKind{
		"401": wafake.Kick401, "515": wafake.Kick515, "402": wafake.KickBan, "ban": wafake.KickBan,
		"440": wafake.KickReplaced, "409": wafake.KickReplaced, "replaced": wafake.KickReplaced,
		"drop": wafake.KickDrop, "device_removed": wafake.KickDeviceRemoved,
	}
	reason := strings.Trim(string(req.Reason), `"`)
	kind, ok := kinds[reason]
	if !ok {
		web.WriteError(w, http.StatusBadRequest, "bad_request", "reason must be one of 401, 402, 440 (replaced), 515, drop, device_removed")
		return
	}
	acct, err := s.accountPhone(r.Context(), m)
	if err != nil {
		web.WriteError(w, http.StatusConflict, "not_paired", err.Error())
		return
	}
	a := s.fake.Account(acct)
	if a == nil {
		web.WriteError(w, http.StatusConflict, "not_paired", "the fake server does not know this account")
		return
	}
	k := wafake.Kick{Kind: kind}
	if kind == wafake.KickBan {
		k.BanExpiry = time.Minute
	}
	if err := a.Kick(k); err != nil {
		web.WriteError(w, http.StatusConflict, "kick_failed", err.Error())
		return
	}
	web.WriteJSON(w, http.StatusAccepted, map[string]string{"kicked": kind.String()})
}
