package meta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

// maxJSONBytes bounds a Graph API JSON answer.
const maxJSONBytes = 1 << 20

// GraphError is an error answer of the Graph API:
// {"error":{"message","type","code","error_subcode","error_data":{"details"},"fbtrace_id"}}.
type GraphError struct {
	HTTPStatus int    `json:"-"`
	Message    string `json:"message"`
	Type       string `json:"type"`
	Code       int    `json:"code"`
	Subcode    int    `json:"error_subcode"`
	Data       struct {
		Details string `json:"details"`
	} `json:"error_data"`
	FBTraceID string `json:"fbtrace_id"`
	// RetryAfter is the answer's Retry-After, when it had one.
	RetryAfter time.Duration `json:"-"`
}

func (e *GraphError) Error() string {
	s := fmt.Sprintf("meta: HTTP %d", e.HTTPStatus)
	if e.Code != 0 {
		s += fmt.Sprintf(" (#%d)", e.Code)
	}
	if e.Message != "" {
		s += " " + e.Message
	}
	if e.Data.Details != "" && !strings.Contains(e.Message, e.Data.Details) {
		s += ": " + e.Data.Details
	}
	return s
}

// Rate-limit codes: 4 (app), 80007 (WABA), 130429 (throughput), 131048
// (spam rate), 131056 (business/consumer pair).
var rateLimitCodes = map[int]bool{4: true, 80007: true, 130429: true, 131048: true, 131056: true}

// transientCodes are Meta's "try again" codes: 1 (unknown), 2 (service),
// 131000 (something went wrong), 131016 (service unavailable).
var transientCodes = map[int]bool{1: true, 2: true, 131000: true, 131016: true}

func (e *GraphError) rateLimited() bool { return e.HTTPStatus == 429 || rateLimitCodes[e.Code] }
func (e *GraphError) transient() bool   { return e.HTTPStatus >= 500 || transientCodes[e.Code] }

// commandError maps a Graph error to the command error a client sees.
func (e *GraphError) commandError() *event.CommandError {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.HTTPStatus)
	}
	if e.Data.Details != "" && !strings.Contains(msg, e.Data.Details) {
		msg += ": " + e.Data.Details
	}
	switch {
	case e.rateLimited():
		if e.RetryAfter > 0 {
			return event.NewCommandError(event.CodeRateLimited, "meta rate limit, retry after %s: %s", e.RetryAfter, msg)
		}
		return event.NewCommandError(event.CodeRateLimited, "meta rate limit: %s", msg)
	case e.transient():
		return event.NewCommandError(event.CodeUnavailable, "meta unreachable: HTTP %d %s", e.HTTPStatus, msg)
	case e.Code == 131047:
		return event.NewCommandError(event.CodeOutsideWindow, "more than 24 hours since this chat last wrote; only a template can be sent (meta: %s)", msg)
	case e.Code == 131026:
		return event.NewCommandError(event.CodeNotOnWhatsApp, "meta cannot deliver to this number: %s", msg)
	case e.Code == 190 || e.HTTPStatus == http.StatusUnauthorized:
		return event.NewCommandError(event.CodeProviderError, "meta: access token rejected (#%d)", e.Code)
	case e.Code == 100 || e.Code == 131008 || e.Code == 131009 || e.Code/1000 == 132 ||
		e.Code == 131051 || e.Code == 131052 || e.Code == 131053:
		return event.NewCommandError(event.CodeBadRequest, "meta refused the request: %s", msg)
	}
	return event.NewCommandError(event.CodeProviderError, "meta error (#%d): %s", e.Code, msg)
}

// call is one Graph API request, replayable across attempts.
type call struct {
	method, url string
	body        []byte
	contentType string
	max         int64 // answer size bound (maxJSONBytes when 0)
}

