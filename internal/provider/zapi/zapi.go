// Package zapi is the Z-API driver (z-api.io, a hosted WhatsApp Web
// gateway) for the provider gateway (issue #16, internal/provider).
//
// Commands are Z-API REST calls on
// <BaseURL>/instances/<instance id>/token/<instance token>/<endpoint> with
// the account's security token in the Client-Token header. The instance
// token is part of every URL, so no URL is ever logged or put in an error
// as it is: errors name the endpoint and the instance id only (see
// redactedPath), and every message built from an answer is scrubbed of the
// instance token, the client token and the webhook secret.
//
// Webhooks: Z-API does not sign its webhooks (no HMAC, no shared header;
// https://developer.z-api.io/en/webhooks/introduction). A delivery is
// authentic when it carries the account's webhook secret, which zapbus
// chose when the instance was configured and put in the webhook URL it
// registered with Z-API: the last path segment of
// POST /providers/zapi/{mentorado}/webhook/{secret}, or the
// X-Zapbus-Webhook-Secret header. It is compared in constant time. The
// secret is a bearer credential in a URL Z-API stores; anyone who learns
// it can forge deliveries for that one mentorado until it is rotated. A
// delivery must also name the account's instance (instanceId), or it is
// dropped into Inbound.Rejected.
//
// Pairing: GET qr-code answers the string a QR code encodes (Z-API calls
// it "the bytes of the QR code"; {"value": "2@…"}); qr-code/image answers
// a PNG data URI, which the driver never uses: event.QR.Code is the string
// to encode. WhatsApp rotates the code every 20 s, so QR reports an expiry
// 20 s ahead. GET phone-code/{phone} answers a code to type on the phone
// (PhonePairer).
//
// Media: a received file is a URL on Z-API's storage (kept 30 days). The
// driver reports it in Inbound.Media; FetchMedia downloads it with
// Config.MediaHTTP, by default a client whose dialer refuses private,
// loopback, link-local and other non-public addresses (code.dny.dev/ssrf),
// since the URL comes from a webhook body.
package zapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"code.dny.dev/ssrf"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

// DefaultBaseURL is Z-API's API.
const DefaultBaseURL = "https://api.z-api.io"

