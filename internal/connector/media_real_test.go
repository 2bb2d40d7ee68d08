package connector_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/testenv"
	"github.com/zapbus/zapbus/internal/waconv"
	"github.com/zapbus/zapbus/internal/wafake"
)

// Media through the real whatsmeow client on the fake server: the fake
// phone's CDN serves and receives encrypted files like WhatsApp's.

// mediaStore binds the test's WA_MEDIA bucket.
func (re *realEnv) mediaStore(t *testing.T) *media.ObjectStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := re.observer.MediaStore(ctx) // provisioned with the streams
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// mediaEvents returns m's media events by message id; it fails on a
// message with more than one.
func (re *realEnv) mediaEvents(t *testing.T, m int64) map[string]*event.MediaDone {
	t.Helper()
	out := map[string]*event.MediaDone{}
	for _, env := range re.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMedia)) {
		p, err := env.Payload()
		if err != nil {
			t.Fatal(err)
		}
		d := p.(*event.MediaDone)
		if out[d.WAID] != nil {
			t.Fatalf("two media events for %s", d.WAID)
		}
		out[d.WAID] = d
	}
	return out
}

// messageEvents returns m's message events by id.
func (re *realEnv) messageEvents(t *testing.T, m int64) map[string]*event.Message {
	t.Helper()
	out := map[string]*event.Message{}
	for _, env := range re.stored(bus.StreamEvents, event.EventSubject(m, event.TypeMessage)) {
		p, err := env.Payload()
		if err != nil {
			t.Fatal(err)
		}
		out[p.(*event.Message).WAID] = p.(*event.Message)
	}
	return out
}

