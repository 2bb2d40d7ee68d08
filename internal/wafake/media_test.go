package wafake_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"go.mau.fi/whatsmeow"
	"google.golang.org/protobuf/proto"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waMmsRetry"
	"go.mau.fi/whatsmeow/types"
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
			if msg.Message.GetDocumentMessage().GetFileName() != "f.bin" || !msg.IsDocumentWithCaption ||
				msg.Message.GetDocumentMessage().GetCaption() != "cap document" {
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

func mediaTypeFor(kind string) whatsmeow.MediaType {
	switch kind {
	case wafake.MediaKindVideo, wafake.MediaKindPTV:
		return whatsmeow.MediaVideo
	case wafake.MediaKindAudio, wafake.MediaKindPTT:
		return whatsmeow.MediaAudio
	case wafake.MediaKindDocument:
		return whatsmeow.MediaDocument
	}
	return whatsmeow.MediaImage
}

// clientMediaMessage builds the message a client sends after cli.Upload.
func clientMediaMessage(kind string, up whatsmeow.UploadResponse) *waE2E.Message {
	url, dp, n := up.URL, up.DirectPath, up.FileLength
	str := func(s string) *string { return &s }
	switch kind {
	case wafake.MediaKindImage:
		return &waE2E.Message{ImageMessage: &waE2E.ImageMessage{URL: &url, DirectPath: &dp, MediaKey: up.MediaKey,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: &n, Mimetype: str("image/png"), Caption: str("a picture")}}
	case wafake.MediaKindVideo, wafake.MediaKindPTV:
		v := &waE2E.VideoMessage{URL: &url, DirectPath: &dp, MediaKey: up.MediaKey,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: &n, Mimetype: str("video/mp4")}
		if kind == wafake.MediaKindPTV {
			return &waE2E.Message{PtvMessage: v}
		}
		return &waE2E.Message{VideoMessage: v}
	case wafake.MediaKindAudio, wafake.MediaKindPTT:
		ptt := kind == wafake.MediaKindPTT
		return &waE2E.Message{AudioMessage: &waE2E.AudioMessage{URL: &url, DirectPath: &dp, MediaKey: up.MediaKey,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: &n, Mimetype: str("audio/ogg; codecs=opus"), PTT: &ptt}}
	case wafake.MediaKindDocument:
		return &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{URL: &url, DirectPath: &dp, MediaKey: up.MediaKey,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: &n, Mimetype: str("application/pdf"), FileName: str("a.pdf")}}
	case wafake.MediaKindSticker:
		return &waE2E.Message{StickerMessage: &waE2E.StickerMessage{URL: &url, DirectPath: &dp, MediaKey: up.MediaKey,
			FileEncSHA256: up.FileEncSHA256, FileSHA256: up.FileSHA256, FileLength: &n, Mimetype: str("image/webp")}}
	}
	return nil
}

// Every kind the client uploads and sends is downloaded and decrypted by the
// contact's phone to the identical bytes.
func TestClientSendsMedia(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990420", nil)
	bob := srv.Contact("5511988880420")
	ctx := ctxT(t)
	for i, kind := range allKinds {
		data := randomFile(t, 700+i*3001)
		up, err := s.cli.Upload(ctx, data, mediaTypeFor(kind))
		if err != nil {
			t.Fatalf("%s: upload: %v", kind, err)
		}
		if up.DirectPath == "" || up.URL == "" {
			t.Fatalf("%s: upload response %+v", kind, up)
		}
		resp, err := s.cli.SendMessage(ctx, bob.JID(), clientMediaMessage(kind, up))
		if err != nil {
			t.Fatalf("%s: send: %v", kind, err)
		}
		got, err := bob.WaitMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// whatsmeow (this version) does not know PtvMessage and sends it
		// with type="text".
		wantType := "media"
		if kind == wafake.MediaKindPTV {
			wantType = "text"
		}
		if got.ID != resp.ID || got.Type != wantType || got.MediaErr != nil {
			t.Fatalf("%s: contact got %s type %q err %v", kind, got.ID, got.Type, got.MediaErr)
		}
		if sha256.Sum256(got.Media) != sha256.Sum256(data) {
			t.Fatalf("%s: contact decrypted %d bytes, not the %d sent", kind, len(got.Media), len(data))
		}
	}
	if n := srv.MediaUploads(); n != len(allKinds) {
		t.Fatalf("%d uploads counted", n)
	}

	// A message whose media key does not match the upload: the contact
	// reports the failure instead of bytes.
	up, err := s.cli.Upload(ctx, randomFile(t, 100), whatsmeow.MediaImage)
	if err != nil {
		t.Fatal(err)
	}
	up.MediaKey = randomFile(t, 32)
	if _, err := s.cli.SendMessage(ctx, bob.JID(), clientMediaMessage(wafake.MediaKindImage, up)); err != nil {
		t.Fatal(err)
	}
	if got, err := bob.WaitMessage(ctx); err != nil || got.MediaErr == nil || got.Media != nil {
		t.Fatalf("bad key: %+v %v", got, err)
	}
}

