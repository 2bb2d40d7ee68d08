package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/testenv"
)

func TestProvisionCreatesEverythingServicesVerify(t *testing.T) {
	url := testenv.NATS(t)
	env := map[string]string{"NATS_URL": url, "ZAPBUS_LEASE_TTL": "9s"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := &testenv.Buffer{}
	if err := run(ctx, []string{"provision", "-consumer", "backend=wa.*.evt.>", "-consumer", "team42=wa.42.evt.>"}, func(k string) string { return env[k] }, out); err != nil {
		t.Fatalf("provision: %v\n%s", err, out)
	}
	for _, name := range bus.Requires("") {
		if !strings.Contains(out.String(), name) {
			t.Errorf("provision output does not list %s:\n%s", name, out)
		}
	}
	// Running it again is harmless, and every service now starts.
	if err := run(ctx, []string{"provision"}, func(k string) string { return env[k] }, io.Discard); err != nil {
		t.Fatalf("second provision: %v", err)
	}
	for _, name := range []string{"zapbus-connector", "zapbus-persister", "zapbus-notifier"} {
		b, err := bus.Open(ctx, url, name, bus.Config{}, testenv.Logger(t))
		if err != nil {
			t.Fatalf("%s after provision: %v", name, err)
		}
		if name == "zapbus-connector" && b.Config().LeaseTTL != 9*time.Second {
			t.Errorf("lease TTL %s, want the provisioned 9s", b.Config().LeaseTTL)
		}
		if name == "zapbus-persister" {
			for team, filter := range map[string]string{"backend": "wa.*.evt.>", "team42": "wa.42.evt.>"} {
				c, err := b.JS.Consumer(ctx, bus.StreamEvents, team)
				if err != nil {
					t.Fatalf("team consumer %s: %v", team, err)
				}
				if got := c.CachedInfo().Config; got.FilterSubject != filter || got.DeliverSubject != "" {
					t.Errorf("team consumer %s: filter %q deliver %q, want a pull consumer on %s", team, got.FilterSubject, got.DeliverSubject, filter)
				}
			}
		}
		b.NC.Close()
	}
}

func TestConsumerFlagNeedsAnEventFilter(t *testing.T) {
	for _, v := range []string{"backend", "=wa.*.evt.>", "backend=wa.*.qr", "a.b=wa.*.evt.>", "backend=>"} {
		err := run(context.Background(), []string{"provision", "-consumer", v}, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "NAME=FILTER") {
			t.Errorf("-consumer %q: %v, want a NAME=FILTER error", v, err)
		}
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"provison"}, {"provision", "extra"}} {
		err := run(context.Background(), args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "usage: zapbus-admin provision") {
			t.Errorf("run(%q) = %v, want the usage", args, err)
		}
	}
}

func TestMediaRetention(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ttl := func() time.Duration {
		t.Helper()
		b, err := bus.Open(ctx, url, "zapbus-notifier", bus.Config{}, testenv.Logger(t))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		info, err := b.StreamInfo(ctx, bus.StreamMedia)
		if err != nil {
			t.Fatal(err)
		}
		return info.Config.MaxAge
	}
	env := map[string]string{"NATS_URL": url, "ZAPBUS_MEDIA_RETENTION": "2160h"}
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"provision"}, getenv, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := ttl(); got != 2160*time.Hour {
		t.Fatalf("retention %s, want 2160h", got)
	}
	delete(env, "ZAPBUS_MEDIA_RETENTION")
	if err := run(ctx, []string{"provision"}, getenv, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := ttl(); got != 2160*time.Hour {
		t.Fatalf("provision without a retention changed it to %s", got)
	}
	if err := run(ctx, []string{"provision", "-media-retention", "forever"}, getenv, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := ttl(); got != 0 {
		t.Fatalf("retention %s after forever", got)
	}
	for _, bad := range []string{"soon", "-1h", "10m"} {
		env["ZAPBUS_MEDIA_RETENTION"] = bad
		if err := run(ctx, []string{"provision"}, getenv, io.Discard); err == nil {
			t.Errorf("ZAPBUS_MEDIA_RETENTION=%q accepted", bad)
		}
	}
}

// -replicas (or ZAPBUS_REPLICAS) reaches the provisioning: on a single
// server three replicas fail with the server's reason; out of range fails
// before connecting. internal/cluster provisions three on a real cluster.
func TestReplicasFlag(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"provision", "-replicas", "3"}, map[string]string{"NATS_URL": url}, "replicas > 1 not supported"},
		{[]string{"provision"}, map[string]string{"NATS_URL": url, "ZAPBUS_REPLICAS": "3"}, "replicas > 1 not supported"},
		{[]string{"provision", "-replicas", "7"}, map[string]string{"NATS_URL": url}, "replicas must be 1 to 5"},
	} {
		err := run(ctx, c.args, func(k string) string { return c.env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: %v, want an error saying %q", c.args, c.env, err, c.want)
		}
	}
	// The default keeps (here: creates) one replica.
	out := &testenv.Buffer{}
	if err := run(ctx, []string{"provision"}, func(k string) string { return map[string]string{"NATS_URL": url}[k] }, out); err != nil {
		t.Fatalf("provision: %v", err)
	}
	if !strings.Contains(out.String(), `"replicas":1`) {
		t.Errorf("provision output does not show one replica:\n%s", out)
	}
}