// do runs c with the account's bearer token, retrying rate limits, 5xx
// answers and network errors up to the configured attempts. It returns
// the answer's body and Content-Type on 2xx, else a *event.CommandError.
// Neither the token nor the app secret can appear in what it returns or
// logs: the URL carries neither, and Meta's messages are scrubbed.
func (d *Driver) do(ctx context.Context, cr *provider.MetaCredentials, c call) ([]byte, string, error) {
	if c.max <= 0 {
		c.max = maxJSONBytes
	}
	var last error
	for attempt := 0; attempt < d.attempts; attempt++ {
		if attempt > 0 {
			wait := d.backoff(attempt - 1)
			var ge *GraphError
			if errors.As(last, &ge) && ge.RetryAfter > 0 {
				wait = ge.RetryAfter
			}
			if err := d.sleep(ctx, wait); err != nil {
				return nil, "", event.NewCommandError(event.CodeUnavailable, "meta unreachable: %s (gave up waiting: %v)", scrub(cr, last.Error()), err)
			}
		}
		body, ctype, err := d.once(ctx, cr, c)
		if err == nil {
			return body, ctype, nil
		}
		last = err
		var ge *GraphError
		var tl *tooLarge
		switch {
		case errors.As(err, &tl):
			return nil, "", err
		case errors.As(err, &ge) && ge.rateLimited():
			if ge.RetryAfter > d.maxRetryAfter {
				return nil, "", scrubbed(cr, ge.commandError())
			}
		case errors.As(err, &ge) && ge.transient():
		case errors.As(err, &ge):
			return nil, "", scrubbed(cr, ge.commandError())
		case ctx.Err() != nil:
			return nil, "", event.NewCommandError(event.CodeUnavailable, "meta unreachable: %v", ctx.Err())
		}
		d.log.Warn().Str("provider", "meta").Str("op", opName(c)).Int("attempt", attempt+1).Int("of", d.attempts).
			Str("error", scrub(cr, err.Error())).Msg("meta call failed; retrying if attempts remain")
	}
	var ge *GraphError
	if errors.As(last, &ge) {
		return nil, "", scrubbed(cr, ge.commandError())
	}
	return nil, "", event.NewCommandError(event.CodeUnavailable, "meta unreachable: %s", scrub(cr, last.Error()))
}

// once makes one attempt.
func (d *Driver) once(ctx context.Context, cr *provider.MetaCredentials, c call) ([]byte, string, error) {
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, c.url, body)
	if err != nil {
		return nil, "", fmt.Errorf("meta: build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+cr.AccessToken)
	if c.contentType != "" {
		req.Header.Set("Content-Type", c.contentType)
	}
	resp, err := d.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL has no secret, but keep the message short
		}
		return nil, "", fmt.Errorf("%s %s: %w", c.method, redactURL(c.url), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.max+1))
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: read answer: %w", c.method, redactURL(c.url), err)
	}
	if resp.StatusCode/100 == 2 {
		if int64(len(data)) > c.max {
			return nil, "", &tooLarge{max: c.max}
		}
		return data, resp.Header.Get("Content-Type"), nil
	}
	ge := &GraphError{HTTPStatus: resp.StatusCode}
	var wrap struct {
		Error *GraphError `json:"error"`
	}
	if json.Unmarshal(data, &wrap) == nil && wrap.Error != nil {
		*ge = *wrap.Error
		ge.HTTPStatus = resp.StatusCode
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n >= 0 {
			ge.RetryAfter = time.Duration(n) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			ge.RetryAfter = max(0, t.Sub(d.now()))
		}
	}
	return nil, "", ge
}

// tooLarge is a 2xx answer over its bound (a media file over max).
type tooLarge struct{ max int64 }

func (e *tooLarge) Error() string { return fmt.Sprintf("meta: answer larger than %d bytes", e.max) }

// getJSON GETs url and decodes the answer into v.
func (d *Driver) getJSON(ctx context.Context, cr *provider.MetaCredentials, u string, v any) error {
	return d.callJSON(ctx, cr, http.MethodGet, u, nil, v)
}

// postJSON POSTs in as JSON to url and decodes the answer into out.
func (d *Driver) postJSON(ctx context.Context, cr *provider.MetaCredentials, u string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("meta: encode request: %w", err)
	}
	return d.callJSON(ctx, cr, http.MethodPost, u, b, out)
}

func (d *Driver) callJSON(ctx context.Context, cr *provider.MetaCredentials, method, u string, body []byte, out any) error {
	c := call{method: method, url: u, body: body}
	if body != nil {
		c.contentType = "application/json"
	}
	data, _, err := d.do(ctx, cr, c)
	if err != nil {
		var tl *tooLarge
		if errors.As(err, &tl) {
			return event.NewCommandError(event.CodeProviderError, "meta: answer too large")
		}
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return event.NewCommandError(event.CodeProviderError, "meta: unreadable answer to %s %s: %v", method, redactURL(u), err)
	}
	return nil
}

// opName names a call for logs: its method and path without the query.
func opName(c call) string { return c.method + " " + redactURL(c.url) }

// redactURL drops the query and host of u (media download URLs carry
// signed parameters).
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(url)"
	}
	return p.Path
}

// scrub removes the account's secrets from s.
func scrub(cr *provider.MetaCredentials, s string) string {
	for _, secret := range []string{cr.AccessToken, cr.AppSecret, cr.VerifyToken} {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

func scrubbed(cr *provider.MetaCredentials, ce *event.CommandError) *event.CommandError {
	ce.Message = scrub(cr, ce.Message)
	return ce
}

// pathEscape escapes one path segment (ids are digits, but an account
// row is input).
func pathEscape(s string) string { return url.PathEscape(s) }
