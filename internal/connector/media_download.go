package connector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waMmsRetry"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/waconv"
)

// Media downloads (docs/decisions/0011-media.md). The inbound handler
// publishes a media message's event, then queues its download in Postgres
// (media_downloads) and returns: WhatsApp's ack waits for both, never for
// the download. A crash between the two is covered by WhatsApp
// redelivering the unacked message (the publish dedups by id, the enqueue
// is idempotent). A worker per connected session then claims the
// session's due downloads, fetches and verifies each file with the
// session's client, stores it in the media store and publishes the media
// event; a download that gets 404/410 asks the sender's phone to upload
// the file again (a media retry receipt) and uses the new direct path.

// downloadQueue is a session's access to media_downloads
// (store.MediaDownloadQueries).
type downloadQueue interface {
	Enqueue(ctx context.Context, d store.DownloadJob) (bool, error)
	Claim(ctx context.Context, m int64, lease time.Duration, limit int) ([]store.DownloadJob, error)
	Retry(ctx context.Context, m int64, waID, reason string, delay time.Duration) (int, error)
	Release(ctx context.Context, m int64, waID string) error
	UpdateMessage(ctx context.Context, m int64, waID string, msg []byte) error
	Done(ctx context.Context, m int64, waID string) error
	Pending(ctx context.Context, m int64) (int, error)
}

var _ downloadQueue = store.MediaDownloadQueries{}

// mediaClient is what downloads and media sends need from a client:
// *whatsmeow.Client has it; a client without it (an old simulation) only
// carries text.
type mediaClient interface {
	Download(ctx context.Context, msg whatsmeow.DownloadableMessage) ([]byte, error)
	SendMediaRetryReceipt(ctx context.Context, message *types.MessageInfo, mediaKey []byte) error
	Upload(ctx context.Context, plaintext []byte, appInfo whatsmeow.MediaType) (whatsmeow.UploadResponse, error)
}

var _ mediaClient = (*whatsmeow.Client)(nil)

// MediaConfig configures media downloads and sends. Zero values take defaults.
type MediaConfig struct {
	// Concurrency is the downloads one session runs at once (default 2).
	Concurrency int
	// MaxAttempts is how many failed downloads of a file are tried before
	// it fails for good (default 8).
	MaxAttempts int
	// MaxAge fails a download still not done this long after its message
	// arrived (default 72 h).
	MaxAge time.Duration
	// Lease is how long a claimed download is reserved for its worker
	// (default 5 min); a crashed worker's downloads come back after it.
	Lease time.Duration
	// Poll is how often a worker looks for due downloads when not woken
	// by a new message (default 5 s).
	Poll time.Duration
	// RetryBase and RetryMax bound the backoff between attempts
	// (min(RetryBase·2^(n-1), RetryMax), jittered; defaults 5 s and 10 min).
	RetryBase, RetryMax time.Duration
	// ReuploadWait is how long a worker waits for the sender's phone to
	// answer a re-upload request (default 60 s).
	ReuploadWait time.Duration
	// Limits is the largest file accepted per kind, received or sent
	// (zero fields: media.DefaultLimits).
	Limits media.Limits
}

// WithDefaults fills zero values.
func (c MediaConfig) WithDefaults() MediaConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 2
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 8
	}
	def(&c.MaxAge, 72*time.Hour)
	def(&c.Lease, 5*time.Minute)
	def(&c.Poll, 5*time.Second)
	def(&c.RetryBase, 5*time.Second)
	def(&c.RetryMax, 10*time.Minute)
	def(&c.ReuploadWait, time.Minute)
	return c
}

// Validate reports settings that cannot work.
func (c MediaConfig) Validate() error {
	switch {
	case c.Concurrency < 0 || c.MaxAttempts < 0:
		return errors.New("connector: media concurrency and attempts must not be negative")
	case c.MaxAge < 0 || c.Lease < 0 || c.Poll < 0 || c.RetryBase < 0 || c.RetryMax < 0 || c.ReuploadWait < 0:
		return errors.New("connector: media durations must not be negative")
	case c.Lease != 0 && c.ReuploadWait >= c.Lease:
		return errors.New("connector: the media lease must outlast the re-upload wait")
	}
	return nil
}

// limit is the largest file of kind k.
func (c MediaConfig) limit(k event.Kind) int64 { return c.Limits.For(k) }

