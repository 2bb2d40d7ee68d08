package connector

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Restore: which sessions this connector takes without a command. At
// start-up and every ScanInterval it claims sessions that should be
// connected and have no lease; when a peer's lease is deleted or expires
// (watchLoop) it takes the session over.

// claimAndRestore takes m when nobody owns it and connects it when its
// desired state is connected.
func (c *Connector) claimAndRestore(ctx context.Context, m int64) (bool, error) {
	l, err := c.claim(ctx, m)
	if err != nil {
		var oe *ownedElsewhere
		if errors.As(err, &oe) || errors.Is(err, errStopping) {
			return false, nil
		}
		return false, err
	}
	l.sess.post(l.sess.restore)
	return true, nil
}

// takeOver claims m when it should be connected.
func (c *Connector) takeOver(ctx context.Context, m int64) {
	row, found, err := c.devices.get(ctx, m)
	if err != nil || !found || row.Desired != desiredConnected || row.JID.IsEmpty() {
		return
	}
	if ok, err := c.claimAndRestore(ctx, m); err != nil {
		c.log.Warn().Err(err).Int64("mentorado", m).Msg("take over session")
	} else if ok {
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
	sem := make(chan struct{}, c.cfg.RestoreConcurrency)
	var wg sync.WaitGroup
	var done, claimed atomic.Int64
	for _, m := range todo {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if j := c.cfg.RestoreJitter; j > 0 {
				select {
				case <-time.After(time.Duration(c.rand() * float64(j))):
				case <-ctx.Done():
					return
				}
			}
			ok, err := c.claimAndRestore(ctx, m)
			if err != nil {
				c.log.Warn().Err(err).Int64("mentorado", m).Msg("restore session")
			}
			if ok {
				claimed.Add(1)
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
