package connector

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/proto/waWeb"
	wastore "go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/waconv"
)

// History sync (issue #12). After pairing (and later, on its own or on
// request) the phone sends its chats in chunks. whatsmeow is configured
// with ManualHistorySyncDownload: it dispatches the protocol message that
// announces a chunk (a HistorySyncNotification from our own device) and
// acks it, and leaves the download to us. The inbound handler stores the
// notification in Postgres (history_syncs) before WhatsApp's message is
// acked; a crash in between is covered by WhatsApp redelivering it (the
// enqueue is idempotent).
//
// A worker per connected session then takes one chunk at a time: it
// fetches the blob (inline in the first notification, else from the
// CDN), and streams it, decompressing as it reads and decoding one
// conversation at a time (waconv.ScanHistory), so a large sync never sits
// decoded in memory; only the compressed blob does. A first pass teaches
// whatsmeow's LID store the chunk's phone ↔ LID pairs (and publishes them
// as contacts) and publishes the push names; the second converts each
// conversation's messages exactly as live ones, marked as history and
// under the id the live message would have, and queues their media like
// live media. Then the chunk's history progress event, then the row is
// deleted. A crash mid-chunk redoes the chunk: the same ids, so the
// duplicates are dropped.

// historyQueue is a session's access to history_syncs
// (store.HistorySyncQueries).
type historyQueue interface {
	Enqueue(ctx context.Context, h store.HistorySyncJob) (bool, error)
	Claim(ctx context.Context, m int64, lease time.Duration, limit int) ([]store.HistorySyncJob, error)
	Retry(ctx context.Context, m int64, waID, reason string, delay time.Duration) (int, error)
	Release(ctx context.Context, m int64, waID string) error
	Done(ctx context.Context, m int64, waID string) error
	Pending(ctx context.Context, m int64) (int, error)
}

var _ historyQueue = store.HistorySyncQueries{}

// historyClient is what the history worker needs from a client:
// *whatsmeow.Client has it; a client without it (the simulation) never
// announces history.
type historyClient interface {
	Download(ctx context.Context, msg whatsmeow.DownloadableMessage) ([]byte, error)
	ParseWebMessage(chatJID types.JID, webMsg *waWeb.WebMessageInfo) (*events.Message, error)
}

var _ historyClient = (*whatsmeow.Client)(nil)

// historyDevice returns the whatsmeow device store a history sync
// teaches (LIDs, push names, message secrets, privacy tokens): the real
// client's, or that of a client offering one (test doubles); nil when
// there is none, and then only events are published.
func historyDevice(cli Client) *wastore.Device {
	switch c := cli.(type) {
	case *whatsmeow.Client:
		return c.Store
	case interface{ DeviceStore() *wastore.Device }:
		return c.DeviceStore()
	}
	return nil
}

// HistoryConfig configures the import of the phone's history sync. Zero
// values take defaults.
type HistoryConfig struct {
	// MaxAttempts is how many failed attempts at a chunk are made before
	// it fails for good (default 8).
	MaxAttempts int
	// MaxAge fails a chunk still not imported this long after it was
	// announced (default 72 h): WhatsApp's CDN no longer has it.
	MaxAge time.Duration
	// Lease is how long a claimed chunk is reserved for its worker
	// (default 10 min); a crashed worker's chunk comes back after it.
	Lease time.Duration
	// Poll is how often a worker with chunks waiting for a retry looks
	// for due ones (default 5 s).
	Poll time.Duration
	// RetryBase and RetryMax bound the backoff between attempts
	// (min(RetryBase·2^(n-1), RetryMax), jittered; defaults 5 s and 10 min).
	RetryBase, RetryMax time.Duration
}

// WithDefaults fills zero values.
func (c HistoryConfig) WithDefaults() HistoryConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	def(&c.MaxAge, 72*time.Hour)
	def(&c.Lease, 10*time.Minute)
	def(&c.Poll, 5*time.Second)
	def(&c.RetryBase, 5*time.Second)
	def(&c.RetryMax, 10*time.Minute)
	return c
}