// retryDelay is the backoff before attempt n+1 after n failures.
func (c MediaConfig) retryDelay(n int, rnd float64) time.Duration {
	return backoff(c.RetryBase, c.RetryMax, n, rnd)
}

// backoff is min(base·2^(n-1), ceiling), jittered down by up to half with
// rnd in [0, 1): the delay of the durable queues (media downloads, history
// chunks) before attempt n+1 after n failures.
func backoff(base, ceiling time.Duration, n int, rnd float64) time.Duration {
	d := float64(base) * math.Pow(2, float64(max(n-1, 0)))
	d = min(d, float64(ceiling))
	return time.Duration(d * (0.5 + rnd/2))
}

// Reasons a media event gives for a file that failed for good. They are
// published: codes, never error texts (those may hold the direct path).
const (
	mediaTooLarge    = "too_large"
	mediaUndecodable = "undecodable"
	mediaGaveUp      = "download_failed"
	mediaExpired     = "expired"
	mediaNotOnPhone  = "not_available_on_phone"
	mediaMismatch    = "hash_mismatch"
)

// errCode names a download error without its text (an HTTP error's text
// holds the URL, whose direct path decrypts nothing alone but is still a
// media secret).
func errCode(err error) string {
	var he whatsmeow.DownloadHTTPError
	switch {
	case errors.As(err, &he) && he.Response != nil:
		return fmt.Sprintf("http_%d", he.StatusCode)
	case errors.Is(err, whatsmeow.ErrMediaNotAvailableOnPhone):
		return mediaNotOnPhone
	case errors.Is(err, whatsmeow.ErrInvalidMediaSHA256), errors.Is(err, whatsmeow.ErrInvalidMediaEncSHA256),
		errors.Is(err, whatsmeow.ErrInvalidMediaHMAC), errors.Is(err, whatsmeow.ErrFileLengthMismatch):
		return "verify_failed"
	case errors.Is(err, whatsmeow.ErrNotConnected), errors.Is(err, whatsmeow.ErrNotLoggedIn):
		return "not_connected"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, errReuploadTimeout):
		return "reupload_timeout"
	case errors.Is(err, errReupload):
		return err.Error()
	case errors.Is(err, errStoreMedia):
		return "media_store"
	case errors.Is(err, errPublishMedia):
		return "publish"
	}
	return "download_error"
}

var (
	errReuploadTimeout = errors.New("reupload_timeout")
	errReupload        = errors.New("reupload")
	errStoreMedia      = errors.New("media store")
	errPublishMedia    = errors.New("publish media event")
)

// mediaWorker downloads one session's files with one client; it stops
// when the session leaves connected, drops the client or stops.
type mediaWorker struct {
	s      *session
	cli    Client
	mc     mediaClient
	cancel context.CancelFunc
	wake   chan struct{}

	mu      sync.Mutex
	waiting map[string]chan *events.MediaRetry // message id → the download awaiting its re-upload
	depth   int                                // last queue depth added to the gauge
}

// mediaEnabled reports whether this session downloads media.
func (s *session) mediaEnabled() bool { return s.d.media != nil && s.d.downloads != nil }

// startMedia runs a worker for the current client, unless one runs for
// it already. Called on the session goroutine when it becomes connected.
func (s *session) startMedia() {
	if !s.mediaEnabled() || s.cli == nil || s.ctx == nil {
		return
	}
	if w := s.media.Load(); w != nil && w.cli == s.cli {
		return
	}
	s.stopMedia()
	mc, ok := s.cli.(mediaClient)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	w := &mediaWorker{s: s, cli: s.cli, mc: mc, cancel: cancel, wake: make(chan struct{}, 1), waiting: map[string]chan *events.MediaRetry{}}
	s.media.Store(w)
	s.mediaWG.Add(1)
	go w.run(ctx)
}

// stopMedia stops the worker without waiting for it (its in-flight
// downloads are released to the queue); session.stop waits.
func (s *session) stopMedia() {
	if w := s.media.Swap(nil); w != nil {
		w.cancel()
	}
}

// wakeMedia tells the worker a download was queued.
func (s *session) wakeMedia() {
	if w := s.media.Load(); w != nil {
		w.kick()
	}
}

