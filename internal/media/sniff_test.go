package media_test

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/config"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
)

// oggPage builds the first page of an Ogg stream carrying packet (RFC 3533
// layout; the CRC is left zero, which sniffing does not check).
func oggPage(packet []byte) []byte {
	var b bytes.Buffer
	b.WriteString("OggS")
	b.WriteByte(0)    // version
	b.WriteByte(0x02) // beginning of stream
	b.Write(make([]byte, 8))
	binary.Write(&b, binary.LittleEndian, uint32(0x1234)) // serial
	binary.Write(&b, binary.LittleEndian, uint32(0))      // page sequence
	binary.Write(&b, binary.LittleEndian, uint32(0))      // CRC
	b.WriteByte(1)                                        // one segment
	b.WriteByte(byte(len(packet)))
	b.Write(packet)
	return b.Bytes()
}

// opusHead is the identification header of an Opus stream (RFC 7845 5.1).
func opusHead() []byte {
	var b bytes.Buffer
	b.WriteString("OpusHead")
	b.WriteByte(1) // version
	b.WriteByte(1) // channels
	binary.Write(&b, binary.LittleEndian, uint16(312))
	binary.Write(&b, binary.LittleEndian, uint32(48000))
	binary.Write(&b, binary.LittleEndian, uint16(0))
	b.WriteByte(0) // mapping family
	return b.Bytes()
}

func vorbisHead() []byte {
	return append([]byte("\x01vorbis"), make([]byte, 22)...)
}

// webp builds a lossy WebP file header (RIFF, WEBP, a VP8 chunk header).
func webp() []byte {
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(4+8+10))
	b.WriteString("WEBPVP8 ")
	binary.Write(&b, binary.LittleEndian, uint32(10))
	b.Write([]byte{0x30, 0x01, 0x00, 0x9d, 0x01, 0x2a, 0x01, 0x00, 0x01, 0x00})
	return b.Bytes()
}

// ftyp builds an ISO BMFF ftyp box with a major brand and compatible brands.
func ftyp(major string, compat ...string) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(16+4*len(compat)))
	b.WriteString("ftyp")
	b.WriteString(major)
	binary.Write(&b, binary.BigEndian, uint32(0x200))
	for _, c := range compat {
		b.WriteString(c)
	}
	// the start of the next box, as in a real file
	binary.Write(&b, binary.BigEndian, uint32(8))
	b.WriteString("free")
	return b.Bytes()
}

func wav() []byte {
	var b bytes.Buffer
	b.WriteString("RIFF")
	binary.Write(&b, binary.LittleEndian, uint32(36))
	b.WriteString("WAVEfmt ")
	binary.Write(&b, binary.LittleEndian, uint32(16))
	b.Write(make([]byte, 16))
	return b.Bytes()
}

