package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// env is one test's real Postgres database and embedded JetStream server,
// with mentorados 1 to 3 and a gateway running a fake driver.
type env struct {
	t       *testing.T
	db      *store.DB
	bus     *bus.Bus
	natsURL string
	configs *provider.Configs
	drv     *fakeDriver
	gw      *Gateway
	srv     *httptest.Server
	cancel  context.CancelFunc
}

func newEnv(t *testing.T, d provider.Driver, cfg Config) *env {
	var drv *fakeDriver
	if f, ok := d.(interface{ fake() *fakeDriver }); ok {
		drv = f.fake()
	}
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Pool.Exec(ctx, `INSERT INTO mentorados (id, name) OVERRIDING SYSTEM VALUE
		SELECT g, 'mentorado ' || g FROM generate_series(1, 3) g`); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, db: db, natsURL: testenv.NATS(t), drv: drv}
	nc, err := bus.Connect(e.natsURL, "zapbus-gateway", testenv.Logger(t).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if e.bus, err = bus.New(nc, bus.Config{ProvisionIfMissing: true}); err != nil {
		t.Fatal(err)
	}
	if err := e.bus.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	ms, err := e.bus.MediaStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	line, err := secretbox.Generate()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := secretbox.Parse(line)
	if err != nil {
		t.Fatal(err)
	}
	e.configs = provider.NewConfigs(db, keys)
	if cfg.QRRefresh == 0 {
		cfg.QRRefresh = 20 * time.Millisecond
	}
	e.gw, err = New(Deps{DB: db, Bus: e.bus, Configs: e.configs, Media: ms, Drivers: []provider.Driver{d}, Log: testenv.Logger(t)}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.gw.Handler())
	t.Cleanup(e.srv.Close)
	rctx, cancel := context.WithCancel(ctx)
	e.cancel = cancel
	done := make(chan error, 1)
	go func() { done <- e.gw.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	// Run subscribes in the background: wait until a command is served.
	testenv.Eventually(t, 10*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := e.bus.Request(ctx, event.ProviderCommandSubject(d.Provider(), 999, event.VerbStatus), nil)
		return err == nil
	}, "gateway not serving commands")
	return e
}

// configure stores acc as mentorado m's configuration of its provider
// (sealed, as the admin API stores it): the active one by priority.
func (e *env) configure(m int64, acc provider.Account) {
	e.t.Helper()
	acc.Mentorado = m
	if err := e.configs.Put(context.Background(), acc); err != nil {
		e.t.Fatal(err)
	}
}

func metaAccount(pnid, secret string) provider.Account {
	return provider.Account{Provider: event.ProviderMeta, Meta: &provider.MetaCredentials{
		PhoneNumberID: pnid, WABAID: "9" + pnid, DisplayPhone: "5511900000" + pnid,
		AccessToken: "token-" + pnid, AppSecret: secret, VerifyToken: "verify-" + pnid,
	}}
}

// fakeDriver is a small provider: its webhooks are JSON
// {"number": phone_number_id, "messages": [{id, from, text, media}]}
// authenticated by header X-Test-Signature == the account's app secret.
type fakeDriver struct {
	p      event.Provider
	window time.Duration // >0: Windowed
	qr     bool          // QRPairer

	mu         sync.Mutex
	sends      []provider.SendRequest
	sendErr    error
	status     event.Status
	qrCodes    int
	rogue      int64 // >0: webhooks report an event of this mentorado
	fetchFails bool
}

type fakeDelivery struct {
	Number   string `json:"number"`
	Messages []struct {
		ID    string `json:"id"`
		From  string `json:"from"`
		Text  string `json:"text"`
		Media string `json:"media"` // content of an image
	} `json:"messages"`
}

func (d *fakeDriver) Provider() event.Provider { return d.p }

func (d *fakeDriver) fake() *fakeDriver { return d }

func storeRow(m int64, p event.Provider) store.ProviderRow {
	return store.ProviderRow{MentoradoID: m, Provider: p}
}

func (d *fakeDriver) Status(ctx context.Context, acc provider.Account) (event.StatusReply, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.status
	if st == "" {
		st = event.StatusConnected
	}
	return event.StatusReply{Status: st}, nil
}

func (d *fakeDriver) Connect(ctx context.Context, acc provider.Account, req event.ConnectRequest) (event.StatusReply, error) {
	return d.Status(ctx, acc)
}

func (d *fakeDriver) Disconnect(ctx context.Context, acc provider.Account) (event.StatusReply, error) {
	return event.StatusReply{Status: event.StatusDisconnected}, nil
}

func (d *fakeDriver) Logout(ctx context.Context, acc provider.Account) (event.StatusReply, error) {
	return event.StatusReply{Status: event.StatusLoggedOut}, nil
}

func (d *fakeDriver) Send(ctx context.Context, acc provider.Account, req provider.SendRequest) (*event.Message, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sendErr != nil {
		return nil, d.sendErr
	}
	d.sends = append(d.sends, req)
	return &event.Message{WAID: fmt.Sprintf("wamid.%d", len(d.sends)), Kind: req.Kind, Text: req.Text}, nil
}

func (d *fakeDriver) sent() []provider.SendRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]provider.SendRequest(nil), d.sends...)
}