// Validate reports settings that cannot work.
func (c HistoryConfig) Validate() error {
	switch {
	case c.MaxAttempts < 0:
		return errors.New("connector: history attempts must not be negative")
	case c.MaxAge < 0 || c.Lease < 0 || c.Poll < 0 || c.RetryBase < 0 || c.RetryMax < 0:
		return errors.New("connector: history durations must not be negative")
	}
	return nil
}

func (c HistoryConfig) retryDelay(n int, rnd float64) time.Duration {
	return backoff(c.RetryBase, c.RetryMax, n, rnd)
}

// Reasons a failed history progress event gives: codes, never error
// texts (a download error's text holds the blob's URL).
const (
	historyUndecodable = "undecodable" // the stored notification does not parse
	historyCorrupt     = "corrupt"     // the blob is not a history sync
	historyExpired     = "expired"     // MaxAge passed
	historyGaveUp      = "download_failed"
)

var errPublishHistory = errors.New("publish history")

// historyEnabled reports whether this session imports history.
func (s *session) historyEnabled() bool { return s.d.histories != nil }

// enqueueHistory queues the chunk a history sync notification announces.
// It runs on the whatsmeow goroutine, before the ack.
func (s *session) enqueueHistory(ctx context.Context, evt any) error {
	if !s.historyEnabled() {
		return nil
	}
	notif, id, ts, ok := waconv.HistoryNotificationOf(evt)
	if !ok {
		return nil
	}
	b, err := proto.Marshal(notif)
	if err != nil {
		return err
	}
	if ts.IsZero() {
		ts = s.d.clock.Now()
	}
	created, err := s.d.histories.Enqueue(ctx, store.HistorySyncJob{Mentorado: s.m, WAID: id, Notification: b, SyncedAt: ts})
	if err != nil {
		return err
	}
	if created {
		s.log.Info().Str("wa_id", id).Str("sync", syncName(notif)).Uint32("chunk", notif.GetChunkOrder()).Msg("history sync chunk queued")
		if w := s.history.Load(); w != nil {
			w.kick()
		}
	}
	return nil
}

func syncName(n *waE2E.HistorySyncNotification) string {
	return waconv.HistorySyncName(waHistorySync.HistorySync_HistorySyncType(n.GetSyncType()))
}

// historyWorker imports one session's history chunks with one client, one
// chunk at a time; it stops when the session leaves connected, drops the
// client or stops.
type historyWorker struct {
	s      *session
	cli    Client
	hc     historyClient
	dev    *wastore.Device
	cancel context.CancelFunc
	wake   chan struct{}
}

// startHistory runs a worker for the current client, unless one runs for
// it already. Called on the session goroutine when it becomes connected.
func (s *session) startHistory() {
	if !s.historyEnabled() || s.cli == nil || s.ctx == nil {
		return
	}
	if w := s.history.Load(); w != nil && w.cli == s.cli {
		return
	}
	s.stopHistory()
	hc, ok := s.cli.(historyClient)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	w := &historyWorker{s: s, cli: s.cli, hc: hc, dev: historyDevice(s.cli), cancel: cancel, wake: make(chan struct{}, 1)}
	s.history.Store(w)
	s.historyWG.Add(1)
	go w.run(ctx)
}

// stopHistory stops the worker without waiting for it (its chunk in
// flight is released to the queue); session.stop waits.
func (s *session) stopHistory() {
	if w := s.history.Swap(nil); w != nil {
		w.cancel()
	}
}

