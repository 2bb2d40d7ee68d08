package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/connector/sim"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/persister"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// Sizes of the scenario: small enough for -race on two contended cores,
// large enough that every failover hits publishes, renewals, commands and
// persister batches in flight.
const (
	mentorados = 8
	injectors  = 4                     // goroutines delivering inbound messages, each its own mentorados
	pace       = 15 * time.Millisecond // between two messages of one injector (~250 messages/s in all)
	// shortTTL is the lease TTL of TestFailover, shorter than
	// production's 15 s so that renewals (every 1.7 s, fencing after 3.3 s
	// without one) cross the step-downs often, and a fenced session is
	// taken again quickly (a rescan every 5 s).
	shortTTL = 5 * time.Second
	// step bounds each wait of the test (a command answered, a node
	// caught up, the persister drained).
	step = 45 * time.Second
)

// TestFailover runs zapbus on a 3-node JetStream cluster with every stream
// and bucket at three replicas, and shuts down first the node leading
// WA_EVENTS, then the one leading WA_LEASES (only the first with -short or
// CI=true), bringing each back on the same ports and store, while two
// connectors receive messages on simulated WhatsApp sessions, a persister
// writes them to Postgres and commands are sent. Afterwards: every message
// WhatsApp delivered is in Postgres exactly once and stored once in
// WA_EVENTS, no session was ever connected from two connectors at once,
// commands were answered with a node down and after it came back, and no
// send ran twice. What each failover cost (publish stalls, command gaps,
// persister stalls) is logged, not asserted (docs/cluster.md quotes it).
func TestFailover(t *testing.T) {
	leadersOf := []string{bus.StreamEvents, "KV_" + bus.BucketLeases}
	if testing.Short() || os.Getenv("CI") == "true" {
		// One round keeps CI near a minute with TestFailoverKill9, which
		// takes the lease bucket's leader down there.
		leadersOf = leadersOf[:1]
	}
	failover(t, newCluster(t, 3), shortTTL, leadersOf...)
}

// nodes is a 3-node cluster whose members can be taken down and brought
// back: embedded servers shut down (jsCluster) or nats-server processes
// killed with SIGKILL (procCluster).
type nodes interface {
	// urls is the client URL list of every node for a service user
	// ("admin", "connector", "persister", "notifier"), with its password
	// when the cluster has nats.conf's users.
	urls(user string) string
	index(name string) int
	stop(i int)
	start(i int)
}

