package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/persister"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/wafake"
)

// The inbound scenario: the connector with the real whatsmeow client (real
// Signal decryption, whatsmeow's Postgres device store) against the
// in-process fake WhatsApp server, fake contacts writing text at a fixed
// rate to 1 session and then to many, latency from the contact's send to
// the event on the live subject the notifier fans out to SSE clients
// (live.wa.<mentorado>.evt.message: what WA_EVENTS stored, republished).
func init() {
	register(Scenario{Name: "inbound", Summary: "one session's and 100 sessions' inbound path: fake contact send → live subject (SSE), latency at fixed rates", Run: runInbound})
}

type inboundParams struct {
	oneRates    []int
	manyRates   []int
	sessions    int
	contacts    int // per session in the one-session steps
	step        time.Duration
	persister   bool
	profileDir  string
	signalCache bool
	burst       int
	logLevel    zerolog.Level
}

func runInbound(ctx context.Context, env *Env, args []string) (*Result, error) {
	fs := flag.NewFlagSet("inbound", flag.ContinueOnError)
	one := fs.String("one-rates", "50,100,200,300,400", "messages/s steps for one session")
	many := fs.String("many-rates", "500,1000,1500", "messages/s steps (in total) for many sessions")
	sessions := fs.Int("sessions", 100, "sessions in the many-sessions steps")
	contacts := fs.Int("contacts", 20, "fake contacts writing to the one session")
	step := fs.Duration("step", 5*time.Second, "how long each rate is held")
	pers := fs.Bool("persister", true, "run the persister in the same process, as the dev binary does")
	prof := fs.String("cpuprofile-dir", "", "write each step's CPU profile here (go tool pprof)")
	cache := fs.Bool("signal-cache", true, "the connector's cache in front of whatsmeow's sessions and identity keys (false: whatsmeow's sqlstore as is, for comparison)")
	burst := fs.Int("burst", 2000, "messages handed to the fake at once after the rate steps, to measure how fast a session (and all sessions) drain them; 0: none")
	level := fs.String("log-level", "error", "log level of the connector and whatsmeow (stderr)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	p := inboundParams{sessions: *sessions, contacts: *contacts, step: *step, persister: *pers, profileDir: *prof, signalCache: *cache, burst: *burst}
	var err error
	if p.oneRates, err = parseRates(*one); err != nil {
		return nil, err
	}
	if p.manyRates, err = parseRates(*many); err != nil {
		return nil, err
	}
	if p.logLevel, err = zerolog.ParseLevel(*level); err != nil {
		return nil, err
	}
	if env.Short {
		// Flags left at their defaults shrink to a CI-sized run.
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["one-rates"] {
			p.oneRates = []int{50, 200}
		}
		if !set["many-rates"] {
			p.manyRates = []int{200}
		}
		if !set["sessions"] {
			p.sessions = 10
		}
		if !set["step"] {
			p.step = 1500 * time.Millisecond
		}
		if !set["burst"] {
			p.burst = 300
		}
	}
	return inboundRun(ctx, env, p)
}

func parseRates(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("rate %q: want a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// inboundRig is everything the scenario started.
type inboundRig struct {
	env  *Env
	db   *store.DB
	nc   *nats.Conn
	js   jetstream.JetStream
	fake *wafake.Server
	log  zerolog.Logger

	mu      sync.Mutex
	qr      map[int64]string
	status  map[int64]event.Status
	changed chan struct{}

	// Latency ledger: when each message was handed to the fake, when it
	// appeared on the live subject (and how often).
	lmu      sync.Mutex
	sent     map[string]time.Time
	seen     map[string]time.Time
	seenN    map[string]int
	arrived  chan struct{}
	received int
}

func inboundRun(ctx context.Context, env *Env, p inboundParams) (*Result, error) {
	res := NewResult()
	res.Params["one_rates"] = p.oneRates
	res.Params["many_rates"] = p.manyRates
	res.Params["sessions"] = p.sessions
	res.Params["contacts_one_session"] = p.contacts
	res.Params["step_s"] = p.step.Seconds()
	res.Params["persister_in_process"] = p.persister
	res.Params["signal_cache"] = p.signalCache
	res.Params["burst"] = p.burst
	res.Params["latency_to"] = "live.wa.<mentorado>.evt.message (the subject the notifier fans out to SSE)"
	res.Params["nats"] = "embedded nats-server (same process; its CPU is its own profile category)"
	res.Params["fake"] = "wafake in the same process (its CPU is its own profile category)"

	log := zerolog.New(os.Stderr).Level(p.logLevel).With().Timestamp().Str("service", "zapbench-inbound").Logger()
	rig := &inboundRig{env: env, log: log, qr: map[int64]string{}, status: map[int64]event.Status{}, changed: make(chan struct{}),
		sent: map[string]time.Time{}, seen: map[string]time.Time{}, seenN: map[string]int{}, arrived: make(chan struct{}, 1)}

	// Postgres: a database of our own, dropped at the end.
	bdb, err := createDB(ctx, env.PostgresDSN, "inbound")
	if err != nil {
		return nil, err
	}
	defer bdb.drop()
	db := bdb.db
	rig.db = db

	// NATS: embedded, JetStream on a temporary directory.
	dir, err := os.MkdirTemp("", "zapbench-inbound-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	ns, err := server.NewServer(&server.Options{ServerName: "zapbench", Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(dir, "js"), NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(15 * time.Second) {
		return nil, errors.New("embedded nats: not ready")
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	b, err := bus.Open(ctx, ns.ClientURL(), "zapbench-connector", bus.Config{Provision: true}, log)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	obs, err := nats.Connect(ns.ClientURL(), nats.Name("zapbench-observer"))
	if err != nil {
		return nil, err
	}
	defer obs.Close()
	rig.nc = obs
	if rig.js, err = jetstream.New(obs); err != nil {
		return nil, err
	}

	// Baselines first, on a quiet machine: a raw JetStream publish and a raw
	// committed single-row Postgres insert, one after the other.
	if err := rig.baselines(ctx, res); err != nil {
		return nil, err
	}

	// The fake server and the connector with the real whatsmeow factory.
	fake, err := wafake.NewServer(log.With().Str("component", "wafake").Logger())
	if err != nil {
		return nil, err
	}
	defer fake.Close()
	rig.fake = fake
	factory, err := connector.NewWhatsmeowFactory(ctx, db, log, fake.Configure)
	if err != nil {
		return nil, err
	}
	factory.NoSignalCache = !p.signalCache
	conn, err := connector.New(connector.Config{InstanceID: "zapbench", RestoreJitter: time.Millisecond}, db, b, factory, log)
	if err != nil {
		return nil, err
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	wg.Add(1)
	go func() { defer wg.Done(); _ = conn.Run(runCtx) }()
	if p.persister {
		pb, err := bus.Open(ctx, ns.ClientURL(), "zapbench-persister", bus.Config{}, log)
		if err != nil {
			return nil, err
		}
		defer pb.Close()
		pers, err := persister.New(persister.Config{}, db, pb, log)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() { defer wg.Done(); _ = pers.Run(runCtx) }()
	}
	if err := rig.watch(); err != nil {
		return nil, err
	}
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	for conn.CheckReady(readyCtx) != nil {
		if readyCtx.Err() != nil {
			cancel()
			return nil, errors.New("connector not ready after 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()

	// One session.
	began := time.Now()
	ids, err := rig.pair(ctx, 0, 1)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(env.Stdout, "inbound: paired 1 session in %s\n", time.Since(began).Round(time.Millisecond))
	allOK := true
	target := nearest(p.oneRates, 300)
	for _, rate := range p.oneRates {
		st, err := rig.step(ctx, p, ids, p.contacts, rate, int(float64(rate)*p.step.Seconds()), fmt.Sprintf("one_%d", rate))
		if err != nil {
			return nil, err
		}
		allOK = allOK && st.complete
		st.record(res, fmt.Sprintf("one_%d", rate), rate == target)
	}
	res.Metrics["one_best_rate_p99_under_50ms_msgs_per_s"] = bestRate(res, "one", p.oneRates, 50)
	if p.burst > 0 {
		// Capacity: every message handed to the fake at once; the session
		// drains them as fast as it can (robust to a busy machine, unlike
		// a latency percentile).
		st, err := rig.step(ctx, p, ids, p.contacts, 1_000_000, p.burst, "one_burst")
		if err != nil {
			return nil, err
		}
		allOK = allOK && st.complete
		res.Metrics["one_burst_drain_msgs_per_s"] = st.deliveredPerS
		res.Metrics["one_burst_cpu_ms_per_msg"] = st.cpuMs
		res.Metrics["one_burst_pg_backend_cpu_ms_per_msg"] = st.pgCPUMs
		res.Metrics["one_burst_pg_xacts_per_msg"] = st.xacts
		res.Metrics["one_burst_pg_updates_per_msg"] = st.upd
		res.Ratio("one_burst_drain_msgs_per_s", "pg_commit_per_s")
	}

	// Many sessions: pair the rest, then every session gets a share.
	if p.sessions > 1 && len(p.manyRates) > 0 {
		began = time.Now()
		more, err := rig.pair(ctx, 1, p.sessions-1)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(env.Stdout, "inbound: paired %d more sessions in %s\n", p.sessions-1, time.Since(began).Round(time.Millisecond))
		ids = append(ids, more...)
		target := nearest(p.manyRates, 1000)
		for _, rate := range p.manyRates {
			st, err := rig.step(ctx, p, ids, 2, rate, int(float64(rate)*p.step.Seconds()), fmt.Sprintf("many_%d", rate))
			if err != nil {
				return nil, err
			}
			allOK = allOK && st.complete
			st.record(res, fmt.Sprintf("many_%d", rate), rate == target)
		}
		res.Metrics["many_best_rate_p99_under_100ms_msgs_per_s"] = bestRate(res, "many", p.manyRates, 100)
		if p.burst > 0 {
			st, err := rig.step(ctx, p, ids, 2, 1_000_000, p.burst*2, "many_burst")
			if err != nil {
				return nil, err
			}
			allOK = allOK && st.complete
			res.Metrics["many_burst_drain_msgs_per_s"] = st.deliveredPerS
			res.Metrics["many_burst_cpu_ms_per_msg"] = st.cpuMs
			res.Metrics["many_burst_pg_backend_cpu_ms_per_msg"] = st.pgCPUMs
			res.Ratio("many_burst_drain_msgs_per_s", "pg_commit_per_s")
		}
	}
	rig.lmu.Lock()
	dups := 0
	for _, n := range rig.seenN {
		if n > 1 {
			dups++
		}
	}
	rig.lmu.Unlock()
	res.Checks["every message sent reached the live subject"] = allOK
	res.Checks["no message reached the live subject twice"] = dups == 0
	res.Notes = append(res.Notes,
		"latency: from just before the fake contact encrypts and sends the message to its arrival on the live subject the notifier fans out to SSE (the fake's encryption is included)",
		"pg_*_per_msg: pg_stat_database deltas of the scenario's database over a step, divided by the messages of the step (whatsmeow's store, the connector and the in-process persister)",
		"cpu_ms_per_msg: this process's CPU (connector, whatsmeow, fake, embedded NATS, persister) per message; pg_backend_cpu_ms_per_msg: the Postgres backends serving the scenario's database",
		"cpu_pct_*: the step's CPU profile by package: wafake = any stack through the fake server or its phones; nats_server = the embedded server; else the innermost frame among whatsmeow/libsignal, pgx/database/sql, nats client, zapbench itself (bench), zapbus; runtime = GC, scheduler and the rest")
	return res, nil
}

func withDatabase(dsn, name string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || u.Scheme == "" {
		return "", errors.New("postgres DSN: want a postgres:// URL")
	}
	u.Path = "/" + name
	return u.String(), nil
}

func nearest(rates []int, want int) int {
	best := -1
	for _, r := range rates {
		if best < 0 || math.Abs(float64(r-want)) < math.Abs(float64(best-want)) {
			best = r
		}
	}
	return best
}

// bestRate is the highest step rate whose messages all arrived at that rate
// (delivered ≥ 95% of offered) with p99 under limit.
func bestRate(res *Result, prefix string, rates []int, limitMs float64) float64 {
	best := 0.0
	for _, r := range rates {
		k := fmt.Sprintf("%s_%d_", prefix, r)
		if res.Metrics[k+"p99_ms"] < limitMs && res.Metrics[k+"delivered_msgs_per_s"] >= 0.95*float64(r) && float64(r) > best {
			best = float64(r)
		}
	}
	return best
}

// watch follows QR codes and connection events (core subscriptions, for
// pairing) and the live subject (the latency ledger).
func (rig *inboundRig) watch() error {
	on := func(msg *nats.Msg) {
		env, p, err := event.Decode(msg.Data)
		if err != nil {
			return
		}
		rig.mu.Lock()
		switch p := p.(type) {
		case *event.QR:
			if p.Code != "" {
				rig.qr[env.MentoradoID] = p.Code
			}
		case *event.Connection:
			rig.status[env.MentoradoID] = p.Status
		}
		close(rig.changed)
		rig.changed = make(chan struct{})
		rig.mu.Unlock()
	}
	for _, s := range []string{"wa.*.qr", "wa.*.evt." + string(event.TypeConnection)} {
		sub, err := rig.nc.Subscribe(s, on)
		if err != nil {
			return err
		}
		_ = sub.SetPendingLimits(-1, -1)
	}
	sub, err := rig.nc.Subscribe(bus.LivePrefix+"wa.*.evt."+string(event.TypeMessage), func(msg *nats.Msg) {
		now := time.Now()
		var e struct {
			Data struct {
				WAID string `json:"wa_id"`
			} `json:"data"`
		}
		if json.Unmarshal(msg.Data, &e) != nil || e.Data.WAID == "" {
			return
		}
		rig.lmu.Lock()
		if _, ok := rig.seen[e.Data.WAID]; !ok {
			rig.seen[e.Data.WAID] = now
			rig.received++
		}
		rig.seenN[e.Data.WAID]++
		rig.lmu.Unlock()
		select {
		case rig.arrived <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return err
	}
	_ = sub.SetPendingLimits(-1, -1)
	return rig.nc.Flush()
}

func (rig *inboundRig) waitCond(ctx context.Context, cond func() bool) error {
	for {
		rig.mu.Lock()
		ok, ch := cond(), rig.changed
		rig.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func accountPhone(i int) string { return fmt.Sprintf("551195%07d", i) }
func contactPhone(i, j int) string {
	return fmt.Sprintf("55119%03d%05d", i%1000, j)
}

// pair creates n mentorados and pairs each by QR through the connector's
// connect command and the fake phone, 10 at a time.
func (rig *inboundRig) pair(ctx context.Context, first, n int) ([]int64, error) {
	ids := make([]int64, n)
	for i := range ids {
		id, err := rig.db.Mentorados().Create(ctx, fmt.Sprintf("bench %d", first+i), nil)
		if err != nil {
			return nil, err
		}
		ids[i] = id
	}
	sem := make(chan struct{}, 10)
	errs := make(chan error, n)
	for i, m := range ids {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- rig.pairOne(ctx, m, accountPhone(first+i))
		}()
	}
	var all []error
	for range ids {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	return ids, errors.Join(all...)
}

func (rig *inboundRig) pairOne(ctx context.Context, m int64, phone string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	data, _ := json.Marshal(event.ConnectRequest{Method: event.ConnectQR})
	msg, err := rig.nc.RequestWithContext(ctx, event.CommandSubject(m, event.VerbConnect), data)
	if err != nil {
		return fmt.Errorf("connect %d: %w", m, err)
	}
	var r event.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil || r.Error != nil {
		return fmt.Errorf("connect %d: %v %v", m, err, r.Error)
	}
	var code string
	if err := rig.waitCond(ctx, func() bool { code = rig.qr[m]; return code != "" }); err != nil {
		return fmt.Errorf("no QR for %d: %w", m, err)
	}
	if err := rig.fake.ScanQR(ctx, code, phone); err != nil {
		return fmt.Errorf("scan %d: %w", m, err)
	}
	if err := rig.waitCond(ctx, func() bool { return rig.status[m] == event.StatusConnected }); err != nil {
		return fmt.Errorf("%d not connected: %w", m, err)
	}
	return nil
}

// stepResult is one rate step.
type stepResult struct {
	rate              int
	sent              int
	sendPerS          float64
	deliveredPerS     float64
	p50, p90, p99, mx float64
	complete          bool
	xacts, ins, upd   float64 // per message
	cpuMs, pgCPUMs    float64 // per message
	shares            map[string]float64
}

func (st stepResult) record(res *Result, k string, withShares bool) {
	res.Metrics[k+"_sent_msgs_per_s"] = st.sendPerS
	res.Metrics[k+"_delivered_msgs_per_s"] = st.deliveredPerS
	res.Metrics[k+"_p50_ms"] = st.p50
	res.Metrics[k+"_p90_ms"] = st.p90
	res.Metrics[k+"_p99_ms"] = st.p99
	res.Metrics[k+"_max_ms"] = st.mx
	res.Metrics[k+"_pg_xacts_per_msg"] = st.xacts
	res.Metrics[k+"_pg_inserts_per_msg"] = st.ins
	res.Metrics[k+"_pg_updates_per_msg"] = st.upd
	res.Metrics[k+"_cpu_ms_per_msg"] = st.cpuMs
	res.Metrics[k+"_pg_backend_cpu_ms_per_msg"] = st.pgCPUMs
	if withShares {
		for cat, v := range st.shares {
			res.Metrics[k+"_cpu_pct_"+cat] = v
		}
	}
}

// step drives rate messages/s for p.step, spread round-robin over the
// sessions and contactsPer contacts of each, waits until every message
// arrived on the live subject (or a minute), and measures.
func (rig *inboundRig) step(ctx context.Context, p inboundParams, ids []int64, contactsPer, rate, n int, name string) (stepResult, error) {
	st := stepResult{rate: rate}
	// One worker per (session, contact) keeps a contact's messages in order
	// (one Signal chain) while the others send in parallel.
	var workers []*inboundWorker
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var sendErr error
	for j := range contactsPer {
		for i := range ids {
			w := &inboundWorker{ch: make(chan string, 4096), contact: rig.fake.Contact(contactPhone(i, j)), acct: accountPhone(i)}
			workers = append(workers, w)
		}
	}
	// The first message of a contact to a session is a prekey message that
	// sets up the Signal session; one from each contact before measuring
	// makes the step measure the steady state.
	if err := rig.warm(ctx, workers); err != nil {
		return st, fmt.Errorf("%s: warm up: %w", name, err)
	}
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for text := range w.ch {
				t0 := time.Now()
				id, err := w.contact.SendText(ctx, w.acct, text)
				if err != nil {
					errMu.Lock()
					sendErr = err
					errMu.Unlock()
					continue
				}
				rig.lmu.Lock()
				rig.sent[id] = t0
				rig.lmu.Unlock()
			}
		}()
	}

	x0, err := rig.pgStats(ctx)
	if err != nil {
		return st, err
	}
	cpu0 := selfCPU()
	pg0 := rig.pgBackendCPU(ctx)
	var profBuf *profileBuffer
	if err := startProfile(&profBuf); err != nil {
		fmt.Fprintf(rig.env.Stdout, "inbound: no CPU profile: %v\n", err)
	}
	rig.lmu.Lock()
	before := len(rig.sent)
	startReceived := rig.received
	rig.lmu.Unlock()

	began := time.Now()
	interval := time.Second / time.Duration(rate)
	for k := range n {
		at := began.Add(time.Duration(k) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		workers[k%len(workers)].ch <- fmt.Sprintf("%s mensagem %d", name, k)
	}
	for _, w := range workers {
		close(w.ch)
	}
	wg.Wait()
	sendDur := time.Since(began)
	if sendErr != nil {
		return st, fmt.Errorf("%s: contact send: %w", name, sendErr)
	}
	// Wait for the stragglers.
	deadline := time.After(60 * time.Second)
	for {
		rig.lmu.Lock()
		got := rig.received - startReceived
		rig.lmu.Unlock()
		if got >= n {
			break
		}
		select {
		case <-rig.arrived:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			goto measured
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
measured:
	shares := stopProfile(profBuf, p.profileDir, name)
	cpu1 := selfCPU()
	pg1 := rig.pgBackendCPU(ctx)
	x1, err := rig.pgStats(ctx)
	if err != nil {
		return st, err
	}

	rig.lmu.Lock()
	var lat []float64
	var last time.Time
	for id, t0 := range rig.sent {
		if t0.Before(began) {
			continue
		}
		if t1, ok := rig.seen[id]; ok {
			lat = append(lat, float64(t1.Sub(t0).Microseconds())/1000)
			if t1.After(last) {
				last = t1
			}
		}
	}
	sentN := len(rig.sent) - before
	rig.lmu.Unlock()
	slices.Sort(lat)
	st.sent = sentN
	st.sendPerS = float64(sentN) / sendDur.Seconds()
	if !last.IsZero() {
		st.deliveredPerS = float64(len(lat)) / last.Sub(began).Seconds()
	}
	st.p50, st.p90, st.p99 = pct(lat, 50), pct(lat, 90), pct(lat, 99)
	if len(lat) > 0 {
		st.mx = lat[len(lat)-1]
	}
	st.complete = len(lat) == n && sentN == n
	if n > 0 {
		st.xacts = float64(x1.xacts-x0.xacts) / float64(n)
		st.ins = float64(x1.ins-x0.ins) / float64(n)
		st.upd = float64(x1.upd-x0.upd) / float64(n)
		st.cpuMs = (cpu1 - cpu0).Seconds() * 1000 / float64(n)
		st.pgCPUMs = pg1.sub(pg0).Seconds() * 1000 / float64(n)
	}
	st.shares = shares
	fmt.Fprintf(rig.env.Stdout, "inbound: %-10s offered %5d/s sent %7.1f/s delivered %7.1f/s  p50 %7.1f p90 %7.1f p99 %7.1f max %7.1f ms  arrived %d/%d  pg %.1f xact %.1f ins %.1f upd /msg  cpu %.2f ms/msg (+pg %.2f)  %s\n",
		name, rate, st.sendPerS, st.deliveredPerS, st.p50, st.p90, st.p99, st.mx, len(lat), n, st.xacts, st.ins, st.upd, st.cpuMs, st.pgCPUMs, fmtShares(shares))
	return st, nil
}

// inboundWorker is one fake contact writing to one session.
type inboundWorker struct {
	ch      chan string
	contact *wafake.Contact
	acct    string
}

// warm sends one message from every worker's contact (a few at a time) and
// waits until all arrived on the live subject.
func (rig *inboundRig) warm(ctx context.Context, workers []*inboundWorker) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var ids []string
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	errs := make(chan error, len(workers))
	for _, w := range workers {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			id, err := w.contact.SendText(ctx, w.acct, "oi")
			if err == nil {
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
			errs <- err
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			return err
		}
	}
	for {
		rig.lmu.Lock()
		all := true
		for _, id := range ids {
			if _, ok := rig.seen[id]; !ok {
				all = false
				break
			}
		}
		rig.lmu.Unlock()
		if all {
			return nil
		}
		select {
		case <-rig.arrived:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

type pgCounters struct{ xacts, ins, upd int64 }

func (rig *inboundRig) pgStats(ctx context.Context) (pgCounters, error) {
	var c pgCounters
	// The statistics a backend reports are flushed at most once a second
	// (and at transaction end when idle); force ours out first.
	_, _ = rig.db.Pool.Exec(ctx, "SELECT pg_stat_force_next_flush()")
	err := rig.db.Pool.QueryRow(ctx, `SELECT xact_commit + xact_rollback, tup_inserted, tup_updated FROM pg_stat_database WHERE datname = current_database()`).Scan(&c.xacts, &c.ins, &c.upd)
	return c, err
}

// pgCPU is the CPU time of each Postgres backend serving our database.
type pgCPU map[int]time.Duration

func (a pgCPU) sub(b pgCPU) time.Duration {
	var d time.Duration
	for pid, t := range a {
		d += t - b[pid] // a backend new since b counts whole
	}
	return d
}

func (rig *inboundRig) pgBackendCPU(ctx context.Context) pgCPU {
	out := pgCPU{}
	rows, err := rig.db.Pool.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
	if err != nil {
		return out
	}
	var pids []int
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			pids = append(pids, pid)
		}
	}
	rows.Close()
	for _, pid := range pids {
		if t, ok := procStatCPU(pid); ok {
			out[pid] = t
		}
	}
	return out
}

// procStatCPU reads utime+stime of a process (clock ticks of 10 ms).
func procStatCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond, true
}

// selfCPU is the CPU this process has used (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// baselines measures a raw JetStream publish (synchronous, file storage,
// the same size as a message event) and a raw committed single-row insert.
func (rig *inboundRig) baselines(ctx context.Context, res *Result) error {
	n := 3000
	if rig.env.Short {
		n = 500
	}
	if _, err := rig.js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH_RAW", Subjects: []string{"bench.raw.>"}, Storage: jetstream.FileStorage}); err != nil {
		return fmt.Errorf("baseline stream: %w", err)
	}
	payload := make([]byte, 600)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	lat := make([]float64, 0, n)
	began := time.Now()
	for i := range n {
		t0 := time.Now()
		if _, err := rig.js.Publish(ctx, fmt.Sprintf("bench.raw.%d", i%20), payload, jetstream.WithMsgID(fmt.Sprintf("raw-%d", i))); err != nil {
			return fmt.Errorf("baseline publish: %w", err)
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
	}
	res.Baselines["jetstream_publish_per_s"] = float64(n) / time.Since(began).Seconds()
	slices.Sort(lat)
	res.Baselines["jetstream_publish_p50_ms"] = pct(lat, 50)
	res.Baselines["jetstream_publish_p99_ms"] = pct(lat, 99)
	_ = rig.js.DeleteStream(ctx, "BENCH_RAW")

	if _, err := rig.db.Pool.Exec(ctx, "CREATE TABLE bench_raw (id bigserial PRIMARY KEY, k text NOT NULL, v bytea NOT NULL)"); err != nil {
		return fmt.Errorf("baseline table: %w", err)
	}
	lat = lat[:0]
	began = time.Now()
	for i := range n {
		t0 := time.Now()
		if _, err := rig.db.Pool.Exec(ctx, "INSERT INTO bench_raw (k, v) VALUES ($1, $2)", strconv.Itoa(i), payload); err != nil {
			return fmt.Errorf("baseline insert: %w", err)
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
	}
	res.Baselines["pg_commit_per_s"] = float64(n) / time.Since(began).Seconds()
	slices.Sort(lat)
	res.Baselines["pg_commit_p50_ms"] = pct(lat, 50)
	res.Baselines["pg_commit_p99_ms"] = pct(lat, 99)
	_, _ = rig.db.Pool.Exec(ctx, "DROP TABLE bench_raw")
	fmt.Fprintf(rig.env.Stdout, "inbound: baselines: jetstream publish %.0f/s (p50 %.2f ms), postgres commit %.0f/s (p50 %.2f ms)\n",
		res.Baselines["jetstream_publish_per_s"], res.Baselines["jetstream_publish_p50_ms"], res.Baselines["pg_commit_per_s"], res.Baselines["pg_commit_p50_ms"])
	return nil
}
