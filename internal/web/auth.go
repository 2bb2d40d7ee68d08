package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// Authentication
//
//   - Admin routes: "Authorization: Bearer <admin token>", compared in
//     constant time (both sides hashed first, so lengths do not leak).
//   - Mentorado routes: "Authorization: Bearer <mentorado token>". Tokens are
//     32 random bytes shown once; only their SHA-256 is stored
//     (mentorados.token_hash) and looked up.
//   - Streams (GET /v1/events, GET /v1/ws) also accept the bearer header; for
//     browsers, which cannot set headers on EventSource or WebSocket, they
//     accept "?ticket=<ticket>" where the ticket comes from
//     POST /v1/stream-tickets. A ticket is an HMAC over (mentorado, expiry,
//     current token hash): it expires after TicketTTL (60 s), is useless for
//     any other route, and dies when the token is rotated. Query strings are
//     never logged.

// tokenPrefix marks zapbus mentorado tokens so secret scanners can find them.
const tokenPrefix = "zbt_"

type ctxKey int

const (
	mentoradoKey ctxKey = 1
	tokenHashKey ctxKey = 2
)

// MentoradoFrom returns the authenticated mentorado of a request context
// (set by RequireMentorado and every mentorado-scoped route).
func MentoradoFrom(ctx context.Context) (int64, bool) {
	id, ok := ctx.Value(mentoradoKey).(int64)
	return id, ok
}

func withMentorado(ctx context.Context, id int64) context.Context {
	return context.WithValue(ctx, mentoradoKey, id)
}

// withToken records the hash of the token a request authenticated with
// (directly, or through a stream ticket signed over it): rate limits and
// stream revocation are per token.
func withToken(ctx context.Context, id int64, hash []byte) context.Context {
	return context.WithValue(withMentorado(ctx, id), tokenHashKey, hash)
}

func tokenHashFrom(ctx context.Context) []byte {
	h, _ := ctx.Value(tokenHashKey).([]byte)
	return h
}

// newToken returns a fresh token and its stored hash.
func newToken() (token string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("token: %w", err)
	}
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, hashToken(token), nil
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

var errUnauthorized = &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Message: "missing or invalid credentials"}

// errDisabled answers a valid credential of a disabled mentorado: nothing
// is served until an admin enables it again.
var errDisabled = &apiError{Status: http.StatusForbidden, Code: event.CodeDisabled, Message: "this mentorado is disabled; an admin can enable it again"}

