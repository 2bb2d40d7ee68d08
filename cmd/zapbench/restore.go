package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/wafake"
)

// The restore scenario: N mentorados paired through one connector and the
// real whatsmeow client on the protocol-level fake WhatsApp server (all in
// this process, like the dev binary's -sim mode), the connector stopped
// gracefully, and a new one started on the same database: the time until
// every session is connected again, and what the restored sessions cost
// (peak RSS, heap and goroutines over the sessions; the fake server's
// goroutines counted apart). Baseline in the same run: the same stored
// devices logged in by plain whatsmeow clients, with the same concurrency
// and no zapbus around them.
func init() {
	register(Scenario{Name: "restore", Summary: "start-up restore: N paired sessions reconnected by one new connector on the fake server", Run: runRestore})
}

func runRestore(ctx context.Context, env *Env, args []string) (*Result, error) {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	sessions := fs.Int("sessions", 1000, "paired sessions")
	pairers := fs.Int("pair-concurrency", 8, "pairings at once while setting up")
	concurrency := fs.Int("restore-concurrency", 0, "connector RestoreConcurrency (0: its default)")
	jitter := fs.Duration("restore-jitter", 0, "connector RestoreJitter (0: its default)")
	stopTimeout := fs.Duration("stop-timeout", 5*time.Minute, "ShutdownTimeout of the first connector, so it hands back every lease before the restore")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the restore phase here")
	heapProfile := fs.String("heapprofile", "", "write a heap profile here once every session is restored")
	if env.Short {
		*sessions = 50
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	res := NewResult()
	res.Params["sessions"] = *sessions
	lim, err := raiseOpenFiles()
	if err != nil {
		return nil, err
	}
	res.Params["open_file_limit"] = lim

	work, err := os.MkdirTemp("", "zapbench-restore-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	ns, err := startNATSProcess(ctx, env, work)
	if err != nil {
		return nil, err
	}
	defer ns.stop()
	res.Params["nats_server"] = ns.version
	bdb, err := createDB(ctx, env.PostgresDSN, "restore")
	if err != nil {
		return nil, err
	}
	defer bdb.drop()
	db := bdb.db

	log := zerolog.New(os.Stderr).Level(zerolog.ErrorLevel).With().Timestamp().Logger()
	fake, err := wafake.NewServer(zerolog.Nop())
	if err != nil {
		return nil, err
	}
	defer fake.Close()
	factory, err := connector.NewWhatsmeowFactory(ctx, db, log, fake.Configure)
	if err != nil {
		return nil, err
	}
	obs, err := bus.Open(ctx, ns.url, "zapbench", bus.Config{Provision: true}, log)
	if err != nil {
		return nil, err
	}
	defer obs.Close()
	st := newStatusWatch()
	if err := st.subscribe(obs.NC); err != nil {
		return nil, err
	}

	ids := make([]int64, *sessions)
	for i := range ids {
		if ids[i], err = db.Mentorados().Create(ctx, fmt.Sprintf("restore %d", i), nil); err != nil {
			return nil, fmt.Errorf("create mentorado: %w", err)
		}
	}
	cfg := connector.Config{RestoreConcurrency: *concurrency, RestoreJitter: *jitter}

	// 1. Pair every session through connector A.
	fmt.Fprintf(env.Stdout, "restore: pairing %d sessions\n", len(ids))
	cfgA := cfg
	cfgA.ShutdownTimeout = *stopTimeout
	a, err := startConnector(ctx, cfgA, "bench-a", db, ns.url, factory, log)
	if err != nil {
		return nil, err
	}
	pairStart := time.Now()
	if err := pairAll(ctx, obs.NC, fake, st, ids, *pairers); err != nil {
		a.stop()
		return nil, err
	}
	res.Metrics["pair_s"] = time.Since(pairStart).Seconds()
	stopStart := time.Now()
	if err := a.stop(); err != nil {
		return nil, fmt.Errorf("stop connector a: %w", err)
	}
	res.Metrics["graceful_stop_s"] = time.Since(stopStart).Seconds()
	left, err := leasesLeft(ctx, obs)
	if err != nil {
		return nil, err
	}
	res.Metrics["leases_left_after_stop"] = float64(left)
	if left > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d leases were still held after the first connector stopped: the new one takes those sessions when the leases expire (lease TTL)", left))
	}

	// 2. Baseline: the same devices logged in by plain whatsmeow clients.
	effCfg := cfg.WithDefaults(15 * time.Second)
	res.Params["restore_concurrency"] = effCfg.RestoreConcurrency
	res.Params["restore_jitter_s"] = effCfg.RestoreJitter.Seconds()
	fmt.Fprintf(env.Stdout, "restore: baseline, %d plain whatsmeow logins at concurrency %d\n", len(ids), effCfg.RestoreConcurrency)
	plain, err := plainLogins(ctx, factory, fake, effCfg.RestoreConcurrency)
	if err != nil {
		return nil, err
	}
	res.Baselines["plain_whatsmeow_all_connected_s"] = plain.Seconds()
	res.Baselines["plain_whatsmeow_sessions_per_s"] = float64(len(ids)) / plain.Seconds()

	// 3. Restore: a new connector on the same database.
	runtime.GC()
	time.Sleep(500 * time.Millisecond)
	before := sampleSelf()
	ours0, fakes0 := goroutinesBySide()
	fmt.Fprintf(env.Stdout, "restore: connector b restores %d sessions\n", len(ids))
	st.reset()
	peak := before
	var sampling sync.WaitGroup
	stopSampling := make(chan struct{})
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				peak = peak.max(sampleSelf())
			}
		}
	}()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	b, err := startConnector(ctx, cfg, "bench-b", db, ns.url, factory, log)
	if err != nil {
		close(stopSampling)
		return nil, err
	}
	defer b.stop()
	first, all, err := st.waitAll(ctx, ids, start, 10*time.Minute)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	close(stopSampling)
	sampling.Wait()
	if err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second)
	peak = peak.max(sampleSelf())
	runtime.GC() // settled heap: live memory, not garbage awaiting collection
	settled := sampleSelf()
	ours, fakes := goroutinesBySide()
	if *heapProfile != "" {
		if err := writeHeapProfile(*heapProfile); err != nil {
			return nil, err
		}
	}
	n := float64(len(ids))
	res.Metrics["restore_all_connected_s"] = all.Seconds()
	res.Metrics["restore_first_connected_s"] = first.Seconds()
	res.Metrics["restore_sessions_per_s"] = n / all.Seconds()
	res.Metrics["peak_rss_bytes"] = peak.rss
	res.Metrics["peak_rss_bytes_per_session_whole_process"] = peak.rss / n
	res.Metrics["peak_goroutines_per_session"] = (peak.goroutines - before.goroutines) / n
	res.Metrics["settled_heap_bytes_per_session"] = (settled.heap - before.heap) / n
	res.Metrics["settled_goroutines_zapbus_per_session"] = float64(ours-ours0) / n
	res.Metrics["settled_goroutines_fake_per_session"] = float64(fakes-fakes0) / n
	res.Ratio("restore_all_connected_s", "plain_whatsmeow_all_connected_s")
	qrs := st.qrs.Load()
	res.Checks["every session connected"] = true
	res.Checks["no QR asked for during restore"] = qrs == 0
	res.Notes = append(res.Notes,
		"one process: connector, whatsmeow clients and the fake WhatsApp server (internal/wafake); memory per session includes the fake's side, goroutines are split by stack (internal/wafake frames or not)",
		"memory: peak RSS during the restore minus RSS before it (which still holds what pairing used, so this understates) and peak RSS over sessions for the whole process (overstates); settled heap is live heap after a GC, minus before",
		fmt.Sprintf("the first connector stops with ShutdownTimeout %s (default 10 s) so that it hands back every lease; graceful_stop_s is how long that took", *stopTimeout),
		"time: from connector.New to the last session's connected event on live.wa.*.evt.connection; the connector's restore jitter (RestoreJitter) spreads the starts on purpose",
		"baseline: the same stored devices, plain whatsmeow.Client Connect with the same concurrency and no jitter, until events.Connected")
	return res, nil
}