func (w *historyWorker) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *historyWorker) run(ctx context.Context) {
	defer w.s.historyWG.Done()
	s := w.s
	cfg := s.d.cfg.History
	for ctx.Err() == nil {
		jobs, err := s.d.histories.Claim(ctx, s.m, cfg.Lease, 1)
		if err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("claim history syncs")
		}
		if len(jobs) == 1 {
			w.process(ctx, jobs[0])
			continue
		}
		pending, err := s.d.histories.Pending(ctx, s.m)
		if err == nil && pending == 0 {
			// Nothing queued: only a new notification brings work, and it
			// wakes the loop. An idle session costs no queries.
			select {
			case <-ctx.Done():
			case <-w.wake:
			}
			continue
		}
		t := time.NewTimer(cfg.Poll) // retries come due
		select {
		case <-ctx.Done():
		case <-w.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// chunkCounts are what a chunk's progress event reports.
type chunkCounts struct {
	conversations, messages, skipped int
}

// process imports one chunk to its end: published, failed for good, due
// again later, or (the worker stopping) released.
func (w *historyWorker) process(ctx context.Context, j store.HistorySyncJob) {
	s := w.s
	cfg := s.d.cfg.History
	log := s.log.With().Str("wa_id", j.WAID).Int("attempt", j.Attempts+1).Logger()
	notif := &waE2E.HistorySyncNotification{}
	if err := proto.Unmarshal(j.Notification, notif); err != nil {
		w.fail(ctx, j, notif, historyUndecodable)
		return
	}
	if s.d.clock.Now().Sub(j.CreatedAt) > cfg.MaxAge {
		w.fail(ctx, j, notif, historyExpired)
		return
	}
	start := time.Now()
	blob := notif.GetInitialHistBootstrapInlinePayload()
	var err error
	switch {
	case blob != nil:
	case notif.GetDirectPath() == "":
		// Nothing to fetch (e.g. a NO_HISTORY notification): an empty chunk.
	default:
		blob, err = w.hc.Download(ctx, notif)
	}
	if ctx.Err() != nil {
		w.release(j)
		return
	}
	if errors.Is(err, whatsmeow.ErrMediaDownloadFailedWith404) || errors.Is(err, whatsmeow.ErrMediaDownloadFailedWith410) {
		// Gone from the CDN, and unlike media there is nobody to ask for
		// a re-upload.
		w.fail(ctx, j, notif, errCode(err))
		return
	}
	if err != nil {
		w.retry(ctx, j, notif, errCode(err))
		return
	}
	n, hdr, err := w.importChunk(ctx, j, notif, blob)
	switch {
	case ctx.Err() != nil:
		w.release(j)
		return
	case errors.Is(err, waconv.ErrHistoryCorrupt):
		log.Warn().Err(err).Msg("history sync chunk is corrupt")
		w.fail(ctx, j, notif, historyCorrupt)
		return
	case err != nil:
		log.Warn().Err(err).Msg("import history sync chunk")
		code := "import"
		if errors.Is(err, errPublishHistory) {
			code = "publish"
		}
		w.retry(ctx, j, notif, code)
		return
	}
	progress := hdr.Progress
	if progress == 0 {
		progress = int(notif.GetProgress())
	}
	p := &event.HistoryProgress{
		Sync: syncName(notif), Chunk: int(notif.GetChunkOrder()), Progress: min(max(progress, 0), 100),
		Conversations: n.conversations, Messages: n.messages, Skipped: n.skipped, SyncedAt: j.SyncedAt,
	}
	if err := w.publishProgress(ctx, j, p); err != nil {
		if ctx.Err() != nil {
			w.release(j)
			return
		}
		w.retry(ctx, j, notif, "publish")
		return
	}
	if err := s.d.histories.Done(ctx, s.m, j.WAID); err != nil {
		log.Warn().Err(err).Msg("remove imported history chunk (its events are published; a repeat is deduplicated)")
	}
	s.d.metrics.historyChunks.WithLabelValues("imported").Inc()
	log.Info().Str("sync", p.Sync).Int("chunk", p.Chunk).Int("conversations", p.Conversations).Int("messages", p.Messages).
		Int("skipped", p.Skipped).Dur("took", time.Since(start)).Msg("history sync chunk imported")
}

// importChunk streams a blob: the first pass stores and publishes what
// the second needs (phone ↔ LID pairs) and the push names, the second the
// conversations.
func (w *historyWorker) importChunk(ctx context.Context, j store.HistorySyncJob, notif *waE2E.HistorySyncNotification, blob []byte) (chunkCounts, waconv.HistoryHeader, error) {
	var n chunkCounts
	if len(blob) == 0 {
		return n, waconv.HistoryHeader{}, nil
	}
	s := w.s
	conv := &waconv.Converter{Mentorado: s.m, Now: s.d.clock.Now}
	if w.dev != nil && w.dev.LIDs != nil {
		conv.LIDs = w.dev.LIDs
	}
	mark := event.History{Sync: syncName(notif), SyncedAt: j.SyncedAt}
	var pairs []wastore.LIDMapping
	flushPairs := func() error {
		if len(pairs) == 0 || w.dev == nil || w.dev.LIDs == nil {
			pairs = pairs[:0]
			return nil
		}
		err := w.dev.LIDs.PutManyLIDMappings(ctx, pairs)
		pairs = pairs[:0]
		if err != nil {
			return fmt.Errorf("store LID mappings: %w", err)
		}
		return nil
	}
	// learn records a phone ↔ LID pair: in whatsmeow's store, so this
	// chunk's messages resolve phones, and as a contact event, so the
	// persister learns it too.
	learn := func(pnJID, lidJID string) error {
		pn, lid, ok := waconv.HistoryLIDPair(pnJID, lidJID)
		if !ok {
			return nil
		}
		pairs = append(pairs, wastore.LIDMapping{LID: lid, PN: pn})
		env, err := conv.HistoryLIDContact(pn, lid, j.SyncedAt)
		if err != nil {
			return err
		}
		if err := w.publish(ctx, env); err != nil {
			return err
		}
		if len(pairs) >= 500 {
			return flushPairs()
		}
		return nil
	}

	hdr, err := w.scan(blob, waconv.HistoryVisitor{
		Settings: func(g *waHistorySync.GlobalSettings) error { return w.storeSettings(ctx, g) },
		Mapping:  func(m *waHistorySync.PhoneNumberToLIDMapping) error { return learn(m.GetPnJID(), m.GetLidJID()) },
		Pushname: func(p *waHistorySync.Pushname) error {
			envs, err := conv.HistoryPushName(ctx, p, j.SyncedAt)
			if err != nil {
				return err
			}
			for _, env := range envs {
				if err := w.publish(ctx, env); err != nil {
					return err
				}
			}
			if w.dev != nil && w.dev.Contacts != nil && len(envs) > 0 {
				if jid, err := types.ParseJID(p.GetID()); err == nil {
					if _, _, err := w.dev.Contacts.PutPushName(ctx, jid, p.GetPushname()); err != nil {
						return fmt.Errorf("store push name: %w", err)
					}
				}
			}
			return nil
		},
	})
	if err != nil {
		return n, hdr, err
	}
	if err := flushPairs(); err != nil {
		return n, hdr, err
	}

	_, err = w.scan(blob, waconv.HistoryVisitor{Conversation: func(c *waHistorySync.Conversation) error {
		n.conversations++
		if err := ctx.Err(); err != nil {
			return err
		}
		chat, err := types.ParseJID(c.GetID())
		if err != nil || chat.IsEmpty() {
			n.skipped += len(c.GetMessages())
			return nil
		}
		if err := learn(c.GetPnJID(), c.GetLidJID()); err != nil {
			return err
		}
		if err := flushPairs(); err != nil {
			return err
		}
		if err := w.storeToken(ctx, chat, c); err != nil {
			return err
		}
		// A group met only in history is described like one met live.
		s.groupSeen(chat.String())
		var secrets []wastore.MessageSecretInsert
		for _, hm := range c.GetMessages() {
			web := hm.GetMessage()
			evt, err := w.hc.ParseWebMessage(chat, web)
			if err != nil || evt == nil {
				n.skipped++
				continue
			}
			if secret := web.GetMessageSecret(); len(secret) > 0 && web.GetKey().GetID() != "" {
				secrets = append(secrets, wastore.MessageSecretInsert{Chat: evt.Info.Chat, Sender: evt.Info.Sender, ID: web.GetKey().GetID(), Secret: secret})
			}
			envs, err := conv.HistoryMessage(ctx, evt, mark)
			var perm *event.Error
			if errors.As(err, &perm) {
				// Not expressible in the contract (live, it would be
				// dead-lettered): counted, never retried forever.
				s.log.Warn().Err(err).Str("wa_id", evt.Info.ID).Msg("history message not convertible; skipped")
				n.skipped++
				continue
			}
			if err != nil {
				return err
			}
			published := false
			for _, env := range envs {
				if err := w.publish(ctx, env); err != nil {
					return err
				}
				if env.Type == event.TypeMessage {
					published = true
				}
			}
			if !published {
				n.skipped++
				continue
			}
			n.messages++
			s.d.metrics.historyMessages.Inc()
			// Its file, as for a live media message.
			if err := s.enqueueDownload(ctx, evt); err != nil {
				return fmt.Errorf("queue media download: %w", err)
			}
		}
		if len(secrets) > 0 && w.dev != nil && w.dev.MsgSecrets != nil {
			if err := w.dev.MsgSecrets.PutMessageSecrets(ctx, secrets); err != nil {
				return fmt.Errorf("store message secrets: %w", err)
			}
		}
		return nil
	}})
	n.skipped += hdr.Statuses
	return n, hdr, err
}

// scan decompresses blob as it streams it through v.
func (w *historyWorker) scan(blob []byte, v waconv.HistoryVisitor) (waconv.HistoryHeader, error) {
	zr, err := zlib.NewReader(bytes.NewReader(blob))
	if err != nil {
		return waconv.HistoryHeader{}, fmt.Errorf("%w: zlib: %w", waconv.ErrHistoryCorrupt, err)
	}
	defer zr.Close()
	hdr, err := waconv.ScanHistory(zlibErrors{zr}, v)
	return hdr, err
}

// zlibErrors marks decompression errors as corruption (a truncated or
// garbled blob), keeping io.EOF as the end of the stream.
type zlibErrors struct{ r io.Reader }

func (z zlibErrors) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%w: zlib: %w", waconv.ErrHistoryCorrupt, err)
	}
	return n, err
}

