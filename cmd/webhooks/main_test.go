package main

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/startup/startuptest"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/webhook"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestSettingsErrorsNameTheSetting(t *testing.T) {
	with := func(kv ...string) map[string]string {
		m := map[string]string{"DATABASE_URL": "postgres://x/y"}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	cases := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{}, nil, "DATABASE_URL"},
		{with("ZAPBUS_HTTP_ADDR", ""), []string{"-http-addr", ""}, "ZAPBUS_HTTP_ADDR"},
		{with("ZAPBUS_WEBHOOK_ALLOW_NETS", "10.0.0.0/33"), nil, "ZAPBUS_WEBHOOK_ALLOW_NETS"},
		{with("ZAPBUS_WEBHOOK_ALLOW_NETS", "intranet"), nil, `"intranet" is not a CIDR or an IP address`},
		{with("ZAPBUS_WEBHOOK_ALLOW_NETS", "10.1.2.3/8"), nil, "did you mean 10.0.0.0/8"},
		{with("ZAPBUS_WEBHOOK_ALLOW_NETS", "0.0.0.0/0"), nil, "allows every address"},
		{with("ZAPBUS_WEBHOOK_ALLOW_NETS", "::/0"), nil, "allows every address"},
		{with("ZAPBUS_WEBHOOK_ALLOW_HTTP", "sometimes"), nil, "ZAPBUS_WEBHOOK_ALLOW_HTTP"},
		{with(), []string{"-allow-http", "maybe"}, "ZAPBUS_WEBHOOK_ALLOW_HTTP"},
		{with("ZAPBUS_WEBHOOK_TIMEOUT", "forever"), nil, "ZAPBUS_WEBHOOK_TIMEOUT"},
		{with("ZAPBUS_WEBHOOK_TIMEOUT", "10ms"), nil, "ZAPBUS_WEBHOOK_TIMEOUT"},
		{with(), []string{"-timeout", "1h"}, "ZAPBUS_WEBHOOK_TIMEOUT"},
		{with("ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER", "5s"), nil, "ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER"},
		{with("ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER", "-1h"), nil, "ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER"},
		{with("ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER", "never"), nil, "ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER"},
		{with("ZAPBUS_WEBHOOK_LOG_KEEP", "0"), nil, "ZAPBUS_WEBHOOK_LOG_KEEP"},
		{with("ZAPBUS_WEBHOOK_LOG_KEEP", "all"), nil, "ZAPBUS_WEBHOOK_LOG_KEEP"},
		{with(), []string{"-log-keep", "2000000"}, "ZAPBUS_WEBHOOK_LOG_KEEP"},
		{with("ZAPBUS_WEBHOOK_RECONCILE_INTERVAL", "1ms"), nil, "ZAPBUS_WEBHOOK_RECONCILE_INTERVAL"},
		{with("ZAPBUS_WEBHOOK_BACKOFF", "1s,soon"), nil, `ZAPBUS_WEBHOOK_BACKOFF: "soon" is not a positive duration`},
		{with("ZAPBUS_WEBHOOK_BACKOFF", "1m,5s"), nil, "must not decrease"},
		{with("ZAPBUS_WEBHOOK_BACKOFF", "0s"), nil, "ZAPBUS_WEBHOOK_BACKOFF"},
		{with(), []string{"-name", " "}, "ZAPBUS_WEBHOOK_NAME"},
		{with("ZAPBUS_LOG_LEVEL", "loud"), nil, "ZAPBUS_LOG_LEVEL"},
		{with("ZAPBUS_NATS_PROVISION", "perhaps"), nil, "ZAPBUS_NATS_PROVISION"},
		{with(), []string{"extra"}, "unexpected arguments"},
	}
	for _, c := range cases {
		_, err := loadSettings(c.args, envOf(c.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("env %v args %v: error %v, want it to name %s", c.env, c.args, err, c.want)
		}
	}
}

