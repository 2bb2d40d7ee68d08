package outbound

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// Worker is one mentorado's sender while its session is connected: it
// sends the outbox in order (chat lane, first) and runs its campaigns
// (campaign lane) under the pacer.
type Worker struct {
	cfg  WorkerConfig
	wake chan struct{}

	mu       sync.Mutex
	loaded   bool
	settings Settings
	paused   bool // the stored bulk pause, as last read
	rng      *mrand.Rand
	// chat bucket (conversational sends)
	tokens   float64
	tokensAt time.Time
	// bulk gap (unsolicited and campaign sends): the last such send, and
	// where in [min, max] the next gap falls (drawn at each send, so a
	// lane that loops while it waits does not draw again)
	lastBulk time.Time
	gapU     float64
	// unsolicited bucket (chat-lane sends to someone who has not
	// written): tokens, when counted, and the gap the next token takes
	uTokens float64
	uAt     time.Time
	uGap    float64
	// resolveAt spaces number lookups when recipients are skipped
	// without a send (not on WhatsApp), which take no bulk gap
	resolveAt time.Time
	// daily cap of unsolicited sends: the UTC day and its count
	day   string
	count int
	// chats that wrote, in memory (ObserveInbound)
	inbound map[string]time.Time
	// consecutive send errors, and when the lane may retry
	errs    int
	retryAt time.Time
}

// DefaultPoll is how often an idle worker looks for campaign and settings
// changes made through the API. A queued send wakes it at once (Wake), and
// a pause or cancel takes effect at the next claim whatever the poll (the
// claim checks the campaign's state); the poll bounds how soon a resume,
// a new campaign or a scheduled start is seen. Each poll is a few
// queries, so 1,000 idle sessions cost about 1,000 queries a second at 5 s.
const DefaultPoll = 5 * time.Second

// NewWorker builds the worker; Run starts it.
func NewWorker(cfg WorkerConfig) *Worker {
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Limits == (Limits{}) {
		cfg.Limits = DefaultLimits()
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = mrand.Uint64()
	}
	return &Worker{
		cfg:      cfg,
		wake:     make(chan struct{}, 1),
		rng:      mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		inbound:  map[string]time.Time{},
		settings: Defaults().Clamp(cfg.Limits), // until the first poll reads the mentorado's
	}
}

// Tuning that is not a setting.
const (
	conversationWindow = 24 * time.Hour
	maxSendAttempts    = 3
	resolveGap         = 2 * time.Second // between lookups that end in a skip
	typingFullRunes    = 300             // a text this long types for TypingMaxSeconds
)

// retryBackoff is the wait before retrying a send that failed attempts times.
func retryBackoff(attempts int) time.Duration {
	if attempts <= 1 {
		return 5 * time.Second
	}
	return 30 * time.Second
}

// permanentCodes are the send errors retrying cannot fix.
var permanentCodes = map[string]bool{
	event.CodeNotOnWhatsApp: true, event.CodeInvalidPhone: true, event.CodeInvalidChat: true,
	event.CodeMediaNotFound: true, event.CodeMediaType: true, event.CodeMediaTooLarge: true,
	event.CodeNotInGroup: true, event.CodeBadRequest: true, event.CodeTextTooLong: true,
	event.CodeOutsideWindow: true, event.CodeNotSupported: true,
}

// refusedCodes are the send errors of a send refused before it reached
// the provider (the provider gateway's Meta 24-hour window check): nothing
// went out, so the send takes no bulk gap and does not count toward the
// bulk pause, which watches the provider's answers.
var refusedCodes = map[string]bool{event.CodeOutsideWindow: true}