func readStored(t *testing.T, files media.Store, m int64, id string) []byte {
	t.Helper()
	obj, err := files.Open(context.Background(), m, id)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (re *realEnv) queued(t *testing.T, m int64) int {
	t.Helper()
	var n int
	if err := re.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM media_downloads WHERE mentorado_id = $1", m).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Each media kind the fake phone sends ends stored in the media store with
// the sha256 of what it sent, announced by one media event after the
// message event that describes it.
func TestRealMediaReceiveEachKind(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, 2*time.Second))
	m := re.mentorados(1)[0]
	files := re.mediaStore(t)
	const me, them = "5511955550101", "5511966660101"
	a := re.start("a", re.factory(t), []connector.Option{connector.WithMedia(files)}, func(c *connector.Config) {
		c.Media.Limits = media.Limits{Document: 100_000}
	})
	re.pair(t, m, me)

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	contact := re.srv.Contact(them)
	thumb := []byte("\xff\xd8\xff\xe0 tiny jpeg")
	cases := []struct {
		kind  string
		want  event.Kind
		round bool
		opts  wafake.MediaOptions
	}{
		{wafake.MediaKindImage, event.KindImage, false, wafake.MediaOptions{Caption: "recibo", Width: 800, Height: 600, Thumbnail: thumb}},
		{wafake.MediaKindVideo, event.KindVideo, false, wafake.MediaOptions{Seconds: 12, Caption: "vídeo"}},
		{wafake.MediaKindPTV, event.KindVideo, true, wafake.MediaOptions{Seconds: 5}},
		{wafake.MediaKindAudio, event.KindAudio, false, wafake.MediaOptions{Seconds: 30}},
		{wafake.MediaKindPTT, event.KindPTT, false, wafake.MediaOptions{Seconds: 7}},
		{wafake.MediaKindDocument, event.KindDocument, false, wafake.MediaOptions{FileName: "proposta.pdf", Caption: "segue"}},
		{wafake.MediaKindSticker, event.KindSticker, false, wafake.MediaOptions{Width: 512, Height: 512}},
	}
	sent := map[string][]byte{}
	ids := make([]string, len(cases))
	for i, c := range cases {
		data := randomBytes(t, 20_000+i*1000)
		id, err := contact.SendMedia(ctx, me, c.kind, data, c.opts)
		if err != nil {
			t.Fatalf("send %s: %v", c.kind, err)
		}
		sent[id], ids[i] = data, id
	}
	// A file is stored under the type its bytes show, not the declared one.
	pdf := append([]byte("%PDF-1.7\n"), randomBytes(t, 2000)...)
	pdfID, err := contact.SendMedia(ctx, me, wafake.MediaKindDocument, pdf, wafake.MediaOptions{MIME: "image/jpeg", FileName: "x.pdf"})
	if err != nil {
		t.Fatal(err)
	}
	// Over the document limit: failed without a download.
	big, err := contact.SendMedia(ctx, me, wafake.MediaKindDocument, randomBytes(t, 150_000), wafake.MediaOptions{FileName: "big.zip"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 2*wait, func() bool { return len(re.mediaEvents(t, m)) == len(cases)+2 }, "a media event per message")
	if d := re.mediaEvents(t, m)[pdfID]; d.State != event.MediaStored || d.MIME != "application/pdf" {
		t.Fatalf("sniffed file: %+v", d)
	}
	if info, err := files.Stat(context.Background(), m, sum(pdf)); err != nil || info.MIME != "application/pdf" {
		t.Fatalf("stored as %+v %v", info, err)
	}
	if d := re.mediaEvents(t, m)[big]; d.State != event.MediaFailed || d.Reason != "too_large" || re.srv.MediaDownloads(big) != 0 {
		t.Fatalf("oversized file: %+v, %d downloads", d, re.srv.MediaDownloads(big))
	}

	msgs, done := re.messageEvents(t, m), re.mediaEvents(t, m)
	for i, c := range cases {
		id, data := ids[i], sent[ids[i]]
		msg, d := msgs[id], done[id]
		if msg == nil || msg.Kind != c.want || msg.Media == nil || msg.Media.ID != sum(data) || msg.Media.Round != c.round || msg.Media.Size != int64(len(data)) {
			t.Fatalf("%s: message event %+v (media %+v)", c.kind, msg, msg.Media)
		}
		if c.kind == wafake.MediaKindDocument && msg.Media.FileName != "proposta.pdf" {
			t.Errorf("document file name %q", msg.Media.FileName)
		}
		if c.kind == wafake.MediaKindImage && (!bytes.Equal(msg.Media.Thumbnail, thumb) || msg.Media.Width != 800) {
			t.Errorf("image thumbnail %q width %d", msg.Media.Thumbnail, msg.Media.Width)
		}
		if d.State != event.MediaStored || d.MediaID != sum(data) || d.Size != int64(len(data)) || d.ChatJID != msg.ChatJID {
			t.Fatalf("%s: media event %+v", c.kind, d)
		}
		if got := readStored(t, files, m, d.MediaID); sum(got) != sum(data) {
			t.Fatalf("%s: stored file differs", c.kind)
		}
		obj, err := re.db.MediaObjects().Get(context.Background(), m, d.MediaID)
		if err != nil || obj.Origin != "download" || obj.Size != int64(len(data)) {
			t.Fatalf("%s: ledger %+v %v", c.kind, obj, err)
		}
	}
	// The media event is published before the job is deleted.
	testenv.Eventually(t, wait, func() bool { return re.queued(t, m) == 0 }, "download queue empty")
	if n := counterSum(t, a.c, "zapbus_connector_media_downloads_total", "stored"); n != float64(len(cases)+1) {
		t.Fatalf("stored downloads counted %v", n)
	}
}

// gatedStore holds every Put until its context ends: a connector using it
// has downloaded a file but never stores it, as if killed in between.
type gatedStore struct {
	media.Store
	puts chan string
}

func (g *gatedStore) Put(ctx context.Context, m int64, r io.Reader, mime string, max int64) (media.Info, bool, error) {
	select {
	case g.puts <- mime:
	default:
	}
	<-ctx.Done()
	return media.Info{}, false, ctx.Err()
}

// A connector stopped between a media message's event and its stored file
// leaves the download in Postgres; the next owner stores the file exactly
// once. One of the two files has meanwhile left the CDN: the next owner
// gets 404, asks the sender's phone for a re-upload and stores it from
// the new path.
func TestRealMediaDownloadSurvivesRestartAndReupload(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, 2*time.Second))
	m := re.mentorados(1)[0]
	files := re.mediaStore(t)
	const me, them = "5511955550102", "5511966660102"
	logs := captureLogs(t, re.env)
	gate := &gatedStore{Store: files, puts: make(chan string, 8)}
	a := re.start("a", re.factory(t), []connector.Option{connector.WithMedia(gate)})
	re.pair(t, m, me)

	ctx, cancel := context.WithTimeout(context.Background(), 3*wait)
	defer cancel()
	contact := re.srv.Contact(them)
	plain, expired := randomBytes(t, 30_000), randomBytes(t, 40_000)
	idPlain, err := contact.SendMedia(ctx, me, wafake.MediaKindImage, plain, wafake.MediaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	idExpired, err := contact.SendMedia(ctx, me, wafake.MediaKindDocument, expired, wafake.MediaOptions{FileName: "a.pdf"})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool {
		return re.srv.MediaDownloads(idPlain) >= 1 && re.srv.MediaDownloads(idExpired) >= 1
	}, "both files downloaded by the first connector")
	if msgs := re.messageEvents(t, m); msgs[idPlain] == nil || msgs[idExpired] == nil {
		t.Fatal("message events missing")
	}
	re.srv.ExpireMedia(idExpired)
	a.stop(t)
	if n := len(re.mediaEvents(t, m)); n != 0 {
		t.Fatalf("%d media events before any file was stored", n)
	}
	if n := re.queued(t, m); n != 2 {
		t.Fatalf("queue holds %d downloads after the stop, want 2", n)
	}

	// What decrypts the files: never in a log line above debug.
	secrets := map[string]string{}
	for _, id := range []string{idPlain, idExpired} {
		job, err := re.db.MediaDownloads().Get(ctx, m, id)
		if err != nil {
			t.Fatal(err)
		}
		_, part, err := waconv.DecodeDownload(job.Message)
		if err != nil {
			t.Fatal(err)
		}
		path, _, _ := strings.Cut(part.GetDirectPath(), "?")
		secrets["direct path "+id] = path
		secrets["media key "+id] = base64.StdEncoding.EncodeToString(part.GetMediaKey())
		secrets["media key hex "+id] = hex.EncodeToString(part.GetMediaKey())
	}

	retries := re.srv.MediaRetryRequests()
	re.start("b", re.factory(t), []connector.Option{connector.WithMedia(files)})
	testenv.Eventually(t, 3*wait, func() bool { return len(re.mediaEvents(t, m)) == 2 }, "both files stored after the restart")
	done := re.mediaEvents(t, m)
	for id, data := range map[string][]byte{idPlain: plain, idExpired: expired} {
		if d := done[id]; d.State != event.MediaStored || d.MediaID != sum(data) {
			t.Fatalf("media event %+v", d)
		}
		if got := readStored(t, files, m, sum(data)); !bytes.Equal(got, data) {
			t.Fatalf("stored file of %s differs", id)
		}
	}
	if re.srv.MediaRetryRequests() <= retries {
		t.Fatal("no re-upload request for the expired file")
	}
	if re.srv.MediaDownloadErrors(idExpired) < 1 {
		t.Fatal("the expired file was never refused by the CDN")
	}
	if bad := secretsAboveDebug(t, logs.String(), secrets); len(bad) > 0 {
		t.Fatalf("media secrets in logs:\n%s", strings.Join(bad, "\n"))
	}
	// The media event is published before the job is deleted.
	testenv.Eventually(t, wait, func() bool { return re.queued(t, m) == 0 }, "download queue empty")
}