func imageBytes(t *testing.T, enc func(*bytes.Buffer, image.Image) error) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 4, 4))
	img.Set(1, 1, color.RGBA{200, 10, 10, 255})
	var b bytes.Buffer
	if err := enc(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zipWith(t *testing.T, first string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	f, err := w.Create(first)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("<Types/>"))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSniff(t *testing.T) {
	pngB := imageBytes(t, func(b *bytes.Buffer, i image.Image) error { return png.Encode(b, i) })
	jpgB := imageBytes(t, func(b *bytes.Buffer, i image.Image) error { return jpeg.Encode(b, i, nil) })
	docx := zipWith(t, "[Content_Types].xml")
	const docxType = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
	ole := append([]byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}, make([]byte, 64)...)
	for _, tc := range []struct {
		name     string
		header   []byte
		declared string
		want     string
	}{
		{"ogg opus (voice note)", oggPage(opusHead()), "audio/mpeg", "audio/ogg; codecs=opus"},
		{"ogg vorbis", oggPage(vorbisHead()), "", "audio/ogg; codecs=vorbis"},
		{"ogg of something else", oggPage([]byte("unknown-codec")), "", "application/ogg"},
		{"truncated ogg", []byte("OggS\x00\x02"), "", "application/ogg"},
		{"webp", webp(), "image/png", "image/webp"},
		{"png", pngB, "image/jpeg", "image/png"},
		{"jpeg", jpgB, "", "image/jpeg"},
		{"mp4 isom", ftyp("isom", "isom", "iso2", "avc1", "mp41"), "", "video/mp4"},
		{"mp4 without mp4 brand (DetectContentType misses it)", ftyp("isom", "isom", "avc1"), "", "video/mp4"},
		{"m4a", ftyp("M4A ", "M4A ", "mp42", "isom"), "video/mp4", "audio/mp4"},
		{"3gp", ftyp("3gp4", "3gp4", "isom"), "", "video/3gpp"},
		{"quicktime", ftyp("qt  ", "qt  "), "video/mp4", "video/quicktime"},
		{"heic", ftyp("heic", "mif1", "heic"), "image/jpeg", "image/heic"},
		{"amr", []byte("#!AMR\n\x3c\x91\x17"), "", "audio/amr"},
		{"amr-wb", []byte("#!AMR-WB\n\x04"), "", "audio/amr-wb"},
		{"aac adts", []byte{0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC}, "", "audio/aac"},
		{"mp3 with id3", append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), 0xFF, 0xFB), "", "audio/mpeg"},
		{"mp3 frame without id3", []byte{0xFF, 0xFB, 0x90, 0x64, 0x00, 0x00}, "", "audio/mpeg"},
		{"wav", wav(), "", "audio/wav"},
		{"pdf", []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), "image/png", "application/pdf"},
		{"docx declared", docx, docxType, docxType},
		{"zip declared as an image stays zip", docx, "image/jpeg", "application/zip"},
		{"zip undeclared", docx, "", "application/zip"},
		{"legacy doc declared", ole, "application/msword", "application/msword"},
		{"ole undeclared", ole, "", "application/x-ole-storage"},
		{"csv declared", []byte("name,phone\nana,5511\n"), "text/csv", "text/csv; charset=utf-8"},
		{"text declared as html stays text", []byte("hello there"), "text/html", "text/plain; charset=utf-8"},
		{"html is html", []byte("<html><script>alert(1)</script>"), "image/png", "text/html; charset=utf-8"},
		{"random bytes declared as video", []byte{0x00, 0x13, 0x37, 0x00, 0x01, 0x02, 0xFE, 0x10}, "video/mp4", "application/octet-stream"},
		{"empty", nil, "audio/ogg", "text/plain; charset=utf-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := media.Sniff(tc.header, tc.declared); got != tc.want {
				t.Errorf("Sniff = %q, want %q", got, tc.want)
			}
		})
	}
	// Only the first SniffLen bytes count.
	long := append(bytes.Repeat([]byte{0}, media.SniffLen), []byte("%PDF-")...)
	if got := media.Sniff(long, ""); got == "application/pdf" {
		t.Errorf("Sniff looked past SniffLen")
	}
}

func TestCheckKind(t *testing.T) {
	for _, tc := range []struct {
		kind event.Kind
		mime string
		ok   bool
	}{
		{event.KindPTT, "audio/ogg; codecs=opus", true},
		{event.KindPTT, "audio/ogg; codecs=vorbis", false},
		{event.KindPTT, "audio/mpeg", false},
		{event.KindPTT, "audio/ogg", false},
		{event.KindAudio, "audio/ogg; codecs=opus", true},
		{event.KindAudio, "audio/mpeg", true},
		{event.KindAudio, "audio/mp4", true},
		{event.KindAudio, "audio/aac", true},
		{event.KindAudio, "audio/amr", true},
		{event.KindAudio, "audio/wav", false},
		{event.KindAudio, "audio/ogg; codecs=vorbis", false},
		{event.KindImage, "image/jpeg", true},
		{event.KindImage, "image/png", true},
		{event.KindImage, "image/webp", false},
		{event.KindImage, "image/heic", false},
		{event.KindImage, "application/pdf", false},
		{event.KindVideo, "video/mp4", true},
		{event.KindVideo, "video/3gpp", true},
		{event.KindVideo, "video/quicktime", false},
		{event.KindSticker, "image/webp", true},
		{event.KindSticker, "image/png", false},
		{event.KindDocument, "application/pdf", true},
		{event.KindDocument, "application/octet-stream", true},
		{event.KindDocument, "text/html; charset=utf-8", true},
		{event.KindText, "text/plain", false},
		{event.KindLocation, "image/jpeg", false},
	} {
		err := media.CheckKind(tc.kind, tc.mime)
		if tc.ok != (err == nil) {
			t.Errorf("CheckKind(%s, %q) = %v, want ok=%v", tc.kind, tc.mime, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, media.ErrUnsupported) || !strings.Contains(err.Error(), string(tc.kind))) {
			t.Errorf("CheckKind(%s, %q) error %q: want ErrUnsupported naming the kind", tc.kind, tc.mime, err)
		}
	}
	if err := media.CheckKind(event.KindPTT, "audio/mpeg"); !strings.Contains(err.Error(), "OGG/Opus") {
		t.Errorf("ptt error does not say what is needed: %v", err)
	}
	// Sniffed bytes of a voice note pass as ptt; an MP3 does not.
	if err := media.CheckKind(event.KindPTT, media.Sniff(oggPage(opusHead()), "")); err != nil {
		t.Errorf("sniffed OGG/Opus refused as ptt: %v", err)
	}
	if err := media.CheckKind(event.KindPTT, media.Sniff([]byte("ID3\x04\x00"), "audio/ogg; codecs=opus")); err == nil {
		t.Error("an MP3 declared as OGG/Opus passed as ptt")
	}
}

