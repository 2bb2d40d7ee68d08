package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
)

// Test files: real headers, so the sniffer recognises them.
var (
	jpegBytes = append([]byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"), bytes.Repeat([]byte{0x42}, 2000)...)
	pdfBytes  = append([]byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"), bytes.Repeat([]byte("% filler\n"), 200)...)
	opusBytes = oggOpus()
)

// oggOpus is the first page of an Ogg stream holding an OpusHead packet.
func oggOpus() []byte {
	head := append([]byte("OpusHead\x01\x01\x38\x01\x80\xbb\x00\x00\x00\x00\x00"), make([]byte, 0)...)
	page := []byte("OggS\x00\x02")
	page = append(page, make([]byte, 8)...)             // granule
	page = append(page, 1, 0, 0, 0, 0, 0, 0, 0)         // serial, sequence
	page = append(page, 0, 0, 0, 0, 1, byte(len(head))) // crc (unchecked), 1 segment
	page = append(page, head...)
	return append(page, bytes.Repeat([]byte{0}, 500)...)
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// upload posts a multipart body with one "file" part declared as
// declared (a lie is fine: the server sniffs).
func (e *testEnv) upload(token, name, declared string, data []byte) response {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, name))
	h.Set("Content-Type", declared)
	pw, err := mw.CreatePart(h)
	if err != nil {
		e.t.Fatal(err)
	}
	_, _ = pw.Write(data)
	_ = mw.Close()
	req, err := http.NewRequest("POST", e.srv.URL+"/v1/media", &buf)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	return e.send(req)
}

func (e *testEnv) stored(m int64, id string) bool {
	e.t.Helper()
	_, err := e.media.Stat(context.Background(), m, id)
	if err != nil && !errors.Is(err, media.ErrNotFound) {
		e.t.Fatal(err)
	}
	return err == nil
}

// mediaRow is a stored media message.
type mediaRow struct {
	WAID, Phone, Kind, Direction, MIME, FileName, State, Error, MediaID string
	Thumb                                                               []byte
	Revoked                                                             bool
	At                                                                  time.Time
}

func (e *testEnv) insertMedia(m int64, r mediaRow) {
	e.t.Helper()
	if r.Direction == "" {
		r.Direction = "in"
	}
	if r.At.IsZero() {
		r.At = time.Now()
	}
	_, err := e.db.Pool.Exec(context.Background(), `
INSERT INTO whatsapp_messages (mentorado_id, wa_message_id, chat_jid, sender_jid, phone, direction, kind, caption,
	status, status_rank, sent_at, media_id, media_mime, media_size, media_file_name, media_thumbnail, media_state, media_error, revoked)
VALUES ($1, $2, $3 || '@s.whatsapp.net', $3 || '@s.whatsapp.net', $3, $4, $5, 'legenda', 'received', 1, $6, $7, $8, 100,
	nullif($9, ''), $10, $11, nullif($12, ''), $13)`,
		m, r.WAID, r.Phone, r.Direction, r.Kind, r.At, r.MediaID, r.MIME, r.FileName, r.Thumb, r.State, r.Error, r.Revoked)
	if err != nil {
		e.t.Fatalf("insert media message: %v", err)
	}
}

func TestUploadMedia(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MediaLimits = media.Limits{Image: 4096, Video: 4096, Audio: 4096, PTT: 4096, Document: 8192, Sticker: 4096}
	})
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")

	var up uploadResponse
	res := e.expect(e.upload(a.Token, "foto.png", "image/png", jpegBytes), 201) // declared png, is jpeg
	res.json(t, &up)
	if up.MediaID != sha(jpegBytes) || up.MIME != "image/jpeg" || up.Size != int64(len(jpegBytes)) || up.FileName != "foto.png" {
		t.Fatalf("upload %+v", up)
	}
	if !e.stored(a.ID, up.MediaID) || e.stored(b.ID, up.MediaID) {
		t.Fatal("stored for the wrong tenant")
	}
	if o, err := e.db.MediaObjects().Get(t.Context(), a.ID, up.MediaID); err != nil || o.Size != int64(len(jpegBytes)) || o.Origin != "upload" || o.MIME != "image/jpeg" {
		t.Fatalf("ledger %+v %v", o, err)
	}
	e.expect(e.upload(a.Token, "again.jpg", "image/jpeg", jpegBytes), 200).json(t, &up)
	if up.MediaID != sha(jpegBytes) {
		t.Fatalf("second upload %+v", up)
	}
	e.expect(e.upload(a.Token, "nota.ogg", "audio/mpeg", opusBytes), 201).json(t, &up)
	if up.MIME != "audio/ogg; codecs=opus" {
		t.Fatalf("opus sniffed as %q", up.MIME)
	}
	e.expect(e.upload(a.Token, "x.exe", "image/jpeg", pdfBytes), 201).json(t, &up)
	if up.MIME != "application/pdf" {
		t.Fatalf("pdf sniffed as %q", up.MIME)
	}

	// Refused uploads store nothing.
	big := append(append([]byte{}, jpegBytes...), bytes.Repeat([]byte{1}, 9000)...)
	res = e.expect(e.upload(a.Token, "big.jpg", "image/jpeg", big), 413)
	if res.errorCode(t) != event.CodeMediaTooLarge || e.stored(a.ID, sha(big)) {
		t.Fatalf("oversize: %s stored=%v", res.Body, e.stored(a.ID, sha(big)))
	}
	if code := e.expect(e.upload(a.Token, "empty", "text/plain", nil), 400).errorCode(t); code != codeBadRequest {
		t.Fatalf("empty: %s", code)
	}
	raw := func(ct, body string) response {
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/media", strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+a.Token)
		return e.send(req)
	}
	e.expect(raw("multipart/form-data; boundary=XX", "--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc"), 400)
	e.expect(raw("multipart/form-data; boundary=XX", "garbage"), 400)
	e.expect(raw("multipart/form-data; boundary=XX", "--XX\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nabc\r\n--XX--\r\n"), 400)
	e.expect(raw("application/json", `{"file":"abc"}`), 415)
	e.expect(raw("multipart/form-data", "--XX--"), 415) // no boundary
	if e.stored(a.ID, sha([]byte("abc"))) {
		t.Fatal("a truncated upload was stored")
	}
	e.expect(e.upload("", "foto.jpg", "image/jpeg", jpegBytes), 401)

	// Storage accounting per tenant on /metrics: Ana's three files (the
	// jpeg once), nothing for Bia.
	want := float64(len(jpegBytes) + len(opusBytes) + len(pdfBytes))
	if got := e.s.metricValue("zapbus_media_stored_bytes", fmt.Sprint(a.ID)); got != want {
		t.Fatalf("stored bytes for %d: %v, want %v", a.ID, got, want)
	}
	if got := e.s.metricValue("zapbus_media_stored_files", fmt.Sprint(a.ID)); got != 3 {
		t.Fatalf("stored files for %d: %v", a.ID, got)
	}
	if got := e.s.metricValue("zapbus_media_stored_files", fmt.Sprint(b.ID)); got != 0 {
		t.Fatalf("stored files for %d: %v", b.ID, got)
	}
}