// The phone no longer has an expired file: the download fails for good
// with a media event that says so.
func TestRealMediaLostOnPhoneFails(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, 2*time.Second))
	m := re.mentorados(1)[0]
	files := re.mediaStore(t)
	const me, them = "5511955550103", "5511966660103"
	gate := &gatedStore{Store: files, puts: make(chan string, 8)}
	a := re.start("a", re.factory(t), []connector.Option{connector.WithMedia(gate)})
	re.pair(t, m, me)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	data := randomBytes(t, 10_000)
	id, err := re.srv.Contact(them).SendMedia(ctx, me, wafake.MediaKindImage, data, wafake.MediaOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, wait, func() bool { return re.srv.MediaDownloads(id) >= 1 }, "downloaded once")
	re.srv.ExpireMedia(id)
	if err := re.srv.ForgetMedia(id); err != nil {
		t.Fatal(err)
	}
	a.stop(t)
	re.start("b", re.factory(t), []connector.Option{connector.WithMedia(files)})
	testenv.Eventually(t, 2*wait, func() bool { return len(re.mediaEvents(t, m)) == 1 }, "media event")
	if d := re.mediaEvents(t, m)[id]; d.State != event.MediaFailed || d.Reason != "not_available_on_phone" || d.MediaID != sum(data) {
		t.Fatalf("media event %+v", d)
	}
	if _, err := files.Stat(context.Background(), m, sum(data)); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("stat: %v", err)
	}
}

