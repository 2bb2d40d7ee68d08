package wafake

import (
	"context"
	"strings"
	"sync"

	waLog "go.mau.fi/whatsmeow/util/log"
)

// ClientLog wraps the logger given to whatsmeow.NewClient and observes, from
// whatsmeow's own log lines, when the client has finished handling the loss
// of its socket (Client.onDisconnect ran).
//
// Why: whatsmeow (this version) has unsynchronised reads in its socket code
// that the race detector reports when a server-side close and a local
// cli.Disconnect() (or cli.IsConnected()) run concurrently. After a kick the
// server closes the socket; a test that then calls Disconnect — directly or
// in a cleanup — must first wait for the client to have processed the close.
// Waiting on a ClientLog gives the required happens-before edge:
//
//	cl := wafake.NewClientLog(waLog.Zerolog(log))
//	cli := whatsmeow.NewClient(dev, cl)
//	n := cl.SocketCloses()
//	acct.Kick(wafake.Kick{Kind: wafake.KickReplaced})
//	cl.WaitSocketCloses(ctx, n+1)
//
// It depends on whatsmeow's log wording ("OnDisconnect() called…",
// "Emitting Disconnected event"), checked by this package's tests.
type ClientLog struct {
	waLog.Logger
	w *closeWatch
}

type closeWatch struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

// NewClientLog wraps inner (nil means waLog.Noop).
func NewClientLog(inner waLog.Logger) *ClientLog {
	if inner == nil {
		inner = waLog.Noop
	}
	return &ClientLog{Logger: inner, w: &closeWatch{changed: make(chan struct{})}}
}

// Debugf implements waLog.Logger.
func (l *ClientLog) Debugf(msg string, args ...any) {
	if strings.HasPrefix(msg, "OnDisconnect() called") || strings.HasPrefix(msg, "Emitting Disconnected event") {
		l.w.mu.Lock()
		l.w.n++
		close(l.w.changed)
		l.w.changed = make(chan struct{})
		l.w.mu.Unlock()
	}
	l.Logger.Debugf(msg, args...)
}

// Sub implements waLog.Logger.
func (l *ClientLog) Sub(module string) waLog.Logger {
	return &ClientLog{Logger: l.Logger.Sub(module), w: l.w}
}

// SocketCloses is how many times the client has finished handling a lost
// socket (remote close, or its own Disconnect while connected).
func (l *ClientLog) SocketCloses() int {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	return l.w.n
}

// WaitSocketCloses waits until SocketCloses() >= n.
func (l *ClientLog) WaitSocketCloses(ctx context.Context, n int) error {
	for {
		l.w.mu.Lock()
		ok, ch := l.w.n >= n, l.w.changed
		l.w.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
