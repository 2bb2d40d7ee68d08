package connector

import (
	"context"
	"fmt"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
)

// outFile is a file of the mentorado's media store about to be sent.
type outFile struct {
	info media.Info
	data []byte
}

// loadOutFile reads the file a media send names and checks it fits the
// kind: unknown id → media_not_found, wrong type → unsupported_media, over
// the kind's limit → media_too_large. Nothing is sent on any of these.
func (c *Connector) loadOutFile(ctx context.Context, m int64, req event.SendRequest) (*outFile, error) {
	if c.media == nil {
		return nil, event.NewCommandError(event.CodeUnavailable, "this connector has no media store")
	}
	info, data, err := media.ReadForSend(ctx, c.media, m, req.Kind, req.MediaID, c.cfg.Media.Limits)
	if err != nil {
		return nil, err
	}
	return &outFile{info: info, data: data}, nil
}

// waMediaType is the key derivation whatsmeow encrypts a kind's files with.
func waMediaType(k event.Kind) whatsmeow.MediaType {
	switch k {
	case event.KindVideo:
		return whatsmeow.MediaVideo
	case event.KindAudio, event.KindPTT:
		return whatsmeow.MediaAudio
	case event.KindDocument:
		return whatsmeow.MediaDocument
	}
	return whatsmeow.MediaImage // image, sticker
}

// mediaMessage uploads f to WhatsApp and builds the typed message that
// carries it.
func mediaMessage(ctx context.Context, mc mediaClient, req event.SendRequest, f *outFile, ci *waE2E.ContextInfo) (*waE2E.Message, error) {
	up, err := mc.Upload(ctx, f.data, waMediaType(req.Kind))
	if err != nil {
		return nil, fmt.Errorf("upload media: %w", err)
	}
	mt := f.info.MIME
	now := proto.Int64(time.Now().Unix())
	size := proto.Uint64(up.FileLength)
	caption := optString(req.Caption)
	switch req.Kind {
	case event.KindImage:
		return &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey, MediaKeyTimestamp: now,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size, Mimetype: proto.String(mt),
			Caption: caption, ContextInfo: ci,
		}}, nil
	case event.KindVideo:
		return &waE2E.Message{VideoMessage: &waE2E.VideoMessage{
			URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey, MediaKeyTimestamp: now,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size, Mimetype: proto.String(mt),
			Caption: caption, ContextInfo: ci,
		}}, nil
	case event.KindAudio, event.KindPTT:
		a := &waE2E.AudioMessage{
			URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey, MediaKeyTimestamp: now,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size, Mimetype: proto.String(mt),
			ContextInfo: ci,
		}
		if req.Kind == event.KindPTT {
			a.PTT = proto.Bool(true)
			a.Mimetype = proto.String("audio/ogg; codecs=opus")
		}
		return &waE2E.Message{AudioMessage: a}, nil
	case event.KindDocument:
		name := req.FileName
		if name == "" {
			name = "file"
		}
		return &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{
			URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey, MediaKeyTimestamp: now,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size, Mimetype: proto.String(mt),
			FileName: proto.String(name), Title: proto.String(name), Caption: caption, ContextInfo: ci,
		}}, nil
	case event.KindSticker:
		return &waE2E.Message{StickerMessage: &waE2E.StickerMessage{
			URL: proto.String(up.URL), DirectPath: proto.String(up.DirectPath), MediaKey: up.MediaKey, MediaKeyTimestamp: now,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: size, Mimetype: proto.String(mt),
			ContextInfo: ci,
		}}, nil
	}
	return nil, event.NewCommandError(event.CodeBadRequest, "kind %q cannot be sent", req.Kind)
}

// textMessage is a text send: a plain conversation, or an extended text
// when it quotes a message.
func textMessage(text string, ci *waE2E.ContextInfo) *waE2E.Message {
	if ci == nil {
		return &waE2E.Message{Conversation: proto.String(text)}
	}
	return &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String(text), ContextInfo: ci}}
}

// replyContext quotes the message req.ReplyTo names (the notifier filled
// its author and text from the stored row).
func replyContext(req event.SendRequest) *waE2E.ContextInfo {
	if req.ReplyTo == "" {
		return nil
	}
	ci := &waE2E.ContextInfo{StanzaID: proto.String(req.ReplyTo)}
	if req.ReplyToSender != "" {
		ci.Participant = proto.String(req.ReplyToSender)
	}
	ci.QuotedMessage = &waE2E.Message{Conversation: proto.String(req.ReplyToText)}
	return ci
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return proto.String(s)
}

// publishMediaStored publishes the media event of a file we sent: it is
// in our store already.
func (c *Connector) publishMediaStored(ctx context.Context, m int64, msg *event.Message) error {
	if msg.Media == nil {
		return nil
	}
	d := &event.MediaDone{WAID: msg.WAID, ChatJID: msg.ChatJID, State: event.MediaStored, MediaID: msg.Media.ID, MIME: msg.Media.MIME, Size: msg.Media.Size}
	env, err := event.New(m, event.MediaEventID(m, msg.WAID), msg.Timestamp, d)
	if err != nil {
		return err
	}
	return c.publish(ctx, env)
}
