package meta

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"slices"
	"strings"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

// sendAnswer is the Messages API's answer.
type sendAnswer struct {
	Contacts []struct {
		Input string `json:"input"`
		WAID  string `json:"wa_id"`
	} `json:"contacts"`
	Messages []struct {
		ID string `json:"id"`
	} `json:"messages"`
}

// Send sends one message: text, a template, or a media file (uploaded to
// Meta first, then sent by its id).
func (d *Driver) Send(ctx context.Context, acc provider.Account, req provider.SendRequest) (*event.Message, error) {
	c, err := creds(acc)
	if err != nil {
		return nil, err
	}
	if !validPhone(req.To) {
		return nil, event.NewCommandError(event.CodeInvalidPhone, "meta sends to phone numbers (8 to 15 digits); groups and LIDs are WhatsApp Web only")
	}
	kind := req.Kind
	if kind == "" {
		kind = event.KindText
	}
	body := map[string]any{"messaging_product": "whatsapp", "recipient_type": "individual", "to": req.To}
	replyTo := firstNonEmpty(req.ReplyToID, req.ReplyTo)
	if replyTo != "" {
		body["context"] = map[string]string{"message_id": replyTo}
	}
	msg := &event.Message{Direction: event.DirectionOut, Status: event.MessageSent, Kind: kind, ReplyToID: replyTo, ClientID: req.ClientID}
	switch {
	case kind == event.KindText:
		body["type"] = "text"
		body["text"] = map[string]any{"preview_url": false, "body": req.Text}
		msg.Text = req.Text
	case kind == event.KindTemplate:
		t := req.Template
		if t == nil {
			return nil, event.NewCommandError(event.CodeBadRequest, "a template send needs template {name, language, params}")
		}
		tpl := map[string]any{"name": t.Name, "language": map[string]string{"code": t.Language}}
		if len(t.Params) > 0 {
			params := make([]map[string]string, len(t.Params))
			for i, p := range t.Params {
				params[i] = map[string]string{"type": "text", "text": p}
			}
			tpl["components"] = []map[string]any{{"type": "body", "parameters": params}}
		}
		body["type"] = "template"
		body["template"] = tpl
		msg.Text = t.Text()
	case kind.IsMedia():
		if req.Media == nil || len(req.Media.Data) == 0 {
			return nil, event.NewCommandError(event.CodeBadRequest, "a %s send needs its file", kind)
		}
		id, err := d.upload(ctx, c, req.Media, req.FileName)
		if err != nil {
			return nil, err
		}
		typ := string(kind)
		if kind == event.KindPTT {
			typ = "audio" // an OGG/Opus audio shows as a voice message
		}
		obj := map[string]string{"id": id}
		if req.Caption != "" && (kind == event.KindImage || kind == event.KindVideo || kind == event.KindDocument) {
			obj["caption"] = req.Caption
			msg.Caption = req.Caption
		}
		if kind == event.KindDocument && req.FileName != "" {
			obj["filename"] = req.FileName
		}
		body["type"] = typ
		body[typ] = obj
		msg.Media = &event.Media{ID: req.Media.ID, MIME: req.Media.MIME, Size: req.Media.Size, FileName: req.FileName}
		if msg.Media.Size == 0 {
			msg.Media.Size = int64(len(req.Media.Data))
		}
	default:
		return nil, event.NewCommandError(event.CodeNotSupported, "meta cannot send a %s message", kind)
	}
	return d.post(ctx, c, req.To, body, msg)
}

// post sends body to the Messages API and completes msg with the answer:
// the wamid, and the chat of the wa_id Meta resolved the number to (it
// may differ from the number given, e.g. Brazil's ninth digit; inbound
// messages of that user come from that wa_id).
func (d *Driver) post(ctx context.Context, c *provider.MetaCredentials, to string, body map[string]any, msg *event.Message) (*event.Message, error) {
	var ans sendAnswer
	if err := d.postJSON(ctx, c, d.base+"/"+pathEscape(c.PhoneNumberID)+"/messages", body, &ans); err != nil {
		return nil, err
	}
	if len(ans.Messages) == 0 || ans.Messages[0].ID == "" {
		return nil, event.NewCommandError(event.CodeProviderError, "meta accepted the message but returned no id")
	}
	phone := to
	if len(ans.Contacts) > 0 && validPhone(ans.Contacts[0].WAID) {
		phone = ans.Contacts[0].WAID
	}
	msg.WAID = ans.Messages[0].ID
	msg.ChatJID = phone + "@s.whatsapp.net"
	msg.Phone = phone
	msg.SenderJID = ownJID(c, "")
	msg.Timestamp = d.now().UTC()
	return msg, nil
}

