package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// The fan-out scenario: one notifier process (cmd/notifier, built from
// this tree) on a real nats-server, N SSE clients spread evenly over M
// mentorados, each client authenticated with its mentorado's bearer token,
// and message events published into WA_EVENTS the way the connector
// publishes them (bus.Publish: JetStream, Nats-Msg-Id, waiting for the
// ack) at R events/s in total. The stream republishes what it stored to
// live.wa.<m>.evt.>, which the notifier's streams read.
//
// Measured: the notifier's memory and goroutines per client (delta over
// the N clients, from its own /metrics and /proc), delivery latency from
// the moment publish is called to the frame at the client, and frames
// missing. Baselines in the same run: raw NATS core publish → subscribe
// at the same rate, and JetStream publish → live subject (what the
// notifier gets to work with).
func init() {
	register(Scenario{Name: "fanout", Summary: "SSE fan-out: N clients on one notifier process, memory per client, publish → frame latency", Run: runFanout})
}

func runFanout(ctx context.Context, env *Env, args []string) (*Result, error) {
	fs := flag.NewFlagSet("fanout", flag.ContinueOnError)
	clients := fs.Int("clients", 10000, "SSE clients")
	tenants := fs.Int("mentorados", 1000, "mentorados the clients are spread over")
	rate := fs.Int("rate", 1000, "events per second, in total")
	dur := fs.Duration("duration", 30*time.Second, "how long events are published")
	notifierBin := fs.String("notifier", "", "notifier binary (default: go build ./cmd/notifier)")
	if env.Short {
		*clients, *tenants, *dur = 500, 50, 5*time.Second
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if *clients < *tenants || *tenants < 1 || *rate < 1 {
		return nil, errors.New("fanout: need clients >= mentorados >= 1 and a positive rate")
	}
	res := NewResult()
	res.Params["clients"] = *clients
	res.Params["mentorados"] = *tenants
	res.Params["rate_events_per_s"] = *rate
	res.Params["duration_s"] = dur.Seconds()
	res.Params["notifier"] = "separate process (cmd/notifier)"

	// Both the notifier and this process hold one socket per client.
	lim, err := raiseOpenFiles()
	if err != nil {
		return nil, err
	}
	res.Params["open_file_limit"] = lim
	if need := uint64(*clients) + 200; lim < need {
		return nil, fmt.Errorf("fanout: open-file limit %d below the %d sockets needed (raise the hard limit: ulimit -Hn)", lim, need)
	}

	work, err := os.MkdirTemp("", "zapbench-fanout-")
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

	bdb, err := createDB(ctx, env.PostgresDSN, "fanout")
	if err != nil {
		return nil, err
	}
	defer bdb.drop()
	dsn, db := bdb.dsn, bdb.db
	b, err := bus.Open(ctx, ns.url, "zapbench", bus.Config{Provision: true}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	defer b.Close()

	// Mentorados with their tokens, stored hashed as the admin API does.
	type tenant struct {
		id    int64
		token string
	}
	ts := make([]tenant, *tenants)
	for i := range ts {
		raw := make([]byte, 32)
		_, _ = rand.Read(raw)
		tok := "zbt_" + base64.RawURLEncoding.EncodeToString(raw)
		h := sha256.Sum256([]byte(tok))
		id, err := db.Mentorados().Create(ctx, fmt.Sprintf("fanout %d", i), h[:])
		if err != nil {
			return nil, fmt.Errorf("create mentorado: %w", err)
		}
		ts[i] = tenant{id, tok}
	}

	bin := *notifierBin
	if bin == "" {
		bin = filepath.Join(work, "notifier")
		fmt.Fprintln(env.Stdout, "fanout: building ./cmd/notifier")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/notifier").CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build notifier (run zapbench from the repository root): %v\n%s", err, out)
		}
	}
	nt, err := startNotifier(ctx, bin, work, dsn, ns.url)
	if err != nil {
		return nil, err
	}
	defer nt.stop()

	// Baseline 1: raw NATS core publish → subscribe at the same rate.
	rawLat, err := measureCorePubSub(ctx, ns.url, *rate, min(*dur, 10*time.Second))
	if err != nil {
		return nil, err
	}
	res.Baselines["nats_core_p50_ms"] = percentileMs(rawLat, 50)
	res.Baselines["nats_core_p99_ms"] = percentileMs(rawLat, 99)

	before, err := nt.sample(ctx)
	if err != nil {
		return nil, err
	}

	// Clients: one goroutine, one socket and a 4 KiB read buffer each,
	// reading the chunked SSE response with no other machinery, so this
	// process stays small next to the notifier.
	base := time.Now()
	total := int(dur.Seconds() * float64(*rate))
	pubAt := make([]atomic.Int64, total) // ns since base when publish was called
	cs := make([]*sseClient, *clients)
	for i := range cs {
		t := ts[i%len(ts)]
		cs[i] = &sseClient{mentorado: t.id, token: t.token, base: base, pubAt: pubAt, lastN: -1}
	}
	fmt.Fprintf(env.Stdout, "fanout: opening %d SSE clients on %d mentorados\n", *clients, *tenants)
	cctx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	var connected atomic.Int64
	var wg sync.WaitGroup
	openStart := time.Now()
	sem := make(chan struct{}, 64)
	openErr := make(chan error, 1)
	for _, c := range cs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.open(cctx, nt.addr)
			<-sem
			if err != nil {
				select {
				case openErr <- err:
				default:
				}
				return
			}
			connected.Add(1)
			c.read()
		}()
	}
	for connected.Load() < int64(len(cs)) {
		select {
		case err := <-openErr:
			return nil, fmt.Errorf("open client: %w", err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.Metrics["clients_open_s"] = time.Since(openStart).Seconds()
	if err := nt.waitClients(ctx, len(cs)); err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // let the notifier settle (GC, buffers)
	after, err := nt.sample(ctx)
	if err != nil {
		return nil, err
	}
	n := float64(len(cs))
	res.Metrics["notifier_rss_bytes_per_client"] = (after.rss - before.rss) / n
	res.Metrics["notifier_heap_bytes_per_client"] = (after.heap - before.heap) / n
	res.Metrics["notifier_goroutines_per_client"] = (after.goroutines - before.goroutines) / n
	res.Metrics["notifier_idle_rss_bytes"] = before.rss
	res.Metrics["notifier_rss_with_clients_bytes"] = after.rss

	// Baseline 2 runs alongside: JetStream publish → live subject, on this
	// process's own connection.
	liveLat := &latencies{}
	nc, err := nats.Connect(ns.url)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	if _, err := nc.Subscribe(bus.LivePrefix+"wa.*.evt.>", func(m *nats.Msg) {
		if k, ok := eventNumber(m.Data); ok && k < len(pubAt) {
			liveLat.add(time.Since(base) - time.Duration(pubAt[k].Load()))
		}
	}); err != nil {
		return nil, err
	}
	if err := nc.Flush(); err != nil {
		return nil, err
	}

	fmt.Fprintf(env.Stdout, "fanout: publishing %d events at %d/s\n", total, *rate)
	cpu0, _ := procStatCPU(nt.cmd.Process.Pid)
	pubStart := time.Now()
	expected := make(map[int64]int, len(ts))
	if err := publishPaced(ctx, b, total, *rate, func(k int) (event.Envelope, error) {
		m := ts[k%len(ts)].id
		expected[m]++
		waID := fmt.Sprintf("FO%d", k)
		p := &event.Message{WAID: waID, ChatJID: "5511988887777@s.whatsapp.net", SenderJID: "5511988887777@s.whatsapp.net",
			Phone: "5511988887777", Direction: event.DirectionIn, Kind: event.KindText, Text: "fan-out " + waID,
			Timestamp: time.Now(), Status: event.MessageReceived}
		return event.New(m, event.MessageEventID(m, waID), time.Now(), p)
	}, func(k int) { pubAt[k].Store(int64(time.Since(base))) }); err != nil {
		return nil, err
	}
	pubElapsed := time.Since(pubStart)
	res.Metrics["published_events_per_s"] = float64(total) / pubElapsed.Seconds()

	// Wait for the frames still on their way: until every client has all
	// of its mentorado's events, or nothing arrived for 5 s.
	want := 0
	for _, c := range cs {
		want += expected[c.mentorado]
	}
	lastGot, lastChange := -1, time.Now()
	for {
		got := 0
		for _, c := range cs {
			got += int(c.frames.Load())
		}
		if got >= want || time.Since(lastChange) > 5*time.Second {
			break
		}
		if got != lastGot {
			lastGot, lastChange = got, time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	deliverElapsed := time.Since(pubStart)
	cpu1, _ := procStatCPU(nt.cmd.Process.Pid)
	peak, _ := nt.peakRSS()
	loaded, err := nt.sample(ctx)
	if err != nil {
		return nil, err
	}
	dropped := 0
	for _, c := range cs {
		if c.ended.Load() {
			dropped++
		}
	}
	stopClients()
	wg.Wait()

	var all []time.Duration
	got, disorder := 0, 0
	for _, c := range cs {
		c.mu.Lock()
		all = append(all, c.lat...)
		c.mu.Unlock()
		got += int(c.frames.Load())
		disorder += int(c.disorder.Load())
	}
	missing := want - got
	res.Metrics["frames_expected"] = float64(want)
	res.Metrics["frames_delivered"] = float64(got)
	res.Metrics["frames_missing"] = float64(missing)
	res.Metrics["frames_per_s"] = float64(got) / deliverElapsed.Seconds()
	res.Metrics["delivery_p50_ms"] = percentileMs(all, 50)
	res.Metrics["delivery_p99_ms"] = percentileMs(all, 99)
	res.Metrics["delivery_max_ms"] = percentileMs(all, 100)
	res.Metrics["notifier_peak_rss_bytes"] = peak
	res.Metrics["notifier_goroutines_loaded"] = loaded.goroutines
	cpu := (cpu1 - cpu0).Seconds()
	res.Metrics["notifier_cpu_s"] = cpu
	if got > 0 {
		res.Metrics["notifier_cpu_us_per_frame"] = cpu * 1e6 / float64(got)
	}
	live := liveLat.snapshot()
	res.Baselines["live_subject_p50_ms"] = percentileMs(live, 50)
	res.Baselines["live_subject_p99_ms"] = percentileMs(live, 99)
	res.Ratio("delivery_p99_ms", "nats_core_p99_ms")
	res.Ratio("delivery_p99_ms", "live_subject_p99_ms")
	res.Checks["no frame missing"] = missing == 0
	res.Checks["frames in order, none twice"] = disorder == 0
	res.Checks["no client dropped"] = dropped == 0
	res.Notes = append(res.Notes,
		"latency: from the call to bus.Publish (JetStream, Nats-Msg-Id, ack awaited) to the frame read by the client; clients run in this process, the notifier in its own",
		"memory: notifier RSS and Go heap (its /metrics) after the clients connected, minus before, over the clients; goroutines likewise",
		fmt.Sprintf("each mentorado has one token; its %d clients share it; stream open rate limit off (ZAPBUS_STREAM_OPEN_RATE=off) so clients open at once", *clients / *tenants),
		fmt.Sprintf("open-file limit raised to %d (setrlimit, inherited by the notifier)", lim))
	return res, nil
}

// sseClient is one lean SSE reader.
type sseClient struct {
	mentorado int64
	token     string
	base      time.Time
	pubAt     []atomic.Int64

	conn  net.Conn
	body  *bufio.Reader
	lastN int

	mu       sync.Mutex
	lat      []time.Duration
	frames   atomic.Int64
	disorder atomic.Int64
	ended    atomic.Bool // the server ended the stream (dropped us)
}

func (c *sseClient) open(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { conn.Close() })
	req := "GET /v1/events HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + c.token + "\r\nAccept: text/event-stream\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		conn.Close()
		return err
	}
	br := bufio.NewReaderSize(conn, 4096)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return fmt.Errorf("read response: %w", err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	_ = conn.SetReadDeadline(time.Time{})
	c.conn = conn
	c.body = bufio.NewReaderSize(resp.Body, 512)
	// The stream starts with a comment; reading it means the notifier
	// registered the client.
	for {
		line, err := c.body.ReadSlice('\n')
		if err != nil {
			conn.Close()
			return fmt.Errorf("read preamble: %w", err)
		}
		if bytes.HasPrefix(line, []byte(": connected")) {
			return nil
		}
	}
}

// read consumes frames until the connection ends, recording the latency
// of each message frame and checking order.
func (c *sseClient) read() {
	defer c.conn.Close()
	for {
		line, err := c.body.ReadSlice('\n')
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.ended.Store(true)
			}
			return
		}
		if !bytes.HasPrefix(line, []byte("data: ")) {
			continue
		}
		k, ok := eventNumber(line)
		if !ok || k >= len(c.pubAt) {
			continue
		}
		lat := time.Since(c.base) - time.Duration(c.pubAt[k].Load())
		if k <= c.lastN {
			c.disorder.Add(1)
		}
		c.lastN = k
		c.frames.Add(1)
		c.mu.Lock()
		c.lat = append(c.lat, lat)
		c.mu.Unlock()
	}
}

// eventNumber finds k in the envelope's "wa_id":"FO<k>".
func eventNumber(b []byte) (int, bool) {
	const key = `"wa_id":"FO`
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	j := bytes.IndexByte(b, '"')
	if j < 0 {
		return 0, false
	}
	k, err := strconv.Atoi(string(b[:j]))
	return k, err == nil
}

// publishPaced publishes total events at rate per second from a few
// goroutines, each waiting for its PubAck as a connector session does.
// before(k) runs just before event k is handed to the bus. make is called
// from one goroutine, in order.
func publishPaced(ctx context.Context, b *bus.Bus, total, rate int, mk func(k int) (event.Envelope, error), before func(k int)) error {
	type job struct {
		k   int
		env event.Envelope
	}
	jobs := make(chan job, 1024)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				before(j.k)
				if _, err := b.Publish(ctx, j.env); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	start := time.Now()
	interval := time.Second / time.Duration(rate)
	var err error
	for k := 0; k < total && err == nil; k++ {
		if d := time.Until(start.Add(time.Duration(k) * interval)); d > 0 {
			time.Sleep(d)
		}
		env, e := mk(k)
		if e != nil {
			err = e
			break
		}
		select {
		case jobs <- job{k, env}:
		case err = <-errc:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	close(jobs)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// measureCorePubSub publishes timestamped core messages at rate for d and
// returns the publish → subscriber latencies.
func measureCorePubSub(ctx context.Context, url string, rate int, d time.Duration) ([]time.Duration, error) {
	pub, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	sub, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	lat := &latencies{}
	base := time.Now()
	if _, err := sub.Subscribe("zapbench.raw", func(m *nats.Msg) {
		if len(m.Data) >= 8 {
			at := int64(0)
			for _, c := range m.Data[:8] {
				at = at<<8 | int64(c)
			}
			lat.add(time.Since(base) - time.Duration(at))
		}
	}); err != nil {
		return nil, err
	}
	if err := sub.Flush(); err != nil {
		return nil, err
	}
	payload := make([]byte, 600) // about an envelope's size
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for k := 0; k < n; k++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if w := time.Until(start.Add(time.Duration(k) * interval)); w > 0 {
			time.Sleep(w)
		}
		at := int64(time.Since(base))
		for i := 7; i >= 0; i-- {
			payload[i] = byte(at)
			at >>= 8
		}
		if err := pub.Publish("zapbench.raw", payload); err != nil {
			return nil, err
		}
		pub.Flush() // one message per write, as a paced publisher sends them
	}
	deadline := time.Now().Add(5 * time.Second)
	for lat.len() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return lat.snapshot(), nil
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }
func (l *latencies) len() int            { l.mu.Lock(); defer l.mu.Unlock(); return len(l.d) }
func (l *latencies) snapshot() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.d)
}

// percentileMs returns the p-th percentile (100: the maximum) in ms.
func percentileMs(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return float64(s[i]) / float64(time.Millisecond)
}

// raiseOpenFiles lifts this process's soft open-file limit to the hard
// limit (children inherit it) and returns the new limit.
func raiseOpenFiles() (uint64, error) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
			return 0, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return r.Cur, nil
}

