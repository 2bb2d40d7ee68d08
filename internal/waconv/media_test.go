package waconv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
)

// Secrets of a media message: they must reach the download queue and
// never the event.
var (
	secretKey  = []byte("media-key-0123456789abcdef012345")
	secretPath = "/v/t62.7118-24/secret-direct-path?ccb=11-4"
	secretEnc  = bytes.Repeat([]byte{0xEE}, 32)
)

func fileSum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

func TestMediaMessages(t *testing.T) {
	thumb := []byte("\xff\xd8 jpeg preview")
	big := bytes.Repeat([]byte{1}, event.MaxThumbnailBytes+1)
	tests := []struct {
		name string
		m    *waE2E.Message
		kind event.Kind
		want event.Media
	}{
		{"image", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			Mimetype: proto.String("image/jpeg"), FileSHA256: fileSum("img"), FileLength: proto.Uint64(1234), Width: proto.Uint32(640), Height: proto.Uint32(480),
			JPEGThumbnail: thumb, MediaKey: secretKey, DirectPath: proto.String(secretPath), FileEncSHA256: secretEnc, Caption: proto.String("foto"),
		}}, event.KindImage, event.Media{MIME: "image/jpeg", Size: 1234, Width: 640, Height: 480, Thumbnail: thumb}},
		{"image with oversized thumbnail", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			Mimetype: proto.String("image/png"), FileSHA256: fileSum("big"), FileLength: proto.Uint64(9), JPEGThumbnail: big,
		}}, event.KindImage, event.Media{MIME: "image/png", Size: 9}},
		{"video", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{
			Mimetype: proto.String("video/mp4"), FileSHA256: fileSum("vid"), FileLength: proto.Uint64(99), Seconds: proto.Uint32(12), Width: proto.Uint32(320), Height: proto.Uint32(240),
			MediaKey: secretKey, DirectPath: proto.String(secretPath),
		}}, event.KindVideo, event.Media{MIME: "video/mp4", Size: 99, Seconds: 12, Width: 320, Height: 240}},
		{"round video", &waE2E.Message{PtvMessage: &waE2E.VideoMessage{
			Mimetype: proto.String("video/mp4"), FileSHA256: fileSum("ptv"), FileLength: proto.Uint64(50), Seconds: proto.Uint32(5),
		}}, event.KindVideo, event.Media{MIME: "video/mp4", Size: 50, Seconds: 5, Round: true}},
		{"voice note", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{
			Mimetype: proto.String("audio/ogg; codecs=opus"), PTT: proto.Bool(true), FileSHA256: fileSum("ptt"), FileLength: proto.Uint64(77), Seconds: proto.Uint32(7),
		}}, event.KindPTT, event.Media{MIME: "audio/ogg; codecs=opus", Size: 77, Seconds: 7}},
		{"audio", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{
			Mimetype: proto.String("audio/mpeg"), FileSHA256: fileSum("mp3"), FileLength: proto.Uint64(88), Seconds: proto.Uint32(180),
		}}, event.KindAudio, event.Media{MIME: "audio/mpeg", Size: 88, Seconds: 180}},
		{"document", &waE2E.Message{DocumentWithCaptionMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{
			Mimetype: proto.String("application/pdf"), FileSHA256: fileSum("pdf"), FileLength: proto.Uint64(4096), FileName: proto.String("proposta.pdf"),
			JPEGThumbnail: thumb, Caption: proto.String("segue"),
		}}}}, event.KindDocument, event.Media{MIME: "application/pdf", Size: 4096, FileName: "proposta.pdf", Thumbnail: thumb}},
		{"sticker without mime", &waE2E.Message{StickerMessage: &waE2E.StickerMessage{
			FileSHA256: fileSum("stk"), FileLength: proto.Uint64(10), Width: proto.Uint32(512), Height: proto.Uint32(512), PngThumbnail: thumb,
		}}, event.KindSticker, event.Media{MIME: "image/webp", Size: 10, Width: 512, Height: 512}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, evt := range []*events.Message{rawOnly(fromAlice(), "M1", tt.m), dispatched(fromAlice(), "M1", "", tt.m)} {
				envs, ps := payloads(t, converter(nil), evt)
				m := ps[0].(*event.Message)
				if m.Kind != tt.kind || m.Media == nil {
					t.Fatalf("kind %s media %+v, want %s with media", m.Kind, m.Media, tt.kind)
				}
				part, _ := mediaPart(unwrap(tt.m))
				want := tt.want
				want.ID = hex.EncodeToString(part.GetFileSHA256())
				got, _ := json.Marshal(m.Media)
				wantJSON, _ := json.Marshal(&want)
				if !bytes.Equal(got, wantJSON) {
					t.Errorf("media %s\nwant  %s", got, wantJSON)
				}
				// Nothing that decrypts the file is in the event.
				raw := string(envs[0].Data)
				for _, secret := range []string{secretPath, "secret-direct-path", hexB64(secretKey), hexB64(secretEnc)} {
					if strings.Contains(raw, secret) {
						t.Fatalf("event carries a media secret %q: %s", secret, raw)
					}
				}

				d, ok := DownloadOf(evt)
				if !ok {
					t.Fatal("no download for a media message")
				}
				if d.WAID != "M1" || d.Kind != tt.kind || d.MediaID != want.ID || d.ChatJID != m.ChatJID || d.Size != want.Size || d.MIME != want.MIME {
					t.Errorf("download %+v", d)
				}
				if d.Source != (Source{ID: "M1", Chat: alice.String(), Sender: aliceDev.String()}) {
					t.Errorf("source %+v", d.Source)
				}
				holder, p, err := DecodeDownload(d.Message)
				if err != nil {
					t.Fatal(err)
				}
				if !proto.Equal(p.(proto.Message), part.(proto.Message)) {
					t.Errorf("stored sub-message differs from the received one")
				}
				if (holder.PtvMessage != nil) != want.Round {
					t.Errorf("round video not kept as PtvMessage")
				}
				SetDirectPath(p, "/new/path")
				if p.GetDirectPath() != "/new/path" {
					t.Errorf("direct path %q", p.GetDirectPath())
				}
			}
		})
	}
}

