package startup

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/testenv"
)

type permErr struct{}

func (permErr) Error() string   { return "server too old" }
func (permErr) Permanent() bool { return true }

func fast(log zerolog.Logger, st *Status) Waiter {
	return Waiter{Log: log, Min: time.Millisecond, Max: 4 * time.Millisecond, Status: st}
}

func TestWaitRetriesUntilUpAndLogsEachAttempt(t *testing.T) {
	var out testenv.Buffer
	log := zerolog.New(&out)
	st := NewStatus("postgres")
	var n atomic.Int32
	err := fast(log, st).Wait(context.Background(), "postgres", func(context.Context) error {
		if n.Add(1) < 4 {
			return errors.New("connection refused")
		}
		return nil
	})
	if err != nil || n.Load() != 4 {
		t.Fatalf("err %v after %d attempts", err, n.Load())
	}
	if got := strings.Count(out.String(), `"message":"postgres unavailable; retrying"`); got != 3 {
		t.Fatalf("%d retry log lines, want 3:\n%s", got, out.String())
	}
	if !strings.Contains(out.String(), `"attempt":3`) || !strings.Contains(out.String(), "connection refused") {
		t.Fatalf("log lacks attempt number or cause:\n%s", out.String())
	}
	if r := st.Reason(); r != "" {
		t.Fatalf("reason %q after success", r)
	}
}

func TestWaitStopsOnPermanentError(t *testing.T) {
	var n atomic.Int32
	err := fast(zerolog.Nop(), nil).Wait(context.Background(), "nats", func(context.Context) error {
		n.Add(1)
		return errors.Join(errors.New("bus: open"), permErr{})
	})
	if err == nil || !IsPermanent(err) || n.Load() != 1 || !strings.Contains(err.Error(), "nats") {
		t.Fatalf("err %v after %d attempts, want one permanent error naming nats", err, n.Load())
	}
}

func TestWaitTimeoutAndCancel(t *testing.T) {
	w := fast(zerolog.Nop(), nil)
	w.Timeout = 50 * time.Millisecond
	err := w.Wait(context.Background(), "postgres", func(context.Context) error { return errors.New("refused") })
	if err == nil || !strings.Contains(err.Error(), "still unreachable after 50ms") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("err %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = fast(zerolog.Nop(), nil).Wait(ctx, "postgres", func(context.Context) error { return errors.New("refused") })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want canceled", err)
	}
}

func TestBackoffIsCappedAndJittered(t *testing.T) {
	var delays []time.Duration
	last := time.Now()
	w := Waiter{Log: zerolog.Nop(), Min: 2 * time.Millisecond, Max: 8 * time.Millisecond, rand: func() float64 { return 1 }}
	n := 0
	_ = w.Wait(context.Background(), "x", func(context.Context) error {
		now := time.Now()
		if n > 0 {
			delays = append(delays, now.Sub(last))
		}
		last = now
		if n++; n < 7 {
			return errors.New("down")
		}
		return nil
	})
	// Sleeps are at least the jittered delay: 2.4, 4.8, 9.6, 9.6 … ms.
	want := []time.Duration{2400 * time.Microsecond, 4800 * time.Microsecond, 9600 * time.Microsecond, 9600 * time.Microsecond}
	for i, d := range want {
		if delays[i] < d {
			t.Fatalf("delay %d = %s, want at least %s (%v)", i, delays[i], d, delays)
		}
	}
}

func TestFrontServesStatusThenHandsOff(t *testing.T) {
	st := NewStatus("postgres", "nats")
	f, err := Listen("127.0.0.1:0", st, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + f.Addr().String()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	st.set("postgres", errors.New("dial tcp: connection refused"))
	code, body := get("/readyz")
	var e struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal([]byte(body), &e)
	if code != 503 || e.Error.Code != "unavailable" || !strings.Contains(e.Error.Message, "waiting for postgres: dial tcp: connection refused") ||
		!strings.Contains(e.Error.Message, "waiting for nats") {
		t.Fatalf("readyz %d %s", code, body)
	}

	ln := f.Handoff()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "real") })}
	go func() { _ = srv.Serve(ln) }()
	testenv.Eventually(t, 10*time.Second, func() bool {
		code, body := get("/readyz")
		return code == 200 && body == "real"
	}, "the real server never answered on the same address")
	_ = srv.Close()
	testenv.Eventually(t, 10*time.Second, func() bool { code, _ := get("/healthz"); return code == 0 }, "socket still open after the real server closed")
}
