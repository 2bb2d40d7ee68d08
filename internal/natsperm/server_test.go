package natsperm

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/bus"
)

// users of nats.conf and the environment variable holding each password.
var users = map[string]string{
	"admin":     "NATS_ADMIN_PASSWORD",
	"connector": "NATS_CONNECTOR_PASSWORD",
	"persister": "NATS_PERSISTER_PASSWORD",
	"notifier":  "NATS_NOTIFIER_PASSWORD",
	"backend":   "NATS_BACKEND_PASSWORD",
	"webhooks":  "NATS_WEBHOOKS_PASSWORD",
	"gateway":   "NATS_GATEWAY_PASSWORD",
}

// confPath is the repo's nats.conf (never a copy).
func confPath(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	p, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", "..", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("repo nats.conf: %v", err)
	}
	return p
}

// natsEnv is a running nats-server started from the repo's nats.conf.
type natsEnv struct {
	hostPort  string
	passwords map[string]string
	how       string
}

func (e *natsEnv) url(user string) string {
	return fmt.Sprintf("nats://%s:%s@%s", user, e.passwords[user], e.hostPort)
}

func randomSecret(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// checkConfShape parses nats.conf as the server does and checks what the
// matrix cannot see from a client: where it listens, and that it refuses to
// start without its secrets.
func checkConfShape(t *testing.T, path string) {
	t.Helper()
	for _, env := range users {
		t.Setenv(env, "")
		os.Unsetenv(env)
	}
	if _, err := server.ProcessConfigFile(path); err == nil {
		t.Errorf("nats.conf parsed with no passwords in the environment; it must refuse to start without them")
	}
	for _, env := range users {
		t.Setenv(env, "x")
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("parse nats.conf: %v", err)
	}
	if opts.Host != "127.0.0.1" {
		t.Errorf("nats.conf listens on %q; want 127.0.0.1 by default (compose overrides it inside its network)", opts.Host)
	}
	if opts.HTTPPort != 0 && opts.HTTPHost != "127.0.0.1" {
		t.Errorf("nats.conf serves unauthenticated monitoring on %q; want 127.0.0.1 or none", opts.HTTPHost)
	}
	if opts.HTTPSPort != 0 && opts.HTTPHost != "127.0.0.1" {
		t.Errorf("nats.conf serves monitoring (https) on %q; want 127.0.0.1 or none", opts.HTTPHost)
	}
	if opts.NoAuthUser != "" {
		t.Errorf("nats.conf sets no_auth_user %q: unauthenticated clients would act as that user", opts.NoAuthUser)
	}
	if !opts.JetStream {
		t.Errorf("nats.conf does not enable JetStream")
	}
}

// startNATS starts a nats-server with the repo's nats.conf, overriding only
// the listen port, monitoring port and store directory, with fresh
// passwords. It runs the binary named by ZAPBUS_NATS_SERVER (required when
// CI=true; .ci/run installs the go.mod version), or else the embedded
// server from the same file.
func startNATS(t *testing.T) *natsEnv {
	t.Helper()
	repo := confPath(t)
	checkConfShape(t, repo)
	e := &natsEnv{passwords: map[string]string{}}
	for u, env := range users {
		e.passwords[u] = randomSecret(t)
		t.Setenv(env, e.passwords[u])
	}
	path := withStoreDir(t, repo, t.TempDir())
	bin := os.Getenv("ZAPBUS_NATS_SERVER")
	if bin == "" && os.Getenv("CI") == "true" {
		t.Fatal("ZAPBUS_NATS_SERVER is not set: CI must run this test against a real nats-server binary " +
			"(.ci/run installs it with go install github.com/nats-io/nats-server/v2@<go.mod version>)")
	}
	if bin == "" {
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("parse nats.conf: %v", err)
		}
		opts.Port = -1
		opts.HTTPPort = -1
		opts.NoLog, opts.NoSigs = true, true
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("embedded nats-server from nats.conf: %v", err)
		}
		go s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("embedded nats-server not ready")
		}
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		e.hostPort = s.Addr().String()
		e.how = "embedded nats-server " + server.VERSION + " with " + repo
		return e
	}
	port, mport := freePort(t), freePort(t)
	cmd := exec.Command(bin, "-c", path, "-p", strconv.Itoa(port), "-m", strconv.Itoa(mport))
	cmd.Env = os.Environ()
	out := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("nats-server output:\n%s", out.String())
		}
	})
	e.hostPort = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("nats-server %s exited:\n%s", bin, out.String())
		default:
		}
		nc, err := nats.Connect(e.url("admin"), nats.Timeout(time.Second))
		if err == nil {
			e.how = fmt.Sprintf("%s (nats-server %s) with %s", bin, nc.ConnectedServerVersion(), repo)
			nc.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server %s not ready on %s: %v\n%s", bin, e.hostPort, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return e
}

// withStoreDir returns a copy of the repo's nats.conf (at path) in which
// only the JetStream store_dir value is replaced by dir, so the test does
// not write to /data. Everything else is the file as committed.
func withStoreDir(t *testing.T, path, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const line = "store_dir: /data/jetstream"
	if n := strings.Count(string(raw), line); n != 1 {
		t.Fatalf("nats.conf: want exactly one %q line to override, found %d", line, n)
	}
	conf := strings.Replace(string(raw), line, "store_dir: "+strconv.Quote(dir), 1)
	out := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(out, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return out
}

// openService is bus.Open as the service, the way its main does it.
func openService(ctx context.Context, t *testing.T, e *natsEnv, user string, cfg bus.Config, logs *lockedBuf) (*bus.Bus, error) {
	t.Helper()
	b, err := bus.Open(ctx, e.url(user), "zapbus-"+user, cfg, logger(logs, user))
	if err == nil {
		t.Cleanup(b.NC.Close)
	}
	return b, err
}
