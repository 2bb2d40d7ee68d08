package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/store"
)

// Scenario "persister": the persister as its own process (issue #15). A
// real nats-server with the repo's nats.conf, a fresh database, the
// persister binary built from this tree (1 process, then 2 on a fresh
// server and database); a realistic mix (gen.go) published as the connector
// publishes it, asynchronously with Nats-Msg-Id; measured from the first
// publish until the durable consumer is drained (nothing pending, nothing
// awaiting an ack, row counts stable). Baselines in the same run: a raw
// JetStream async publish of the same payloads into a stream configured as
// WA_EVENTS, and pgx.CopyFrom of the stored message rows into a table LIKE
// whatsapp_messages INCLUDING ALL, 500 rows per committed transaction.
func init() {
	register(Scenario{Name: "persister", Summary: "persister processes on real nats-server + Postgres, realistic mix, vs raw COPY and publish", Run: runPersister})
}

type persisterParams struct {
	events, mentorados, contacts, poison int
	procs                                []int
	extraEnv                             []string
	seed                                 uint64
}

func persisterFlags(name string, env *Env, args []string) (persisterParams, error) {
	p := persisterParams{events: 100_000, mentorados: 20, contacts: 2000, poison: 20, seed: 15}
	if env.Short {
		p.events = 10_000
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stdout)
	fs.IntVar(&p.events, "events", p.events, "events to publish")
	fs.IntVar(&p.mentorados, "mentorados", p.mentorados, "mentorados")
	fs.IntVar(&p.contacts, "contacts", p.contacts, "contacts over all mentorados")
	fs.IntVar(&p.poison, "poison", p.poison, "poison events")
	fs.Uint64Var(&p.seed, "seed", p.seed, "generator seed")
	procs := fs.String("procs", "1,2", "persister process counts to run, comma-separated")
	extra := fs.String("env", "", "extra environment for the persister processes, comma-separated K=V (e.g. ZAPBUS_PERSISTER_BATCH=1000)")
	if err := fs.Parse(args); err != nil {
		return p, err
	}
	for _, s := range strings.Split(*procs, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return p, fmt.Errorf("-procs: %q", *procs)
		}
		p.procs = append(p.procs, n)
	}
	if *extra != "" {
		p.extraEnv = strings.Split(*extra, ",")
	}
	return p, nil
}

