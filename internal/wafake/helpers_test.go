package wafake_test

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/rs/zerolog"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/store/sqlstore"
	"go.mau.fi/whatsmeow/types/events"
	waLog "go.mau.fi/whatsmeow/util/log"

	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/wafake"
)

const waitTimeout = 20 * time.Second

// settleTimeout bounds the wait for a client to answer everything before a
// test disconnects it (a test may leave messages unanswered on purpose).
const settleTimeout = 3 * time.Second

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newServer(t testing.TB) *wafake.Server {
	t.Helper()
	srv, err := wafake.NewServer(testenv.Logger(t).With().Str("side", "fake").Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// newDB returns the URL of a fresh database with whatsmeow's schema.
func newDB(t testing.TB) string {
	t.Helper()
	url := testenv.Postgres(t)
	openContainer(t, url) // runs the upgrade
	return url
}

// openContainer opens a whatsmeow sqlstore on url, like a process start.
func openContainer(t testing.TB, url string) *sqlstore.Container {
	t.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	c := sqlstore.NewWithDB(db, "postgres", waLog.Zerolog(clientLogger(t).With().Str("side", "store").Logger()))
	if err := c.Upgrade(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

func clientLogger(t testing.TB) zerolog.Logger {
	return testenv.Logger(t).Level(zerolog.InfoLevel)
}

// recorder collects a client's events.
type recorder struct {
	mu      sync.Mutex
	evs     []any
	changed chan struct{}
	seen    map[reflect.Type]int // per type: how many were consumed by next
}

func newRecorder(cli *whatsmeow.Client) *recorder {
	r := &recorder{changed: make(chan struct{}), seen: map[reflect.Type]int{}}
	cli.AddEventHandler(r.add)
	return r
}

func (r *recorder) add(evt any) {
	r.mu.Lock()
	r.evs = append(r.evs, evt)
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

// count returns how many events of T were recorded.
func count[T any](r *recorder) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.evs {
		if _, ok := e.(T); ok {
			n++
		}
	}
	return n
}

// next waits for the next not yet consumed event of type T.
func next[T any](t testing.TB, r *recorder) T {
	t.Helper()
	typ := reflect.TypeFor[T]()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		n := 0
		for _, e := range r.evs {
			if v, ok := e.(T); ok {
				if n == r.seen[typ] {
					r.seen[typ]++
					r.mu.Unlock()
					return v
				}
				n++
			}
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			var zero T
			t.Fatalf("timed out waiting for %T; events so far: %s", zero, r.summary())
		}
	}
}

func (r *recorder) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := ""
	for _, e := range r.evs {
		s += fmt.Sprintf("%T ", e)
	}
	return s
}

// never polls cond for d and fails if it ever holds: for asserting that
// something (a reconnect) does not happen.
func never(t testing.TB, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type session struct {
	srv   *wafake.Server
	url   string
	store *sqlstore.Container
	cli   *whatsmeow.Client
	rec   *recorder
	phone string
	acct  *wafake.Account
	log   *wafake.ClientLog
}

// kicked kicks the session and waits until the client has handled the
// server's close (required before cli.Disconnect under -race, see
// wafake.ClientLog).
func (s *session) kicked(t testing.TB, k wafake.Kick) {
	t.Helper()
	n := s.log.SocketCloses()
	if err := s.acct.Kick(k); err != nil {
		t.Fatal(err)
	}
	if err := s.log.WaitSocketCloses(ctxT(t), n+1); err != nil {
		t.Fatalf("client did not handle the close: %v", err)
	}
}

// pair creates a fresh device in a new database (or in store when given),
// pairs it by QR as phone and waits until it is connected.
func pair(t testing.TB, srv *wafake.Server, phone string, store *sqlstore.Container, setup ...func(*whatsmeow.Client)) *session {
	t.Helper()
	url := ""
	if store == nil {
		url = newDB(t)
		store = openContainer(t, url)
	}
	cl := wafake.NewClientLog(waLog.Zerolog(clientLogger(t).With().Str("side", "client").Str("phone", phone).Logger()))
	cli := srv.NewClient(store.NewDevice(), cl)
	for _, f := range setup {
		f(cli)
	}
	rec := newRecorder(cli)
	t.Cleanup(func() {
		// Let the client finish answering what it got (receipts and acks
		// are sent from goroutines that race Disconnect under -race).
		if a := srv.Account(phone); a != nil {
			ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
			_ = a.WaitSettled(ctx)
			_ = a.WaitQuiet(ctx, 150*time.Millisecond)
			cancel()
		}
		cli.Disconnect()
	})
	if err := cli.Connect(); err != nil {
		t.Fatal(err)
	}
	qr := next[*events.QR](t, rec)
	if err := srv.ScanQR(ctxT(t), qr.Codes[0], phone); err != nil {
		t.Fatal(err)
	}
	ps := next[*events.PairSuccess](t, rec)
	if ps.ID.User != phone {
		t.Fatalf("paired as %s, want %s", ps.ID, phone)
	}
	next[*events.Connected](t, rec)
	acct := srv.Account(phone)
	if acct == nil {
		t.Fatal("no account after pairing")
	}
	testenv.Eventually(t, waitTimeout, acct.Connected, "account %s connected on the server", phone)
	return &session{srv: srv, url: url, store: store, cli: cli, rec: rec, phone: phone, acct: acct, log: cl}
}
