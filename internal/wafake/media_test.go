package wafake_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types/events"

	"github.com/zapbus/zapbus/internal/wafake"
)

func randomFile(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// attachment returns the downloadable part of msg for a kind.
func attachment(kind string, m *waE2E.Message) whatsmeow.DownloadableMessage {
	switch kind {
	case wafake.MediaKindImage:
		return m.GetImageMessage()
	case wafake.MediaKindVideo:
		return m.GetVideoMessage()
	case wafake.MediaKindPTV:
		return m.GetPtvMessage()
	case wafake.MediaKindAudio, wafake.MediaKindPTT:
		return m.GetAudioMessage()
	case wafake.MediaKindDocument:
		return m.GetDocumentMessage()
	case wafake.MediaKindSticker:
		return m.GetStickerMessage()
	}
	return nil
}

var allKinds = []string{
	wafake.MediaKindImage, wafake.MediaKindVideo, wafake.MediaKindPTV, wafake.MediaKindAudio,
	wafake.MediaKindPTT, wafake.MediaKindDocument, wafake.MediaKindSticker,
}

// Every kind a contact sends arrives as the right message type and
// cli.Download returns the identical bytes from the fake CDN.
func TestContactSendsMedia(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990400", nil)
	bob := srv.Contact("5511988880400")
	ctx := ctxT(t)
	for i, kind := range allKinds {
		data := randomFile(t, 1000+i*4099)
		id, err := bob.SendMedia(ctx, s.phone, kind, data, wafake.MediaOptions{
			Caption: "cap " + kind, FileName: "f.bin", Seconds: 7, Width: 640, Height: 480,
		})
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		msg := next[*events.Message](t, s.rec)
		if msg.Info.ID != id || msg.Info.Type != "media" {
			t.Fatalf("%s: got message %s type %q, want %s media", kind, msg.Info.ID, msg.Info.Type, id)
		}
		att := attachment(kind, msg.Message)
		if att == nil || att.GetDirectPath() == "" {
			t.Fatalf("%s: no attachment in %v", kind, msg.Message)
		}
		switch kind {
		case wafake.MediaKindPTT, wafake.MediaKindAudio:
			if msg.Message.GetAudioMessage().GetPTT() != (kind == wafake.MediaKindPTT) || msg.Message.GetAudioMessage().GetSeconds() != 7 {
				t.Fatalf("%s: audio %v", kind, msg.Message.GetAudioMessage())
			}
		case wafake.MediaKindImage:
			if msg.Message.GetImageMessage().GetCaption() != "cap image" || msg.Message.GetImageMessage().GetMimetype() != "image/jpeg" {
				t.Fatalf("image %v", msg.Message.GetImageMessage())
			}
		case wafake.MediaKindDocument:
			if msg.Message.GetDocumentMessage().GetFileName() != "f.bin" {
				t.Fatalf("document %v", msg.Message.GetDocumentMessage())
			}
		}
		got, err := s.cli.Download(ctx, att)
		if err != nil {
			t.Fatalf("%s: download: %v", kind, err)
		}
		if sha256.Sum256(got) != sha256.Sum256(data) {
			t.Fatalf("%s: downloaded %d bytes, not the %d sent", kind, len(got), len(data))
		}
		// By direct path too (what a client does without the URL).
		got, err = s.cli.DownloadMediaWithPath(ctx, att.GetDirectPath(), att.GetFileEncSHA256(), att.GetFileSHA256(),
			att.GetMediaKey(), len(data), whatsmeow.GetMediaType(att), "")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: download by path: %v", kind, err)
		}
		if n := srv.MediaDownloads(id); n != 2 {
			t.Fatalf("%s: %d downloads counted, want 2", kind, n)
		}
		if _, err := srv.WaitReceipt(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bob.SendMedia(ctx, s.phone, "gif", []byte("x"), wafake.MediaOptions{}); err == nil {
		t.Fatal("unknown kind accepted")
	}
}

// A file tampered with on the CDN fails whatsmeow's checks (the fake really
// encrypts and MACs).
func TestMediaWrongKeyFails(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990410", nil)
	bob := srv.Contact("5511988880410")
	ctx := ctxT(t)
	if _, err := bob.SendMedia(ctx, s.phone, wafake.MediaKindImage, randomFile(t, 500), wafake.MediaOptions{}); err != nil {
		t.Fatal(err)
	}
	img := next[*events.Message](t, s.rec).Message.GetImageMessage()
	img.MediaKey = randomFile(t, 32)
	if _, err := s.cli.Download(ctx, img); !errors.Is(err, whatsmeow.ErrInvalidMediaHMAC) {
		t.Fatalf("download with a wrong media key: %v, want ErrInvalidMediaHMAC", err)
	}
}