// runningConnector is a connector.Connector with its Run goroutine.
type runningConnector struct {
	cancel context.CancelFunc
	done   chan error
	b      *bus.Bus
	once   sync.Once
	err    error
}

func startConnector(ctx context.Context, cfg connector.Config, name string, db *store.DB, url string, f *connector.WhatsmeowFactory, log zerolog.Logger) (*runningConnector, error) {
	cfg.InstanceID = name
	b, err := bus.Open(ctx, url, "zapbus-connector", bus.Config{}, log)
	if err != nil {
		return nil, err
	}
	c, err := connector.New(cfg, db, b, f, log.With().Str("connector", name).Logger())
	if err != nil {
		b.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	r := &runningConnector{cancel: cancel, done: make(chan error, 1), b: b}
	go func() { r.done <- c.Run(rctx) }()
	for !c.Ready() {
		select {
		case err := <-r.done:
			cancel()
			b.Close()
			return nil, fmt.Errorf("connector %s: %w", name, err)
		case <-ctx.Done():
			r.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return r, nil
}

// stop shuts the connector down gracefully (its leases are handed back).
func (r *runningConnector) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(2 * time.Minute):
			r.err = errors.New("connector did not stop within 2 minutes")
		}
		r.b.Close()
	})
	return r.err
}

