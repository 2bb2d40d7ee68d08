package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Error codes of the HTTP API, stable for clients. Command failures reuse the
// codes of event.CommandError.
const (
	codeBadRequest       = "bad_request"
	codeBadJSON          = "bad_json"
	codeTooLarge         = "too_large"
	codeUnauthorized     = "unauthorized"
	codeNotFound         = "not_found"
	codeMethodNotAllowed = "method_not_allowed"
	codeUnavailable      = "unavailable"
	codeTimeout          = "timeout"
	codeInternal         = "internal"
	codeNoQR             = "no_qr"
)

// apiError is an error with an HTTP status and a stable code.
type apiError struct {
	Status  int
	Code    string
	Message string
	// RetryAfter, when set, is sent as Retry-After (seconds).
	RetryAfter int
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// writeJSON writes v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encode response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// writeError writes err as a JSON error. Errors that are not *apiError are
// logged and answered with 500 without their text.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		s.log.Error().Err(err).Str("route", routeOf(r)).Msg("request failed")
		ae = errorf(http.StatusInternalServerError, codeInternal, "internal error")
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	writeJSON(w, ae.Status, errorBody{Error: errorDetail{Code: ae.Code, Message: ae.Message}})
}

// decodeJSON reads one JSON object into v: the body is capped, unknown
// fields and trailing data are rejected.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, codeBadRequest, "content type must be application/json")
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonError(err)
		}
		return errorf(http.StatusBadRequest, codeBadJSON, "unexpected data after the JSON object")
	}
	return nil
}

func jsonError(err error) error {
	var mbe *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, codeTooLarge, "body larger than %d bytes", mbe.Limit)
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, codeBadJSON, "empty body, want a JSON object")
	case errors.As(err, &syn), errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, codeBadJSON, "malformed JSON")
	case errors.As(err, &typ):
		return errorf(http.StatusBadRequest, codeBadJSON, "field %q has the wrong type", typ.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errorf(http.StatusBadRequest, codeBadJSON, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return errorf(http.StatusBadRequest, codeBadJSON, "invalid JSON body")
}

// routeOf is the matched ServeMux pattern, or "unmatched".
func routeOf(r *http.Request) string {
	if r.Pattern == "" {
		return "unmatched"
	}
	return r.Pattern
}

// statusWriter records the status code. It forwards Flush and Unwrap so SSE
// and websocket hijacking work through it.
type statusWriter struct {
	http.ResponseWriter
	status int
	// jsonErrors turns the mux's plain-text 404/405 into JSON errors.
	jsonErrors bool
	suppress   bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	w.status = code
	if w.jsonErrors && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed) {
		w.suppress = true
		ae := errorf(code, codeNotFound, "no such route")
		if code == http.StatusMethodNotAllowed {
			ae = errorf(code, codeMethodNotAllowed, "method not allowed; allowed: %s", w.Header().Get("Allow"))
		}
		b, _ := json.Marshal(errorBody{Error: errorDetail{Code: ae.Code, Message: ae.Message}})
		h := w.Header()
		h.Del("X-Content-Type-Options")
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(b)+1))
		w.ResponseWriter.WriteHeader(code)
		_, _ = w.ResponseWriter.Write(append(b, '\n'))
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.suppress {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// middleware logs (route pattern, status, duration — never the query string
// or headers, which may carry tickets and tokens), counts requests and
// recovers panics.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_, pattern := s.mux.Handler(r)
		sw := &statusWriter{ResponseWriter: w, jsonErrors: pattern == ""}
		sw.Header().Set("X-Content-Type-Options", "nosniff")
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error().Str("route", routeOf(r)).Interface("panic", p).Msg("handler panic")
				if sw.status == 0 {
					s.writeError(sw, r, errorf(http.StatusInternalServerError, codeInternal, "internal error"))
				}
			}
			status := sw.status
			if status == 0 {
				status = http.StatusOK
			}
			route := pattern
			if route == "" {
				route = "unmatched"
			}
			s.metrics.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
			lvl := zerolog.DebugLevel
			if status >= 500 {
				lvl = zerolog.WarnLevel
			}
			s.log.WithLevel(lvl).Str("method", r.Method).Str("route", route).Int("status", status).
				Dur("took", time.Since(start)).Msg("http request")
		}()
		next.ServeHTTP(sw, r)
	})
}

// newStdLogger adapts zerolog for http.Server.ErrorLog.
func newStdLogger(l zerolog.Logger) *log.Logger {
	return log.New(stdWriter{l}, "", 0)
}

type stdWriter struct{ l zerolog.Logger }

func (w stdWriter) Write(p []byte) (int, error) {
	w.l.Warn().Str("source", "net/http").Msg(string(bytes.TrimSpace(p)))
	return len(p), nil
}