// Wake makes Run look at the outbox now (a send was queued).
func (w *Worker) Wake() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// ObserveInbound records that chat jid wrote at time at: sends to it are
// conversational for 24 h.
func (w *Worker) ObserveInbound(jid string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if at.After(w.inbound[jid]) {
		w.inbound[jid] = at
	}
	if len(w.inbound) > 10000 { // forget chats silent for a day
		now := w.cfg.Clock.Now()
		for k, t := range w.inbound {
			if now.Sub(t) > conversationWindow {
				delete(w.inbound, k)
			}
		}
	}
}

// TryNow reports whether a send to chat jid may go at once, synchronously:
// nothing queued ahead of it and a pacer token free (which it takes). An
// unsolicited send over the daily cap is a *event.CommandError
// (CodeDailyCap).
func (w *Worker) TryNow(ctx context.Context, jid string) (bool, error) {
	if err := w.ensureSettings(ctx); err != nil {
		return false, err
	}
	n, err := w.cfg.DB.Outbox().Pending(ctx, w.cfg.Mentorado)
	if err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	conv, err := w.conversational(ctx, jid)
	if err != nil {
		return false, err
	}
	now := w.cfg.Clock.Now()
	if conv {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.chatWaitLocked(now) > 0 {
			return false, nil
		}
		w.tokens--
		return true, nil
	}
	count, err := w.unsolicitedToday(ctx, now)
	if err != nil {
		return false, err
	}
	w.mu.Lock()
	capN := w.settings.DailyCap
	if count >= capN {
		w.mu.Unlock()
		return false, event.NewCommandError(event.CodeDailyCap, "the daily cap of %d unsolicited sends is used up (resets at 00:00 UTC)", capN)
	}
	if w.unsolicitedWaitLocked(now) > 0 {
		w.mu.Unlock()
		return false, nil
	}
	w.tookUnsolicitedLocked(now)
	w.mu.Unlock()
	if err := w.countUnsolicited(ctx, now); err != nil {
		// The send may go; only the stored count lags (the memory one
		// was not raised either, so the cap errs by this one send).
		w.cfg.Log.Warn().Err(err).Int64("mentorado", w.cfg.Mentorado).Msg("count an unsolicited send")
	}
	return true, nil
}

// Run sends until ctx ends (the session disconnected or moved). A send
// found in sending when it starts (a crash or a handover between the
// commit and the send) is sent again with the same WhatsApp id.
func (w *Worker) Run(ctx context.Context) error {
	log := w.cfg.Log.With().Int64("mentorado", w.cfg.Mentorado).Str("component", "outbound").Logger()
	// The bulk gap runs from the last send before this worker (the
	// session reconnected, or moved here): a flapping connection must not
	// let a bulk send out at each reconnect.
	if last, err := w.cfg.DB.Outbox().LastBulkSend(ctx, w.cfg.Mentorado); err != nil {
		log.Warn().Err(err).Msg("read the last bulk send")
	} else if !last.IsZero() {
		// A time ahead of this worker's clock (another process's clock,
		// skewed) counts as now: one gap, never a longer wait.
		if now := w.cfg.Clock.Now(); last.After(now) {
			last = now
		}
		w.mu.Lock()
		if w.lastBulk.IsZero() {
			w.lastBulk, w.gapU = last, w.rng.Float64()
		}
		w.mu.Unlock()
	}
	nextPoll := time.Time{}
	for ctx.Err() == nil {
		now := w.cfg.Clock.Now()
		if !now.Before(nextPoll) {
			if err := w.poll(ctx); err != nil && ctx.Err() == nil {
				log.Warn().Err(err).Msg("read sending settings")
			}
			nextPoll = now.Add(w.cfg.Poll)
		}
		wait, err := w.step(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			log.Warn().Err(err).Msg("outbound step")
			wait = w.cfg.Poll
		}
		if wait == 0 {
			continue
		}
		if until := nextPoll.Sub(w.cfg.Clock.Now()); wait < 0 || until < wait {
			wait = max(until, 0)
		}
		w.sleep(ctx, wait, true)
	}
	return nil
}