// failover runs the scenario on cl: for each of leadersOf, the node
// leading that stream goes down and comes back.
func failover(t *testing.T, cl nodes, leaseTTL time.Duration, leadersOf ...string) {
	ctx := context.Background()
	log := testenv.Logger(t).Level(zerolog.InfoLevel)

	began := time.Now()
	elapsed := func(what string) { t.Logf("%6.2fs: %s", time.Since(began).Seconds(), what) }
	provisionR3(t, cl.urls("admin"), leaseTTL, log)
	elapsed("provisioned at three replicas")

	db, err := store.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	world := sim.NewWorld()
	var ids []int64
	for i := range mentorados {
		var m int64
		if err := db.Pool.QueryRow(ctx, "INSERT INTO mentorados (name) VALUES ($1) RETURNING id", fmt.Sprintf("m%d", i)).Scan(&m); err != nil {
			t.Fatal(err)
		}
		// Four sends in a row to numbers that never wrote: let them go at
		// once (the pacer is not what this test is about).
		if _, err := db.Pool.Exec(ctx, `INSERT INTO send_settings (mentorado_id, settings) VALUES ($1, '{"unsolicited_burst": 20, "typing": false}')`, m); err != nil {
			t.Fatal(err)
		}
		phone := fmt.Sprintf("55119%08d", 10000000+i)
		jid := world.AddDevice(m, phone)
		if _, err := db.Pool.Exec(ctx,
			"INSERT INTO wa_devices (mentorado_id, device_jid, phone, desired_state) VALUES ($1, $2, $3, 'connected')", m, jid.String(), phone); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m)
	}

	// Every process connects with the three URLs, as docs/cluster.md says.
	for _, name := range []string{"ca", "cb"} {
		// The service name sets the inbox prefix nats.conf allows.
		b := openBus(t, cl.urls("connector"), "zapbus-connector", bus.Config{LeaseTTL: leaseTTL}, log.With().Str("conn", name).Logger())
		c, err := connector.New(connector.Config{
			InstanceID:    name,
			RestoreJitter: time.Millisecond,
			Policy:        connector.Policy{Jitter: -1},
		}, db, b, &sim.Factory{W: world}, log.With().Str("who", name).Logger())
		if err != nil {
			t.Fatal(err)
		}
		runUntilCleanup(t, name, c.Run)
		testenv.Eventually(t, step, c.Ready, "connector %s up", name)
	}
	pb := openBus(t, cl.urls("persister"), "zapbus-persister", bus.Config{}, log)
	p, err := persister.New(persister.Config{Batch: 200}, db, pb, log.With().Str("who", "persister").Logger())
	if err != nil {
		t.Fatal(err)
	}
	runUntilCleanup(t, "persister", p.Run)
	testenv.Eventually(t, step, func() bool {
		for _, m := range ids {
			if !world.Connected(m) {
				return false
			}
		}
		return true
	}, "every session connected")
	elapsed("every session connected")

	// Commands go as the notifier sends them; the state of streams and
	// consumers is read with the admin user.
	notifier := openBus(t, cl.urls("notifier"), "zapbus-notifier", bus.Config{}, log)
	obs := openBus(t, cl.urls("admin"), "zapbus-admin", bus.Config{}, log)
	tr := newTraffic(world, notifier, obs, ids)
	tr.start()
	stopped := false
	stopTraffic := func() {
		if !stopped {
			stopped = true
			tr.stop()
		}
	}
	t.Cleanup(stopTraffic)
	time.Sleep(2 * time.Second) // traffic on a healthy cluster first

	for round, stream := range leadersOf {
		leader := streamLeader(t, obs, stream)
		i := cl.index(leader)
		led := ledBy(t, obs, leader)
		t.Logf("round %d: shutting down %s, leader of %s", round+1, leader, strings.Join(led, ", "))
		tr.mark(fmt.Sprintf("%s down (it led %s)", leader, strings.Join(led, ", ")))
		cl.stop(i)
		// With the node down: every session still answers commands, and a
		// send (WA_SENDS, an outbound event) goes through exactly once.
		tr.commandsAnswered(t, round)
		time.Sleep(2 * time.Second)
		cl.start(i)
		tr.mark(fmt.Sprintf("%s up", leader))
		waitCurrent(t, obs, leader)
		t.Logf("round %d: %s is back and current on every stream", round+1, leader)
		tr.commandsAnswered(t, round+10)
		time.Sleep(time.Second)
	}
	stopTraffic()
	elapsed("traffic stopped")

	// WhatsApp redelivers what was not acked (a publish that timed out
	// during an election): offer it until every message is acked.
	testenv.Eventually(t, step, func() bool {
		pending := 0
		for _, m := range ids {
			if world.Pending(m) > 0 {
				world.Redeliver(m)
				pending += world.Pending(m)
			}
		}
		return pending == 0
	}, "every message acked to WhatsApp")
	elapsed("every message acked to WhatsApp")

	want := tr.ledgerIDs()
	testenv.Eventually(t, step, func() bool {
		var n int
		_ = db.Pool.QueryRow(ctx, "SELECT count(*) FROM whatsapp_messages WHERE wa_message_id = ANY($1)", want).Scan(&n)
		return n == len(want)
	}, "every message in Postgres")
	elapsed("every message in Postgres")
	drained(t, obs)
	elapsed("persister drained")

	// Nothing lost, nothing doubled: in Postgres...
	rows, err := db.Pool.Query(ctx, "SELECT wa_message_id, count(*) FROM whatsapp_messages GROUP BY wa_message_id")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		got[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("message %s is in Postgres %d times, want once", id, got[id])
		}
		delete(got, id)
	}
	for id := range got {
		t.Errorf("message %s in Postgres was never delivered by WhatsApp", id)
	}
	// ... and in the stream: a publish retried across a leader change
	// was dropped by the Nats-Msg-Id window, not stored twice.
	if n := storedMessages(t, obs); n != uint64(len(want)) {
		t.Errorf("WA_EVENTS stores %d message events for %d messages (duplicates got past the Nats-Msg-Id window, or some were lost)", n, len(want))
	}
	if info, err := obs.StreamInfo(ctx, bus.StreamDLQ); err != nil {
		t.Errorf("dead letters: %v", err)
	} else if info.State.Msgs != 0 {
		t.Errorf("%d dead letters, want none", info.State.Msgs)
	}

	// One owner per session: WhatsApp never saw two connections of one
	// mentorado (the simulated server records every overlap).
	if v := world.Violations(); len(v) > 0 {
		t.Errorf("sessions connected from two clients at once:\n%s", strings.Join(v, "\n"))
	}
	for _, m := range ids {
		if n := world.MaxConcurrent(m); n != 1 {
			t.Errorf("mentorado %d: %d clients connected at once, want 1", m, n)
		}
	}
	// A send retried with its client id across a failover ran once.
	for _, m := range ids {
		sent := world.Sent(m)
		if n := tr.sendsOf(m); len(sent) != n {
			t.Errorf("mentorado %d: WhatsApp got %d sends for %d client ids", m, len(sent), n)
		}
	}
	tr.report(t, ids, world)
}

