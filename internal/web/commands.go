package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/zapbus/zapbus/internal/event"
)

// command sends a request to the connector owning mentorado m on
// wa.<m>.cmd.<verb> and returns its reply, mapping failures to API errors.
func (s *Server) command(ctx context.Context, m int64, verb event.Verb, req any) (*event.Reply, error) {
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
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	msg, err := s.bus.Request(ctx, event.CommandSubject(m, verb), data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		s.metrics.commands.WithLabelValues(string(verb), "no_responders").Inc()
		return nil, &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable,
			Message: "no connector is serving this mentorado right now; retry shortly", RetryAfter: 2}
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		s.metrics.commands.WithLabelValues(string(verb), "timeout").Inc()
		return nil, errorf(http.StatusGatewayTimeout, codeTimeout, "the connector did not answer within %s", timeout)
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
