package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/zapbus/zapbus/internal/event"
)

// ErrUnsupported matches the error CheckKind returns when a file's type
// does not fit the message kind (the API answers unsupported_media, 422).
var ErrUnsupported = errors.New("media: unsupported type")

// SniffLen is how many leading bytes Sniff looks at (at most; fewer when
// the file is shorter).
const SniffLen = 512

// Sniff returns the content type of a file from its first bytes (header,
// up to SniffLen), never trusting what the client declared where the bytes
// tell: http.DetectContentType, plus what it does not tell apart —
// OGG/Opus ("audio/ogg; codecs=opus"), OGG Vorbis and Theora, the MP4
// family by its ftyp brand (video/mp4, audio/mp4, video/3gpp,
// video/quicktime, image/heic), AMR, AAC (ADTS) and MPEG audio frames
// without an ID3 tag.
//
// The declared type is used only to name a container more precisely
// than the bytes can: a ZIP declared as an Office Open XML, OpenDocument
// or EPUB file, an OLE2 file declared as a legacy Office file, plain text
// declared as CSV, vCard or calendar. It can never turn a file into an
// image, audio or video type (CheckKind trusts Sniff) nor into HTML.
// Unknown bytes are "application/octet-stream".
func Sniff(header []byte, declared string) string {
	if len(header) > SniffLen {
		header = header[:SniffLen]
	}
	t := sniffMore(header)
	if t == "" {
		t = http.DetectContentType(header)
	}
	dbase, _, _ := mime.ParseMediaType(declared)
	switch t {
	case "application/x-ole-storage":
		if legacyOffice[dbase] {
			return dbase
		}
	case "audio/wave":
		return "audio/wav"
	case "application/zip":
		if strings.HasPrefix(dbase, "application/vnd.openxmlformats-officedocument.") ||
			strings.HasPrefix(dbase, "application/vnd.oasis.opendocument.") ||
			dbase == "application/epub+zip" || dbase == "application/vnd.android.package-archive" {
			return dbase
		}
	case "text/plain; charset=utf-8":
		switch dbase {
		case "text/csv", "text/vcard", "text/x-vcard", "text/calendar", "text/markdown", "text/tab-separated-values":
			return dbase + "; charset=utf-8"
		}
	}
	return t
}

var (
	oleMagic     = []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}
	legacyOffice = map[string]bool{
		"application/msword": true, "application/vnd.ms-excel": true, "application/vnd.ms-powerpoint": true,
		"application/vnd.ms-outlook": true,
	}
)

// sniffMore detects what http.DetectContentType misses or names too
// broadly; "" leaves it to DetectContentType.
func sniffMore(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("OggS\x00")):
		return sniffOgg(b)
	case len(b) >= 12 && string(b[4:8]) == "ftyp":
		return sniffFtyp(b)
	case bytes.HasPrefix(b, []byte("#!AMR-WB\n")):
		return "audio/amr-wb"
	case bytes.HasPrefix(b, []byte("#!AMR\n")):
		return "audio/amr"
	case bytes.HasPrefix(b, oleMagic):
		return "application/x-ole-storage"
	case len(b) >= 4 && b[0] == 0xFF && b[1]&0xF6 == 0xF0 && (b[2]>>2)&0x0F < 13:
		// ADTS: 12-bit sync, layer 00, a valid sampling frequency index
		return "audio/aac"
	case len(b) >= 4 && b[0] == 0xFF && b[1]&0xE0 == 0xE0 && b[1]&0x06 != 0 &&
		b[1]&0x18 != 0x08 && b[2]&0xF0 != 0xF0 && b[2]&0x0C != 0x0C:
		// MPEG audio frame: 11-bit sync, valid version, layer, bitrate
		// and sampling rate
		return "audio/mpeg"
	}
	return ""
}

// sniffOgg names an Ogg file by the codec of its first packet.
func sniffOgg(b []byte) string {
	if len(b) < 27 {
		return "application/ogg"
	}
	segs := int(b[26])
	payload := 27 + segs
	if len(b) < payload {
		return "application/ogg"
	}
	p := b[payload:]
	switch {
	case bytes.HasPrefix(p, []byte("OpusHead")):
		return "audio/ogg; codecs=opus"
	case bytes.HasPrefix(p, []byte("\x01vorbis")):
		return "audio/ogg; codecs=vorbis"
	case bytes.HasPrefix(p, []byte("\x80theora")):
		return "video/ogg"
	case bytes.HasPrefix(p, []byte("fLaC")), bytes.HasPrefix(p, []byte("\x7fFLAC")):
		return "audio/ogg; codecs=flac"
	}
	return "application/ogg"
}