// putFile stores data as mentorado m's upload and returns its id.
func putFile(t *testing.T, files media.Store, m int64, data []byte, mime string) string {
	t.Helper()
	info, _, err := files.Put(context.Background(), m, bytes.NewReader(data), mime, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return info.ID
}

// Each kind we send is decrypted by the fake phone to identical bytes; the
// outbound message event carries the media and a media event says it is
// stored; a retried command (same client id) sends nothing again. Bad
// input is refused before anything is uploaded or sent.
func TestRealMediaSend(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, 2*time.Second))
	m := re.mentorados(1)[0]
	files := re.mediaStore(t)
	const me, them = "5511955550104", "5511966660104"
	re.start("a", re.factory(t), []connector.Option{connector.WithMedia(files)}, func(c *connector.Config) {
		c.Media.Limits = media.Limits{Sticker: 10_000}
	})
	re.pair(t, m, me)
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	contact := re.srv.Contact(them)

	cases := []struct {
		kind     event.Kind
		mime     string
		caption  string
		fileName string
		check    func(r wafake.Received) bool
	}{
		{event.KindImage, "image/jpeg", "a foto", "", func(r wafake.Received) bool {
			return r.Message.GetImageMessage().GetCaption() == "a foto" && r.Message.GetImageMessage().GetMimetype() == "image/jpeg"
		}},
		{event.KindVideo, "video/mp4", "o vídeo", "", func(r wafake.Received) bool { return r.Message.GetVideoMessage() != nil }},
		{event.KindAudio, "audio/mpeg", "", "", func(r wafake.Received) bool {
			return r.Message.GetAudioMessage() != nil && !r.Message.GetAudioMessage().GetPTT()
		}},
		{event.KindPTT, "audio/ogg; codecs=opus", "", "", func(r wafake.Received) bool {
			a := r.Message.GetAudioMessage()
			return a.GetPTT() && a.GetMimetype() == "audio/ogg; codecs=opus"
		}},
		{event.KindDocument, "application/pdf", "segue a proposta", "proposta.pdf", func(r wafake.Received) bool {
			d := r.Message.GetDocumentMessage()
			if d == nil {
				d = r.Message.GetDocumentWithCaptionMessage().GetMessage().GetDocumentMessage()
			}
			return d.GetFileName() == "proposta.pdf"
		}},
		{event.KindSticker, "image/webp", "", "", func(r wafake.Received) bool { return r.Message.GetStickerMessage() != nil }},
	}
	for i, c := range cases {
		data := randomBytes(t, 5_000+i*100)
		id := putFile(t, files, m, data, c.mime)
		req := event.SendRequest{ClientID: "media-" + string(c.kind), Phone: them, Kind: c.kind, MediaID: id, Caption: c.caption, FileName: c.fileName}
		r := re.mustRequest(m, event.VerbSend, req)
		if r.Error != nil || r.Message == nil {
			t.Fatalf("send %s: %+v", c.kind, r.Error)
		}
		if r.Message.Kind != c.kind || r.Message.Media == nil || r.Message.Media.ID != sum(data) || r.Message.Media.Size != int64(len(data)) {
			t.Fatalf("%s: reply %+v", c.kind, r.Message)
		}
		got, err := contact.WaitMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != r.Message.WAID || got.MediaErr != nil || !bytes.Equal(got.Media, data) || !c.check(got) {
			t.Fatalf("%s: the phone got %s (media error %v, %d bytes, equal %v): %v", c.kind, got.ID, got.MediaErr, len(got.Media), bytes.Equal(got.Media, data), got.Message)
		}
		// A retry with the same client id sends nothing new.
		uploads := re.srv.MediaUploads()
		again := re.mustRequest(m, event.VerbSend, req)
		if again.Error != nil || again.Message.WAID != r.Message.WAID || re.srv.MediaUploads() != uploads {
			t.Fatalf("%s: retried send %+v (uploads %d → %d)", c.kind, again, uploads, re.srv.MediaUploads())
		}
	}
	testenv.Eventually(t, wait, func() bool { return len(re.mediaEvents(t, m)) == len(cases) }, "a media event per sent file")
	msgs := re.messageEvents(t, m)
	for id, d := range re.mediaEvents(t, m) {
		if d.State != event.MediaStored || msgs[id] == nil || msgs[id].Media == nil || msgs[id].Media.ID != d.MediaID {
			t.Fatalf("media event %+v for message %+v", d, msgs[id])
		}
	}

	// Bad input: a clear error, nothing uploaded, nothing sent.
	png := putFile(t, files, m, []byte("\x89PNG\r\n\x1a\n not really"), "image/png")
	bigSticker := putFile(t, files, m, randomBytes(t, 20_000), "image/webp")
	uploads, received := re.srv.MediaUploads(), len(contact.Messages())
	for _, c := range []struct {
		req  event.SendRequest
		code string
	}{
		{event.SendRequest{Phone: them, Kind: event.KindImage, MediaID: sum([]byte("never uploaded"))}, event.CodeMediaNotFound},
		{event.SendRequest{Phone: them, Kind: event.KindPTT, MediaID: png}, event.CodeMediaType},
		{event.SendRequest{Phone: them, Kind: event.KindSticker, MediaID: bigSticker}, event.CodeMediaTooLarge},
		{event.SendRequest{Phone: them, Kind: event.KindImage, MediaID: "not-a-sha"}, event.CodeBadRequest},
	} {
		r := re.mustRequest(m, event.VerbSend, c.req)
		if r.Error == nil || r.Error.Code != c.code {
			t.Errorf("%+v: got %+v, want %s", c.req, r.Error, c.code)
		}
	}
	if re.srv.MediaUploads() != uploads || len(contact.Messages()) != received {
		t.Fatalf("bad input reached WhatsApp: uploads %d → %d, messages %d → %d", uploads, re.srv.MediaUploads(), received, len(contact.Messages()))
	}
}

