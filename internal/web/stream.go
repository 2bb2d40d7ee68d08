package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
)

// frame is one event for a stream client. Seq is the WA_EVENTS stream
// sequence; 0 for QR frames, which are not stored history and carry no id.
type frame struct {
	Seq   uint64
	Event string // event type: connection, message, receipt, contact, media, group, history, lead, qr
	Data  []byte // the envelope JSON as stored
}

// feed is what one stream client receives, transport-agnostic: the live QR
// first, then what it missed since Last-Event-ID (replayed from WA_EVENTS),
// then live events, each stored event exactly once and in order.
//
// Live events arrive through the mentorado's shared subscriptions (see
// liveHub) into the feed's own queue, which push never blocks on: a client
// whose queue holds StreamBuffer frames is dropped, so it never stalls the
// others or the NATS connection. The queue grows only as frames wait (an
// idle client holds none), rather than reserving StreamBuffer slots per
// client up front.
type feed struct {
	s       *Server
	m       int64
	topic   *topic // the shared subscriptions, once joined
	dropped chan struct{}
	once    sync.Once
	reason  string

	mu    sync.Mutex
	queue []frame // live frames not yet taken by next: queue[head:]
	head  int
	full  bool          // dropped for falling behind: later frames are ignored
	wake  chan struct{} // capacity 1: a frame was queued since next last looked

	lastSeq uint64 // last stream sequence handed out
	lastQR  [32]byte
	pending []frame // frames before live: the QR, then replay batches

	cons      jetstream.Consumer // replay consumer; nil once caught up
	consName  string             // its name while it exists on the server
	replayEnd uint64             // last stream sequence when the replay began
	remaining uint64             // replay events not yet pulled
}

// idleQueueCap is the most queue capacity a client keeps once it has
// caught up: enough that a steady trickle of events reuses it, small enough
// that ten thousand idle dashboards hold almost nothing.
const idleQueueCap = 8

var errDropped = errors.New("stream client too slow")

// openFeed subscribes to live events of m, then gathers the initial frames:
// the current QR and the replay after lastEventID (0: no replay).
func (s *Server) openFeed(ctx context.Context, m int64, lastEventID uint64) (*feed, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	f := &feed{s: s, m: m, dropped: make(chan struct{}), wake: make(chan struct{}, 1)}
	// Joined before the stream state is read: the shared subscriptions
	// are active on the server, so anything stored after the replay ends
	// arrives live.
	if err := s.hub.join(ctx, f); err != nil {
		return nil, err
	}
	if raw, q, err := s.currentQR(ctx, m); err != nil {
		s.log.Warn().Err(err).Int64("mentorado", m).Msg("read current qr")
	} else if q != nil {
		f.lastQR = sha256.Sum256(raw)
		f.pending = append(f.pending, frame{Event: string(event.TypeQR), Data: raw})
	}
	if lastEventID > 0 {
		if err := f.replay(ctx, lastEventID); err != nil {
			f.close()
			return nil, err
		}
	}
	return f, nil
}

// replay prepares reading the events of m stored after seq from WA_EVENTS
// with an ephemeral pull consumer, up to the end of what is stored now.
// Batches of at most ReplayBatch events and ReplayMaxBytes are pulled by
// next only when the previous one was handed to the client, so a replay
// holds one small batch in memory however long the history and however slow
// the reader. The consumer is deleted as soon as the replay is done or the
// client goes away (InactiveThreshold is only the backstop for a crash).
func (f *feed) replay(ctx context.Context, after uint64) error {
	info, err := f.s.bus.StreamInfo(ctx, bus.StreamEvents)
	if err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	if after > info.State.LastSeq {
		// The id is from a stream that no longer exists (reset, or another
		// cluster): continue live rather than suppress new events with
		// smaller sequences.
		return nil
	}
	f.lastSeq = after
	if after == info.State.LastSeq {
		return nil
	}
	name := replayConsumerPrefix + nuid.Next()
	cons, err := f.s.bus.CreateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Name:              name,
		FilterSubject:     event.MentoradoEvents(f.m),
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       after + 1,
		AckPolicy:         jetstream.AckNonePolicy,
		MaxRequestBatch:   f.s.cfg.ReplayBatch,
		InactiveThreshold: replayInactiveThreshold,
		MemoryStorage:     true,
		Replicas:          1,
	})
	if err != nil {
		return fmt.Errorf("replay consumer: %w", err)
	}
	f.cons, f.consName, f.replayEnd = cons, name, info.State.LastSeq
	f.remaining = cons.CachedInfo().NumPending
	if f.remaining == 0 {
		f.endReplay()
	}
	return nil
}

