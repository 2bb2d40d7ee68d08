package stage

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// call does one JSON request; out may be nil. It returns the HTTP status.
func call(ctx context.Context, method, u, token string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return 0, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode: %w", method, u, err)
		}
	}
	return resp.StatusCode, nil
}

// Fake is a client of the fake's control API.
type Fake struct {
	URL, Token string
}

// Fake returns a client of the stack's fake.
func (s *Stack) FakeClient() Fake { return Fake{URL: s.FakeControl, Token: s.FakeToken} }

// LedgerMessage is a message a fake phone sent (cmd/wafake SentMessage).
type LedgerMessage struct {
	ID         string    `json:"id"`
	Account    string    `json:"account"`
	Mentorado  int64     `json:"mentorado"`
	Contact    string    `json:"contact"`
	PushName   string    `json:"push_name"`
	Text       string    `json:"text"`
	At         time.Time `json:"at"`
	Deliveries int       `json:"deliveries"`
	Acked      bool      `json:"acked"`
}

// Ledger is the fake's GET /v1/ledger.
type Ledger struct {
	Sent     []LedgerMessage `json:"sent"`
	Received []struct {
		ID, Account, Contact, Text string
		At                         time.Time
	} `json:"received"`
	Replaced int `json:"replaced"`
}

// Ledger reads the ledger.
func (f Fake) Ledger(ctx context.Context) (Ledger, error) {
	var l Ledger
	_, err := call(ctx, http.MethodGet, f.URL+"/v1/ledger", f.Token, nil, &l)
	return l, err
}

// Inbound makes the phone from send text to the account.
func (f Fake) Inbound(ctx context.Context, account, from, pushName, text string, mentorado int64) (string, error) {
	var out struct{ ID string }
	_, err := call(ctx, http.MethodPost, f.URL+"/v1/inbound", f.Token, map[string]any{
		"account": account, "from": from, "push_name": pushName, "text": text, "mentorado": mentorado,
	}, &out)
	return out.ID, err
}

// Redeliver makes the server send message id again.
func (f Fake) Redeliver(ctx context.Context, id string) error {
	_, err := call(ctx, http.MethodPost, f.URL+"/v1/redeliver", f.Token, map[string]string{"id": id}, nil)
	return err
}

// Disconnect throws the account's live connection off: reason 401, 402,
// 440, 515, drop or device_removed (cmd/wafake).
func (f Fake) Disconnect(ctx context.Context, account, reason string) error {
	_, err := call(ctx, http.MethodPost, f.URL+"/v1/disconnect", f.Token, map[string]string{"account": account, "reason": reason}, nil)
	return err
}

// Receipt makes the phone from report a message the account sent as
// delivered ("" ), read or played.
func (f Fake) Receipt(ctx context.Context, account, from, id, kind string) error {
	_, err := call(ctx, http.MethodPost, f.URL+"/v1/receipt", f.Token, map[string]string{"account": account, "from": from, "message_id": id, "kind": kind}, nil)
	return err
}

// Send makes the mentorado send text to phone through the notifier (the
// API a backend uses).
func (s *Stack) Send(ctx context.Context, m Mentorado, phone, text, clientID string) error {
	_, err := call(ctx, http.MethodPost, s.NotifierURL+"/v1/messages", m.Token, map[string]string{"phone": phone, "text": text, "client_id": clientID}, nil)
	return err
}

// PairCode makes the phone type a pairing code.
func (f Fake) PairCode(ctx context.Context, phone, code string) error {
	_, err := call(ctx, http.MethodPost, f.URL+"/v1/pair-code", f.Token, map[string]string{"phone": phone, "code": code}, nil)
	return err
}

// FakeAccount is one of GET /v1/accounts.
type FakeAccount struct {
	Phone     string `json:"phone"`
	Paired    bool   `json:"paired"`
	Connected bool   `json:"connected"`
}

// Accounts lists the fake's accounts.
func (f Fake) Accounts(ctx context.Context) ([]FakeAccount, error) {
	var out struct{ Accounts []FakeAccount }
	_, err := call(ctx, http.MethodGet, f.URL+"/v1/accounts", f.Token, nil, &out)
	return out.Accounts, err
}

// Mentorado is a tenant created on the notifier and paired with a fake
// phone.
type Mentorado struct {
	ID      int64
	Token   string
	Account string // its WhatsApp number on the fake
}

// PairMentorado creates a mentorado through the notifier's admin API,
// connects it with a pairing code and lets the fake phone account type it;
// it returns when the notifier reports the session connected.
func (s *Stack) PairMentorado(ctx context.Context, name, account string) (Mentorado, error) {
	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if _, err := call(ctx, http.MethodPost, s.NotifierURL+"/v1/admin/mentorados", s.AdminToken, map[string]string{"name": name}, &created); err != nil {
		return Mentorado{}, err
	}
	m := Mentorado{ID: created.ID, Token: created.Token, Account: account}
	if _, err := call(ctx, http.MethodPatch, s.NotifierURL+"/v1/sending", m.Token, stageSendSettings, nil); err != nil {
		return m, fmt.Errorf("sending settings of %d: %w", m.ID, err)
	}
	var st struct {
		Status      string `json:"status"`
		PairingCode string `json:"pairing_code"`
	}
	if _, err := call(ctx, http.MethodPost, s.NotifierURL+"/v1/whatsapp/connect", m.Token, map[string]string{"method": "phone", "phone": account}, &st); err != nil {
		return m, err
	}
	if st.PairingCode == "" {
		return m, fmt.Errorf("connect %d: no pairing code (status %q)", m.ID, st.Status)
	}
	if err := s.FakeClient().PairCode(ctx, account, st.PairingCode); err != nil {
		return m, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		var cur struct{ Status string }
		if _, err := call(ctx, http.MethodGet, s.NotifierURL+"/v1/whatsapp/status", m.Token, nil, &cur); err == nil && cur.Status == "connected" {
			return m, nil
		}
		if time.Now().After(deadline) {
			return m, fmt.Errorf("mentorado %d: not connected 60s after pairing", m.ID)
		}
		select {
		case <-ctx.Done():
			return m, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