// onMediaRetry routes the sender phone's answer to a re-upload request to
// the download waiting for it; nobody waiting (a late answer) drops it.
func (s *session) onMediaRetry(evt any) {
	e, ok := evt.(*events.MediaRetry)
	if !ok || e == nil {
		return
	}
	if w := s.media.Load(); w != nil {
		w.mu.Lock()
		ch := w.waiting[e.MessageID]
		w.mu.Unlock()
		if ch != nil {
			select {
			case ch <- e:
			default:
			}
			return
		}
	}
	s.log.Debug().Str("wa_id", e.MessageID).Msg("media retry answer nobody waits for")
}

// enqueueDownload queues the file of a published media message. It runs
// on the whatsmeow goroutine, before the ack.
func (s *session) enqueueDownload(ctx context.Context, evt any) error {
	if !s.mediaEnabled() {
		return nil
	}
	d, ok := waconv.DownloadOf(evt)
	if !ok {
		return nil
	}
	src, err := json.Marshal(d.Source)
	if err != nil {
		return err
	}
	created, err := s.d.downloads.Enqueue(ctx, store.DownloadJob{
		Mentorado: s.m, WAID: d.WAID, ChatJID: d.ChatJID, Kind: string(d.Kind), MediaID: d.MediaID, Message: d.Message, Source: src,
	})
	if err != nil {
		return err
	}
	if created {
		s.d.metrics.mediaQueued.Inc()
		s.wakeMedia()
	}
	return nil
}