// sniffFtyp names an ISO base media file (MP4 family) by its major brand.
func sniffFtyp(b []byte) string {
	size := binary.BigEndian.Uint32(b[:4])
	if size < 16 || size%4 != 0 {
		return ""
	}
	brand := string(b[8:12])
	switch {
	case brand == "M4A " || brand == "M4B " || brand == "M4P ":
		return "audio/mp4"
	case strings.HasPrefix(brand, "3gp") || strings.HasPrefix(brand, "3gs") || strings.HasPrefix(brand, "3ge"):
		return "video/3gpp"
	case strings.HasPrefix(brand, "3g2"):
		return "video/3gpp2"
	case brand == "qt  ":
		return "video/quicktime"
	case brand == "heic" || brand == "heix" || brand == "mif1" || brand == "msf1":
		return "image/heic"
	case brand == "avif" || brand == "avis":
		return "image/avif"
	case brand == "crx ":
		return "application/octet-stream" // camera raw, not a video
	}
	return "video/mp4" // isom, iso2..6, mp41, mp42, avc1, dash, M4V, …
}

// Base returns a content type without its parameters, lowercased.
func Base(contentType string) string {
	base, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		base, _, _ = strings.Cut(contentType, ";")
		base = strings.ToLower(strings.TrimSpace(base))
	}
	return base
}

func isOpus(contentType string) bool {
	base, params, err := mime.ParseMediaType(contentType)
	return err == nil && base == "audio/ogg" && strings.EqualFold(params["codecs"], "opus")
}

// CheckKind reports whether a file of content type mime (as Sniff found
// it) can be sent as a message of kind k, with the formats WhatsApp
// accepts (Meta's Cloud API media list; the phone apps are no more
// lenient):
//
//	image     image/jpeg, image/png (a WebP image goes as a sticker)
//	video     video/mp4, video/3gpp (H.264 video with AAC audio plays everywhere)
//	audio     audio/aac, audio/mp4, audio/mpeg, audio/amr, OGG/Opus
//	ptt       OGG/Opus only: voice notes are Opus in Ogg; nothing is transcoded
//	sticker   image/webp
//	document  any file
//
// The error wraps ErrUnsupported and says what the kind needs.
func CheckKind(k event.Kind, contentType string) error {
	base := Base(contentType)
	var want string
	switch k {
	case event.KindImage:
		if base == "image/jpeg" || base == "image/png" {
			return nil
		}
		want = "JPEG or PNG"
		if base == "image/webp" {
			want += " (send a WebP file as a sticker)"
		}
	case event.KindVideo:
		if base == "video/mp4" || base == "video/3gpp" {
			return nil
		}
		want = "MP4 or 3GPP video"
	case event.KindAudio:
		switch base {
		case "audio/aac", "audio/mp4", "audio/mpeg", "audio/amr":
			return nil
		}
		if isOpus(contentType) {
			return nil
		}
		want = "AAC, MP4 audio, MP3, AMR or OGG/Opus (send other formats as a document)"
	case event.KindPTT:
		if isOpus(contentType) {
			return nil
		}
		want = "OGG/Opus audio (zapbus does not transcode: convert it, e.g. ffmpeg -i in -c:a libopus -b:a 32k out.ogg, or send it as audio)"
	case event.KindSticker:
		if base == "image/webp" {
			return nil
		}
		want = "a WebP image"
	case event.KindDocument:
		return nil
	default:
		return fmt.Errorf("%w: a %s message carries no file", ErrUnsupported, k)
	}
	return fmt.Errorf("%w: a %s message needs %s, this file is %s", ErrUnsupported, k, want, contentType)
}

// Inline reports whether a file of content type mime may be shown in the
// browser from zapbus's origin (Content-Disposition: inline); anything
// else is served as an attachment, so a stored HTML or SVG file cannot run
// script there. Serve with X-Content-Type-Options: nosniff either way.
func Inline(contentType string) bool {
	base := Base(contentType)
	switch {
	case base == "image/jpeg", base == "image/png", base == "image/webp", base == "image/gif":
		return true
	case strings.HasPrefix(base, "audio/"), strings.HasPrefix(base, "video/"):
		return true
	case base == "application/ogg", base == "application/pdf":
		return true
	}
	return false
}
