package zapi

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/media"
	"github.com/zapbus/zapbus/internal/provider"
)

// QRLifetime is how long a QR code is good for: WhatsApp rotates it every
// 20 s (https://developer.z-api.io/en/instance/qrcode).
const QRLifetime = 20 * time.Second

// statusAnswer is GET status.
type statusAnswer struct {
	Connected           bool   `json:"connected"`
	Error               string `json:"error"`
	SmartphoneConnected bool   `json:"smartphoneConnected"`
}

// Status asks Z-API for the instance's state: connected (with the number,
// from GET device), or disconnected with Z-API's reason ("You are not
// connected.": the number must be paired again, by QR or phone code).
func (d *Driver) Status(ctx context.Context, acc provider.Account) (event.StatusReply, error) {
	var st statusAnswer
	if err := d.callLenient(ctx, acc, http.MethodGet, "status", &st); err != nil {
		return event.StatusReply{}, err
	}
	now := d.now().UTC()
	if !st.Connected {
		d.rememberPhone(acc, "")
		reason := strings.TrimSpace(scrub(acc.ZAPI, event.Clean(st.Error)))
		if reason == "" {
			reason = "not connected"
		}
		return event.StatusReply{Status: event.StatusDisconnected, Since: now, Reason: "z-api: " + reason}, nil
	}
	r := event.StatusReply{Status: event.StatusConnected, Since: now}
	if !st.SmartphoneConnected {
		r.Reason = "z-api: the phone is not connected to the internet"
	}
	if p, err := d.ownPhone(ctx, acc); err == nil {
		r.Phone, r.JID = p, p+"@s.whatsapp.net"
	} else {
		d.log.Warn().Int64("mentorado", acc.Mentorado).Err(err).Msg("z-api device lookup failed")
	}
	return r, nil
}

// Connect reports the state and, when the instance is not connected,
// starts pairing: by phone code (req.Method phone; the code is in the
// reply) or by QR (status qr; the gateway publishes QR's codes).
func (d *Driver) Connect(ctx context.Context, acc provider.Account, req event.ConnectRequest) (event.StatusReply, error) {
	st, err := d.Status(ctx, acc)
	if err != nil || st.Status == event.StatusConnected {
		return st, err
	}
	if req.Method == event.ConnectPhone {
		code, err := d.PairingCode(ctx, acc, req.Phone)
		if err != nil {
			return event.StatusReply{}, err
		}
		return event.StatusReply{Status: event.StatusPairing, Since: d.now().UTC(), PairingCode: code}, nil
	}
	return event.StatusReply{Status: event.StatusQR, Since: d.now().UTC(), Reason: st.Reason}, nil
}

// valueAnswer is the {"value": …} answer of qr-code, phone-code and the
// instance calls.
type valueAnswer struct {
	Value     any    `json:"value"`
	Connected bool   `json:"connected"`
	Error     string `json:"error"`
}

// alreadyConnected reports whether the answer says the instance is paired.
func (v valueAnswer) alreadyConnected() bool {
	return v.Connected || strings.Contains(strings.ToLower(v.Error), "already connected")
}

func (v valueAnswer) str() string {
	s, _ := v.Value.(string)
	return strings.TrimSpace(s)
}

// QR returns the string the instance's current QR code encodes. Z-API
// answers already_paired when the instance is connected.
func (d *Driver) QR(ctx context.Context, acc provider.Account) (string, time.Time, error) {
	var v valueAnswer
	if err := d.callLenient(ctx, acc, http.MethodGet, "qr-code", &v); err != nil {
		return "", time.Time{}, err
	}
	code := v.str()
	switch {
	case v.alreadyConnected():
		return "", time.Time{}, event.NewCommandError(event.CodeAlreadyPaired, "the z-api instance is already connected")
	case code == "":
		return "", time.Time{}, event.NewCommandError(event.CodeProviderError, "z-api answered no QR code")
	case strings.HasPrefix(code, "data:image"):
		// qr-code/image's answer: a picture, not the string to encode.
		return "", time.Time{}, event.NewCommandError(event.CodeProviderError, "z-api answered a QR image instead of the QR code's text")
	}
	return code, d.now().UTC().Add(QRLifetime), nil
}

