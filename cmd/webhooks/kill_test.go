package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

// childEnv makes the test binary run the dispatcher's main instead of the
// tests, so a test can SIGKILL a real dispatcher process.
const childEnv = "ZAPBUS_TEST_WEBHOOKS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := run(ctx, nil, os.Getenv, os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "webhooks:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// natsUsers are nats.conf's users and their password variables.
var natsUsers = map[string]string{"admin": "NATS_ADMIN_PASSWORD", "connector": "NATS_CONNECTOR_PASSWORD",
	"persister": "NATS_PERSISTER_PASSWORD", "notifier": "NATS_NOTIFIER_PASSWORD", "backend": "NATS_BACKEND_PASSWORD",
	"webhooks": "NATS_WEBHOOKS_PASSWORD", "gateway": "NATS_GATEWAY_PASSWORD"}

// confNATS is a nats-server process (the binary ZAPBUS_NATS_SERVER names)
// running the repo's nats.conf with fresh passwords.
type confNATS struct {
	hostPort  string
	passwords map[string]string
}

func (n *confNATS) url(user string) string {
	return (&url.URL{Scheme: "nats", User: url.UserPassword(user, n.passwords[user]), Host: n.hostPort}).String()
}

func startConfNATS(t *testing.T, bin string) *confNATS {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(raw)
	for old, repl := range map[string]string{
		"store_dir: /data/jetstream": "store_dir: " + strconv.Quote(t.TempDir()),
		"http: 127.0.0.1:8222":       "# http: (monitoring off in the test)",
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("nats.conf has no %q any more", old)
		}
		conf = strings.Replace(conf, old, repl, 1)
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	n := &confNATS{hostPort: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), passwords: map[string]string{}}
	cmd := exec.Command(bin, "-c", path, "-p", strconv.Itoa(port))
	cmd.Env = os.Environ()
	for u, env := range natsUsers {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		n.passwords[u] = hex.EncodeToString(b)
		cmd.Env = append(cmd.Env, env+"="+n.passwords[u])
	}
	out := &testenv.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nats-server output:\n%s", out)
		}
	})
	testenv.Eventually(t, 20*time.Second, func() bool {
		nc, err := nats.Connect(n.url("admin"), nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
		}
		return err == nil
	}, "nats-server %s not ready:\n%s", bin, out)
	return n
}

// delivery is one request the receiver got.
type delivery struct {
	id   string // webhook-id
	m, n int    // mentorado and the event's number for it
}

