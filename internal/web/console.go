package web

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// The operator console (docs/decisions/0019-operator-console.md): the page
// /admin and its admin API — the fleet with its counts and stream lag, a
// disconnect action, dashboard passes, and a live stream of every
// mentorado's connection events.
func (s *Server) consoleRoutes() []route {
	admin := func(h http.HandlerFunc) http.Handler { return s.adminAuth(h) }
	return []route{
		{"GET", "/admin", http.HandlerFunc(s.handleConsole)},
		{"GET", "/v1/admin/fleet", admin(s.handleFleet)},
		{"POST", "/v1/admin/mentorados/{id}/disconnect", admin(s.handleAdminDisconnect)},
		{"POST", "/v1/admin/mentorados/{id}/dashboard-pass", admin(s.handleDashboardPass)},
		{"POST", "/v1/admin/stream-tickets", admin(s.handleAdminStreamTicket)},
		{"GET", "/v1/admin/events", s.adminStreamAuth(s.handleAdminEvents)},
	}
}

// consoleLagConsumer is the durable consumer whose lag the console shows:
// the persister's (persister.Config.Consumer's default).
const consoleLagConsumer = "persister"

// consoleLagTimeout bounds counting the page's per-mentorado lag; those not
// counted in time are reported as null.
const consoleLagTimeout = 2 * time.Second

// consoleMaxStreams caps the admin event streams open on one notifier.
const consoleMaxStreams = 32

// handleConsole serves the console page; it asks for the admin token
// itself (kept in sessionStorage).
func (s *Server) handleConsole(w http.ResponseWriter, r *http.Request) {
	b, err := assetsFS.ReadFile("assets/console.html")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Frame-Options", "DENY")
	_, _ = w.Write(b)
}

// fleetMentorado is one mentorado as the console lists it.
type fleetMentorado struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"` // the stored session status
	State  string `json:"state"`  // its fleet state (store.FleetStates)
	Reason string `json:"reason,omitempty"`
	Phone  string `json:"phone,omitempty"`
	// Disabled: its tokens are refused (state "disabled").
	Disabled bool `json:"disabled"`
	// StatusAt: when the stored status was reached; ConnectedSince is
	// StatusAt while connected.
	StatusAt       *time.Time `json:"status_at"`
	ConnectedSince *time.Time `json:"connected_since"`
	// LastEventAt: the newest of its last message and its last status change.
	LastEventAt   *time.Time `json:"last_event_at"`
	Connector     string     `json:"connector,omitempty"`
	Reconnects24h int64      `json:"reconnects_24h"`
	Bans24h       int64      `json:"bans_24h"`
	Unread        int64      `json:"unread"`
	// Lag: its events in WA_EVENTS the persister has not acknowledged; null
	// when it could not be counted in time.
	Lag *uint64 `json:"lag"`
}

// streamLag is the persister's lag over the whole fleet.
type streamLag struct {
	Consumer string `json:"consumer"`
	// Pending: events not yet acknowledged; null when unknown (Error).
	Pending *uint64 `json:"pending"`
	// OldestPendingSeconds: how long the oldest of them has been stored.
	OldestPendingSeconds *float64 `json:"oldest_pending_seconds"`
	Error                string   `json:"error,omitempty"`
}

