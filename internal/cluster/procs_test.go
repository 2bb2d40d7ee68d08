package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
)

// TestFailoverKill9 is TestFailover on three nats-server processes (the
// binary ZAPBUS_NATS_SERVER names, as CI sets it) running the repo's
// nats.conf with a cluster block, every service with its own user and
// permissions, where a node is killed
// with SIGKILL instead of shut down: its raft groups get no step-down, so
// the survivors elect new leaders only after raft's election timeout.
func TestFailoverKill9(t *testing.T) {
	bin := os.Getenv("ZAPBUS_NATS_SERVER")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("ZAPBUS_NATS_SERVER is not set: CI must run the kill -9 cluster test against a real nats-server binary")
		}
		t.Skip("ZAPBUS_NATS_SERVER is not set (a nats-server >= 2.11 binary, e.g. $(go env GOPATH)/bin/nats-server)")
	}
	// Production's lease TTL: renewals must ride out an election
	// (docs/decisions/0016-cluster-replicas-and-lease-ttl.md).
	leadersOf := []string{bus.StreamEvents, "KV_" + bus.BucketLeases}
	if testing.Short() || os.Getenv("CI") == "true" {
		// One round keeps CI under a minute; the lease bucket's leader is
		// the harder case (renewals, takeovers and commands all wait on it).
		leadersOf = leadersOf[1:]
	}
	failover(t, newProcCluster(t, bin, 3), 15*time.Second, leadersOf...)
}

// keepEnv names a directory where TestFailoverKill9 keeps its nodes'
// logs and stores instead of a temporary directory.
const keepEnv = "ZAPBUS_CLUSTER_KEEP"

// procCluster is a JetStream cluster of nats-server processes on
// loopback, each with fixed ports and store directory so a killed node
// restarts as the same member with what it had written.
type procCluster struct {
	t         testing.TB
	bin       string
	dir       string
	nodes     []*procNode
	passwords map[string]string // by user, nats.conf's and the routes'
}

type procNode struct {
	name        string
	port, route int
	conf        string
	cmd         *exec.Cmd // nil while down
	waited      chan struct{}
}

func newProcCluster(t testing.TB, bin string, n int) *procCluster {
	t.Helper()
	c := &procCluster{t: t, bin: bin, dir: t.TempDir()}
	if d := os.Getenv(keepEnv); d != "" {
		// Keep the nodes' logs and stores for a look after the test.
		c.dir = filepath.Join(d, fmt.Sprintf("%s-%d", t.Name(), time.Now().Unix()))
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Logf("cluster: nodes' logs and stores in %s", c.dir)
	}
	for i := range n {
		c.nodes = append(c.nodes, &procNode{name: fmt.Sprintf("n%d", i+1), port: freePort(t), route: freePort(t)})
	}
	c.passwords = map[string]string{}
	for _, user := range []string{"admin", "connector", "persister", "notifier", "backend", "webhooks", "gateway", "route"} {
		c.passwords[user] = fmt.Sprintf("%s-%x", user, rand.Uint64())
	}
	base, err := os.ReadFile(filepath.Join("..", "..", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, nd := range c.nodes {
		routes = append(routes, fmt.Sprintf("nats-route://route:%s@127.0.0.1:%d", c.passwords["route"], nd.route))
	}
	// Each node runs the repo's nats.conf (its users and permissions)
	// with what docs/cluster.md says to change per node: its own
	// addresses and store, a server name, and the cluster block.
	for _, nd := range c.nodes {
		conf := string(base)
		for old, repl := range map[string]string{
			"listen: 127.0.0.1:4222":     fmt.Sprintf("listen: 127.0.0.1:%d", nd.port),
			"http: 127.0.0.1:8222":       "# http: (monitoring off in the test)",
			"store_dir: /data/jetstream": fmt.Sprintf("store_dir: %q", filepath.Join(c.dir, nd.name)),
			"max_file_store: 50G":        "max_file_store: 1G",
		} {
			if !strings.Contains(conf, old) {
				t.Fatalf("nats.conf has no %q any more: update docs/cluster.md and this test", old)
			}
			conf = strings.Replace(conf, old, repl, 1)
		}
		conf += fmt.Sprintf(`
server_name: %s
cluster {
  name: zapbus-test
  listen: 127.0.0.1:%d
  authorization { user: route, password: $NATS_ROUTE_PASSWORD }
  routes: [%s]
}
`, nd.name, nd.route, strings.Join(routes, ", "))
		nd.conf = filepath.Join(c.dir, nd.name+".conf")
		if err := os.WriteFile(nd.conf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	for i := range c.nodes {
		c.start(i)
	}
	c.waitJetStream(30 * time.Second)
	return c
}

// waitJetStream waits until the cluster answers JetStream requests (it
// has a meta leader). A request sent before that is dropped and would
// wait for its whole deadline, so each try has a short one.
func (c *procCluster) waitJetStream(timeout time.Duration) {
	c.t.Helper()
	nc, err := nats.Connect(c.urls("admin"), nats.CustomInboxPrefix(bus.InboxPrefix("zapbus-admin")))
	if err != nil {
		c.t.Fatalf("cluster: connect: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster: JetStream not available after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *procCluster) start(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if nd.cmd != nil {
		c.t.Fatalf("cluster: %s is already running", nd.name)
	}
	logf, err := os.OpenFile(filepath.Join(c.dir, nd.name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(c.bin, "-c", nd.conf)
	cmd.Env = os.Environ()
	for user, pw := range c.passwords {
		cmd.Env = append(cmd.Env, "NATS_"+strings.ToUpper(user)+"_PASSWORD="+pw)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("cluster: start %s: %v", nd.name, err)
	}
	nd.cmd, nd.waited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(nd.waited) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", nd.port), time.Second)
		if err == nil {
			conn.Close()
			return
		}
		select {
		case <-nd.waited:
			log, _ := os.ReadFile(filepath.Join(c.dir, nd.name+".log"))
			c.t.Fatalf("cluster: %s exited at start:\n%s", nd.name, log)
		default:
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster: %s not listening after 20s", nd.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop kills node i with SIGKILL: no step-down, no flush, no goodbye to
// its clients or peers.
func (c *procCluster) stop(i int) {
	nd := c.nodes[i]
	if nd.cmd == nil {
		return
	}
	_ = nd.cmd.Process.Kill()
	<-nd.waited
	nd.cmd = nil
}

func (c *procCluster) index(name string) int {
	c.t.Helper()
	for i, nd := range c.nodes {
		if nd.name == name {
			return i
		}
	}
	c.t.Fatalf("cluster: no node named %q", name)
	return -1
}

func (c *procCluster) urls(user string) string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, fmt.Sprintf("nats://%s:%s@127.0.0.1:%d", user, c.passwords[user], nd.port))
	}
	return strings.Join(out, ",")
}
