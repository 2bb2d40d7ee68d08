package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/wafake"
)

// control is the fake's HTTP control API: the fake phones' side of what
// cmd/devstack's /v1/dev/sim endpoints do, addressed by account phone
// number instead of mentorado (the fake knows nothing of zapbus), plus the
// ledger the chaos run compares the tables with.
//
//	POST /v1/scan        {"code","phone"}              the phone scans a QR code
//	POST /v1/pair-code   {"phone","code"}              the phone types a pairing code
//	POST /v1/inbound     {"account","from","text","push_name","mentorado"} → {"id"}
//	POST /v1/redeliver   {"id"}                        the server delivers the same stanza again
//	POST /v1/receipt     {"account","from","message_id","kind"}
//	POST /v1/disconnect  {"account","reason"}          401 | 402 | 440 (replaced) | 515 | drop | device_removed
//	POST /v1/registered  {"phone","registered"}        IsOnWhatsApp answers (digits, the exact form: 9th digit)
//	POST /v1/fail-sends  {"account","count","code","to"} refuse the account's next sends (to one contact)
//	GET  /v1/accounts                                  [{"phone","paired","connected"}]
//	GET  /v1/ledger                                    see Ledger
//	GET  /healthz                                      no token
type control struct {
	fake  *wafake.Server
	token string
	log   zerolog.Logger

	mu       sync.Mutex
	sent     []*SentMessage
	byID     map[string]*SentMessage
	contacts map[string]map[string]bool // account → contact phones it was driven with
}

// SentMessage is one message a fake phone sent to an account, as the ledger
// lists it.
type SentMessage struct {
	ID         string    `json:"id"`
	Account    string    `json:"account"`             // the account's phone
	Mentorado  int64     `json:"mentorado,omitempty"` // as the caller labelled it
	Contact    string    `json:"contact"`             // the fake phone's number
	PushName   string    `json:"push_name,omitempty"` // the name it sent with
	Text       string    `json:"text"`
	At         time.Time `json:"at"`
	Deliveries int       `json:"deliveries"` // stanzas sent to the account's client (redeliveries included)
	Acked      bool      `json:"acked"`      // the client sent its receipt: WhatsApp would not redeliver it
}

// ReceivedMessage is one message an account's client sent to a fake phone.
type ReceivedMessage struct {
	ID      string    `json:"id"`
	Account string    `json:"account"`
	Contact string    `json:"contact"`
	Text    string    `json:"text"`
	At      time.Time `json:"at"`
	// Deliveries is how many times the id reached the phone (a repeated
	// id is listed once, as a phone shows it).
	Deliveries int `json:"deliveries"`
}

// Ledger is everything the fake phones sent and received.
type Ledger struct {
	Sent     []SentMessage     `json:"sent"`
	Received []ReceivedMessage `json:"received"`
	// Replaced counts logins that replaced a live connection of the same
	// device: two processes running one session at once.
	Replaced int `json:"replaced"`
}

func newControl(fake *wafake.Server, token string, log zerolog.Logger) *control {
	return &control{fake: fake, token: token, log: log, byID: map[string]*SentMessage{}, contacts: map[string]map[string]bool{}}
}

func (c *control) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	auth := func(pattern string, h http.HandlerFunc) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(c.token)) != 1 {
				writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
				return
			}
			h(w, r)
		})
	}
	auth("POST /v1/scan", c.scan)
	auth("POST /v1/pair-code", c.pairCode)
	auth("POST /v1/inbound", c.inbound)
	auth("POST /v1/redeliver", c.redeliver)
	auth("POST /v1/receipt", c.receipt)
	auth("POST /v1/disconnect", c.disconnect)
	auth("POST /v1/registered", c.registered)
	auth("POST /v1/fail-sends", c.failSends)
	auth("GET /v1/accounts", c.accounts)
	auth("GET /v1/ledger", c.ledger)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]string{"code": errCode, "message": msg}})
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error())
		return false
	}
	return true
}

// phones normalizes the named numbers, answering 400 for the first bad one.
func phones(w http.ResponseWriter, nums ...*string) bool {
	for _, n := range nums {
		p, err := phone.Normalize(*n)
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid_phone", err.Error())
			return false
		}
		*n = p
	}
	return true
}

// opContext bounds one control operation: a fake phone waits for the
// client at most this long.
func opContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 30*time.Second)
}

