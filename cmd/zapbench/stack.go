package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
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
	"persister": "NATS_PERSISTER_PASSWORD", "notifier": "NATS_NOTIFIER_PASSWORD", "backend": "NATS_BACKEND_PASSWORD"}

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
	server, name, dsn string
	db                *store.DB
}

func createDB(ctx context.Context, serverDSN, label string) (*benchDB, error) {
	admin, err := pgx.Connect(ctx, serverDSN)
	if err != nil {
		return nil, fmt.Errorf("postgres %s: %w", serverDSN, err)
	}
	defer admin.Close(context.Background())
	name := fmt.Sprintf("zapbench_%s_%d_%s", label, time.Now().Unix(), secret()[:6])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(serverDSN)
	if err != nil {
		return nil, err
	}
	u.Path = "/" + name
	d := &benchDB{server: serverDSN, name: name, dsn: u.String()}
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, d.server)
	if err != nil {
		return
	}
	defer c.Close(ctx)
	_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+d.name+" WITH (FORCE)")
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
