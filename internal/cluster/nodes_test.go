package cluster

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// jsCluster is a JetStream cluster of embedded nats-servers on loopback,
// each with its own client port, route port and store directory, kept
// across a restart so a node comes back as the same member with its data.
type jsCluster struct {
	t      testing.TB
	name   string
	nodes  []*node
	routes []*url.URL
}

type node struct {
	name        string
	port, route int
	storeDir    string
	srv         *server.Server // nil while down
}

// newCluster starts n nodes and waits until JetStream has a meta leader.
func newCluster(t testing.TB, n int) *jsCluster {
	t.Helper()
	c := &jsCluster{t: t, name: "zapbus-test"}
	for i := range n {
		nd := &node{name: fmt.Sprintf("n%d", i+1), port: freePort(t), route: freePort(t), storeDir: t.TempDir()}
		c.nodes = append(c.nodes, nd)
		c.routes = append(c.routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", nd.route)})
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			if nd.srv != nil {
				nd.srv.Shutdown()
				nd.srv.WaitForShutdown()
			}
		}
	})
	for i := range c.nodes {
		c.start(i)
	}
	c.waitMetaLeader(30 * time.Second)
	return c
}

// freePort returns a loopback port nobody listened on a moment ago. The
// ports are fixed up front because every node's routes name the others',
// and a restarted node must come back where its peers look for it.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (c *jsCluster) options(nd *node) *server.Options {
	return &server.Options{
		ServerName: nd.name,
		Host:       "127.0.0.1",
		Port:       nd.port,
		JetStream:  true,
		StoreDir:   nd.storeDir,
		NoLog:      true,
		NoSigs:     true,
		Cluster: server.ClusterOpts{
			Name: c.name,
			Host: "127.0.0.1",
			Port: nd.route,
		},
		Routes: c.routes,
	}
}

// start starts node i (again, after stop: same name, ports and store).
func (c *jsCluster) start(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if nd.srv != nil {
		c.t.Fatalf("cluster: %s is already running", nd.name)
	}
	s, err := server.NewServer(c.options(nd))
	if err != nil {
		c.t.Fatalf("cluster: start %s: %v", nd.name, err)
	}
	go s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		c.t.Fatalf("cluster: %s not ready for connections", nd.name)
	}
	nd.srv = s
}

// stop shuts node i down the way an operator's `nats-server --signal
// quit` does: its raft leaders step down first, then it closes every
// client connection.
func (c *jsCluster) stop(i int) {
	nd := c.nodes[i]
	if nd.srv == nil {
		return
	}
	nd.srv.Shutdown()
	nd.srv.WaitForShutdown()
	nd.srv = nil
}

// index returns the index of the node named name.
func (c *jsCluster) index(name string) int {
	c.t.Helper()
	for i, nd := range c.nodes {
		if nd.name == name {
			return i
		}
	}
	c.t.Fatalf("cluster: no node named %q", name)
	return -1
}

// urls is the client URL list every zapbus process is given: all nodes,
// so a client whose node dies reconnects to another at once (and can
// connect at start while any one of them is down).
func (c *jsCluster) urls(string) string {
	var out []string
	for _, nd := range c.nodes {
		out = append(out, fmt.Sprintf("nats://127.0.0.1:%d", nd.port))
	}
	return strings.Join(out, ",")
}

func (c *jsCluster) waitMetaLeader(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, nd := range c.nodes {
			if nd.srv != nil && nd.srv.JetStreamIsLeader() {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("cluster: no JetStream meta leader after %s", timeout)
}