// statusWatch follows connection statuses and QR codes on the subjects
// the stream republishes (connection) and the connector publishes (qr).
type statusWatch struct {
	mu        sync.Mutex
	since     time.Time
	connected map[int64]time.Time // first connected status after since
	qr        map[int64]string    // latest QR code
	qrs       atomic.Int64        // QR codes since the last reset
	changed   chan struct{}
}

func newStatusWatch() *statusWatch {
	return &statusWatch{since: time.Now(), connected: map[int64]time.Time{}, qr: map[int64]string{}, changed: make(chan struct{}, 1)}
}

func (w *statusWatch) subscribe(nc *nats.Conn) error {
	if _, err := nc.Subscribe(bus.LivePrefix+"wa.*.evt.connection", func(m *nats.Msg) {
		_, p, err := event.Decode(m.Data)
		c, ok := p.(*event.Connection)
		if err != nil || !ok || c.Status != event.StatusConnected {
			return
		}
		id, _, err := event.ParseSubject(strings.TrimPrefix(m.Subject, bus.LivePrefix))
		if err != nil {
			return
		}
		w.mu.Lock()
		if _, seen := w.connected[id]; !seen {
			w.connected[id] = time.Now()
		}
		w.mu.Unlock()
		w.poke()
	}); err != nil {
		return err
	}
	if _, err := nc.Subscribe("wa.*.qr", func(m *nats.Msg) {
		if strings.HasPrefix(m.Reply, "$JS.") {
			return
		}
		_, p, err := event.Decode(m.Data)
		q, ok := p.(*event.QR)
		if err != nil || !ok || q.Code == "" {
			return
		}
		id, _, err := event.ParseSubject(m.Subject)
		if err != nil {
			return
		}
		w.qrs.Add(1)
		w.mu.Lock()
		w.qr[id] = q.Code
		w.mu.Unlock()
		w.poke()
	}); err != nil {
		return err
	}
	return nc.Flush()
}

func (w *statusWatch) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *statusWatch) reset() {
	w.mu.Lock()
	w.since = time.Now()
	clear(w.connected)
	clear(w.qr)
	w.qrs.Store(0)
	w.mu.Unlock()
}

// wait returns what cond finds under the lock, waiting for changes.
func (w *statusWatch) wait(ctx context.Context, d time.Duration, cond func() bool) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-w.changed:
		case <-time.After(200 * time.Millisecond):
		case <-t.C:
			return errors.New("timed out")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waitAll waits until every id has connected and returns the first and
// the last connection's time since start.
func (w *statusWatch) waitAll(ctx context.Context, ids []int64, start time.Time, d time.Duration) (first, last time.Duration, err error) {
	err = w.wait(ctx, d, func() bool { return len(w.connected) >= len(ids) })
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		return 0, 0, fmt.Errorf("%d of %d sessions connected: %w", len(w.connected), len(ids), err)
	}
	first = time.Duration(1 << 62)
	for _, id := range ids {
		at, ok := w.connected[id]
		if !ok {
			return 0, 0, fmt.Errorf("mentorado %d never connected", id)
		}
		first, last = min(first, at.Sub(start)), max(last, at.Sub(start))
	}
	return first, last, nil
}