// step does the next thing: sends or settles one item of the chat lane,
// else of the campaign lane. It returns 0 when it did something, else how
// long to wait (-1: until woken or the next poll).
func (w *Worker) step(ctx context.Context) (time.Duration, error) {
	now := w.cfg.Clock.Now()
	w.mu.Lock()
	retry := w.retryAt.Sub(now)
	w.mu.Unlock()
	if retry > 0 {
		return retry, nil
	}
	if !w.cfg.CampaignsOnly {
		wait, busy, err := w.chatLane(ctx)
		if err != nil || busy {
			return wait, err
		}
	}
	return w.campaignLane(ctx)
}

// poll rereads the settings and the bulk pause (it publishes the resume
// when the API cleared a pause), and expires the mentorado's queued sends
// whose TTL passed, wherever they are in the queue.
func (w *Worker) poll(ctx context.Context) error {
	now := w.cfg.Clock.Now()
	_, expErr := finishOutbox(ctx, w.cfg.DB, store.OutboxFinish{Mentorado: w.cfg.Mentorado, DueBefore: &now,
		State: store.OutboxExpired, Reason: ReasonTTLExpired}, w.cfg.Publisher, now)
	s, row, err := LoadSettings(ctx, w.cfg.DB, w.cfg.Mentorado)
	if err != nil {
		return errors.Join(expErr, err)
	}
	w.mu.Lock()
	wasPaused, first := w.paused, !w.loaded
	w.settings, w.loaded = s.Clamp(w.cfg.Limits), true
	w.paused = row.PausedAt != nil
	if w.tokensAt.IsZero() {
		w.tokens, w.tokensAt = float64(w.settings.ChatBurst), w.cfg.Clock.Now()
	}
	w.mu.Unlock()
	if wasPaused && !first && row.PausedAt == nil {
		if err := publishSending(ctx, w.cfg.Publisher, w.cfg.Mentorado, &event.Sending{Bulk: event.BulkActive, Reason: ReasonResumed}, now); err != nil {
			w.mu.Lock()
			w.paused = true // publish it at the next poll
			w.mu.Unlock()
			return errors.Join(expErr, err)
		}
	}
	return expErr
}

func (w *Worker) ensureSettings(ctx context.Context) error {
	w.mu.Lock()
	loaded := w.loaded
	w.mu.Unlock()
	if loaded {
		return nil
	}
	return w.poll(ctx)
}

// sleep waits d on the clock, until ctx ends, or (interruptible) until
// Wake; it reports whether ctx is still live.
func (w *Worker) sleep(ctx context.Context, d time.Duration, interruptible bool) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	done := make(chan struct{})
	t := w.cfg.Clock.AfterFunc(d, func() { close(done) })
	defer t.Stop()
	wake := w.wake
	if !interruptible {
		wake = nil
	}
	select {
	case <-done:
	case <-wake:
	case <-ctx.Done():
		return false
	}
	return ctx.Err() == nil
}

// conversational reports whether chat jid wrote in the last 24 h.
func (w *Worker) conversational(ctx context.Context, jid string) (bool, error) {
	now := w.cfg.Clock.Now()
	w.mu.Lock()
	at, ok := w.inbound[jid]
	w.mu.Unlock()
	if ok && now.Sub(at) < conversationWindow {
		return true, nil
	}
	return w.cfg.DB.Outbox().WroteSince(ctx, w.cfg.Mentorado, jid, now.Add(-conversationWindow))
}

// chatWaitLocked refills the chat bucket and returns how long until it
// holds a token (0: now).
func (w *Worker) chatWaitLocked(now time.Time) time.Duration {
	rate := w.settings.ChatPerMinute / 60 // tokens a second
	burst := float64(w.settings.ChatBurst)
	if w.tokensAt.IsZero() {
		w.tokens = burst
	} else if el := now.Sub(w.tokensAt).Seconds(); el > 0 {
		w.tokens = min(burst, w.tokens+el*rate)
	}
	w.tokensAt = now
	if w.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - w.tokens) / rate * float64(time.Second))
}