// replayConsumerPrefix names the notifier's replay consumers on WA_EVENTS
// (NATS permissions can name them).
const replayConsumerPrefix = "notifier_replay_"

// replayInactiveThreshold is how long the server keeps a replay consumer
// nobody pulls from: the backstop when a notifier dies mid-replay.
const replayInactiveThreshold = time.Minute

// fetchReplay appends the next replay batch to pending; it ends the replay
// when the consumer has nothing more up to replayEnd.
func (f *feed) fetchReplay(ctx context.Context) error {
	n := uint64(f.s.cfg.ReplayBatch)
	if f.remaining > 0 && f.remaining < n {
		n = f.remaining // never wait for a batch that cannot fill
	}
	got, done, err := f.pull(ctx, int(n), f.s.cfg.ReplayMaxBytes)
	if errors.Is(err, jetstream.ErrMaxBytesExceeded) && got == 0 {
		// One event larger than ReplayMaxBytes: take it alone.
		got, done, err = f.pull(ctx, 1, 0)
	}
	if err != nil {
		return err
	}
	if got == 0 || done {
		f.endReplay()
	}
	return nil
}

func (f *feed) pull(ctx context.Context, n, maxBytes int) (got int, done bool, err error) {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	opts := []jetstream.FetchOpt{jetstream.FetchContext(fctx)}
	if maxBytes > 0 {
		opts = append(opts, jetstream.FetchMaxBytes(maxBytes))
	}
	batch, err := f.cons.Fetch(n, opts...)
	if err != nil {
		return 0, false, fmt.Errorf("replay fetch: %w", err)
	}
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			return got, false, fmt.Errorf("replay metadata: %w", err)
		}
		got++
		f.remaining = md.NumPending
		if md.NumPending == 0 || md.Sequence.Stream >= f.replayEnd {
			done = true
		}
		fr := frame{Seq: md.Sequence.Stream, Event: eventType(msg.Subject()), Data: msg.Data()}
		if historic(fr) {
			continue
		}
		f.pending = append(f.pending, fr)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		if errors.Is(err, jetstream.ErrMaxBytesExceeded) {
			return got, done, err
		}
		return got, done, fmt.Errorf("replay fetch: %w", err)
	}
	return got, done, nil
}

// endReplay deletes the replay consumer; what follows arrives live.
func (f *feed) endReplay() {
	f.cons = nil
	if f.consName == "" {
		return
	}
	name := f.consName
	f.consName = ""
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.s.bus.DeleteConsumer(ctx, bus.StreamEvents, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		f.s.log.Warn().Err(err).Int64("mentorado", f.m).Msg("delete replay consumer (the server removes it after a minute)")
	}
}

func eventType(subject string) string {
	return subject[strings.LastIndexByte(subject, '.')+1:]
}

// historic reports a message event imported from the phone's history
// sync. Streams leave them out: a sync after pairing is thousands of
// messages, which would flood a dashboard (and overflow its buffer); the
// history progress events stand for them, and the chats API has them.
func historic(fr frame) bool {
	if fr.Event != string(event.TypeMessage) || !bytes.Contains(fr.Data, []byte(`"history"`)) {
		return false
	}
	var env struct {
		Data struct {
			History json.RawMessage `json:"history"`
		} `json:"data"`
	}
	if err := json.Unmarshal(fr.Data, &env); err != nil {
		return false // the client sees what the stream holds
	}
	h := env.Data.History
	return len(h) > 0 && !bytes.Equal(h, []byte("null"))
}

