package wafake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/util/cbcutil"
	"go.mau.fi/whatsmeow/util/hkdfutil"
)

// MediaHost is the hostname the fake announces in its media_conn answer.
// The fake's HTTP client (Configure sets it as the media client) routes it,
// like every host, to the fake's listener.
const MediaHost = "mmg.whatsapp.net"

// Media kinds accepted by Contact.SendMedia.
const (
	MediaKindImage    = "image"
	MediaKindVideo    = "video"
	MediaKindPTV      = "ptv"
	MediaKindAudio    = "audio"
	MediaKindPTT      = "ptt"
	MediaKindDocument = "document"
	MediaKindSticker  = "sticker"
)

// ErrUnknownMediaKind is returned by SendMedia for an unsupported kind.
var ErrUnknownMediaKind = errors.New("wafake: unknown media kind")

const (
	mediaConnTTL     = 300   // seconds the client may reuse the media_conn answer
	mediaConnAuthTTL = 21600 // seconds the auth token is valid
	mediaHMACLen     = 10
)

// HKDF info strings (whatsmeow.MediaImage, …).
const (
	mediaInfoImage    = "WhatsApp Image Keys"
	mediaInfoVideo    = "WhatsApp Video Keys"
	mediaInfoAudio    = "WhatsApp Audio Keys"
	mediaInfoDocument = "WhatsApp Document Keys"
)

// blob is one encrypted file on the fake CDN, stored under its direct path
// (without the query).
type blob struct {
	path      string
	directURL string // the direct path with its query
	data      []byte // ciphertext + 10-byte MAC, as uploaded
	mmsType   string
	msgID     string // the message that carries it, once known
	status    int    // 0: served; 404/410: expired
	downloads int    // successful GETs
	failed    int    // GETs answered with an error status
}

// mediaMsg is what a fake phone keeps about media it sent, to re-upload it
// when the client asks (media retry).
type mediaMsg struct {
	id       string
	from     *Contact
	acct     *Account  // 1:1: the receiving account
	group    types.JID // group media: any member account may ask
	mediaKey []byte
	blob     *blob
	lost     bool // the phone no longer has the file (retry answers code 2)
}

// mediaSpec describes a kind: the HKDF info, the upload (mms) type, the
// direct path prefix and the default MIME type.
type mediaSpec struct {
	info, mms, pathPrefix, mime string
}

var mediaSpecs = map[string]mediaSpec{
	MediaKindImage:    {mediaInfoImage, "image", "/v/t62.7118-24/", "image/jpeg"},
	MediaKindVideo:    {mediaInfoVideo, "video", "/v/t62.7161-24/", "video/mp4"},
	MediaKindPTV:      {mediaInfoVideo, "ptv", "/v/t62.7161-24/", "video/mp4"},
	MediaKindAudio:    {mediaInfoAudio, "audio", "/v/t62.7114-24/", "audio/mpeg"},
	MediaKindPTT:      {mediaInfoAudio, "ptt", "/v/t62.7117-24/", "audio/ogg; codecs=opus"},
	MediaKindDocument: {mediaInfoDocument, "document", "/v/t62.7119-24/", "application/octet-stream"},
	MediaKindSticker:  {mediaInfoImage, "sticker", "/v/t62.15575-24/", "image/webp"},
}

func pathPrefixFor(mms string) string {
	for _, sp := range mediaSpecs {
		if sp.mms == mms {
			return sp.pathPrefix
		}
	}
	return "/v/t62.7119-24/"
}

// mediaKeys expands a media key like WhatsApp: HKDF-SHA256, 112 bytes,
// split into IV, cipher key and MAC key (the rest is the ref key).
func mediaKeys(mediaKey []byte, info string) (iv, cipherKey, macKey []byte) {
	x := hkdfutil.SHA256(mediaKey, nil, []byte(info), 112)
	return x[:16], x[16:48], x[48:80]
}