// storeSettings keeps when the phone moved its chats to LIDs, as whatsmeow
// does when it imports history itself: from then on it sends direct
// messages to LIDs.
func (w *historyWorker) storeSettings(ctx context.Context, g *waHistorySync.GlobalSettings) error {
	dev := w.dev
	if dev == nil || dev.Container == nil || dev.LIDMigrationTimestamp != 0 || g.GetChatDbLidMigrationTimestamp() <= 0 {
		return nil
	}
	dev.LIDMigrationTimestamp = g.GetChatDbLidMigrationTimestamp()
	if err := dev.Save(ctx); err != nil {
		return fmt.Errorf("store the LID migration time: %w", err)
	}
	return nil
}

// storeToken keeps a direct chat's privacy token, as whatsmeow does when
// it imports history itself (sending to some contacts needs it).
func (w *historyWorker) storeToken(ctx context.Context, chat types.JID, c *waHistorySync.Conversation) error {
	if chat.Server != types.DefaultUserServer || c.GetTcToken() == nil || w.dev == nil || w.dev.PrivacyTokens == nil {
		return nil
	}
	ts := c.GetTcTokenSenderTimestamp()
	if ts == 0 {
		ts = c.GetTcTokenTimestamp()
	}
	if err := w.dev.PrivacyTokens.PutPrivacyTokens(ctx, wastore.PrivacyToken{User: chat, Token: c.GetTcToken(), Timestamp: time.Unix(int64(ts), 0)}); err != nil {
		return fmt.Errorf("store privacy token: %w", err)
	}
	return nil
}

