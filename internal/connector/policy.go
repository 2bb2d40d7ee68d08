package connector

import (
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// Policy is the reconnect policy of every session
// (docs/decisions/0002-reconnect-policy.md). Zero values take defaults.
type Policy struct {
	// BaseDelay and MaxDelay bound the backoff: min(BaseDelay·2^n, MaxDelay)
	// for attempt n+1 (3 s, 6 s, 12 s, 24 s, 30 s, …).
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxAttempts is how many reconnects a session tries after a
	// disconnect before it gives up and reports disconnected.
	MaxAttempts int
	// Jitter spreads each delay uniformly over ±Jitter·delay. Negative
	// disables it (tests); zero takes the default 0.2.
	Jitter float64
	// DefaultBanWait is how long a temporary ban without an expiry is
	// waited out before reconnecting.
	DefaultBanWait time.Duration
	// KeepAliveMaxFail is how long keepalives may fail before the session
	// drops the socket and reconnects (whatsmeow's own 3 minutes).
	KeepAliveMaxFail time.Duration
}

// WithDefaults fills zero values.
func (p Policy) WithDefaults() Policy {
	if p.BaseDelay == 0 {
		p.BaseDelay = 3 * time.Second
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = 30 * time.Second
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = 10
	}
	if p.Jitter == 0 {
		p.Jitter = 0.2
	}
	if p.Jitter < 0 {
		p.Jitter = 0
	}
	if p.DefaultBanWait == 0 {
		p.DefaultBanWait = time.Hour
	}
	if p.KeepAliveMaxFail == 0 {
		p.KeepAliveMaxFail = 3 * time.Minute
	}
	return p
}

// Validate reports settings that cannot work.
func (p Policy) Validate() error {
	p = p.WithDefaults()
	switch {
	case p.BaseDelay < 0 || p.MaxDelay < p.BaseDelay:
		return errors.New("policy: need 0 <= base delay <= max delay")
	case p.MaxAttempts < 0:
		return errors.New("policy: negative max attempts")
	case p.Jitter >= 1:
		return errors.New("policy: jitter must be below 1")
	}
	return nil
}

// Backoff is the delay before reconnect attempt (1-based), before jitter.
func (p Policy) Backoff(attempt int) time.Duration {
	d := p.BaseDelay
	for i := 1; i < attempt && d < p.MaxDelay; i++ {
		d *= 2
	}
	return min(d, p.MaxDelay)
}

// Delay is Backoff with jitter drawn from r (a float in [0,1)).
func (p Policy) Delay(attempt int, r func() float64) time.Duration {
	d := p.Backoff(attempt)
	if p.Jitter == 0 || r == nil {
		return d
	}
	f := 1 + p.Jitter*(2*r()-1)
	return time.Duration(float64(d) * f)
}

// Clock is the time source of sessions, so tests drive reconnect delays
// with a fake clock instead of sleeping.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a stoppable pending call.
type Timer = interface{ Stop() bool }

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time { return time.Now() }

func (RealClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// lockedRand is a seeded source safe for concurrent use.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newLockedRand(seed uint64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (l *lockedRand) Float64() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Float64()
}