func hexB64(b []byte) string { return hex.EncodeToString(b) }

// A media message whose FileSHA256 is missing or short cannot be stored
// under its sha256: it is published without media (kind and caption kept)
// and makes no download.
func TestMediaWithoutUsableHash(t *testing.T) {
	for name, sum := range map[string][]byte{"missing": nil, "short": {1, 2, 3}} {
		t.Run(name, func(t *testing.T) {
			evt := msg(fromAlice(), "NOHASH", "", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
				Caption: proto.String("sem hash"), FileSHA256: sum, MediaKey: secretKey, DirectPath: proto.String(secretPath),
			}})
			_, ps := payloads(t, converter(nil), evt)
			m := ps[0].(*event.Message)
			if m.Kind != event.KindImage || m.Caption != "sem hash" || m.Media != nil {
				t.Fatalf("got %+v", m)
			}
			if d, ok := DownloadOf(evt); ok {
				t.Fatalf("download for a file without hash: %+v", d)
			}
		})
	}
}

func TestDownloadOfOtherEvents(t *testing.T) {
	for name, evt := range map[string]any{
		"text":     msg(fromAlice(), "T", "", text("oi")),
		"receipt":  &events.Receipt{},
		"nil":      (*events.Message)(nil),
		"reaction": msg(fromAlice(), "R", "", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Key: key("X", false), Text: proto.String("👍")}}),
		"status broadcast": msg(types.MessageSource{Chat: types.StatusBroadcastJID, Sender: alice}, "S", "", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			FileSHA256: fileSum("s"), MediaKey: secretKey,
		}}),
	} {
		if d, ok := DownloadOf(evt); ok {
			t.Errorf("%s: download %+v", name, d)
		}
	}
}

// An outbound media message sent from the phone is downloaded too, and a
// group message's re-upload request names the participant.
func TestDownloadSource(t *testing.T) {
	img := &waE2E.Message{ImageMessage: &waE2E.ImageMessage{FileSHA256: fileSum("g"), MediaKey: secretKey}}
	d, ok := DownloadOf(msg(types.MessageSource{Chat: group, Sender: aliceDev, IsGroup: true}, "G1", "", img))
	if !ok || d.Source != (Source{ID: "G1", Chat: group.String(), Sender: aliceDev.String(), IsGroup: true}) {
		t.Fatalf("group download %+v", d)
	}
	info, err := d.Source.Info()
	if err != nil || info.ID != "G1" || info.Chat != group || info.Sender != aliceDev || !info.IsGroup {
		t.Fatalf("info %+v %v", info, err)
	}
	d, ok = DownloadOf(msg(toAlice(), "O1", "", img))
	if !ok || !d.Source.FromMe || d.ChatJID != alice.String() {
		t.Fatalf("outbound download %+v", d)
	}
}

func TestDecodeDownloadRejects(t *testing.T) {
	if _, _, err := DecodeDownload([]byte{0xff, 0xff}); err == nil {
		t.Error("garbage decoded")
	}
	b, _ := proto.Marshal(text("no media"))
	if _, _, err := DecodeDownload(b); err != ErrNoMedia {
		t.Errorf("text: %v", err)
	}
}
