package metafake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
)

// Number is one business number of the fake: it builds webhook
// deliveries for its phone_number_id in the shapes of Meta's examples
// (internal/provider/meta/testdata).
type Number struct {
	s   *Server
	acc Account
	seq atomic.Int64
}

// Account returns the number's configuration.
func (n *Number) Account() Account { return n.acc }

func (n *Number) stamp() string {
	n.s.mu.Lock()
	now := n.s.now
	n.s.mu.Unlock()
	return strconv.FormatInt(now().Unix(), 10)
}

// delivery wraps one messages change in Meta's envelope.
func (n *Number) delivery(value map[string]any) []byte {
	v := map[string]any{"messaging_product": "whatsapp",
		"metadata": map[string]string{"display_phone_number": n.acc.DisplayPhone, "phone_number_id": n.acc.PhoneNumberID}}
	for k, x := range value {
		v[k] = x
	}
	b, _ := json.Marshal(map[string]any{"object": "whatsapp_business_account",
		"entry": []any{map[string]any{"id": n.acc.WABAID, "changes": []any{map[string]any{"value": v, "field": "messages"}}}}})
	return b
}

func (n *Number) inbound(from, name string, msg map[string]any) (string, []byte) {
	wamid := WAMID(from, fmt.Sprintf("IN%s%08d", n.acc.PhoneNumberID[max(0, len(n.acc.PhoneNumberID)-6):], n.seq.Add(1)))
	msg["from"], msg["id"], msg["timestamp"] = from, wamid, n.stamp()
	if name == "" { // Meta always names the sender: its WhatsApp profile name
		name = "Cliente " + from[max(0, len(from)-4):]
	}
	value := map[string]any{"messages": []any{msg},
		"contacts": []any{map[string]any{"profile": map[string]string{"name": name}, "wa_id": from}}}
	return wamid, n.delivery(value)
}

// InboundText is a text message from phone from (digits) with profile
// name name.
func (n *Number) InboundText(from, name, text string) (wamid string, body []byte) {
	return n.inbound(from, name, map[string]any{"type": "text", "text": map[string]string{"body": text}})
}

// InboundReply is a text message quoting message replyTo.
func (n *Number) InboundReply(from, name, text, replyTo string) (wamid string, body []byte) {
	return n.inbound(from, name, map[string]any{"type": "text", "text": map[string]string{"body": text},
		"context": map[string]string{"from": n.acc.DisplayPhone, "id": replyTo}})
}

// InboundReaction is from's reaction to message target ("" removes it).
func (n *Number) InboundReaction(from, name, target, emoji string) (wamid string, body []byte) {
	r := map[string]string{"message_id": target}
	if emoji != "" {
		r["emoji"] = emoji
	}
	return n.inbound(from, name, map[string]any{"type": "reaction", "reaction": r})
}

// testJPEG is a small JPEG-looking file (SOI, JFIF APP0, EOI) with a
// varying comment so every image is a distinct file.
func testJPEG(i int64) []byte {
	b := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00}
	b = append(b, []byte(fmt.Sprintf("metafake image %d", i))...)
	return append(b, 0xFF, 0xD9)
}

// InboundImage is an image message with caption from "Cliente <last 4
// digits>" (every builder given no name uses that); the fake serves the
// image (GET /{media-id}), so the driver can fetch it. Its id and bytes
// are Uploaded(mediaID) — the id is the message's image.id.
func (n *Number) InboundImage(from, caption string) (wamid string, body []byte) {
	wamid, _, body = n.InboundMedia(from, "", "image", "image/jpeg", testJPEG(n.seq.Add(1)), caption, "")
	return wamid, body
}

// InboundMedia is a media message of type typ (image, video, audio,
// document, sticker; "voice" is an audio with voice: true) carrying data,
// which the fake then serves under the returned media id.
func (n *Number) InboundMedia(from, name, typ, mimeType string, data []byte, caption, filename string) (wamid, mediaID string, body []byte) {
	mediaID = n.s.ServeMedia(mimeType, data)
	sum := sha256.Sum256(data)
	obj := map[string]any{"id": mediaID, "mime_type": mimeType, "sha256": base64.StdEncoding.EncodeToString(sum[:])}
	if typ == "voice" {
		typ, obj["voice"] = "audio", true
	}
	if caption != "" {
		obj["caption"] = caption
	}
	if filename != "" {
		obj["filename"] = filename
	}
	wamid, body = n.inbound(from, name, map[string]any{"type": typ, typ: obj})
	return wamid, mediaID, body
}

// Status is a status update of a message the business sent: "sent",
// "delivered", "read" or "failed" (failed with code 131026, message
// undeliverable).
func (n *Number) Status(wamid, recipient, status string) []byte {
	if status == "failed" {
		return n.StatusFailed(wamid, recipient, 131026, "Message undeliverable")
	}
	st := map[string]any{"id": wamid, "status": status, "timestamp": n.stamp(), "recipient_id": recipient}
	if status != "read" {
		st["conversation"] = map[string]any{"id": "a75d17ad06104c51166f948319b03c6a", "origin": map[string]string{"type": "service"}}
		st["pricing"] = map[string]any{"billable": true, "pricing_model": "PMP", "category": "service"}
	}
	return n.delivery(map[string]any{"statuses": []any{st}})
}

// StatusFailed is a failed status with Meta error code and title.
func (n *Number) StatusFailed(wamid, recipient string, code int, title string) []byte {
	st := map[string]any{"id": wamid, "status": "failed", "timestamp": n.stamp(), "recipient_id": recipient,
		"errors": []any{map[string]any{"code": code, "title": title, "message": title,
			"error_data": map[string]string{"details": title + "."},
			"href":       "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}}}
	return n.delivery(map[string]any{"statuses": []any{st}})
}

// Sign is Meta's X-Hub-Signature-256 of body under appSecret.
func Sign(appSecret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Deliver POSTs body to url signed with appSecret, as Meta does, and
// returns the HTTP status.
func (s *Server) Deliver(ctx context.Context, url, appSecret string, body []byte) (int, error) {
	return post(ctx, url, Sign(appSecret, body), body)
}

// DeliverUnsigned POSTs body without X-Hub-Signature-256.
func (s *Server) DeliverUnsigned(ctx context.Context, url string, body []byte) (int, error) {
	return post(ctx, url, "", body)
}

// DeliverBadSignature POSTs body with a signature made with another
// secret.
func (s *Server) DeliverBadSignature(ctx context.Context, url string, body []byte) (int, error) {
	return post(ctx, url, Sign("not-the-app-secret", body), body)
}

func post(ctx context.Context, url, sig string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "facebookexternalua")
	if sig != "" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
