package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"
)

// Tenants, tokens and limits
//
//   - Every open SSE / websocket stream is registered with the mentorado and
//     the hash of the token it authenticated with (a ticket carries its
//     token). Rotating a token, disabling or deleting a mentorado publishes a
//     revocation on RevokeSubject; every notifier ends the matching streams
//     at once. A periodic recheck against Postgres (StreamAuthRecheck) ends
//     what a lost core-NATS message would have missed.
//   - Sends and stream opens are rate limited per token (token buckets);
//     concurrent streams are capped per mentorado on each notifier.
//     Rejections are 429 with Retry-After.

// RevokeSubject carries stream revocations between notifiers (core NATS,
// not stored): a JSON revocation.
const RevokeSubject = "zapbus.notifier.revoke"

// revocation ends streams of MentoradoID: those opened with the token
// TokenID names, or every one when TokenID is empty.
type revocation struct {
	MentoradoID int64  `json:"mentorado_id"`
	TokenID     string `json:"token_id,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// tokenID names a token without revealing it or its stored hash: a
// digest of the hash, safe to publish and log.
func tokenID(hash []byte) string {
	if len(hash) == 0 {
		return ""
	}
	h := sha256.Sum256(append([]byte("zapbus token id\x00"), hash...))
	return hex.EncodeToString(h[:12])
}

var (
	errRevoked         = errors.New("token revoked")
	errTooManyStreams  = &apiError{Status: http.StatusTooManyRequests, Code: codeTooManyStreams, Message: "too many open streams for this mentorado", RetryAfter: 5}
	errStreamAuthStale = errors.New("stream credentials no longer valid")
)

// liveStream is one open SSE or websocket stream.
type liveStream struct {
	m       int64
	tokenID string
	cancel  context.CancelCauseFunc
}

// streamRegistry holds the open streams of this notifier by mentorado.
type streamRegistry struct {
	mu  sync.Mutex
	byM map[int64]map[*liveStream]struct{}
}

func (g *streamRegistry) count(m int64) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.byM[m])
}

// add registers ls unless its mentorado already has max streams (max ≤ 0:
// no cap).
func (g *streamRegistry) add(ls *liveStream, max int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if max > 0 && len(g.byM[ls.m]) >= max {
		return false
	}
	if g.byM == nil {
		g.byM = make(map[int64]map[*liveStream]struct{})
	}
	if g.byM[ls.m] == nil {
		g.byM[ls.m] = make(map[*liveStream]struct{})
	}
	g.byM[ls.m][ls] = struct{}{}
	return true
}

// endLocked cancels with cause and forgets the streams of m that match (every
// one when match is nil) and returns how many it ended. The caller holds
// g.mu.
func (g *streamRegistry) endLocked(m int64, match func(*liveStream) bool, cause error) int {
	n := 0
	for ls := range g.byM[m] {
		if match == nil || match(ls) {
			ls.cancel(cause)
			delete(g.byM[m], ls)
			n++
		}
	}
	if len(g.byM[m]) == 0 {
		delete(g.byM, m)
	}
	return n
}

// remove forgets ls (a stream that ended by itself).
func (g *streamRegistry) remove(ls *liveStream) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.endLocked(ls.m, func(x *liveStream) bool { return x == ls }, nil)
}

// revoke ends the streams of m opened with token tid (every one when tid
// is empty) and returns how many it ended.
func (g *streamRegistry) revoke(m int64, tid string, cause error) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	var match func(*liveStream) bool
	if tid != "" {
		match = func(ls *liveStream) bool { return ls.tokenID == tid }
	}
	return g.endLocked(m, match, cause)
}

// openStream admits a new stream of the authenticated mentorado of r: the
// stream-open rate limit and the per-mentorado cap, then registration. The
// returned context ends when the stream is revoked (context.Cause is
// errRevoked) or r ends; call done when the stream ends.
func (s *Server) openStream(r *http.Request) (context.Context, func(), error) {
	m := mustMentorado(r)
	hash := tokenHashFrom(r.Context())
	tid := tokenID(hash)
	if err := s.streamOpens.allow(tid, time.Now()); err != nil {
		s.metrics.rejected.WithLabelValues("stream_open_rate").Inc()
		return nil, nil, err
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	ls := &liveStream{m: m, tokenID: tid, cancel: cancel}
	if !s.streams.add(ls, s.cfg.MaxStreamsPerMentorado) {
		cancel(nil)
		s.metrics.rejected.WithLabelValues("stream_cap").Inc()
		return nil, nil, errTooManyStreams
	}
	done := func() {
		s.streams.remove(ls)
		cancel(nil)
	}
	// A rotation that committed after this request authenticated but
	// before the stream was registered sent its revocation too early:
	// check the credentials once more now that the stream is visible.
	cur, err := s.tokenHashOf(ctx, m)
	if err != nil {
		done()
		return nil, nil, err
	}
	if tokenID(cur) != tid {
		done()
		return nil, nil, errUnauthorized
	}
	return ctx, done, nil
}

// revoked reports whether a stream context ended by revocation.
func revoked(ctx context.Context) bool {
	c := context.Cause(ctx)
	return errors.Is(c, errRevoked) || errors.Is(c, errStreamAuthStale)
}

// revoke ends matching streams here and on every other notifier.
func (s *Server) revoke(m int64, tid, reason string) {
	n := s.streams.revoke(m, tid, errRevoked)
	b, _ := json.Marshal(revocation{MentoradoID: m, TokenID: tid, Reason: reason})
	fctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.bus.PublishCore(RevokeSubject, b); err != nil {
		s.log.Error().Err(err).Int64("mentorado", m).Msg("publish stream revocation (other notifiers end the streams at their next recheck)")
	} else if err := s.bus.Flush(fctx); err != nil {
		s.log.Warn().Err(err).Int64("mentorado", m).Msg("flush stream revocation")
	}
	s.log.Info().Int64("mentorado", m).Str("reason", reason).Int("streams", n).Msg("streams revoked")
}

func (s *Server) onRevoke(msg *nats.Msg) {
	var rv revocation
	if err := json.Unmarshal(msg.Data, &rv); err != nil || rv.MentoradoID <= 0 {
		s.log.Warn().Msg("undecodable stream revocation ignored")
		return
	}
	if n := s.streams.revoke(rv.MentoradoID, rv.TokenID, errRevoked); n > 0 {
		s.log.Info().Int64("mentorado", rv.MentoradoID).Str("reason", rv.Reason).Int("streams", n).Msg("streams revoked")
	}
}

// recheckStreams ends streams whose token is no longer the mentorado's
// current one (or whose mentorado is disabled or gone): the backstop for a
// revocation message this notifier did not receive.
func (s *Server) recheckStreams(ctx context.Context) {
	s.streams.mu.Lock()
	ids := make([]int64, 0, len(s.streams.byM))
	for m := range s.streams.byM {
		ids = append(ids, m)
	}
	s.streams.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	hashes, err := s.db.Mentorados().EnabledTokenHashes(ctx, ids)
	if err != nil {
		s.log.Warn().Err(err).Msg("recheck stream credentials")
		return
	}
	current := make(map[int64]string, len(hashes))
	for id, hash := range hashes {
		current[id] = tokenID(hash)
	}
	g := &s.streams
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range ids {
		cur, ok := current[m]
		stale := func(ls *liveStream) bool { return !ok || cur == "" || ls.tokenID != cur }
		if n := g.endLocked(m, stale, errStreamAuthStale); n > 0 {
			s.log.Info().Int64("mentorado", m).Int("streams", n).Msg("streams with stale credentials ended")
		}
	}
}

func (s *Server) recheckLoop() {
	t := time.NewTicker(s.cfg.StreamAuthRecheck)
	defer t.Stop()
	for {
		select {
		case <-s.streamsDone:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			s.recheckStreams(ctx)
			cancel()
		}
	}
}

// limiterSet is one token bucket per key (a token id), created on first
// use and forgotten after idle minutes. A non-positive rate disables it.
type limiterSet struct {
	what  string
	rate  rate.Limit
	burst int

	mu        sync.Mutex
	m         map[string]*limiterEntry
	lastSweep time.Time
}

type limiterEntry struct {
	lim  *rate.Limiter
	used time.Time
}

const limiterIdle = 10 * time.Minute

func newLimiterSet(what string, perSecond float64, burst int) *limiterSet {
	return &limiterSet{what: what, rate: rate.Limit(perSecond), burst: burst, m: make(map[string]*limiterEntry)}
}

// allow takes one token for key, or returns a 429 error saying when to
// retry.
func (l *limiterSet) allow(key string, now time.Time) error {
	if l == nil || l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		for k, e := range l.m {
			if now.Sub(e.used) > limiterIdle {
				delete(l.m, k)
			}
		}
		l.lastSweep = now
	}
	e := l.m[key]
	if e == nil {
		e = &limiterEntry{lim: rate.NewLimiter(l.rate, l.burst)}
		l.m[key] = e
	}
	e.used = now
	res := e.lim.ReserveN(now, 1)
	if !res.OK() {
		return &apiError{Status: http.StatusTooManyRequests, Code: codeRateLimited, Message: l.what + " rate limit exceeded", RetryAfter: 60}
	}
	d := res.DelayFrom(now)
	if d == 0 {
		return nil
	}
	res.CancelAt(now)
	return &apiError{Status: http.StatusTooManyRequests, Code: codeRateLimited,
		Message:    fmt.Sprintf("%s rate limit exceeded (%g per second, burst %d)", l.what, float64(l.rate), l.burst),
		RetryAfter: int(math.Ceil(d.Seconds()))}
}

// limitSends wraps the send handler with the per-token send rate limit.
func (s *Server) limitSends(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.sends.allow(tokenID(tokenHashFrom(r.Context())), time.Now()); err != nil {
			s.metrics.rejected.WithLabelValues("send_rate").Inc()
			s.writeError(w, r, err)
			return
		}
		h(w, r)
	}
}
