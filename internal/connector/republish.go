package connector

import (
	"context"
	"time"

	"github.com/zapbus/zapbus/internal/event"
)

// A command's event that could not be published after WhatsApp took the
// message (NATS restarting, the stream's leader moving) is published again
// in the background until it is stored, instead of only when the caller
// retries with the same client_id: a caller that gives up must not leave a
// message the recipient has without a row. The event id makes every
// attempt after the first one that reached the stream a duplicate
// JetStream drops. Found by the chaos run over the staging stack: a send
// during the NATS restart reached the phone and was never recorded.

const (
	republishMin = 500 * time.Millisecond
	republishMax = 30 * time.Second
)

// publishLater publishes env until it is stored or the connector stops.
func (c *Connector) publishLater(m int64, env event.Envelope) {
	c.metrics.republishPending.Inc()
	go func() {
		defer c.metrics.republishPending.Dec()
		ctx := c.runCtx
		delay := republishMin
		for attempt := 1; ; attempt++ {
			select {
			case <-ctx.Done():
				c.log.Error().Int64("mentorado", m).Str("id", env.ID).Int("attempts", attempt).
					Msg("connector stopped before a sent message's event was recorded; retry the send with the same client_id to record it")
				return
			case <-time.After(delay):
			}
			pctx, cancel := context.WithTimeout(ctx, c.cfg.PublishTimeout)
			_, err := c.bus.Publish(pctx, webEnvelope(env))
			cancel()
			if err == nil {
				c.metrics.published.WithLabelValues(string(env.Type)).Inc()
				c.log.Info().Int64("mentorado", m).Str("id", env.ID).Int("attempts", attempt).Msg("sent message's event recorded after a retry")
				return
			}
			c.metrics.publishFailures.WithLabelValues(string(env.Type)).Inc()
			if attempt%10 == 1 {
				c.log.Warn().Err(err).Int64("mentorado", m).Str("id", env.ID).Int("attempts", attempt).Msg("sent message's event still not recorded; retrying")
			}
			delay = min(2*delay, republishMax)
		}
	}()
}

// recordSent publishes the event of a message WhatsApp took; when that
// fails it keeps trying in the background (publishLater) and returns the
// error, which tells the caller the row may come late.
func (c *Connector) recordSent(ctx context.Context, m int64, msg *event.Message) error {
	env, err := event.New(m, event.MessageEventID(m, msg.WAID), msg.Timestamp, msg)
	if err != nil {
		return err
	}
	if err := c.publish(ctx, env); err != nil {
		c.publishLater(m, env)
		return err
	}
	return nil
}
