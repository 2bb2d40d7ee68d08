package web

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/store"
)

// Media routes: POST /v1/media stores an upload in the mentorado's media
// store (content-addressed, type sniffed from the bytes); GET
// /v1/messages/{id}/media and /thumbnail serve a message's file and its
// inline preview. The file bytes never pass through NATS commands: a send
// names the media id, the connector reads the file from the same store.

// Error codes of the media routes (command failures reuse event.Code*).
const (
	codeMediaNotReady = "media_not_ready" // the file of a received message is not stored yet
	codeMediaFailed   = "media_failed"    // it could not be fetched and never will be
	codeNoMedia       = "no_media"        // the message has no file (or no thumbnail)
)

// multipartOverhead is what a multipart body may carry beyond the file:
// boundaries, part headers, a few small fields.
const multipartOverhead = 64 << 10

var errNoMediaStore = &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "this notifier has no media store", RetryAfter: 5}

type uploadResponse struct {
	MediaID  string `json:"media_id"`
	MIME     string `json:"mime"`
	Size     int64  `json:"size"`
	FileName string `json:"file_name,omitempty"`
}

// handleUpload streams the "file" part of a multipart body into the media
// store: at most the largest per-kind limit (413 beyond it, nothing
// stored), type sniffed from the bytes (the part's Content-Type is
// ignored). 201 when stored, 200 when the mentorado had the same bytes.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	if s.media == nil {
		s.writeError(w, r, errNoMediaStore)
		return
	}
	ct, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "multipart/form-data" || params["boundary"] == "" {
		s.writeError(w, r, errorf(http.StatusUnsupportedMediaType, codeBadRequest, "content type must be multipart/form-data with a boundary"))
		return
	}
	max := s.cfg.MediaLimits.Max()
	if r.ContentLength > max+multipartOverhead {
		s.writeError(w, r, errorf(http.StatusRequestEntityTooLarge, event.CodeMediaTooLarge, "file larger than %d bytes", max))
		return
	}
	// Uploads may take longer than a JSON body: their own read deadline.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.UploadTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	body := http.MaxBytesReader(w, r.Body, max+multipartOverhead)
	mr := multipart.NewReader(body, params["boundary"])
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, `no part named "file" in the multipart body`))
			return
		}
		if err != nil {
			s.writeError(w, r, bodyError(err, max))
			return
		}
		if part.FormName() != "file" {
			_, _ = io.Copy(io.Discard, io.LimitReader(part, multipartOverhead))
			continue
		}
		s.storeUpload(w, r, m, part, max)
		return
	}
}

func (s *Server) storeUpload(w http.ResponseWriter, r *http.Request, m int64, part *multipart.Part, max int64) {
	body := &readErr{r: part}
	head := make([]byte, media.SniffLen)
	n, err := io.ReadFull(body, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		s.writeError(w, r, bodyError(err, max))
		return
	}
	head = head[:n]
	if n == 0 {
		s.writeError(w, r, errorf(http.StatusBadRequest, codeBadRequest, "the file is empty"))
		return
	}
	mt := media.Sniff(head, part.Header.Get("Content-Type"))
	info, created, err := s.media.Put(r.Context(), m, io.MultiReader(bytes.NewReader(head), body), mt, max)
	switch {
	case body.err != nil: // the client's body failed, not the store
		s.writeError(w, r, bodyError(body.err, max))
		return
	case errors.Is(err, media.ErrTooLarge):
		s.writeError(w, r, errorf(http.StatusRequestEntityTooLarge, event.CodeMediaTooLarge, "file larger than %d bytes", max))
		return
	case err != nil:
		s.writeError(w, r, fmt.Errorf("store upload: %w", err))
		return
	}
	// The ledger (storage accounting, what the tenant holds) follows the
	// store; recording is idempotent, so a retried upload fixes a miss.
	if _, err := s.db.MediaObjects().Record(r.Context(), m, info.ID, info.Size, info.MIME, store.MediaUpload); err != nil {
		s.writeError(w, r, fmt.Errorf("record upload: %w", err))
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	s.log.Debug().Int64("mentorado", m).Str("media", info.ID).Int64("size", info.Size).Str("mime", info.MIME).Bool("created", created).Msg("media uploaded")
	writeJSON(w, status, uploadResponse{MediaID: info.ID, MIME: info.MIME, Size: info.Size, FileName: cleanFileName(part.FileName())})
}

// readErr remembers the first error reading the upload other than EOF,
// so a failing body is told apart from a failing store.
type readErr struct {
	r   io.Reader
	err error
}

func (b *readErr) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && b.err == nil {
		b.err = err
	}
	return n, err
}

