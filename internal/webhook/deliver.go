package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zapbus/zapbus/internal/store"
)

// maxResponse is how much of a response body is read (then discarded):
// enough to reuse the connection, never a receiver's whole answer.
const maxResponse = 64 << 10

// UserAgent is sent with every delivery.
const UserAgent = "zapbus-webhooks"

// newClient is the delivery client: every connection's address checked by
// the policy at connect time, no proxy from the environment, no redirects
// followed, each attempt bounded by timeout, connections kept alive and
// reused per host.
func newClient(p Policy, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: control(p.guardian()), Resolver: p.Resolver}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// attempt is the result of one POST.
type attempt struct {
	status  int // 0 when no response came
	latency time.Duration
	err     string // empty on 2xx
	refused bool   // the policy refused the address
}

func (a attempt) ok() bool   { return a.status >= 200 && a.status < 300 }
func (a attempt) gone() bool { return a.status == http.StatusGone }

// post sends one signed delivery of body to the endpoint.
func (d *Dispatcher) post(ctx context.Context, ep *endpoint, deliveryID string, body []byte) attempt {
	now := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.row.URL, bytes.NewReader(body))
	if err != nil {
		return attempt{err: "bad URL"}
	}
	sig, err := ep.signature(deliveryID, now, body)
	if err != nil {
		return attempt{err: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderID, deliveryID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(HeaderSignature, sig)
	resp, err := d.client.Do(req)
	lat := time.Since(now)
	if err != nil {
		return attempt{latency: lat, err: describe(err), refused: errors.Is(err, ErrRefusedAddress)}
	}
	snippet := make([]byte, 256)
	n, _ := io.ReadFull(resp.Body, snippet)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse-int64(n)))
	_ = resp.Body.Close()
	a := attempt{status: resp.StatusCode, latency: lat}
	switch {
	case a.ok():
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		a.err = fmt.Sprintf("HTTP %d: redirects are not followed", resp.StatusCode)
	default:
		a.err = fmt.Sprintf("HTTP %d", resp.StatusCode)
		if s := printable(snippet[:n]); s != "" {
			a.err += ": " + s
		}
	}
	return a
}

// describe is err without the URL (whose path or query may hold a
// receiver's secret).
func describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
		return "timeout"
	}
	return err.Error()
}

// printable is the start of a response body fit for the delivery log.
func printable(b []byte) string {
	b = bytes.TrimSpace(b)
	for !utf8.Valid(b) && len(b) > 0 {
		b = b[:len(b)-1]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 {
			return ' '
		}
		return r
	}, string(b))
}

// endpoint is what a pull loop knows of its webhook row.
type endpoint struct {
	row  store.Webhook
	host string
	keys [][]byte // the current secret's key, then the previous one's during a rotation
	err  error    // a secret that does not decode
}

func newEndpoint(w store.Webhook) *endpoint {
	ep := &endpoint{row: w}
	if u, err := url.Parse(w.URL); err == nil {
		ep.host = u.Hostname()
	}
	key, err := SecretKey(w.Secret)
	if err != nil {
		ep.err = fmt.Errorf("webhook %d: %w", w.ID, err)
		return ep
	}
	ep.keys = append(ep.keys, key)
	if w.PreviousSecret != nil && w.PreviousSecretUntil != nil {
		if k, err := SecretKey(*w.PreviousSecret); err == nil {
			ep.keys = append(ep.keys, k)
		}
	}
	return ep
}

// signature is the webhook-signature header: one v1 signature per key in
// use, space-separated (the previous secret's only until it expires).
func (ep *endpoint) signature(id string, now time.Time, body []byte) (string, error) {
	if ep.err != nil {
		return "", ep.err
	}
	sigs := make([]string, 0, len(ep.keys))
	for i, k := range ep.keys {
		if i > 0 && !now.Before(*ep.row.PreviousSecretUntil) {
			continue
		}
		sigs = append(sigs, signKey(k, id, now.Unix(), body))
	}
	return strings.Join(sigs, " "), nil
}