func runPersister(ctx context.Context, env *Env, args []string) (*Result, error) {
	pp, err := persisterFlags("persister", env, args)
	if err != nil {
		return nil, err
	}
	res := NewResult()
	res.Params["events"] = pp.events
	res.Params["mentorados"] = pp.mentorados
	res.Params["contacts"] = pp.contacts
	res.Params["poison"] = pp.poison
	res.Params["procs"] = fmt.Sprint(pp.procs)
	if len(pp.extraEnv) > 0 {
		res.Params["persister_env"] = strings.Join(pp.extraEnv, " ")
	}
	tmp, err := os.MkdirTemp("", "zapbench-persister-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	fmt.Fprintf(env.Stdout, "building cmd/persister, generating %d events...\n", pp.events)
	bin, err := buildPersister(ctx, tmp)
	if err != nil {
		return nil, err
	}
	pubs, exp := generate(pp.seed, pp.events, pp.mentorados, pp.contacts, pp.poison)
	res.Params["published"] = len(pubs)
	res.Params["message_events"] = exp.msgEvents
	res.Params["receipt_events"] = exp.rcptEvents
	res.Params["contact_events"] = exp.contactEvts
	res.Params["duplicate_publishes"] = len(pubs) - exp.events

	for i, n := range pp.procs {
		dir, err := os.MkdirTemp(tmp, "run-")
		if err != nil {
			return nil, err
		}
		r, err := persisterRun(ctx, env, bin, dir, pp, n, pubs, exp, i == 0)
		if err != nil {
			return nil, fmt.Errorf("%d persister(s): %w", n, err)
		}
		sfx := fmt.Sprintf("_%dproc", n)
		res.Metrics["events_per_s"+sfx] = r.eventsPerS
		res.Metrics["drain_s"+sfx] = r.elapsed.Seconds()
		res.Metrics["publish_events_per_s"+sfx] = r.publishPerS
		res.Baselines["copy_rows_per_s"+sfx] = r.copyPerS
		if r.rawPublishPerS > 0 {
			res.Baselines["raw_publish_events_per_s"] = r.rawPublishPerS
		}
		for k, v := range r.checks {
			res.Checks[fmt.Sprintf("%s (%d proc)", k, n)] = v
		}
		res.Ratio("events_per_s"+sfx, "copy_rows_per_s"+sfx)
		res.Notes = append(res.Notes, r.notes...)
	}
	if len(pp.procs) >= 2 {
		a := res.Metrics[fmt.Sprintf("events_per_s_%dproc", pp.procs[0])]
		b := res.Metrics[fmt.Sprintf("events_per_s_%dproc", pp.procs[1])]
		if a > 0 {
			res.Metrics[fmt.Sprintf("speedup_%dproc_over_%dproc", pp.procs[1], pp.procs[0])] = b / a
		}
	}
	res.Notes = append(res.Notes, "events_per_s: distinct events stored in WA_EVENTS (duplicates dropped by the stream, poison included) "+
		"from the first publish until the durable consumer has nothing pending or awaiting an ack; copy_rows_per_s: pgx.CopyFrom of the "+
		"stored whatsapp_messages rows into a table LIKE whatsapp_messages INCLUDING ALL, 500 rows per committed transaction, same database")
	return res, nil
}

type runResult struct {
	eventsPerS, publishPerS, copyPerS, rawPublishPerS float64
	elapsed                                           time.Duration
	checks                                            map[string]bool
	notes                                             []string
}

// persisterRun is one measurement: fresh nats-server and database, procs
// persister processes, the mix published, drained, checked.
func persisterRun(ctx context.Context, env *Env, bin, dir string, pp persisterParams, procs int, pubs []genPub, exp genExpect, rawBaseline bool) (*runResult, error) {
	rr := &runResult{checks: map[string]bool{}}
	n, err := startNATS(ctx, env.NATSServer, dir)
	if err != nil {
		return nil, err
	}
	defer n.stop()
	d, err := createDB(ctx, env.PostgresDSN, "persister")
	if err != nil {
		return nil, err
	}
	defer d.drop()
	if err := d.addMentorados(ctx, pp.mentorados); err != nil {
		return nil, err
	}
	admin, err := bus.Open(ctx, n.url("admin"), "zapbus-admin", bus.Config{}, zerolog.Nop())
	if err != nil {
		return nil, err
	}
	defer admin.NC.Close()
	conn, err := n.openAs(ctx, "connector")
	if err != nil {
		return nil, fmt.Errorf("connector user: %w", err)
	}
	defer conn.NC.Close()
	js, err := jetstream.New(conn.NC, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	if rawBaseline {
		// The same publishes by the same user into WA_EVENTS before any
		// persister runs; then the stream (and its duplicate window) is
		// deleted and provisioned again.
		start := time.Now()
		stored, _, err := publishAll(ctx, js, pubs, nil)
		if err != nil {
			return nil, fmt.Errorf("raw publish: %w", err)
		}
		rr.rawPublishPerS = float64(stored) / time.Since(start).Seconds()
		if err := admin.JS.DeleteStream(ctx, bus.StreamEvents); err != nil {
			return nil, fmt.Errorf("raw publish: delete stream: %w", err)
		}
		if err := admin.Provision(ctx); err != nil {
			return nil, fmt.Errorf("raw publish: provision again: %w", err)
		}
	}

	var ps []*persisterProc
	defer func() {
		for _, p := range ps {
			p.stop()
		}
	}()
	penv := persisterEnv(n, d, pp.extraEnv...)
	for range procs {
		p, err := startPersister(bin, penv)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	// Wait until the persisters have created their consumer(s).
	if err := waitFor(ctx, 30*time.Second, func() (bool, error) {
		for _, p := range ps {
			if p.exited() {
				return false, fmt.Errorf("persister exited: %s", tail(p.out.String(), 2000))
			}
		}
		names, err := consumerNames(ctx, admin.JS)
		return len(names) > 0, err
	}); err != nil {
		return nil, fmt.Errorf("persister consumer: %w", err)
	}

	start := time.Now()
	stored, _, err := publishAll(ctx, js, pubs, nil)
	if err != nil {
		return nil, err
	}
	pubDone := time.Since(start)
	rr.publishPerS = float64(stored) / pubDone.Seconds()
	var lastCount int64 = -1
	var end time.Time
	if err := waitFor(ctx, 20*time.Minute, func() (bool, error) {
		for _, p := range ps {
			if p.exited() {
				return false, fmt.Errorf("persister exited: %s", tail(p.out.String(), 2000))
			}
		}
		busy, err := consumersBusy(ctx, admin.JS)
		if err != nil || busy {
			end = time.Time{}
			return false, err
		}
		if end.IsZero() {
			end = time.Now()
		}
		var c int64
		if err := d.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM whatsapp_messages) + (SELECT count(*) FROM whatsapp_pending_receipts)`).Scan(&c); err != nil {
			return false, err
		}
		stable := c == lastCount
		lastCount = c
		return stable, nil
	}); err != nil {
		return nil, fmt.Errorf("drain: %w", err)
	}
	rr.elapsed = end.Sub(start)
	rr.eventsPerS = float64(stored) / rr.elapsed.Seconds()
	fmt.Fprintf(env.Stdout, "%d persister(s): %d events stored in the stream, published in %s, drained in %s: %.0f events/s\n",
		procs, stored, pubDone.Round(time.Millisecond), rr.elapsed.Round(time.Millisecond), rr.eventsPerS)
	if stored != exp.events {
		return nil, fmt.Errorf("the stream stored %d events, the generator made %d distinct ones", stored, exp.events)
	}
	for _, p := range ps {
		p.stop()
	}
	for i, p := range ps {
		if s := p.out.String(); strings.Contains(s, `"level":"error"`) {
			rr.notes = append(rr.notes, fmt.Sprintf("persister %d of %d logged errors: %s", i+1, procs, tail(s, 500)))
		}
	}
	ps = nil
	if err := checkTables(ctx, d, admin, exp, rr.checks); err != nil {
		return nil, err
	}
	rr.copyPerS, err = copyBaseline(ctx, d.db)
	if err != nil {
		return nil, fmt.Errorf("copy baseline: %w", err)
	}
	fmt.Fprintf(env.Stdout, "  copy baseline %.0f rows/s, ratio %.3f\n", rr.copyPerS, rr.eventsPerS/rr.copyPerS)
	return rr, nil
}

// consumerNames lists WA_EVENTS's durable consumers.
func consumerNames(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	s, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		return nil, err
	}
	var names []string
	l := s.ConsumerNames(ctx)
	for n := range l.Name() {
		names = append(names, n)
	}
	return names, l.Err()
}

// consumersBusy reports whether any durable WA_EVENTS consumer (there is
// none yet: busy) still has messages
// pending or awaiting an ack.
func consumersBusy(ctx context.Context, js jetstream.JetStream) (bool, error) {
	s, err := js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		return false, err
	}
	l := s.ListConsumers(ctx)
	busy, seen := false, 0
	for ci := range l.Info() {
		if ci.Config.Durable == "" {
			continue // an ordered consumer (replay, a raw read)
		}
		seen++
		if ci.NumPending > 0 || ci.NumAckPending > 0 || ci.NumRedelivered > 0 && ci.NumAckPending > 0 {
			busy = true
		}
	}
	if err := l.Err(); err != nil {
		return false, err
	}
	return busy || seen == 0, nil
}

// waitFor polls cond every 20 ms until it is true, fails, or timeout.
func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// checkTables records the correctness facts of a drained run.
func checkTables(ctx context.Context, d *benchDB, admin *bus.Bus, exp genExpect, checks map[string]bool) error {
	q := func(sql string, args ...any) (int64, error) {
		var n int64
		err := d.db.Pool.QueryRow(ctx, sql, args...).Scan(&n)
		return n, err
	}
	msgs, err := q(`SELECT count(*) FROM whatsapp_messages`)
	if err != nil {
		return err
	}
	checks["every message stored once"] = msgs == int64(exp.messages)
	// Final statuses: every message at the highest rank its events and
	// receipts carried.
	ms, ids, ranks := make([]int64, 0, len(exp.status)), make([]string, 0, len(exp.status)), make([]int16, 0, len(exp.status))
	for k, r := range exp.status {
		i := strings.IndexByte(k, ':')
		m, _ := strconv.ParseInt(k[:i], 10, 64)
		ms, ids, ranks = append(ms, m), append(ids, k[i+1:]), append(ranks, int16(r))
	}
	wrong, err := q(`SELECT count(*) FROM unnest($1::bigint[], $2::text[], $3::smallint[]) AS u(m, id, rank)
		LEFT JOIN whatsapp_messages t ON t.mentorado_id = u.m AND t.wa_message_id = u.id
		WHERE t.status_rank IS DISTINCT FROM u.rank`, ms, ids, ranks)
	if err != nil {
		return err
	}
	checks["every status final (highest rank received)"] = wrong == 0
	leadsPhone, err := q(`SELECT count(*) FROM leads WHERE phone IS NOT NULL`)
	if err != nil {
		return err
	}
	leadsLID, err := q(`SELECT count(*) FROM leads WHERE phone IS NULL`)
	if err != nil {
		return err
	}
	checks["one lead per contact that wrote"] = leadsPhone == int64(exp.leadsPhone) && leadsLID == int64(exp.leadsLID)
	unlinked, err := q(`SELECT count(*) FROM whatsapp_messages WHERE direction = 'in' AND lead_id IS NULL`)
	if err != nil {
		return err
	}
	checks["every inbound message linked to its lead"] = unlinked == 0
	si, err := admin.StreamInfo(ctx, bus.StreamDLQ)
	if err != nil {
		return err
	}
	checks["poison in WA_DLQ"] = si.State.Msgs == uint64(exp.poison)
	if !checks["every message stored once"] || !checks["one lead per contact that wrote"] || !checks["poison in WA_DLQ"] {
		fmt.Printf("  check detail: messages %d/%d, leads phone %d/%d lid %d/%d, dlq %d/%d, wrong statuses %d, unlinked %d\n",
			msgs, exp.messages, leadsPhone, exp.leadsPhone, leadsLID, exp.leadsLID, si.State.Msgs, exp.poison, wrong, unlinked)
	}
	return nil
}

// copyBaseline copies the stored message rows into a table LIKE
// whatsapp_messages INCLUDING ALL (same indexes), 500 rows per committed
// transaction, and returns rows/s.
func copyBaseline(ctx context.Context, db *store.DB) (float64, error) {
	cols := append([]string(nil), store.MessageColumns...)
	rows, err := db.Pool.Query(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM whatsapp_messages ORDER BY id`)
	if err != nil {
		return 0, err
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() })
	if err != nil {
		return 0, err
	}
	if _, err := db.Pool.Exec(ctx, `DROP TABLE IF EXISTS bench_copy; CREATE TABLE bench_copy (LIKE whatsapp_messages INCLUDING ALL)`); err != nil {
		return 0, err
	}
	defer db.Pool.Exec(context.Background(), `DROP TABLE IF EXISTS bench_copy`) //nolint:errcheck
	start := time.Now()
	for lo := 0; lo < len(all); lo += 500 {
		chunk := all[lo:min(lo+500, len(all))]
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			_, err := tx.CopyFrom(ctx, pgx.Identifier{"bench_copy"}, cols, pgx.CopyFromRows(chunk))
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	return float64(len(all)) / time.Since(start).Seconds(), nil
}

// The parts the persister and replay scenarios run for real: a nats-server
// process with the repo's nats.conf (fresh passwords, its own store
// directory and ports), a fresh Postgres database with the migrations, and
// the persister binary built from this tree.

// repoRoot is the module root (where nats.conf lives).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "nats.conf")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("zapbench: run from inside the zapbus repository (nats.conf not found)")
		}
		dir = parent
	}
}

