package waconv

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
)

// Media messages (docs/decisions/0011-media.md): the message event carries
// what describes the file (event.Media: its sha256 as the media id, type,
// size, duration, dimensions, the inline thumbnail); what decrypts it (the
// media key, the direct path, the encrypted hash) stays in the typed
// sub-message, which only DownloadOf hands out, for the connector's
// download queue in Postgres.
//
// A media message whose FileSHA256 is missing or not 32 bytes cannot be
// content-addressed: it is published with its kind and caption but without
// Media, and DownloadOf reports no download for it (there is no id to
// store the file under, and whatsmeow could not verify it).

// mediaPart returns the file-carrying sub-message of an unwrapped message
// and its kind (ptt for voice notes; a round video note is a video).
func mediaPart(m *waE2E.Message) (whatsmeow.DownloadableMessage, event.Kind) {
	switch {
	case m.ImageMessage != nil:
		return m.ImageMessage, event.KindImage
	case m.VideoMessage != nil:
		return m.VideoMessage, event.KindVideo
	case m.PtvMessage != nil:
		return m.PtvMessage, event.KindVideo
	case m.AudioMessage != nil:
		if m.AudioMessage.GetPTT() {
			return m.AudioMessage, event.KindPTT
		}
		return m.AudioMessage, event.KindAudio
	case m.DocumentMessage != nil:
		return m.DocumentMessage, event.KindDocument
	case m.StickerMessage != nil:
		return m.StickerMessage, event.KindSticker
	}
	return nil, ""
}

// mediaID is the store id of a file: the hex of its 32-byte SHA-256, or ""
// when the message carries no usable hash.
func mediaID(part whatsmeow.DownloadableMessage) string {
	sum := part.GetFileSHA256()
	if len(sum) != 32 {
		return ""
	}
	return hex.EncodeToString(sum)
}

// defaultMIME is the type of a file whose message names none.
var defaultMIME = map[event.Kind]string{
	event.KindImage:    "image/jpeg",
	event.KindVideo:    "video/mp4",
	event.KindAudio:    "audio/ogg",
	event.KindPTT:      "audio/ogg; codecs=opus",
	event.KindDocument: "application/octet-stream",
	event.KindSticker:  "image/webp",
}

// describe builds the event's description of a media sub-message; nil when
// it has no usable hash.
func describe(part whatsmeow.DownloadableMessage, kind event.Kind, m *waE2E.Message) *event.Media {
	id := mediaID(part)
	if id == "" {
		return nil
	}
	md := &event.Media{ID: id}
	var thumb []byte
	switch p := part.(type) {
	case *waE2E.ImageMessage:
		md.MIME, md.Size = p.GetMimetype(), size(p.GetFileLength())
		md.Width, md.Height = int(p.GetWidth()), int(p.GetHeight())
		thumb = p.GetJPEGThumbnail()
	case *waE2E.VideoMessage:
		md.MIME, md.Size = p.GetMimetype(), size(p.GetFileLength())
		md.Seconds, md.Width, md.Height = int(p.GetSeconds()), int(p.GetWidth()), int(p.GetHeight())
		md.Round = m.PtvMessage == p
		thumb = p.GetJPEGThumbnail()
	case *waE2E.AudioMessage:
		md.MIME, md.Size, md.Seconds = p.GetMimetype(), size(p.GetFileLength()), int(p.GetSeconds())
	case *waE2E.DocumentMessage:
		md.MIME, md.Size = p.GetMimetype(), size(p.GetFileLength())
		md.FileName = truncate(p.GetFileName(), event.MaxFileNameRunes)
		if md.FileName == "" {
			md.FileName = truncate(p.GetTitle(), event.MaxFileNameRunes)
		}
		thumb = p.GetJPEGThumbnail()
	case *waE2E.StickerMessage:
		// Its PNG thumbnail is not the JPEG preview the contract carries.
		md.MIME, md.Size = p.GetMimetype(), size(p.GetFileLength())
		md.Width, md.Height = int(p.GetWidth()), int(p.GetHeight())
	}
	md.MIME = event.Clean(md.MIME)
	if md.MIME == "" {
		md.MIME = defaultMIME[kind]
	}
	if len(thumb) <= event.MaxThumbnailBytes {
		md.Thumbnail = thumb
	}
	return md
}