type fleetResponse struct {
	Counts     store.FleetCounts `json:"counts"`
	Stream     streamLag         `json:"stream"`
	Mentorados []fleetMentorado  `json:"mentorados"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

// handleFleet lists the fleet: ?q= (name, phone or id), ?status= (a fleet
// state), ?limit= (1–200, default 50), ?cursor=. Counts are over the whole
// fleet, not the page.
func (s *Server) handleFleet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f := store.FleetFilter{Query: q.Get("q"), State: q.Get("status"), Limit: limit + 1}
	if f.State != "" && !slices.Contains(store.FleetStates, f.State) {
		s.writeError(w, r, errorf(http.StatusUnprocessableEntity, codeBadRequest,
			"status must be one of %s", strings.Join(store.FleetStates, ", ")))
		return
	}
	if len(f.Query) > 200 {
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "q must be at most 200 characters"))
		return
	}
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err == nil {
			f.After, err = strconv.ParseInt(string(b), 10, 64)
		}
		if err != nil || f.After <= 0 {
			s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "invalid cursor"))
			return
		}
	}
	counts, err := s.db.Fleet().Counts(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.db.Fleet().List(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := fleetResponse{Counts: counts, Mentorados: make([]fleetMentorado, 0, len(rows))}
	if len(rows) > limit {
		rows = rows[:limit]
		out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(rows[limit-1].ID, 10)))
	}
	for _, row := range rows {
		out.Mentorados = append(out.Mentorados, toFleetMentorado(row))
	}
	s.fleetLag(r.Context(), &out)
	writeJSON(w, http.StatusOK, out)
}

func toFleetMentorado(row store.FleetRow) fleetMentorado {
	fm := fleetMentorado{ID: row.ID, Name: row.Name, Status: row.Status, State: row.State, Reason: row.Reason,
		Phone: row.Phone, Disabled: row.Disabled, StatusAt: row.StatusAt, Connector: row.Connector,
		Reconnects24h: row.Reconnects24h, Bans24h: row.Bans24h, Unread: row.Unread}
	if row.Status == string(event.StatusConnected) {
		fm.ConnectedSince = row.StatusAt
	}
	fm.LastEventAt = row.StatusAt
	if row.LastMessageAt != nil && (fm.LastEventAt == nil || row.LastMessageAt.After(*fm.LastEventAt)) {
		fm.LastEventAt = row.LastMessageAt
	}
	return fm
}

// fleetLag fills the persister's lag: fleet-wide from its consumer, and
// per mentorado of the page 0 when nothing is pending (the normal case,
// no more calls), else counted past the consumer's ack floor (an upper
// bound: events acknowledged out of order above the floor count too),
// within consoleLagTimeout.
func (s *Server) fleetLag(ctx context.Context, out *fleetResponse) {
	out.Stream.Consumer = consoleLagConsumer
	bl, err := s.bus.ConsumerBacklog(ctx, bus.StreamEvents, consoleLagConsumer)
	if err != nil {
		out.Stream.Error = "consumer info unavailable"
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			out.Stream.Error = "no consumer " + consoleLagConsumer
		}
		s.log.Debug().Err(err).Msg("console: persister lag")
		return
	}
	out.Stream.Pending = &bl.Pending
	if bl.Pending == 0 {
		zero := float64(0)
		out.Stream.OldestPendingSeconds = &zero
		for i := range out.Mentorados {
			out.Mentorados[i].Lag = new(uint64)
		}
		return
	}
	lctx, cancel := context.WithTimeout(ctx, consoleLagTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if at, ok, err := s.bus.FirstAfter(lctx, bus.StreamEvents, "wa.*.evt.>", bl.AckFloor); err == nil && ok {
			age := max(time.Since(at).Seconds(), 0)
			out.Stream.OldestPendingSeconds = &age
		}
	}()
	sem := make(chan struct{}, 8)
	for i := range out.Mentorados {
		fm := &out.Mentorados[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-lctx.Done():
				return
			}
			defer func() { <-sem }()
			n, err := s.bus.CountAfter(lctx, bus.StreamEvents, event.MentoradoEvents(fm.ID), bl.AckFloor)
			if err == nil && lctx.Err() == nil {
				fm.Lag = &n
			}
		}()
	}
	wg.Wait()
}

// handleAdminDisconnect disconnects a mentorado's WhatsApp session (its
// pairing is kept; it reconnects when told to), like the tenant's own
// POST /v1/whatsapp/disconnect.
func (s *Server) handleAdminDisconnect(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	mi, err := s.mentoradoInfo(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	sess, ok := s.sessionCommand(r.Context(), id, event.VerbDisconnect)
	s.log.Info().Int64("mentorado", id).Str("session", sess.State).Msg("admin: session disconnected")
	if !ok {
		s.writeError(w, r, &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable, RetryAfter: 5,
			Message: "the session could not be disconnected: " + sess.Error})
		return
	}
	if mi, err = s.mentoradoInfo(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, adminStateResponse{mentoradoInfo: mi, Session: sess})
}

type dashboardPassResponse struct {
	ID        int64     `json:"id"`
	Pass      string    `json:"pass"`
	ExpiresAt time.Time `json:"expires_at"`
}

// handleDashboardPass issues a short-lived bearer for one mentorado's
// routes, so an admin can open its dashboard without its token. Each one
// issued is an audit log line.
func (s *Server) handleDashboardPass(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := s.mentoradoInfo(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	pass, exp, err := s.issueDashboardPass(r.Context(), id, time.Now())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.log.Info().Int64("mentorado", id).Time("expires_at", exp).Str("remote", r.RemoteAddr).
		Msg("audit: admin opened the mentorado's dashboard (dashboard pass issued)")
	writeJSON(w, http.StatusCreated, dashboardPassResponse{ID: id, Pass: pass, ExpiresAt: exp.UTC()})
}

// handleAdminStreamTicket issues a ticket for GET /v1/admin/events.
func (s *Server) handleAdminStreamTicket(w http.ResponseWriter, _ *http.Request) {
	t, exp := s.issueAdminTicket(time.Now())
	writeJSON(w, http.StatusCreated, ticketResponse{Ticket: t, ExpiresAt: exp.UTC()})
}

// consoleStreamsOpen counts the open admin streams of this process (one
// notifier per process in production).
var consoleStreamsOpen atomic.Int64

// handleAdminEvents streams every mentorado's connection events as
// Server-Sent Events ("event: connection", "id:" the WA_EVENTS sequence,
// "data:" the envelope), live only: the console reads the fleet first and
// applies what arrives after. A client that falls StreamBuffer events
// behind is dropped (EventSource reconnects; the console then reloads).
func (s *Server) handleAdminEvents(w http.ResponseWriter, r *http.Request) {
	if consoleStreamsOpen.Add(1) > consoleMaxStreams {
		consoleStreamsOpen.Add(-1)
		s.writeError(w, r, &apiError{Status: http.StatusTooManyRequests, Code: codeTooManyStreams,
			Message: "too many open admin streams", RetryAfter: 5})
		return
	}
	defer consoleStreamsOpen.Add(-1)
	frames := make(chan frame, s.cfg.StreamBuffer)
	dropped := make(chan struct{})
	var dropOnce sync.Once
	sub, err := s.bus.Subscribe(bus.LivePrefix+"wa.*.evt."+string(event.TypeConnection), func(msg *nats.Msg) {
		seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil || seq == 0 {
			return
		}
		select {
		case frames <- frame{Seq: seq, Event: string(event.TypeConnection), Data: msg.Data}:
		default:
			dropOnce.Do(func() { close(dropped) })
		}
	})
	if err != nil {
		s.writeError(w, r, fmt.Errorf("subscribe connection events: %w", err))
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	fctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	err = s.bus.Flush(fctx)
	cancel()
	if err != nil {
		s.writeError(w, r, fmt.Errorf("flush subscription: %w", err))
		return
	}
	s.metrics.clients.WithLabelValues("admin_sse").Inc()
	defer s.metrics.clients.WithLabelValues("admin_sse").Dec()
	log := s.log.With().Str("transport", "admin_sse").Logger()
	log.Debug().Msg("admin stream opened")

	write, err := s.openSSE(w)
	if err != nil {
		return
	}
	ticker := time.NewTicker(s.cfg.Heartbeat)
	defer ticker.Stop()
	for {
		buf := sseBufs.Get().(*bytes.Buffer)
		buf.Reset()
		select {
		case <-r.Context().Done():
			return
		case <-s.streamsDone:
			return
		case <-dropped:
			s.metrics.dropped.WithLabelValues("admin_sse", "buffer_full").Inc()
			log.Info().Msg("slow admin stream client dropped")
			return
		case <-ticker.C:
			buf.WriteString(": ping\n\n")
		case fr := <-frames:
			encodeSSE(buf, fr)
		}
		err := write(buf.Bytes())
		if buf.Cap() <= 64<<10 {
			sseBufs.Put(buf)
		}
		if err != nil {
			s.metrics.dropped.WithLabelValues("admin_sse", "write_failed").Inc()
			log.Debug().Err(err).Msg("admin stream write failed")
			return
		}
	}
}