func TestInline(t *testing.T) {
	for mime, want := range map[string]bool{
		"image/jpeg": true, "audio/ogg; codecs=opus": true, "video/mp4": true, "application/pdf": true,
		"text/html; charset=utf-8": false, "image/svg+xml": false, "text/xml; charset=utf-8": false,
		"application/zip": false, "application/octet-stream": false,
	} {
		if got := media.Inline(mime); got != want {
			t.Errorf("Inline(%q) = %v, want %v", mime, got, want)
		}
	}
}

func TestLimits(t *testing.T) {
	d := media.DefaultLimits()
	if d.For(event.KindDocument) != 100*media.MiB || d.For(event.KindSticker) != 512<<10 || d.For(event.KindText) != 0 {
		t.Fatalf("defaults %+v", d)
	}
	if d.Max() != 100*media.MiB {
		t.Fatalf("Max = %d", d.Max())
	}
	vars := map[string]string{"ZAPBUS_MEDIA_MAX_PTT": "2MiB", "ZAPBUS_MEDIA_MAX_DOCUMENT": "2GB"}
	env := config.NewEnv(func(k string) string { return vars[k] })
	l := media.LimitsFromEnv(env)
	if err := env.Err(); err != nil {
		t.Fatal(err)
	}
	if l.For(event.KindPTT) != 2*media.MiB || l.For(event.KindDocument) != 2e9 || l.For(event.KindImage) != 16*media.MiB {
		t.Fatalf("from env %+v", l)
	}
	if l.Max() != 2e9 {
		t.Fatalf("Max = %d", l.Max())
	}
	if (media.Limits{}).For(event.KindVideo) != 64*media.MiB {
		t.Fatal("a zero Limits does not fall back to the defaults")
	}
	vars["ZAPBUS_MEDIA_MAX_VIDEO"] = "big"
	env = config.NewEnv(func(k string) string { return vars[k] })
	media.LimitsFromEnv(env)
	if err := env.Err(); err == nil || !strings.Contains(err.Error(), "ZAPBUS_MEDIA_MAX_VIDEO") {
		t.Fatalf("bad value: %v", err)
	}
}

// FuzzSniff: any bytes with any declared type give a type, and the
// declared type never makes a file media (image, audio, video) or HTML
// that its bytes alone do not.
func FuzzSniff(f *testing.F) {
	f.Add(oggPage(opusHead()), "audio/ogg")
	f.Add(webp(), "image/webp")
	f.Add(ftyp("M4A ", "isom"), "video/mp4")
	f.Add([]byte("#!AMR\n"), "")
	f.Add([]byte{0xFF, 0xF1, 0x50, 0x80}, "audio/aac")
	f.Add([]byte("PK\x03\x04"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
	f.Add([]byte("a,b\n"), "text/csv")
	f.Fuzz(func(t *testing.T, header []byte, declared string) {
		got := media.Sniff(header, declared)
		if got == "" {
			t.Fatal("empty type")
		}
		bare := media.Sniff(header, "")
		kind := func(ct string) string {
			b := media.Base(ct)
			for _, p := range []string{"image/", "audio/", "video/", "text/html"} {
				if strings.HasPrefix(b, p) {
					return b
				}
			}
			return ""
		}
		if kind(got) != kind(bare) {
			t.Fatalf("declared %q turned %q into %q", declared, bare, got)
		}
	})
}
