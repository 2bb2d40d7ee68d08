package gateway

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// Campaigns of gateway-hosted mentorados (issue #16): a mentorado whose
// active provider is meta or zapi has no connector session, so its
// campaigns run here, in the same outbound.Worker (campaign lane, pacer,
// daily cap, opt-outs, bulk pause) the connector's sessions run, with a
// Sender over the gateway's send path.
//
// Every gateway looks, every CampaignPoll, for the enabled mentorados
// whose active provider is one of its drivers and that have a running
// campaign or a scheduled one due. It runs a mentorado's worker only while
// it holds that mentorado's session advisory lock
// (store.GatewayCampaignLockClass) on its lock connection, a connection of
// its own outside the pool: exactly one gateway sends for a mentorado at a
// time. A worker stops, and its lock is released, when the mentorado's
// active provider is no longer this driver's, when it is disabled, when it
// has had no campaign to run for CampaignIdle, and when Run's context
// ends. When the lock connection fails every worker stops at once (its
// locks are gone with it), and a new connection is opened at the next
// poll.
//
// The outbox stays the connector's (CampaignsOnly): a gateway's sends go
// out at once. A recipient the worker finds in sending (a gateway died
// mid-send, or the lock moved) is sent again under the same WA_SENDS key,
// derived from the id the worker committed before the send, so it is
// answered with the first send's message instead of going out twice.

// realClock is outbound.Clock on the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) interface{ Stop() bool } {
	return time.AfterFunc(d, f)
}

// campaignRunner runs the workers this gateway holds the locks of.
type campaignRunner struct {
	g   *Gateway
	log zerolog.Logger

	conn *store.CampaignLocks // the lock connection; only the runner's goroutine uses it

	mu      sync.Mutex
	workers map[int64]*campaignWorker
	starts  int // workers started (tests)
}

// campaignWorker is one mentorado's running worker.
type campaignWorker struct {
	m         int64
	p         event.Provider
	cancel    context.CancelFunc
	done      chan struct{}
	idleSince time.Time // when it last had no campaign to run; zero while it has
}

func newCampaignRunner(g *Gateway) *campaignRunner {
	return &campaignRunner{g: g, log: g.log.With().Str("part", "campaigns").Logger(), workers: map[int64]*campaignWorker{}}
}

// run polls until ctx ends, then stops every worker and closes the lock
// connection (releasing its locks).
func (r *campaignRunner) run(ctx context.Context) {
	t := time.NewTicker(r.g.cfg.CampaignPoll)
	defer t.Stop()
	for {
		r.pass(ctx)
		select {
		case <-ctx.Done():
			r.stopAll()
			r.closeConn()
			return
		case <-t.C:
		}
	}
}

// pass is one poll: check the lock connection, stop the workers that
// must stop, start those this gateway can take.
func (r *campaignRunner) pass(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, r.g.cfg.CommandTimeout)
	defer cancel()
	if len(r.held()) > 0 {
		// First of all: do the locks of the running workers still hold?
		if err := r.ensureConn(pctx); err != nil {
			if ctx.Err() == nil {
				r.log.Warn().Err(err).Msg("campaign lock connection")
			}
			return
		}
	}
	var providers []event.Provider
	for p := range r.g.drivers {
		providers = append(providers, p)
	}
	now := r.g.cfg.SendClock.Now()
	due, err := r.g.db.GatewayCampaignMentorados(pctx, providers, now)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn().Err(err).Msg("look for campaigns")
		}
		return
	}
	if len(due) == 0 && len(r.held()) == 0 {
		return // nothing to run: no lock connection needed yet
	}
	if r.conn == nil {
		if err := r.ensureConn(pctx); err != nil {
			if ctx.Err() == nil {
				r.log.Warn().Err(err).Msg("campaign lock connection")
			}
			return
		}
	}
	want := make(map[int64]event.Provider, len(due))
	for _, d := range due {
		want[d.ID] = d.Provider
	}
	wall := time.Now()
	for _, w := range r.held() {
		if p, ok := want[w.m]; ok && p == w.p {
			w.idleSince = time.Time{}
			continue
		}
		if reason := r.mustStop(pctx, w, wall); reason != "" {
			r.stop(pctx, w, reason)
			if r.conn == nil {
				return // lost while releasing: every worker stopped
			}
		}
	}
	for _, d := range due {
		if r.running(d.ID) {
			continue
		}
		ok, err := r.conn.TryLock(pctx, d.ID)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn().Err(err).Int64("mentorado", d.ID).Msg("take campaign lock")
				r.lost()
			}
			return
		}
		if ok {
			r.start(ctx, d.ID, d.Provider)
		}
	}
}

