// Package startup lets a zapbus process start before its dependencies are
// up: it retries each start-up step (open Postgres, open NATS) with capped,
// jittered backoff and one log line per attempt, and serves /healthz (ok)
// and /readyz (503 with what it is waiting for) from the first moment, so
// an orchestrator sees a live process that is not ready yet instead of a
// crash loop. When the steps succeed the process hands its listener to its
// real HTTP server (Front.Handoff).
//
// An error whose Permanent method returns true (errors.As) ends the wait at
// once: retrying cannot fix it (a malformed URL, a NATS server too old).
package startup

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/store"
)

// Default backoff between attempts: 1 s doubling to 30 s, each wait
// jittered by ±20 %.
const (
	DefaultMin = time.Second
	DefaultMax = 30 * time.Second
	// DefaultAttemptTimeout bounds one attempt, so a step that hangs (a
	// NATS connection buffering requests while the server is away) is
	// retried and logged rather than waited on silently.
	DefaultAttemptTimeout = 15 * time.Second
)

// Permanent is implemented by errors that retrying cannot fix.
type Permanent interface{ Permanent() bool }

// IsPermanent reports whether err (or an error it wraps) says it is permanent.
func IsPermanent(err error) bool {
	var p Permanent
	return errors.As(err, &p) && p.Permanent()
}

// Waiter retries start-up steps. The zero value (plus a logger) uses the
// defaults and waits as long as ctx lasts.
type Waiter struct {
	Log            zerolog.Logger
	Min, Max       time.Duration // backoff range (defaults DefaultMin, DefaultMax)
	AttemptTimeout time.Duration // bound of one attempt (default DefaultAttemptTimeout)
	// Timeout, when positive, gives up after this long in total (for
	// one-shot commands such as persister replay); 0 waits until ctx ends.
	Timeout time.Duration
	// Status, when set, records what is being waited for, for /readyz.
	Status *Status
	rand   func() float64
}

// Wait runs attempt until it succeeds, with the default backoff.
func Wait(ctx context.Context, log zerolog.Logger, what string, attempt func(context.Context) error) error {
	return Waiter{Log: log}.Wait(ctx, what, attempt)
}

// Wait runs attempt until it returns nil, returns a permanent error, ctx
// ends or w.Timeout passes. Each failure is logged with the attempt number
// and the next delay. The returned error names what was awaited.
func (w Waiter) Wait(ctx context.Context, what string, attempt func(context.Context) error) error {
	minD, maxD := w.Min, w.Max
	if minD <= 0 {
		minD = DefaultMin
	}
	if maxD < minD {
		maxD = max(DefaultMax, minD)
	}
	per := w.AttemptTimeout
	if per <= 0 {
		per = DefaultAttemptTimeout
	}
	jitter := w.rand
	if jitter == nil {
		jitter = rand.Float64
	}
	if w.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.Timeout)
		defer cancel()
	}
	started := time.Now()
	delay := minD
	for n := 1; ; n++ {
		if n == 1 {
			w.Status.set(what, errFirstAttempt)
		}
		actx, cancel := context.WithTimeout(ctx, per)
		err := attempt(actx)
		cancel()
		if err == nil {
			w.Status.done(what)
			if n > 1 {
				w.Log.Info().Str("waiting_for", what).Int("attempts", n).
					Dur("waited", time.Since(started).Round(time.Millisecond)).Msg(what + " is up")
			}
			return nil
		}
		if IsPermanent(err) {
			w.Status.set(what, err)
			return fmt.Errorf("%s: %w", what, err)
		}
		giveUp := func() error {
			if w.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s: still unreachable after %s (%d attempts): %w", what, w.Timeout, n, err)
			}
			return fmt.Errorf("%s: gave up waiting: %w", what, ctx.Err())
		}
		if ctx.Err() != nil {
			return giveUp()
		}
		w.Status.set(what, err)
		d := time.Duration(float64(delay) * (0.8 + 0.4*jitter()))
		w.Log.Warn().Err(err).Str("waiting_for", what).Int("attempt", n).Dur("retry_in", d.Round(time.Millisecond)).
			Msg(what + " unavailable; retrying")
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp()
		case <-t.C:
		}
		delay = min(delay*2, maxD)
	}
}

var errFirstAttempt = errors.New("first attempt under way")

// Interrupted is err, or nil when ctx ended: a wait (or run) cut short by
// the process's own shutdown is a clean exit, not a failure.
func Interrupted(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}

// OpenServices waits for Postgres and then NATS, as every zapbus service
// does at start: store.Open, then bus.Open as name with cfg, each retried
// by w. On error nothing stays open.
func (w Waiter) OpenServices(ctx context.Context, databaseURL, natsURL, name string, cfg bus.Config) (*store.DB, *bus.Bus, error) {
	var db *store.DB
	err := w.Wait(ctx, "postgres", func(ctx context.Context) (err error) {
		db, err = store.Open(ctx, databaseURL)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	var b *bus.Bus
	err = w.Wait(ctx, "nats", func(ctx context.Context) (err error) {
		b, err = bus.Open(ctx, natsURL, name, cfg, w.Log)
		return err
	})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, b, nil
}

// Status is what a starting process is waiting for, for /readyz.
type Status struct {
	mu      sync.Mutex
	waiting map[string]error
	order   []string
}

// NewStatus returns a status waiting for the named steps, in order, before
// any attempt ran.
func NewStatus(steps ...string) *Status {
	s := &Status{waiting: map[string]error{}}
	for _, st := range steps {
		s.order = append(s.order, st)
		s.waiting[st] = errors.New("not tried yet")
	}
	return s
}

func (s *Status) set(what string, err error) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting == nil {
		s.waiting = map[string]error{}
	}
	if _, ok := s.waiting[what]; !ok {
		s.order = append(s.order, what)
	}
	s.waiting[what] = err
}

func (s *Status) done(what string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.waiting, what)
}

// Reason says what is still awaited and why ("" when nothing is).
func (s *Status) Reason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, what := range s.order {
		if err, ok := s.waiting[what]; ok {
			parts = append(parts, "waiting for "+what+": "+err.Error())
		}
	}
	return strings.Join(parts, "; ")
}
