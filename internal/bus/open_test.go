package bus_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

func TestCheckServerVersion(t *testing.T) {
	for v, ok := range map[string]bool{
		"2.9.10": false, "2.10.22": false, "": false, "junk": false, "1.99.99": false,
		"2.11.0": true, "2.11.0-RC.1": true, "2.12.3": true, "2.15.2": true, "3.0.0": true,
	} {
		err := bus.CheckServerVersion(v)
		if (err == nil) != ok {
			t.Errorf("CheckServerVersion(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

// fakeServer speaks just enough of the NATS protocol to announce version in
// its INFO and answer PINGs, like an old nats-server would.
func fakeServer(t *testing.T, version string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	port := ln.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintf(c, "INFO {\"server_id\":\"FAKE\",\"version\":%q,\"proto\":1,\"host\":\"127.0.0.1\",\"port\":%d,\"headers\":true,\"max_payload\":1048576}\r\n", version, port)
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "PING") {
						fmt.Fprint(c, "PONG\r\n")
					}
				}
			}()
		}
	}()
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

func checkTooOld(t *testing.T, err error, have string) {
	t.Helper()
	if !errors.Is(err, bus.ErrServerTooOld) {
		t.Fatalf("Open against nats-server %s: %v, want ErrServerTooOld", have, err)
	}
	var p interface{ Permanent() bool }
	if !errors.As(err, &p) || !p.Permanent() {
		t.Errorf("server too old is not a permanent error: %v", err)
	}
	for _, want := range []string{have, ">= 2.11", "go install github.com/nats-io/nats-server/v2@"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOpenRefusesOldServer(t *testing.T) {
	url := fakeServer(t, "2.9.10")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := bus.Open(ctx, url, "zapbus-notifier", bus.Config{Provision: true}, testenv.Logger(t))
	checkTooOld(t, err, "2.9.10")
}

// The machine's Debian nats-server (2.9.10 on 127.0.0.1:4222) is a real old
// server; the test skips when it is absent or recent enough.
func TestOpenRefusesMachineServerWhenOld(t *testing.T) {
	nc, err := nats.Connect("nats://127.0.0.1:4222", nats.Timeout(time.Second))
	if err != nil {
		t.Skipf("no nats-server on 127.0.0.1:4222: %v", err)
	}
	v := nc.ConnectedServerVersion()
	nc.Close()
	if bus.CheckServerVersion(v) == nil {
		t.Skipf("the nats-server on 127.0.0.1:4222 is %s, recent enough", v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = bus.Open(ctx, "nats://127.0.0.1:4222", "zapbus-persister", bus.Config{}, testenv.Logger(t))
	checkTooOld(t, err, v)
}

// The install hint names the nats-server version go.mod pins.
func TestServerInstallHintMatchesGoMod(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`github.com/nats-io/nats-server/v2 (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod does not require nats-server")
	}
	if want := "github.com/nats-io/nats-server/v2@" + string(m[1]); !strings.Contains(bus.ServerInstallHint, want) {
		t.Errorf("ServerInstallHint %q does not say %s", bus.ServerInstallHint, want)
	}
}

func TestOpenVerifiesUnlessProvisioning(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := bus.Open(ctx, url, "zapbus-persister", bus.Config{}, testenv.Logger(t))
	if !errors.Is(err, bus.ErrNotProvisioned) || !strings.Contains(err.Error(), "zapbus-admin provision") {
		t.Fatalf("Open before provisioning: %v, want ErrNotProvisioned naming zapbus-admin provision", err)
	}
	var p interface{ Permanent() bool }
	if errors.As(err, &p) && p.Permanent() {
		t.Errorf("not provisioned must not be permanent: %v", err)
	}
	admin, err := bus.Open(ctx, url, "zapbus-admin", bus.Config{Provision: true, LeaseTTL: 7 * time.Second}, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.NC.Close()
	b, err := bus.Open(ctx, url, "zapbus-connector", bus.Config{}, testenv.Logger(t))
	if err != nil {
		t.Fatalf("Open after provisioning: %v", err)
	}
	defer b.NC.Close()
	if got := b.Config().LeaseTTL; got != 7*time.Second {
		t.Errorf("lease TTL %s, want the provisioned 7s", got)
	}
	if inbox := b.NC.NewInbox(); !strings.HasPrefix(inbox, "_INBOX_connector.") {
		t.Errorf("inbox %q, want the connector's own prefix", inbox)
	}
	if _, err := bus.Open(ctx, url, "zapbus-connector", bus.Config{LeaseTTL: 20 * time.Second}, testenv.Logger(t)); !errors.Is(err, bus.ErrNotProvisioned) {
		t.Errorf("Open with a lease TTL other than the provisioned one: %v, want ErrNotProvisioned", err)
	}
}

// TestProvisionFromEnv: auto (the default) provisions missing streams only
// on a server reached without credentials; true and false are explicit.
func TestProvisionFromEnv(t *testing.T) {
	for _, tc := range []struct {
		v, url            string
		always, ifMissing bool
	}{
		{"", "nats://127.0.0.1:4222", false, true},
		{"auto", "nats://127.0.0.1:4222", false, true},
		{"", "nats://persister:secret@127.0.0.1:4222", false, false},
		{"AUTO", "nats://a:4222,nats://tok@b:4222", false, false},
		{"true", "nats://persister:secret@127.0.0.1:4222", true, false},
		{"false", "nats://127.0.0.1:4222", false, false},
	} {
		always, ifMissing, err := bus.ProvisionFromEnv(func(string) string { return tc.v }, tc.url)
		if err != nil || always != tc.always || ifMissing != tc.ifMissing {
			t.Errorf("%q with %s: always %v, if missing %v, %v; want %v, %v", tc.v, tc.url, always, ifMissing, err, tc.always, tc.ifMissing)
		}
	}
	if _, _, err := bus.ProvisionFromEnv(func(string) string { return "maybe" }, ""); err == nil || !strings.Contains(err.Error(), bus.ProvisionEnv) {
		t.Errorf("bad value: %v", err)
	}
}

// TestOpenProvisionsIfMissing: with ProvisionIfMissing a service creates
// the streams on an empty server, and brings up to date a WA_EVENTS
// provisioned by an older zapbus with a smaller envelope cap, which plain
// verification refuses (the stream would reject events this build sends).
func TestOpenProvisionsIfMissing(t *testing.T) {
	url := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, url, "zapbus-persister", bus.Config{ProvisionIfMissing: true}, testenv.Logger(t))
	if err != nil {
		t.Fatalf("Open on an empty server: %v", err)
	}
	defer b.NC.Close()
	if err := b.Verify(ctx, bus.Requires("zapbus-connector")...); err != nil {
		t.Fatalf("after provisioning if missing: %v", err)
	}
	// An older zapbus's WA_EVENTS: 320 KiB messages.
	st, err := b.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	old := st.CachedInfo().Config
	old.MaxMsgSize = 320 << 10
	if _, err := b.JS.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Open(ctx, url, "zapbus-persister", bus.Config{}, testenv.Logger(t)); !errors.Is(err, bus.ErrNotProvisioned) || !strings.Contains(err.Error(), "provision") {
		t.Fatalf("Open against an outdated WA_EVENTS: %v, want ErrNotProvisioned asking to provision again", err)
	}
	b2, err := bus.Open(ctx, url, "zapbus-persister", bus.Config{ProvisionIfMissing: true}, testenv.Logger(t))
	if err != nil {
		t.Fatalf("Open with ProvisionIfMissing against an outdated WA_EVENTS: %v", err)
	}
	defer b2.NC.Close()
	st, err = b2.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.MaxMsgSize; got != event.MaxEnvelopeBytes {
		t.Fatalf("WA_EVENTS max message size %d after provisioning, want %d", got, event.MaxEnvelopeBytes)
	}
}
