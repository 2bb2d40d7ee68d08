package persister

import (
	"context"
	"errors"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// Campaign progress (issue #14). Next to the lead-events outbox, Run runs a
// reporter that every Config.CampaignInterval publishes a campaign event
// (wa.<m>.evt.campaign) for each campaign whose state, reason or counts
// changed since its last event (store.DB.ReportCampaigns; what was last
// published is campaigns.published). A pass looks at the live campaigns
// (scheduled, running, paused) and those changed in the last
// CampaignRecent (a state change sets updated_at: a completed or cancelled
// campaign gets its final event at once); every CampaignFinishedInterval
// it looks at those changed or finished in the last CampaignWindow (48 h)
// too, whose counts still move with receipts (delivered, read).
//
// One persister at a time runs a pass (an advisory lock; the others skip
// theirs), and the event id is event.CampaignEventID (a sequence, the state and a
// digest of the counts and reason): the same progress published twice is
// one event on the stream.

// Reporter defaults.
const (
	DefaultCampaignInterval         = time.Second
	DefaultCampaignFinishedInterval = 15 * time.Second
	// CampaignRecent is how far back a fast pass looks for changed
	// campaigns (beyond the live ones).
	CampaignRecent = 2 * time.Minute
	// CampaignWindow is how long a finished campaign is still reported
	// (receipts of its messages keep arriving).
	CampaignWindow = 48 * time.Hour
)

// ReportCampaigns runs one reporter pass over campaigns live or changed in
// the last window, publishing their changed progress. It returns how many
// events it published.
func (p *Persister) ReportCampaigns(ctx context.Context, window time.Duration) (int, error) {
	if p.bus == nil {
		return 0, errors.New("persister: reporting campaigns needs a bus")
	}
	n, err := p.db.ReportCampaigns(ctx, p.now().Add(-window), p.publishCampaign)
	p.metrics.campaignEvents.Add(float64(n))
	return n, err
}

func (p *Persister) now() time.Time {
	if p.clock != nil {
		return p.clock()
	}
	return time.Now()
}

// publishCampaign publishes one campaign's progress.
func (p *Persister) publishCampaign(ctx context.Context, cp store.CampaignProgress) error {
	c := cp.Campaign
	env, err := event.New(cp.MentoradoID, event.CampaignEventID(cp.MentoradoID, &c, cp.Seq), p.now(), &c)
	if err != nil {
		// Not valid (cannot happen with the schema's states): skip it
		// rather than stop every campaign's progress.
		p.log.Error().Err(err).Int64("campaign", c.CampaignID).Msg("invalid campaign event; not published")
		return nil
	}
	_, err = p.bus.Publish(ctx, env)
	return err
}

// campaigns runs the reporter until ctx ends.
func (p *Persister) campaigns(ctx context.Context) {
	t := time.NewTicker(p.cfg.CampaignInterval)
	defer t.Stop()
	var lastFull time.Time
	for {
		window := CampaignRecent
		if now := time.Now(); now.Sub(lastFull) >= p.cfg.CampaignFinishedInterval {
			window, lastFull = CampaignWindow, now
		}
		// While NATS is away nothing can be published: skip the pass (and
		// its queries) rather than time out on every tick.
		if p.bus.Connected() {
			if n, err := p.ReportCampaigns(ctx, window); err != nil && ctx.Err() == nil {
				p.log.Warn().Err(err).Int("published", n).Msg("campaign progress not all published; will retry")
			}
		} else {
			lastFull = time.Time{} // a full pass once it is back
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
