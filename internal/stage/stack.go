// Package stage runs zapbus's staging stack: every service as its own
// process on one machine, against a real nats-server with the repo's
// nats.conf and the fake WhatsApp server (cmd/wafake) instead of WhatsApp,
// so operators can rehearse failover and the chaos run (chaos.go) can kill
// and restart the parts. cmd/zapbus-stage is its command; docs/staging.md
// says how to use it.
//
// The processes: nats-server (provisioned with zapbus-admin), the fake,
// two connectors, two persisters, a notifier, and Config.Webhooks webhook
// dispatchers (none by default). They reach Postgres
// through a TCP proxy (Proxy) in front of the machine's server, in a
// database of their own, so the chaos run can cut Postgres for them alone.
package stage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.mau.fi/whatsmeow/util/keys"
)

// Config says where the stack runs.
type Config struct {
	Root        string        // module root: nats.conf and ./cmd/…; default: found with go env GOMOD
	Dir         string        // work directory: binaries, logs, NATS store, keys (created)
	PostgresURL string        // a superuser URL of the Postgres server; default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
	NATSServer  string        // nats-server binary; default $ZAPBUS_NATS_SERVER, else $(go env GOPATH)/bin/nats-server
	LeaseTTL    time.Duration // WA_LEASES TTL for connectors and provision; default 15s
	Connectors  int           // default 2
	Persisters  int           // default 2
	// Webhooks is the number of webhook dispatchers (cmd/webhooks), which
	// may call receivers on loopback over http; default 0: none.
	Webhooks int
	LogLevel string    // services' ZAPBUS_LOG_LEVEL, default info
	Out      io.Writer // progress lines; default io.Discard
}

func (c *Config) defaults() error {
	if c.Root == "" {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
			return fmt.Errorf("stage: find the module root (go env GOMOD): %v", err)
		}
		c.Root = filepath.Dir(strings.TrimSpace(string(out)))
	}
	if c.Dir == "" {
		return errors.New("stage: Config.Dir is required")
	}
	if c.PostgresURL == "" {
		c.PostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	var err error
	if c.NATSServer, err = c.natsServer(); err != nil {
		return err
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 15 * time.Second
	}
	if c.Connectors == 0 {
		c.Connectors = 2
	}
	if c.Persisters == 0 {
		c.Persisters = 2
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	return nil
}

// natsServer is the nats-server binary to run: Config.NATSServer, else
// $ZAPBUS_NATS_SERVER, else $(go env GOPATH)/bin/nats-server.
func (c *Config) natsServer() (string, error) {
	path := c.NATSServer
	if path == "" {
		path = os.Getenv("ZAPBUS_NATS_SERVER")
	}
	if path == "" {
		out, err := exec.Command("go", "env", "GOPATH").Output()
		if err != nil {
			return "", fmt.Errorf("stage: go env GOPATH: %w", err)
		}
		path = filepath.Join(strings.TrimSpace(string(out)), "bin", "nats-server")
	}
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("stage: nats-server binary: %w (go install github.com/nats-io/nats-server/v2@v2.15.2, or set ZAPBUS_NATS_SERVER)", err)
	}
	return path, nil
}

// Stack is a running staging stack.
type Stack struct {
	cfg Config
	bin string

	NATS       *Proc
	Fake       *Proc
	Connectors []*Proc
	Persisters []*Proc
	Webhooks   []*Proc
	Notifier   *Proc

	// Postgres
	PG      *Proxy
	DBName  string
	DSN     string // direct to the server (checks; not through the proxy)
	dbAdmin string

	// NATS
	NATSPort  int
	passwords map[string]string // by nats.conf user

	// The fake WhatsApp
	FakeAddr    string // chat and media
	FakeControl string // control API base URL
	FakeToken   string
	RootKey     string // public, hex

	NotifierURL string
	AdminToken  string

	health map[*Proc]string // /readyz base URL per service
}