// unsolicitedWaitLocked refills the unsolicited bucket and returns how
// long until it holds a token (0: now). A token comes back after each gap
// drawn in [bulk_min_gap_seconds, bulk_max_gap_seconds].
func (w *Worker) unsolicitedWaitLocked(now time.Time) time.Duration {
	burst := float64(w.settings.UnsolicitedBurst)
	if w.uGap <= 0 {
		w.uGap = w.drawGapLocked(w.settingsPacing())
	}
	if w.uAt.IsZero() {
		w.uTokens = burst
	} else if el := now.Sub(w.uAt).Seconds(); el > 0 {
		w.uTokens = min(burst, w.uTokens+el/w.uGap)
	}
	w.uAt = now
	if w.uTokens >= 1 {
		return 0
	}
	return time.Duration((1 - w.uTokens) * w.uGap * float64(time.Second))
}

// tookUnsolicitedLocked takes a token of the unsolicited bucket (after
// unsolicitedWaitLocked said one is there), draws the next token's gap,
// and starts the campaign lane's gap.
func (w *Worker) tookUnsolicitedLocked(now time.Time) {
	w.uTokens--
	w.uGap = w.drawGapLocked(w.settingsPacing())
	w.tookBulkLocked(now)
}

// drawGapLocked draws a gap of pacing p, in seconds.
func (w *Worker) drawGapLocked(p Pacing) float64 {
	lo, hi := p.MinGapSeconds, max(p.MaxGapSeconds, p.MinGapSeconds)
	return max(lo+w.rng.Float64()*(hi-lo), 0.001)
}

// settingsPacing is the mentorado's bulk gap (unsolicited chat sends).
func (w *Worker) settingsPacing() Pacing {
	return Pacing{MinGapSeconds: w.settings.BulkMinGapSeconds, MaxGapSeconds: w.settings.BulkMaxGapSeconds}
}

// bulkDueLocked is when the next bulk send may go under pacing p: the
// previous one plus the gap drawn for this slot (zero: at once).
func (w *Worker) bulkDueLocked(p Pacing) time.Time {
	if w.lastBulk.IsZero() {
		return time.Time{}
	}
	lo, hi := p.MinGapSeconds, max(p.MaxGapSeconds, p.MinGapSeconds)
	return w.lastBulk.Add(time.Duration((lo + w.gapU*(hi-lo)) * float64(time.Second)))
}

// tookBulkLocked records a bulk send at now and draws the next gap.
func (w *Worker) tookBulkLocked(now time.Time) {
	w.lastBulk, w.gapU = now, w.rng.Float64()
}

// unsolicitedToday returns the day's count of unsolicited sends.
func (w *Worker) unsolicitedToday(ctx context.Context, now time.Time) (int, error) {
	day := now.UTC().Format(time.DateOnly)
	w.mu.Lock()
	if w.day == day {
		n := w.count
		w.mu.Unlock()
		return n, nil
	}
	w.mu.Unlock()
	n, err := w.cfg.DB.Outbox().Unsolicited(ctx, w.cfg.Mentorado, now)
	if err != nil {
		return 0, err
	}
	w.mu.Lock()
	w.day, w.count = day, n
	w.mu.Unlock()
	return n, nil
}

// countUnsolicited counts one unsolicited send (written through).
func (w *Worker) countUnsolicited(ctx context.Context, now time.Time) error {
	n, err := w.cfg.DB.Outbox().AddUnsolicited(context.WithoutCancel(ctx), w.cfg.Mentorado, now)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.day, w.count = now.UTC().Format(time.DateOnly), n
	w.mu.Unlock()
	return nil
}

// waitUntil is how long from now until t (0 when t is zero or past).
func waitUntil(now, t time.Time) time.Duration {
	if t.IsZero() || !t.After(now) {
		return 0
	}
	return t.Sub(now)
}

