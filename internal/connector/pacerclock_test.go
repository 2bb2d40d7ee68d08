package connector_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/connector"
)

// pacerClock is the fake clock of the outbox workers' pacer
// (connector.WithSendingClock) and of the fake phones (wafake SetClock):
// a discrete-event clock. Time stands still while the code under test
// works; drive moves it to the next timer only once the code has set a
// timer and then stopped touching the clock for a while (it is waiting).
// The gaps the fake phones record are then the waits the pacer chose, not
// wall time.
type pacerClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*pacerTimer
	// lastOp is the wall time of the last call of Now, AfterFunc or Stop,
	// lastArmed whether it was an AfterFunc.
	lastOp    time.Time
	lastArmed bool
	advances  int
}

type pacerTimer struct {
	c       *pacerClock
	at      time.Time
	f       func()
	stopped bool
}

func newPacerClock() *pacerClock {
	return &pacerClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), lastOp: time.Now()}
}

var _ connector.Clock = (*pacerClock)(nil)

func (c *pacerClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastOp, c.lastArmed = time.Now(), false
	return c.now
}

// peek is Now for the test itself: it does not count as activity.
func (c *pacerClock) peek() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// steps is how many times the clock advanced (the driver may still be
// stepping it).
func (c *pacerClock) steps() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.advances
}

func (c *pacerClock) AfterFunc(d time.Duration, f func()) connector.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &pacerTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	c.lastOp, c.lastArmed = time.Now(), true
	return t
}

func (t *pacerTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	t.c.lastOp = time.Now()
	return was
}

// step advances to the earliest pending timer and fires every timer due
// then, if the code under test has been waiting for quiet (its last clock
// call an AfterFunc, or nothing at all for 10·quiet); false when it did
// not.
func (c *pacerClock) step(quiet time.Duration) bool {
	c.mu.Lock()
	idle := time.Since(c.lastOp)
	c.timers = slices.DeleteFunc(c.timers, func(t *pacerTimer) bool { return t.stopped })
	if len(c.timers) == 0 || idle < quiet || (!c.lastArmed && idle < 10*quiet) {
		c.mu.Unlock()
		return false
	}
	next := c.timers[0].at
	for _, t := range c.timers {
		if t.at.Before(next) {
			next = t.at
		}
	}
	if next.After(c.now) {
		c.now = next
	}
	var due []*pacerTimer
	for _, t := range c.timers {
		if !t.at.After(c.now) {
			t.stopped = true
			due = append(due, t)
		}
	}
	c.advances++
	c.lastOp, c.lastArmed = time.Now(), false
	c.mu.Unlock()
	for _, t := range due {
		go t.f()
	}
	return true
}

// drive steps the clock until ctx is done; the returned func stops it and
// waits.
func (c *pacerClock) drive(t testing.TB, quiet time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if !c.step(quiet) {
				time.Sleep(quiet / 4)
			}
		}
	}()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return stop
}