// Replies, reactions, edits, deletes and read receipts reach the fake
// phone, and each is an event on the stream.
func TestRealActions(t *testing.T) {
	t.Parallel()
	re := newRealEnv(t, newEnv(t, 2*time.Second))
	m := re.mentorados(1)[0]
	const me, them = "5511955550105", "5511966660105"
	re.start("a", re.factory(t), nil)
	re.pair(t, m, me)
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait)
	defer cancel()
	contact := re.srv.Contact(them)
	chat := contact.JID().String()

	in, err := contact.SendText(ctx, me, "quanto custa?")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := re.srv.WaitReceipt(ctx, in); err != nil {
		t.Fatal(err)
	}

	// A quoted reply.
	r := re.mustRequest(m, event.VerbSend, event.SendRequest{Phone: them, Text: "R$ 100", ReplyTo: in, ReplyToSender: chat, ReplyToText: "quanto custa?"})
	if r.Error != nil || r.Message.ReplyToID != in {
		t.Fatalf("reply: %+v", r)
	}
	got, err := contact.WaitMessage(ctx)
	if err != nil || got.ReplyTo() != in || got.Text != "R$ 100" {
		t.Fatalf("reply at the phone: %+v %v", got, err)
	}
	own := r.Message

	act := func(verb event.Verb, req event.ActionRequest) *event.Message {
		t.Helper()
		r := re.mustRequest(m, verb, req)
		if r.Error != nil || r.Message == nil {
			t.Fatalf("%s: %+v", verb, r.Error)
		}
		return r.Message
	}
	// A reaction to the contact's message, retried with its client id.
	react := event.ActionRequest{ClientID: "r1", MessageID: in, ChatJID: chat, SenderJID: chat, Emoji: "👍"}
	rm := act(event.VerbReact, react)
	got, err = contact.WaitMessage(ctx)
	if target, emoji, ok := got.Reaction(); err != nil || !ok || target != in || emoji != "👍" || got.Message.GetReactionMessage().GetKey().GetFromMe() {
		t.Fatalf("reaction at the phone: %v %v", got.Message, err)
	}
	if again := act(event.VerbReact, react); again.WAID != rm.WAID {
		t.Fatalf("retried reaction sent again: %s vs %s", again.WAID, rm.WAID)
	}
	// An edit of our message, and one too late.
	em := act(event.VerbEdit, event.ActionRequest{MessageID: own.WAID, ChatJID: chat, FromMe: true, SentAt: own.Timestamp, Text: "R$ 90"})
	got, err = contact.WaitMessage(ctx)
	if target, text, ok := got.Edit(); err != nil || !ok || target != own.WAID || text != "R$ 90" {
		t.Fatalf("edit at the phone: %v %v", got.Message, err)
	}
	late := re.mustRequest(m, event.VerbEdit, event.ActionRequest{MessageID: own.WAID, ChatJID: chat, FromMe: true, SentAt: time.Now().Add(-event.EditWindow - time.Minute), Text: "x"})
	if late.Error == nil || late.Error.Code != event.CodeEditExpired {
		t.Fatalf("late edit: %+v", late)
	}
	notOurs := re.mustRequest(m, event.VerbEdit, event.ActionRequest{MessageID: in, ChatJID: chat, SenderJID: chat, SentAt: time.Now(), Text: "x"})
	if notOurs.Error == nil || notOurs.Error.Code != event.CodeNotEditable {
		t.Fatalf("edit of their message: %+v", notOurs)
	}
	// Delete for everyone.
	vm := act(event.VerbRevoke, event.ActionRequest{MessageID: own.WAID, ChatJID: chat, FromMe: true, SentAt: own.Timestamp})
	got, err = contact.WaitMessage(ctx)
	if target, ok := got.Revoke(); err != nil || !ok || target != own.WAID {
		t.Fatalf("revoke at the phone: %v %v", got.Message, err)
	}
	// Mark read.
	rr := re.mustRequest(m, event.VerbRead, event.ReadRequest{ChatJID: chat, Messages: []event.ReadRef{{ID: in, SenderJID: chat}}})
	if rr.Error != nil {
		t.Fatalf("read: %+v", rr.Error)
	}
	if _, err := re.srv.WaitReceiptType(ctx, in, "read"); err != nil {
		t.Fatalf("read receipt at the server: %v", err)
	}

	msgs := re.messageEvents(t, m)
	for _, c := range []struct {
		msg  *event.Message
		kind event.Kind
	}{{rm, event.KindReaction}, {em, event.KindEdit}, {vm, event.KindRevoke}} {
		e := msgs[c.msg.WAID]
		if e == nil || e.Kind != c.kind || e.TargetID != c.msg.TargetID || e.Direction != event.DirectionOut {
			t.Fatalf("%s event %+v", c.kind, e)
		}
	}
	if e := msgs[rm.WAID]; e.TargetID != in || e.Text != "👍" {
		t.Fatalf("reaction event %+v", e)
	}
	var read *event.Receipt
	for _, env := range re.stored(bus.StreamEvents, event.EventSubject(m, event.TypeReceipt)) {
		p, _ := env.Payload()
		if rc := p.(*event.Receipt); rc.Kind == event.ReceiptRead && rc.FromMe {
			read = rc
		}
	}
	if read == nil || len(read.MessageIDs) != 1 || read.MessageIDs[0] != in || read.Phone != them {
		t.Fatalf("read receipt event %+v", read)
	}
}
