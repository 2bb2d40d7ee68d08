package web

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/testenv"
)

func expect429(t *testing.T, res response, code string) {
	t.Helper()
	if res.Status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", res.Status, res.Body)
	}
	if got := res.errorCode(t); got != code {
		t.Fatalf("code %s, want %s", got, code)
	}
	if ra, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", res.Header.Get("Retry-After"))
	}
}

// The N+1th send of a burst is refused with 429 and Retry-After; other
// tokens have their own bucket.
func TestSendRateLimit(t *testing.T) {
	// A bucket that effectively never refills during the test.
	e := newEnv(t, func(c *Config) { c.SendRate, c.SendBurst = 0.001, 3 })
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	fc := e.fakeConnector(defaultAnswer)
	send := func(tok string) response {
		return e.do("POST", "/v1/messages", tok, map[string]string{"phone": "5511988887777", "text": "hi"})
	}
	for range 3 {
		e.expect(send(a.Token), 201)
	}
	expect429(t, send(a.Token), codeRateLimited)
	if n := len(fc.Subjects()); n != 3 {
		t.Fatalf("%d commands reached the connector, want 3", n)
	}
	e.expect(send(b.Token), 201)
	if v := e.s.metricValue("zapbus_http_rejected_total", "send_rate"); v != 1 {
		t.Fatalf("rejected metric %v", v)
	}
}

func TestStreamOpenRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.StreamOpenRate, c.StreamOpenBurst = 0.001, 2 })
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	e.openSSE(bearerAuth(a.Token), "")
	e.openSSE(bearerAuth(a.Token), "")
	expect429(t, e.getStream("/v1/events", a.Token), codeRateLimited)
	e.openSSE(bearerAuth(b.Token), "")
}

// Concurrent streams of one mentorado are capped; closing one frees a slot.
func TestStreamCapPerMentorado(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxStreamsPerMentorado, c.StreamOpenRate = 2, -1 })
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	c1 := e.openSSE(bearerAuth(a.Token), "")
	e.dialWS(a.Token, "")
	expect429(t, e.getStream("/v1/events", a.Token), codeTooManyStreams)
	expect429(t, e.getStream("/v1/events?ticket="+e.ticket(a.Token), ""), codeTooManyStreams)
	e.openSSE(bearerAuth(b.Token), "") // another tenant is not affected
	c1.res.Body.Close()
	<-c1.done
	testenv.Eventually(t, 10*time.Second, func() bool { return e.s.streams.count(a.ID) < 2 }, "closed stream released its slot")
	e.openSSE(bearerAuth(a.Token), "")
}

func consumerCount(t *testing.T, e *testEnv) int {
	t.Helper()
	info, err := e.bus.StreamInfo(t.Context(), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}

// A client that goes away in the middle of a replay leaves no consumer on
// WA_EVENTS and no goroutines behind.
func TestReplayCleanedUpWhenClientLeaves(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReplayBatch = 4 })
	a := e.createMentorado("Ana")
	first := e.publishMessage(a.ID, "m-0", "history")
	for i := 1; i < 100; i++ {
		e.publishMessage(a.ID, fmt.Sprintf("m-%d", i), "history")
	}
	baseConsumers := consumerCount(t, e)
	// Warm up connection pools and the like, then take the goroutine baseline.
	e.expect(e.do("GET", "/v1/whatsapp/status", a.Token, nil), 200)
	baseGoroutines := runtime.NumGoroutine()

	for range 3 {
		c := e.openSSE(bearerAuth(a.Token), strconv.FormatUint(first, 10))
		testenv.Eventually(t, 5*time.Second, func() bool { return len(c.Events()) >= 3 }, "replay started")
		c.res.Body.Close()
		<-c.done
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return consumerCount(t, e) == baseConsumers },
		"replay consumers deleted when the clients left")
	testenv.Eventually(t, 10*time.Second, func() bool { return runtime.NumGoroutine() <= baseGoroutines+2 },
		"goroutines back to the baseline")
}

// A replay of a long history pulls small batches with flow control: what
// sits in memory for one stream is bounded by ReplayBatch events and
// ReplayMaxBytes, and the server delivers no more than was pulled.
func TestReplayBufferBounded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ReplayBatch, c.ReplayMaxBytes = 8, 64<<10 })
	a := e.createMentorado("Ana")
	big := strings.Repeat("x", 20<<10) // 20 KiB each: at most 3 fit in 64 KiB
	first := e.publishMessage(a.ID, "h-0", big)
	const total = 60
	for i := 1; i < total; i++ {
		e.publishMessage(a.ID, fmt.Sprintf("h-%d", i), big)
	}
	f, err := e.s.openFeed(t.Context(), a.ID, first)
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// A slow reader: one event taken, then nothing.
	fr, _, err := f.next(ctx, nil)
	if err != nil || fr.Seq != first+1 {
		t.Fatalf("first replayed frame %d, %v", fr.Seq, err)
	}
	if len(f.pending) > 3 {
		t.Fatalf("%d events buffered for one stream, want at most 3 (64 KiB of 20 KiB events)", len(f.pending))
	}
	ci, err := e.bus.JS.Consumer(ctx, bus.StreamEvents, f.consName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ci.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer > 4 || info.NumPending < total-1-4 {
		t.Fatalf("server delivered %d and holds %d pending; want at most one batch delivered", info.Delivered.Consumer, info.NumPending)
	}
	if info.Config.AckPolicy != jetstream.AckNonePolicy || info.Config.MaxRequestBatch != 8 {
		t.Fatalf("replay consumer config %+v", info.Config)
	}
	// Reading on delivers the rest, in order, and then the consumer goes.
	got := []uint64{fr.Seq}
	for len(got) < total-1 {
		fr, _, err := f.next(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.pending) > 3 {
			t.Fatalf("%d events buffered", len(f.pending))
		}
		got = append(got, fr.Seq)
	}
	for i, s := range got {
		if s != first+1+uint64(i) {
			t.Fatalf("replayed sequences %v", got)
		}
	}
	if f.cons != nil || f.consName != "" {
		t.Fatal("replay consumer kept after the replay")
	}
	if n := consumerCount(t, e); n != 0 {
		t.Fatalf("%d consumers left on WA_EVENTS", n)
	}
}

// getStream opens a stream route expecting an error: a stream that opens
// instead fails the caller after the client timeout rather than hanging.
func (e *testEnv) getStream(path, token string) response {
	e.t.Helper()
	r, err := http.NewRequest("GET", e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return e.rawDo(r)
}