// mustStop says why worker w must stop now ("" when it may go on): its
// worker ended, the mentorado moved to another provider, was disabled or
// deleted, or had no campaign to run for CampaignIdle.
func (r *campaignRunner) mustStop(ctx context.Context, w *campaignWorker, now time.Time) string {
	select {
	case <-w.done:
		return "worker ended"
	default:
	}
	exists, disabled, err := r.g.db.Mentorados().Check(ctx, w.m)
	if err != nil {
		return "" // the next poll decides
	}
	if !exists || disabled {
		return "mentorado disabled"
	}
	active, err := r.g.accounts.Active(ctx, w.m)
	if err != nil {
		return ""
	}
	if active != w.p {
		return "active provider is now " + strconv.Quote(string(active))
	}
	if w.idleSince.IsZero() {
		w.idleSince = now
	}
	if now.Sub(w.idleSince) >= r.g.cfg.CampaignIdle {
		return "no campaign to run"
	}
	return ""
}

// ensureConn opens the lock connection when there is none, and checks it
// when there is: a failed check means its locks are gone, so every
// worker stops before a new connection is opened.
func (r *campaignRunner) ensureConn(ctx context.Context) error {
	if r.conn != nil {
		err := r.conn.Ping(ctx)
		if err == nil {
			return nil
		}
		// Lost, or too slow to trust (the check timed out): either way
		// its locks cannot be relied on.
		r.log.Warn().Err(err).Msg("campaign lock connection failed: stopping campaign workers")
		r.lost()
		if ctx.Err() != nil {
			return err
		}
	}
	conn, err := r.g.db.OpenCampaignLocks(ctx)
	if err != nil {
		return err
	}
	r.conn = conn
	return nil
}

// lost stops every worker and drops the lock connection (its locks are
// gone, or about to be).
func (r *campaignRunner) lost() {
	r.stopAll()
	r.closeConn()
}

func (r *campaignRunner) closeConn() {
	if r.conn == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.conn.Close(ctx)
	r.conn = nil
}

func (r *campaignRunner) held() []*campaignWorker {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*campaignWorker, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, w)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].m < out[j].m })
	return out
}

func (r *campaignRunner) running(m int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.workers[m] != nil
}

// mentorados lists the mentorados whose workers run here.
func (r *campaignRunner) mentorados() []int64 {
	var out []int64
	for _, w := range r.held() {
		out = append(out, w.m)
	}
	return out
}

// start runs mentorado m's worker (its lock is held).
func (r *campaignRunner) start(ctx context.Context, m int64, p event.Provider) {
	g := r.g
	wctx, cancel := context.WithCancel(ctx)
	w := &campaignWorker{m: m, p: p, cancel: cancel, done: make(chan struct{})}
	log := r.log.With().Int64("mentorado", m).Str("provider", string(p)).Logger()
	worker := outbound.NewWorker(outbound.WorkerConfig{
		DB:            g.db,
		Mentorado:     m,
		Sender:        campaignSender{g: g, m: m, p: p},
		Publisher:     campaignPublisher{g: g, p: p},
		Clock:         g.cfg.SendClock,
		Limits:        g.cfg.SendLimits,
		Log:           log,
		Poll:          g.cfg.CampaignPoll,
		CampaignsOnly: true,
	})
	r.mu.Lock()
	r.workers[m] = w
	r.starts++
	r.mu.Unlock()
	g.metrics.campaignWorkers.Inc()
	log.Info().Msg("campaign worker started")
	go func() {
		defer close(w.done)
		if err := worker.Run(wctx); err != nil && wctx.Err() == nil {
			log.Error().Err(err).Msg("campaign worker stopped")
		}
	}()
}

