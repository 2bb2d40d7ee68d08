package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/store"
)

// HeaderWebhookSecret carries a Z-API webhook's secret when it is not in
// the URL path (POST /providers/zapi/{mentorado}/webhook).
const HeaderWebhookSecret = "X-Zapbus-Webhook-Secret"

func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /providers/{provider}/{mentorado}/webhook", g.handleVerify)
	mux.HandleFunc("POST /providers/{provider}/{mentorado}/webhook", g.handleWebhook)
	mux.HandleFunc("POST /providers/{provider}/{mentorado}/webhook/{secret}", g.handleWebhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := g.CheckReady(r.Context()); err != nil {
			writeError(w, http.StatusServiceUnavailable, event.CodeUnavailable, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("GET /metrics", g.metrics.handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { notFound(w) })
	return mux
}

// target resolves a webhook URL's provider and mentorado: the driver and
// the mentorado's account. ok false means the answer was written (404
// for anything unknown, with one generic message that tells a prober
// nothing; 503 when the database is unreachable).
func (g *Gateway) target(w http.ResponseWriter, r *http.Request) (provider.Driver, provider.Account, bool) {
	p := event.Provider(r.PathValue("provider"))
	d := g.drivers[p]
	m, err := strconv.ParseInt(r.PathValue("mentorado"), 10, 64)
	if d == nil || err != nil || m <= 0 || (r.PathValue("secret") != "" && p != event.ProviderZAPI) {
		g.metrics.webhooks.WithLabelValues("", "not_found").Inc()
		notFound(w)
		return nil, provider.Account{}, false
	}
	exists, _, err := g.db.Mentorados().Check(r.Context(), m)
	if err != nil {
		g.log.Error().Err(err).Msg("webhook: check mentorado")
		writeError(w, http.StatusServiceUnavailable, event.CodeUnavailable, "try again")
		return nil, provider.Account{}, false
	}
	if !exists {
		g.metrics.webhooks.WithLabelValues(string(p), "not_found").Inc()
		notFound(w)
		return nil, provider.Account{}, false
	}
	acc, err := g.accounts.Account(r.Context(), m, p)
	if errors.Is(err, store.ErrNotFound) {
		g.metrics.webhooks.WithLabelValues(string(p), "not_found").Inc()
		notFound(w)
		return nil, provider.Account{}, false
	}
	if err != nil {
		g.log.Error().Err(err).Int64("mentorado", m).Str("provider", string(p)).Msg("webhook: open account")
		writeError(w, http.StatusServiceUnavailable, event.CodeUnavailable, "try again")
		return nil, provider.Account{}, false
	}
	if acc.Mentorado != m || acc.Provider != p {
		g.log.Error().Int64("mentorado", m).Str("provider", string(p)).Msg("webhook: account of another mentorado or provider")
		writeError(w, http.StatusInternalServerError, event.CodeInternal, "internal error")
		return nil, provider.Account{}, false
	}
	return d, acc, true
}

// handleVerify answers a provider's webhook verification handshake
// (Meta: GET with hub.mode, hub.verify_token and hub.challenge): 200 with
// the challenge as text/plain, 403 when the token is wrong.
func (g *Gateway) handleVerify(w http.ResponseWriter, r *http.Request) {
	d, acc, ok := g.target(w, r)
	if !ok {
		return
	}
	v, isVerifier := d.(provider.Verifier)
	if !isVerifier {
		notFound(w)
		return
	}
	challenge, err := v.VerifyWebhook(acc, r.URL.Query())
	if err != nil {
		g.metrics.webhooks.WithLabelValues(string(acc.Provider), "verify_refused").Inc()
		g.markWebhook(r.Context(), acc, "verification handshake refused (wrong verify token)")
		writeError(w, http.StatusForbidden, "forbidden", "verification refused")
		return
	}
	g.metrics.webhooks.WithLabelValues(string(acc.Provider), "verified").Inc()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(challenge))
}

// handleWebhook takes one webhook delivery: authenticate it (the driver),
// publish what it reports, and answer 200 only once JetStream stored all
// of it. Anything short of that answers an error status, so the provider
// delivers it again; what was stored before is then deduplicated by id.
func (g *Gateway) handleWebhook(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r, g.cfg.MaxBody)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			p := event.Provider(r.PathValue("provider"))
			if g.drivers[p] == nil {
				p = "" // never a label from a stranger's URL
			}
			g.metrics.webhooks.WithLabelValues(string(p), "too_large").Inc()
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes", g.cfg.MaxBody))
			return
		}
		writeError(w, http.StatusBadRequest, event.CodeBadRequest, "cannot read body")
		return
	}
	d, acc, ok := g.target(w, r)
	if !ok {
		return
	}
	p, m := acc.Provider, acc.Mentorado
	log := g.log.With().Int64("mentorado", m).Str("provider", string(p)).Logger()
	if s := r.PathValue("secret"); s != "" {
		// The driver reads the secret from one place whichever URL Z-API
		// was given.
		r.Header.Set(HeaderWebhookSecret, s)
	}
	in, err := d.Webhook(r.Context(), acc, r, body)
	var ee *event.Error
	switch {
	case errors.Is(err, provider.ErrUnauthenticated):
		g.metrics.webhooks.WithLabelValues(string(p), "unauthenticated").Inc()
		log.Warn().Msg("webhook refused: authenticity check failed")
		g.markWebhook(r.Context(), acc, "authenticity check failed (signature or secret)")
		writeError(w, http.StatusUnauthorized, "unauthenticated", "authenticity check failed")
		return
	case errors.Is(err, provider.ErrBadPayload) || errors.As(err, &ee):
		g.metrics.webhooks.WithLabelValues(string(p), "bad_payload").Inc()
		log.Warn().Err(err).Msg("webhook refused: payload not understood")
		g.markWebhook(r.Context(), acc, "payload not understood")
		writeError(w, http.StatusBadRequest, event.CodeBadRequest, "payload not understood")
		return
	case err != nil:
		g.metrics.webhooks.WithLabelValues(string(p), "error").Inc()
		log.Error().Err(err).Msg("webhook: driver failed")
		writeError(w, http.StatusInternalServerError, event.CodeInternal, "internal error")
		return
	case in == nil:
		in = &provider.Inbound{}
	}
	envs, err := g.prepare(r.Context(), d, acc, in)
	if err != nil {
		var pe *prepareError
		if errors.As(err, &pe) {
			g.metrics.webhooks.WithLabelValues(string(p), pe.result).Inc()
			log.Error().Err(err).Msg("webhook not taken")
			writeError(w, pe.status, pe.code, pe.msg)
			return
		}
		g.metrics.webhooks.WithLabelValues(string(p), "error").Inc()
		log.Error().Err(err).Msg("webhook: prepare events")
		writeError(w, http.StatusInternalServerError, event.CodeInternal, "internal error")
		return
	}
	pctx, cancel := context.WithTimeout(r.Context(), g.cfg.PublishTimeout)
	defer cancel()
	if err := g.publishAll(pctx, p, envs); err != nil {
		g.metrics.webhooks.WithLabelValues(string(p), "publish_failed").Inc()
		log.Warn().Err(err).Msg("webhook: publish failed; the provider retries")
		writeError(w, http.StatusServiceUnavailable, event.CodeUnavailable, "not stored; retry")
		return
	}
	for _, env := range envs {
		// A connection change the provider reported (Z-API's connected
		// and disconnected webhooks) is the state the next driver call
		// compares with.
		if env.Type == event.TypeConnection {
			if pl, err := env.Payload(); err == nil {
				g.remember(acc, pl.(*event.Connection))
			}
		}
	}
	g.metrics.webhooks.WithLabelValues(string(p), "accepted").Inc()
	g.markWebhook(r.Context(), acc, "")
	if len(in.Rejected) > 0 {
		g.metrics.rejected.WithLabelValues(string(p)).Add(float64(len(in.Rejected)))
		log.Warn().Strs("rejected", in.Rejected).Msg("webhook: parts of the delivery dropped")
		g.markWebhook(r.Context(), acc, strings.Join(in.Rejected, "; "))
	}
	log.Debug().Int("events", len(envs)).Msg("webhook stored")
	writeJSON(w, http.StatusOK, map[string]int{"stored": len(envs)})
}

