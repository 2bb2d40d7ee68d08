// Package meta is the driver of Meta's WhatsApp Cloud API (issue #16,
// docs/decisions/0021-providers.md): a stateless HTTP client of the Graph
// API that implements provider.Driver and the capabilities the Cloud API
// has (Verifier, MediaFetcher, Reactor, Reader, Windowed). The Cloud API
// cannot edit or delete a sent message, so the driver is no Editor or
// Revoker and the gateway answers not_supported.
//
// Webhooks: Meta signs every delivery with the app secret
// (X-Hub-Signature-256); Webhook checks it over the raw body before it
// reads a byte of JSON, and keeps only the changes for the account's own
// phone_number_id, so a delivery for one mentorado never produces events
// for another. Events carry the same deterministic ids the connector uses
// (event.MessageEventID of the wamid, …), so a redelivered webhook is
// deduplicated by JetStream.
//
// Sends: POST /{phone_number_id}/messages with the account's access token;
// media is uploaded first (POST /{phone_number_id}/media) and sent by id.
// Errors map to the command error codes (rate_limited, outside_window,
// not_on_whatsapp, bad_request, provider_error, unavailable); the access
// token and app secret never reach an error or a log.
package meta

import (
	"context"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

// DefaultBaseURL is the Graph API version the driver speaks.
const DefaultBaseURL = "https://graph.facebook.com/v21.0"

// Window is Meta's customer-service window: free-form messages reach only
// chats that wrote within it; outside it only templates go.
const Window = 24 * time.Hour

// Config configures a Driver. Zero values take the defaults.
type Config struct {
	// BaseURL is the Graph API root with its version (DefaultBaseURL).
	BaseURL string
	// HTTP is the client for every call (default: 2 min timeout, enough
	// for a 100 MB download; callers bound calls with their context).
	HTTP *http.Client
	// Retries is how many attempts a call makes in all before it gives up
	// on a rate limit, a 5xx or a network error (default 3).
	Retries int
	// Backoff is the wait before attempt n+1 after attempt n (n from 0)
	// failed, when Meta gave no Retry-After (default 250 ms·2^n, ±20 %).
	Backoff func(attempt int) time.Duration
	// MaxRetryAfter bounds how long a Retry-After is honoured; a longer
	// one fails at once with rate_limited (default 30 s).
	MaxRetryAfter time.Duration
	// Sleep waits d or until ctx ends (default: a timer); tests record
	// the waits through it.
	Sleep func(ctx context.Context, d time.Duration) error
	// Log receives retries and dropped webhook parts; never a secret.
	Log zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Driver is the Meta Cloud API driver. It is safe for concurrent use and
// holds no per-account state: every call gets the account.
type Driver struct {
	base          string
	http          *http.Client
	attempts      int
	backoff       func(int) time.Duration
	maxRetryAfter time.Duration
	sleep         func(context.Context, time.Duration) error
	log           zerolog.Logger
	now           func() time.Time
}

var (
	_ provider.Driver       = (*Driver)(nil)
	_ provider.Verifier     = (*Driver)(nil)
	_ provider.MediaFetcher = (*Driver)(nil)
	_ provider.Reactor      = (*Driver)(nil)
	_ provider.Reader       = (*Driver)(nil)
	_ provider.Windowed     = (*Driver)(nil)
)

// New returns a driver configured by cfg.
func New(cfg Config) *Driver {
	d := &Driver{
		base:          strings.TrimRight(cfg.BaseURL, "/"),
		http:          cfg.HTTP,
		attempts:      cfg.Retries,
		backoff:       cfg.Backoff,
		maxRetryAfter: cfg.MaxRetryAfter,
		sleep:         cfg.Sleep,
		log:           cfg.Log,
		now:           cfg.Now,
	}
	if d.base == "" {
		d.base = DefaultBaseURL
	}
	if d.http == nil {
		d.http = &http.Client{Timeout: 2 * time.Minute}
	}
	if d.attempts <= 0 {
		d.attempts = 3
	}
	if d.backoff == nil {
		d.backoff = defaultBackoff
	}
	if d.maxRetryAfter <= 0 {
		d.maxRetryAfter = 30 * time.Second
	}
	if d.sleep == nil {
		d.sleep = sleep
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d
}

func defaultBackoff(n int) time.Duration {
	d := 250 * time.Millisecond << min(n, 8)
	return d + time.Duration((rand.Float64()*0.4-0.2)*float64(d))
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Provider is meta.
func (d *Driver) Provider() event.Provider { return event.ProviderMeta }

// Window is the 24-hour customer-service window.
func (d *Driver) Window() time.Duration { return Window }

// creds returns acc's Meta credentials, or provider_not_configured.
func creds(acc provider.Account) (*provider.MetaCredentials, error) {
	if acc.Meta == nil || acc.Meta.PhoneNumberID == "" || acc.Meta.AccessToken == "" {
		return nil, event.NewCommandError(event.CodeNoProvider, "%s has no Meta Cloud API credentials", acc)
	}
	return acc.Meta, nil
}

// phoneInfo is GET /{phone_number_id}.
type phoneInfo struct {
	ID                 string `json:"id"`
	DisplayPhoneNumber string `json:"display_phone_number"`
	VerifiedName       string `json:"verified_name"`
	QualityRating      string `json:"quality_rating"`
}

// Status asks Meta for the number (display number, verified name, quality
// rating): connected when the token works for it.
func (d *Driver) Status(ctx context.Context, acc provider.Account) (event.StatusReply, error) {
	c, err := creds(acc)
	if err != nil {
		return event.StatusReply{}, err
	}
	var info phoneInfo
	if err := d.getJSON(ctx, c, d.base+"/"+pathEscape(c.PhoneNumberID)+"?fields=display_phone_number,verified_name,quality_rating", &info); err != nil {
		return event.StatusReply{}, err
	}
	r := event.StatusReply{Status: event.StatusConnected, Since: d.now().UTC()}
	if p := digits(info.DisplayPhoneNumber); validPhone(p) {
		r.Phone, r.JID = p, p+"@s.whatsapp.net"
	}
	if info.QualityRating != "" && !strings.EqualFold(info.QualityRating, "GREEN") {
		r.Reason = "quality rating " + strings.ToLower(info.QualityRating)
	}
	return r, nil
}

// Connect checks that the credentials work: a Cloud API number has no
// session to bring up.
func (d *Driver) Connect(ctx context.Context, acc provider.Account, _ event.ConnectRequest) (event.StatusReply, error) {
	return d.Status(ctx, acc)
}

// Disconnect makes no call: the Cloud API number stays registered with
// Meta; zapbus just stops using it.
func (d *Driver) Disconnect(_ context.Context, _ provider.Account) (event.StatusReply, error) {
	return event.StatusReply{Status: event.StatusDisconnected, Since: d.now().UTC(), Reason: "meta: nothing to disconnect; the number stays registered with Meta"}, nil
}

// Logout is Disconnect: deregistering a Cloud API number is done in Meta's
// WhatsApp Manager, not by zapbus.
func (d *Driver) Logout(ctx context.Context, acc provider.Account) (event.StatusReply, error) {
	return d.Disconnect(ctx, acc)
}

// digits keeps the ASCII digits of s.
func digits(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= '0' && c <= '9' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// validPhone reports whether p is 8 to 15 digits (an event's phone).
func validPhone(p string) bool {
	if len(p) < 8 || len(p) > 15 {
		return false
	}
	return digits(p) == p
}

// ownJID is the business number's JID: its display number when known,
// else the phone number id form.
func ownJID(c *provider.MetaCredentials, display string) string {
	if p := digits(display); validPhone(p) {
		return p + "@s.whatsapp.net"
	}
	if p := digits(c.DisplayPhone); validPhone(p) {
		return p + "@s.whatsapp.net"
	}
	return c.PhoneNumberID + "@s.whatsapp.net"
}