// lockedBuf collects a child process's output.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tail is the last n bytes of s, for error messages.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// natsProc is a nats-server process started with the repo's nats.conf.
type natsProc struct {
	cmd       *exec.Cmd
	hostPort  string
	passwords map[string]string
	out       *lockedBuf
	version   string
}

var natsUsers = map[string]string{"admin": "NATS_ADMIN_PASSWORD", "connector": "NATS_CONNECTOR_PASSWORD",
	"persister": "NATS_PERSISTER_PASSWORD", "notifier": "NATS_NOTIFIER_PASSWORD", "backend": "NATS_BACKEND_PASSWORD",
	"webhooks": "NATS_WEBHOOKS_PASSWORD", "gateway": "NATS_GATEWAY_PASSWORD"}

func (n *natsProc) url(user string) string {
	return (&url.URL{Scheme: "nats", User: url.UserPassword(user, n.passwords[user]), Host: n.hostPort}).String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func secret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// startNATS runs bin with the repo's nats.conf, only store_dir, the client
// port and the monitoring port replaced, and provisions the streams as the
// admin user (what zapbus-admin provision does).
func startNATS(ctx context.Context, bin, dir string) (*natsProc, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(root, "nats.conf"))
	if err != nil {
		return nil, err
	}
	const line = "store_dir: /data/jetstream"
	if strings.Count(string(raw), line) != 1 {
		return nil, fmt.Errorf("nats.conf: want exactly one %q line to override", line)
	}
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(strings.Replace(string(raw), line, "store_dir: "+strconv.Quote(filepath.Join(dir, "js")), 1)), 0o600); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	mport, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &natsProc{hostPort: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), passwords: map[string]string{}, out: &lockedBuf{}}
	n.cmd = exec.Command(bin, "-c", conf, "-p", strconv.Itoa(port), "-m", strconv.Itoa(mport))
	n.cmd.Env = os.Environ()
	for u, env := range natsUsers {
		n.passwords[u] = secret()
		n.cmd.Env = append(n.cmd.Env, env+"="+n.passwords[u])
	}
	n.cmd.Stdout, n.cmd.Stderr = n.out, n.out
	if err := n.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		nc, err := nats.Connect(n.url("admin"), nats.Timeout(time.Second), nats.CustomInboxPrefix("_INBOX_admin"))
		if err == nil {
			n.version = nc.ConnectedServerVersion()
			nc.Close()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			n.stop()
			return nil, fmt.Errorf("nats-server %s not ready: %v\n%s", bin, err, tail(n.out.String(), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	admin, err := bus.Open(ctx, n.url("admin"), "zapbus-admin", bus.Config{Provision: true}, zerolog.Nop())
	if err != nil {
		n.stop()
		return nil, fmt.Errorf("provision as admin: %w", err)
	}
	admin.NC.Close()
	return n, nil
}

func (n *natsProc) stop() {
	if n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
		_, _ = n.cmd.Process.Wait()
	}
}

// openAs connects as a service user the way its main does.
func (n *natsProc) openAs(ctx context.Context, user string) (*bus.Bus, error) {
	return bus.Open(ctx, n.url(user), "zapbus-"+user, bus.Config{}, zerolog.Nop())
}

// benchDB is a fresh database with the migrations applied.
type benchDB struct {
	dsn    string
	db     *store.DB
	dropDB func()
}

func createDB(ctx context.Context, serverDSN, label string) (*benchDB, error) {
	dsn, drop, err := createBenchDatabase(ctx, serverDSN, label)
	if err != nil {
		return nil, err
	}
	d := &benchDB{dsn: dsn, dropDB: drop}
	d.db, err = store.Open(ctx, d.dsn)
	if err != nil {
		d.drop()
		return nil, err
	}
	return d, nil
}

// addMentorados creates mentorados 1..n.
func (d *benchDB) addMentorados(ctx context.Context, n int) error {
	_, err := d.db.Pool.Exec(ctx, `INSERT INTO mentorados (id, name) OVERRIDING SYSTEM VALUE
		SELECT g, 'bench ' || g FROM generate_series(1, $1::int) g`, n)
	return err
}

func (d *benchDB) drop() {
	if d.db != nil {
		d.db.Close()
	}
	d.dropDB()
}

// buildPersister builds cmd/persister into dir.
func buildPersister(ctx context.Context, dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "persister")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/persister")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/persister: %w\n%s", err, out)
	}
	return bin, nil
}