// PairingCode asks Z-API for a code to type on the phone (GET
// phone-code/{phone}).
func (d *Driver) PairingCode(ctx context.Context, acc provider.Account, phone string) (string, error) {
	p := validPhone(phone)
	if p == "" || p != phone {
		return "", event.NewCommandError(event.CodeInvalidPhone, "phone must be E.164 digits")
	}
	var v valueAnswer
	if err := d.callLenient(ctx, acc, http.MethodGet, "phone-code/"+url.PathEscape(p), &v); err != nil {
		return "", err
	}
	switch {
	case v.alreadyConnected():
		return "", event.NewCommandError(event.CodeAlreadyPaired, "the z-api instance is already connected")
	case v.str() == "":
		return "", event.NewCommandError(event.CodeProviderError, "z-api answered no pairing code")
	}
	return v.str(), nil
}

// Disconnect unpairs the instance (GET disconnect): Z-API has no way to
// stop without unpairing; connecting again needs a new QR scan.
func (d *Driver) Disconnect(ctx context.Context, acc provider.Account) (event.StatusReply, error) {
	if err := d.callLenient(ctx, acc, http.MethodGet, "disconnect", nil); err != nil {
		return event.StatusReply{}, err
	}
	d.rememberPhone(acc, "")
	return event.StatusReply{Status: event.StatusDisconnected, Since: d.now().UTC(), Reason: "disconnected through z-api; connect pairs the number again"}, nil
}

// Logout is Disconnect: for Z-API, disconnecting is unpairing.
func (d *Driver) Logout(ctx context.Context, acc provider.Account) (event.StatusReply, error) {
	r, err := d.Disconnect(ctx, acc)
	if err == nil {
		r.Reason = "logged out: z-api unpaired the number; connect pairs it again"
	}
	return r, err
}

// sendAnswer is the answer of every send endpoint.
type sendAnswer struct {
	ZaapID    string `json:"zaapId"`
	MessageID string `json:"messageId"`
	ID        string `json:"id"`
}

func (a sendAnswer) waid() string {
	if a.MessageID != "" {
		return a.MessageID
	}
	return a.ID
}

// Send sends text (send-text) or a file (send-image, send-video,
// send-audio, send-document/{ext}, send-sticker) as a base64 data URI.
// Templates are Meta's: not_supported.
func (d *Driver) Send(ctx context.Context, acc provider.Account, req provider.SendRequest) (*event.Message, error) {
	kind := req.Kind
	if kind == "" {
		kind = event.KindText
	}
	if kind == event.KindTemplate {
		return nil, event.NewCommandError(event.CodeNotSupported, "z-api sends no message templates (they are Meta's)")
	}
	to := validPhone(req.To)
	if to == "" {
		return nil, event.NewCommandError(event.CodeInvalidPhone, "z-api sends to phones only")
	}
	body := map[string]any{"phone": to}
	if req.ReplyToID != "" {
		body["messageId"] = req.ReplyToID
	}
	var endpoint string
	m := &event.Message{Kind: kind, ReplyToID: req.ReplyToID, ClientID: req.ClientID}
	switch {
	case kind == event.KindText:
		endpoint, body["message"], m.Text = "send-text", req.Text, req.Text
	case kind.IsMedia():
		if req.Media == nil || len(req.Media.Data) == 0 {
			return nil, event.NewCommandError(event.CodeMediaNotFound, "no file to send")
		}
		uri := "data:" + req.Media.MIME + ";base64," + base64.StdEncoding.EncodeToString(req.Media.Data)
		m.Caption = req.Caption
		m.Media = &event.Media{ID: req.Media.ID, MIME: req.Media.MIME, Size: req.Media.Size, FileName: req.FileName}
		switch kind {
		case event.KindImage:
			endpoint, body["image"] = "send-image", uri
		case event.KindVideo:
			endpoint, body["video"] = "send-video", uri
		case event.KindAudio, event.KindPTT:
			endpoint, body["audio"] = "send-audio", uri
			if kind == event.KindPTT {
				body["waveform"] = true
			}
		case event.KindDocument:
			endpoint, body["document"] = "send-document/"+url.PathEscape(docExt(req.FileName, req.Media.MIME)), uri
			if req.FileName != "" {
				body["fileName"] = req.FileName
			}
		case event.KindSticker:
			endpoint, body["sticker"] = "send-sticker", uri
		}
		if req.Caption != "" {
			body["caption"] = req.Caption
		}
	default:
		return nil, event.NewCommandError(event.CodeNotSupported, "z-api cannot send a %s message", kind)
	}
	own, err := d.ownPhone(ctx, acc)
	if err != nil {
		return nil, err
	}
	var a sendAnswer
	if err := d.call(ctx, acc, http.MethodPost, endpoint, body, &a); err != nil {
		return nil, err
	}
	if a.waid() == "" {
		return nil, event.NewCommandError(event.CodeProviderError, "z-api accepted the message but answered no messageId")
	}
	m.WAID, m.ChatJID, m.SenderJID, m.Phone = a.waid(), to+"@s.whatsapp.net", own+"@s.whatsapp.net", to
	m.Direction, m.Status, m.Timestamp = event.DirectionOut, event.MessageSent, d.now().UTC()
	return m, nil
}