// run claims due downloads whenever one of its Concurrency slots is
// free, so one slow file does not hold up the others.
func (w *mediaWorker) run(ctx context.Context) {
	defer w.s.mediaWG.Done()
	defer w.setDepth(0)
	cfg := w.s.d.cfg.Media
	slots := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		free := cfg.Concurrency - len(slots) // only this goroutine fills slots
		var jobs []store.DownloadJob
		if free > 0 {
			var err error
			jobs, err = w.s.d.downloads.Claim(ctx, w.s.m, cfg.Lease, free)
			if err != nil && ctx.Err() == nil {
				w.s.log.Warn().Err(err).Msg("claim media downloads")
			}
		}
		for _, j := range jobs {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.process(ctx, j)
				<-slots
				w.kick()
			}()
		}
		pending := w.refreshDepth(ctx)
		if free > 0 && len(jobs) == free {
			continue // more may be due
		}
		if pending == 0 {
			// Nothing queued: only a new message (or a finishing
			// download) brings work, and both wake the loop. An idle
			// session costs no queries.
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

// kick wakes the claim loop (a download was queued or a slot freed).
func (w *mediaWorker) kick() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// refreshDepth updates the queue depth gauge and returns the depth (-1
// when it cannot be read).
func (w *mediaWorker) refreshDepth(ctx context.Context) int {
	n, err := w.s.d.downloads.Pending(ctx, w.s.m)
	if err != nil {
		return -1
	}
	w.setDepth(n)
	return n
}

func (w *mediaWorker) setDepth(n int) {
	w.mu.Lock()
	delta := n - w.depth
	w.depth = n
	w.mu.Unlock()
	w.s.d.metrics.mediaQueueDepth.Add(float64(delta))
}

// process runs one download attempt to its end: stored, failed for good,
// due again later, or (the worker stopping) released.
func (w *mediaWorker) process(ctx context.Context, j store.DownloadJob) {
	s := w.s
	cfg := s.d.cfg.Media
	kind := event.Kind(j.Kind)
	log := s.log.With().Str("wa_id", j.WAID).Str("kind", j.Kind).Int("attempt", j.Attempts+1).Logger()
	log.Debug().Msg("media download")
	holder, part, err := waconv.DecodeDownload(j.Message)
	if err != nil {
		w.fail(ctx, j, mediaUndecodable)
		return
	}
	limit := cfg.limit(kind)
	if sz, ok := part.(interface{ GetFileLength() uint64 }); ok && sz.GetFileLength() > uint64(limit) {
		w.fail(ctx, j, mediaTooLarge)
		return
	}
	if s.d.clock.Now().Sub(j.CreatedAt) > cfg.MaxAge {
		w.fail(ctx, j, mediaExpired)
		return
	}
	data, err := w.mc.Download(ctx, part)
	if errors.Is(err, whatsmeow.ErrMediaDownloadFailedWith404) || errors.Is(err, whatsmeow.ErrMediaDownloadFailedWith410) {
		// The CDN dropped the file: ask the sender's phone to upload it again.
		log.Info().Str("error", errCode(err)).Msg("media expired on the CDN; requesting a re-upload")
		s.d.metrics.mediaDownloads.WithLabelValues("reupload").Inc()
		var path string
		if path, err = w.reupload(ctx, j, part); err == nil {
			waconv.SetDirectPath(part, path)
			b, merr := proto.Marshal(holder)
			if merr == nil {
				merr = s.d.downloads.UpdateMessage(ctx, s.m, j.WAID, b)
			}
			if merr != nil {
				log.Warn().Err(merr).Msg("record the re-uploaded path")
			}
			data, err = w.mc.Download(ctx, part)
		}
	}
	if ctx.Err() != nil {
		w.release(j)
		return
	}
	if errors.Is(err, whatsmeow.ErrMediaNotAvailableOnPhone) {
		w.fail(ctx, j, mediaNotOnPhone)
		return
	}
	if err != nil {
		w.retry(ctx, j, err)
		return
	}
	if int64(len(data)) > limit {
		w.fail(ctx, j, mediaTooLarge)
		return
	}
	// Stored under the type its bytes show (what the sender declared only
	// names a container more precisely), so a file declared as an image
	// but holding HTML is never served as one.
	mime := media.Sniff(data, mimeOf(part, kind))
	info, _, err := s.d.media.Put(ctx, s.m, bytes.NewReader(data), mime, limit)
	switch {
	case errors.Is(err, media.ErrTooLarge):
		w.fail(ctx, j, mediaTooLarge)
		return
	case err != nil:
		if ctx.Err() != nil {
			w.release(j)
			return
		}
		log.Warn().Err(err).Msg("store media")
		w.retry(ctx, j, fmt.Errorf("%w: %w", errStoreMedia, err))
		return
	case info.ID != j.MediaID:
		// whatsmeow verified the plaintext against FileSHA256, whose hex is
		// the media id: this cannot happen unless a store misbehaves.
		log.Error().Str("stored_id", info.ID).Msg("stored file id differs from the message's")
		w.fail(ctx, j, mediaMismatch)
		return
	}
	s.d.metrics.mediaBytes.WithLabelValues("in").Add(float64(len(data)))
	if err := s.recordMedia(ctx, info, store.MediaDownload); err != nil {
		log.Warn().Err(err).Msg("record media in the ledger")
		w.retry(ctx, j, fmt.Errorf("%w: ledger: %w", errStoreMedia, err))
		return
	}
	done := &event.MediaDone{WAID: j.WAID, ChatJID: j.ChatJID, State: event.MediaStored, MediaID: info.ID, MIME: info.MIME, Size: info.Size}
	if err := s.publishMedia(ctx, done); err != nil {
		w.retry(ctx, j, fmt.Errorf("%w: %w", errPublishMedia, err))
		return
	}
	if err := s.d.downloads.Done(ctx, s.m, j.WAID); err != nil {
		log.Warn().Err(err).Msg("remove finished download (its media event is published; a repeat is deduplicated)")
	}
	s.d.metrics.mediaDownloads.WithLabelValues("stored").Inc()
	log.Debug().Int("bytes", len(data)).Msg("media stored")
}

// mimeOf is the type the sender declared, or the kind's default.
func mimeOf(part whatsmeow.DownloadableMessage, kind event.Kind) string {
	if m, ok := part.(interface{ GetMimetype() string }); ok && m.GetMimetype() != "" {
		return event.Clean(m.GetMimetype())
	}
	switch kind {
	case event.KindImage:
		return "image/jpeg"
	case event.KindVideo:
		return "video/mp4"
	case event.KindPTT:
		return "audio/ogg; codecs=opus"
	case event.KindAudio:
		return "audio/ogg"
	case event.KindSticker:
		return "image/webp"
	}
	return "application/octet-stream"
}

// reupload asks the sender's phone to upload the file again and returns
// its new direct path.
func (w *mediaWorker) reupload(ctx context.Context, j store.DownloadJob, part whatsmeow.DownloadableMessage) (string, error) {
	var src waconv.Source
	if err := json.Unmarshal(j.Source, &src); err != nil {
		return "", fmt.Errorf("%w_bad_source", errReupload)
	}
	if src.ID == "" {
		src.ID = j.WAID
	}
	info, err := src.Info()
	if err != nil {
		return "", fmt.Errorf("%w_bad_source", errReupload)
	}
	ch := make(chan *events.MediaRetry, 1)
	w.mu.Lock()
	w.waiting[j.WAID] = ch
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.waiting, j.WAID)
		w.mu.Unlock()
	}()
	if err := w.mc.SendMediaRetryReceipt(ctx, info, part.GetMediaKey()); err != nil {
		return "", err
	}
	t := time.NewTimer(w.s.d.cfg.Media.ReuploadWait)
	defer t.Stop()
	select {
	case evt := <-ch:
		notif, err := whatsmeow.DecryptMediaRetryNotification(evt, part.GetMediaKey())
		if err != nil {
			return "", err
		}
		if notif.GetResult() != waMmsRetry.MediaRetryNotification_SUCCESS || notif.GetDirectPath() == "" {
			if notif.GetResult() == waMmsRetry.MediaRetryNotification_NOT_FOUND {
				return "", whatsmeow.ErrMediaNotAvailableOnPhone
			}
			return "", fmt.Errorf("%w_%s", errReupload, notif.GetResult())
		}
		return notif.GetDirectPath(), nil
	case <-t.C:
		return "", errReuploadTimeout
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// retry records a failed attempt, or fails the download for good after
// MaxAttempts.
func (w *mediaWorker) retry(ctx context.Context, j store.DownloadJob, cause error) {
	s := w.s
	cfg := s.d.cfg.Media
	code := errCode(cause)
	if j.Attempts+1 >= cfg.MaxAttempts {
		w.fail(ctx, j, mediaGaveUp)
		return
	}
	delay := cfg.retryDelay(j.Attempts+1, s.d.rand())
	if _, err := s.d.downloads.Retry(ctx, s.m, j.WAID, code, delay); err != nil {
		s.log.Warn().Err(err).Str("wa_id", j.WAID).Msg("record media download retry (the lease brings it back)")
	}
	s.d.metrics.mediaDownloads.WithLabelValues("retry").Inc()
	s.log.Info().Str("wa_id", j.WAID).Str("error", code).Dur("retry_in", delay).Int("attempt", j.Attempts+1).Msg("media download failed; will retry")
}

// fail publishes the media event of a file that will never be stored, then
// drops the download.
func (w *mediaWorker) fail(ctx context.Context, j store.DownloadJob, reason string) {
	s := w.s
	done := &event.MediaDone{WAID: j.WAID, ChatJID: j.ChatJID, State: event.MediaFailed, MediaID: j.MediaID, Reason: reason}
	if err := s.publishMedia(ctx, done); err != nil {
		if _, rerr := s.d.downloads.Retry(ctx, s.m, j.WAID, "publish", s.d.cfg.Media.retryDelay(1, s.d.rand())); rerr != nil {
			s.log.Warn().Err(rerr).Msg("record media download retry")
		}
		return
	}
	if err := s.d.downloads.Done(ctx, s.m, j.WAID); err != nil {
		s.log.Warn().Err(err).Str("wa_id", j.WAID).Msg("remove failed download")
	}
	s.d.metrics.mediaDownloads.WithLabelValues("failed").Inc()
	s.log.Warn().Str("wa_id", j.WAID).Str("reason", reason).Msg("media download failed for good")
}

// release gives a claimed download back to the queue (the worker stops).
func (w *mediaWorker) release(j store.DownloadJob) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(w.s.ctx), w.s.d.cfg.PublishTimeout)
	defer cancel()
	if err := w.s.d.downloads.Release(ctx, w.s.m, j.WAID); err != nil {
		w.s.log.Debug().Err(err).Str("wa_id", j.WAID).Msg("release media download (its lease expires)")
	}
}

// publishMedia stores a media event (id <m>:media:<wa id>: one per message).
func (s *session) publishMedia(ctx context.Context, d *event.MediaDone) error {
	now := s.d.clock.Now().UTC()
	env, err := event.New(s.m, event.MediaEventID(s.m, d.WAID), now, d)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.d.cfg.PublishTimeout)
	defer cancel()
	return s.publishEnv(ctx, env)
}

// recordMedia adds a stored file to the per-tenant ledger
// (media_objects): storage accounting, and what the tenant may reference.
func (s *session) recordMedia(ctx context.Context, info media.Info, origin string) error {
	if s.d.ledger == nil {
		return nil
	}
	_, err := s.d.ledger.Record(ctx, s.m, info.ID, info.Size, info.MIME, origin)
	return err
}

// mediaLedger records stored files per tenant (store.MediaObjectQueries).
type mediaLedger interface {
	Record(ctx context.Context, m int64, id string, size int64, mime, origin string) (bool, error)
}

var _ mediaLedger = store.MediaObjectQueries{}