// push never blocks: a client with StreamBuffer frames waiting is
// dropped.
func (f *feed) push(fr frame) {
	f.mu.Lock()
	if f.full {
		f.mu.Unlock()
		return
	}
	if len(f.queue)-f.head >= f.s.cfg.StreamBuffer {
		f.queue, f.head, f.full = nil, 0, true // the client is going away: free its backlog now
		f.mu.Unlock()
		f.drop("buffer_full")
		return
	}
	if len(f.queue) == cap(f.queue) && f.head > 0 {
		// Reuse the space of frames already taken before growing, so a
		// client that keeps a few frames waiting does not grow forever.
		n := copy(f.queue, f.queue[f.head:])
		clear(f.queue[n:])
		f.queue, f.head = f.queue[:n], 0
	}
	f.queue = append(f.queue, fr)
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default: // already signalled
	}
}

// pop takes the oldest queued live frame.
func (f *feed) pop() (frame, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.head == len(f.queue) {
		return frame{}, false
	}
	fr := f.queue[f.head]
	f.queue[f.head] = frame{} // the event's bytes go with the client's pace
	f.head++
	if f.head == len(f.queue) {
		f.head = 0
		if cap(f.queue) > idleQueueCap {
			f.queue = nil // caught up after a burst: give the burst's memory back
		} else {
			f.queue = f.queue[:0]
		}
	}
	return fr, true
}

// queued reports the live frames waiting and the queue's capacity.
func (f *feed) queued() (n, capacity int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue) - f.head, cap(f.queue)
}

func (f *feed) drop(reason string) {
	f.once.Do(func() {
		f.reason = reason
		close(f.dropped)
	})
}

// next returns the next frame to deliver, skipping stored events already
// delivered (by sequence) and repeated QR codes. It returns errDropped when
// the client fell behind, and stops at ctx end or server shutdown.
func (f *feed) next(ctx context.Context, heartbeat <-chan time.Time) (fr frame, beat bool, err error) {
	for {
		// A batch may leave nothing to deliver (history messages are left
		// out): pull on until something is pending or the replay ends.
		for len(f.pending) == 0 && f.cons != nil {
			if err := f.fetchReplay(ctx); err != nil {
				return frame{}, false, err
			}
		}
		if len(f.pending) > 0 {
			fr = f.pending[0]
			f.pending[0] = frame{} // the batch's memory goes with the client's pace
			f.pending = f.pending[1:]
			if fr.Seq != 0 {
				if fr.Seq <= f.lastSeq {
					continue
				}
				f.lastSeq = fr.Seq
			}
			return fr, false, nil
		}
		// A drop, the client leaving or shutdown win over queued frames.
		select {
		case <-f.dropped:
			return frame{}, false, errDropped
		case <-ctx.Done():
			return frame{}, false, ctx.Err()
		case <-f.s.streamsDone:
			return frame{}, false, errShutdown
		default:
		}
		var ok bool
		if fr, ok = f.pop(); !ok {
			select {
			case <-f.dropped:
				return frame{}, false, errDropped
			case <-ctx.Done():
				return frame{}, false, ctx.Err()
			case <-f.s.streamsDone:
				return frame{}, false, errShutdown
			case <-heartbeat:
				return frame{}, true, nil
			case <-f.wake:
			}
			continue
		}
		if fr.Seq == 0 {
			h := sha256.Sum256(fr.Data)
			if h == f.lastQR {
				continue
			}
			f.lastQR = h
			return fr, false, nil
		}
		if fr.Seq <= f.lastSeq {
			continue // already replayed
		}
		f.lastSeq = fr.Seq
		return fr, false, nil
	}
}

var errShutdown = errors.New("server shutting down")

// close ends the feed at once: it leaves the shared subscriptions and
// deletes its replay consumer.
func (f *feed) close() {
	if f.topic != nil {
		f.s.hub.leave(f.topic, f)
		f.topic = nil
	}
	f.endReplay()
}

// parseLastEventID reads the resume position: the Last-Event-ID header
// (set by EventSource on reconnect) or ?last_event_id= (for a fresh
// EventSource or websocket).
func parseLastEventID(h, q string) (uint64, error) {
	v := h
	if v == "" {
		v = q
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return 0, errorf(400, codeBadRequest, "Last-Event-ID must be a stream sequence number")
	}
	return n, nil
}