// untilTomorrow is how long until the next UTC day.
func untilTomorrow(now time.Time) time.Duration {
	u := now.UTC()
	return time.Date(u.Year(), u.Month(), u.Day()+1, 0, 0, 0, 0, time.UTC).Sub(u)
}

// typingFor is how long "typing…" shows before text: from TypingMin for
// a short text to TypingMax for typingFullRunes characters or more.
func (w *Worker) typingFor(text string) time.Duration {
	w.mu.Lock()
	s := w.settings
	w.mu.Unlock()
	if !s.Typing {
		return 0
	}
	f := min(1, float64(utf8.RuneCountInString(text))/typingFullRunes)
	return time.Duration((s.TypingMinSeconds + f*(s.TypingMaxSeconds-s.TypingMinSeconds)) * float64(time.Second))
}

// newMessageID is a WhatsApp message id for a campaign send: the
// Sender's, when it can make one (whatsmeow's GenerateMessageID), else
// one of the same shape (3EB0 and 18 uppercase hex digits).
func (w *Worker) newMessageID() string {
	if g, ok := w.cfg.Sender.(interface{ NewMessageID() string }); ok {
		return g.NewMessageID()
	}
	var b [9]byte
	_, _ = rand.Read(b[:])
	return "3EB0" + strings.ToUpper(hex.EncodeToString(b[:]))
}

// sendErr classifies a Sender error: its code, and whether it is the
// session going away (not_connected) or permanent.
func sendErr(err error) (code string, gone, permanent bool) {
	var ce *event.CommandError
	if errors.As(err, &ce) {
		return ce.Code, ce.Code == event.CodeNotConnected, permanentCodes[ce.Code]
	}
	return "send_error", false, false
}

// sendFailed counts a send error toward the bulk pause, and pauses bulk
// sending when the run reaches PauseAfterErrors.
func (w *Worker) sendFailed(ctx context.Context) error {
	w.mu.Lock()
	w.errs++
	errs, limit, paused := w.errs, w.settings.PauseAfterErrors, w.paused
	if errs >= limit {
		w.errs = 0
	}
	w.mu.Unlock()
	if errs < limit || paused {
		return nil
	}
	now := w.cfg.Clock.Now()
	if err := PauseBulk(context.WithoutCancel(ctx), w.cfg.DB, w.cfg.Publisher, w.cfg.Mentorado, ReasonSendErrors, nil, errs, now); err != nil {
		return err
	}
	w.mu.Lock()
	w.paused = true
	w.mu.Unlock()
	w.cfg.Log.Warn().Int64("mentorado", w.cfg.Mentorado).Int("errors", errs).Msg("bulk sending paused after a run of send errors")
	return nil
}

func (w *Worker) sendOK() {
	w.mu.Lock()
	w.errs = 0
	w.mu.Unlock()
}

// holdLane makes both lanes wait d before the next try.
func (w *Worker) holdLane(d time.Duration) {
	w.mu.Lock()
	w.retryAt = w.cfg.Clock.Now().Add(d)
	w.mu.Unlock()
}