func (s *Server) adminAuth(h http.HandlerFunc) http.HandlerFunc {
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	return func(w http.ResponseWriter, r *http.Request) {
		tok, _ := bearer(r)
		got := sha256.Sum256([]byte(tok))
		if tok == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="zapbus-admin"`)
			s.writeError(w, r, errUnauthorized)
			return
		}
		s.bodyDeadline(w, r)
		h(w, r)
	}
}

// bearerIdentity authenticates a mentorado bearer: a mentorado token, or
// a dashboard pass an admin issued from the console. It returns the
// mentorado and the hash of its token (the pass stands for the token it
// was signed over: rate limits and revocation treat them alike).
func (s *Server) bearerIdentity(ctx context.Context, tok string) (int64, []byte, error) {
	if strings.HasPrefix(tok, dashboardPassPrefix) {
		return s.verifyDashboardPass(ctx, tok)
	}
	id, err := s.lookupToken(ctx, tok)
	if err != nil {
		return 0, nil, err
	}
	return id, hashToken(tok), nil
}

// lookupToken returns the enabled mentorado owning token.
func (s *Server) lookupToken(ctx context.Context, token string) (int64, error) {
	if !strings.HasPrefix(token, tokenPrefix) || len(token) > 128 {
		return 0, errUnauthorized
	}
	id, disabled, err := s.db.Mentorados().ByTokenHash(ctx, hashToken(token))
	if errors.Is(err, store.ErrNotFound) {
		return 0, errUnauthorized
	}
	if err != nil {
		return 0, fmt.Errorf("look up token: %w", err)
	}
	if disabled {
		return 0, errDisabled
	}
	return id, nil
}

func (s *Server) mentoradoAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="zapbus"`)
			s.writeError(w, r, errUnauthorized)
			return
		}
		id, hash, err := s.bearerIdentity(r.Context(), tok)
		if err != nil {
			if errors.Is(err, errUnauthorized) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="zapbus"`)
			}
			s.writeError(w, r, err)
			return
		}
		s.bodyDeadline(w, r)
		h(w, r.WithContext(withToken(r.Context(), id, hash)))
	}
}

// streamAuth accepts the bearer header or a stream ticket.
func (s *Server) streamAuth(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var (
			id   int64
			hash []byte
			err  error
		)
		if tok, ok := bearer(r); ok {
			id, hash, err = s.bearerIdentity(r.Context(), tok)
		} else if t := r.URL.Query().Get("ticket"); t != "" {
			id, hash, err = s.verifyTicket(r.Context(), t)
		} else {
			err = errUnauthorized
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		h(w, r.WithContext(withToken(r.Context(), id, hash)))
	}
}

// tokenHashOf returns the current token hash of an enabled mentorado.
func (s *Server) tokenHashOf(ctx context.Context, m int64) ([]byte, error) {
	hash, disabled, err := s.db.Mentorados().TokenHash(ctx, m)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(hash) == 0) {
		return nil, errUnauthorized
	}
	if err != nil {
		return nil, fmt.Errorf("look up token hash: %w", err)
	}
	if disabled {
		return nil, errDisabled
	}
	return hash, nil
}

// issueTicket signs a stream ticket for m: valid TicketTTL, and only while
// m's token is the one it was issued under.
func (s *Server) issueTicket(ctx context.Context, m int64, now time.Time) (string, time.Time, error) {
	exp := now.Add(s.cfg.TicketTTL).Truncate(time.Second)
	t, err := s.signMentorado(ctx, ticketPurpose, m, exp)
	return t, exp, err
}

// verifyTicket returns the mentorado of a valid ticket and the hash of the
// token it was issued with (still that mentorado's current token).
func (s *Server) verifyTicket(ctx context.Context, t string) (int64, []byte, error) {
	return s.verifyMentorado(ctx, ticketPurpose, t)
}

// Purposes of the credentials signed by signMentorado: one per kind, so a
// credential of one kind never verifies as another.
const (
	ticketPurpose        = "zapbus-ticket-v1"
	dashboardPassPurpose = "zapbus-dashboard-pass-v1"
)

// signMentorado signs (m, exp) for purpose, bound to m's current token
// hash: base64url of the 16-byte payload and an HMAC-SHA256 under
// TicketKey over the purpose, the payload and the hash. Rotating the token
// (or disabling the mentorado) voids every credential signed before.
func (s *Server) signMentorado(ctx context.Context, purpose string, m int64, exp time.Time) (string, error) {
	hash, err := s.tokenHashOf(ctx, m)
	if err != nil {
		return "", err
	}
	payload := binary.BigEndian.AppendUint64(nil, uint64(m))
	payload = binary.BigEndian.AppendUint64(payload, uint64(exp.Unix()))
	return base64.RawURLEncoding.EncodeToString(append(payload, s.mentoradoMAC(purpose, payload, hash)...)), nil
}

// verifyMentorado returns the mentorado of a valid, unexpired credential
// signed for purpose and its current token hash.
func (s *Server) verifyMentorado(ctx context.Context, purpose, t string) (int64, []byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil || len(raw) != 16+sha256.Size {
		return 0, nil, errUnauthorized
	}
	payload, mac := raw[:16], raw[16:]
	m := int64(binary.BigEndian.Uint64(payload[:8]))
	exp := time.Unix(int64(binary.BigEndian.Uint64(payload[8:])), 0)
	if m <= 0 || time.Now().After(exp) {
		return 0, nil, errUnauthorized
	}
	hash, err := s.tokenHashOf(ctx, m)
	if err != nil {
		return 0, nil, err
	}
	if !hmac.Equal(mac, s.mentoradoMAC(purpose, payload, hash)) {
		return 0, nil, errUnauthorized
	}
	return m, hash, nil
}

func (s *Server) mentoradoMAC(purpose string, payload, tokenHash []byte) []byte {
	h := hmac.New(sha256.New, s.cfg.TicketKey)
	h.Write([]byte(purpose + "\x00"))
	h.Write(payload)
	h.Write(tokenHash)
	return h.Sum(nil)
}

// Credentials the operator console issues (docs/decisions/0019):
//
//   - Admin stream tickets ("adm_…", POST /v1/admin/stream-tickets) open
//     GET /v1/admin/events from a browser. An HMAC over the expiry and the
//     admin token's hash, in their own domain: a tenant ticket is not an
//     admin ticket nor the other way round, and changing the admin token
//     voids them.
//   - Dashboard passes ("zbd_…", POST /v1/admin/mentorados/{id}/dashboard-pass)
//     let an admin open one mentorado's dashboard: a bearer for that
//     mentorado's routes only, for DashboardPassTTL, signed over the
//     mentorado's current token hash like a stream ticket (rotating the
//     token or disabling the mentorado voids it). Every tenant route stays
//     scoped to the one mentorado the pass names.

const (
	adminTicketPrefix   = "adm_"
	dashboardPassPrefix = "zbd_"
	// DashboardPassTTL is how long a dashboard pass works.
	DashboardPassTTL = time.Hour
)

func (s *Server) adminTicketMAC(payload []byte) []byte {
	admin := sha256.Sum256([]byte(s.cfg.AdminToken))
	h := hmac.New(sha256.New, s.cfg.TicketKey)
	h.Write([]byte("zapbus-admin-ticket-v1\x00"))
	h.Write(payload)
	h.Write(admin[:])
	return h.Sum(nil)
}

// issueAdminTicket returns a ticket for the admin stream, valid for TicketTTL.
func (s *Server) issueAdminTicket(now time.Time) (string, time.Time) {
	exp := now.Add(s.cfg.TicketTTL).Truncate(time.Second)
	payload := binary.BigEndian.AppendUint64(nil, uint64(exp.Unix()))
	return adminTicketPrefix + base64.RawURLEncoding.EncodeToString(append(payload, s.adminTicketMAC(payload)...)), exp
}

// verifyAdminTicket accepts an unexpired admin ticket.
func (s *Server) verifyAdminTicket(t string, now time.Time) error {
	rest, ok := strings.CutPrefix(t, adminTicketPrefix)
	if !ok {
		return errUnauthorized
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) != 8+sha256.Size {
		return errUnauthorized
	}
	payload, mac := raw[:8], raw[8:]
	if !hmac.Equal(mac, s.adminTicketMAC(payload)) || now.After(time.Unix(int64(binary.BigEndian.Uint64(payload)), 0)) {
		return errUnauthorized
	}
	return nil
}

// adminStreamAuth accepts the admin bearer or an admin stream ticket.
func (s *Server) adminStreamAuth(h http.HandlerFunc) http.HandlerFunc {
	bearerOK := s.adminAuth(h)
	return func(w http.ResponseWriter, r *http.Request) {
		if _, ok := bearer(r); ok {
			bearerOK(w, r)
			return
		}
		if err := s.verifyAdminTicket(r.URL.Query().Get("ticket"), time.Now()); err != nil {
			s.writeError(w, r, err)
			return
		}
		h(w, r)
	}
}

// issueDashboardPass signs (mentorado, expiry) over m's current token hash.
func (s *Server) issueDashboardPass(ctx context.Context, m int64, now time.Time) (string, time.Time, error) {
	exp := now.Add(DashboardPassTTL).Truncate(time.Second)
	t, err := s.signMentorado(ctx, dashboardPassPurpose, m, exp)
	if err != nil {
		return "", time.Time{}, err
	}
	return dashboardPassPrefix + t, exp, nil
}

// verifyDashboardPass returns the mentorado of a valid pass and its
// current token hash.
func (s *Server) verifyDashboardPass(ctx context.Context, t string) (int64, []byte, error) {
	return s.verifyMentorado(ctx, dashboardPassPurpose, strings.TrimPrefix(t, dashboardPassPrefix))
}
