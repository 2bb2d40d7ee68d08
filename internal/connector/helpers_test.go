package connector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/connector/sim"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

const wait = 15 * time.Second

// env is the real infrastructure of a test: Postgres, embedded NATS.
type env struct {
	t        testing.TB
	db       *store.DB
	natsURL  string
	busCfg   bus.Config
	log      zerolog.Logger
	world    *sim.World
	observer *bus.Bus
}

func newEnv(t testing.TB, leaseTTL time.Duration) *env {
	t.Helper()
	return newEnvAt(t, testenv.NATS(t), leaseTTL)
}

func newEnvAt(t testing.TB, natsURL string, leaseTTL time.Duration) *env {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	e := &env{t: t, db: db, natsURL: natsURL, busCfg: bus.Config{LeaseTTL: leaseTTL}, log: testenv.Logger(t), world: sim.NewWorld()}
	e.observer = e.newBus("observer")
	if err := e.observer.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) newBus(name string) *bus.Bus {
	e.t.Helper()
	nc, err := bus.Connect(e.natsURL, name, e.log)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(nc.Close)
	b, err := bus.New(nc, e.busCfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// unpacedSettings are the sending settings of the tests' mentorados: the
// pacer lets every send go at once (the tests of the pacer, outbox and
// campaigns set their own, sending_test.go).
const unpacedSettings = `{"chat_per_minute": 100000, "chat_burst": 100000, "bulk_min_gap_seconds": 0, "bulk_max_gap_seconds": 0, "daily_cap": 1000000}`

// unpacedLimits are the operator maxima of the tests' connectors: they
// allow unpacedSettings.
var unpacedLimits = outbound.Limits{MaxChatPerMinute: 100000, MaxChatBurst: 100000, MinBulkGapSeconds: 0, MaxDailyCap: 1000000, MaxQueueTTL: event.MaxTTLSeconds}

// mentorados inserts n mentorados (sending unpaced) and returns their ids.
func (e *env) mentorados(n int) []int64 {
	e.t.Helper()
	var ids []int64
	for i := range n {
		var id int64
		if err := e.db.Pool.QueryRow(context.Background(), "INSERT INTO mentorados (name) VALUES ($1) RETURNING id", fmt.Sprintf("m%d", i)).Scan(&id); err != nil {
			e.t.Fatal(err)
		}
		if _, err := e.db.Pool.Exec(context.Background(), "INSERT INTO send_settings (mentorado_id, settings) VALUES ($1, $2)", id, unpacedSettings); err != nil {
			e.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// paired gives m a paired sim device that should be connected.
func (e *env) paired(m int64, phone string) {
	e.t.Helper()
	jid := e.world.AddDevice(m, phone)
	if _, err := e.db.Pool.Exec(context.Background(),
		"INSERT INTO wa_devices (mentorado_id, device_jid, phone, desired_state) VALUES ($1, $2, $3, 'connected')", m, jid.String(), phone); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) desired(m int64) string {
	e.t.Helper()
	var d string
	err := e.db.Pool.QueryRow(context.Background(), "SELECT desired_state FROM wa_devices WHERE mentorado_id = $1", m).Scan(&d)
	if err != nil {
		return "none"
	}
	return d
}

// running is a connector under test.
type running struct {
	c      *connector.Connector
	bus    *bus.Bus
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("connector run: %v", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("connector did not stop; goroutines:\n%s", testenv.Goroutines())
	}
}

type cfgOpt func(*connector.Config)

func (e *env) start(name string, f connector.Factory, opts []connector.Option, cfgOpts ...cfgOpt) *running {
	e.t.Helper()
	cfg := connector.Config{
		InstanceID:    name,
		RestoreJitter: time.Millisecond,
		Policy:        connector.Policy{Jitter: -1},
		// Workers poll for API changes rarely: a test with many sessions
		// does not load Postgres with idle polls (a send wakes them).
		Sending: connector.SendingConfig{Limits: unpacedLimits, Poll: time.Minute},
	}
	for _, o := range cfgOpts {
		o(&cfg)
	}
	if f == nil {
		f = &sim.Factory{W: e.world}
	}
	b := e.newBus(name)
	c, err := connector.New(cfg, e.db, b, f, e.log.With().Str("who", name).Logger(), opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, bus: b, cancel: cancel, done: make(chan struct{})}
	go func() { r.err = c.Run(ctx); close(r.done) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
		}
	})
	testenv.Eventually(e.t, wait, c.Ready, "connector %s up", name)
	return r
}

// request sends a command and decodes the reply.
func (e *env) request(m int64, verb event.Verb, body any) (event.Reply, error) {
	var data []byte
	if body != nil {
		data, _ = json.Marshal(body)
	}
	msg, err := e.observer.NC.Request(event.CommandSubject(m, verb), data, 20*time.Second)
	if err != nil {
		return event.Reply{}, err
	}
	var r event.Reply
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return event.Reply{}, err
	}
	return r, nil
}

func (e *env) mustRequest(m int64, verb event.Verb, body any) event.Reply {
	e.t.Helper()
	r, err := e.request(m, verb, body)
	if err != nil {
		e.t.Fatalf("%s %d: %v", verb, m, err)
	}
	return r
}

func (e *env) status(m int64) event.Status {
	r, err := e.request(m, event.VerbStatus, nil)
	if err != nil || r.Status == nil {
		return ""
	}
	return r.Status.Status
}

// stored returns the stored events of a subject filter, decoded.
func (e *env) stored(stream, filter string) []event.Envelope {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := e.observer.JS.Stream(ctx, stream)
	if err != nil {
		e.t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		e.t.Fatal(err)
	}
	var total uint64
	for _, n := range info.State.Subjects {
		total += n
	}
	var out []event.Envelope
	for uint64(len(out)) < total {
		batch, err := cons.Fetch(int(total)-len(out), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			env, _, err := event.Decode(msg.Data())
			if err != nil {
				e.t.Fatalf("stored event does not decode: %v", err)
			}
			out = append(out, env)
		}
		if n == 0 {
			break
		}
	}
	return out
}

// statuses returns the connection statuses published for m, in order.
func (e *env) statuses(m int64) []event.Status {
	var out []event.Status
	for _, env := range e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeConnection)) {
		p, err := env.Payload()
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, p.(*event.Connection).Status)
	}
	return out
}

func (e *env) connections(m int64) []*event.Connection {
	var out []*event.Connection
	for _, env := range e.stored(bus.StreamEvents, event.EventSubject(m, event.TypeConnection)) {
		p, err := env.Payload()
		if err != nil {
			e.t.Fatal(err)
		}
		out = append(out, p.(*event.Connection))
	}
	return out
}

func isNoResponders(err error) bool { return errors.Is(err, nats.ErrNoResponders) }

// fakeClock drives session timers by hand (shared with the state-machine
// tests, see fakeclock_test.go).
type fakeClock = connector.FakeClock

func newFakeClock() *fakeClock { return connector.NewFakeClock() }

// allConnected reports (for Eventually) whether the simulated WhatsApp
// has every one of ids connected.
func (e *env) allConnected(ids []int64) func() bool {
	return func() bool {
		for _, m := range ids {
			if !e.world.Connected(m) {
				return false
			}
		}
		return true
	}
}