func TestSettingsDefaultsAndOverrides(t *testing.T) {
	s, err := loadSettings(nil, envOf(map[string]string{"DATABASE_URL": "postgres://x/y"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	w := s.Webhook
	host, _ := os.Hostname()
	if s.HTTPAddr != DefaultHTTPAddr || s.NATSURL != "nats://127.0.0.1:4222" || len(w.Policy.AllowNets) != 0 || w.Policy.AllowHTTP ||
		w.Timeout != 10*time.Second || w.Backoff != nil || w.AutoPauseAfter != 24*time.Hour || w.LogKeep != 1000 ||
		w.ReconcileInterval != 10*time.Second || w.Name != host || !s.ProvisionIfMissing || s.Provision {
		t.Fatalf("defaults %+v", s)
	}

	// Environment, then flags over it.
	env := envOf(map[string]string{"DATABASE_URL": "postgres://x/y", "NATS_URL": "nats://u:p@n:4222",
		"ZAPBUS_WEBHOOK_ALLOW_NETS": " 10.20.0.0/16, 192.168.1.20 ,fd00::/8,", "ZAPBUS_WEBHOOK_ALLOW_HTTP": "true",
		"ZAPBUS_WEBHOOK_TIMEOUT": "3s", "ZAPBUS_WEBHOOK_BACKOFF": "1s, 1s,30s", "ZAPBUS_WEBHOOK_AUTO_PAUSE_AFTER": "2h",
		"ZAPBUS_WEBHOOK_LOG_KEEP": "50", "ZAPBUS_WEBHOOK_NAME": "wh-a", "ZAPBUS_LOG_LEVEL": "debug"})
	s, err = loadSettings([]string{"-timeout", "4s", "-allow-nets", "127.0.0.0/8"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	w = s.Webhook
	if w.Timeout != 4*time.Second || len(w.Policy.AllowNets) != 1 || w.Policy.AllowNets[0] != netip.MustParsePrefix("127.0.0.0/8") ||
		!w.Policy.AllowHTTP || len(w.Backoff) != 3 || w.Backoff[2] != 30*time.Second || w.AutoPauseAfter != 2*time.Hour ||
		w.LogKeep != 50 || w.Name != "wh-a" || s.ProvisionIfMissing {
		t.Fatalf("overrides %+v", s)
	}
	s, err = loadSettings([]string{"-auto-pause-after", "off"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.Webhook.AutoPauseAfter >= 0 {
		t.Fatalf("auto-pause off: %s, want negative (never)", s.Webhook.AutoPauseAfter)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("192.168.1.20/32"), netip.MustParsePrefix("fd00::/8")}
	if got, err := webhook.ParseAllowNets("::ffff:10.0.0.7"); err != nil || len(got) != 1 || got[0] != netip.MustParsePrefix("10.0.0.7/32") {
		t.Fatalf("IPv4-mapped address: %v, %v", got, err)
	}
	if len(s.Webhook.Policy.AllowNets) != len(want) {
		t.Fatalf("allow nets %v, want %v", s.Webhook.Policy.AllowNets, want)
	}
	for i := range want {
		if s.Webhook.Policy.AllowNets[i] != want[i] {
			t.Fatalf("allow nets %v, want %v", s.Webhook.Policy.AllowNets, want)
		}
	}
}

// TestRunWaitsForPostgresAndNATS: a dispatcher started while Postgres
// refuses connections and NATS is not running stays up, answers /healthz
// and a 503 /readyz naming what it waits for, retries with a log line per
// attempt, and starts delivering once both come back; SIGTERM (cancel)
// stops it cleanly.
func TestRunWaitsForPostgresAndNATS(t *testing.T) {
	dbURL := testenv.Postgres(t)
	gate := startuptest.NewGate(t)
	gatedURL, pgAddr := gate.Redirect(t, dbURL)
	natsPort := startuptest.FreePort(t)
	natsURL := startuptest.NATSURL(natsPort)
	env := envOf(map[string]string{"DATABASE_URL": gatedURL, "NATS_URL": natsURL, "ZAPBUS_NATS_PROVISION": "false",
		"ZAPBUS_HTTP_ADDR": "127.0.0.1:0", "ZAPBUS_WEBHOOK_RECONCILE_INTERVAL": "200ms"})

	proc := startuptest.Start(t, "webhooks", func(ctx context.Context, out io.Writer) error {
		return runWith(ctx, nil, env, out, io.Discard)
	})
	base := proc.BaseURL(startuptest.LoggedHTTPAddr)
	proc.WaitsForPostgresThenNATS(base, gate, pgAddr)

	// NATS comes back without zapbus's streams: the dispatcher waits for
	// the admin's provisioning step, saying so, and then starts.
	testenv.NATSServerAt(t, natsPort, t.TempDir())
	testenv.Eventually(t, 30*time.Second, func() bool {
		proc.Alive()
		code, body := startuptest.Get(base + "/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "zapbus-admin provision")
	}, "readyz never said the streams are not provisioned; output:\n%s", proc.Out)
	nc, err := bus.Connect(natsURL, "test", testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := bus.New(nc, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Provision(context.Background()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() bool {
		proc.Alive()
		return strings.Contains(proc.Out.String(), `"message":"delivering"`)
	}, "the dispatcher never started after its dependencies came back:\n%s", proc.Out)
	proc.WaitReady(base)
	if code, body := startuptest.Get(base + "/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("metrics %d:\n%s", code, body)
	}
	proc.Stop()
	if !strings.Contains(proc.Out.String(), `"message":"stopped"`) {
		t.Fatalf("no clean stop logged:\n%s", proc.Out)
	}
}

// TestSecretsNotLogged: the start-up line and every retry name the
// database and NATS without their passwords.
func TestSecretsNotLogged(t *testing.T) {
	gate := startuptest.NewGate(t)
	env := envOf(map[string]string{
		"DATABASE_URL": "postgres://zapbus:pg-secret-123@" + gate.Addr() + "/x?sslmode=disable",
		"NATS_URL":     "nats://webhooks:nats-secret-456@127.0.0.1:1", "ZAPBUS_HTTP_ADDR": "off"})
	ctx, cancel := context.WithCancel(context.Background())
	out := &testenv.Buffer{}
	done := make(chan error, 1)
	go func() { done <- runWith(ctx, nil, env, out, io.Discard) }()
	testenv.Eventually(t, 20*time.Second, func() bool {
		return strings.Count(out.String(), "postgres unavailable; retrying") >= 2
	}, "no retries logged:\n%s", out)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run after cancel: %v", err)
	}
	for _, secret := range []string{"pg-secret-123", "nats-secret-456"} {
		if strings.Contains(out.String(), secret) {
			t.Fatalf("log holds %s:\n%s", secret, out)
		}
	}
}