// publish stores one event of a chunk.
func (w *historyWorker) publish(ctx context.Context, env event.Envelope) error {
	s := w.s
	pctx, cancel := context.WithTimeout(ctx, s.d.cfg.PublishTimeout)
	defer cancel()
	if err := s.publishEnv(pctx, env); err != nil {
		return fmt.Errorf("%w %s: %w", errPublishHistory, env.ID, err)
	}
	return nil
}

func (w *historyWorker) publishProgress(ctx context.Context, j store.HistorySyncJob, p *event.HistoryProgress) error {
	conv := &waconv.Converter{Mentorado: w.s.m, Now: w.s.d.clock.Now}
	env, err := conv.HistoryProgress(j.WAID, p)
	if err != nil {
		return err
	}
	return w.publish(ctx, env)
}

// retry records a failed attempt, or fails the chunk for good after
// MaxAttempts.
func (w *historyWorker) retry(ctx context.Context, j store.HistorySyncJob, notif *waE2E.HistorySyncNotification, code string) {
	s := w.s
	cfg := s.d.cfg.History
	if j.Attempts+1 >= cfg.MaxAttempts {
		w.fail(ctx, j, notif, historyGaveUp)
		return
	}
	delay := cfg.retryDelay(j.Attempts+1, s.d.rand())
	if ctx.Err() != nil {
		w.release(j)
		return
	}
	if _, err := s.d.histories.Retry(ctx, s.m, j.WAID, code, delay); err != nil {
		s.log.Warn().Err(err).Str("wa_id", j.WAID).Msg("record history sync retry (the lease brings it back)")
	}
	s.d.metrics.historyChunks.WithLabelValues("retry").Inc()
	s.log.Info().Str("wa_id", j.WAID).Str("error", code).Dur("retry_in", delay).Int("attempt", j.Attempts+1).Msg("history sync chunk failed; will retry")
}

