package event

import (
	"fmt"
	"slices"
	"time"
)

// WebhookState is the delivery state of a webhook endpoint.
type WebhookState string

// Webhook states.
const (
	WebhookActive   WebhookState = "active"   // delivering
	WebhookPaused   WebhookState = "paused"   // by the user, or automatically after failing continuously
	WebhookDisabled WebhookState = "disabled" // the receiver answered 410 Gone
)

// WebhookStates lists every state.
var WebhookStates = []WebhookState{WebhookActive, WebhookPaused, WebhookDisabled}

// Webhook is published (wa.<m>.evt.webhook) when a mentorado's webhook
// endpoint changes state without the user asking: paused automatically
// after failing continuously, disabled by a 410, or active again after a
// resume. Admin-level endpoints (all tenants) have no mentorado and publish
// no event; their state is in the API and the logs.
type Webhook struct {
	WebhookID int64        `json:"webhook_id"`
	State     WebhookState `json:"state"`
	Reason    string       `json:"reason"`
	// Host is the endpoint URL's host (never the full URL, whose path or
	// query may hold a receiver's secret).
	Host string `json:"host,omitempty"`
	// Failures is the number of consecutive failed attempts, and
	// FailingSince when the first of them happened.
	Failures     int        `json:"failures,omitempty"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
}

func (*Webhook) EventType() Type { return TypeWebhook }

func (w *Webhook) Validate() error {
	switch {
	case w.WebhookID <= 0:
		return invalid("data.webhook_id", "must be positive")
	case !slices.Contains(WebhookStates, w.State):
		return invalid("data.state", fmt.Sprintf("%q", w.State))
	case w.Reason == "":
		return missing("data.reason")
	case w.Failures < 0:
		return invalid("data.failures", "negative")
	}
	return nil
}

// WebhookEventID is <mentorado>:webhook:<webhook id>:<state>:<unix ms of
// the change>.
func WebhookEventID(mentorado, webhook int64, s WebhookState, at time.Time) string {
	return fmt.Sprintf("%d:webhook:%d:%s:%d", mentorado, webhook, s, at.UTC().Truncate(time.Millisecond).UnixMilli())
}