// chatLane settles the outbox's first send: expires it, waits for the
// pacer, or sends it. busy reports that the outbox has a send (the
// campaign lane waits behind it).
func (w *Worker) chatLane(ctx context.Context) (wait time.Duration, busy bool, err error) {
	db, m := w.cfg.DB, w.cfg.Mentorado
	row, err := db.Outbox().Next(ctx, m)
	if err != nil || row == nil {
		return -1, false, err
	}
	now := w.cfg.Clock.Now()
	if row.State == store.OutboxQueued && !now.Before(row.ExpiresAt) {
		_, err := db.Outbox().Finish(ctx, store.OutboxFinish{ID: row.ID, State: store.OutboxExpired, Reason: ReasonTTLExpired},
			func(ctx context.Context, r store.OutboxRow) error { return publishOutbox(ctx, w.cfg.Publisher, r, now) })
		return 0, true, err
	}
	req := row.Request
	jid, _ := outboxChat(req)
	conv, err := w.conversational(ctx, jid)
	if err != nil {
		return 0, true, err
	}
	text := req.Text + req.Caption
	typing := w.typingFor(text)

	// Wait for the pacer (the expiry comes first if it is sooner).
	var pace time.Duration
	if conv {
		w.mu.Lock()
		pace = w.chatWaitLocked(now)
		w.mu.Unlock()
	} else {
		count, err := w.unsolicitedToday(ctx, now)
		if err != nil {
			return 0, true, err
		}
		w.mu.Lock()
		if count >= w.settings.DailyCap {
			pace = untilTomorrow(now)
		} else {
			pace = w.unsolicitedWaitLocked(now) - typing
		}
		w.mu.Unlock()
	}
	if pace > 0 {
		if row.State == store.OutboxQueued {
			pace = min(pace, row.ExpiresAt.Sub(now))
		}
		return pace, true, nil
	}

	ok, err := db.Outbox().MarkSending(ctx, row.ID)
	if err != nil || !ok {
		return 0, true, err
	}
	w.mu.Lock()
	sendAt := now.Add(typing)
	if conv {
		w.chatWaitLocked(now)
		w.tokens--
	} else {
		sendAt = now.Add(max(typing, w.unsolicitedWaitLocked(now)))
		w.tookUnsolicitedLocked(now)
	}
	w.mu.Unlock()
	if !w.typeThenWait(ctx, jid, typing, sendAt) {
		return 0, true, nil // ctx ended: the row stays in sending, sent again with its id
	}
	msg, err := w.cfg.Sender.Send(ctx, req, row.WAMessageID, SendMeta{ClientID: row.ClientID})
	if ctx.Err() != nil && err != nil {
		return 0, true, nil // the session went away mid-send: the row stays in sending
	}
	sentAt := w.cfg.Clock.Now()
	if !conv {
		w.mu.Lock()
		w.tookBulkLocked(sentAt) // a campaign message keeps its gap after it
		w.mu.Unlock()
	}
	bg := context.WithoutCancel(ctx)
	if err == nil {
		w.sendOK()
		if msg != nil && !msg.Timestamp.IsZero() {
			sentAt = msg.Timestamp
		}
		if err := db.Outbox().MarkSent(bg, row.ID, sentAt); err != nil {
			return 0, true, err
		}
		if !conv {
			return 0, true, w.countUnsolicited(bg, sentAt)
		}
		return 0, true, nil
	}
	w.typingOff(bg, jid, typing)
	code, gone, permanent := sendErr(err)
	if gone {
		w.holdLane(w.cfg.Poll)
		return 0, true, db.Outbox().Requeue(bg, row.ID, "", false)
	}
	w.cfg.Log.Info().Int64("mentorado", m).Str("wa_id", row.WAMessageID).Str("code", code).Err(err).Msg("queued send failed")
	var ferr error
	if permanent || row.Attempts+1 >= maxSendAttempts {
		_, ferr = db.Outbox().Finish(bg, store.OutboxFinish{ID: row.ID, States: []string{store.OutboxSending}, State: store.OutboxFailed, Reason: code},
			func(ctx context.Context, r store.OutboxRow) error {
				return publishOutbox(ctx, w.cfg.Publisher, r, sentAt)
			})
	} else {
		w.holdLane(retryBackoff(row.Attempts + 1))
		ferr = db.Outbox().Requeue(bg, row.ID, code, true)
	}
	return 0, true, errors.Join(ferr, w.sendFailed(ctx))
}