// Expired media answers 404 (or 410); a media retry receipt makes the
// contact's phone re-upload it and send the mediaretry notification, whose
// new direct path downloads again.
func TestMediaRetry(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990430", nil)
	bob := srv.Contact("5511988880430")
	ctx := ctxT(t)

	for _, status := range []int{404, 410} {
		data := randomFile(t, 5000)
		id, err := bob.SendMedia(ctx, s.phone, wafake.MediaKindImage, data, wafake.MediaOptions{Caption: "old"})
		if err != nil {
			t.Fatal(err)
		}
		msg := next[*events.Message](t, s.rec)
		img := msg.Message.GetImageMessage()
		if status == 404 {
			srv.ExpireMedia(id)
		} else if err := srv.ExpireMediaStatus(id, status); err != nil {
			t.Fatal(err)
		}
		_, err = s.cli.Download(ctx, img)
		want := map[int]error{404: whatsmeow.ErrMediaDownloadFailedWith404, 410: whatsmeow.ErrMediaDownloadFailedWith410}[status]
		if !errors.Is(err, want) {
			t.Fatalf("download of expired media: %v, want %v", err, want)
		}
		if srv.MediaDownloadErrors(id) == 0 {
			t.Fatal("failed download not counted")
		}

		before := srv.MediaRetryRequests()
		if err := s.cli.SendMediaRetryReceipt(ctx, &msg.Info, img.GetMediaKey()); err != nil {
			t.Fatal(err)
		}
		evt := next[*events.MediaRetry](t, s.rec)
		if evt.MessageID != id || evt.FromMe || evt.ChatID != msg.Info.Chat {
			t.Fatalf("media retry event %+v (chat %v)", evt, msg.Info.Chat)
		}
		if srv.MediaRetryRequests() != before+1 {
			t.Fatalf("retry requests %d", srv.MediaRetryRequests())
		}
		res, err := whatsmeow.DecryptMediaRetryNotification(evt, img.GetMediaKey())
		if err != nil {
			t.Fatal(err)
		}
		if res.GetResult() != waMmsRetry.MediaRetryNotification_SUCCESS || res.GetDirectPath() == "" || res.GetDirectPath() == img.GetDirectPath() || res.GetStanzaID() != id {
			t.Fatalf("retry result %v", res)
		}
		// The old URL stays dead; the new direct path works.
		img.DirectPath = proto.String(res.GetDirectPath())
		img.URL = nil
		got, err := s.cli.Download(ctx, img)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("download after retry: %v", err)
		}
		if srv.MediaDownloads(res.GetDirectPath()) != 1 || srv.MediaDownloads(id) != 1 {
			t.Fatalf("downloads %d / %d", srv.MediaDownloads(res.GetDirectPath()), srv.MediaDownloads(id))
		}
	}

	// A phone that lost the file answers with an error.
	id, err := bob.SendMedia(ctx, s.phone, wafake.MediaKindDocument, randomFile(t, 300), wafake.MediaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msg := next[*events.Message](t, s.rec)
	srv.ExpireMedia(id)
	if err := srv.ForgetMedia(id); err != nil {
		t.Fatal(err)
	}
	if err := s.cli.SendMediaRetryReceipt(ctx, &msg.Info, msg.Message.GetDocumentMessage().GetMediaKey()); err != nil {
		t.Fatal(err)
	}
	evt := next[*events.MediaRetry](t, s.rec)
	if _, err := whatsmeow.DecryptMediaRetryNotification(evt, msg.Message.GetDocumentMessage().GetMediaKey()); !errors.Is(err, whatsmeow.ErrMediaNotAvailableOnPhone) {
		t.Fatalf("retry of lost media: %v", err)
	}
	if err := srv.ExpireMediaStatus("nope", 404); err == nil {
		t.Fatal("expiring an unknown message succeeded")
	}
}

// A client's own upload can expire too; only contacts' phones re-upload, so
// a retry for it is answered "not available on phone".
func TestClientMediaExpires(t *testing.T) {
	t.Parallel()
	srv := newServer(t)
	s := pair(t, srv, "5511999990440", nil)
	bob := srv.Contact("5511988880440")
	ctx := ctxT(t)
	data := randomFile(t, 2048)
	up, err := s.cli.Upload(ctx, data, whatsmeow.MediaImage)
	if err != nil {
		t.Fatal(err)
	}
	msg := clientMediaMessage(wafake.MediaKindImage, up)
	resp, err := s.cli.SendMessage(ctx, bob.JID(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := bob.WaitMessage(ctx); err != nil || !bytes.Equal(got.Media, data) {
		t.Fatalf("contact: %v", err)
	}
	if got, err := s.cli.Download(ctx, msg.GetImageMessage()); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("download of own upload: %v", err)
	}
	srv.ExpireMedia(resp.ID)
	if _, err := s.cli.Download(ctx, msg.GetImageMessage()); !errors.Is(err, whatsmeow.ErrMediaDownloadFailedWith404) {
		t.Fatalf("download of expired own upload: %v", err)
	}
	info := &types.MessageInfo{ID: resp.ID, MessageSource: types.MessageSource{Chat: bob.JID(), IsFromMe: true}}
	if err := s.cli.SendMediaRetryReceipt(ctx, info, up.MediaKey); err != nil {
		t.Fatal(err)
	}
	evt := next[*events.MediaRetry](t, s.rec)
	if !evt.FromMe || evt.MessageID != resp.ID {
		t.Fatalf("retry event %+v", evt)
	}
	if _, err := whatsmeow.DecryptMediaRetryNotification(evt, up.MediaKey); !errors.Is(err, whatsmeow.ErrMediaNotAvailableOnPhone) {
		t.Fatalf("retry of own upload: %v", err)
	}
}