// docExt is the extension send-document/{extension} wants: the file
// name's, else the MIME type's, else "bin".
func docExt(fileName, mimeType string) string {
	if e := strings.TrimPrefix(strings.ToLower(path.Ext(fileName)), "."); e != "" && len(e) <= 8 && !strings.ContainsAny(e, "/?#%") {
		return e
	}
	if exts, _ := mime.ExtensionsByType(mimeType); len(exts) > 0 {
		return strings.TrimPrefix(exts[0], ".")
	}
	return "bin"
}

// chatPhone is the phone Z-API addresses a chat by: digits for a user,
// "<id>-group" for a group.
func chatPhone(chatJID string) (string, error) {
	user, server, ok := strings.Cut(chatJID, "@")
	switch {
	case ok && server == "s.whatsapp.net" && validPhone(user) == user && user != "":
		return user, nil
	case ok && server == "g.us" && user != "":
		return user + "-group", nil
	}
	return "", event.NewCommandError(event.CodeInvalidChat, "z-api addresses phone and group chats only")
}

// action is a message for an action on another message (reaction, edit,
// revoke) as sent.
func (d *Driver) action(ctx context.Context, acc provider.Account, req event.ActionRequest, kind event.Kind, text string, a sendAnswer) (*event.Message, error) {
	own, err := d.ownPhone(ctx, acc)
	if err != nil {
		return nil, err
	}
	m := &event.Message{
		WAID: a.waid(), ChatJID: req.ChatJID, SenderJID: own + "@s.whatsapp.net",
		Direction: event.DirectionOut, Kind: kind, Text: text, TargetID: req.MessageID,
		Timestamp: d.now().UTC(), Status: event.MessageSent, ClientID: req.ClientID,
	}
	if strings.HasSuffix(req.ChatJID, "@s.whatsapp.net") {
		m.Phone = validPhone(strings.TrimSuffix(req.ChatJID, "@s.whatsapp.net"))
	}
	if m.WAID == "" {
		// Z-API answers no id for some actions (delete: 204): the action
		// is named after its target, so a retry keeps the same id.
		m.WAID = string(kind) + "-" + req.MessageID
	}
	return m, nil
}

// React reacts with req.Emoji (send-reaction) or removes the reaction
// (send-remove-reaction).
func (d *Driver) React(ctx context.Context, acc provider.Account, req event.ActionRequest) (*event.Message, error) {
	ph, err := chatPhone(req.ChatJID)
	if err != nil {
		return nil, err
	}
	var a sendAnswer
	body := map[string]any{"phone": ph, "messageId": req.MessageID}
	endpoint := "send-remove-reaction"
	if req.Emoji != "" {
		endpoint, body["reaction"] = "send-reaction", req.Emoji
	}
	if err := d.call(ctx, acc, http.MethodPost, endpoint, body, &a); err != nil {
		return nil, err
	}
	return d.action(ctx, acc, req, event.KindReaction, req.Emoji, a)
}

// Edit edits one of our text messages (send-text with editMessageId).
func (d *Driver) Edit(ctx context.Context, acc provider.Account, req event.ActionRequest) (*event.Message, error) {
	if !req.FromMe {
		return nil, event.NewCommandError(event.CodeNotEditable, "only messages you sent can be edited")
	}
	ph, err := chatPhone(req.ChatJID)
	if err != nil {
		return nil, err
	}
	var a sendAnswer
	if err := d.call(ctx, acc, http.MethodPost, "send-text", map[string]any{"phone": ph, "message": req.Text, "editMessageId": req.MessageID}, &a); err != nil {
		return nil, err
	}
	return d.action(ctx, acc, req, event.KindEdit, req.Text, a)
}