// Config configures the driver. Zero fields take the defaults New names.
type Config struct {
	// BaseURL is Z-API's API root (default DefaultBaseURL); tests point it
	// at zapifake.
	BaseURL string
	// HTTP is the client for REST calls (default: 30 s timeout).
	HTTP *http.Client
	// Retries is how many attempts a call makes in all when Z-API is
	// unreachable, answers 5xx or 429 (default 3).
	Retries int
	// Backoff is the wait before the second attempt, doubled for each
	// next one up to 8× (default 500 ms). A 429's Retry-After is honoured
	// when it is shorter than 30 s.
	Backoff time.Duration
	// Log receives the driver's logs (never tokens, secrets, codes or
	// message bodies).
	Log zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MediaHTTP downloads received files (default: a client that refuses
	// non-public addresses; tests inject a plain client).
	MediaHTTP *http.Client
}

// Driver is the Z-API driver. It is safe for concurrent use.
type Driver struct {
	base      string
	http      *http.Client
	retries   int
	backoff   time.Duration
	log       zerolog.Logger
	now       func() time.Time
	mediaHTTP *http.Client

	// phones caches each instance's own number (from GET device or a
	// webhook), the sender of what it sends: key mentorado/instance id.
	phones sync.Map
}

// Compile-time checks of what the driver implements.
var (
	_ provider.Driver       = (*Driver)(nil)
	_ provider.QRPairer     = (*Driver)(nil)
	_ provider.PhonePairer  = (*Driver)(nil)
	_ provider.MediaFetcher = (*Driver)(nil)
	_ provider.Reactor      = (*Driver)(nil)
	_ provider.Editor       = (*Driver)(nil)
	_ provider.Revoker      = (*Driver)(nil)
	_ provider.Reader       = (*Driver)(nil)
)

// New builds a driver.
func New(cfg Config) *Driver {
	d := &Driver{
		base:      strings.TrimRight(cfg.BaseURL, "/"),
		http:      cfg.HTTP,
		retries:   cfg.Retries,
		backoff:   cfg.Backoff,
		log:       cfg.Log.With().Str("provider", string(event.ProviderZAPI)).Logger(),
		now:       cfg.Now,
		mediaHTTP: cfg.MediaHTTP,
	}
	if d.base == "" {
		d.base = DefaultBaseURL
	}
	if d.http == nil {
		d.http = &http.Client{Timeout: 30 * time.Second}
	}
	if d.retries <= 0 {
		d.retries = 3
	}
	if d.backoff <= 0 {
		d.backoff = 500 * time.Millisecond
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.mediaHTTP == nil {
		d.mediaHTTP = SafeMediaClient()
	}
	return d
}

// SafeMediaClient is an HTTP client whose connections may only go to
// public addresses: the address is checked after name resolution, at
// every connection (redirects included), so a webhook body cannot point
// the gateway at its own network.
func SafeMediaClient() *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, Control: ssrf.New().Safe}
	tr := &http.Transport{
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// Provider is zapi.
func (d *Driver) Provider() event.Provider { return event.ProviderZAPI }

// creds returns acc's Z-API credentials or an error naming what is missing.
func creds(acc provider.Account) (*provider.ZAPICredentials, error) {
	z := acc.ZAPI
	if acc.Provider != event.ProviderZAPI || z == nil {
		return nil, event.NewCommandError(event.CodeNoProvider, "%s has no z-api configuration", acc)
	}
	if z.InstanceID == "" || z.InstanceToken == "" {
		return nil, event.NewCommandError(event.CodeNoProvider, "%s: z-api instance id or token missing", acc)
	}
	return z, nil
}

// call is one REST call: method on endpoint (relative to the instance),
// body marshalled as JSON when not nil, answer decoded into out when not
// nil. It retries unreachable, 5xx and 429 answers with backoff, and turns
// failures into *event.CommandError whose messages hold no secret.
func (d *Driver) call(ctx context.Context, acc provider.Account, method, endpoint string, body, out any) error {
	return d.do(ctx, acc, method, endpoint, body, out, true)
}

// callLenient is call for answers whose "error" field is information, not
// a refusal (GET status: {"connected": false, "error": "You are not
// connected."}).
func (d *Driver) callLenient(ctx context.Context, acc provider.Account, method, endpoint string, out any) error {
	return d.do(ctx, acc, method, endpoint, nil, out, false)
}

func (d *Driver) do(ctx context.Context, acc provider.Account, method, endpoint string, body, out any, strict bool) error {
	z, err := creds(acc)
	if err != nil {
		return err
	}
	u := d.base + "/instances/" + url.PathEscape(z.InstanceID) + "/token/" + url.PathEscape(z.InstanceToken) + "/" + endpoint
	what := method + " " + redactedPath(z.InstanceID, endpoint)
	var payload []byte
	if body != nil {
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("zapi: encode %s: %w", what, err)
		}
	}
	log := d.log.With().Int64("mentorado", acc.Mentorado).Str("call", what).Logger()
	var last *event.CommandError
	var asked time.Duration // a 429's Retry-After
	for attempt := 1; attempt <= d.retries; attempt++ {
		if attempt > 1 {
			wait := d.backoff << min(attempt-2, 3)
			if asked > 0 && asked < 30*time.Second {
				wait = asked
			}
			asked = 0
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return event.NewCommandError(event.CodeUnavailable, "z-api unreachable: %s: %s", what, ctx.Err())
			case <-t.C:
			}
		}
		status, hdr, answer, err := d.roundTrip(ctx, method, u, z.ClientToken, payload)
		if err != nil {
			if ctx.Err() != nil {
				return event.NewCommandError(event.CodeUnavailable, "z-api unreachable: %s: %s", what, ctx.Err())
			}
			last = event.NewCommandError(event.CodeUnavailable, "z-api unreachable: %s: %s", what, scrub(z, transportError(err)))
			log.Warn().Int("attempt", attempt).Str("error", last.Message).Msg("z-api call failed")
			continue
		}
		switch {
		case status == http.StatusTooManyRequests:
			asked = retryAfter(hdr)
			note := ""
			if asked > 0 {
				note = fmt.Sprintf("; retry after %ds", int(asked.Seconds()))
			}
			last = event.NewCommandError(event.CodeRateLimited, "z-api rate limited %s%s", what, note)
			log.Warn().Int("attempt", attempt).Msg("z-api rate limited")
			continue
		case status >= 500:
			last = event.NewCommandError(event.CodeUnavailable, "z-api unreachable: %s answered %d%s", what, status, detail(z, answer))
			log.Warn().Int("attempt", attempt).Int("status", status).Msg("z-api call failed")
			continue
		case status >= 400:
			return classify(z, what, status, answer)
		}
		// Z-API answers some refusals with 200 and an error body.
		if strict {
			if ce := errorBody(z, what, answer); ce != nil {
				return ce
			}
		}
		if out != nil && len(bytes.TrimSpace(answer)) > 0 {
			if err := json.Unmarshal(answer, out); err != nil {
				return event.NewCommandError(event.CodeProviderError, "z-api answered %s with a body zapbus cannot read", what)
			}
		}
		return nil
	}
	return last
}