func size(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// Download is what the connector's download queue keeps for one received
// media message. Message holds the media key and direct path: it is a
// secret, stored in Postgres only, never logged nor published.
type Download struct {
	WAID    string
	ChatJID string // the conversation, as in the message event
	Kind    event.Kind
	MediaID string // sha256 hex of the file
	MIME    string
	Size    int64  // as announced by the sender (0: unknown)
	Message []byte // serialized waE2E.Message holding only the media sub-message
	Source  Source
}

// Source is what a media re-upload request (whatsmeow's
// SendMediaRetryReceipt) needs to know about the message.
type Source struct {
	ID      string `json:"id"`
	Chat    string `json:"chat"`
	Sender  string `json:"sender,omitempty"`
	FromMe  bool   `json:"from_me,omitempty"`
	IsGroup bool   `json:"is_group,omitempty"`
}

// Info is the message info SendMediaRetryReceipt takes.
func (s Source) Info() (*types.MessageInfo, error) {
	chat, err := types.ParseJID(s.Chat)
	if err != nil {
		return nil, fmt.Errorf("waconv: source chat: %w", err)
	}
	var sender types.JID
	if s.Sender != "" {
		if sender, err = types.ParseJID(s.Sender); err != nil {
			return nil, fmt.Errorf("waconv: source sender: %w", err)
		}
	}
	return &types.MessageInfo{ID: s.ID, MessageSource: types.MessageSource{Chat: chat, Sender: sender, IsFromMe: s.FromMe, IsGroup: s.IsGroup}}, nil
}

// DownloadOf returns the download a message event Convert published with
// Media needs; false for every other event (not a message, no file, a
// file without a usable hash, a chat zapbus does not record).
func DownloadOf(evt any) (*Download, bool) {
	e, ok := evt.(*events.Message)
	if !ok || e == nil {
		return nil, false
	}
	info := &e.Info
	m, _, ok := recorded(e)
	if !ok {
		return nil, false
	}
	part, kind := mediaPart(m)
	if part == nil {
		return nil, false
	}
	md := describe(part, kind, m)
	if md == nil {
		return nil, false
	}
	holder := &waE2E.Message{}
	switch p := part.(type) {
	case *waE2E.ImageMessage:
		holder.ImageMessage = p
	case *waE2E.VideoMessage:
		if m.PtvMessage == p {
			holder.PtvMessage = p
		} else {
			holder.VideoMessage = p
		}
	case *waE2E.AudioMessage:
		holder.AudioMessage = p
	case *waE2E.DocumentMessage:
		holder.DocumentMessage = p
	case *waE2E.StickerMessage:
		holder.StickerMessage = p
	}
	b, err := proto.Marshal(holder)
	if err != nil {
		return nil, false
	}
	chat := info.Chat
	if info.IsIncomingBroadcast() && !info.IsFromMe {
		chat = info.Sender
	}
	return &Download{
		WAID:    info.ID,
		ChatJID: jidString(chat),
		Kind:    kind,
		MediaID: md.ID,
		MIME:    md.MIME,
		Size:    md.Size,
		Message: b,
		Source: Source{
			ID:      info.ID,
			Chat:    info.Chat.String(),
			Sender:  senderString(info.Sender),
			FromMe:  info.IsFromMe,
			IsGroup: info.IsGroup,
		},
	}, true
}

func senderString(j types.JID) string {
	if j.IsEmpty() {
		return ""
	}
	return j.String()
}

// ErrNoMedia is returned by DecodeDownload for bytes that hold no media
// sub-message.
var ErrNoMedia = errors.New("waconv: no media in stored message")

// DecodeDownload parses Download.Message back into the downloadable
// sub-message (whose direct path SetDirectPath may update) and the holder.
func DecodeDownload(b []byte) (*waE2E.Message, whatsmeow.DownloadableMessage, error) {
	var m waE2E.Message
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, nil, fmt.Errorf("waconv: decode stored media message: %w", err)
	}
	part, _ := mediaPart(&m)
	if part == nil {
		return nil, nil, ErrNoMedia
	}
	return &m, part, nil
}

// SetDirectPath points a downloadable sub-message at a new direct path (a
// re-upload by the sender's phone) and forgets its URL, so whatsmeow
// downloads from the path.
func SetDirectPath(part whatsmeow.DownloadableMessage, path string) {
	switch p := part.(type) {
	case *waE2E.ImageMessage:
		p.DirectPath, p.URL = proto.String(path), nil
	case *waE2E.VideoMessage:
		p.DirectPath, p.URL = proto.String(path), nil
	case *waE2E.AudioMessage:
		p.DirectPath, p.URL = proto.String(path), nil
	case *waE2E.DocumentMessage:
		p.DirectPath, p.URL = proto.String(path), nil
	case *waE2E.StickerMessage:
		p.DirectPath, p.URL = proto.String(path), nil
	}
}
