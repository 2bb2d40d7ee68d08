package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
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
	codeRateLimited      = "rate_limited"
	codeTooManyStreams   = "too_many_streams"
	codeForbidden        = "forbidden"
	codeUpgradeRequired  = "upgrade_required"
	codeBodyTimeout      = "body_timeout"
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

// WriteJSON writes v with status as the API does (routes added with
// Server.Mount answer the same way).
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// WriteError writes the API's JSON error shape,
// {"error":{"code":…,"message":…}}, with status.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorBody{Error: errorDetail{Code: code, Message: message}})
}

// ReadJSON reads the optional JSON body of a route added with Mount into v
// by the API's rules (capped at MaxBodyBytes, JSON content type, no unknown
// fields, no trailing data), except that an empty body is an empty request
// and leaves v as it is. On failure it writes the API's JSON error and
// returns false.
func (s *Server) ReadJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := s.decodeBody(w, r, v, true); err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// decodeJSON reads one JSON object into v: the body is capped, unknown
// fields and trailing data are rejected.
func (s *Server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	return s.decodeBody(w, r, v, false)
}

// decodeBody is decodeJSON; optional accepts an empty body.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	return s.decodeBodyLimit(w, r, v, optional, s.cfg.MaxBodyBytes)
}

// decodeBodyLimit is decodeBody with its own cap on the body (a campaign's
// list of phones is larger than other requests).
func (s *Server) decodeBodyLimit(w http.ResponseWriter, r *http.Request, v any, optional bool, limit int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, codeBadRequest, "content type must be application/json")
	}
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if optional && errors.Is(err, io.EOF) {
			return nil
		}
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
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(http.StatusRequestTimeout, codeBodyTimeout, "request body not received in time")
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
//
// Every error response leaves as the JSON error shape: an error status
// written by code that is not ours (the mux's 404/405, http.Error in
// websocket.Accept or the file server) replaces its plain-text body with
// JSON, and on an unmatched route a redirect becomes a JSON 404.
type statusWriter struct {
	http.ResponseWriter
	status int
	// unmatched: no route matched the request.
	unmatched bool
	suppress  bool
}

// plainErrorCodes names the API code of a foreign plain-text error status.
var plainErrorCodes = map[int]string{
	http.StatusBadRequest:            codeBadRequest,
	http.StatusUnauthorized:          codeUnauthorized,
	http.StatusForbidden:             codeForbidden,
	http.StatusNotFound:              codeNotFound,
	http.StatusMethodNotAllowed:      codeMethodNotAllowed,
	http.StatusRequestTimeout:        codeBodyTimeout,
	http.StatusRequestEntityTooLarge: codeTooLarge,
	http.StatusUpgradeRequired:       codeUpgradeRequired,
	http.StatusTooManyRequests:       codeRateLimited,
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	h := w.Header()
	foreignError := code >= 400 && !strings.HasPrefix(h.Get("Content-Type"), "application/json")
	if w.unmatched && code >= 300 && code < 400 {
		code, foreignError = http.StatusNotFound, true
		h.Del("Location")
	}
	w.status = code
	if !foreignError {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.suppress = true
	var ae *apiError
	switch c, ok := plainErrorCodes[code]; {
	case code == http.StatusNotFound:
		ae = errorf(code, codeNotFound, "no such route")
	case code == http.StatusMethodNotAllowed:
		ae = errorf(code, codeMethodNotAllowed, "method not allowed; allowed: %s", h.Get("Allow"))
	case code == http.StatusUpgradeRequired:
		ae = errorf(code, codeUpgradeRequired, "this route is a websocket; send a websocket upgrade request")
	case ok:
		ae = errorf(code, c, "%s", strings.ToLower(http.StatusText(code)))
	case code >= 500:
		ae = errorf(code, codeInternal, "internal error")
	default:
		ae = errorf(code, codeBadRequest, "%s", strings.ToLower(http.StatusText(code)))
	}
	b, _ := json.Marshal(errorBody{Error: errorDetail{Code: ae.Code, Message: ae.Message}})
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.ResponseWriter.WriteHeader(code)
	_, _ = w.ResponseWriter.Write(append(b, '\n'))
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
		if !s.patterns[pattern] {
			pattern = "" // the mux's own 404, 405 or path-cleaning redirect
		}
		sw := &statusWriter{ResponseWriter: w, unmatched: pattern == ""}
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
		if r.Method != http.MethodConnect && r.URL.Path != cleanPath(r.URL.Path) {
			// The mux would answer with an HTML redirect to the cleaned
			// path ("/v1/conversations//messages" → "/v1/conversations/messages"),
			// which for an API means another route than the one asked for.
			s.writeError(sw, r, errorf(http.StatusNotFound, codeNotFound, "no such route (path is not canonical)"))
			return
		}
		next.ServeHTTP(sw, r)
	})
}

// cleanPath is the ServeMux's canonical form of a path: path.Clean, keeping
// a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// bodyDeadline bounds reading the body of an authenticated request to
// BodyReadTimeout, so a client trickling bytes cannot hold a connection and
// a handler open. The deadline is lifted as soon as the body is read (or
// closed): net/http then reads the connection in the background to notice a
// client going away, and a deadline firing there would cancel the request.
func (s *Server) bodyDeadline(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)); err != nil {
		return // not supported by this writer (tests with a recorder)
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
}

// deadlineBody lifts the read deadline once the body is read or closed,
// unless the deadline fired: then the connection stays unreadable, and
// net/http closes it instead of draining the rest of a trickling body.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	once     sync.Once
	timedOut bool
}

func (b *deadlineBody) lift() {
	b.once.Do(func() {
		if !b.timedOut {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	})
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		b.timedOut = true
	}
	if err != nil {
		b.lift()
	}
	return n, err
}

func (b *deadlineBody) Close() error {
	b.lift()
	return b.ReadCloser.Close()
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