// typeThenWait shows typing in jid (for typing > 0), and waits until
// sendAt; false when ctx ended.
func (w *Worker) typeThenWait(ctx context.Context, jid string, typing time.Duration, sendAt time.Time) bool {
	if typing > 0 {
		if err := w.cfg.Sender.Typing(ctx, jid, true); err != nil && ctx.Err() == nil {
			w.cfg.Log.Debug().Err(err).Msg("typing")
		}
	}
	return w.sleep(ctx, sendAt.Sub(w.cfg.Clock.Now()), false)
}

// typingOff clears typing after a send that did not happen (a sent
// message clears it on the recipient's phone by itself).
func (w *Worker) typingOff(ctx context.Context, jid string, typing time.Duration) {
	if typing > 0 {
		_ = w.cfg.Sender.Typing(ctx, jid, false)
	}
}

// campaignPacing reads a campaign's stored pacing, bounded by the
// operator's minimum; the mentorado's bulk gap when it has none.
func (w *Worker) campaignPacing(c store.CampaignRow) Pacing {
	w.mu.Lock()
	p := w.settingsPacing()
	w.mu.Unlock()
	var cp Pacing
	if len(c.Pacing) > 0 && json.Unmarshal(c.Pacing, &cp) == nil && cp.MinGapSeconds > 0 {
		p = cp
	}
	p.MinGapSeconds = max(p.MinGapSeconds, w.cfg.Limits.MinBulkGapSeconds)
	p.MaxGapSeconds = max(p.MaxGapSeconds, p.MinGapSeconds)
	return p
}

// campaignLane sends to (or skips) the next recipient of the oldest
// running campaign, starting due scheduled ones and completing finished
// ones; nothing while bulk sending is paused.
func (w *Worker) campaignLane(ctx context.Context) (time.Duration, error) {
	w.mu.Lock()
	paused := w.paused
	w.mu.Unlock()
	if paused {
		return -1, nil
	}
	db, m := w.cfg.DB, w.cfg.Mentorado
	now := w.cfg.Clock.Now()
	if _, err := db.Outbox().StartDueCampaigns(ctx, m, now); err != nil {
		return 0, err
	}
	camps, err := db.Outbox().RunningCampaigns(ctx, m)
	if err != nil {
		return 0, err
	}
	for _, c := range camps {
		r, err := db.Outbox().NextRecipient(ctx, c.ID)
		if err != nil {
			return 0, err
		}
		if r == nil {
			if _, err := db.Outbox().CompleteCampaign(ctx, c.ID, now); err != nil {
				return 0, err
			}
			continue
		}
		return w.sendRecipient(ctx, c, *r)
	}
	return -1, nil
}