// stop stops worker w, waits for it (a send in flight finishes) and
// releases its lock.
func (r *campaignRunner) stop(ctx context.Context, w *campaignWorker, reason string) {
	w.cancel()
	<-w.done
	if !r.remove(w) {
		return
	}
	if r.conn != nil {
		if err := r.conn.Unlock(ctx, w.m); err != nil {
			r.log.Warn().Err(err).Int64("mentorado", w.m).Msg("release campaign lock")
			r.lost()
		}
	}
	r.log.Info().Int64("mentorado", w.m).Str("reason", reason).Msg("campaign worker stopped")
}

// stopAll stops every worker without releasing locks one by one (the
// caller closes the connection, or lost it).
func (r *campaignRunner) stopAll() {
	ws := r.held()
	for _, w := range ws {
		w.cancel()
	}
	for _, w := range ws {
		<-w.done
		if r.remove(w) {
			r.log.Info().Int64("mentorado", w.m).Msg("campaign worker stopped")
		}
	}
}

// remove forgets worker w (stopped); false when it was already gone.
func (r *campaignRunner) remove(w *campaignWorker) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.workers[w.m] != w {
		return false
	}
	delete(r.workers, w.m)
	r.g.metrics.campaignWorkers.Dec()
	return true
}

// campaignPublisher publishes the worker's events (campaign, sending)
// through the gateway's publish path, with the provider set.
type campaignPublisher struct {
	g *Gateway
	p event.Provider
}

func (c campaignPublisher) Publish(ctx context.Context, env event.Envelope) error {
	return c.g.publish(ctx, c.p, env)
}

// campaignSender is outbound.Sender over the gateway's send path.
type campaignSender struct {
	g *Gateway
	m int64
	p event.Provider
}

var _ outbound.Sender = campaignSender{}

// Resolve answers the number's phone chat: Meta and Z-API have no lookup
// of arbitrary numbers the gateway uses (Z-API's phone-exists is not
// called: bulk number checks are what gets numbers banned, decision
// 0020), so a number that is not on WhatsApp fails at the send instead.
func (c campaignSender) Resolve(ctx context.Context, number string) (string, error) {
	if n, err := phone.Normalize(number); err == nil {
		number = n
	}
	return phone.JID(number), nil
}

// Typing shows nothing: the providers' APIs have no typing to show
// before an arbitrary message (the worker still waits the typing time).
func (c campaignSender) Typing(ctx context.Context, jid string, on bool) error { return nil }

// Send sends a campaign message through the send command's path, under
// the WA_SENDS key of the id the worker committed (waID), and answers the
// provider's message (its id is the provider's). A send in flight is not
// cut short when the worker stops: it finishes within CommandTimeout.
// A mentorado that moved to another provider or was disabled answers
// not_connected: the recipient goes back to the queue uncounted and the
// runner stops the worker.
func (c campaignSender) Send(ctx context.Context, req event.SendRequest, waID string, meta outbound.SendMeta) (*event.Message, error) {
	g := c.g
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.CommandTimeout)
	defer cancel()
	exists, disabled, err := g.db.Mentorados().Check(sctx, c.m)
	if err != nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "cannot check the mentorado: %v", err)
	}
	if !exists || disabled {
		return nil, event.NewCommandError(event.CodeNotConnected, "mentorado %d is disabled", c.m)
	}
	active, err := g.accounts.Active(sctx, c.m)
	if err != nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "cannot read the active provider: %v", err)
	}
	if active != c.p {
		return nil, event.NewCommandError(event.CodeNotConnected, "mentorado %d's active provider is now %q", c.m, active)
	}
	acc, err := g.accounts.Account(sctx, c.m, c.p)
	if errors.Is(err, store.ErrNotFound) {
		return nil, event.NewCommandError(event.CodeNotConnected, "mentorado %d has no %s configuration", c.m, c.p)
	}
	if err != nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "cannot open the %s configuration", c.p)
	}
	idem := "campaign:" + strconv.FormatInt(meta.CampaignID, 10) + ":" + waID
	if meta.CampaignID == 0 {
		idem = meta.ClientID
	}
	req.ClientID = meta.ClientID
	return g.sendMessage(sctx, g.drivers[c.p], acc, req, sendMeta{idemID: idem, campaignID: meta.CampaignID})
}