// Start builds the binaries and starts every process, waiting until each
// is ready. On error everything started is stopped again.
func Start(ctx context.Context, cfg Config) (st *Stack, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	s := &Stack{cfg: cfg, bin: filepath.Join(cfg.Dir, "bin"), health: map[*Proc]string{}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, d := range []string{s.bin, filepath.Join(cfg.Dir, "logs"), filepath.Join(cfg.Dir, "nats")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
	}
	s.logf("building binaries into %s", s.bin)
	if err := s.build(ctx); err != nil {
		return nil, err
	}
	if err := s.startPostgres(ctx); err != nil {
		return nil, err
	}
	if err := s.startNATS(ctx); err != nil {
		return nil, err
	}
	if err := s.startFake(ctx); err != nil {
		return nil, err
	}
	if err := s.startServices(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stack) logf(format string, args ...any) {
	fmt.Fprintf(s.cfg.Out, "stage: "+format+"\n", args...)
}

func (s *Stack) build(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", s.bin+string(filepath.Separator),
		"./cmd/wafake", "./cmd/connector", "./cmd/persister", "./cmd/notifier", "./cmd/webhooks", "./cmd/zapbus-admin")
	cmd.Dir = s.cfg.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stage: go build: %w\n%s", err, out)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func freeAddr() (string, error) {
	p, err := freePort()
	return fmt.Sprintf("127.0.0.1:%d", p), err
}

func (s *Stack) proc(name, binary string, args []string, env ...string) *Proc {
	return &Proc{Name: name, Path: binary, Args: args, Env: env, Log: filepath.Join(s.cfg.Dir, "logs", name+".log")}
}

// startPostgres creates the stack's own database and the proxy in front of
// the server.
func (s *Stack) startPostgres(ctx context.Context) error {
	u, err := url.Parse(s.cfg.PostgresURL)
	if err != nil {
		return fmt.Errorf("stage: Postgres URL: %w", err)
	}
	s.DBName = "zapbus_stage_" + randomHex(4)
	conn, err := pgx.Connect(ctx, s.cfg.PostgresURL)
	if err != nil {
		return fmt.Errorf("stage: connect to Postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+s.DBName); err != nil {
		return fmt.Errorf("stage: create database: %w", err)
	}
	s.dbAdmin = s.cfg.PostgresURL
	direct := *u
	direct.Path = "/" + s.DBName
	s.DSN = direct.String()
	if s.PG, err = NewProxy(u.Host); err != nil {
		return fmt.Errorf("stage: Postgres proxy: %w", err)
	}
	s.logf("postgres database %s on %s, reached through the proxy %s", s.DBName, u.Host, s.PG.Addr())
	return nil
}

// ServiceDSN is the database URL the processes use (through the proxy).
func (s *Stack) ServiceDSN() string {
	u, _ := url.Parse(s.DSN)
	u.Host = s.PG.Addr()
	return u.String()
}

// natsURL is the URL of a nats.conf user.
func (s *Stack) natsURL(user string) string {
	return fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, s.passwords[user], s.NATSPort)
}

// AdminNATSURL is the NATS URL with the admin user (provision, checks).
func (s *Stack) AdminNATSURL() string { return s.natsURL("admin") }

func (s *Stack) startNATS(ctx context.Context) error {
	var err error
	if s.NATSPort, err = freePort(); err != nil {
		return err
	}
	mon, err := freePort()
	if err != nil {
		return err
	}
	s.passwords = map[string]string{}
	var env []string
	for _, u := range []string{"admin", "connector", "persister", "notifier", "backend", "webhooks", "gateway"} {
		s.passwords[u] = randomHex(16)
		env = append(env, fmt.Sprintf("NATS_%s_PASSWORD=%s", strings.ToUpper(u), s.passwords[u]))
	}
	conf, err := s.natsConf()
	if err != nil {
		return err
	}
	// Flags override nats.conf's listen address and monitoring port;
	// everything else (users, permissions, JetStream limits) is the file
	// as shipped, but for the store directory.
	s.NATS = s.proc("nats", s.cfg.NATSServer, []string{
		"-c", conf, "-a", "127.0.0.1", "-p", fmt.Sprint(s.NATSPort), "-m", fmt.Sprint(mon),
	}, env...)
	if err := s.NATS.Start(); err != nil {
		return err
	}
	if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", mon), 30*time.Second); err != nil {
		return fmt.Errorf("stage: nats-server: %w (log: %s)", err, s.NATS.Log)
	}
	s.logf("nats-server on 127.0.0.1:%d (nats.conf), provisioning with zapbus-admin", s.NATSPort)
	return s.Provision(ctx)
}