// persisterProc is one running persister process.
type persisterProc struct {
	cmd  *exec.Cmd
	out  *lockedBuf
	done chan struct{}
}

// persisterEnv is the environment of a persister process on n and d.
func persisterEnv(n *natsProc, d *benchDB, extra ...string) []string {
	env := append(os.Environ(), "DATABASE_URL="+d.dsn, "NATS_URL="+n.url("persister"), "ZAPBUS_NATS_PROVISION=false",
		"ZAPBUS_HTTP_ADDR=off", "ZAPBUS_LOG_LEVEL=warn")
	return append(env, extra...)
}

func startPersister(bin string, env []string, args ...string) (*persisterProc, error) {
	p := &persisterProc{out: &lockedBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start persister: %w", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends the process with SIGTERM (a graceful stop), then SIGKILL.
func (p *persisterProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *persisterProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// publishAll publishes pubs as the connector does (Nats-Msg-Id = event id),
// asynchronously (js should bound its pending window), and waits for every
// PubAck. subject, when set, rewrites each subject. It returns how many
// were stored and how many the stream dropped as duplicates.
func publishAll(ctx context.Context, js jetstream.JetStream, pubs []genPub, subject func(string) string) (stored, dups int, err error) {
	futures := make(chan jetstream.PubAckFuture, 8192)
	var werr error
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		for f := range futures {
			select {
			case a := <-f.Ok():
				if a.Duplicate {
					dups++
				} else {
					stored++
				}
			case e := <-f.Err():
				if werr == nil {
					werr = fmt.Errorf("publish %s: %w", f.Msg().Subject, e)
				}
			case <-ctx.Done():
				if werr == nil {
					werr = ctx.Err()
				}
				return
			}
		}
	}()
	for i, p := range pubs {
		subj := p.subject
		if subject != nil {
			subj = subject(subj)
		}
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: subj, Data: p.data, Header: nats.Header{}}, jetstream.WithMsgID(p.msgID),
			jetstream.WithStallWait(time.Minute))
		if err != nil {
			close(futures)
			<-waited
			return stored, dups, fmt.Errorf("publish %d: %w", i, err)
		}
		futures <- f
	}
	close(futures)
	<-waited
	return stored, dups, werr
}
