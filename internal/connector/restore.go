package connector

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/event"
)

// Restore: which sessions this connector takes without a command. At
// start-up and every ScanInterval it claims sessions that should be
// connected and have no lease; when a peer's lease is deleted or expires
// (watchLoop) it takes the session over.
//
// Pacing: each session's restore starts at its own random moment within
// RestoreJitter of the scan, and at most RestoreConcurrency logins are in
// flight: a slot is held until the session's login is over (connected, or
// settled in another state, or ConnectTimeout), not only while it is
// claimed. Restores used to sleep their jitter inside the slot and let go
// of it as soon as the session was claimed, which capped a restart at
// RestoreConcurrency / (RestoreJitter / 2) sessions per second (8/s with
// the defaults: two minutes for a thousand sessions however fast logins
// were) while not bounding the logins actually in flight.

// claimAndRestore takes m when nobody owns it and connects it when its
// desired state is connected. It returns the session when it claimed it.
// A mentorado whose active provider is meta or zapi (issue #16) is not
// restored: the provider gateways serve it, and its whatsmeow session
// stays down even when it was not told to disconnect.
func (c *Connector) claimAndRestore(ctx context.Context, m int64) (*session, error) {
	switch p, err := c.db.Providers().Active(ctx, m); {
	case err != nil:
		return nil, err
	case p == event.ProviderMeta || p == event.ProviderZAPI:
		return nil, nil
	}
	l, err := c.claim(ctx, m)
	if err != nil {
		var oe *ownedElsewhere
		if errors.As(err, &oe) || errors.Is(err, errStopping) {
			return nil, nil
		}
		return nil, err
	}
	l.sess.post(l.sess.restore)
	return l.sess, nil
}

// restorePoll is how often a restore slot looks at its session's status.
const restorePoll = 5 * time.Millisecond

// restoreStartWait bounds how long a slot waits for a restore that
// changes nothing (the session had nothing to connect).
const restoreStartWait = 5 * time.Second

// awaitLogin returns once s's login is over: connected; or in another
// state after connecting, or changed straight to one (backoff after a
// client error, logged out, banned: the reconnect policy takes it from
// there); or after ConnectTimeout; or when nothing changed within
// restoreStartWait. It looks at statuses, not snapshots: a snapshot is
// also published without a status change (a new client).
func (c *Connector) awaitLogin(ctx context.Context, s *session) {
	var initial event.Status
	if snap := s.snapshot(); snap != nil {
		initial = snap.reply.Status
	}
	begin := time.Now()
	t := time.NewTicker(restorePoll)
	defer t.Stop()
	connecting := false
	for {
		st := initial
		if snap := s.snapshot(); snap != nil {
			st = snap.reply.Status
		}
		switch {
		case st == event.StatusConnected:
			return
		case st == event.StatusConnecting:
			connecting = true
		case connecting, st != initial:
			return
		}
		waited := time.Since(begin)
		if waited > c.cfg.ConnectTimeout || (!connecting && waited > restoreStartWait) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// takeOver claims m when it should be connected.
func (c *Connector) takeOver(ctx context.Context, m int64) {
	row, found, err := c.devices.get(ctx, m)
	if err != nil || !found || row.Desired != desiredConnected || row.JID.IsEmpty() {
		return
	}
	if sess, err := c.claimAndRestore(ctx, m); err != nil {
		c.log.Warn().Err(err).Int64("mentorado", m).Msg("take over session")
	} else if sess != nil {
		c.metrics.takeovers.Inc()
		c.log.Info().Int64("mentorado", m).Msg("took over session")
	}
}

// scanLoop restores at start-up and then periodically claims sessions that
// should be connected but have no lease (a dead connector's, after expiry).
func (c *Connector) scanLoop(ctx context.Context) {
	c.scan(ctx, true)
	t := time.NewTicker(c.cfg.ScanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.scan(ctx, false)
		}
	}
}

func (c *Connector) scan(ctx context.Context, startup bool) {
	ids, err := c.devices.wantConnected(ctx)
	if err != nil {
		c.log.Warn().Err(err).Msg("scan sessions")
		return
	}
	var todo []int64
	for _, m := range ids {
		c.mu.Lock()
		_, mine := c.owned[m]
		c.mu.Unlock()
		if mine {
			continue
		}
		if _, err := c.kv.Get(ctx, leaseKey(m)); errors.Is(err, jetstream.ErrKeyNotFound) {
			todo = append(todo, m)
		}
	}
	if len(todo) == 0 {
		if startup {
			c.metrics.restoreTotal.Set(0)
			c.log.Info().Msg("restore: nothing to restore")
		}
		return
	}
	if startup {
		c.metrics.restoreTotal.Set(float64(len(todo)))
		c.log.Info().Int("sessions", len(todo)).Int("concurrency", c.cfg.RestoreConcurrency).Msg("restore: starting")
	}
	// Start offsets within RestoreJitter, in order.
	at := make([]time.Duration, len(todo))
	if j := c.cfg.RestoreJitter; j > 0 {
		for i := range at {
			at[i] = time.Duration(c.rand() * float64(j))
		}
		slices.Sort(at) // the sessions are in no particular order: pair them with sorted offsets
	}
	begin := time.Now()
	sem := make(chan struct{}, c.cfg.RestoreConcurrency)
	var wg sync.WaitGroup
	var done, claimed atomic.Int64
	for i, m := range todo {
		if d := time.Until(begin.Add(at[i])); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				wg.Wait()
				return
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			sess, err := c.claimAndRestore(ctx, m)
			if err != nil {
				c.log.Warn().Err(err).Int64("mentorado", m).Msg("restore session")
			}
			if sess != nil {
				claimed.Add(1)
				c.awaitLogin(ctx, sess)
			}
			n := done.Add(1)
			if startup {
				c.metrics.restoreDone.Inc()
				if n%50 == 0 || int(n) == len(todo) {
					c.log.Info().Int64("done", n).Int("total", len(todo)).Int64("claimed", claimed.Load()).Msg("restore: progress")
				}
			}
		}()
	}
	wg.Wait()
}