// natsConf writes the repo's nats.conf with the JetStream store directory
// moved into the work directory (nats-server refuses -sd next to a
// store_dir in the file).
func (s *Stack) natsConf() (string, error) {
	raw, err := os.ReadFile(filepath.Join(s.cfg.Root, "nats.conf"))
	if err != nil {
		return "", fmt.Errorf("stage: %w", err)
	}
	const line = "store_dir: /data/jetstream"
	if !strings.Contains(string(raw), line) {
		return "", fmt.Errorf("stage: nats.conf has no %q line to move", line)
	}
	conf := strings.Replace(string(raw), line, fmt.Sprintf("store_dir: %q", filepath.Join(s.cfg.Dir, "nats")), 1)
	path := filepath.Join(s.cfg.Dir, "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("stage: %w", err)
	}
	return path, nil
}

// Provision runs zapbus-admin provision with the admin user.
func (s *Stack) Provision(ctx context.Context) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "zapbus-admin"), "provision", "-consumer", "backend=wa.*.evt.>")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "NATS_URL=" + s.AdminNATSURL(), "ZAPBUS_LEASE_TTL=" + s.cfg.LeaseTTL.String()}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("stage: zapbus-admin provision: %w\n%s", err, out)
	}
	return nil
}

// WriteRootKey writes a new fake root private key to path and returns the
// public key as hex (what ZAPBUS_WA_FAKE_ROOT_KEY wants). The format is
// cmd/wafake's -root-key-file.
func WriteRootKey(path string) (string, error) {
	var priv [32]byte
	if _, err := rand.Read(priv[:]); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(priv[:])+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("stage: write root key: %w", err)
	}
	kp := keys.NewKeyPairFromPrivateKey(priv)
	return hex.EncodeToString(kp.Pub[:]), nil
}

func (s *Stack) startFake(ctx context.Context) error {
	var err error
	keyFile := filepath.Join(s.cfg.Dir, "wafake-root.key")
	if s.RootKey, err = WriteRootKey(keyFile); err != nil {
		return err
	}
	if s.FakeAddr, err = freeAddr(); err != nil {
		return err
	}
	ctl, err := freeAddr()
	if err != nil {
		return err
	}
	s.FakeControl = "http://" + ctl
	s.FakeToken = "wft_" + randomHex(16)
	s.Fake = s.proc("wafake", filepath.Join(s.bin, "wafake"), nil,
		"WAFAKE_ADDR="+s.FakeAddr, "WAFAKE_CONTROL_ADDR="+ctl, "WAFAKE_ROOT_KEY_FILE="+keyFile,
		"WAFAKE_TOKEN="+s.FakeToken, "ZAPBUS_LOG_LEVEL="+s.cfg.LogLevel)
	if err := s.Fake.Start(); err != nil {
		return err
	}
	if err := waitHTTP(ctx, s.FakeControl+"/healthz", 30*time.Second); err != nil {
		return fmt.Errorf("stage: wafake: %w (log: %s)", err, s.Fake.Log)
	}
	s.logf("fake WhatsApp on %s, control API %s", s.FakeAddr, s.FakeControl)
	return nil
}

