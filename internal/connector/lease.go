package connector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Leases: a connector owns a session while it holds the session's key in
// the WA_LEASES bucket (docs/decisions/0002-reconnect-policy.md). This file
// takes, renews, fences and gives back leases; restore.go decides which
// sessions to take.

// lease is a session this connector owns.
type lease struct {
	sess       *session
	rev        uint64
	renewedAt  time.Time
	idleSince  time.Time
	inCommands int
}

// releaseAll stops every owned session in parallel, then deletes the
// leases so peers take over at once.
func (c *Connector) releaseAll(ctx context.Context, reason string) {
	c.mu.Lock()
	all := make(map[int64]*lease, len(c.owned))
	for m, l := range c.owned {
		all[m] = l
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for m, l := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.release(ctx, m, l, reason)
		}()
	}
	wg.Wait()
}

// release stops a session and deletes its lease (revision-checked: a lease
// that moved on is not touched).
func (c *Connector) release(ctx context.Context, m int64, l *lease, reason string) {
	l.sess.stop(ctx, reason)
	c.mu.Lock()
	rev := l.rev
	if c.owned[m] == l {
		delete(c.owned, m)
	}
	c.mu.Unlock()
	if err := c.kv.Delete(ctx, leaseKey(m), jetstream.LastRevision(rev)); err != nil {
		c.log.Warn().Err(err).Int64("mentorado", m).Msg("release lease")
	}
	c.metrics.leases.Set(float64(c.ownedCount()))
}

// drop stops a session whose lease is gone (or about to be), without
// touching the lease.
func (c *Connector) drop(m int64, l *lease, reason string) {
	c.mu.Lock()
	if c.owned[m] == l {
		delete(c.owned, m)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.leaseTTL/4)
	defer cancel()
	l.sess.stop(ctx, reason)
	c.metrics.leases.Set(float64(c.ownedCount()))
}

func (c *Connector) ownedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.owned)
}

func leaseKey(m int64) string { return fmt.Sprintf("%d", m) }

// ownedElsewhere is returned by claim when another connector holds the lease.
type ownedElsewhere struct{ owner string }

func (e *ownedElsewhere) Error() string { return "session owned by connector " + e.owner }

var errStopping = errors.New("connector: shutting down")

// claim takes the lease of m and starts its session (not connected yet).
// It returns the existing lease when this connector already owns m.
func (c *Connector) claim(ctx context.Context, m int64) (*lease, error) {
	c.claimMu.Lock()
	defer c.claimMu.Unlock()
	c.mu.Lock()
	if l := c.owned[m]; l != nil {
		c.mu.Unlock()
		return l, nil
	}
	if c.stopping {
		c.mu.Unlock()
		return nil, errStopping
	}
	c.mu.Unlock()
	rev, err := c.kv.Create(ctx, leaseKey(m), []byte(c.cfg.InstanceID))
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := c.kv.Get(ctx, leaseKey(m))
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			// Expired between the two calls; try once more.
			rev, err = c.kv.Create(ctx, leaseKey(m), []byte(c.cfg.InstanceID))
		case gerr != nil:
			return nil, fmt.Errorf("read lease %d: %w", m, gerr)
		case string(e.Value()) == c.cfg.InstanceID:
			// Our own lease from before a restart with the same id: adopt it.
			rev, err = c.kv.Update(ctx, leaseKey(m), []byte(c.cfg.InstanceID), e.Revision())
		default:
			return nil, &ownedElsewhere{owner: string(e.Value())}
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, &ownedElsewhere{owner: "?"}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("take lease %d: %w", m, err)
	}
	row, _, err := c.devices.get(ctx, m)
	if err != nil {
		_ = c.kv.Delete(context.WithoutCancel(ctx), leaseKey(m), jetstream.LastRevision(rev))
		return nil, err
	}
	l := &lease{sess: newSession(c.sessionDeps(), m, row), rev: rev, renewedAt: time.Now(), idleSince: time.Now()}
	c.mu.Lock()
	if c.stopping {
		c.mu.Unlock()
		l.sess.stop(ctx, "connector shutdown")
		_ = c.kv.Delete(context.WithoutCancel(ctx), leaseKey(m), jetstream.LastRevision(rev))
		return nil, errStopping
	}
	c.owned[m] = l
	c.mu.Unlock()
	l.sess.start(c.runCtx)
	c.metrics.leases.Set(float64(c.ownedCount()))
	c.log.Debug().Int64("mentorado", m).Msg("lease taken")
	return l, nil
}

// renewConcurrency bounds lease renewals in flight at once.
const renewConcurrency = 16