// natsProcess is a nats-server child process with JetStream.
type natsProcess struct {
	cmd     *exec.Cmd
	url     string
	version string
}

func (n *natsProcess) stop() {
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-done
	}
}

// startNATSProcess starts env.NATSServer (or the one `go install` put in
// GOPATH/bin when that is too old) with JetStream on a free loopback port,
// configured like the repo's nats.conf minus the users (sync_interval 1s,
// 1 MB payloads).
func startNATSProcess(ctx context.Context, env *Env, dir string) (*natsProcess, error) {
	bin, version, err := findNATSServer(env.NATSServer)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "nats.conf")
	body := fmt.Sprintf("listen: 127.0.0.1:%d\nmax_payload: 1MB\njetstream {\n  store_dir: %q\n  sync_interval: 1s\n}\n", port, filepath.Join(dir, "js"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nats-server: %w", err)
	}
	n := &natsProcess{cmd: cmd, url: fmt.Sprintf("nats://127.0.0.1:%d", port), version: version}
	deadline := time.Now().Add(15 * time.Second)
	for {
		nc, err := nats.Connect(n.url)
		if err == nil {
			nc.Close()
			return n, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			n.stop()
			return nil, fmt.Errorf("nats-server did not come up: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func findNATSServer(want string) (bin, version string, err error) {
	cands := []string{want}
	if gp, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		cands = append(cands, filepath.Join(strings.TrimSpace(string(gp)), "bin", "nats-server"))
	}
	var seen []string
	for _, c := range cands {
		out, err := exec.Command(c, "--version").Output()
		if err != nil {
			continue
		}
		v := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nats-server:"))
		seen = append(seen, c+" "+v)
		if bus.CheckServerVersion(strings.TrimPrefix(v, "v")) == nil {
			return c, v, nil
		}
	}
	return "", "", fmt.Errorf("no nats-server new enough (found %v); go install github.com/nats-io/nats-server/v2@v2.15.2 or set ZAPBUS_NATS_SERVER", seen)
}

// createBenchDatabase creates a fresh database on the server at serverDSN
// and returns its DSN and a function dropping it. Every scenario's
// database comes from here.
func createBenchDatabase(ctx context.Context, serverDSN, tag string) (string, func(), error) {
	name := fmt.Sprintf("zapbench_%s_%d", tag, time.Now().UnixNano())
	dsn, err := withDatabase(serverDSN, name)
	if err != nil {
		return "", nil, err
	}
	admin, err := pgx.Connect(ctx, serverDSN)
	if err != nil {
		return "", nil, fmt.Errorf("postgres: %w", err)
	}
	err = store.CreateDatabase(ctx, admin, name)
	admin.Close(ctx)
	if err != nil {
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, serverDSN)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	return dsn, drop, nil
}

// notifierProcess is cmd/notifier running as a child.
type notifierProcess struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	log  *lockedBuf
}

func startNotifier(ctx context.Context, bin, dir, dsn, natsURL string) (*notifierProcess, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	admin := make([]byte, 24)
	_, _ = rand.Read(admin)
	cmd := exec.Command(bin)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dsn,
		"NATS_URL="+natsURL,
		"ZAPBUS_NATS_PROVISION=false",
		"ZAPBUS_HTTP_ADDR="+addr,
		"ZAPBUS_ADMIN_TOKEN="+base64.RawURLEncoding.EncodeToString(admin),
		"ZAPBUS_STREAM_OPEN_RATE=off",
		"ZAPBUS_LOG_LEVEL=warn",
	)
	// One writer for both: exec copies them in one goroutine, and reads
	// of the log (on failure) are locked against those writes.
	logBuf := &lockedBuf{}
	cmd.Stdout, cmd.Stderr = logBuf, logBuf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start notifier: %w", err)
	}
	p := &notifierProcess{cmd: cmd, addr: addr, done: make(chan struct{}), log: logBuf}
	go func() { _ = cmd.Wait(); close(p.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return p, nil
			}
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("notifier exited: %s", logBuf.String())
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, errors.New("notifier not ready after 60 s")
		}
	}
}

func (p *notifierProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

type procSample struct{ rss, heap, goroutines float64 }

// sample reads the notifier's own metrics after a GC-neutral pause.
func (p *notifierProcess) sample(ctx context.Context) (procSample, error) {
	m, err := scrapeMetrics(ctx, "http://"+p.addr+"/metrics")
	if err != nil {
		return procSample{}, err
	}
	return procSample{rss: m["process_resident_memory_bytes"], heap: m["go_memstats_heap_inuse_bytes"], goroutines: m["go_goroutines"]}, nil
}

// waitClients waits until the notifier counts n SSE clients.
func (p *notifierProcess) waitClients(ctx context.Context, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		m, err := scrapeMetrics(ctx, "http://"+p.addr+"/metrics")
		if err != nil {
			return err
		}
		if int(m[`zapbus_stream_clients{transport="sse"}`]) >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("notifier counts %v SSE clients, want %d", m[`zapbus_stream_clients{transport="sse"}`], n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// peakRSS is the notifier's high-water RSS (VmHWM).
func (p *notifierProcess) peakRSS() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmHWM")
}

// scrapeMetrics reads a Prometheus text page into name{labels} → value.
func scrapeMetrics(ctx context.Context, url string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}
