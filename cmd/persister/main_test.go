package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/persister"
	"github.com/zapbus/zapbus/internal/startup/startuptest"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestSettingsErrorsNameTheSetting(t *testing.T) {
	base := map[string]string{"DATABASE_URL": "postgres://x/y"}
	cases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{}, nil, "DATABASE_URL"},
		{map[string]string{"DATABASE_URL": "postgres://x/y", "ZAPBUS_PERSISTER_BATCH": "lots"}, nil, "ZAPBUS_PERSISTER_BATCH"},
		{map[string]string{"DATABASE_URL": "postgres://x/y", "ZAPBUS_PERSISTER_MAX_WAIT": "-1s"}, nil, "ZAPBUS_PERSISTER_MAX_WAIT"},
		{map[string]string{"DATABASE_URL": "postgres://x/y", "ZAPBUS_LOG_LEVEL": "loud"}, nil, "ZAPBUS_LOG_LEVEL"},
		{base, []string{"-batch", "0"}, "ZAPBUS_PERSISTER_BATCH"},
		{map[string]string{"DATABASE_URL": "postgres://x/y", "ZAPBUS_PERSISTER_ACK_WAIT": "500ms"}, nil, "ZAPBUS_PERSISTER_ACK_WAIT"},
		{map[string]string{"DATABASE_URL": "postgres://x/y", "ZAPBUS_PERSISTER_ACK_WAIT": "soon"}, nil, "ZAPBUS_PERSISTER_ACK_WAIT"},
		{base, []string{"-ack-wait", "2h"}, "ZAPBUS_PERSISTER_ACK_WAIT"},
		{base, []string{"replay", "--since", "1h", "--wait", "0s"}, "--wait"},
		{base, []string{"-consumer", "a.b"}, "ZAPBUS_PERSISTER_CONSUMER"},
		{map[string]string{"DATABASE_URL": "postgres://x/y", "ZAPBUS_PERSISTER_OUTBOX_INTERVAL": "10ms"}, nil, "ZAPBUS_PERSISTER_OUTBOX_INTERVAL"},
		{map[string]string{"DATABASE_URL": "postgres://x/y", "ZAPBUS_PERSISTER_CAMPAIGN_INTERVAL": "10ms"}, nil, "ZAPBUS_PERSISTER_CAMPAIGN_INTERVAL"},
		{base, []string{"replay"}, "--since"},
		{base, []string{"replay", "--since", "1h", "--from-seq", "3"}, "--since"},
		{base, []string{"rewind"}, "unknown command"},
	}
	for _, c := range cases {
		_, err := loadSettings(c.args, envOf(c.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("env %v args %v: error %v, want it to name %s", c.env, c.args, err, c.want)
		}
	}
	s, err := loadSettings([]string{"replay", "--since", "2h", "--mentorado", "7"}, envOf(base), io.Discard)
	if err != nil || s.Replay == nil || s.Replay.Since != 2*time.Hour || s.Replay.Mentorado != 7 {
		t.Fatalf("replay settings %+v, %v", s.Replay, err)
	}
	s, err = loadSettings(nil, envOf(base), io.Discard)
	if err != nil || s.HTTPAddr != DefaultHTTPAddr || s.Persister.Batch != persister.DefaultBatch || s.Persister.AckWait != persister.DefaultAckWait ||
		s.Persister.OutboxInterval != persister.DefaultOutboxInterval || s.Persister.CampaignInterval != persister.DefaultCampaignInterval {
		t.Fatalf("defaults %+v, %v", s, err)
	}
}