// provisionR3 provisions as an existing single-replica deployment did
// (defaults), then as `zapbus-admin provision -replicas 3` does, and
// checks that a later provision that does not name replicas (a service
// with ZAPBUS_NATS_PROVISION=true) keeps three.
func provisionR3(t *testing.T, urls string, leaseTTL time.Duration, log zerolog.Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	for _, cfg := range []bus.Config{
		{Provision: true, LeaseTTL: leaseTTL},
		{Provision: true, Replicas: 3},
		{Provision: true},
	} {
		// Right after the nodes start, JetStream may have no meta leader
		// yet, and a request it drops waits for its whole deadline: retry
		// with short ones, as an operator would.
		for {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			b, err := bus.Open(actx, urls, "zapbus-admin", cfg, log)
			cancel()
			if err == nil {
				b.Close()
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("provision %+v: %v", cfg, err)
			}
			t.Logf("provision: %v; retrying", err)
			time.Sleep(200 * time.Millisecond)
		}
	}
	b := openBus(t, urls, "zapbus-admin", bus.Config{}, log)
	for _, name := range bus.Requires("") {
		info, err := b.StreamInfo(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 {
			t.Fatalf("%s: %d replicas configured, want 3", name, info.Config.Replicas)
		}
		// The two new peers join a moment after the update.
		testenv.Eventually(t, step, func() bool {
			info, err := b.StreamInfo(ctx, name)
			return err == nil && info.Cluster != nil && info.Cluster.Leader != "" && len(info.Cluster.Replicas) == 2
		}, "%s has a leader and two followers", name)
	}
}

func openBus(t *testing.T, urls, name string, cfg bus.Config, log zerolog.Logger) *bus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	b, err := bus.Open(ctx, urls, name, cfg, log.With().Str("bus", name).Logger())
	if err != nil {
		t.Fatalf("open bus %s: %v", name, err)
	}
	t.Cleanup(b.Close)
	return b
}

// runUntilCleanup runs a service until the test ends, then stops it and
// checks it returned no error.
func runUntilCleanup(t *testing.T, name string, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s did not stop; goroutines:\n%s", name, testenv.Goroutines())
		}
	})
}

// streamLeader names the node leading stream's raft group.
func streamLeader(t *testing.T, b *bus.Bus, stream string) string {
	t.Helper()
	var leader string
	testenv.Eventually(t, step, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		info, err := b.StreamInfo(ctx, stream)
		if err != nil || info.Cluster == nil {
			return false
		}
		leader = info.Cluster.Leader
		return leader != ""
	}, "%s has a leader", stream)
	return leader
}