func TestSendMediaAndReply(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.MediaLimits = media.Limits{Image: 1024, Video: 4096, Audio: 4096, PTT: 4096, Document: 8192, Sticker: 4096}
	})
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	fc := e.fakeConnector(defaultAnswer)
	put := func(m int64, data []byte) string {
		info, _, err := e.media.Put(context.Background(), m, bytes.NewReader(data), media.Sniff(data, ""), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		return info.ID
	}
	pdf, opus, jpeg := put(a.ID, pdfBytes), put(a.ID, opusBytes), put(a.ID, jpegBytes)
	bPDF := put(b.ID, append([]byte("%PDF-1.4\n"), []byte("B only")...))
	const ph = "5511988887777"
	e.insertMessage(a.ID, msgRow{WAID: "Q1", Phone: ph, Text: "qual o preço?"})
	e.insertMessage(a.ID, msgRow{WAID: "Q-other", Phone: "5511977776666", Text: "other chat"})
	e.insertMessage(b.ID, msgRow{WAID: "Q-B", Phone: ph, Text: "B secret"})

	send := func(body map[string]any, status int, code string) {
		t.Helper()
		before := len(fc.Subjects())
		res := e.expect(e.do("POST", "/v1/messages", a.Token, body), status)
		if code != "" {
			if got := res.errorCode(t); got != code {
				t.Fatalf("%v: code %s, want %s", body, got, code)
			}
			if len(fc.Subjects()) != before {
				t.Fatalf("%v: a refused send reached the connector", body)
			}
		}
	}
	send(map[string]any{"phone": ph, "kind": "document", "media_id": pdf, "file_name": "proposta.pdf", "caption": "segue", "reply_to": "Q1"}, 201, "")
	var got event.SendRequest
	if err := json.Unmarshal(fc.LastBody(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Kind != event.KindDocument || got.MediaID != pdf || got.FileName != "proposta.pdf" || got.Caption != "segue" ||
		got.ReplyTo != "Q1" || got.ReplyToText != "qual o preço?" || got.ReplyToSender != ph+"@s.whatsapp.net" || got.ReplyToKind != event.KindText {
		t.Fatalf("command %+v", got)
	}
	send(map[string]any{"phone": ph, "kind": "ptt", "media_id": opus}, 201, "")
	send(map[string]any{"phone": ph, "text": "ok", "reply_to": "Q1"}, 201, "")

	unknown := strings.Repeat("0", 64)
	send(map[string]any{"phone": ph, "kind": "image", "media_id": unknown}, 404, event.CodeMediaNotFound)
	send(map[string]any{"phone": ph, "kind": "document", "media_id": bPDF}, 404, event.CodeMediaNotFound) // B's file
	send(map[string]any{"phone": ph, "kind": "image", "media_id": pdf}, 422, event.CodeMediaType)
	send(map[string]any{"phone": ph, "kind": "ptt", "media_id": jpeg}, 422, event.CodeMediaType)
	send(map[string]any{"phone": ph, "kind": "sticker", "media_id": jpeg}, 422, event.CodeMediaType)
	send(map[string]any{"phone": ph, "kind": "image", "media_id": jpeg}, 413, event.CodeMediaTooLarge) // image limit 1 KiB
	send(map[string]any{"phone": ph, "kind": "image", "media_id": "nothex"}, 400, codeBadRequest)
	send(map[string]any{"phone": ph, "kind": "image", "media_id": jpeg, "text": "x"}, 400, codeBadRequest)
	send(map[string]any{"phone": ph, "kind": "audio", "media_id": opus, "caption": "x"}, 400, codeBadRequest)
	send(map[string]any{"phone": ph, "kind": "location", "media_id": opus}, 400, codeBadRequest)
	send(map[string]any{"phone": ph, "text": "x", "reply_to": "nope"}, 404, event.CodeMessageUnknown)
	send(map[string]any{"phone": ph, "text": "x", "reply_to": "Q-B"}, 404, event.CodeMessageUnknown)     // B's message
	send(map[string]any{"phone": ph, "text": "x", "reply_to": "Q-other"}, 404, event.CodeMessageUnknown) // another chat
}

func TestGetMessageMedia(t *testing.T) {
	e := newEnv(t)
	a := e.createMentorado("Ana")
	b := e.createMentorado("Bia")
	ctx := context.Background()
	if _, _, err := e.media.Put(ctx, a.ID, bytes.NewReader(jpegBytes), "image/jpeg", 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.media.Put(ctx, a.ID, bytes.NewReader(pdfBytes), "application/pdf", 1<<20); err != nil {
		t.Fatal(err)
	}
	const ph = "5511988887777"
	e.insertMedia(a.ID, mediaRow{WAID: "IMG", Phone: ph, Kind: "image", MIME: "image/jpeg", MediaID: sha(jpegBytes), State: "stored", Thumb: []byte("\xff\xd8thumb")})
	e.insertMedia(a.ID, mediaRow{WAID: "DOC", Phone: ph, Kind: "document", MIME: "application/pdf", MediaID: sha(pdfBytes), State: "stored", FileName: "proposta de preço.pdf"})
	e.insertMedia(a.ID, mediaRow{WAID: "PEND", Phone: ph, Kind: "audio", MIME: "audio/ogg", MediaID: sha([]byte("later")), State: "pending"})
	e.insertMedia(a.ID, mediaRow{WAID: "FAIL", Phone: ph, Kind: "video", MIME: "video/mp4", MediaID: sha([]byte("never")), State: "failed", Error: "410 from the CDN"})
	e.insertMedia(a.ID, mediaRow{WAID: "GONE", Phone: ph, Kind: "image", MIME: "image/jpeg", MediaID: sha(jpegBytes), State: "stored", Revoked: true})
	e.insertMessage(a.ID, msgRow{WAID: "TXT", Phone: ph, Text: "oi"})
	// The sender declared an image; the bytes are a PDF (stored as one).
	e.insertMedia(a.ID, mediaRow{WAID: "LIE", Phone: ph, Kind: "image", MIME: "image/jpeg", MediaID: sha(pdfBytes), State: "stored"})
	e.insertMedia(b.ID, mediaRow{WAID: "B-IMG", Phone: ph, Kind: "image", MIME: "image/jpeg", MediaID: sha(jpegBytes), State: "stored"})

	get := func(path string, hdr map[string]string) response {
		t.Helper()
		req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+a.Token)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return e.send(req)
	}
	res := e.expect(get("/v1/messages/IMG/media", nil), 200)
	if !bytes.Equal(res.Body, jpegBytes) || res.Header.Get("Content-Type") != "image/jpeg" || res.Header.Get("ETag") != `"`+sha(jpegBytes)+`"` ||
		res.Header.Get("Accept-Ranges") != "bytes" || !strings.HasPrefix(res.Header.Get("Content-Disposition"), "inline") ||
		!strings.Contains(res.Header.Get("Cache-Control"), "private") {
		t.Fatalf("image: %d bytes, headers %v", len(res.Body), res.Header)
	}
	if res := e.expect(get("/v1/messages/LIE/media", nil), 200); !bytes.Equal(res.Body, pdfBytes) || res.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("a PDF declared as an image is served as %q", res.Header.Get("Content-Type"))
	}
	res = e.expect(get("/v1/messages/IMG/media", map[string]string{"Range": "bytes=2-9"}), 206)
	if !bytes.Equal(res.Body, jpegBytes[2:10]) || res.Header.Get("Content-Range") != fmt.Sprintf("bytes 2-9/%d", len(jpegBytes)) {
		t.Fatalf("range: %q %v", res.Body, res.Header)
	}
	e.expect(get("/v1/messages/IMG/media", map[string]string{"If-None-Match": `"` + sha(jpegBytes) + `"`}), 304)
	res = e.expect(get("/v1/messages/DOC/media", nil), 200)
	if !bytes.Equal(res.Body, pdfBytes) || res.Header.Get("Content-Disposition") != "attachment; filename*=UTF-8''proposta%20de%20pre%C3%A7o.pdf" {
		t.Fatalf("document: %v", res.Header)
	}
	for path, want := range map[string][2]any{
		"/v1/messages/PEND/media":      {404, codeMediaNotReady},
		"/v1/messages/FAIL/media":      {410, codeMediaFailed},
		"/v1/messages/TXT/media":       {404, codeNoMedia},
		"/v1/messages/GONE/media":      {404, codeNoMedia},
		"/v1/messages/nope/media":      {404, event.CodeMessageUnknown},
		"/v1/messages/B-IMG/media":     {404, event.CodeMessageUnknown},
		"/v1/messages/DOC/thumbnail":   {404, codeNoMedia},
		"/v1/messages/B-IMG/thumbnail": {404, event.CodeMessageUnknown},
		"/v1/messages/GONE/thumbnail":  {404, codeNoMedia},
	} {
		res := e.expect(get(path, nil), want[0].(int))
		if got := res.errorCode(t); got != want[1] {
			t.Fatalf("%s: %s, want %s", path, got, want[1])
		}
	}
	res = e.expect(get("/v1/messages/IMG/thumbnail", nil), 200)
	if string(res.Body) != "\xff\xd8thumb" || res.Header.Get("Content-Type") != "image/jpeg" {
		t.Fatalf("thumbnail %q %v", res.Body, res.Header)
	}

	// The thread shows the files, and nothing of the revoked one.
	var mr messagesResponse
	e.expect(e.do("GET", "/v1/conversations/"+ph+"/messages", a.Token, nil), 200).json(t, &mr)
	byID := map[string]apiMessage{}
	for _, m := range mr.Messages {
		byID[m.ID] = m
	}
	if m := byID["IMG"].Media; m == nil || m.State != "stored" || m.URL != "/v1/messages/IMG/media" || m.ThumbnailURL != "/v1/messages/IMG/thumbnail" || m.MIME != "image/jpeg" {
		t.Fatalf("IMG media %+v", m)
	}
	if m := byID["FAIL"].Media; m == nil || m.State != "failed" || m.Error != "410 from the CDN" || m.ThumbnailURL != "" {
		t.Fatalf("FAIL media %+v", m)
	}
	if m := byID["GONE"]; m.Media != nil || m.Caption != "" || !m.Revoked {
		t.Fatalf("revoked message %+v", m)
	}

	// Once the file is stored, a pending message serves it.
	if _, _, err := e.media.Put(ctx, a.ID, bytes.NewReader([]byte("later")), "audio/ogg", 1<<20); err != nil {
		t.Fatal(err)
	}
	if res := e.expect(get("/v1/messages/PEND/media", nil), 200); string(res.Body) != "later" {
		t.Fatalf("pending but stored: %q", res.Body)
	}
}

// FuzzUploadBody: any multipart body yields a stored file (200/201) or a
// 4xx API error, never a 5xx.
func FuzzUploadBody(f *testing.F) {
	for _, s := range []string{
		"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n" + string(jpegBytes[:64]) + "\r\n--XX--\r\n",
		"--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n\r\n--XX--\r\n",
		"--XX\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nOggS\r\n--XX--\r\n",
		"--XX\r\n\r\n", "--XX--", "", "--YY\r\n", "--XX\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc",
	} {
		f.Add(s)
	}
	e := newEnv(f, func(c *Config) {
		c.MediaLimits = media.Limits{Image: 1024, Video: 1024, Audio: 1024, PTT: 1024, Document: 1024, Sticker: 1024}
	})
	a := e.createMentorado("Ana")
	f.Fuzz(func(t *testing.T, body string) {
		req, err := http.NewRequest("POST", e.srv.URL+"/v1/media", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "multipart/form-data; boundary=XX")
		req.Header.Set("Authorization", "Bearer "+a.Token)
		te := *e
		te.t = t // testing.F's helpers may not run inside the target
		res := te.send(req)
		switch {
		case res.Status == 200 || res.Status == 201:
			var up uploadResponse
			if err := json.Unmarshal(res.Body, &up); err != nil || !event.IsMediaID(up.MediaID) || up.Size <= 0 {
				t.Fatalf("upload answer %s", res.Body)
			}
		case res.Status >= 400 && res.Status < 500:
			assertJSONError(t, "upload", res)
		default:
			t.Fatalf("status %d: %s", res.Status, res.Body)
		}
	})
}
