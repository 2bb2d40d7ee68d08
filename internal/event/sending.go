package event

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// OutboxEventID is the id of a message event that moves an outbound
// message through the outbox: <mentorado>:msg:<whatsapp id>:<status>
// (queued, expired or failed). The event of the send itself keeps
// MessageEventID, so the sync and the queued path publish the same id for
// the same sent message.
func OutboxEventID(mentorado int64, waID string, s MessageStatus) string {
	return fmt.Sprintf("%s:%s", MessageEventID(mentorado, waID), s)
}

// CampaignState is where a campaign is in its lifecycle:
// draft → scheduled → running ↔ paused → completed | cancelled.
type CampaignState string

// Campaign states.
const (
	CampaignDraft     CampaignState = "draft"
	CampaignScheduled CampaignState = "scheduled"
	CampaignRunning   CampaignState = "running"
	CampaignPaused    CampaignState = "paused"
	CampaignCompleted CampaignState = "completed"
	CampaignCancelled CampaignState = "cancelled"
)

// CampaignStates lists every state.
var CampaignStates = []CampaignState{CampaignDraft, CampaignScheduled, CampaignRunning, CampaignPaused, CampaignCompleted, CampaignCancelled}

// Final reports whether no recipient will be sent to any more.
func (s CampaignState) Final() bool { return s == CampaignCompleted || s == CampaignCancelled }

// CampaignCounts are a campaign's recipients by outcome. Sent counts every
// recipient WhatsApp took (delivered and read ones too); Delivered counts
// those delivered or read, Read those read. Pending is neither sent nor
// skipped, failed or cancelled yet.
type CampaignCounts struct {
	Total     int `json:"total"`
	Pending   int `json:"pending"`
	Sent      int `json:"sent"`
	Delivered int `json:"delivered"`
	Read      int `json:"read"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Cancelled int `json:"cancelled"`
}

// Campaign is published (wa.<m>.evt.campaign) when a campaign changes
// state or its counts change: its progress.
type Campaign struct {
	CampaignID int64          `json:"campaign_id"`
	Name       string         `json:"name"`
	State      CampaignState  `json:"state"`
	Reason     string         `json:"reason,omitempty"` // why it paused, e.g. temporary_ban
	Counts     CampaignCounts `json:"counts"`
}

func (*Campaign) EventType() Type { return TypeCampaign }

func (c *Campaign) Validate() error {
	switch {
	case c.CampaignID <= 0:
		return invalid("data.campaign_id", "must be positive")
	case !slices.Contains(CampaignStates, c.State):
		return invalid("data.state", fmt.Sprintf("%q", c.State))
	case c.Counts.Total < 0 || c.Counts.Pending < 0 || c.Counts.Sent < 0 || c.Counts.Delivered < 0 ||
		c.Counts.Read < 0 || c.Counts.Failed < 0 || c.Counts.Skipped < 0 || c.Counts.Cancelled < 0:
		return invalid("data.counts", "negative")
	}
	return nil
}

// CampaignEventID is <mentorado>:campaign:<id>:<seq>:<state>:<digest of
// the counts and reason>, seq being the number of the campaign's progress
// event (the reporter keeps it with what it published): the same progress
// published twice (two persisters, a retried pass) is one event, while a
// state that comes back with the same counts (paused, resumed, paused
// again within JetStream's duplicate window) is a new one.
func CampaignEventID(mentorado int64, c *Campaign, seq int64) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%+v|%s", c.Counts, c.Reason))
	return fmt.Sprintf("%d:campaign:%d:%d:%s:%s", mentorado, c.CampaignID, seq, c.State, hex.EncodeToString(h[:8]))
}

// BulkState says whether a mentorado's bulk (campaign) sending may go on.
type BulkState string

// Bulk states.
const (
	BulkActive BulkState = "active"
	BulkPaused BulkState = "paused"
)

// Sending is published (wa.<m>.evt.sending) when a mentorado's bulk
// sending pauses by itself — a temporary ban, or a burst of send errors —
// or is resumed. Running campaigns pause with it.
type Sending struct {
	Bulk   BulkState `json:"bulk"`
	Reason string    `json:"reason"` // temporary_ban, send_errors, resumed
	// Until is when a temporary ban ends, when WhatsApp said.
	Until *time.Time `json:"until,omitempty"`
	// Errors is the run of send errors that paused it.
	Errors int `json:"errors,omitempty"`
}

func (*Sending) EventType() Type { return TypeSending }

func (s *Sending) Validate() error {
	switch {
	case s.Bulk != BulkActive && s.Bulk != BulkPaused:
		return invalid("data.bulk", fmt.Sprintf("%q", s.Bulk))
	case s.Reason == "":
		return missing("data.reason")
	case s.Errors < 0:
		return invalid("data.errors", "negative")
	}
	return nil
}

// SendingEventID is <mentorado>:sending:<bulk>:<unix ms of the change>.
func SendingEventID(mentorado int64, s BulkState, at time.Time) string {
	return fmt.Sprintf("%d:sending:%s:%d", mentorado, s, at.UTC().Truncate(time.Millisecond).UnixMilli())
}
