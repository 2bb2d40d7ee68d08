// Command devstack runs the whole of zapbus in one process for development:
// an embedded NATS server (unless NATS_URL is set), the connector, the
// provider gateway (Meta and Z-API, issue #16), the persister, the notifier
// and the webhook dispatcher, against the local Postgres. It prints the
// dashboard URL and an admin token.
//
// The dispatcher here may call http:// URLs on loopback and private
// networks (127.0.0.0/8, ::1, 10/8, 172.16/12, 192.168/16, fc00::/7), so a
// webhook can point at a receiver on the developer's machine; cmd/webhooks
// allows only public https unless configured otherwise.
//
// With -sim, WhatsApp is simulated at the protocol level: the real whatsmeow
// client talks to zapbus's fake WhatsApp server (internal/wafake), and
// /v1/dev/sim/{mentorado}/… endpoints drive the fake phone (scan the QR,
// receive a message or a file, deliver a receipt, react, edit and delete as
// the contact, list what the contact received with the sha256 of each file,
// kick the session). Those endpoints do not exist without -sim.
//
// -sim also runs fakes of Meta's Graph API and of Z-API in-process
// (internal/provider/meta/metafake, internal/provider/zapi/zapifake), the
// gateway's drivers pointed at them, and sets up two demo mentorados,
// "Meta demo" and "Z-API demo", whose tokens it prints. For a mentorado
// whose active provider is Meta or Z-API the same sim endpoints drive that
// provider's fake: inbound and receipt build the provider's webhook and
// deliver it to the gateway (Meta's signed with the app secret), redeliver
// sends one again as a provider's retry does, received lists what the fake
// accepted, scan pairs a Z-API instance;
// …/provider-account makes a fake account to configure through the admin
// API, and …/outage {"down":true|false} takes the mentorado's provider down
// (WhatsApp Web: the fake server refuses connections) and reports the
// attempts made since.
//
// Settings (environment, overridable by flags):
//
//	DATABASE_URL        default postgres://postgres@127.0.0.1:5432/zapbus_dev (created if missing)
//	NATS_URL            default: embedded server on a random loopback port
//	ZAPBUS_HTTP_ADDR    default 127.0.0.1:8080
//	ZAPBUS_GATEWAY_ADDR default 127.0.0.1:8090: the provider gateway's webhooks
//	                    (/providers/{meta|zapi}/{mentorado}/webhook…)
//	ZAPBUS_ADMIN_TOKEN  (or _FILE) default: generated and printed once
//	ZAPBUS_CREDENTIALS_KEYS  (or _FILE) providers' credentials keyring; default: an in-memory key
//	                    generated at start (credentials saved in one run do not open in the next)
//	ZAPBUS_DATA_DIR     embedded NATS storage, default $TMPDIR/zapbus-devstack-<database>
//	                    (plus -<host>-<port> unless Postgres is local on 5432); locked
//	                    while in use, so a second devstack on the same directory stops
//	                    with an error naming it
//	ZAPBUS_LOG_LEVEL    default info
//	and the notifier's tunables (ZAPBUS_SEND_RATE, ZAPBUS_MAX_STREAMS_PER_MENTORADO, …;
//	see cmd/notifier), with the same flags
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"
	"golang.org/x/sync/errgroup"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/gateway"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/persister"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/meta"
	"github.com/zapbus/zapbus/internal/provider/zapi"
	"github.com/zapbus/zapbus/internal/redact"
	"github.com/zapbus/zapbus/internal/secretbox"
	"github.com/zapbus/zapbus/internal/startup"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/wafake"
	"github.com/zapbus/zapbus/internal/web"
	"github.com/zapbus/zapbus/internal/webhook"
)

// DefaultDatabaseURL is the dev database on the machine's Postgres.
const DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/zapbus_dev?sslmode=disable"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

type settings struct {
	DatabaseURL string
	NATSURL     string
	HTTPAddr    string
	GatewayAddr string
	AdminToken  string
	Web         web.Config
	Sim         bool
	DataDir     string
	LogLevel    zerolog.Level
	LogOut      string
}