// sendRecipient settles recipient r of campaign c: skipped (opted out, not
// on WhatsApp, a duplicate), or sent under the pacer.
func (w *Worker) sendRecipient(ctx context.Context, c store.CampaignRow, r store.RecipientRow) (time.Duration, error) {
	db, m := w.cfg.DB, w.cfg.Mentorado
	out := db.Outbox()
	now := w.cfg.Clock.Now()
	bg := context.WithoutCancel(ctx)
	opted, err := out.OptedOut(ctx, m, phone.BrazilVariants(r.Phone))
	if err != nil {
		return 0, err
	}
	if opted {
		return 0, out.FinishRecipient(ctx, r.ID, store.RecipientSkipped, store.ReasonOptedOut, nil)
	}
	count, err := w.unsolicitedToday(ctx, now)
	if err != nil {
		return 0, err
	}
	typing := w.typingFor(r.Text)
	pacing := w.campaignPacing(c)
	w.mu.Lock()
	var pace time.Duration
	if count >= w.settings.DailyCap {
		pace = untilTomorrow(now)
	} else {
		pace = max(waitUntil(now, w.bulkDueLocked(pacing).Add(-typing)), waitUntil(now, w.resolveAt))
	}
	w.mu.Unlock()
	if pace > 0 {
		return pace, nil
	}

	jid := r.JID
	if r.State != store.RecipientSending || jid == "" {
		jid, err = w.cfg.Sender.Resolve(ctx, r.Phone)
		if ctx.Err() != nil {
			return 0, nil
		}
		if err != nil {
			if _, gone, _ := sendErr(err); gone {
				w.holdLane(w.cfg.Poll)
				return 0, nil
			}
			w.holdLane(retryBackoff(1))
			return 0, errors.Join(fmt.Errorf("outbound: resolve recipient %d: %w", r.ID, err), w.sendFailed(ctx))
		}
		if jid == "" {
			w.mu.Lock()
			w.resolveAt = w.cfg.Clock.Now().Add(resolveGap)
			w.mu.Unlock()
			return 0, out.FinishRecipient(ctx, r.ID, store.RecipientSkipped, store.ReasonNotOnWhatsApp, nil)
		}
	}
	dup, err := out.SentToJID(ctx, c.ID, r.ID, jid)
	if err != nil {
		return 0, err
	}
	if dup {
		return 0, out.FinishRecipient(ctx, r.ID, store.RecipientSkipped, store.ReasonDuplicate, nil)
	}
	waID, ok, err := out.ClaimRecipient(ctx, r.ID, w.newMessageID(), jid)
	if err != nil || !ok {
		return 0, err // paused or cancelled meanwhile: the next step sees it
	}

	w.mu.Lock()
	sendAt := w.cfg.Clock.Now().Add(typing)
	if due := w.bulkDueLocked(pacing); due.After(sendAt) {
		sendAt = due
	}
	w.mu.Unlock()
	if !w.typeThenWait(ctx, jid, typing, sendAt) {
		return 0, nil // the recipient stays in sending, sent again with its id
	}
	kind := c.Message.Kind
	if kind == "" {
		kind = event.KindText
	}
	req := event.SendRequest{Chat: jid, Kind: kind, MediaID: c.Message.MediaID, FileName: c.Message.FileName}
	if kind == event.KindText {
		req.Text = r.Text
	} else {
		req.Caption = r.Text
	}
	msg, err := w.cfg.Sender.Send(ctx, req, waID, SendMeta{CampaignID: c.ID})
	if ctx.Err() != nil && err != nil {
		return 0, nil
	}
	sentAt := w.cfg.Clock.Now()
	code, gone, permanent := sendErr(err)
	refused := err != nil && refusedCodes[code]
	if !refused {
		w.mu.Lock()
		w.tookBulkLocked(sentAt)
		w.mu.Unlock()
	}
	if err == nil {
		w.sendOK()
		if msg != nil && !msg.Timestamp.IsZero() {
			sentAt = msg.Timestamp
		}
		var ferr error
		if msg != nil && msg.WAID != "" && msg.WAID != waID {
			// A provider that chooses its own message ids (Meta, Z-API
			// through the provider gateway): the recipient keeps the id
			// its message event and receipts carry.
			ferr = out.FinishRecipientSentAs(bg, r.ID, msg.WAID, sentAt)
		} else {
			ferr = out.FinishRecipient(bg, r.ID, store.RecipientSent, "", &sentAt)
		}
		return 0, errors.Join(ferr, w.countUnsolicited(bg, sentAt))
	}
	w.typingOff(bg, jid, typing)
	if gone {
		w.holdLane(w.cfg.Poll)
		return 0, out.RequeueRecipient(bg, r.ID, "", false)
	}
	w.cfg.Log.Info().Int64("mentorado", m).Int64("campaign", c.ID).Int64("recipient", r.ID).Str("code", code).Err(err).Msg("campaign send failed")
	var ferr error
	if permanent || r.Attempts+1 >= maxSendAttempts {
		ferr = out.FinishRecipient(bg, r.ID, store.RecipientFailed, code, nil)
	} else {
		w.holdLane(retryBackoff(r.Attempts + 1))
		ferr = out.RequeueRecipient(bg, r.ID, code, true)
	}
	if refused {
		return 0, ferr
	}
	return 0, errors.Join(ferr, w.sendFailed(ctx))
}