// Revoke deletes a message for everyone (DELETE messages).
func (d *Driver) Revoke(ctx context.Context, acc provider.Account, req event.ActionRequest) (*event.Message, error) {
	ph, err := chatPhone(req.ChatJID)
	if err != nil {
		return nil, err
	}
	q := url.Values{"messageId": {req.MessageID}, "phone": {ph}, "owner": {fmt.Sprint(req.FromMe)}}
	if err := d.call(ctx, acc, http.MethodDelete, "messages?"+q.Encode(), nil, nil); err != nil {
		return nil, err
	}
	return d.action(ctx, acc, req, event.KindRevoke, "", sendAnswer{})
}

// MarkRead marks each message read (read-message, one call per message).
func (d *Driver) MarkRead(ctx context.Context, acc provider.Account, req event.ReadRequest) error {
	ph, err := chatPhone(req.ChatJID)
	if err != nil {
		return err
	}
	for _, m := range req.Messages {
		if err := d.call(ctx, acc, http.MethodPost, "read-message", map[string]any{"phone": ph, "messageId": m.ID}, nil); err != nil {
			return err
		}
	}
	return nil
}

// FetchMedia downloads a received file from the URL Z-API gave in the
// webhook, with Config.MediaHTTP (which by default refuses non-public
// addresses), refusing files over max bytes.
func (d *Driver) FetchMedia(ctx context.Context, acc provider.Account, ref provider.MediaRef, max int64) ([]byte, string, error) {
	u, err := url.Parse(ref.URL)
	if err != nil || ref.URL == "" || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return nil, "", event.NewCommandError(event.CodeMediaNotFound, "z-api gave no usable URL for the file of %s", event.Clean(ref.WAID))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", event.NewCommandError(event.CodeMediaNotFound, "bad media URL")
	}
	resp, err := d.mediaHTTP.Do(req)
	if err != nil {
		return nil, "", event.NewCommandError(event.CodeUnavailable, "z-api media download failed: %s", transportError(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone || resp.StatusCode == http.StatusForbidden:
		return nil, "", event.NewCommandError(event.CodeMediaNotFound, "z-api no longer has the file (%d; files are kept 30 days)", resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
		return nil, "", event.NewCommandError(event.CodeUnavailable, "z-api media download answered %d", resp.StatusCode)
	case max > 0 && resp.ContentLength > max:
		return nil, "", tooLarge("file of %d bytes, limit %d", resp.ContentLength, max)
	}
	rd := io.Reader(resp.Body)
	if max > 0 {
		rd = io.LimitReader(resp.Body, max+1)
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, "", event.NewCommandError(event.CodeUnavailable, "z-api media download failed: %s", transportError(err))
	}
	if max > 0 && int64(len(data)) > max {
		return nil, "", tooLarge("file over %d bytes", max)
	}
	typ := ref.MIME
	if typ == "" {
		typ = resp.Header.Get("Content-Type")
	}
	if typ == "" {
		typ = http.DetectContentType(data)
	}
	return data, typ, nil
}

// tooLarge is media_too_large that is also media.ErrTooLarge, which the
// gateway reports as too_large rather than a failed download.
func tooLarge(format string, args ...any) error {
	return errors.Join(event.NewCommandError(event.CodeMediaTooLarge, format, args...), media.ErrTooLarge)
}

// SetWebhooks points every webhook of the instance (received, sent by me,
// status, connected, disconnected, presence) at webhookURL with PUT
// update-every-webhooks, notifySentByMe on, so messages sent from the phone
// reach zapbus too. webhookURL holds the webhook secret: it goes only in
// the request body, never in an error or a log. Z-API refuses URLs that
// are not HTTPS.
func (d *Driver) SetWebhooks(ctx context.Context, acc provider.Account, webhookURL string) error {
	var v valueAnswer
	if err := d.call(ctx, acc, http.MethodPut, "update-every-webhooks", map[string]any{"value": webhookURL, "notifySentByMe": true}, &v); err != nil {
		return err
	}
	if ok, isBool := v.Value.(bool); isBool && !ok {
		return event.NewCommandError(event.CodeProviderError, "z-api did not update the instance's webhooks")
	}
	return nil
}