// roundTrip does one HTTP exchange and reads at most 1 MiB of the answer.
func (d *Driver) roundTrip(ctx context.Context, method, u, clientToken string, payload []byte) (int, http.Header, []byte, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if clientToken != "" {
		req.Header.Set("Client-Token", clientToken)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, answer, nil
}

// redactedPath is the endpoint's path with the instance token replaced: the
// only form of a Z-API URL that may reach an error or a log.
func redactedPath(instanceID, endpoint string) string {
	if i := strings.IndexAny(endpoint, "?"); i >= 0 {
		endpoint = endpoint[:i]
	}
	return "/instances/" + instanceID + "/token/[redacted]/" + endpoint
}

// transportError is err without the request URL *url.Error carries.
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// scrub removes the account's secrets from s.
func scrub(z *provider.ZAPICredentials, s string) string {
	for _, secret := range []string{z.InstanceToken, z.ClientToken, z.WebhookSecret} {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// zerror is the shape of Z-API's error answers: {"error": "..."} and
// sometimes {"message": "..."}.
type zerror struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func (e zerror) text() string {
	switch {
	case e.Error != "" && e.Message != "" && e.Message != e.Error:
		return e.Error + ": " + e.Message
	case e.Error != "":
		return e.Error
	}
	return e.Message
}

// answerText is Z-API's error text in answer, scrubbed and bounded.
func answerText(z *provider.ZAPICredentials, answer []byte) string {
	var e zerror
	if json.Unmarshal(answer, &e) != nil {
		return ""
	}
	t := scrub(z, strings.TrimSpace(e.text()))
	if r := []rune(t); len(r) > 300 {
		t = string(r[:300]) + "…"
	}
	return t
}

func detail(z *provider.ZAPICredentials, answer []byte) string {
	if t := answerText(z, answer); t != "" {
		return ": " + t
	}
	return ""
}

// notConnected reports whether Z-API's text says the instance has no
// WhatsApp session ("You are not connected.", "You need to restore the
// session.", "Instance not connected").
func notConnected(t string) bool {
	t = strings.ToLower(t)
	return strings.Contains(t, "not connected") || strings.Contains(t, "restore the session") || strings.Contains(t, "disconnected")
}

// tokenRefused reports whether Z-API's text says the Client-Token or the
// instance token was refused ("null not allowed", "<token> not allowed",
// "Client-Token … not allowed", "instance not found").
func tokenRefused(t string) bool {
	t = strings.ToLower(t)
	return strings.Contains(t, "not allowed") || strings.Contains(t, "client-token") || strings.Contains(t, "instance not found") || strings.Contains(t, "invalid token")
}

// classify turns a 4xx answer into a command error.
func classify(z *provider.ZAPICredentials, what string, status int, answer []byte) *event.CommandError {
	t := answerText(z, answer)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden || tokenRefused(t):
		return event.NewCommandError(event.CodeProviderError, "z-api rejected the instance token or client token (%s answered %d)", what, status)
	case notConnected(t):
		return event.NewCommandError(event.CodeNotConnected, "the z-api instance is not connected to WhatsApp: %s", t)
	case status == http.StatusNotFound:
		return event.NewCommandError(event.CodeProviderError, "z-api has no %s (404)%s", what, detail(z, answer))
	case t == "":
		t = http.StatusText(status)
	}
	return event.NewCommandError(event.CodeBadRequest, "z-api refused %s: %s", what, t)
}

// errorBody finds a refusal in a 2xx answer (Z-API answers some with 200
// and {"error": "..."}). Calls whose answers carry "error" as information
// (GET status: "You are already connected.") use callLenient instead.
func errorBody(z *provider.ZAPICredentials, what string, answer []byte) *event.CommandError {
	var e zerror
	if json.Unmarshal(answer, &e) != nil || e.Error == "" {
		return nil
	}
	t := answerText(z, answer)
	switch {
	case tokenRefused(t):
		return event.NewCommandError(event.CodeProviderError, "z-api rejected the instance token or client token (%s)", what)
	case notConnected(t):
		return event.NewCommandError(event.CodeNotConnected, "the z-api instance is not connected to WhatsApp: %s", t)
	}
	return event.NewCommandError(event.CodeProviderError, "z-api refused %s: %s", what, t)
}

// retryAfter is a 429's Retry-After in seconds (0 when absent or a date).
func retryAfter(h http.Header) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || s <= 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// phoneKey keys Driver.phones.
func phoneKey(acc provider.Account) string {
	return strconv.FormatInt(acc.Mentorado, 10) + "/" + acc.ZAPI.InstanceID
}

// rememberPhone caches the instance's own number.
func (d *Driver) rememberPhone(acc provider.Account, phone string) {
	if acc.ZAPI == nil {
		return
	}
	if phone == "" {
		d.phones.Delete(phoneKey(acc))
		return
	}
	d.phones.Store(phoneKey(acc), phone)
}

// ownPhone is the instance's own number: cached, or asked of GET device.
func (d *Driver) ownPhone(ctx context.Context, acc provider.Account) (string, error) {
	if _, err := creds(acc); err != nil {
		return "", err
	}
	if v, ok := d.phones.Load(phoneKey(acc)); ok {
		return v.(string), nil
	}
	var dev struct {
		Phone string `json:"phone"`
	}
	if err := d.call(ctx, acc, http.MethodGet, "device", nil, &dev); err != nil {
		return "", err
	}
	p := digits(dev.Phone)
	if p == "" {
		return "", event.NewCommandError(event.CodeNotConnected, "the z-api instance reports no connected number")
	}
	d.rememberPhone(acc, p)
	return p, nil
}

// digits keeps the digits of s.
func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}