// bodyError maps a failure reading a multipart body: too large (413), too
// slow (408), anything else malformed (400).
func bodyError(err error, max int64) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, event.CodeMediaTooLarge, "file larger than %d bytes", max)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(http.StatusRequestTimeout, codeBodyTimeout, "upload not received in time")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errorf(http.StatusBadRequest, codeBadRequest, "the upload ended early")
	}
	return errorf(http.StatusBadRequest, codeBadRequest, "malformed multipart body")
}

// cleanFileName keeps a file name hint printable and short.
func cleanFileName(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return -1
		}
		return r
	}, name)
	if r := []rune(name); len(r) > event.MaxFileNameRunes {
		name = string(r[:event.MaxFileNameRunes])
	}
	return name
}

// messageByID is the mentorado's message named by the {id} path value:
// 404 message_not_found for an unknown id or another tenant's.
func (s *Server) messageByID(r *http.Request) (store.MessageRow, error) {
	id := r.PathValue("id")
	if id == "" || len(id) > 128 || !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
		return store.MessageRow{}, errMessageNotFound
	}
	row, err := s.db.Messages().ByWAID(r.Context(), mustMentorado(r), id)
	if errors.Is(err, store.ErrNotFound) {
		return store.MessageRow{}, errMessageNotFound
	}
	return row, err
}

var errMessageNotFound = &apiError{Status: http.StatusNotFound, Code: event.CodeMessageUnknown, Message: "no such message"}

// handleMessageMedia serves a message's file with Range, ETag and a
// Content-Disposition (attachment with the file name for documents).
func (s *Server) handleMessageMedia(w http.ResponseWriter, r *http.Request) {
	m := mustMentorado(r)
	row, err := s.messageByID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	md := row.Media
	switch {
	case md == nil || row.Revoked:
		s.writeError(w, r, errorf(http.StatusNotFound, codeNoMedia, "this message has no file"))
		return
	case md.State == string(event.MediaFailed):
		s.writeError(w, r, errorf(http.StatusGone, codeMediaFailed, "the file could not be fetched from WhatsApp: %s", md.Error))
		return
	case s.media == nil:
		s.writeError(w, r, errNoMediaStore)
		return
	}
	// A pending file may be in the store already (a file the mentorado
	// sent, or the media event is on its way): the store is
	// content-addressed, so what it holds under the id is that file.
	obj, err := s.media.Open(r.Context(), m, md.ID)
	if errors.Is(err, media.ErrNotFound) {
		if md.State != string(event.MediaStored) {
			w.Header().Set("Retry-After", "2")
			s.writeError(w, r, errorf(http.StatusNotFound, codeMediaNotReady, "the file is not stored yet"))
			return
		}
		s.writeError(w, r, errorf(http.StatusGone, codeMediaFailed, "the file is no longer in the media store"))
		return
	}
	if err != nil {
		s.writeError(w, r, fmt.Errorf("open media: %w", err))
		return
	}
	defer obj.Close()
	// The type the stored bytes showed when they were stored (media.Sniff),
	// not the one the sender declared in the message: a file declared as
	// an image but holding a PDF, or HTML, is served as what it is.
	info := obj.Info()
	ct := info.MIME
	if ct == "" {
		ct = md.MIME
	}
	if ct == "" {
		ct = "application/octet-stream"
	}
	h := w.Header()
	h.Set("Content-Type", ct)
	h.Set("ETag", `"`+md.ID+`"`)
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	// The bytes come from outside: never let a browser run them as a page.
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	// Documents download; media the browser can play show inline; any
	// other type (HTML, SVG …) is an attachment, never a page here.
	disp := "inline"
	if row.Kind == string(event.KindDocument) || !media.Inline(ct) {
		disp = "attachment"
	}
	if md.FileName != "" {
		disp += "; filename*=UTF-8''" + url.PathEscape(md.FileName)
	}
	h.Set("Content-Disposition", disp)
	http.ServeContent(w, r, "", info.Created, obj)
}

// handleThumbnail serves the inline JPEG preview of a media message.
func (s *Server) handleThumbnail(w http.ResponseWriter, r *http.Request) {
	row, err := s.messageByID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if row.Media == nil || !row.Media.HasThumbnail || row.Revoked {
		s.writeError(w, r, errorf(http.StatusNotFound, codeNoMedia, "this message has no thumbnail"))
		return
	}
	b, err := s.db.Messages().Thumbnail(r.Context(), mustMentorado(r), row.WAMessageID)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, errorf(http.StatusNotFound, codeNoMedia, "this message has no thumbnail"))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Cache-Control", "private, max-age=86400")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	http.ServeContent(w, r, "", row.SentAt, bytes.NewReader(b))
}