// stageSendLimits are operator maxima that let the stage's mentorados send
// unpaced (PairMentorado sets them so): its traffic is synthetic, to a
// fake WhatsApp, and what it checks (nothing lost, nothing twice through
// crashes) would otherwise wait for the pacer's gaps.
var stageSendLimits = []string{"ZAPBUS_SEND_MIN_BULK_GAP_SECONDS=0", "ZAPBUS_SEND_MAX_CHAT_PER_MINUTE=600",
	"ZAPBUS_SEND_MAX_CHAT_BURST=1000", "ZAPBUS_SEND_MAX_DAILY_CAP=1000000"}

// stageSendSettings are the sending settings PairMentorado gives each
// mentorado (within stageSendLimits).
var stageSendSettings = map[string]any{"chat_per_minute": 600, "chat_burst": 1000, "unsolicited_burst": 1000,
	"bulk_min_gap_seconds": 0, "bulk_max_gap_seconds": 0, "daily_cap": 1000000, "typing": false}

func (s *Stack) startServices(ctx context.Context) error {
	dsn := s.ServiceDSN()
	common := func(user, addr string) []string {
		return append([]string{"DATABASE_URL=" + dsn, "NATS_URL=" + s.natsURL(user), "ZAPBUS_HTTP_ADDR=" + addr,
			"ZAPBUS_NATS_PROVISION=false", "ZAPBUS_LOG_LEVEL=" + s.cfg.LogLevel}, stageSendLimits...)
	}
	var all []*Proc
	for i := 1; i <= s.cfg.Connectors; i++ {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		p := s.proc(fmt.Sprintf("connector-%d", i), filepath.Join(s.bin, "connector"), nil, append(common("connector", addr),
			fmt.Sprintf("ZAPBUS_INSTANCE_ID=stage-connector-%d", i),
			"ZAPBUS_LEASE_TTL="+s.cfg.LeaseTTL.String(),
			"ZAPBUS_RESTORE_JITTER=200ms",
			"ZAPBUS_WA_FAKE_ADDR="+s.FakeAddr, "ZAPBUS_WA_FAKE_ROOT_KEY="+s.RootKey)...)
		s.Connectors = append(s.Connectors, p)
		s.health[p] = "http://" + addr
		all = append(all, p)
	}
	for i := 1; i <= s.cfg.Persisters; i++ {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		p := s.proc(fmt.Sprintf("persister-%d", i), filepath.Join(s.bin, "persister"), nil, common("persister", addr)...)
		s.Persisters = append(s.Persisters, p)
		s.health[p] = "http://" + addr
		all = append(all, p)
	}
	for i := 1; i <= s.cfg.Webhooks; i++ {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		// Receivers on this machine (a developer's, a rehearsal's) are
		// allowed, as the dev binary allows them; production allows none.
		p := s.proc(fmt.Sprintf("webhooks-%d", i), filepath.Join(s.bin, "webhooks"), nil, append(common("webhooks", addr),
			fmt.Sprintf("ZAPBUS_WEBHOOK_NAME=stage-webhooks-%d", i),
			"ZAPBUS_WEBHOOK_ALLOW_NETS=127.0.0.0/8,::1", "ZAPBUS_WEBHOOK_ALLOW_HTTP=true")...)
		s.Webhooks = append(s.Webhooks, p)
		s.health[p] = "http://" + addr
		all = append(all, p)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	s.AdminToken = "stage-admin-" + randomHex(16)
	s.Notifier = s.proc("notifier", filepath.Join(s.bin, "notifier"), nil, append(common("notifier", addr),
		"ZAPBUS_ADMIN_TOKEN="+s.AdminToken, "ZAPBUS_SEND_RATE=off", "ZAPBUS_STREAM_OPEN_RATE=off")...)
	s.NotifierURL = "http://" + addr
	s.health[s.Notifier] = s.NotifierURL
	all = append(all, s.Notifier)
	// The persisters and connectors migrate the schema under a lock; start
	// them together, the order does not matter (each waits for what it
	// needs).
	for _, p := range all {
		if err := p.Start(); err != nil {
			return err
		}
	}
	return s.WaitReady(ctx, 90*time.Second, all...)
}

// WaitReady waits until each process answers /readyz with 200.
func (s *Stack) WaitReady(ctx context.Context, timeout time.Duration, procs ...*Proc) error {
	for _, p := range procs {
		base, ok := s.health[p]
		if !ok {
			continue
		}
		if err := waitHTTP(ctx, base+"/readyz", timeout); err != nil {
			return fmt.Errorf("stage: %s not ready: %w (log: %s)", p.Name, err, p.Log)
		}
	}
	return nil
}

// HealthURL is the base URL of a service's /healthz, /readyz, /metrics.
func (s *Stack) HealthURL(p *Proc) string { return s.health[p] }

func waitHTTP(ctx context.Context, u string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s", u, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Print writes where everything is and how to use it.
func (s *Stack) Print(w io.Writer) {
	fmt.Fprintf(w, "zapbus staging stack is up (each service its own process; WhatsApp is the FAKE server)\n")
	fmt.Fprintf(w, "  notifier:      %s  (dashboard %s/, API %s/openapi.json)\n", s.NotifierURL, s.NotifierURL, s.NotifierURL)
	fmt.Fprintf(w, "  admin token:   %s\n", s.AdminToken)
	for _, p := range append(append(append([]*Proc{}, s.Connectors...), s.Persisters...), s.Webhooks...) {
		fmt.Fprintf(w, "  %-13s  %s/readyz  /metrics  (pid %d)\n", p.Name+":", s.health[p], p.Pid())
	}
	fmt.Fprintf(w, "  nats:          nats://127.0.0.1:%d (nats.conf users; admin: %s)\n", s.NATSPort, s.AdminNATSURL())
	fmt.Fprintf(w, "  postgres:      %s (services go through the proxy %s)\n", s.DSN, s.PG.Addr())
	fmt.Fprintf(w, "  fake whatsapp: %s, control API %s, token %s\n", s.FakeAddr, s.FakeControl, s.FakeToken)
	fmt.Fprintf(w, "  logs:          %s\n", filepath.Join(s.cfg.Dir, "logs"))
	fmt.Fprintf(w, "pair a mentorado: create it, POST /v1/whatsapp/connect {\"method\":\"phone\",\"phone\":\"5511…\"} with its token,\n")
	fmt.Fprintf(w, "  then: curl -s -H 'Authorization: Bearer %s' -d '{\"phone\":\"5511…\",\"code\":\"<pairing_code>\"}' %s/v1/pair-code\n", s.FakeToken, s.FakeControl)
	fmt.Fprintf(w, "Ctrl-C stops everything.\n")
}

// Close stops every process (the services gracefully, then the fake and
// NATS), the proxy, and drops the database.
func (s *Stack) Close() {
	var svc []*Proc
	if s.Notifier != nil {
		svc = append(svc, s.Notifier)
	}
	svc = append(append(append(svc, s.Connectors...), s.Persisters...), s.Webhooks...)
	done := make(chan struct{}, len(svc))
	for _, p := range svc {
		go func() { _ = p.Stop(15 * time.Second); done <- struct{}{} }()
	}
	for range svc {
		<-done
	}
	if s.Fake != nil {
		_ = s.Fake.Stop(5 * time.Second)
	}
	if s.NATS != nil {
		_ = s.NATS.Stop(10 * time.Second)
	}
	if s.PG != nil {
		s.PG.Close()
	}
	if s.DBName != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, s.dbAdmin); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+s.DBName+" WITH (FORCE)")
			conn.Close(ctx)
		}
	}
}