func (c *control) scan(w http.ResponseWriter, r *http.Request) {
	var req struct{ Code, Phone string }
	if !readJSON(w, r, &req) || !phones(w, &req.Phone) {
		return
	}
	ctx, cancel := opContext(r)
	defer cancel()
	if err := c.fake.ScanQR(ctx, req.Code, req.Phone); err != nil {
		writeError(w, http.StatusConflict, "scan_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"phone": req.Phone})
}

func (c *control) pairCode(w http.ResponseWriter, r *http.Request) {
	var req struct{ Phone, Code string }
	if !readJSON(w, r, &req) || !phones(w, &req.Phone) {
		return
	}
	ctx, cancel := opContext(r)
	defer cancel()
	if err := c.fake.EnterPairingCode(ctx, req.Phone, req.Code); err != nil {
		writeError(w, http.StatusConflict, "pairing_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"phone": req.Phone})
}

func (c *control) inbound(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Account   string `json:"account"`
		From      string `json:"from"`
		Text      string `json:"text"`
		PushName  string `json:"push_name"`
		Mentorado int64  `json:"mentorado"`
	}
	if !readJSON(w, r, &req) || !phones(w, &req.Account, &req.From) {
		return
	}
	if req.Text == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "text is required")
		return
	}
	ct := c.fake.Contact(req.From)
	if req.PushName != "" {
		ct.SetPushName(req.PushName)
	}
	ctx, cancel := opContext(r)
	defer cancel()
	// The message is queued on the fake server even when the client is
	// offline (delivered at its next login), so an id is a ledger entry.
	id, err := ct.SendText(ctx, req.Account, req.Text)
	if err != nil && id == "" {
		writeError(w, http.StatusConflict, "send_failed", err.Error())
		return
	}
	c.mu.Lock()
	m := &SentMessage{ID: id, Account: req.Account, Mentorado: req.Mentorado, Contact: req.From, PushName: req.PushName, Text: req.Text, At: time.Now().UTC()}
	c.sent = append(c.sent, m)
	c.byID[id] = m
	c.noteContactLocked(req.Account, req.From)
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"id": id})
}

func (c *control) noteContactLocked(account, contact string) {
	if c.contacts[account] == nil {
		c.contacts[account] = map[string]bool{}
	}
	c.contacts[account][contact] = true
}

func (c *control) redeliver(w http.ResponseWriter, r *http.Request) {
	var req struct{ ID string }
	if !readJSON(w, r, &req) {
		return
	}
	ctx, cancel := opContext(r)
	defer cancel()
	if err := c.fake.Redeliver(ctx, req.ID); err != nil {
		code := http.StatusConflict
		if errors.Is(err, wafake.ErrUnknownMessage) {
			code = http.StatusNotFound
		}
		writeError(w, code, "redeliver_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (c *control) receipt(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Account   string `json:"account"`
		From      string `json:"from"`
		MessageID string `json:"message_id"`
		Kind      string `json:"kind"`
	}
	if !readJSON(w, r, &req) || !phones(w, &req.Account, &req.From) {
		return
	}
	switch req.Kind {
	case "", "delivered":
		req.Kind = ""
	case "read", "played":
	default:
		writeError(w, http.StatusBadRequest, "bad_request", "kind must be delivered, read or played")
		return
	}
	if req.MessageID == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "message_id is required")
		return
	}
	ctx, cancel := opContext(r)
	defer cancel()
	if err := c.fake.Contact(req.From).SendReceipt(ctx, req.Account, req.MessageID, req.Kind); err != nil {
		writeError(w, http.StatusConflict, "receipt_failed", err.Error())
		return
	}
	c.mu.Lock()
	c.noteContactLocked(req.Account, req.From)
	c.mu.Unlock()
	writeJSON(w, http.StatusAccepted, map[string]bool{"ok": true})
}

var kickKinds = map[string]wafake.KickKind{
	"401": wafake.Kick401, "515": wafake.Kick515, "402": wafake.KickBan, "ban": wafake.KickBan,
	"440": wafake.KickReplaced, "409": wafake.KickReplaced, "replaced": wafake.KickReplaced,
	"drop": wafake.KickDrop, "device_removed": wafake.KickDeviceRemoved,
}

