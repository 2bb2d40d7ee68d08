package cluster

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
)

// TestFailoverKill9 is TestFailover on three nats-server processes (the
// binary ZAPBUS_NATS_SERVER names, as CI sets it) where a node is killed
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
	t     testing.TB
	bin   string
	dir   string
	nodes []*procNode
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
	var routes []string
	for _, nd := range c.nodes {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", nd.route))
	}
	// The server configuration docs/cluster.md describes, without the
	// accounts and permissions (internal/natsperm proves those on nats.conf).
	for _, nd := range c.nodes {
		nd.conf = filepath.Join(c.dir, nd.name+".conf")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
debug: false
logtime: true
jetstream {
  store_dir: %q
  max_file_store: 1G
}
max_payload: 1MB
cluster {
  name: zapbus-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, nd.name, nd.port, filepath.Join(c.dir, nd.name), nd.route, strings.Join(routes, ", "))
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
	return c
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

func (c *procCluster) urls() string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", nd.port))
	}
	return strings.Join(out, ",")
}
