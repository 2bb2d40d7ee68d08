// Package startuptest helps test processes that start before their
// dependencies: a TCP gate that refuses connections until it is opened
// onto the real server, and free ports for servers started later.
// Imported only by tests.
package startuptest

import (
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// Gate listens on a loopback port and closes every connection at once
// (the dependency "is down") until Open, after which it forwards them to
// the target.
type Gate struct {
	ln      net.Listener
	target  atomic.Pointer[string]
	refused atomic.Int64
	mu      sync.Mutex
	conns   []net.Conn
}

// NewGate starts a closed gate; it is shut when the test ends.
func NewGate(t testing.TB) *Gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &Gate{ln: ln}
	go g.serve()
	t.Cleanup(g.close)
	return g
}

// Addr is host:port of the gate.
func (g *Gate) Addr() string { return g.ln.Addr().String() }

// Refused counts the connections closed while the gate was shut.
func (g *Gate) Refused() int64 { return g.refused.Load() }

// Open forwards later connections to target (host:port).
func (g *Gate) Open(target string) { g.target.Store(&target) }

// Redirect returns rawURL (postgres://… or nats://…) with its host:port
// replaced by the gate's.
func (g *Gate) Redirect(t testing.TB, rawURL string) (redirected, target string) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	target = u.Host
	u.Host = g.Addr()
	return u.String(), target
}

func (g *Gate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		tp := g.target.Load()
		if tp == nil {
			g.refused.Add(1)
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", *tp)
		if err != nil {
			_ = c.Close()
			continue
		}
		g.mu.Lock()
		g.conns = append(g.conns, c, s)
		g.mu.Unlock()
		go func() { _, _ = io.Copy(s, c); _ = s.Close(); _ = c.Close() }()
		go func() { _, _ = io.Copy(c, s); _ = s.Close(); _ = c.Close() }()
	}
}

func (g *Gate) close() {
	_ = g.ln.Close()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		_ = c.Close()
	}
}

// FreePort returns a loopback port nothing listens on (yet): a server
// started later can take it.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return port
}

// NATSURL is the client URL of a NATS server on port.
func NATSURL(port int) string { return "nats://127.0.0.1:" + strconv.Itoa(port) }
