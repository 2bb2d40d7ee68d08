package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/testenv"
)

// pairedMentorado creates a mentorado and pairs it with the fake phone
// number by pairing code; it returns the id and the mentorado's token.
func (s *stack) pairedMentorado(t *testing.T, name, number string) (int64, string) {
	t.Helper()
	var created struct {
		ID    int64  `json:"id"`
		Token string `json:"token"`
	}
	if code := s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": name}, &created); code != http.StatusCreated {
		t.Fatalf("create mentorado: %d", code)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		return s.do("POST", "/v1/whatsapp/connect", created.Token, map[string]string{"method": "phone", "phone": "+" + number}, nil) == http.StatusAccepted
	}, "connect by phone never accepted")
	if code := s.do("POST", fmt.Sprintf("/v1/dev/sim/%d/pair-code", created.ID), s.admin, map[string]string{"phone": number}, nil); code != http.StatusOK {
		t.Fatalf("pair-code: %d", code)
	}
	var status struct {
		Status string `json:"status"`
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		s.do("GET", "/v1/whatsapp/status", created.Token, nil, &status)
		return status.Status == "connected"
	}, "never connected: %+v", status)
	return created.ID, created.Token
}

// get fetches path with the token and optional extra headers.
func (s *stack) get(t *testing.T, path, token string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp, b
}

// multipart posts fields and one file part as multipart/form-data and
// decodes the JSON answer into out.
func (s *stack) multipart(t *testing.T, path, token string, fields map[string]string, part, fileName string, data []byte, out any) int {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	fw, _ := mw.CreateFormFile(part, fileName)
	_, _ = fw.Write(data)
	_ = mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.base+path, &body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("POST %s: %d %s: %v", path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// waitMedia waits until GET /v1/messages/{id}/media serves the file.
func (s *stack) waitMedia(t *testing.T, id, token string) (*http.Response, []byte) {
	t.Helper()
	var resp *http.Response
	var body []byte
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, body = s.get(t, "/v1/messages/"+id+"/media", token)
		return resp.StatusCode == http.StatusOK
	}, "the file of %s was never served", id)
	return resp, body
}

type simReceivedMsg struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Text        string `json:"text"`
	FileName    string `json:"file_name"`
	MIME        string `json:"mime"`
	MediaSHA256 string `json:"media_sha256"`
	MediaError  string `json:"media_error"`
	ReplyTo     string `json:"reply_to"`
	Target      string `json:"target"`
	Emoji       string `json:"emoji"`
}

// receivedBy waits for a message the simulated contact received that
// satisfies match.
func (s *stack) receivedBy(t *testing.T, m int64, number, what string, match func(simReceivedMsg) bool) simReceivedMsg {
	t.Helper()
	var got struct {
		Messages []simReceivedMsg `json:"messages"`
	}
	var found simReceivedMsg
	testenv.Eventually(t, 30*time.Second, func() bool {
		if code := s.do("GET", fmt.Sprintf("/v1/dev/sim/%d/received?phone=%s", m, number), s.admin, nil, &got); code != http.StatusOK {
			t.Fatalf("received: %d", code)
		}
		for _, r := range got.Messages {
			if match(r) {
				found = r
				return true
			}
		}
		return false
	}, "the contact never received %s: %+v", what, got.Messages)
	return found
}

type apiMedia struct {
	ID           string `json:"id"`
	MIME         string `json:"mime"`
	Size         int64  `json:"size"`
	FileName     string `json:"file_name"`
	State        string `json:"state"`
	URL          string `json:"url"`
	ThumbnailURL string `json:"thumbnail_url"`
}

type apiThreadMessage struct {
	ID        string    `json:"id"`
	Direction string    `json:"direction"`
	Kind      string    `json:"kind"`
	Text      string    `json:"text"`
	Caption   string    `json:"caption"`
	Edited    bool      `json:"edited"`
	Revoked   bool      `json:"revoked"`
	Media     *apiMedia `json:"media"`
	Reactions []struct {
		Emoji string `json:"emoji"`
		Count int    `json:"count"`
		Mine  bool   `json:"mine"`
	} `json:"reactions"`
}

// threadMessage waits for a stored message of the chat satisfying match.
func (s *stack) threadMessage(t *testing.T, token, number, id, what string, match func(apiThreadMessage) bool) apiThreadMessage {
	t.Helper()
	var thread struct {
		Messages []apiThreadMessage `json:"messages"`
	}
	var found apiThreadMessage
	testenv.Eventually(t, 30*time.Second, func() bool {
		s.do("GET", "/v1/conversations/"+number+"/messages?limit=100", token, nil, &thread)
		for _, m := range thread.Messages {
			if m.ID == id && match(m) {
				found = m
				return true
			}
		}
		return false
	}, "message %s never %s: %+v", id, what, thread.Messages)
	return found
}

