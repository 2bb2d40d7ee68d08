package meta

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

// SignatureHeader carries Meta's signature of a webhook delivery:
// "sha256=" + hex(HMAC-SHA256(app secret, raw body)).
const SignatureHeader = "X-Hub-Signature-256"

// Sign returns the X-Hub-Signature-256 value of body under appSecret (as
// Meta computes it; the fake and tests sign with it).
func Sign(appSecret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// checkSignature verifies header against body in constant time.
func checkSignature(appSecret, header string, body []byte) error {
	if appSecret == "" {
		return fmt.Errorf("%w: the account has no app secret to check %s with", provider.ErrUnauthenticated, SignatureHeader)
	}
	if header == "" {
		return fmt.Errorf("%w: %s missing", provider.ErrUnauthenticated, SignatureHeader)
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	got, err := hex.DecodeString(hexSig)
	if !ok || err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%w: %s is not sha256=<64 hex digits>", provider.ErrUnauthenticated, SignatureHeader)
	}
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%w: %s does not match the body (wrong app secret or altered body)", provider.ErrUnauthenticated, SignatureHeader)
	}
	return nil
}

// VerifyWebhook answers Meta's subscription handshake: hub.mode subscribe
// with the account's verify token gets hub.challenge back.
func (d *Driver) VerifyWebhook(acc provider.Account, query map[string][]string) (string, error) {
	get := func(k string) string {
		if v := query[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	if acc.Meta == nil || acc.Meta.VerifyToken == "" {
		return "", fmt.Errorf("%w: the account has no verify token", provider.ErrUnauthenticated)
	}
	if get("hub.mode") != "subscribe" {
		return "", fmt.Errorf("%w: hub.mode is not subscribe", provider.ErrUnauthenticated)
	}
	// Compare digests so the comparison takes the same time whatever the
	// lengths.
	want, got := sha256.Sum256([]byte(acc.Meta.VerifyToken)), sha256.Sum256([]byte(get("hub.verify_token")))
	if subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		return "", fmt.Errorf("%w: hub.verify_token does not match", provider.ErrUnauthenticated)
	}
	ch := get("hub.challenge")
	if ch == "" || len(ch) > 256 || strings.TrimFunc(ch, func(r rune) bool {
		return r == '-' || r == '_' || r == '.' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
	}) != "" {
		return "", fmt.Errorf("%w: hub.challenge missing or not a plain token", provider.ErrBadPayload)
	}
	return ch, nil
}

// Webhook payload (https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages).
type (
	whPayload struct {
		Object string `json:"object"`
		Entry  []struct {
			ID      string `json:"id"`
			Changes []struct {
				Field string          `json:"field"`
				Value json.RawMessage `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	whValue struct {
		MessagingProduct string `json:"messaging_product"`
		Metadata         struct {
			DisplayPhoneNumber string `json:"display_phone_number"`
			PhoneNumberID      string `json:"phone_number_id"`
		} `json:"metadata"`
		Contacts []whContact  `json:"contacts"`
		Messages []whMessage  `json:"messages"`
		Statuses []whStatus   `json:"statuses"`
		Errors   []whErrorObj `json:"errors"`
	}
	whContact struct {
		Profile struct {
			Name string `json:"name"`
		} `json:"profile"`
		WAID string `json:"wa_id"`
	}
	whMessage struct {
		From      string `json:"from"`
		ID        string `json:"id"`
		Timestamp string `json:"timestamp"`
		Type      string `json:"type"`
		Context   *struct {
			From string `json:"from"`
			ID   string `json:"id"`
		} `json:"context"`
		Text *struct {
			Body string `json:"body"`
		} `json:"text"`
		Image    *whMedia `json:"image"`
		Video    *whMedia `json:"video"`
		Audio    *whMedia `json:"audio"`
		Document *whMedia `json:"document"`
		Sticker  *whMedia `json:"sticker"`
		Reaction *struct {
			MessageID string `json:"message_id"`
			Emoji     string `json:"emoji"`
		} `json:"reaction"`
		Location *struct {
			Latitude  float64 `json:"latitude"`
			Longitude float64 `json:"longitude"`
			Name      string  `json:"name"`
			Address   string  `json:"address"`
		} `json:"location"`
		Contacts []struct {
			Name struct {
				FormattedName string `json:"formatted_name"`
				FirstName     string `json:"first_name"`
				LastName      string `json:"last_name"`
			} `json:"name"`
		} `json:"contacts"`
		Interactive *struct {
			Type        string `json:"type"`
			ButtonReply *struct {
				ID    string `json:"id"`
				Title string `json:"title"`
			} `json:"button_reply"`
			ListReply *struct {
				ID          string `json:"id"`
				Title       string `json:"title"`
				Description string `json:"description"`
			} `json:"list_reply"`
			NFMReply *struct {
				Name string `json:"name"`
				Body string `json:"body"`
			} `json:"nfm_reply"`
		} `json:"interactive"`
		Button *struct {
			Payload string `json:"payload"`
			Text    string `json:"text"`
		} `json:"button"`
		Errors []whErrorObj `json:"errors"`
	}
	whMedia struct {
		ID       string `json:"id"`
		MIMEType string `json:"mime_type"`
		SHA256   string `json:"sha256"`
		Caption  string `json:"caption"`
		Filename string `json:"filename"`
		Voice    bool   `json:"voice"`
	}
	whStatus struct {
		ID          string       `json:"id"`
		Status      string       `json:"status"`
		Timestamp   string       `json:"timestamp"`
		RecipientID string       `json:"recipient_id"`
		Errors      []whErrorObj `json:"errors"`
	}
	whErrorObj struct {
		Code      int    `json:"code"`
		Title     string `json:"title"`
		Message   string `json:"message"`
		ErrorData struct {
			Details string `json:"details"`
		} `json:"error_data"`
	}
)

// Webhook checks the delivery's signature, then turns the changes for
// acc's number into events: messages (with a contact event for each
// sender's profile name), delivered/read receipts and failed sends.
// Changes for another phone_number_id and unreadable messages are dropped
// and listed in Inbound.Rejected; the rest is kept.
func (d *Driver) Webhook(_ context.Context, acc provider.Account, r *http.Request, body []byte) (*provider.Inbound, error) {
	if acc.Meta == nil {
		return nil, fmt.Errorf("%w: %s has no Meta credentials", provider.ErrUnauthenticated, acc)
	}
	var header string
	if r != nil {
		header = r.Header.Get(SignatureHeader)
	}
	if err := checkSignature(acc.Meta.AppSecret, header, body); err != nil {
		return nil, err
	}
	var p whPayload
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: not JSON: %v", provider.ErrBadPayload, err)
	}
	if p.Object != "whatsapp_business_account" {
		return nil, fmt.Errorf("%w: object %q, want whatsapp_business_account", provider.ErrBadPayload, p.Object)
	}
	c := &converter{d: d, acc: acc, cr: acc.Meta, in: &provider.Inbound{}}
	for _, e := range p.Entry {
		for _, ch := range e.Changes {
			if ch.Field != "messages" {
				continue // template, quality and account updates: nothing to publish
			}
			var v whValue
			if err := json.Unmarshal(ch.Value, &v); err != nil {
				c.reject("entry %s: messages change not understood: %v", e.ID, err)
				continue
			}
			if v.Metadata.PhoneNumberID != acc.Meta.PhoneNumberID {
				c.reject("entry %s: change for phone_number_id %q, not this mentorado's number", e.ID, v.Metadata.PhoneNumberID)
				continue
			}
			c.change(&v)
		}
	}
	if n := len(c.in.Rejected); n > 0 {
		d.log.Warn().Str("provider", "meta").Int64("mentorado", acc.Mentorado).Strs("rejected", c.in.Rejected).Msg("meta webhook: parts of the delivery dropped")
	}
	return c.in, nil
}

// converter builds one delivery's Inbound.
type converter struct {
	d   *Driver
	acc provider.Account
	cr  *provider.MetaCredentials
	in  *provider.Inbound
}

func (c *converter) reject(format string, args ...any) {
	c.in.Rejected = append(c.in.Rejected, fmt.Sprintf(format, args...))
}

func (c *converter) add(env event.Envelope) {
	env.Provider = event.ProviderMeta
	c.in.Events = append(c.in.Events, env)
}

// unix parses Meta's timestamp (unix seconds as a string).
func unix(s string) (time.Time, bool) {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0).UTC(), true
}

func (c *converter) change(v *whValue) {
	m := c.acc.Mentorado
	names := map[string]string{}
	for _, ct := range v.Contacts {
		names[ct.WAID] = event.Clean(ct.Profile.Name)
	}
	// A contact event per sender with a profile name, observed at its
	// first message of the change (deterministic: a replay keeps the id).
	seen := map[string]time.Time{}
	for i := range v.Messages {
		wm := &v.Messages[i]
		msg, ref, err := c.message(wm, names[wm.From])
		if err != nil {
			c.reject("message %q: %v", wm.ID, err)
			continue
		}
		env, err := event.New(m, event.MessageEventID(m, msg.WAID), msg.Timestamp, msg)
		if err != nil {
			c.reject("message %q: %v", wm.ID, err)
			continue
		}
		c.add(env)
		if ref != nil {
			c.in.Media = append(c.in.Media, *ref)
		}
		if _, ok := seen[wm.From]; !ok {
			seen[wm.From] = msg.Timestamp
		}
	}
	for _, ct := range v.Contacts {
		at, ok := seen[ct.WAID]
		name := names[ct.WAID]
		if !ok || name == "" || !validPhone(ct.WAID) {
			continue
		}
		contact := &event.Contact{JID: ct.WAID + "@s.whatsapp.net", Phone: ct.WAID, PushName: name}
		env, err := event.New(m, event.ContactEventID(m, contact, at), at, contact)
		if err != nil {
			c.reject("contact %q: %v", ct.WAID, err)
			continue
		}
		c.add(env)
	}
	for i := range v.Statuses {
		c.status(&v.Statuses[i], v.Metadata.DisplayPhoneNumber)
	}
	for _, e := range v.Errors {
		c.reject("meta reported error #%d: %s", e.Code, firstNonEmpty(e.Title, e.Message))
	}
}

// message converts one received message; ref is its file, if any.
func (c *converter) message(wm *whMessage, pushName string) (*event.Message, *provider.MediaRef, error) {
	switch {
	case wm.ID == "":
		return nil, nil, fmt.Errorf("no id")
	case !validPhone(wm.From):
		return nil, nil, fmt.Errorf("from %q is not a phone number", wm.From)
	}
	ts, ok := unix(wm.Timestamp)
	if !ok {
		return nil, nil, fmt.Errorf("timestamp %q is not unix seconds", wm.Timestamp)
	}
	chat := wm.From + "@s.whatsapp.net"
	msg := &event.Message{
		WAID: wm.ID, ChatJID: chat, SenderJID: chat, Phone: wm.From, PushName: pushName,
		Direction: event.DirectionIn, Status: event.MessageReceived, Timestamp: ts, Kind: event.KindOther,
	}
	if wm.Context != nil {
		msg.ReplyToID = wm.Context.ID
	}
	var media *whMedia
	switch wm.Type {
	case "text":
		if wm.Text != nil {
			msg.Kind, msg.Text = event.KindText, wm.Text.Body
		}
	case "image":
		msg.Kind, media = event.KindImage, wm.Image
	case "video":
		msg.Kind, media = event.KindVideo, wm.Video
	case "audio":
		msg.Kind, media = event.KindAudio, wm.Audio
		if media != nil && media.Voice {
			msg.Kind = event.KindPTT
		}
	case "document":
		msg.Kind, media = event.KindDocument, wm.Document
	case "sticker":
		msg.Kind, media = event.KindSticker, wm.Sticker
	case "reaction":
		if wm.Reaction == nil || wm.Reaction.MessageID == "" {
			return nil, nil, fmt.Errorf("reaction without message_id")
		}
		// No emoji: the user removed their reaction.
		msg.Kind, msg.TargetID, msg.Text = event.KindReaction, wm.Reaction.MessageID, wm.Reaction.Emoji
	case "location":
		if l := wm.Location; l != nil {
			msg.Kind, msg.Text = event.KindLocation, place(l.Name, l.Address, l.Latitude, l.Longitude)
		}
	case "contacts":
		names := make([]string, 0, len(wm.Contacts))
		for _, ct := range wm.Contacts {
			n := ct.Name.FormattedName
			if n == "" {
				n = strings.TrimSpace(ct.Name.FirstName + " " + ct.Name.LastName)
			}
			if n != "" {
				names = append(names, n)
			}
		}
		msg.Kind, msg.Text = event.KindContact, strings.Join(names, ", ")
	case "interactive":
		if it := wm.Interactive; it != nil {
			switch {
			case it.ButtonReply != nil:
				msg.Kind, msg.Text = event.KindText, it.ButtonReply.Title
			case it.ListReply != nil:
				msg.Kind, msg.Text = event.KindText, it.ListReply.Title
			case it.NFMReply != nil:
				msg.Kind, msg.Text = event.KindText, firstNonEmpty(it.NFMReply.Body, it.NFMReply.Name)
			}
		}
	case "button": // a template's quick-reply button
		if wm.Button != nil {
			msg.Kind, msg.Text = event.KindText, firstNonEmpty(wm.Button.Text, wm.Button.Payload)
		}
	}
	if media == nil {
		if msg.Kind.IsMedia() {
			return nil, nil, fmt.Errorf("%s message without its %s object", wm.Type, wm.Type)
		}
		return msg, nil, nil
	}
	if media.ID == "" {
		return nil, nil, fmt.Errorf("%s without a media id", wm.Type)
	}
	if msg.Kind == event.KindImage || msg.Kind == event.KindVideo || msg.Kind == event.KindDocument {
		msg.Caption = media.Caption
	}
	ref := &provider.MediaRef{
		WAID: wm.ID, ChatJID: chat, Kind: msg.Kind, ProviderID: media.ID, MIME: media.MIMEType,
		FileName: media.Filename, Caption: msg.Caption,
	}
	return msg, ref, nil
}

// status converts one status update of a message the business sent:
// delivered and read become receipts, failed a failed message status
// (the id the outbox uses for failed sends, <m>:msg:<wamid>:failed).
// sent says nothing the send's own message event did not.
func (c *converter) status(s *whStatus, display string) {
	m := c.acc.Mentorado
	ts, ok := unix(s.Timestamp)
	switch {
	case s.ID == "":
		c.reject("status without a message id")
		return
	case !ok:
		c.reject("status of %q: timestamp %q is not unix seconds", s.ID, s.Timestamp)
		return
	case !validPhone(s.RecipientID):
		c.reject("status of %q: recipient %q is not a phone number", s.ID, s.RecipientID)
		return
	}
	chat := s.RecipientID + "@s.whatsapp.net"
	var env event.Envelope
	var err error
	switch s.Status {
	case "delivered", "read":
		kind := event.ReceiptKind(s.Status)
		r := &event.Receipt{MessageIDs: []string{s.ID}, ChatJID: chat, Phone: s.RecipientID, Kind: kind, Timestamp: ts}
		env, err = event.New(m, event.ReceiptEventID(m, kind, false, r.MessageIDs), ts, r)
	case "failed":
		reason := "meta: failed"
		if len(s.Errors) > 0 {
			e := s.Errors[0]
			reason = fmt.Sprintf("meta:%d %s", e.Code, firstNonEmpty(e.Title, e.Message))
		}
		msg := &event.Message{
			WAID: s.ID, ChatJID: chat, SenderJID: ownJID(c.cr, display), Phone: s.RecipientID,
			Direction: event.DirectionOut, Kind: event.KindOther, Timestamp: ts,
			Status: event.MessageFailed, StatusReason: reason,
		}
		env, err = event.New(m, event.OutboxEventID(m, s.ID, event.MessageFailed), ts, msg)
	case "sent", "deleted", "warning":
		return
	default:
		c.reject("status of %q: unknown status %q", s.ID, s.Status)
		return
	}
	if err != nil {
		c.reject("status of %q: %v", s.ID, err)
		return
	}
	c.add(env)
}

// place renders a location as waconv does: name, address and
// "lat,lng" on lines of their own.
func place(name, address string, lat, lng float64) string {
	var parts []string
	for _, s := range []string{name, address} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	parts = append(parts, strconv.FormatFloat(lat, 'f', -1, 64)+","+strconv.FormatFloat(lng, 'f', -1, 64))
	return strings.Join(parts, "\n")
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}
