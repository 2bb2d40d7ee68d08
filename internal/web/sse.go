package web

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// handleEvents streams the mentorado's events as Server-Sent Events:
//
//	event: <type>          connection, message, receipt, contact, media, group, history, lead, qr
//	id: <stream sequence>  (absent on qr, which is not stored history)
//	data: <envelope JSON>
//
// Messages imported from the phone's history sync are left out (the
// history progress events stand for them; see historic).
//
// A reconnect with Last-Event-ID (or ?last_event_id=) first receives exactly
// the events stored after it, then live events. Comments (": ping") are sent
// every Heartbeat so proxies keep the connection open.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	last, err := parseLastEventID(r.Header.Get("Last-Event-ID"), r.URL.Query().Get("last_event_id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, done, err := s.openStream(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer done()
	f, err := s.openFeed(ctx, m, last)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer f.close()

	s.metrics.clients.WithLabelValues("sse").Inc()
	defer s.metrics.clients.WithLabelValues("sse").Dec()
	log := s.log.With().Int64("mentorado", m).Str("transport", "sse").Logger()
	log.Debug().Uint64("last_event_id", last).Msg("stream opened")

	write, err := s.openSSE(w)
	if err != nil {
		return
	}
	ticker := time.NewTicker(s.cfg.Heartbeat)
	defer ticker.Stop()
	for {
		fr, beat, err := f.next(ctx, ticker.C)
		switch {
		case err != nil && revoked(ctx):
			log.Info().Msg("stream ended: credentials revoked")
			return
		case errors.Is(err, errDropped):
			s.metrics.dropped.WithLabelValues("sse", f.reason).Inc()
			log.Info().Str("reason", f.reason).Msg("slow stream client dropped")
			return
		case errors.Is(err, context.Canceled), errors.Is(err, errShutdown):
			log.Debug().Msg("stream closed")
			return
		case err != nil:
			log.Warn().Err(err).Msg("stream failed")
			return
		}
		// The encoding buffer is borrowed per frame rather than kept per
		// client: ten thousand mostly idle streams need not hold one each.
		buf := sseBufs.Get().(*bytes.Buffer)
		buf.Reset()
		if beat {
			buf.WriteString(": ping\n\n")
		} else {
			encodeSSE(buf, fr)
		}
		err = write(buf.Bytes())
		if buf.Cap() <= 64<<10 {
			sseBufs.Put(buf)
		}
		if err != nil {
			s.metrics.dropped.WithLabelValues("sse", "write_failed").Inc()
			log.Debug().Err(err).Msg("stream write failed")
			return
		}
	}
}

var sseBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func encodeSSE(buf *bytes.Buffer, fr frame) {
	buf.WriteString("event: ")
	buf.WriteString(fr.Event)
	buf.WriteByte('\n')
	if fr.Seq != 0 {
		buf.WriteString("id: ")
		buf.WriteString(strconv.FormatUint(fr.Seq, 10))
		buf.WriteByte('\n')
	}
	for _, line := range bytes.Split(bytes.TrimRight(fr.Data, "\r\n"), []byte("\n")) {
		buf.WriteString("data: ")
		buf.Write(bytes.TrimRight(line, "\r"))
		buf.WriteByte('\n')
	}
	buf.WriteByte('\n')
}

// openSSE answers 200 with the event-stream headers and the first frame
// (the client's retry delay), and returns the writer of later frames: each
// write is bounded by StreamWriteTimeout and flushed. An error means the
// client is gone.
func (s *Server) openSSE(w http.ResponseWriter) (write func([]byte) error, err error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	write = func(b []byte) error {
		_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.StreamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	return write, write([]byte("retry: 2000\n: connected\n\n"))
}