// pairAll pairs every mentorado by QR through the connector, n at once:
// the connect command, the QR the connector publishes, the fake phone
// scanning it, the connected status.
func pairAll(ctx context.Context, nc *nats.Conn, fake *wafake.Server, st *statusWatch, ids []int64, n int) error {
	jobs := make(chan int, len(ids))
	for i := range ids {
		jobs <- i
	}
	close(jobs)
	errc := make(chan error, n)
	var done atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := pairOne(ctx, nc, fake, st, ids[i], fmt.Sprintf("5511%09d", 900000000+i)); err != nil {
					errc <- fmt.Errorf("pair mentorado %d: %w", ids[i], err)
					return
				}
				if k := done.Add(1); k%100 == 0 {
					fmt.Fprintf(os.Stderr, "restore: %d paired\n", k)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

func pairOne(ctx context.Context, nc *nats.Conn, fake *wafake.Server, st *statusWatch, m int64, phone string) error {
	body, _ := json.Marshal(event.ConnectRequest{Method: event.ConnectQR})
	msg, err := nc.RequestWithContext(ctx, event.CommandSubject(m, event.VerbConnect), body)
	if err != nil {
		return fmt.Errorf("connect command: %w", err)
	}
	var r event.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil || r.Error != nil {
		return fmt.Errorf("connect command: %v %+v", err, r.Error)
	}
	var code string
	if err := st.wait(ctx, time.Minute, func() bool { code = st.qr[m]; return code != "" }); err != nil {
		return fmt.Errorf("no QR: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := fake.ScanQR(sctx, code, phone); err != nil {
		return fmt.Errorf("scan: %w", err)
	}
	if err := st.wait(ctx, 2*time.Minute, func() bool { _, ok := st.connected[m]; return ok }); err != nil {
		return fmt.Errorf("not connected after pairing: %w", err)
	}
	return nil
}

// plainLogins logs every stored device in with a plain whatsmeow client,
// n at once, and returns the time until all were connected; then it
// disconnects them.
func plainLogins(ctx context.Context, f *connector.WhatsmeowFactory, fake *wafake.Server, n int) (time.Duration, error) {
	devs, err := f.Container().GetAllDevices(ctx)
	if err != nil {
		return 0, fmt.Errorf("devices: %w", err)
	}
	clients := make([]*whatsmeow.Client, len(devs))
	sem := make(chan struct{}, n)
	errc := make(chan error, len(devs))
	var wg sync.WaitGroup
	start := time.Now()
	for i, d := range devs {
		cli := whatsmeow.NewClient(d, nil)
		fake.Configure(cli)
		cli.EnableAutoReconnect = false
		clients[i] = cli
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			connected := make(chan struct{})
			var once sync.Once
			h := cli.AddEventHandler(func(evt any) {
				if _, ok := evt.(*events.Connected); ok {
					once.Do(func() { close(connected) })
				}
			})
			defer cli.RemoveEventHandler(h)
			if err := cli.Connect(); err != nil {
				errc <- err
				return
			}
			select {
			case <-connected:
			case <-time.After(time.Minute):
				errc <- errors.New("plain client not connected within a minute")
			case <-ctx.Done():
				errc <- ctx.Err()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, c := range clients {
		c.Disconnect()
	}
	close(errc)
	if err := <-errc; err != nil {
		return 0, fmt.Errorf("plain login: %w", err)
	}
	return elapsed, nil
}

type selfSample struct{ rss, heap, goroutines float64 }

func (a selfSample) max(b selfSample) selfSample {
	return selfSample{max(a.rss, b.rss), max(a.heap, b.heap), max(a.goroutines, b.goroutines)}
}

// sampleSelf reads this process's RSS, Go heap in use and goroutines.
func sampleSelf() selfSample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := selfSample{heap: float64(ms.HeapInuse), goroutines: float64(runtime.NumGoroutine())}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
				s.rss = kb * 1024
			}
		}
	}
	return s
}

// goroutinesBySide counts goroutines with an internal/wafake frame (the
// fake server's side) and the others.
func goroutinesBySide() (ours, fake int) {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range bytes.Split(buf, []byte("\n\ngoroutine ")) {
		if bytes.Contains(g, []byte("internal/wafake")) {
			fake++
		} else {
			ours++
		}
	}
	return ours, fake
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.WriteHeapProfile(f)
}

// leasesLeft counts the keys in the lease bucket.
func leasesLeft(ctx context.Context, b *bus.Bus) (int, error) {
	kv, err := b.KeyValue(ctx, bus.BucketLeases)
	if err != nil {
		return 0, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return 0, fmt.Errorf("list leases: %w", err)
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	return n, nil
}