// prepareError is a delivery the gateway does not take, with its answer.
type prepareError struct {
	status      int
	code, msg   string
	result, why string
}

func (e *prepareError) Error() string { return e.why }

// prepare checks the driver's events, drops messages already stored (a
// provider retrying after JetStream's duplicate window) and fetches the
// received files into the media store: the envelopes to publish, in order.
func (g *Gateway) prepare(ctx context.Context, d provider.Driver, acc provider.Account, in *provider.Inbound) ([]event.Envelope, error) {
	m, p := acc.Mentorado, acc.Provider
	type item struct {
		env event.Envelope
		msg *event.Message // message events
	}
	items := make([]item, 0, len(in.Events))
	var waIDs []string
	for _, env := range in.Events {
		// Defence in depth: a driver must never report another
		// mentorado's events on this one's URL.
		if env.MentoradoID != m {
			return nil, &prepareError{status: http.StatusInternalServerError, code: event.CodeInternal, msg: "internal error",
				result: "error", why: fmt.Sprintf("driver returned an event of mentorado %d on mentorado %d's webhook", env.MentoradoID, m)}
		}
		pl, err := env.Payload()
		if err != nil {
			return nil, fmt.Errorf("driver returned an invalid %s event: %w", env.Type, err)
		}
		it := item{env: env}
		if msg, ok := pl.(*event.Message); ok {
			it.msg = msg
			waIDs = append(waIDs, msg.WAID)
		}
		items = append(items, it)
	}
	settled, err := g.db.Messages().Settled(ctx, m, waIDs)
	if err != nil {
		return nil, &prepareError{status: http.StatusServiceUnavailable, code: event.CodeUnavailable, msg: "try again",
			result: "error", why: fmt.Sprintf("look up stored messages: %v", err)}
	}
	kept := items[:0]
	for _, it := range items {
		if it.msg != nil && settled[it.msg.WAID] {
			g.metrics.duplicates.WithLabelValues(string(p)).Inc()
			continue
		}
		kept = append(kept, it)
	}
	items = kept

	// Files: fetched into the media store before the message that
	// mentions them is published; the message gets the file's id and a
	// media event follows it.
	extra := map[int][]event.Envelope{}
	for _, ref := range in.Media {
		idx := -1
		for i, it := range items {
			if it.msg != nil && it.msg.WAID == ref.WAID {
				idx = i
				break
			}
		}
		if idx < 0 {
			continue // its message was a duplicate, or the driver named none
		}
		msg := items[idx].msg
		done, err := g.fetchMedia(ctx, d, acc, ref, msg)
		if err != nil {
			return nil, err
		}
		env, err := event.New(m, items[idx].env.ID, items[idx].env.OccurredAt, msg)
		if err != nil {
			return nil, fmt.Errorf("message %s with its media: %w", msg.WAID, err)
		}
		items[idx].env = env
		if done != nil {
			denv, err := event.New(m, event.MediaEventID(m, msg.WAID), g.now(), done)
			if err != nil {
				return nil, fmt.Errorf("media event of %s: %w", msg.WAID, err)
			}
			extra[idx] = append(extra[idx], denv)
		}
	}
	out := make([]event.Envelope, 0, len(items)+len(extra))
	for i, it := range items {
		out = append(out, it.env)
		out = append(out, extra[i]...)
	}
	return out, nil
}