func (d *fakeDriver) set(f func(d *fakeDriver)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *fakeDriver) Webhook(ctx context.Context, acc provider.Account, r *http.Request, body []byte) (*provider.Inbound, error) {
	secret := ""
	if acc.Meta != nil {
		secret = acc.Meta.AppSecret
	}
	if acc.ZAPI != nil {
		secret = acc.ZAPI.WebhookSecret
		if r.Header.Get(HeaderWebhookSecret) != secret {
			return nil, provider.ErrUnauthenticated
		}
	} else if r.Header.Get("X-Test-Signature") != secret {
		return nil, provider.ErrUnauthenticated
	}
	var del fakeDelivery
	if err := json.Unmarshal(body, &del); err != nil {
		return nil, provider.ErrBadPayload
	}
	in := &provider.Inbound{}
	if acc.Meta != nil && del.Number != acc.Meta.PhoneNumberID {
		in.Rejected = append(in.Rejected, "entry for phone number id "+del.Number+", not this mentorado's")
		return in, nil
	}
	d.mu.Lock()
	rogue := d.rogue
	d.mu.Unlock()
	for _, m := range del.Messages {
		mentorado := acc.Mentorado
		if rogue > 0 {
			mentorado = rogue
		}
		msg := &event.Message{WAID: m.ID, ChatJID: phone.JID(m.From), SenderJID: phone.JID(m.From), Phone: m.From,
			Direction: event.DirectionIn, Kind: event.KindText, Text: m.Text, Timestamp: time.Unix(1_700_000_000, 0).UTC(), Status: event.MessageReceived}
		if m.Media != "" {
			msg.Kind, msg.Text, msg.Caption = event.KindImage, "", m.Text
			in.Media = append(in.Media, provider.MediaRef{WAID: m.ID, ChatJID: msg.ChatJID, Kind: event.KindImage, ProviderID: m.Media, MIME: "image/png"})
		}
		env, err := event.New(mentorado, event.MessageEventID(mentorado, m.ID), msg.Timestamp, msg)
		if err != nil {
			return nil, err
		}
		in.Events = append(in.Events, env)
	}
	return in, nil
}

// FetchMedia returns a PNG whose bytes end with the reference's id.
func (d *fakeDriver) FetchMedia(ctx context.Context, acc provider.Account, ref provider.MediaRef, max int64) ([]byte, string, error) {
	d.mu.Lock()
	fails := d.fetchFails
	d.mu.Unlock()
	if fails {
		return nil, "", errors.New("gone")
	}
	png := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), []byte(ref.ProviderID)...)
	return png, "image/png", nil
}

func (d *fakeDriver) VerifyWebhook(acc provider.Account, q map[string][]string) (string, error) {
	if acc.Meta == nil || len(q["hub.verify_token"]) != 1 || q["hub.verify_token"][0] != acc.Meta.VerifyToken {
		return "", provider.ErrUnauthenticated
	}
	return q["hub.challenge"][0], nil
}

// windowedDriver adds the Windowed capability.
type windowedDriver struct{ *fakeDriver }

func (d windowedDriver) Window() time.Duration { return d.window }

// qrDriver adds the QRPairer capability.
type qrDriver struct{ *fakeDriver }

func (d qrDriver) QR(ctx context.Context, acc provider.Account) (string, time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.qrCodes++
	return fmt.Sprintf("qr-code-%d", d.qrCodes), time.Time{}, nil
}

// provider is the gateway's one provider (tests run one driver).
func (g *Gateway) provider() event.Provider {
	for p := range g.drivers {
		return p
	}
	return ""
}

// post delivers a webhook body to path with headers.
func (e *env) post(path string, body []byte, headers map[string]string) (int, string) {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// events returns every envelope stored in WA_EVENTS, in order.
func (e *env) events() []event.Envelope {
	e.t.Helper()
	return e.stored(bus.StreamEvents)
}

func (e *env) stored(stream string) []event.Envelope {
	e.t.Helper()
	ctx := context.Background()
	st, err := e.bus.JS.Stream(ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []event.Envelope
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		msg, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		env, _, err := event.Decode(msg.Data)
		if err != nil {
			e.t.Fatalf("stored envelope %d: %v", seq, err)
		}
		out = append(out, env)
	}
	return out
}

// command sends a command to the provider's subject and decodes the reply.
func (e *env) command(m int64, v event.Verb, body any) event.Reply {
	e.t.Helper()
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			e.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	msg, err := e.bus.Request(ctx, event.ProviderCommandSubject(e.gw.provider(), m, v), data)
	if err != nil {
		e.t.Fatalf("command %s: %v", v, err)
	}
	var r event.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		e.t.Fatalf("reply: %v: %s", err, msg.Data)
	}
	return r
}

func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	var c prometheus.Counter
	switch name {
	case "webhooks":
		c = e.gw.metrics.webhooks.WithLabelValues(labels...)
	case "duplicates":
		c = e.gw.metrics.duplicates.WithLabelValues(labels...)
	case "commands":
		c = e.gw.metrics.commands.WithLabelValues(labels...)
	default:
		e.t.Fatalf("unknown metric %s", name)
	}
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		e.t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func delivery(number string, msgs ...string) []byte {
	var d fakeDelivery
	d.Number = number
	for i := 0; i+2 < len(msgs); i += 3 {
		d.Messages = append(d.Messages, struct {
			ID    string `json:"id"`
			From  string `json:"from"`
			Text  string `json:"text"`
			Media string `json:"media"`
		}{ID: msgs[i], From: msgs[i+1], Text: msgs[i+2]})
	}
	b, _ := json.Marshal(d)
	return b
}