// TestKilledDispatcherLosesNothing runs two dispatcher processes (this
// test binary re-executed as the command's main) against real Postgres and
// a nats-server process with the repo's nats.conf, each as the webhooks
// user. Two mentorados' endpoints on a local receiver get numbered
// messages; the receiver holds one request, the process sending it is
// killed with SIGKILL, and the survivor delivers every event: at least
// once, each event always under the same webhook-id, and per mentorado in
// order (the first delivery of event n+1 comes after that of event n).
func TestKilledDispatcherLosesNothing(t *testing.T) {
	bin := os.Getenv("ZAPBUS_NATS_SERVER")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("ZAPBUS_NATS_SERVER is not set: CI must run the kill -9 test against a real nats-server binary")
		}
		t.Skip("ZAPBUS_NATS_SERVER is not set (a nats-server >= 2.11 binary, e.g. $(go env GOPATH)/bin/nats-server)")
	}
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc to find which process holds the receiver's connection")
	}
	ctx := context.Background()
	ns := startConfNATS(t, bin)
	log := testenv.Logger(t).Level(1)
	admin, err := bus.Open(ctx, ns.url("admin"), "zapbus-admin", bus.Config{Provision: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	pub, err := bus.Open(ctx, ns.url("connector"), "zapbus-connector", bus.Config{}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	const (
		mentorados = 2
		before     = 15 // events per mentorado published before the kill
		total      = 30
		holdAt     = 6 // mentorado 1's event held by the receiver
	)
	// The receiver: records every request, holds the first delivery of
	// mentorado 1's event holdAt until released (or its client dies).
	var (
		mu        sync.Mutex
		got       []delivery
		held      = make(chan string, 1) // the held request's client address
		release   = make(chan struct{})
		holdOnce  sync.Once
		tokenRe   = regexp.MustCompile(`hook-(\d+)-(\d+)`)
		badBodies []string
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mt := tokenRe.FindSubmatch(body)
		if mt == nil {
			mu.Lock()
			badBodies = append(badBodies, string(body))
			mu.Unlock()
			w.WriteHeader(http.StatusNoContent) // not ours (another event type): accepted
			return
		}
		m, _ := strconv.Atoi(string(mt[1]))
		n, _ := strconv.Atoi(string(mt[2]))
		mu.Lock()
		got = append(got, delivery{id: r.Header.Get("webhook-id"), m: m, n: n})
		mu.Unlock()
		if m == 1 && n == holdAt {
			hold := false
			holdOnce.Do(func() { hold = true })
			if hold {
				held <- r.RemoteAddr
				select {
				case <-release:
				case <-r.Context().Done():
				}
			}
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer recv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	dbURL := testenv.Postgres(t)
	db, err := store.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for m := 1; m <= mentorados; m++ {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		if _, err := db.Pool.Exec(ctx, `INSERT INTO mentorados (id, name) OVERRIDING SYSTEM VALUE VALUES ($1, $2)`, m, fmt.Sprint("m", m)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO webhooks (mentorado_id, url, event_types, secret, start_time) VALUES ($1, $2, '{message}', $3, now() - interval '1 minute')`,
			m, fmt.Sprintf("%s/hooks/%d", recv.URL, m), "whsec_"+base64.StdEncoding.EncodeToString(key)); err != nil {
			t.Fatal(err)
		}
	}

	type child struct {
		name string
		cmd  *exec.Cmd
		out  *testenv.Buffer
		done chan struct{}
	}
	startChild := func(name string) *child {
		c := &child{name: name, out: &testenv.Buffer{}, done: make(chan struct{})}
		c.cmd = exec.Command(os.Args[0], "-test.run=^$")
		c.cmd.Env = append(os.Environ(), childEnv+"=1", "DATABASE_URL="+dbURL, "NATS_URL="+ns.url("webhooks"),
			"ZAPBUS_NATS_PROVISION=false", "ZAPBUS_HTTP_ADDR=off", "ZAPBUS_WEBHOOK_NAME="+name,
			"ZAPBUS_WEBHOOK_ALLOW_NETS=127.0.0.0/8", "ZAPBUS_WEBHOOK_ALLOW_HTTP=true", "ZAPBUS_WEBHOOK_TIMEOUT=5s",
			"ZAPBUS_WEBHOOK_BACKOFF=500ms,1s,2s,2s,2s,2s,2s,2s,2s,2s", "ZAPBUS_WEBHOOK_RECONCILE_INTERVAL=200ms")
		c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = c.cmd.Wait(); close(c.done) }()
		t.Cleanup(func() {
			_ = c.cmd.Process.Kill()
			<-c.done
			if t.Failed() {
				t.Logf("dispatcher %s output:\n%s", c.name, c.out)
			}
		})
		return c
	}
	children := []*child{startChild("a"), startChild("b")}

	publish := func(from, to int) {
		t.Helper()
		for n := from; n <= to; n++ {
			for m := 1; m <= mentorados; m++ {
				waID := fmt.Sprintf("HOOK%d_%03d", m, n)
				at := time.Now().UTC()
				e, err := event.New(int64(m), event.MessageEventID(int64(m), waID), at, &event.Message{WAID: waID,
					ChatJID: "5511955556666@s.whatsapp.net", SenderJID: "5511955556666@s.whatsapp.net", Phone: "5511955556666",
					Direction: event.DirectionIn, Kind: event.KindText, Text: fmt.Sprintf("hook-%d-%d", m, n), Timestamp: at,
					Status: event.MessageReceived})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := pub.Publish(ctx, e); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	publish(1, before)

	// The receiver holds a request: find the process whose socket it is.
	var holder *child
	deadline := time.After(45 * time.Second)
	for holder == nil {
		select {
		case addr := <-held:
			pid, err := socketOwner(addr, recv.Listener.Addr().String())
			if err != nil {
				t.Fatalf("which dispatcher holds %s: %v", addr, err)
			}
			for _, c := range children {
				if c.cmd.Process.Pid == pid {
					holder = c
				}
			}
			if holder == nil {
				t.Fatalf("the held request's socket belongs to pid %d, not to a dispatcher", pid)
			}
		case <-time.After(100 * time.Millisecond):
			for _, c := range children {
				select {
				case <-c.done:
					t.Fatalf("dispatcher %s exited:\n%s", c.name, c.out)
				default:
				}
			}
		case <-deadline:
			t.Fatalf("no request of mentorado 1's event %d reached the receiver; received %d requests", holdAt, len(got))
		}
	}
	t.Logf("dispatcher %s (pid %d) holds the delivery of event 1/%d: SIGKILL", holder.name, holder.cmd.Process.Pid, holdAt)
	if err := holder.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-holder.done
	close(release)
	publish(before+1, total)

	// Every event arrives; the held one again, after the kill.
	complete := func() (missing []string, heldAgain bool) {
		mu.Lock()
		defer mu.Unlock()
		seen := map[[2]int]int{}
		for _, d := range got {
			seen[[2]int{d.m, d.n}]++
		}
		for m := 1; m <= mentorados; m++ {
			for n := 1; n <= total; n++ {
				if seen[[2]int{m, n}] == 0 {
					missing = append(missing, fmt.Sprintf("%d/%d", m, n))
				}
			}
		}
		return missing, seen[[2]int{1, holdAt}] >= 2
	}
	for end := time.Now().Add(60 * time.Second); ; {
		missing, again := complete()
		if len(missing) == 0 && again {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("after the kill: events never delivered %v; held event delivered again: %v", missing, again)
		}
		time.Sleep(50 * time.Millisecond)
	}

	mu.Lock()
	defer mu.Unlock()
	idOf := map[[2]int]string{}
	owner := map[string][2]int{}
	next := map[int]int{} // per mentorado, the next event expected for the first time
	for _, d := range got {
		k := [2]int{d.m, d.n}
		if d.id == "" {
			t.Fatalf("delivery of %d/%d without a webhook-id header", d.m, d.n)
		}
		if prev, ok := idOf[k]; ok {
			if prev != d.id {
				t.Errorf("event %d/%d delivered as %s and as %s: the delivery id must be stable", d.m, d.n, prev, d.id)
			}
			continue
		}
		if o, ok := owner[d.id]; ok && o != k {
			t.Errorf("webhook-id %s names both %v and %v", d.id, o, k)
		}
		idOf[k], owner[d.id] = d.id, k
		if next[d.m] == 0 {
			next[d.m] = 1
		}
		if d.n != next[d.m] {
			t.Errorf("mentorado %d: event %d delivered first before event %d: out of order", d.m, d.n, next[d.m])
		}
		next[d.m] = d.n + 1
	}
	t.Logf("%d requests for %d events; %d other bodies", len(got), mentorados*total, len(badBodies))
}

// socketOwner returns the pid of the process holding the TCP connection
// from client to server (both host:port on loopback), through /proc.
func socketOwner(client, server string) (int, error) {
	_, cport, err := net.SplitHostPort(client)
	if err != nil {
		return 0, err
	}
	_, sport, err := net.SplitHostPort(server)
	if err != nil {
		return 0, err
	}
	cp, _ := strconv.Atoi(cport)
	sp, _ := strconv.Atoi(sport)
	inode := ""
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(raw), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 {
				continue
			}
			if portOf(fs[1]) == cp && portOf(fs[2]) == sp {
				inode = fs[9]
			}
		}
	}
	if inode == "" {
		return 0, fmt.Errorf("no socket from port %d to %d in /proc/net/tcp", cp, sp)
	}
	want := "socket:[" + inode + "]"
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		if l, err := os.Readlink(fd); err == nil && l == want {
			return strconv.Atoi(strings.Split(fd, "/")[2])
		}
	}
	return 0, fmt.Errorf("no process holds %s", want)
}

// portOf parses the port of a /proc/net/tcp address ("0100007F:1F90").
func portOf(hexAddr string) int {
	i := strings.LastIndexByte(hexAddr, ':')
	if i < 0 {
		return -1
	}
	p, err := strconv.ParseUint(hexAddr[i+1:], 16, 32)
	if err != nil {
		return -1
	}
	return int(p)
}

// TestSocketOwner: the kill test finds the process behind a connection.
func TestSocketOwner(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc")
	}
	addrs := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { addrs <- r.RemoteAddr }))
	defer srv.Close()
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	pid, err := socketOwner(<-addrs, srv.Listener.Addr().String())
	if err != nil || pid != os.Getpid() {
		t.Fatalf("owner %d, %v; want this process %d", pid, err, os.Getpid())
	}
}
