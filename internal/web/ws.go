package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// wsFrame is one websocket text message. ID is the stream sequence (absent
// on qr frames), Data the envelope as stored.
type wsFrame struct {
	ID    uint64          `json:"id,omitempty"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// handleWS streams the same frames as handleEvents over a websocket, as
// JSON text messages; resume with ?last_event_id=. The server pings every
// Heartbeat; messages from the client are ignored.
func (s *Server) handleWS(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	last, err := parseLastEventID("", r.URL.Query().Get("last_event_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !isWebSocketUpgrade(r) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		s.writeError(w, r, errorf(http.StatusUpgradeRequired, codeUpgradeRequired, "this route is a websocket; send a websocket upgrade request"))
		return
	}
	sctx, done, err := s.openStream(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer done()
	f, err := s.openFeed(sctx, m, last)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer f.close()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept wrote the error response (made JSON by statusWriter)
	}
	defer c.CloseNow()
	s.metrics.clients.WithLabelValues("ws").Inc()
	defer s.metrics.clients.WithLabelValues("ws").Dec()
	log := s.log.With().Int64("mentorado", m).Str("transport", "ws").Logger()
	log.Debug().Uint64("last_event_id", last).Msg("stream opened")

	// CloseRead handles pings, pongs and the close handshake; its context
	// ends when the client goes away.
	//
	// The reader must not get the revocable stream context: when that ends,
	// CloseRead would drop the connection before the close frame below.
	rctx := c.CloseRead(r.Context())
	ctx, cancel := context.WithCancelCause(rctx)
	defer cancel(nil)
	stop := context.AfterFunc(sctx, func() { cancel(context.Cause(sctx)) })
	defer stop()
	ticker := time.NewTicker(s.cfg.Heartbeat)
	defer ticker.Stop()
	for {
		fr, beat, err := f.next(ctx, ticker.C)
		switch {
		case err != nil && revoked(ctx):
			log.Info().Msg("stream ended: credentials revoked")
			_ = c.Close(websocket.StatusPolicyViolation, "credentials revoked")
			return
		case errors.Is(err, errDropped):
			s.metrics.dropped.WithLabelValues("ws", f.reason).Inc()
			log.Info().Str("reason", f.reason).Msg("slow stream client dropped")
			_ = c.Close(websocket.StatusPolicyViolation, "too slow")
			return
		case errors.Is(err, errShutdown):
			_ = c.Close(websocket.StatusGoingAway, "server shutting down")
			return
		case errors.Is(err, context.Canceled):
			return
		case err != nil:
			log.Warn().Err(err).Msg("stream failed")
			_ = c.Close(websocket.StatusInternalError, "stream failed")
			return
		}
		wctx, cancel := context.WithTimeout(ctx, s.cfg.StreamWriteTimeout)
		if beat {
			err = c.Ping(wctx)
		} else {
			var b []byte
			b, err = json.Marshal(wsFrame{ID: fr.Seq, Event: fr.Event, Data: json.RawMessage(fr.Data)})
			if err == nil {
				err = c.Write(wctx, websocket.MessageText, b)
			}
		}
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.metrics.dropped.WithLabelValues("ws", "write_failed").Inc()
			}
			log.Debug().Err(err).Msg("stream write failed")
			return
		}
	}
}

// isWebSocketUpgrade reports whether r asks for a websocket upgrade (the
// rest of the handshake is checked by websocket.Accept).
func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