// ledBy lists the zapbus streams and the persister's consumer that node
// leads.
func ledBy(t *testing.T, b *bus.Bus, node string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var led []string
	for _, name := range bus.Requires("") {
		if info, err := b.StreamInfo(ctx, name); err == nil && info.Cluster != nil && info.Cluster.Leader == node {
			led = append(led, name)
		}
	}
	if cons, err := b.JS.Consumer(ctx, bus.StreamEvents, "persister"); err == nil {
		if ci := cons.CachedInfo().Cluster; ci != nil && ci.Leader == node {
			led = append(led, "consumer persister")
		}
	}
	return led
}

// waitCurrent waits until node is a current replica of every zapbus
// stream and of the persister's consumer (caught up with its leader), or
// leads it.
func waitCurrent(t *testing.T, b *bus.Bus, node string) {
	t.Helper()
	testenv.Eventually(t, step, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, name := range bus.Requires("") {
			info, err := b.StreamInfo(ctx, name)
			if err != nil || !current(info.Cluster, node) {
				return false
			}
		}
		cons, err := b.JS.Consumer(ctx, bus.StreamEvents, "persister")
		if err != nil {
			return false
		}
		return current(cons.CachedInfo().Cluster, node)
	}, "%s current on every stream", node)
}

func current(ci *jetstream.ClusterInfo, node string) bool {
	if ci == nil {
		return false
	}
	if ci.Leader == node {
		return true
	}
	for _, r := range ci.Replicas {
		if r.Name == node {
			return r.Current && !r.Offline
		}
	}
	return false
}

// drained waits until the persister has acked everything stored.
func drained(t *testing.T, b *bus.Bus) {
	t.Helper()
	testenv.Eventually(t, step, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cons, err := b.JS.Consumer(ctx, bus.StreamEvents, "persister")
		if err != nil {
			return false
		}
		info := cons.CachedInfo()
		return info.NumPending == 0 && info.NumAckPending == 0
	}, "persister consumer drained")
}

// storedMessages counts the message events WA_EVENTS stores.
func storedMessages(t *testing.T, b *bus.Bus) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("wa.*.evt."+string(event.TypeMessage)))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// traffic is what flows through the cluster while nodes come and go:
// inbound messages delivered by simulated WhatsApp to the connectors
// (which publish them with their Nats-Msg-Id before acking), WhatsApp's
// redelivery of what was not acked, and status commands as the notifier
// sends them. It keeps the ledger of every message and the timings.
type traffic struct {
	world *sim.World
	obs   *bus.Bus // commands, as the notifier
	admin *bus.Bus // the persister consumer's progress
	ids   []int64
	began time.Time
	quit  chan struct{}
	wg    sync.WaitGroup

	mu                sync.Mutex
	ledger            []string // WhatsApp ids of every inbound and outbound message
	sends             map[int64]int
	marks             []mark
	firstTry          int           // messages acked when first delivered
	retried           int           // messages not acked at first (publish failed or session down)
	maxAck            time.Duration // longest delivery → ack of one message
	maxWait           time.Duration // longest delivery → answer (ack, or failure after the publish timeout)
	maxWaitAt         time.Duration
	maxAckAt          time.Duration
	lastAck           time.Time
	maxAckGap         time.Duration // longest time with no message acked
	maxAckGapAt       time.Duration
	maxPersistStall   time.Duration // longest time the persister's ack floor stood still with events waiting
	maxPersistStallAt time.Duration
	cmdOK             int
	cmdFailed         int
	lastCmd           time.Time
	maxCmdGap         time.Duration // longest time with no command answered
	maxCmdGapAt       time.Duration
}

type mark struct {
	at   time.Duration
	what string
}

func newTraffic(w *sim.World, obs, admin *bus.Bus, ids []int64) *traffic {
	return &traffic{world: w, obs: obs, admin: admin, ids: ids, quit: make(chan struct{}), sends: map[int64]int{}}
}

