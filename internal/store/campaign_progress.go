package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
)

// Campaign progress (issue #14): the persister's reporter publishes a
// campaign event when a campaign's {state, reason, counts} differ from what
// its last event carried (campaigns.published).

// CampaignProgress is a campaign as its progress event reports it.
type CampaignProgress struct {
	MentoradoID int64
	Campaign    event.Campaign
	// Seq numbers the campaign's progress events (1 for the first); it is
	// part of the event id (event.CampaignEventID).
	Seq int64
}

// campaignReported is what campaigns.published holds: the part of the
// last event that decides whether a new one is due.
type campaignReported struct {
	State  event.CampaignState  `json:"state"`
	Reason string               `json:"reason,omitempty"`
	Counts event.CampaignCounts `json:"counts"`
	Seq    int64                `json:"seq"`
}

// campaignProgressCandidatesSQL lists the campaigns whose progress may have
// changed: the live ones (scheduled and running on the campaigns_active
// index, paused ones) and those changed or finished since $1 (the
// reporter's recent window). Arrays: none; $1 timestamptz.
const campaignProgressCandidatesSQL = `SELECT id, mentorado_id, name, state, coalesce(pause_reason, ''), published
FROM campaigns
WHERE state IN ('scheduled', 'running', 'paused') OR updated_at > $1 OR finished_at > $1
ORDER BY id`

// campaignReporterLockSQL makes one reporter at a time run a pass, across
// every persister: the others skip theirs (their next pass finds the
// published state stored and nothing to do).
const campaignReporterLockSQL = `SELECT pg_try_advisory_xact_lock(hashtextextended('zapbus campaign progress', 0))`

// campaignPublishedSQL stores what was published. Arrays: id, published.
const campaignPublishedSQL = `UPDATE campaigns c SET published = u.published
FROM unnest($1::bigint[], $2::jsonb[]) AS u(id, published)
WHERE c.id = u.id`

// ReportCampaigns runs one pass of the campaign progress reporter: under a
// lock that one persister at a time holds (a pass that cannot take it
// returns 0 at once), it reads the campaigns that are scheduled, running
// or paused, or changed or finished since since, counts their recipients
// (CampaignCounts), calls publish for each whose state, reason or counts
// differ from the last published, and stores what was published. A
// publish error stops the pass; what was published before it is stored.
// It returns how many it published.
//
// A campaign's reason is its pause_reason while paused, completed or
// cancelled, and empty otherwise.
func (db *DB) ReportCampaigns(ctx context.Context, since time.Time, publish func(context.Context, CampaignProgress) error) (int, error) {
	published := 0
	var pubErr error
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		published, pubErr = 0, nil
		var locked bool
		if err := tx.QueryRow(ctx, campaignReporterLockSQL).Scan(&locked); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if !locked {
			return nil
		}
		type cand struct {
			p    CampaignProgress
			last *campaignReported
		}
		rows, err := tx.Query(ctx, campaignProgressCandidatesSQL, since)
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		var cands []cand
		var ids []int64
		for rows.Next() {
			var c cand
			var state string
			var pub []byte
			if err := rows.Scan(&c.p.Campaign.CampaignID, &c.p.MentoradoID, &c.p.Campaign.Name, &state, &c.p.Campaign.Reason, &pub); err != nil {
				rows.Close()
				return fmt.Errorf("list: %w", err)
			}
			c.p.Campaign.State = event.CampaignState(state)
			switch c.p.Campaign.State {
			case event.CampaignPaused, event.CampaignCompleted, event.CampaignCancelled:
			default:
				c.p.Campaign.Reason = ""
			}
			if len(pub) > 0 {
				c.last = new(campaignReported)
				if err := json.Unmarshal(pub, c.last); err != nil {
					c.last = nil // unreadable: publish again
				}
			}
			cands = append(cands, c)
			ids = append(ids, c.p.Campaign.CampaignID)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list: %w", err)
		}
		if len(cands) == 0 {
			return nil
		}
		counts, err := campaignCounts(ctx, tx, ids)
		if err != nil {
			return err
		}
		var doneIDs []int64
		var doneJSON []string
		for _, c := range cands {
			c.p.Campaign.Counts = counts[c.p.Campaign.CampaignID]
			now := campaignReported{State: c.p.Campaign.State, Reason: c.p.Campaign.Reason, Counts: c.p.Campaign.Counts, Seq: 1}
			if c.last != nil {
				if now.State == c.last.State && now.Reason == c.last.Reason && now.Counts == c.last.Counts {
					continue
				}
				now.Seq = c.last.Seq + 1
			}
			c.p.Seq = now.Seq
			if pubErr = publish(ctx, c.p); pubErr != nil {
				break
			}
			b, err := json.Marshal(now)
			if err != nil {
				return err
			}
			doneIDs, doneJSON = append(doneIDs, c.p.Campaign.CampaignID), append(doneJSON, string(b))
		}
		if len(doneIDs) > 0 {
			if _, err := tx.Exec(ctx, campaignPublishedSQL, doneIDs, doneJSON); err != nil {
				return fmt.Errorf("store published: %w", err)
			}
		}
		published = len(doneIDs)
		// A publish error commits what was published before it; the rest
		// goes in the next pass.
		return nil
	})
	if err != nil {
		// Rolled back: what was published is published again next time,
		// under the same ids (JetStream drops the duplicates).
		return 0, fmt.Errorf("store: report campaigns: %w", err)
	}
	if pubErr != nil {
		return published, fmt.Errorf("store: report campaigns: publish: %w", pubErr)
	}
	return published, nil
}