// TestMediaEndToEnd: files both ways through the real whatsmeow client and
// the fake WhatsApp, and the rest of a conversation. The contact's phone
// sends an image (JSON, base64) and a voice note (multipart) through the sim
// endpoint: the API serves each with the sha256 the phone sent, seeks with
// Range, and lists the metadata. The mentorado uploads a document and sends
// it, replies and reacts: the contact's phone gets identical bytes, the
// quote and the reaction. The contact reacts, edits and deletes: the thread
// shows it.
func TestMediaEndToEnd(t *testing.T) {
	s := startStack(t)
	const acct, bia = "5511955550101", "5511912345678"
	m, tok := s.pairedMentorado(t, "Ana Mídia", acct)
	sim := func(verb string) string { return fmt.Sprintf("/v1/dev/sim/%d/%s", m, verb) }

	// An image, with the inline preview WhatsApp sends.
	img, thumb := testJPEG(t, 320, 240), testJPEG(t, 32, 24)
	var in struct {
		ID     string `json:"id"`
		SHA256 string `json:"sha256"`
	}
	if code := s.do("POST", sim("inbound"), s.admin, map[string]any{
		"phone": bia, "push_name": "Bia", "kind": "image", "data": img, "thumbnail": thumb,
		"caption": "Meu comprovante", "width": 320, "height": 240,
	}, &in); code != http.StatusAccepted || in.ID == "" {
		t.Fatalf("inbound image: %d %+v", code, in)
	}
	if in.SHA256 != sha256Hex(img) {
		t.Fatalf("sim reports sha256 %s, want %s", in.SHA256, sha256Hex(img))
	}
	resp, body := s.waitMedia(t, in.ID, tok)
	if got := sha256Hex(body); got != in.SHA256 {
		t.Fatalf("GET media: sha256 %s (%d bytes), the phone sent %s (%d bytes)", got, len(body), in.SHA256, len(img))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "image/jpeg" {
		t.Errorf("Content-Type %q, want image/jpeg", ct)
	}
	if et := resp.Header.Get("ETag"); !strings.Contains(et, in.SHA256) {
		t.Errorf("ETag %q does not name the sha256", et)
	}
	// Range: a slice of the file, 206.
	resp, part := s.get(t, "/v1/messages/"+in.ID+"/media", tok, "Range", "bytes=100-299")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, img[100:300]) {
		t.Fatalf("Range bytes=100-299: %d, %d bytes (equal: %t)", resp.StatusCode, len(part), bytes.Equal(part, img[100:300]))
	}
	if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 100-299/%d", len(img)) {
		t.Errorf("Content-Range %q", cr)
	}
	listed := s.threadMessage(t, tok, bia, in.ID, "stored with its media", func(x apiThreadMessage) bool {
		return x.Media != nil && x.Media.State == "stored"
	})
	if md := listed.Media; listed.Kind != "image" || listed.Caption != "Meu comprovante" || md.ID != in.SHA256 || md.MIME != "image/jpeg" || md.URL != "/v1/messages/"+in.ID+"/media" || md.ThumbnailURL == "" {
		t.Errorf("listed image %+v media %+v", listed, md)
	}
	if resp, b := s.get(t, listed.Media.ThumbnailURL, tok); resp.StatusCode != http.StatusOK || !bytes.Equal(b, thumb) {
		t.Errorf("thumbnail: %d, %d bytes, equal to the preview sent: %t", resp.StatusCode, len(b), bytes.Equal(b, thumb))
	}

	// A voice note, multipart.
	ogg := testOggOpus(100)
	var vn struct {
		ID     string `json:"id"`
		SHA256 string `json:"sha256"`
	}
	if code := s.multipart(t, sim("inbound"), s.admin, map[string]string{"phone": bia, "kind": "ptt", "seconds": "2"}, "file", "nota.ogg", ogg, &vn); code != http.StatusAccepted {
		t.Fatalf("inbound ptt: %d %+v", code, vn)
	}
	resp, body = s.waitMedia(t, vn.ID, tok)
	if sha256Hex(body) != sha256Hex(ogg) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "audio/ogg") {
		t.Fatalf("voice note: %s %q, want %s audio/ogg", sha256Hex(body), resp.Header.Get("Content-Type"), sha256Hex(ogg))
	}

	// Another tenant cannot read the file.
	var other struct {
		Token string `json:"token"`
	}
	s.do("POST", "/v1/admin/mentorados", s.admin, map[string]string{"name": "Outra"}, &other)
	if resp, _ := s.get(t, "/v1/messages/"+in.ID+"/media", other.Token); resp.StatusCode != http.StatusNotFound {
		t.Errorf("another tenant's GET media: %d, want 404", resp.StatusCode)
	}

	// A document from the mentorado: upload, send, the phone decrypts the
	// same bytes.
	pdf := testPDF()
	var up struct {
		MediaID string `json:"media_id"`
		MIME    string `json:"mime"`
		Size    int    `json:"size"`
	}
	if code := s.multipart(t, "/v1/media", tok, nil, "file", "proposta.pdf", pdf, &up); code != http.StatusCreated || up.MediaID != sha256Hex(pdf) || up.MIME != "application/pdf" || up.Size != len(pdf) {
		t.Fatalf("upload: %d %+v", code, up)
	}
	var sent struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", "/v1/messages", tok, map[string]string{
		"phone": bia, "kind": "document", "media_id": up.MediaID, "file_name": "proposta.pdf", "caption": "Segue a proposta",
	}, &sent); code != http.StatusCreated || sent.ID == "" {
		t.Fatalf("send document: %d %+v", code, sent)
	}
	doc := s.receivedBy(t, m, bia, "the document", func(r simReceivedMsg) bool { return r.ID == sent.ID })
	if doc.Kind != "document" || doc.FileName != "proposta.pdf" || doc.MediaSHA256 != sha256Hex(pdf) || doc.MediaError != "" {
		t.Fatalf("the phone got %+v, want the document with sha256 %s", doc, sha256Hex(pdf))
	}

	// A quoted reply and a reaction to the image.
	var reply struct {
		ID string `json:"id"`
	}
	if code := s.do("POST", "/v1/messages", tok, map[string]string{"phone": bia, "text": "Recebi, obrigada!", "reply_to": in.ID}, &reply); code != http.StatusCreated {
		t.Fatalf("reply: %d", code)
	}
	if r := s.receivedBy(t, m, bia, "the reply", func(r simReceivedMsg) bool { return r.ID == reply.ID }); r.ReplyTo != in.ID || r.Text != "Recebi, obrigada!" {
		t.Errorf("the phone got the reply as %+v, want a quote of %s", r, in.ID)
	}
	if code := s.do("POST", "/v1/messages/"+in.ID+"/reactions", tok, map[string]string{"emoji": "👍"}, nil); code != http.StatusOK {
		t.Fatalf("react: %d", code)
	}
	s.receivedBy(t, m, bia, "the reaction", func(r simReceivedMsg) bool {
		return r.Kind == "reaction" && r.Target == in.ID && r.Emoji == "👍"
	})
	s.threadMessage(t, tok, bia, in.ID, "shown with our reaction", func(x apiThreadMessage) bool {
		return len(x.Reactions) == 1 && x.Reactions[0].Emoji == "👍" && x.Reactions[0].Mine
	})

	// The contact reacts to our document, edits a text and deletes it.
	if code := s.do("POST", sim("react"), s.admin, map[string]string{"phone": bia, "target": sent.ID, "emoji": "❤️"}, nil); code != http.StatusAccepted {
		t.Fatalf("sim react: %d", code)
	}
	s.threadMessage(t, tok, bia, sent.ID, "shown with the contact's reaction", func(x apiThreadMessage) bool {
		return len(x.Reactions) == 1 && x.Reactions[0].Emoji == "❤️" && !x.Reactions[0].Mine && x.Reactions[0].Count == 1
	})
	var txt struct {
		ID string `json:"id"`
	}
	s.do("POST", sim("inbound"), s.admin, map[string]string{"phone": bia, "text": "Qual o valr?"}, &txt)
	if code := s.do("POST", sim("edit"), s.admin, map[string]string{"phone": bia, "target": txt.ID, "text": "Qual o valor?"}, nil); code != http.StatusAccepted {
		t.Fatalf("sim edit: %d", code)
	}
	s.threadMessage(t, tok, bia, txt.ID, "edited", func(x apiThreadMessage) bool { return x.Edited && x.Text == "Qual o valor?" })
	if code := s.do("POST", sim("revoke"), s.admin, map[string]string{"phone": bia, "target": txt.ID}, nil); code != http.StatusAccepted {
		t.Fatalf("sim revoke: %d", code)
	}
	s.threadMessage(t, tok, bia, txt.ID, "revoked", func(x apiThreadMessage) bool { return x.Revoked && x.Text == "" })

	// Opening the chat marks it read.
	var read struct {
		Marked int `json:"marked"`
	}
	if code := s.do("POST", "/v1/conversations/"+bia+"/read", tok, nil, &read); code != http.StatusOK || read.Marked < 1 {
		t.Fatalf("mark read: %d %+v", code, read)
	}
	var convs struct {
		Conversations []struct {
			Phone  string `json:"phone"`
			Unread int    `json:"unread"`
		} `json:"conversations"`
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		s.do("GET", "/v1/conversations", tok, nil, &convs)
		return len(convs.Conversations) == 1 && convs.Conversations[0].Unread == 0
	}, "unread never cleared: %+v", convs)
}
