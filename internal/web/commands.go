package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// command sends a request to whatever serves mentorado m's active
// provider and returns its reply, mapping failures to API errors: the
// connector owning the session on wa.<m>.cmd.<verb> for whatsapp_web (or
// no provider configured), the provider gateways on
// zapbus.provider.<p>.wa.<m>.cmd.<verb> for meta and zapi (issue #16). The
// active provider is cached per mentorado for providerCacheTTL; a
// wrong_provider reply (the cache was stale) drops the entry and the
// command is sent once more.
func (s *Server) command(ctx context.Context, m int64, verb event.Verb, req any) (*event.Reply, error) {
	p := s.activeProvider(ctx, m)
	reply, err := s.commandOn(ctx, p, m, verb, req)
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == event.CodeWrongProvider {
		s.forgetProvider(m)
		return s.commandOn(ctx, s.activeProvider(ctx, m), m, verb, req)
	}
	return reply, err
}

// commandOn sends the command to the subject of provider p.
func (s *Server) commandOn(ctx context.Context, p event.Provider, m int64, verb event.Verb, req any) (*event.Reply, error) {
	timeout := s.cfg.CommandTimeout
	if verb == event.VerbSend {
		timeout = s.cfg.SendTimeout
	}
	data := []byte("{}")
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return nil, fmt.Errorf("encode %s command: %w", verb, err)
		}
		data = b
	}
	subject, server := event.CommandSubject(m, verb), "the connector"
	gateway := p == event.ProviderMeta || p == event.ProviderZAPI
	if gateway {
		subject, server = event.ProviderCommandSubject(p, m, verb), "the "+string(p)+" provider gateway"
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := s.bus.Request(ctx, subject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders) && gateway:
		s.metrics.commands.WithLabelValues(string(verb), "no_responders").Inc()
		return nil, &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
			Message: "no provider gateway is running for " + string(p) + "; retry shortly", RetryAfter: 2}
	case errors.Is(err, nats.ErrNoResponders):
		s.metrics.commands.WithLabelValues(string(verb), "no_responders").Inc()
		return nil, &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
			Message: "no connector is serving this mentorado right now; retry shortly", RetryAfter: 2}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		s.metrics.commands.WithLabelValues(string(verb), "timeout").Inc()
		return nil, errorf(http.StatusGatewayTimeout, codeTimeout, "%s did not answer within %s", server, timeout)
	case err != nil:
		s.metrics.commands.WithLabelValues(string(verb), "error").Inc()
		return nil, &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
			Message: "command bus unavailable", RetryAfter: 2}
	}
	var reply event.Reply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		s.metrics.commands.WithLabelValues(string(verb), "bad_reply").Inc()
		return nil, fmt.Errorf("decode %s reply: %w", verb, err)
	}
	if reply.Error != nil {
		s.metrics.commands.WithLabelValues(string(verb), reply.Error.Code).Inc()
		return nil, commandError(reply.Error)
	}
	s.metrics.commands.WithLabelValues(string(verb), "ok").Inc()
	return &reply, nil
}

// providerCacheTTL bounds how long command routing trusts a cached
// active provider. An admin change on this notifier drops the entry at
// once; one on another notifier is seen within the TTL, and a command
// that reaches the wrong driver meanwhile is answered wrong_provider and
// re-routed.
const providerCacheTTL = 2 * time.Second

// providerCache is the per-mentorado cache of active providers.
type providerCache struct {
	mu sync.Mutex
	m  map[int64]cachedProvider
}

type cachedProvider struct {
	p  event.Provider
	at time.Time
}

// activeProvider is mentorado m's active provider, from the cache when it
// is fresh. A failed look-up (or a mentorado that does not exist) routes
// to the connector, which answers as before issue #16.
func (s *Server) activeProvider(ctx context.Context, m int64) event.Provider {
	now := time.Now()
	c := &s.provCache
	c.mu.Lock()
	e, ok := c.m[m]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < providerCacheTTL {
		return e.p
	}
	p, err := s.db.Providers().Active(ctx, m)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Warn().Err(err).Int64("mentorado", m).Msg("look up active provider; routing to the connector")
		}
		return ""
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) > 100_000 {
		c.m = make(map[int64]cachedProvider)
	}
	c.m[m] = cachedProvider{p: p, at: now}
	c.mu.Unlock()
	return p
}

// forgetProvider drops m's cached active provider.
func (s *Server) forgetProvider(m int64) {
	s.provCache.mu.Lock()
	delete(s.provCache.m, m)
	s.provCache.mu.Unlock()
}

// commandError maps a connector's error code to an HTTP error.
func commandError(ce *event.CommandError) *apiError {
	ae := &apiError{Code: ce.Code, Message: ce.Message}
	switch ce.Code {
	case event.CodeNotConnected, event.CodeAlreadyPaired:
		ae.Status = http.StatusConflict
	case event.CodeNotOnWhatsApp:
		ae.Status = http.StatusUnprocessableEntity
	case event.CodeInvalidPhone, event.CodeTextTooLong, event.CodeBadRequest, event.CodeInvalidChat, event.CodeTTL:
		ae.Status = http.StatusBadRequest
	case event.CodeMediaNotFound, event.CodeMessageUnknown:
		ae.Status = http.StatusNotFound
	case event.CodeMediaType:
		ae.Status = http.StatusUnprocessableEntity
	case event.CodeMediaTooLarge:
		ae.Status = http.StatusRequestEntityTooLarge
	case event.CodeNotEditable, event.CodeEditExpired, event.CodeNotInGroup:
		ae.Status = http.StatusConflict
	case event.CodeNotOwner, event.CodeUnavailable:
		ae.Status, ae.RetryAfter = http.StatusServiceUnavailable, 1
	case event.CodeDailyCap: // the mentorado's daily cap of unsolicited sends (issue #14)
		// The cap is per UTC day: retry when the next one begins.
		now := time.Now().UTC()
		next := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
		ae.Status, ae.RetryAfter = http.StatusTooManyRequests, max(1, int(next.Sub(now).Seconds()))
	case event.CodeOutsideWindow, event.CodeNotSupported, event.CodeNoProvider: // issue #16
		ae.Status = http.StatusUnprocessableEntity
	case event.CodeRateLimited:
		ae.Status, ae.RetryAfter = http.StatusTooManyRequests, 5
	case event.CodeProviderError:
		ae.Status = http.StatusBadGateway
	case event.CodeWrongProvider:
		ae.Status, ae.RetryAfter = http.StatusServiceUnavailable, 1
	case event.CodeUnknown: // the mentorado was deleted after authenticating
		ae.Status = http.StatusNotFound
	case event.CodeDisabled: // the mentorado was disabled after authenticating
		ae.Status = http.StatusForbidden
	default:
		ae.Status, ae.Code = http.StatusBadGateway, codeInternal
		if ae.Message == "" {
			ae.Message = "connector failed"
		}
	}
	return ae
}
