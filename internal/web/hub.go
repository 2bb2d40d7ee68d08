package web

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
)

// liveHub shares live subscriptions among the stream clients of one
// mentorado on this notifier: one subscription to live.wa.<m>.evt.> and
// one to wa.<m>.qr per mentorado with clients, however many clients it
// has, instead of two per client. Each nats.go subscription runs its own
// goroutine and holds its own pending queue, and the server sends each
// message once per subscription; with ten dashboards on a mentorado that
// was ten copies of every event and twenty goroutines. Now a message
// arrives once, is parsed once (sequence, history filter), and is pushed
// to every client's own queue, which never blocks (see feed.push): a slow
// client is dropped without delaying the others.
//
// The subscriptions exist while the mentorado has at least one client;
// the last client to leave removes them.
type liveHub struct {
	s      *Server
	mu     sync.Mutex
	topics map[int64]*topic
}

// topic is one mentorado's pair of subscriptions and its clients.
type topic struct {
	m     int64
	ready chan struct{} // closed once subscribed; err says whether it worked
	err   error
	subs  []*nats.Subscription
	// feeds is replaced, never changed in place, under liveHub.mu, so the
	// subscription goroutines dispatch without taking a lock.
	feeds atomic.Pointer[[]*feed]
}

func newLiveHub(s *Server) *liveHub { return &liveHub{s: s, topics: map[int64]*topic{}} }

// join adds f to its mentorado's topic, subscribing first if f is the
// mentorado's first client. When join returns nil the subscriptions are
// active on the server (flushed), so anything the stream stores from now
// on reaches f.
func (h *liveHub) join(ctx context.Context, f *feed) error {
	h.mu.Lock()
	t := h.topics[f.m]
	first := t == nil
	if first {
		t = &topic{m: f.m, ready: make(chan struct{})}
		h.topics[f.m] = t
	}
	t.setFeeds(appendFeed(t.feeds.Load(), f))
	h.mu.Unlock()
	if first {
		// Not the client's context: the subscriptions serve every client
		// that joins meanwhile, and one leaving must not fail the others.
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.err = h.subscribe(sctx, t)
		cancel()
		if t.err != nil {
			h.mu.Lock()
			if h.topics[f.m] == t {
				delete(h.topics, f.m) // the next client tries afresh
			}
			h.mu.Unlock()
		}
		close(t.ready)
	}
	select {
	case <-t.ready:
	case <-ctx.Done():
		h.leave(t, f)
		return ctx.Err()
	}
	if t.err != nil {
		h.leave(t, f)
		return t.err
	}
	f.topic = t
	return nil
}

func (h *liveHub) subscribe(ctx context.Context, t *topic) error {
	live, err := h.s.bus.Subscribe(bus.LivePrefix+event.MentoradoEvents(t.m), t.onLive(h.s))
	if err != nil {
		return fmt.Errorf("subscribe live events: %w", err)
	}
	qr, err := h.s.bus.Subscribe(event.QRSubject(t.m), t.onQR(h.s))
	if err != nil {
		_ = live.Unsubscribe()
		return fmt.Errorf("subscribe qr: %w", err)
	}
	// Active on the server before anyone reads the stream state, so
	// anything stored after a client's replay ends arrives live.
	if err := h.s.bus.Flush(ctx); err != nil {
		_ = live.Unsubscribe()
		_ = qr.Unsubscribe()
		return fmt.Errorf("flush subscriptions: %w", err)
	}
	t.subs = []*nats.Subscription{live, qr}
	return nil
}

// leave removes f from t; the last client out unsubscribes.
func (h *liveHub) leave(t *topic, f *feed) {
	h.mu.Lock()
	rest := removeFeed(t.feeds.Load(), f)
	t.setFeeds(rest)
	empty := len(rest) == 0
	if empty && h.topics[t.m] == t {
		delete(h.topics, t.m)
	}
	h.mu.Unlock()
	if empty {
		// Only reached after t.ready closed: the first client, which
		// subscribes, stays in feeds until then.
		for _, sub := range t.subs {
			_ = sub.Unsubscribe()
		}
	}
}

// subscriptions returns how many mentorados have live subscriptions.
func (h *liveHub) subscriptions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.topics)
}

func (t *topic) setFeeds(fs []*feed) { t.feeds.Store(&fs) }

func appendFeed(cur *[]*feed, f *feed) []*feed {
	var old []*feed
	if cur != nil {
		old = *cur
	}
	out := make([]*feed, 0, len(old)+1)
	return append(append(out, old...), f)
}

func removeFeed(cur *[]*feed, f *feed) []*feed {
	if cur == nil {
		return nil
	}
	out := make([]*feed, 0, len(*cur))
	for _, g := range *cur {
		if g != f {
			out = append(out, g)
		}
	}
	return out
}

func (t *topic) each(fn func(*feed)) {
	if fs := t.feeds.Load(); fs != nil {
		for _, f := range *fs {
			fn(f)
		}
	}
}

func (t *topic) onLive(s *Server) nats.MsgHandler {
	return func(msg *nats.Msg) {
		seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || seq == 0 {
			s.log.Warn().Str("subject", msg.Subject).Msg("live event without sequence header ignored")
			return
		}
		fr := frame{Seq: seq, Event: eventType(msg.Subject), Data: msg.Data}
		if historic(fr) {
			return
		}
		t.each(func(f *feed) { f.push(fr) })
	}
}

func (t *topic) onQR(s *Server) nats.MsgHandler {
	return func(msg *nats.Msg) {
		// Only the connector's own publishes: a JetStream delivery (reply
		// $JS.ACK.…) is stored data someone pushed onto this subject
		// (docs/decisions/0005-nats-least-privilege.md).
		if strings.HasPrefix(msg.Reply, "$JS.") {
			s.log.Warn().Int64("mentorado", t.m).Msg("qr delivered by a JetStream consumer ignored")
			return
		}
		fr := frame{Event: string(event.TypeQR), Data: msg.Data}
		t.each(func(f *feed) { f.push(fr) })
	}
}