// upload stores f with Meta (POST /{phone_number_id}/media, multipart
// file, type, messaging_product) and returns its media id.
func (d *Driver) upload(ctx context.Context, c *provider.MetaCredentials, f *provider.MediaFile, fileName string) (string, error) {
	mimeType := f.MIME
	if mimeType == "" {
		mimeType = "application/octet-stream"
	}
	name := fileName
	if name == "" {
		name = "file"
	}
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	_ = w.WriteField("messaging_product", "whatsapp")
	_ = w.WriteField("type", mimeType)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, strings.NewReplacer("\r", "", "\n", "", `"`, "").Replace(name)))
	h.Set("Content-Type", mimeType)
	part, err := w.CreatePart(h)
	if err != nil {
		return "", fmt.Errorf("meta: build upload: %w", err)
	}
	if _, err := part.Write(f.Data); err != nil {
		return "", fmt.Errorf("meta: build upload: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("meta: build upload: %w", err)
	}
	var ans struct {
		ID string `json:"id"`
	}
	data, _, err := d.do(ctx, c, call{method: "POST", url: d.base + "/" + pathEscape(c.PhoneNumberID) + "/media", body: buf.Bytes(), contentType: w.FormDataContentType()})
	if err != nil {
		return "", err
	}
	if err := jsonUnmarshal(data, &ans); err != nil || ans.ID == "" {
		return "", event.NewCommandError(event.CodeProviderError, "meta: media upload answered no id")
	}
	return ans.ID, nil
}

// chatPhone is the phone of a direct chat JID; groups and LIDs are not
// reachable through the Cloud API.
func chatPhone(chat string) (string, error) {
	p, ok := strings.CutSuffix(chat, "@s.whatsapp.net")
	if !ok || !validPhone(p) {
		return "", event.NewCommandError(event.CodeNotSupported, "meta reaches only phone chats (<digits>@s.whatsapp.net), not %q", chat)
	}
	return p, nil
}

// React sends (or with "" removes) the mentorado's reaction to a message.
func (d *Driver) React(ctx context.Context, acc provider.Account, req event.ActionRequest) (*event.Message, error) {
	c, err := creds(acc)
	if err != nil {
		return nil, err
	}
	to, err := chatPhone(req.ChatJID)
	if err != nil {
		return nil, err
	}
	if req.MessageID == "" {
		return nil, event.NewCommandError(event.CodeBadRequest, "message_id is required")
	}
	body := map[string]any{"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "reaction",
		"reaction": map[string]string{"message_id": req.MessageID, "emoji": req.Emoji}}
	msg := &event.Message{Direction: event.DirectionOut, Status: event.MessageSent, Kind: event.KindReaction,
		TargetID: req.MessageID, Text: req.Emoji, ClientID: req.ClientID}
	return d.post(ctx, c, to, body, msg)
}

// MarkRead marks the chat read up to its newest listed message: Meta
// marks every earlier message of the chat read with it.
func (d *Driver) MarkRead(ctx context.Context, acc provider.Account, req event.ReadRequest) error {
	c, err := creds(acc)
	if err != nil {
		return err
	}
	if len(req.Messages) == 0 {
		return nil
	}
	newest := slices.MaxFunc(req.Messages, func(a, b event.ReadRef) int { return a.SentAt.Compare(b.SentAt) })
	// MaxFunc returns the first of equal maxima; prefer the last listed.
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].SentAt.Equal(newest.SentAt) {
			newest = req.Messages[i]
			break
		}
	}
	if newest.ID == "" {
		return event.NewCommandError(event.CodeBadRequest, "messages[].id is required")
	}
	body := map[string]any{"messaging_product": "whatsapp", "status": "read", "message_id": newest.ID}
	return d.postJSON(ctx, c, d.base+"/"+pathEscape(c.PhoneNumberID)+"/messages", body, nil)
}