// fail publishes the progress event of a chunk that will never be
// imported, then drops it.
func (w *historyWorker) fail(ctx context.Context, j store.HistorySyncJob, notif *waE2E.HistorySyncNotification, reason string) {
	s := w.s
	p := &event.HistoryProgress{
		Sync: syncName(notif), Chunk: int(notif.GetChunkOrder()), Progress: min(int(notif.GetProgress()), 100),
		Failed: true, Reason: reason, SyncedAt: j.SyncedAt,
	}
	if err := w.publishProgress(ctx, j, p); err != nil {
		if ctx.Err() != nil {
			w.release(j)
			return
		}
		if _, rerr := s.d.histories.Retry(ctx, s.m, j.WAID, "publish", s.d.cfg.History.retryDelay(1, s.d.rand())); rerr != nil {
			s.log.Warn().Err(rerr).Msg("record history sync retry")
		}
		return
	}
	if err := s.d.histories.Done(ctx, s.m, j.WAID); err != nil {
		s.log.Warn().Err(err).Str("wa_id", j.WAID).Msg("remove failed history chunk")
	}
	s.d.metrics.historyChunks.WithLabelValues("failed").Inc()
	s.log.Warn().Str("wa_id", j.WAID).Str("reason", reason).Msg("history sync chunk failed for good")
}

// release gives a claimed chunk back to the queue (the worker stops).
func (w *historyWorker) release(j store.HistorySyncJob) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.s.ctx), w.s.d.cfg.PublishTimeout)
	defer cancel()
	if err := w.s.d.histories.Release(ctx, w.s.m, j.WAID); err != nil {
		w.s.log.Debug().Err(err).Str("wa_id", j.WAID).Msg("release history sync (its lease expires)")
	}
}