func loadSettings(args []string, getenv func(string) string, out io.Writer) (settings, error) {
	e := config.NewEnv(getenv)
	env := e.String
	var s settings
	fs := flag.NewFlagSet("devstack", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&s.DatabaseURL, "database-url", env("DATABASE_URL", DefaultDatabaseURL), "Postgres URL (DATABASE_URL); the database is created if missing")
	fs.StringVar(&s.NATSURL, "nats-url", env("NATS_URL", ""), "NATS URL (NATS_URL); empty runs an embedded server")
	fs.StringVar(&s.HTTPAddr, "http-addr", env("ZAPBUS_HTTP_ADDR", "127.0.0.1:8080"), "HTTP address of the API and dashboard (ZAPBUS_HTTP_ADDR)")
	fs.StringVar(&s.GatewayAddr, "gateway-addr", env("ZAPBUS_GATEWAY_ADDR", "127.0.0.1:8090"), "HTTP address of the provider gateway's webhooks (ZAPBUS_GATEWAY_ADDR)")
	fs.BoolVar(&s.Sim, "sim", false, "simulate WhatsApp: the real whatsmeow client against the in-process fake server")
	fs.StringVar(&s.DataDir, "data-dir", env("ZAPBUS_DATA_DIR", ""), "embedded NATS storage (ZAPBUS_DATA_DIR); default $TMPDIR/zapbus-devstack-<database>[-<host>-<port>], locked while in use")
	fs.StringVar(&s.LogOut, "log", env("ZAPBUS_LOG", "stderr"), "where logs go: stderr, stdout or a file path (ZAPBUS_LOG)")
	level := fs.String("log-level", env("ZAPBUS_LOG_LEVEL", "info"), "log level (ZAPBUS_LOG_LEVEL)")
	s.Web.Flags(fs, e)
	// Secrets come from the environment or a file only, never from flags
	// (visible in process listings).
	s.AdminToken = env("ZAPBUS_ADMIN_TOKEN", "")
	if err := fs.Parse(args); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := e.Err(); err != nil {
		return s, err
	}
	lvl, err := config.LogLevel(*level)
	if err != nil {
		return s, err
	}
	s.LogLevel = lvl
	if _, err := url.Parse(s.DatabaseURL); err != nil || s.DatabaseURL == "" {
		return s, fmt.Errorf("DATABASE_URL: invalid URL")
	}
	if s.DataDir == "" {
		dir, err := defaultDataDir(s.DatabaseURL)
		if err != nil {
			return s, err
		}
		s.DataDir = dir
	}
	if _, _, err := net.SplitHostPort(s.HTTPAddr); err != nil {
		return s, fmt.Errorf("ZAPBUS_HTTP_ADDR: %v", err)
	}
	if _, _, err := net.SplitHostPort(s.GatewayAddr); err != nil {
		return s, fmt.Errorf("ZAPBUS_GATEWAY_ADDR: %v", err)
	}
	if s.AdminToken != "" && len(s.AdminToken) < 16 {
		return s, errors.New("ZAPBUS_ADMIN_TOKEN: must be at least 16 characters")
	}
	// Provider credentials keyring (issue #16); run generates an
	// in-memory one when none is set.
	var kerr error
	if s.Web.CredentialKeys, kerr = secretbox.LoadOptional(getenv); kerr != nil {
		return s, kerr
	}
	return s, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	s, err := loadSettings(args, getenv, stdout)
	if err != nil {
		return err
	}
	var logw io.Writer = os.Stderr
	switch s.LogOut {
	case "stderr":
	case "stdout":
		logw = stdout
	default:
		f, err := os.OpenFile(s.LogOut, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("ZAPBUS_LOG: %w", err)
		}
		defer f.Close()
		logw = f
	}
	log := zerolog.New(redact.Writer(logw)).Level(s.LogLevel).With().Timestamp().Str("service", "devstack").Logger()

	generated := false
	if s.AdminToken == "" {
		s.AdminToken = randomToken()
		generated = true
	}
	devKey := s.Web.CredentialKeys == nil
	if devKey {
		// Credentials configured in this run cannot be opened by the next
		// one unless ZAPBUS_CREDENTIALS_KEYS is set; fine for development.
		line, err := secretbox.Generate()
		if err == nil {
			s.Web.CredentialKeys, err = secretbox.Parse(line)
		}
		if err != nil {
			return fmt.Errorf("credentials keyring: %w", err)
		}
		log.Info().Str("key_id", s.Web.CredentialKeys.Primary()).
			Msg("no ZAPBUS_CREDENTIALS_KEYS: generated an in-memory credentials key; provider credentials saved now will not open after a restart")
	}

	// Wait for Postgres like the services do (internal/startup), with the
	// hint how to start it in every retry's log line.
	var db *store.DB
	err = startup.Wait(ctx, log, "postgres", func(ctx context.Context) error {
		if err := ensureDatabase(ctx, s.DatabaseURL); err != nil {
			return err
		}
		db, err = store.Open(ctx, s.DatabaseURL)
		return err
	})
	if err != nil {
		return startup.Interrupted(ctx, err)
	}
	defer db.Close()

	natsURL := s.NATSURL
	if natsURL == "" {
		unlock, err := lockDataDir(s.DataDir)
		if err != nil {
			return err
		}
		defer unlock()
		log.Info().Str("data_dir", s.DataDir).Msg("embedded nats storage")
		ns, err := startNATS(s.DataDir)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		natsURL = ns.ClientURL()
	}
	var b *bus.Bus
	err = startup.Wait(ctx, log, "nats", func(ctx context.Context) (err error) {
		b, err = bus.Open(ctx, natsURL, "zapbus-devstack", bus.Config{Provision: true}, log)
		return err
	})
	if err != nil {
		return startup.Interrupted(ctx, err)
	}
	defer b.Close()

	var fake *wafake.Server
	var gate *webGate
	var configure func(*whatsmeow.Client)
	if s.Sim {
		fake, err = wafake.NewServer(log.With().Str("component", "wafake").Logger())
		if err != nil {
			return err
		}
		defer fake.Close()
		gate = newWebGate(fake)
		configure = gate.configure
	}
	factory, err := connector.NewWhatsmeowFactory(ctx, db, log, configure)
	if err != nil {
		return err
	}
	// One media store for the connector (downloads in, uploads out) and the
	// notifier (POST /v1/media, GET …/media).
	ms, err := b.MediaStore(ctx)
	if err != nil {
		return fmt.Errorf("media store: %w", err)
	}
	// The operator's sending maxima, as cmd/connector reads them.
	limits, err := outbound.LimitsFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	conn, err := connector.New(connector.Config{Sending: connector.SendingConfig{Limits: limits}}, db, b, factory, log, connector.WithMedia(ms))
	if err != nil {
		return err
	}
	pers, err := persister.New(persister.Config{}, db, b, log)
	if err != nil {
		return err
	}
	hooks, err := webhook.New(s.devWebhookConfig(), db, b, log)
	if err != nil {
		return err
	}
	srv, err := web.New(s.webConfig(), db, b, log, web.WithMedia(ms))
	if err != nil {
		return err
	}
	// The provider gateway (Meta, Z-API): in -sim mode its drivers talk
	// to the in-process fakes.
	configs := provider.NewConfigs(db, s.Web.CredentialKeys)
	var psim *providerSim
	metaCfg := meta.Config{Log: log.With().Str("component", "meta").Logger()}
	zapiCfg := zapi.Config{Log: log.With().Str("component", "zapi").Logger()}
	if s.Sim {
		psim = newProviderSim(log, configs)
		defer psim.Close()
		metaCfg.BaseURL = psim.meta.URL()
		zapiCfg.BaseURL = psim.zapi.URL()
		// The fake serves received files on loopback, which the driver's
		// default client refuses (it fetches public addresses only).
		zapiCfg.MediaHTTP = &http.Client{Timeout: time.Minute}
	}
	gw, err := gateway.New(gateway.Deps{DB: db, Bus: b, Configs: configs, Media: ms,
		Drivers: []provider.Driver{meta.New(metaCfg), zapi.New(zapiCfg)}, Log: log}, gateway.Config{})
	if err != nil {
		return err
	}
	gwln, err := net.Listen("tcp", s.GatewayAddr)
	if err != nil {
		return fmt.Errorf("ZAPBUS_GATEWAY_ADDR: listen: %w", err)
	}
	defer gwln.Close()
	gwBase := "http://" + gwln.Addr().String()
	if psim != nil {
		psim.gateway = gwBase
	}
	// The notifier serves its own /metrics; the in-process connector's and
	// persister's are next to it.
	srv.Mount("GET /metrics/connector", promhttp.HandlerFor(conn.Registry(), promhttp.HandlerOpts{}))
	srv.Mount("GET /metrics/persister", promhttp.HandlerFor(pers.Registry(), promhttp.HandlerOpts{}))
	if r, ok := any(hooks).(interface{ Registry() *prometheus.Registry }); ok {
		srv.Mount("GET /metrics/webhooks", promhttp.HandlerFor(r.Registry(), promhttp.HandlerOpts{}))
	}
	// Ready means ready for commands: the in-process connector is running.
	srv.RequireReady(func(ctx context.Context) error {
		if err := conn.CheckReady(ctx); err != nil {
			return fmt.Errorf("connector: %w", err)
		}
		if err := gw.CheckReady(ctx); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		return nil
	})
	if fake != nil {
		mountSim(srv, &simulator{fake: fake, gate: gate, providers: psim, db: db, bus: b, admin: s.AdminToken, log: log})
	}
	var demos []demo
	if psim != nil {
		if demos, err = psim.setupDemos(ctx, srv.Handler(), s.AdminToken, db); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", s.HTTPAddr)
	if err != nil {
		return fmt.Errorf("ZAPBUS_HTTP_ADDR: listen: %w", err)
	}

	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "zapbus devstack is up\n")
	fmt.Fprintf(stdout, "  dashboard:   %s/\n", base)
	fmt.Fprintf(stdout, "  api:         %s/openapi.json\n", base)
	fmt.Fprintf(stdout, "  metrics:     %s/metrics (notifier), /metrics/connector, /metrics/persister\n", base)
	fmt.Fprintf(stdout, "  webhooks:    delivered in-process; http:// and loopback/private receivers allowed (dev only)\n")
	fmt.Fprintf(stdout, "  gateway:     %s/providers/{meta|zapi}/{mentorado}/webhook (provider webhooks)\n", gwBase)
	fmt.Fprintf(stdout, "  nats:        %s\n", natsURL)
	if devKey {
		fmt.Fprintf(stdout, "  credentials: sealed with an in-memory dev key (set ZAPBUS_CREDENTIALS_KEYS to keep them across restarts)\n")
	}
	if generated {
		fmt.Fprintf(stdout, "  admin token: %s\n", s.AdminToken)
	}
	if s.Sim {
		fmt.Fprintf(stdout, "  whatsapp:    simulated (fake server; drive it with POST %s/v1/dev/sim/{mentorado}/scan|pair-code|inbound|receipt|disconnect)\n", base)
	}
	for _, d := range demos {
		fmt.Fprintf(stdout, "  %-12s mentorado %d on %s (simulated), token: %s\n", d.Name+":", d.ID, d.Provider, d.Token)
		fmt.Fprintf(stdout, "               its contact writes in: curl -s -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d '{\"phone\":\"5511912345678\",\"text\":\"Oi!\"}' %s/v1/dev/sim/%d/inbound\n", d.Token, base, d.ID)
	}
	fmt.Fprintf(stdout, "create a mentorado:\n  curl -s -H 'Authorization: Bearer <admin token>' -H 'Content-Type: application/json' -d '{\"name\":\"Ana\"}' %s/v1/admin/mentorados\n", base)

	g, gctx := errgroup.WithContext(ctx)
	// The connector stops after the simulated phones' clients answered
	// what the fake delivered (receipts, acks): whatsmeow sends those
	// from goroutines, and a Disconnect racing one is a data race inside
	// whatsmeow's socket (internal/wafake/doc.go, "Data races").
	connCtx, stopConn := context.WithCancel(context.WithoutCancel(gctx))
	defer stopConn()
	g.Go(func() error {
		<-gctx.Done()
		if fake != nil {
			settleFake(fake, 3*time.Second)
		}
		stopConn()
		return nil
	})
	g.Go(func() error { return conn.Run(connCtx) })
	g.Go(func() error { return pers.Run(gctx) })
	g.Go(func() error { return hooks.Run(gctx) })
	g.Go(func() error { return srv.Serve(gctx, ln) })
	g.Go(func() error { return gw.Run(gctx) })
	if len(demos) > 0 {
		g.Go(func() error {
			// Once the stack answers: the demo numbers come up.
			for conn.CheckReady(gctx) != nil || gw.CheckReady(gctx) != nil {
				select {
				case <-gctx.Done():
					return nil
				case <-time.After(200 * time.Millisecond):
				}
			}
			psim.startDemos(gctx, srv.Handler(), demos, log)
			return nil
		})
	}
	g.Go(func() error { return serveGateway(gctx, gwln, gw.Handler()) })
	err = g.Wait()
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// devNets are the networks the dev binary's dispatcher may call: the
// machine itself and private networks, so a developer's local receiver
// works. Never a production setting (cmd/webhooks: ZAPBUS_WEBHOOK_ALLOW_NETS).
var devNets = []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"}

// devWebhookPolicy is the dev stack's webhook URL policy, for the API
// (saving a URL) and the in-process dispatcher (connecting) alike: what
// the environment allows (ZAPBUS_WEBHOOK_ALLOW_NETS), plus http:// and
// devNets.
func devWebhookPolicy(env webhook.Policy) webhook.Policy {
	p := webhook.Policy{AllowHTTP: true, AllowNets: append([]netip.Prefix(nil), env.AllowNets...), Resolver: env.Resolver}
	for _, n := range devNets {
		p.AllowNets = append(p.AllowNets, netip.MustParsePrefix(n))
	}
	return p
}

// devWebhookConfig is the in-process dispatcher's configuration: the
// engine's defaults under the dev policy.
func (s settings) devWebhookConfig() webhook.Config {
	return webhook.Config{Policy: devWebhookPolicy(s.Web.WebhookPolicy), ReconcileInterval: 2 * time.Second, Name: "devstack"}
}

// ensureDatabase creates the database named in dsn when it does not exist.
func ensureDatabase(ctx context.Context, dsn string) error {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return &store.ConfigError{Err: fmt.Errorf("DATABASE_URL: %w", err)}
	}
	name := cfg.Database
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, dsn)
	if err == nil {
		return c.Close(ctx)
	}
	var pgErr interface{ SQLState() string }
	if !errors.As(err, &pgErr) || pgErr.SQLState() != "3D000" { // invalid_catalog_name
		return fmt.Errorf("DATABASE_URL: connect: %w (is Postgres running? pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start)", err)
	}
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: connect to create %s: %w", name, err)
	}
	defer admin.Close(ctx)
	if err := store.CreateDatabase(cctx, admin, name); err != nil {
		return fmt.Errorf("DATABASE_URL: create database %s: %w", name, err)
	}
	return nil
}

