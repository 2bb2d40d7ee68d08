package startup

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Front holds a process's HTTP address while it starts: it listens at once
// and answers /healthz with 200 and everything else (/readyz included)
// with 503 and what the process is waiting for, as JSON
// ({"error":{"code":"unavailable","message":…}}). Handoff gives the address
// to the process's real server without closing the socket, so the port
// never goes away between the two.
type Front struct {
	ln      net.Listener
	log     zerolog.Logger
	conns   chan net.Conn
	stop    chan struct{} // closed when the real listener is closed
	failed  chan struct{} // closed when ln.Accept failed
	err     error
	pre     *chanListener
	interim *http.Server

	mu        sync.Mutex
	handedOff bool
	closeOnce sync.Once
}

// Listen listens on addr and serves status until Handoff or Close.
func Listen(addr string, st *Status, log zerolog.Logger) (*Front, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f := &Front{ln: ln, log: log, conns: make(chan net.Conn), stop: make(chan struct{}), failed: make(chan struct{})}
	f.pre = &chanListener{f: f, done: make(chan struct{})}
	f.interim = &http.Server{Handler: StatusHandler(st), ReadHeaderTimeout: 5 * time.Second}
	go f.dispatch()
	go func() { _ = f.interim.Serve(f.pre) }()
	return f, nil
}

// Addr is the listening address (useful with port 0).
func (f *Front) Addr() net.Addr { return f.ln.Addr() }

func (f *Front) dispatch() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			f.err = err
			close(f.failed)
			return
		}
		select {
		case f.conns <- c:
		case <-f.stop:
			_ = c.Close()
			return
		}
	}
}

// Handoff stops the status server (letting its in-flight requests finish,
// for at most a few seconds) and returns a listener on the same socket for
// the real server; closing that listener closes the socket.
func (f *Front) Handoff() net.Listener {
	f.mu.Lock()
	f.handedOff = true
	f.mu.Unlock()
	f.stopInterim()
	return &chanListener{f: f, done: make(chan struct{}), real: true}
}

// Close stops serving and closes the socket; use it when start-up failed
// before Handoff. After Handoff it does nothing.
func (f *Front) Close() {
	f.mu.Lock()
	handed := f.handedOff
	f.mu.Unlock()
	if handed {
		return
	}
	f.stopInterim()
	f.closeReal()
}

func (f *Front) stopInterim() {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := f.interim.Shutdown(ctx); err != nil {
		_ = f.interim.Close()
	}
}

func (f *Front) closeReal() {
	f.closeOnce.Do(func() {
		close(f.stop)
		_ = f.ln.Close()
	})
}

// chanListener accepts the connections the dispatcher hands it.
type chanListener struct {
	f    *Front
	done chan struct{}
	once sync.Once
	real bool // closing it closes the socket
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.f.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.f.failed:
		return nil, l.f.err
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		if l.real {
			l.f.closeReal()
		}
	})
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.f.ln.Addr() }

// StatusHandler answers /healthz with 200 and every other path with 503
// naming what st still waits for.
func StatusHandler(st *Status) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path == "/healthz" {
			_ = json.NewEncoder(w).Encode(map[string]string{"status": "ok"})
			return
		}
		reason := "starting"
		if st != nil {
			if r := st.Reason(); r != "" {
				reason = "starting: " + r
			}
		}
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": "unavailable", "message": reason}})
	})
}