func (c *control) disconnect(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Account string          `json:"account"`
		Reason  json.RawMessage `json:"reason"`
	}
	if !readJSON(w, r, &req) || !phones(w, &req.Account) {
		return
	}
	kind, ok := kickKinds[strings.Trim(string(req.Reason), `"`)]
	if !ok {
		writeError(w, http.StatusBadRequest, "bad_request", "reason must be one of 401, 402, 440 (replaced), 515, drop, device_removed")
		return
	}
	a := c.fake.Account(req.Account)
	if a == nil {
		writeError(w, http.StatusNotFound, "not_paired", "the fake server does not know this account")
		return
	}
	k := wafake.Kick{Kind: kind}
	if kind == wafake.KickBan {
		k.BanExpiry = time.Minute
	}
	if err := a.Kick(k); err != nil {
		writeError(w, http.StatusConflict, "kick_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"kicked": kind.String()})
}

// Account is one fake account as GET /v1/accounts lists it.
type Account struct {
	Phone     string `json:"phone"`
	Paired    bool   `json:"paired"`
	Connected bool   `json:"connected"`
}

func (c *control) accounts(w http.ResponseWriter, _ *http.Request) {
	out := []Account{}
	for _, a := range c.fake.Accounts() {
		out = append(out, Account{Phone: a.Phone(), Paired: a.Paired(), Connected: a.Connected()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"accounts": out})
}

func (c *control) ledger(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	sent := make([]SentMessage, 0, len(c.sent))
	for _, m := range c.sent {
		sent = append(sent, *m)
	}
	pairs := map[string][]string{}
	for acct, cs := range c.contacts {
		for ct := range cs {
			pairs[acct] = append(pairs[acct], ct)
		}
	}
	c.mu.Unlock()
	for i := range sent {
		sent[i].Deliveries = c.fake.Deliveries(sent[i].ID)
		sent[i].Acked = c.fake.ReceiptSent(sent[i].ID)
	}
	l := Ledger{Sent: sent, Received: []ReceivedMessage{}, Replaced: c.fake.Count(wafake.CountReplaced)}
	seen := map[string]bool{}
	for _, cts := range pairs {
		for _, ct := range cts {
			if seen[ct] {
				continue
			}
			seen[ct] = true
			for _, m := range c.fake.Contact(ct).Messages() {
				l.Received = append(l.Received, ReceivedMessage{ID: m.ID, Account: m.From, Contact: ct, Text: m.Text, At: m.Timestamp,
					Deliveries: c.fake.Contact(ct).DeliveriesIn(m.Chat, m.ID)})
			}
		}
	}
	slices.SortFunc(l.Received, func(a, b ReceivedMessage) int { return a.At.Compare(b.At) })
	writeJSON(w, http.StatusOK, l)
}

// registered sets whether a number is on WhatsApp. The number is taken as
// given (E.164 digits, an optional +): the form matters for the Brazilian
// 9th digit, so it is not normalized.
func (c *control) registered(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Phone      string `json:"phone"`
		Registered bool   `json:"registered"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	req.Phone = strings.TrimPrefix(req.Phone, "+")
	if len(req.Phone) < 8 || len(req.Phone) > 15 || strings.Trim(req.Phone, "0123456789") != "" {
		writeError(w, http.StatusBadRequest, "invalid_phone", "phone must be 8 to 15 digits (E.164, the exact form)")
		return
	}
	c.fake.SetRegistered(req.Phone, req.Registered)
	writeJSON(w, http.StatusOK, map[string]any{"phone": req.Phone, "registered": req.Registered})
}

// failSends makes the server refuse an account's next sends with an error
// ack (code 479 by default), to one contact when "to" is set.
func (c *control) failSends(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Account string `json:"account"`
		Count   int    `json:"count"`
		Code    int    `json:"code"`
		To      string `json:"to"`
	}
	if !readJSON(w, r, &req) || !phones(w, &req.Account) {
		return
	}
	if req.To != "" && !phones(w, &req.To) {
		return
	}
	if req.Count < 1 || req.Count > 100000 || req.Code < 0 || req.Code > 999 {
		writeError(w, http.StatusBadRequest, "bad_request", "count must be 1 to 100000, code 0 (479) to 999")
		return
	}
	a := c.fake.Account(req.Account)
	if a == nil {
		writeError(w, http.StatusNotFound, "not_paired", "the fake server does not know this account")
		return
	}
	if req.To != "" {
		a.FailSendsTo(req.To, req.Count, req.Code)
	} else {
		a.FailSends(req.Count, req.Code)
	}
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
