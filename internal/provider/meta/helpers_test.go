package meta_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta"
	"github.com/zapbus/zapbus/internal/provider/meta/metafake"
)

// The testdata account (testdata/README.md).
const (
	pnid      = "106540352242922"
	display   = "15550783881"
	customer  = "5511987654321"
	token     = "EAAGtoken-S3CRET-0123456789abcdef"
	appSecret = "appsecret-S3CRET-fedcba9876543210"
	verifyTok = "verify-S3CRET-token-42"
	mentorado = int64(7)
)

func account(m int64) provider.Account {
	return provider.Account{Mentorado: m, Provider: event.ProviderMeta, Meta: &provider.MetaCredentials{
		PhoneNumberID: pnid, WABAID: "102290129340398", DisplayPhone: display,
		AccessToken: token, AppSecret: appSecret, VerifyToken: verifyTok,
	}}
}

// syncBuffer collects the driver's log lines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	srv  *metafake.Server
	num  *metafake.Number
	d    *meta.Driver
	acc  provider.Account
	logs *syncBuffer

	mu     sync.Mutex
	sleeps []time.Duration
}

func (f *fixture) waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

var fixedNow = time.Date(2025, 11, 30, 12, 0, 0, 0, time.UTC)

// setup starts a fake with the testdata account and a driver on it whose
// waits are recorded instead of slept (retries=0: the default).
func setup(t *testing.T, retries int) *fixture {
	t.Helper()
	f := &fixture{srv: metafake.New(t), acc: account(mentorado), logs: &syncBuffer{}}
	f.num = f.srv.AddAccount(metafake.Account{PhoneNumberID: pnid, DisplayPhone: display, Token: token})
	f.d = meta.New(meta.Config{
		BaseURL: f.srv.URL(),
		Retries: retries,
		Sleep: func(ctx context.Context, d time.Duration) error {
			f.mu.Lock()
			f.sleeps = append(f.sleeps, d)
			f.mu.Unlock()
			return ctx.Err()
		},
		Log: zerolog.New(f.logs).Level(zerolog.DebugLevel),
		Now: func() time.Time { return fixedNow },
	})
	return f
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signedRequest is a webhook request carrying body signed with secret.
func signedRequest(secret string, body []byte) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/providers/meta/7/webhook", bytes.NewReader(body))
	if secret != "" {
		r.Header.Set(meta.SignatureHeader, meta.Sign(secret, body))
	}
	return r
}

func webhook(t *testing.T, d *meta.Driver, acc provider.Account, body []byte) *provider.Inbound {
	t.Helper()
	in, err := d.Webhook(context.Background(), acc, signedRequest(appSecret, body), body)
	if err != nil {
		t.Fatalf("webhook: %v", err)
	}
	return in
}

// decode checks that env is a valid envelope of the contract (it
// survives event.Decode) and returns its payload.
func decode(t *testing.T, env event.Envelope) event.Payload {
	t.Helper()
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	got, p, err := event.Decode(b)
	if err != nil {
		t.Fatalf("event %s does not decode: %v", env.ID, err)
	}
	if got.Provider != event.ProviderMeta {
		t.Errorf("event %s: provider %q, want meta", env.ID, got.Provider)
	}
	if got.MentoradoID != env.MentoradoID {
		t.Errorf("event %s: mentorado changed in the round trip", env.ID)
	}
	return p
}

func commandCode(err error) string {
	var ce *event.CommandError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

// jsonEqual compares two JSON documents by value.
func jsonEqual(t *testing.T, what string, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: got is not JSON: %v", what, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("%s: want is not JSON: %v", what, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if !bytes.Equal(gb, wb) {
		t.Errorf("%s:\n got %s\nwant %s", what, gb, wb)
	}
}