func startNATS(dir string) (*server.Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ZAPBUS_DATA_DIR: %w", err)
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "zapbus-devstack",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "jetstream"),
		NoLog:      true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready after 15s")
	}
	return ns, nil
}

// defaultDataDir is where the embedded NATS keeps its streams unless told
// otherwise: one directory per database (and per server, when it is not
// the local default), so dev binaries against different databases never
// share history or leases.
func defaultDataDir(dsn string) (string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL: %w", err)
	}
	name := "zapbus-devstack-" + pathSafe(cfg.Database)
	local := cfg.Host == "127.0.0.1" || cfg.Host == "localhost" || cfg.Host == "::1"
	if !local || cfg.Port != 5432 {
		name += "-" + pathSafe(cfg.Host) + "-" + strconv.Itoa(int(cfg.Port))
	}
	return filepath.Join(os.TempDir(), name), nil
}

// pathSafe keeps letters, digits, '.', '_' and '-' and replaces the rest.
func pathSafe(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return "adm_" + hex.EncodeToString(b)
}

// webConfig is the notifier's configuration: the tunables from flags and
// the environment, and the admin token.
func (s settings) webConfig() web.Config {
	c := s.Web
	c.AdminToken = s.AdminToken
	c.WebhookPolicy = devWebhookPolicy(s.Web.WebhookPolicy)
	return c
}

// settleFake waits, at most d in all, until the clients of the fake's
// accounts have answered everything delivered on their live connections.
func settleFake(fake *wafake.Server, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for _, a := range fake.Accounts() {
		_ = a.WaitSettled(ctx)
	}
}

// serveGateway serves the provider gateway's webhooks on ln until ctx ends.
func serveGateway(ctx context.Context, ln net.Listener, h http.Handler) error {
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway http: %w", err)
	}
	return nil
}
