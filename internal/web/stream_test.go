package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/zapbus/zapbus/internal/testenv"
)

func seqs(evs []sseEvent, typ string) []string {
	var out []string
	for _, e := range evs {
		if e.Event == typ {
			out = append(out, e.ID)
		}
	}
	return out
}

func TestSSELiveResumeAndQR(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")

	c1 := e.openSSE(bearerAuth(a.Token), "")
	var want []string
	for i := range 3 {
		seq := e.publishMessage(a.ID, fmt.Sprintf("live-%d", i), "hello")
		want = append(want, strconv.FormatUint(seq, 10))
		e.publishMessage(b.ID, fmt.Sprintf("b-live-%d", i), "secret of B") // interleaved other tenant
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return len(c1.Events()) >= 3 }, "3 live events")
	evs := c1.Events()
	if got := seqs(evs, "message"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("live ids %v, want stream sequences %v", got, want)
	}
	for _, ev := range evs {
		if strings.Contains(ev.Data, "secret of B") {
			t.Fatal("A's stream carried B's event")
		}
		var env struct {
			MentoradoID int64 `json:"mentorado_id"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &env); err != nil || env.MentoradoID != a.ID {
			t.Fatalf("event data %q", ev.Data)
		}
	}
	c1.res.Body.Close()
	<-c1.done

	// Missed while away: 4 events of A (and more of B).
	var missed []string
	for i := range 4 {
		missed = append(missed, strconv.FormatUint(e.publishMessage(a.ID, fmt.Sprintf("missed-%d", i), "while away"), 10))
		e.publishMessage(b.ID, fmt.Sprintf("b-missed-%d", i), "secret of B")
	}
	// A live QR is sent first, without an id.
	e.publishQR(a.ID, "2@qr-code-one", time.Now().Add(time.Minute))

	c2 := e.openSSE(bearerAuth(a.Token), want[len(want)-1])
	testenv.Eventually(t, 5*time.Second, func() bool { return len(c2.Events()) >= 5 }, "qr + replay")
	// Then live again, with no gap and no duplicate.
	after := strconv.FormatUint(e.publishMessage(a.ID, "after-resume", "back"), 10)
	// The same event published again is dropped by the stream.
	e.publishMessage(a.ID, "after-resume", "back")
	testenv.Eventually(t, 5*time.Second, func() bool { return len(c2.Events()) >= 6 }, "live after replay")
	evs = c2.Events()
	if evs[0].Event != "qr" || evs[0].ID != "" || !strings.Contains(evs[0].Data, "2@qr-code-one") {
		t.Fatalf("first event %+v, want the live qr", evs[0])
	}
	got := seqs(evs, "message")
	wantIDs := append(append([]string{}, missed...), after)
	if strings.Join(got, ",") != strings.Join(wantIDs, ",") {
		t.Fatalf("resume ids %v, want exactly %v", got, wantIDs)
	}

	// A new QR code arrives live.
	e.publishQR(a.ID, "2@qr-code-two", time.Now().Add(time.Minute))
	testenv.Eventually(t, 5*time.Second, func() bool {
		evs := c2.Events()
		return evs[len(evs)-1].Event == "qr" && strings.Contains(evs[len(evs)-1].Data, "qr-code-two")
	}, "rotated qr")
	// B's QR never reaches A.
	e.publishQR(b.ID, "2@qr-of-b", time.Now().Add(time.Minute))
	e.publishMessage(a.ID, "marker", "marker")
	testenv.Eventually(t, 5*time.Second, func() bool {
		evs := c2.Events()
		return strings.Contains(evs[len(evs)-1].Data, "marker")
	}, "marker")
	for _, ev := range c2.Events() {
		if strings.Contains(ev.Data, "qr-of-b") || strings.Contains(ev.Data, "secret of B") {
			t.Fatal("A's stream carried B's data")
		}
	}

	// Resuming from the newest id replays nothing.
	last := seqs(c2.Events(), "message")
	c3 := e.openSSE(bearerAuth(a.Token), last[len(last)-1])
	next := strconv.FormatUint(e.publishMessage(a.ID, "next", "n"), 10)
	testenv.Eventually(t, 5*time.Second, func() bool { return len(seqs(c3.Events(), "message")) >= 1 }, "next")
	if got := seqs(c3.Events(), "message"); len(got) != 1 || got[0] != next {
		t.Fatalf("resume at head got %v want [%s]", got, next)
	}
}

func TestSSEBadLastEventID(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+a.Token)
	req.Header.Set("Last-Event-ID", "abc")
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 400 {
		t.Fatalf("status %d", res.StatusCode)
	}
}

func TestSSEHeartbeat(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Heartbeat = 50 * time.Millisecond })
	a := e.createMentorado("Ana")
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+a.Token)
	res, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	sc := bufio.NewScanner(res.Body)
	pings := 0
	for pings < 2 && sc.Scan() {
		if sc.Text() == ": ping" {
			pings++
		}
	}
	if pings < 2 {
		t.Fatalf("stream ended before 2 heartbeats: %v", sc.Err())
	}
}

func TestStreamTickets(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	var tr ticketResponse
	e.expect(e.do("POST", "/v1/stream-tickets", a.Token, nil), 201).json(t, &tr)
	if tr.Ticket == "" || !tr.ExpiresAt.After(time.Now()) {
		t.Fatalf("ticket %+v", tr)
	}
	// A ticket opens a stream but is no API token.
	c := e.openSSE(func(r *http.Request) { r.URL.RawQuery = "ticket=" + tr.Ticket }, "")
	seq := e.publishMessage(a.ID, "t1", "x")
	testenv.Eventually(t, 5*time.Second, func() bool { return len(c.Events()) == 1 }, "event via ticket")
	if c.Events()[0].ID != strconv.FormatUint(seq, 10) {
		t.Fatal(c.Events())
	}
	e.expect(e.do("GET", "/v1/whatsapp/status", tr.Ticket, nil), 401)

	status := func(q string) int {
		res, err := e.srv.Client().Get(e.srv.URL + "/v1/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if s := status("token=" + a.Token); s != 401 {
		t.Fatalf("?token= accepted: %d", s)
	}
	if s := status("ticket=" + tr.Ticket[:len(tr.Ticket)-2] + "AA"); s != 401 {
		t.Fatalf("tampered ticket: %d", s)
	}
	if s := status("ticket=garbage"); s != 401 {
		t.Fatalf("garbage ticket: %d", s)
	}
	// Rotating the token kills outstanding tickets.
	e.expect(e.do("POST", fmt.Sprintf("/v1/admin/mentorados/%d/tokens", a.ID), testAdminToken, nil), 201)
	if s := status("ticket=" + tr.Ticket); s != 401 {
		t.Fatalf("ticket survived rotation: %d", s)
	}
	// Expired tickets are refused.
	old, _, err := e.s.issueTicket(t.Context(), a.ID, time.Now().Add(-2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if s := status("ticket=" + old); s != 401 {
		t.Fatalf("expired ticket: %d", s)
	}
}

func TestSlowSSEClientDropped(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.StreamBuffer = 4
		c.StreamWriteTimeout = 500 * time.Millisecond
	})
	a := e.createMentorado("Ana")

	// The slow client opens the stream and never reads.
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+a.Token)
	slow, err := e.srv.Client().Do(req)
	if err != nil || slow.StatusCode != 200 {
		t.Fatalf("open slow: %v", err)
	}
	defer slow.Body.Close()
	fast := e.openSSE(bearerAuth(a.Token), "")
	testenv.Eventually(t, 5*time.Second, func() bool { return e.s.metricValue("zapbus_stream_clients", "sse") == 2 }, "two clients")

	big := strings.Repeat("x", 60_000)
	sent := 0
	for e.s.metricValue("zapbus_stream_dropped_total", "sse") == 0 {
		if sent == 2000 {
			t.Fatal("slow client never dropped")
		}
		e.publishMessage(a.ID, fmt.Sprintf("big-%d", sent), big)
		sent++
		n := sent
		// The fast client keeps up with every event.
		testenv.Eventually(t, 10*time.Second, func() bool { return len(fast.Events()) == n }, "fast client got event %d", n)
	}
	// And keeps receiving after the drop.
	e.publishMessage(a.ID, "after-drop", "still here")
	testenv.Eventually(t, 10*time.Second, func() bool {
		evs := fast.Events()
		return strings.Contains(evs[len(evs)-1].Data, "still here")
	}, "fast client after drop")
	// The slow client's stream ends: reading what was buffered reaches EOF.
	if _, err := io.Copy(io.Discard, slow.Body); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Logf("slow client read: %v", err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return e.s.metricValue("zapbus_stream_clients", "sse") == 1 }, "one client left")
	t.Logf("slow client dropped after %d events of 60 kB", sent)
}

func TestWebsocket(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Heartbeat = 100 * time.Millisecond })
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	e.publishQR(a.ID, "2@ws-qr", time.Now().Add(time.Minute))
	first := e.publishMessage(a.ID, "w1", "one")
	e.publishMessage(b.ID, "wb", "secret of B")
	second := e.publishMessage(a.ID, "w2", "two")

	var tr ticketResponse
	e.expect(e.do("POST", "/v1/stream-tickets", a.Token, nil), 201).json(t, &tr)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/v1/ws?ticket=" + tr.Ticket + "&last_event_id=" + strconv.FormatUint(first, 10)
	var pings atomic.Int32
	c, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
		pings.Add(1)
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	read := func() wsFrame {
		t.Helper()
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var f wsFrame
		if err := json.Unmarshal(b, &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := read(); f.Event != "qr" || f.ID != 0 || !strings.Contains(string(f.Data), "ws-qr") {
		t.Fatalf("first frame %+v", f)
	}
	if f := read(); f.Event != "message" || f.ID != second {
		t.Fatalf("replayed frame %+v, want id %d", f, second)
	}
	third := e.publishMessage(a.ID, "w3", "three")
	e.publishMessage(b.ID, "wb2", "secret of B")
	if f := read(); f.ID != third || strings.Contains(string(f.Data), "secret of B") {
		t.Fatalf("live frame %+v, want id %d", f, third)
	}
	// The server pings while idle (answered by the reader).
	go func() {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}()
	testenv.Eventually(t, 5*time.Second, func() bool { return pings.Load() >= 2 }, "server pings")
	_ = c.Close(websocket.StatusNormalClosure, "")

	// The Authorization header works too; no credentials do not.
	h := http.Header{"Authorization": {"Bearer " + a.Token}}
	c2, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/v1/ws", &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		t.Fatal(err)
	}
	c2.CloseNow()
	_, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/v1/ws", nil)
	if err == nil || res == nil || res.StatusCode != 401 {
		t.Fatalf("unauthenticated ws: %v %v", err, res)
	}
}

func TestSlowWebsocketClientDropped(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.StreamBuffer = 4
		c.StreamWriteTimeout = 500 * time.Millisecond
	})
	a := e.createMentorado("Ana")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	h := &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + a.Token}}}
	slow, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/v1/ws", h)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	testenv.Eventually(t, 5*time.Second, func() bool { return e.s.metricValue("zapbus_stream_clients", "ws") == 1 }, "ws client")
	big := strings.Repeat("y", 60_000)
	for i := 0; e.s.metricValue("zapbus_stream_dropped_total", "ws") == 0; i++ {
		if i == 2000 {
			t.Fatal("slow ws client never dropped")
		}
		e.publishMessage(a.ID, fmt.Sprintf("wbig-%d", i), big)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return e.s.metricValue("zapbus_stream_clients", "ws") == 0 }, "ws client gone")
}

// TestSSELongReplay resumes across several replay batches while the other
// tenant keeps publishing, and checks order, completeness and no duplicates.
func TestSSELongReplay(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	first := e.publishMessage(a.ID, "r-0", "x")
	var want []string
	for i := 1; i < 600; i++ {
		want = append(want, strconv.FormatUint(e.publishMessage(a.ID, fmt.Sprintf("r-%d", i), "x"), 10))
		if i%3 == 0 {
			e.publishMessage(b.ID, fmt.Sprintf("rb-%d", i), "x")
		}
	}
	c := e.openSSE(bearerAuth(a.Token), strconv.FormatUint(first, 10))
	last := strconv.FormatUint(e.publishMessage(a.ID, "r-live", "x"), 10)
	want = append(want, last)
	testenv.Eventually(t, 20*time.Second, func() bool { return len(c.Events()) >= len(want) }, "long replay")
	if got := seqs(c.Events(), "message"); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("replayed %d events, want %d in order", len(got), len(want))
	}
}

// TestStreamsShareSubscriptions: a mentorado's streams on one notifier
// share one pair of NATS subscriptions, every stream still gets every
// event, and the last stream to close removes them.
func TestStreamsShareSubscriptions(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	base := e.bus.NC.NumSubscriptions()
	open := func(m int64) *feed {
		t.Helper()
		f, err := e.s.openFeed(t.Context(), m, 0)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	as := []*feed{open(a.ID), open(a.ID), open(a.ID)}
	fb := open(b.ID)
	if got := e.bus.NC.NumSubscriptions() - base; got != 4 {
		t.Fatalf("%d subscriptions for 3 streams of one mentorado and 1 of another, want 4 (2 each)", got)
	}
	if got := e.s.hub.subscriptions(); got != 2 {
		t.Fatalf("hub has %d mentorados, want 2", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	seq := e.publishMessage(a.ID, "shared-1", "one")
	e.publishQR(a.ID, "2@shared-qr", time.Now().Add(time.Minute))
	other := e.publishMessage(b.ID, "shared-b", "two")
	for i, f := range as {
		fr, _, err := f.next(ctx, nil)
		if err != nil || fr.Seq != seq {
			t.Fatalf("stream %d: frame %d (%v), want %d", i, fr.Seq, err, seq)
		}
		fr, _, err = f.next(ctx, nil)
		if err != nil || fr.Event != "qr" || !strings.Contains(string(fr.Data), "shared-qr") {
			t.Fatalf("stream %d: frame %+v (%v), want the qr", i, fr, err)
		}
	}
	if fr, _, err := fb.next(ctx, nil); err != nil || fr.Seq != other {
		t.Fatalf("other mentorado: frame %d (%v), want %d", fr.Seq, err, other)
	}
	// Streams leave one by one; the subscriptions stay until the last.
	as[0].close()
	as[1].close()
	if got := e.bus.NC.NumSubscriptions() - base; got != 4 {
		t.Fatalf("%d subscriptions with one stream of each mentorado left, want 4", got)
	}
	seq = e.publishMessage(a.ID, "shared-2", "three")
	if fr, _, err := as[2].next(ctx, nil); err != nil || fr.Seq != seq {
		t.Fatalf("remaining stream: frame %d (%v), want %d", fr.Seq, err, seq)
	}
	as[2].close()
	fb.close()
	if got := e.bus.NC.NumSubscriptions() - base; got != 0 {
		t.Fatalf("%d subscriptions left after every stream closed", got)
	}
	if got := e.s.hub.subscriptions(); got != 0 {
		t.Fatalf("hub still has %d mentorados", got)
	}
	// A new stream subscribes afresh.
	f := open(a.ID)
	defer f.close()
	if fr, _, err := f.next(ctx, nil); err != nil || fr.Event != "qr" {
		t.Fatalf("new stream: first frame %+v (%v), want the current qr", fr, err)
	}
	seq = e.publishMessage(a.ID, "shared-3", "four")
	if fr, _, err := f.next(ctx, nil); err != nil || fr.Seq != seq {
		t.Fatalf("stream after resubscribe: frame %d (%v), want %d", fr.Seq, err, seq)
	}
}

// TestFeedQueueGrowsOnDemand: a stream's live queue costs nothing while
// idle, grows to StreamBuffer frames in order, gives a burst's memory back
// once drained, stays bounded for a client that always lags a little, and
// drops the client past StreamBuffer.
func TestFeedQueueGrowsOnDemand(t *testing.T) {
	s := &Server{cfg: Config{StreamBuffer: 300}}
	f := &feed{s: s, dropped: make(chan struct{}), wake: make(chan struct{}, 1)}
	if n, c := f.queued(); n != 0 || c != 0 {
		t.Fatalf("new feed queue: %d frames, capacity %d; want nothing allocated", n, c)
	}
	for i := 1; i <= 300; i++ {
		f.push(frame{Seq: uint64(i)})
	}
	if dropped(f) {
		t.Fatal("dropped at exactly StreamBuffer frames")
	}
	for i := 1; i <= 300; i++ {
		fr, ok := f.pop()
		if !ok || fr.Seq != uint64(i) {
			t.Fatalf("pop %d: %d %v", i, fr.Seq, ok)
		}
	}
	if _, ok := f.pop(); ok {
		t.Fatal("pop from an empty queue")
	}
	if n, c := f.queued(); n != 0 || c != 0 {
		t.Fatalf("drained queue keeps capacity %d (%d frames)", c, n)
	}
	// A client that always has a few frames waiting reuses its queue.
	next := uint64(1)
	for i := 1; i <= 10_000; i++ {
		f.push(frame{Seq: uint64(i)})
		if i <= 3 {
			continue
		}
		fr, ok := f.pop()
		if !ok || fr.Seq != next {
			t.Fatalf("lagging pop: %d %v, want %d", fr.Seq, ok, next)
		}
		next++
		if _, c := f.queued(); c > 2*idleQueueCap {
			t.Fatalf("queue capacity %d with 3 frames waiting", c)
		}
	}
	// One that stops reading is dropped at the first frame past the buffer.
	for n, _ := f.queued(); n < s.cfg.StreamBuffer; n, _ = f.queued() {
		f.push(frame{Seq: 1})
	}
	if dropped(f) {
		t.Fatal("dropped with StreamBuffer frames waiting")
	}
	f.push(frame{Seq: 1})
	if !dropped(f) {
		t.Fatal("not dropped past StreamBuffer")
	}
	if n, c := f.queued(); n != 0 || c != 0 {
		t.Fatalf("dropped client keeps %d frames, capacity %d", n, c)
	}
	if f.reason != "buffer_full" {
		t.Fatalf("drop reason %q", f.reason)
	}
}

func dropped(f *feed) bool {
	select {
	case <-f.dropped:
		return true
	default:
		return false
	}
}