func (tr *traffic) start() {
	tr.began = time.Now()
	tr.lastAck, tr.lastCmd = tr.began, tr.began
	for g := range injectors {
		tr.wg.Add(1)
		go tr.inject(g)
	}
	tr.wg.Add(2)
	go tr.command()
	go tr.watchPersister()
}

// watchPersister samples the persister consumer: the longest time its
// ack floor did not move while events were waiting is how long the
// persister stalled.
func (tr *traffic) watchPersister() {
	defer tr.wg.Done()
	var floor uint64
	progress := time.Now()
	for {
		select {
		case <-tr.quit:
			return
		case <-time.After(200 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cons, err := tr.admin.JS.Consumer(ctx, bus.StreamEvents, "persister")
		cancel()
		now := time.Now()
		if err != nil {
			continue // no consumer leader right now: that is a stall too
		}
		info := cons.CachedInfo()
		if info.AckFloor.Stream != floor || info.NumPending+uint64(info.NumAckPending) == 0 {
			floor, progress = info.AckFloor.Stream, now
			continue
		}
		tr.mu.Lock()
		if stall := now.Sub(progress); stall > tr.maxPersistStall {
			tr.maxPersistStall, tr.maxPersistStallAt = stall, progress.Sub(tr.began)
		}
		tr.mu.Unlock()
	}
}

func (tr *traffic) stop() {
	close(tr.quit)
	tr.wg.Wait()
}

func (tr *traffic) mark(what string) {
	tr.mu.Lock()
	tr.marks = append(tr.marks, mark{time.Since(tr.began), what})
	tr.mu.Unlock()
}

// inject delivers messages to its share of the mentorados, from a few
// contacts each, and offers again what was not acked, as WhatsApp does.
func (tr *traffic) inject(g int) {
	defer tr.wg.Done()
	var mine []int64
	for i, m := range tr.ids {
		if i%injectors == g {
			mine = append(mine, m)
		}
	}
	tick := time.NewTicker(pace)
	defer tick.Stop()
	lastRedeliver := time.Now()
	for n := 0; ; n++ {
		select {
		case <-tr.quit:
			return
		case <-tick.C:
		}
		m := mine[n%len(mine)]
		from := fmt.Sprintf("55219%08d", 20000000+n%7)
		t0 := time.Now()
		id, acked, _ := tr.world.InjectText(m, from, fmt.Sprintf("hello %d", n))
		took := time.Since(t0)
		tr.mu.Lock()
		tr.ledger = append(tr.ledger, id)
		if took > tr.maxWait {
			tr.maxWait, tr.maxWaitAt = took, t0.Sub(tr.began)
		}
		if acked {
			tr.firstTry++
			tr.acked(t0, took)
		} else {
			tr.retried++
		}
		tr.mu.Unlock()
		if time.Since(lastRedeliver) > 250*time.Millisecond {
			lastRedeliver = time.Now()
			for _, m := range mine {
				if tr.world.Pending(m) > 0 {
					t0 := time.Now()
					if tr.world.Redeliver(m) > 0 {
						tr.mu.Lock()
						tr.acked(t0, 0)
						tr.mu.Unlock()
					}
				}
			}
		}
	}
}

// acked records an ack at now (tr.mu held).
func (tr *traffic) acked(t0 time.Time, took time.Duration) {
	now := time.Now()
	if took > tr.maxAck {
		tr.maxAck, tr.maxAckAt = took, t0.Sub(tr.began)
	}
	if gap := now.Sub(tr.lastAck); gap > tr.maxAckGap {
		tr.maxAckGap, tr.maxAckGapAt = gap, tr.lastAck.Sub(tr.began)
	}
	tr.lastAck = now
}

// command asks every session's status in turn, as the notifier does for
// a dashboard.
func (tr *traffic) command() {
	defer tr.wg.Done()
	for n := 0; ; n++ {
		select {
		case <-tr.quit:
			return
		case <-time.After(50 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		r, err := request(ctx, tr.obs, tr.ids[n%len(tr.ids)], event.VerbStatus, nil)
		cancel()
		now := time.Now()
		tr.mu.Lock()
		if err == nil && r.Error == nil && r.Status != nil {
			tr.cmdOK++
			if gap := now.Sub(tr.lastCmd); gap > tr.maxCmdGap {
				tr.maxCmdGap, tr.maxCmdGapAt = gap, tr.lastCmd.Sub(tr.began)
			}
			tr.lastCmd = now
		} else {
			tr.cmdFailed++
		}
		tr.mu.Unlock()
	}
}

// commandsAnswered checks that every session answers status connected and
// sends one message (retrying with the same client id, as a notifier
// would after a timeout), recording the sent message in the ledger.
func (tr *traffic) commandsAnswered(t *testing.T, round int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(tr.ids))
	for _, m := range tr.ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- tr.answered(m, round)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func (tr *traffic) answered(m int64, round int) error {
	deadline := time.Now().Add(step)
	var last error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := request(ctx, tr.obs, m, event.VerbStatus, nil)
		cancel()
		switch {
		case err != nil:
			last = err
		case r.Error != nil:
			last = r.Error
		case r.Status == nil || r.Status.Status != event.StatusConnected:
			last = fmt.Errorf("status %+v", r.Status)
		default:
			last = nil
		}
		if last == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last != nil {
		return fmt.Errorf("round %d: mentorado %d status: %w", round, m, last)
	}
	req := event.SendRequest{ClientID: fmt.Sprintf("cluster-%d-%d", round, m), Phone: "5511977776666", Text: fmt.Sprintf("round %d", round)}
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := request(ctx, tr.obs, m, event.VerbSend, req)
		cancel()
		switch {
		case err != nil:
			last = err
		case r.Error != nil:
			last = r.Error
		case r.Message == nil:
			last = errors.New("send: no message in the reply")
		default:
			tr.mu.Lock()
			tr.ledger = append(tr.ledger, r.Message.WAID)
			tr.sends[m]++
			tr.mu.Unlock()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("round %d: mentorado %d send: %w", round, m, last)
}

func (tr *traffic) ledgerIDs() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return slices.Clone(tr.ledger)
}

func (tr *traffic) sendsOf(m int64) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.sends[m]
}

func (tr *traffic) report(t *testing.T, ids []int64, w *sim.World) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, mk := range tr.marks {
		t.Logf("at %6.2fs: %s", mk.at.Seconds(), mk.what)
	}
	t.Logf("messages: %d (%d acked on first delivery, %d redelivered by WhatsApp)", len(tr.ledger), tr.firstTry, tr.retried)
	t.Logf("longest delivery → ack of one message: %s (at %.2fs)", tr.maxAck.Round(time.Millisecond), tr.maxAckAt.Seconds())
	t.Logf("longest delivery → answer (a failed one waits for the publish timeout): %s (at %.2fs)", tr.maxWait.Round(time.Millisecond), tr.maxWaitAt.Seconds())
	t.Logf("longest time without any message acked: %s (from %.2fs)", tr.maxAckGap.Round(time.Millisecond), tr.maxAckGapAt.Seconds())
	t.Logf("status commands: %d answered, %d failed; longest time without an answer: %s (from %.2fs)",
		tr.cmdOK, tr.cmdFailed, tr.maxCmdGap.Round(time.Millisecond), tr.maxCmdGapAt.Seconds())
	t.Logf("longest persister stall (ack floor still, events waiting): %s (from %.2fs)", tr.maxPersistStall.Round(time.Millisecond), tr.maxPersistStallAt.Seconds())
	sessions := 0
	for _, m := range ids {
		sessions += len(w.Intervals(m))
	}
	t.Logf("session connections: %d for %d mentorados (each extra one is a session fenced or moved)", sessions, len(ids))
}

// request sends a command as the notifier does and decodes the reply.
func request(ctx context.Context, b *bus.Bus, m int64, verb event.Verb, body any) (event.Reply, error) {
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return event.Reply{}, err
		}
	}
	msg, err := b.Request(ctx, event.CommandSubject(m, verb), data)
	if err != nil {
		return event.Reply{}, err
	}
	var r event.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return event.Reply{}, fmt.Errorf("reply: %w", err)
	}
	return r, nil
}