// encryptMedia returns the file as it is uploaded: AES-256-CBC ciphertext
// followed by the first 10 bytes of HMAC-SHA256(iv ‖ ciphertext).
func encryptMedia(mediaKey, plain []byte, info string) ([]byte, error) {
	iv, ck, mk := mediaKeys(mediaKey, info)
	ct, err := cbcutil.Encrypt(ck, iv, plain)
	if err != nil {
		return nil, err
	}
	h := hmac.New(sha256.New, mk)
	h.Write(iv)
	h.Write(ct)
	return append(ct, h.Sum(nil)[:mediaHMACLen]...), nil
}

// decryptMedia checks the uploaded file's hash and MAC and decrypts it, like
// a phone downloading a client's attachment.
func decryptMedia(data, mediaKey, encSHA, fileSHA []byte, info string, length uint64) ([]byte, error) {
	if len(data) <= mediaHMACLen {
		return nil, errors.New("wafake: media file too short")
	}
	if sum := sha256.Sum256(data); len(encSHA) != 32 || !bytes.Equal(sum[:], encSHA) {
		return nil, errors.New("wafake: media FileEncSHA256 mismatch")
	}
	iv, ck, mk := mediaKeys(mediaKey, info)
	ct, mac := data[:len(data)-mediaHMACLen], data[len(data)-mediaHMACLen:]
	h := hmac.New(sha256.New, mk)
	h.Write(iv)
	h.Write(ct)
	if !hmac.Equal(h.Sum(nil)[:mediaHMACLen], mac) {
		return nil, errors.New("wafake: media HMAC mismatch")
	}
	// cbcutil.Decrypt works in place: never on the CDN's stored copy.
	plain, err := cbcutil.Decrypt(ck, iv, bytes.Clone(ct))
	if err != nil {
		return nil, fmt.Errorf("wafake: media decrypt: %w", err)
	}
	if sum := sha256.Sum256(plain); len(fileSHA) != 32 || !bytes.Equal(sum[:], fileSHA) {
		return nil, errors.New("wafake: media FileSHA256 mismatch")
	}
	if length != 0 && uint64(len(plain)) != length {
		return nil, fmt.Errorf("wafake: media length %d, message says %d", len(plain), length)
	}
	return plain, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// storeBlobLocked puts data on the fake CDN under a fresh direct path.
func (s *Server) storeBlobLocked(data []byte, mms string) *blob {
	path := pathPrefixFor(mms) + randomHex(8) + "_" + randomHex(8) + "_n.enc"
	b := &blob{
		path: path,
		directURL: path + "?ccb=11-4&oh=01_" + randomHex(16) + "&oe=" +
			strings.ToUpper(fmt.Sprintf("%x", time.Now().Add(14*24*time.Hour).Unix())) + "&_nc_sid=5e03e0",
		data:    data,
		mmsType: mms,
	}
	s.blobs[path] = b
	return b
}

func (b *blob) url() string { return "https://" + MediaHost + b.directURL + "&mms3=true" }

// handleMediaConn answers <iq xmlns="w:m" type="set"><media_conn/>.
func (s *Server) handleMediaConn(c *conn, n *waBinary.Node) {
	_ = c.send(iqResult(n, waBinary.Node{Tag: "media_conn", Attrs: waBinary.Attrs{
		"auth": s.mediaAuth, "ttl": fmt.Sprint(mediaConnTTL), "auth_ttl": fmt.Sprint(mediaConnAuthTTL),
		"max_buckets": "12",
	}, Content: []waBinary.Node{
		{Tag: "host", Attrs: waBinary.Attrs{"hostname": MediaHost, "maxContentLengthBytes": "104857600"}},
	}}))
}

// serveUpload answers POST /mms/<type>/<token>?auth=…&token=… like the
// WhatsApp CDN: the token must be the base64url SHA-256 of the body.
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/mms/"), "/")
	if len(parts) != 2 {
		http.NotFound(w, r)
		return
	}
	if r.URL.Query().Get("auth") != s.mediaAuth {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 100<<20+1))
	if err != nil {
		http.Error(w, "read", http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(data)
	token := base64.URLEncoding.EncodeToString(sum[:])
	if parts[1] != token || r.URL.Query().Get("token") != token {
		http.Error(w, `{"error":"hash mismatch"}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	b := s.storeBlobLocked(data, parts[0])
	s.mediaUploads++
	s.notifyLocked()
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{
		"url": b.url(), "direct_path": b.directURL, "handle": "", "object_id": randomHex(8),
	})
}

// serveDownload answers GET of a direct path (with any query) or URL.
func (s *Server) serveDownload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	b := s.blobs[r.URL.Path]
	var data []byte
	status := http.StatusNotFound
	if b != nil {
		status = b.status
		if status == 0 {
			status = http.StatusOK
			data = b.data
			b.downloads++
		} else {
			b.failed++
		}
		s.notifyLocked()
	}
	s.mu.Unlock()
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	_, _ = w.Write(data)
}

// MediaOptions are the optional fields of Contact.SendMedia.
type MediaOptions struct {
	MIME     string // default per kind (image/jpeg, video/mp4, audio/mpeg, audio/ogg; codecs=opus, …)
	Caption  string // image, video, ptv, document
	FileName string // document
	Seconds  uint32 // video, ptv, audio, ptt
	Width    uint32 // image, video, ptv, sticker
	Height   uint32
	// Thumbnail is put inline (JPEGThumbnail) for image, video, ptv and
	// document.
	Thumbnail []byte
	// ReplyTo quotes a message of this chat (the contact's own or one the
	// account's client sent to it).
	ReplyTo string
}

// SendMedia makes the contact's phone send an attachment: it encrypts data
// like WhatsApp (random media key, HKDF-SHA256 expanded with the kind's info
// string, AES-256-CBC, 10-byte HMAC-SHA256), uploads it to the fake CDN and
// sends the matching message (ImageMessage, VideoMessage, PtvMessage,
// AudioMessage, AudioMessage with PTT, DocumentMessage — wrapped in
// DocumentWithCaptionMessage when it has a caption —, StickerMessage) with
// URL, direct path, media key and hashes. kind is one of the MediaKind*
// constants. It returns the message id; the client can cli.Download the
// attachment.
func (c *Contact) SendMedia(ctx context.Context, toAccountPhone, kind string, data []byte, o MediaOptions) (string, error) {
	spec, ok := mediaSpecs[kind]
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrUnknownMediaKind, kind)
	}
	a, err := c.accountFor(toAccountPhone)
	if err != nil {
		return "", err
	}
	msg, mm, err := c.buildMedia(kind, spec, data, o, c.replyContext(a, o.ReplyTo))
	if err != nil {
		return "", err
	}
	id := newID()
	mm.id, mm.acct = id, a
	s := c.s
	s.mu.Lock()
	mm.blob.msgID = id
	s.media[id] = mm
	s.mu.Unlock()
	if err := c.sendMessageID(ctx, a, id, msg); err != nil {
		return "", err
	}
	return id, nil
}

// buildMedia encrypts data, puts it on the fake CDN and builds the message
// for kind; the returned mediaMsg still needs its id and chat.
func (c *Contact) buildMedia(kind string, spec mediaSpec, data []byte, o MediaOptions, ctxInfo *waE2E.ContextInfo) (*waE2E.Message, *mediaMsg, error) {
	mediaKey := randomBytes(32)
	enc, err := encryptMedia(mediaKey, data, spec.info)
	if err != nil {
		return nil, nil, err
	}
	fileSHA := sha256.Sum256(data)
	encSHA := sha256.Sum256(enc)
	mime := o.MIME
	if mime == "" {
		mime = spec.mime
	}
	s := c.s
	s.mu.Lock()
	b := s.storeBlobLocked(enc, spec.mms)
	url, direct := b.url(), b.directURL
	s.mu.Unlock()
	now := time.Now().Unix()
	length := uint64(len(data))
	var thumb []byte
	if len(o.Thumbnail) > 0 {
		thumb = o.Thumbnail
	}
	msg := &waE2E.Message{}
	switch kind {
	case MediaKindImage:
		msg.ImageMessage = &waE2E.ImageMessage{
			URL: proto.String(url), DirectPath: proto.String(direct), MediaKey: mediaKey,
			Mimetype: proto.String(mime), FileSHA256: fileSHA[:], FileEncSHA256: encSHA[:], FileLength: &length,
			MediaKeyTimestamp: &now, Caption: optString(o.Caption), Width: optUint32(o.Width), Height: optUint32(o.Height),
			JPEGThumbnail: thumb, ContextInfo: ctxInfo,
		}
	case MediaKindVideo, MediaKindPTV:
		v := &waE2E.VideoMessage{
			URL: proto.String(url), DirectPath: proto.String(direct), MediaKey: mediaKey,
			Mimetype: proto.String(mime), FileSHA256: fileSHA[:], FileEncSHA256: encSHA[:], FileLength: &length,
			MediaKeyTimestamp: &now, Caption: optString(o.Caption), Seconds: optUint32(o.Seconds),
			Width: optUint32(o.Width), Height: optUint32(o.Height), JPEGThumbnail: thumb, ContextInfo: ctxInfo,
		}
		if kind == MediaKindPTV {
			msg.PtvMessage = v
		} else {
			msg.VideoMessage = v
		}
	case MediaKindAudio, MediaKindPTT:
		msg.AudioMessage = &waE2E.AudioMessage{
			URL: proto.String(url), DirectPath: proto.String(direct), MediaKey: mediaKey,
			Mimetype: proto.String(mime), FileSHA256: fileSHA[:], FileEncSHA256: encSHA[:], FileLength: &length,
			MediaKeyTimestamp: &now, Seconds: optUint32(o.Seconds), PTT: proto.Bool(kind == MediaKindPTT),
			ContextInfo: ctxInfo,
		}
	case MediaKindDocument:
		name := o.FileName
		if name == "" {
			name = "file"
		}
		doc := &waE2E.DocumentMessage{
			URL: proto.String(url), DirectPath: proto.String(direct), MediaKey: mediaKey,
			Mimetype: proto.String(mime), FileSHA256: fileSHA[:], FileEncSHA256: encSHA[:], FileLength: &length,
			MediaKeyTimestamp: &now, FileName: proto.String(name), Title: proto.String(name),
			Caption: optString(o.Caption), JPEGThumbnail: thumb, ContextInfo: ctxInfo,
		}
		if o.Caption != "" {
			// WhatsApp wraps a captioned document (whatsmeow unwraps it and
			// sets events.Message.IsDocumentWithCaption).
			msg.DocumentWithCaptionMessage = &waE2E.FutureProofMessage{Message: &waE2E.Message{DocumentMessage: doc}}
		} else {
			msg.DocumentMessage = doc
		}
	case MediaKindSticker:
		msg.StickerMessage = &waE2E.StickerMessage{
			URL: proto.String(url), DirectPath: proto.String(direct), MediaKey: mediaKey,
			Mimetype: proto.String(mime), FileSHA256: fileSHA[:], FileEncSHA256: encSHA[:], FileLength: &length,
			MediaKeyTimestamp: &now, Width: optUint32(o.Width), Height: optUint32(o.Height), ContextInfo: ctxInfo,
		}
	}
	return msg, &mediaMsg{from: c, mediaKey: mediaKey, blob: b}, nil
}

func optString(v string) *string {
	if v == "" {
		return nil
	}
	return &v
}

func optUint32(v uint32) *uint32 {
	if v == 0 {
		return nil
	}
	return &v
}

// downloadable returns the attachment of a message and its HKDF info.
func downloadable(m *waE2E.Message) (media interface {
	GetDirectPath() string
	GetMediaKey() []byte
	GetFileSHA256() []byte
	GetFileEncSHA256() []byte
	GetFileLength() uint64
}, info string) {
	if m.GetDeviceSentMessage().GetMessage() != nil {
		m = m.GetDeviceSentMessage().GetMessage()
	}
	switch {
	case m.ImageMessage != nil:
		return m.ImageMessage, mediaInfoImage
	case m.StickerMessage != nil:
		return m.StickerMessage, mediaInfoImage
	case m.VideoMessage != nil:
		return m.VideoMessage, mediaInfoVideo
	case m.PtvMessage != nil:
		return m.PtvMessage, mediaInfoVideo
	case m.AudioMessage != nil:
		return m.AudioMessage, mediaInfoAudio
	case m.DocumentMessage != nil:
		return m.DocumentMessage, mediaInfoDocument
	case m.DocumentWithCaptionMessage.GetMessage().GetDocumentMessage() != nil:
		return m.DocumentWithCaptionMessage.GetMessage().GetDocumentMessage(), mediaInfoDocument
	}
	return nil, ""
}

// fetchMedia is the contact's phone downloading a client's attachment from
// the fake CDN: by direct path, hashes and MAC verified, decrypted. It
// returns (nil, nil) for a message without an attachment.
func (s *Server) fetchMedia(id string, m *waE2E.Message) ([]byte, error) {
	d, info := downloadable(m)
	if d == nil {
		return nil, nil
	}
	path, _, _ := strings.Cut(d.GetDirectPath(), "?")
	s.mu.Lock()
	b := s.blobs[path]
	var data []byte
	status := 0
	if b != nil {
		data, status = b.data, b.status
		if b.msgID == "" {
			b.msgID = id
		}
	}
	s.mu.Unlock()
	switch {
	case b == nil:
		return nil, fmt.Errorf("wafake: no media at direct path %q", path)
	case status != 0:
		return nil, fmt.Errorf("wafake: media at direct path answers %d", status)
	}
	return decryptMedia(data, d.GetMediaKey(), d.GetFileEncSHA256(), d.GetFileSHA256(), info, d.GetFileLength())
}

// ExpireMedia makes downloads of the attachment of message msgID (sent by a
// contact with SendMedia, or by a client and received by a contact) answer
// 404, like media that has left the CDN, until the sending phone re-uploads
// it after a media retry receipt. An unknown id is ignored (logged).
func (s *Server) ExpireMedia(msgID string) {
	if err := s.ExpireMediaStatus(msgID, http.StatusNotFound); err != nil {
		s.log.Warn().Err(err).Msg("ExpireMedia")
	}
}

// ExpireMediaStatus is ExpireMedia with the HTTP status downloads get:
// http.StatusNotFound (whatsmeow.ErrMediaDownloadFailedWith404) or
// http.StatusGone (ErrMediaDownloadFailedWith410), or 403.
func (s *Server) ExpireMediaStatus(msgID string, status int) error {
	if status < 400 || status > 599 {
		return fmt.Errorf("wafake: status %d is not an error", status)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.blobs {
		if b.msgID == msgID && b.status == 0 {
			b.status = status
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("%w (no served media): %s", ErrUnknownMessage, msgID)
	}
	return nil
}

// ForgetMedia makes the sending phone lose the attachment of message msgID
// (sent with SendMedia): a later media retry receipt is answered with an
// error (code 2), which whatsmeow.DecryptMediaRetryNotification reports as
// ErrMediaNotAvailableOnPhone.
func (s *Server) ForgetMedia(msgID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.media[msgID]
	if m == nil {
		return fmt.Errorf("%w: %s", ErrUnknownMessage, msgID)
	}
	m.lost = true
	return nil
}

// MediaDownloads returns how many times the CDN served a file (HTTP 200):
// by direct path (query ignored) or by message id (every path the message's
// attachment had, including re-uploads).
func (s *Server) MediaDownloads(directPathOrMsgID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasPrefix(directPathOrMsgID, "/") {
		path, _, _ := strings.Cut(directPathOrMsgID, "?")
		if b := s.blobs[path]; b != nil {
			return b.downloads
		}
		return 0
	}
	n := 0
	for _, b := range s.blobs {
		if b.msgID == directPathOrMsgID {
			n += b.downloads
		}
	}
	return n
}

// MediaDownloadErrors is MediaDownloads for requests the CDN answered with
// an error status (expired media).
func (s *Server) MediaDownloadErrors(directPathOrMsgID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, b := range s.blobs {
		if b.msgID == directPathOrMsgID || b.path == strings.SplitN(directPathOrMsgID, "?", 2)[0] {
			n += b.failed
		}
	}
	return n
}

// MediaUploads returns how many files clients uploaded to the CDN.
func (s *Server) MediaUploads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mediaUploads
}

// MediaRetryRequests returns how many media retry receipts
// (<receipt type="server-error">) clients sent.
func (s *Server) MediaRetryRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mediaRetries
}