// tenantOne opens the test database and creates mentorado 1 in it.
func tenantOne(t *testing.T, dbURL string) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO mentorados (id, name) OVERRIDING SYSTEM VALUE VALUES (1, 'm')`); err != nil {
		t.Fatal(err)
	}
	return db
}

// testBus connects the test's own client to natsURL (closed at cleanup).
func testBus(t *testing.T, natsURL string, log zerolog.Logger) *bus.Bus {
	t.Helper()
	nc, err := bus.Connect(natsURL, "test", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publishInbound publishes, as the connector would, a text from Rita
// (5511955556666) to mentorado 1 with WhatsApp id waID.
func publishInbound(t *testing.T, b *bus.Bus, waID string) {
	t.Helper()
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	e, err := event.New(1, event.MessageEventID(1, waID), at, &event.Message{WAID: waID, ChatJID: "5511955556666@s.whatsapp.net",
		SenderJID: "5511955556666@s.whatsapp.net", Phone: "5511955556666", PushName: "Rita", Direction: event.DirectionIn,
		Kind: event.KindText, Text: "oi", Timestamp: at, Status: event.MessageReceived})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Publish(context.Background(), e); err != nil {
		t.Fatal(err)
	}
}

// TestRunServesAndReplays runs the binary's run against real Postgres and
// NATS: it becomes ready, applies a published message, exposes metrics,
// stops on cancel; replay then re-applies the stream and prints a summary.
func TestRunServesAndReplays(t *testing.T) {
	dbURL := testenv.Postgres(t)
	natsURL := testenv.NATS(t)
	ctx := context.Background()
	db := tenantOne(t, dbURL)
	env := envOf(map[string]string{"DATABASE_URL": dbURL, "NATS_URL": natsURL, "ZAPBUS_NATS_PROVISION": "true", "ZAPBUS_HTTP_ADDR": "127.0.0.1:0",
		"ZAPBUS_PERSISTER_MAX_WAIT": "50ms"})

	out := &testenv.Buffer{}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runWith(rctx, nil, env, out, io.Discard) }()
	defer func() { cancel(); <-done }()
	addrRe := regexp.MustCompile(`"http_addr":"([^"]+)"`)
	var base string
	testenv.Eventually(t, 20*time.Second, func() bool {
		m := addrRe.FindStringSubmatch(out.String())
		if m == nil {
			return false
		}
		base = "http://" + m[1]
		code, _ := startuptest.Get(base + "/readyz")
		return code == http.StatusOK
	}, "persister never ready; output:\n%s", out)
	if code, _ := startuptest.Get(base + "/healthz"); code != http.StatusOK {
		t.Fatalf("healthz %d", code)
	}

	publishInbound(t, testBus(t, natsURL, testenv.Logger(t)), "M1")
	testenv.Eventually(t, 20*time.Second, func() bool {
		var name string
		err := db.Pool.QueryRow(ctx, `SELECT l.name FROM whatsapp_messages t JOIN leads l ON l.id = t.lead_id WHERE t.wa_message_id = 'M1'`).Scan(&name)
		return err == nil && name == "Rita"
	}, "message not persisted with its lead")
	testenv.Eventually(t, 10*time.Second, func() bool {
		_, body := startuptest.Get(base + "/metrics")
		return strings.Contains(body, `zapbus_persister_events_applied_total{type="message"} 1`) &&
			strings.Contains(body, "zapbus_persister_consumer_lag") &&
			strings.Contains(body, "zapbus_persister_lead_events_published_total 1") &&
			strings.Contains(body, `zapbus_persister_events_applied_total{type="lead"} 1`)
	}, "metrics do not count the applied message, its lead's created event published and consumed back")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		done <- nil
	case <-time.After(20 * time.Second):
		t.Fatalf("run did not stop; goroutines:\n%s", testenv.Goroutines())
	}

	var summary, progress testenv.Buffer
	if err := runWith(ctx, []string{"replay", "--from-seq", "1", "--mentorado", "1"}, env, &summary, &progress); err != nil {
		t.Fatalf("replay: %v", err)
	}
	// The message and the lead event its lead's creation published.
	if !strings.Contains(summary.String(), "replay: 2 events applied, 0 dead-lettered") {
		t.Fatalf("summary %q", summary.String())
	}
	if !strings.Contains(progress.String(), "replay: seq 2/2") {
		t.Fatalf("progress %q", progress.String())
	}
}

// TestRunWaitsForPostgresAndNATS: a persister started while Postgres
// refuses connections and NATS is not running stays up, answers /healthz
// and a 503 /readyz naming what it waits for, retries with a log line per
// attempt, and becomes ready and applies events once both come back.
func TestRunWaitsForPostgresAndNATS(t *testing.T) {
	dbURL := testenv.Postgres(t)
	ctx := context.Background()
	db := tenantOne(t, dbURL)
	gate := startuptest.NewGate(t)
	gatedURL, pgAddr := gate.Redirect(t, dbURL)
	natsPort := startuptest.FreePort(t)
	natsURL := startuptest.NATSURL(natsPort)
	// ZAPBUS_NATS_PROVISION=false: as in production, the streams come from
	// the admin's provisioning step, which this persister waits for.
	env := envOf(map[string]string{"DATABASE_URL": gatedURL, "NATS_URL": natsURL, "ZAPBUS_NATS_PROVISION": "false", "ZAPBUS_HTTP_ADDR": "127.0.0.1:0",
		"ZAPBUS_PERSISTER_MAX_WAIT": "50ms"})

	proc := startuptest.Start(t, "persister", func(ctx context.Context, out io.Writer) error {
		return runWith(ctx, nil, env, out, io.Discard)
	})
	base := proc.BaseURL(startuptest.LoggedHTTPAddr)
	proc.WaitsForPostgresThenNATS(base, gate, pgAddr)

	// NATS comes back without zapbus's streams: the persister waits for
	// the admin's provisioning step, saying so, and then starts.
	testenv.NATSServerAt(t, natsPort, t.TempDir())
	testenv.Eventually(t, 30*time.Second, func() bool {
		proc.Alive()
		code, body := startuptest.Get(base + "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "zapbus-admin provision")
	}, "readyz never said the streams are not provisioned; output:\n%s", proc.Out)
	b := testBus(t, natsURL, testenv.Logger(t))
	if err := b.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	proc.WaitReady(base)
	publishInbound(t, b, "W1")
	testenv.Eventually(t, 20*time.Second, func() bool {
		var n int
		err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM whatsapp_messages WHERE wa_message_id = 'W1'`).Scan(&n)
		return err == nil && n == 1
	}, "message not persisted after the dependencies came back")
	proc.Stop()
}

// TestReplayGivesUpClearly: replay is a one-shot command; with Postgres
// unreachable it fails after --wait naming what it waited for.
func TestReplayGivesUpClearly(t *testing.T) {
	gate := startuptest.NewGate(t)
	env := envOf(map[string]string{"DATABASE_URL": "postgres://postgres@" + gate.Addr() + "/x?sslmode=disable",
		"NATS_URL": startuptest.NATSURL(startuptest.FreePort(t))})
	err := runWith(context.Background(), []string{"replay", "--since", "1h", "--wait", "1500ms"}, env, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "postgres: still unreachable after 1.5s") {
		t.Fatalf("replay error %v, want one saying postgres is still unreachable after 1.5s", err)
	}
	if gate.Refused() < 2 {
		t.Fatalf("replay tried %d times, want retries", gate.Refused())
	}
}