// renew extends one lease with a revision-checked update, and drops the
// session when the lease turned out to be someone else's.
func (c *Connector) renew(ctx context.Context, m int64, l *lease) {
	c.mu.Lock()
	rev := l.rev
	c.mu.Unlock()
	start := time.Now()
	nrev, err := c.kv.Update(ctx, leaseKey(m), []byte(c.cfg.InstanceID), rev)
	if err == nil {
		c.mu.Lock()
		l.rev, l.renewedAt = nrev, start
		c.mu.Unlock()
		return
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		// An earlier renewal may have been applied after its context timed
		// out (buffered while NATS reconnected). Only this connector writes
		// its own id, so a newer revision holding it is still ours.
		if e, gerr := c.kv.Get(ctx, leaseKey(m)); gerr == nil && string(e.Value()) == c.cfg.InstanceID && e.Revision() > rev {
			c.mu.Lock()
			l.rev = e.Revision()
			c.mu.Unlock()
			return
		}
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) {
		c.log.Warn().Int64("mentorado", m).Err(err).Msg("lease lost")
		go c.drop(m, l, "lease lost")
		return
	}
	c.log.Warn().Int64("mentorado", m).Err(err).Msg("renew lease")
}

// renewLoop refreshes every lease each TTL/3 and fences sessions whose
// lease could not be renewed for 2/3 of the TTL: they are disconnected
// before the lease can expire and be taken by a peer. A renewal that
// failed is tried again at the next tick (TTL/12), not a whole TTL/3
// later: a lease bucket whose leader died is back after an election of a
// few seconds, and one failed round must not fence every session
// (docs/decisions/0016-cluster-replicas-and-lease-ttl.md).
func (c *Connector) renewLoop(ctx context.Context) {
	tick := time.NewTicker(max(c.leaseTTL/12, 10*time.Millisecond))
	defer tick.Stop()
	renewEvery := c.leaseTTL / 3
	fenceAfter := c.leaseTTL * 2 / 3
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		c.mu.Lock()
		snapshot := make(map[int64]*lease, len(c.owned))
		for m, l := range c.owned {
			snapshot[m] = l
		}
		c.mu.Unlock()
		// Fencing first: it is in memory and must never wait on NATS.
		due := make(map[int64]*lease, len(snapshot))
		for m, l := range snapshot {
			c.mu.Lock()
			age := now.Sub(l.renewedAt)
			c.mu.Unlock()
			switch {
			case age > fenceAfter:
				c.log.Warn().Int64("mentorado", m).Dur("since_renew", age).Msg("lease not renewed in time; fencing session")
				c.metrics.fenced.Inc()
				delete(snapshot, m)
				go c.drop(m, l, "lease lost: could not renew")
			case age >= renewEvery:
				due[m] = l
			}
		}
		if len(due) == 0 {
			c.releaseIdle(ctx, snapshot)
			continue
		}
		// Renewals are independent KV round trips: run a bounded number at
		// once so a connector with thousands of sessions renews them all
		// well within the TTL.
		rctx, cancel := context.WithTimeout(ctx, renewEvery/2)
		var wg sync.WaitGroup
		sem := make(chan struct{}, renewConcurrency)
		for m, l := range due {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				c.renew(rctx, m, l)
			}()
		}
		wg.Wait()
		cancel()
		c.releaseIdle(ctx, snapshot)
	}
}

// releaseIdle gives back leases of sessions that have been idle for IdleRelease.
func (c *Connector) releaseIdle(ctx context.Context, snapshot map[int64]*lease) {
	now := time.Now()
	for m, l := range snapshot {
		c.mu.Lock()
		if !l.sess.idle() || l.inCommands > 0 {
			l.idleSince = now
			c.mu.Unlock()
			continue
		}
		idleFor := now.Sub(l.idleSince)
		c.mu.Unlock()
		if idleFor >= c.cfg.IdleRelease {
			c.log.Debug().Int64("mentorado", m).Msg("releasing idle session")
			rctx, cancel := context.WithTimeout(ctx, c.cfg.ShutdownTimeout)
			c.release(rctx, m, l, "idle")
			cancel()
		}
	}
}

// watchUpdates takes over the session of each lease deleted or expired,
// until ctx ends or the watcher's channel closes. It waits on ctx too: a
// watcher whose subscription was cut (NATS restarting) need not close its
// channel when ctx ends, and shutdown must not hang on it.
func (c *Connector) watchUpdates(ctx context.Context, updates <-chan jetstream.KeyValueEntry) {
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return
		case u, ok := <-updates:
			if !ok {
				return
			}
			e = u
		}
		if e == nil {
			continue
		}
		if e.Operation() != jetstream.KeyValueDelete && e.Operation() != jetstream.KeyValuePurge {
			continue
		}
		var m int64
		if _, err := fmt.Sscanf(e.Key(), "%d", &m); err != nil || m <= 0 {
			continue
		}
		go c.takeOver(ctx, m)
	}
}

// watchLoop takes over sessions whose lease was deleted or expired.
func (c *Connector) watchLoop(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := c.kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			c.log.Warn().Err(err).Msg("watch leases")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		c.watchUpdates(ctx, w.Updates())
		_ = w.Stop()
	}
}