// fetchMedia fetches ref through the driver into the media store and sets
// msg.Media. It returns the media event to publish after the message:
// stored, or failed when the file could not be fetched and the driver
// knew its SHA-256 (msg.Media.ID). Without that id there is no media
// event to publish (its id is the file's hash), so a file that cannot be
// fetched leaves the message without media. An error (the media store or
// the ledger failing) means the delivery is not taken: the provider
// retries it.
func (g *Gateway) fetchMedia(ctx context.Context, d provider.Driver, acc provider.Account, ref provider.MediaRef, msg *event.Message) (*event.MediaDone, error) {
	p, m := acc.Provider, acc.Mentorado
	limit := g.cfg.MediaLimits.For(ref.Kind)
	if limit == 0 {
		limit = g.cfg.MediaLimits.For(msg.Kind)
	}
	fail := func(reason string) *event.MediaDone {
		g.metrics.mediaFetches.WithLabelValues(string(p), reason).Inc()
		if msg.Media != nil && event.IsMediaID(msg.Media.ID) {
			return &event.MediaDone{WAID: msg.WAID, ChatJID: msg.ChatJID, State: event.MediaFailed, MediaID: msg.Media.ID, Reason: reason}
		}
		msg.Media = nil
		return nil
	}
	f, ok := d.(provider.MediaFetcher)
	if !ok || g.media == nil || limit == 0 || !msg.Kind.IsMedia() {
		return fail("not_fetched"), nil
	}
	fctx, cancel := context.WithTimeout(ctx, g.cfg.MediaTimeout)
	defer cancel()
	data, mime, err := f.FetchMedia(fctx, acc, ref, limit)
	switch {
	case errors.Is(err, media.ErrTooLarge) || int64(len(data)) > limit:
		return fail("too_large"), nil
	case err != nil:
		// The provider would not give the file (gone, refused): a code,
		// never the error's text (it may hold the file's URL).
		g.log.Warn().Err(err).Int64("mentorado", m).Str("provider", string(p)).Str("wa_id", msg.WAID).Msg("fetch received media")
		return fail("download_failed"), nil
	}
	declared := ref.MIME
	if declared == "" {
		declared = mime
	}
	stored := media.Sniff(data, event.Clean(declared))
	info, _, err := g.media.Put(ctx, m, bytes.NewReader(data), stored, limit)
	if errors.Is(err, media.ErrTooLarge) {
		return fail("too_large"), nil
	}
	if err != nil {
		return nil, &prepareError{status: http.StatusServiceUnavailable, code: event.CodeUnavailable, msg: "try again",
			result: "error", why: fmt.Sprintf("store media: %v", err)}
	}
	if _, err := g.db.MediaObjects().Record(ctx, m, info.ID, info.Size, info.MIME, store.MediaDownload); err != nil {
		return nil, &prepareError{status: http.StatusServiceUnavailable, code: event.CodeUnavailable, msg: "try again",
			result: "error", why: fmt.Sprintf("record media: %v", err)}
	}
	g.metrics.mediaFetches.WithLabelValues(string(p), "stored").Inc()
	md := msg.Media
	if md == nil {
		md = &event.Media{}
	}
	md.ID, md.MIME, md.Size = info.ID, info.MIME, info.Size
	if ref.FileName != "" {
		md.FileName = ref.FileName
	}
	msg.Media = md
	return &event.MediaDone{WAID: msg.WAID, ChatJID: msg.ChatJID, State: event.MediaStored, MediaID: info.ID, MIME: info.MIME, Size: info.Size}, nil
}

// markWebhook records webhook health (best effort: it never changes the
// answer).
func (g *Gateway) markWebhook(ctx context.Context, acc provider.Account, reason string) {
	if err := g.db.Providers().MarkWebhook(context.WithoutCancel(ctx), acc.Mentorado, acc.Provider, reason); err != nil {
		g.log.Warn().Err(err).Int64("mentorado", acc.Mentorado).Msg("record webhook health")
	}
}

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	return buf.Bytes(), err
}

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

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]map[string]string{"error": {"code": code, "message": msg}})
}

func notFound(w http.ResponseWriter) { writeError(w, http.StatusNotFound, "not_found", "not found") }
