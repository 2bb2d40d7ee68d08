package zapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

// SecretHeader carries the webhook secret when it is not the URL's last
// path segment.
const SecretHeader = "X-Zapbus-Webhook-Secret"

// Callback types Z-API posts (the "type" field).
const (
	TypeReceived     = "ReceivedCallback"
	TypeStatus       = "MessageStatusCallback"
	TypeConnected    = "ConnectedCallback"
	TypeDisconnected = "DisconnectedCallback"
	TypeDelivery     = "DeliveryCallback"
	TypePresence     = "PresenceChatCallback"
)

// callback is every field of Z-API's webhook bodies the driver reads
// (https://developer.z-api.io/en/webhooks/on-message-received and the
// sibling pages; testdata/README.md lists them).
type callback struct {
	Type       string `json:"type"`
	InstanceID string `json:"instanceId"`
	Momment    millis `json:"momment"`

	// ReceivedCallback.
	MessageID          string   `json:"messageId"`
	Phone              string   `json:"phone"`
	ConnectedPhone     string   `json:"connectedPhone"`
	FromMe             bool     `json:"fromMe"`
	IsGroup            bool     `json:"isGroup"`
	IsNewsletter       bool     `json:"isNewsletter"`
	IsEdit             bool     `json:"isEdit"`
	WaitingMessage     bool     `json:"waitingMessage"`
	SenderName         string   `json:"senderName"`
	SenderLid          string   `json:"senderLid"`
	ChatLid            string   `json:"chatLid"`
	ParticipantPhone   string   `json:"participantPhone"`
	ParticipantLid     string   `json:"participantLid"`
	ReferenceMessageID string   `json:"referenceMessageId"`
	Notification       string   `json:"notification"`
	Text               *zText   `json:"text"`
	Image              *zMedia  `json:"image"`
	Audio              *zMedia  `json:"audio"`
	Video              *zMedia  `json:"video"`
	Document           *zMedia  `json:"document"`
	Sticker            *zMedia  `json:"sticker"`
	Reaction           *zReact  `json:"reaction"`
	Location           *zPlace  `json:"location"`
	Contact            *zVCard  `json:"contact"`
	Poll               *zPoll   `json:"poll"`
	IDs                []string `json:"ids"`

	// MessageStatusCallback.
	Status string `json:"status"`

	// ConnectedCallback / DisconnectedCallback.
	Connected    bool   `json:"connected"`
	Disconnected bool   `json:"disconnected"`
	Error        string `json:"error"`
}

type zText struct {
	Message string `json:"message"`
}

type zMedia struct {
	ImageURL    string `json:"imageUrl"`
	AudioURL    string `json:"audioUrl"`
	VideoURL    string `json:"videoUrl"`
	DocumentURL string `json:"documentUrl"`
	StickerURL  string `json:"stickerUrl"`
	MimeType    string `json:"mimeType"`
	Caption     string `json:"caption"`
	FileName    string `json:"fileName"`
	Title       string `json:"title"`
	PTT         bool   `json:"ptt"`
}

func (m *zMedia) url() string {
	for _, u := range []string{m.ImageURL, m.AudioURL, m.VideoURL, m.DocumentURL, m.StickerURL} {
		if u != "" {
			return u
		}
	}
	return ""
}

type zReact struct {
	Value             string `json:"value"`
	ReferencedMessage struct {
		MessageID string `json:"messageId"`
	} `json:"referencedMessage"`
}

type zPlace struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	URL     string `json:"url"`
}

type zVCard struct {
	DisplayName string `json:"displayName"`
}

type zPoll struct {
	Question string `json:"question"`
}

// millis is Z-API's "momment": a number (milliseconds; seconds in the
// disconnected callback), sometimes a string.
type millis int64

func (m *millis) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" {
		*m = 0
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("momment: %w", err)
	}
	*m = millis(f)
	return nil
}

// time is m as a time; values below 10^11 are seconds (Z-API's
// disconnected callback), and 0 is "not given".
func (m millis) time() (time.Time, bool) {
	switch {
	case m <= 0:
		return time.Time{}, false
	case m < 100_000_000_000:
		return time.Unix(int64(m), 0).UTC(), true
	}
	return time.UnixMilli(int64(m)).UTC(), true
}

// Webhook checks a Z-API delivery's secret and turns it into events.
//
// Z-API does not sign webhooks: the only proof a delivery comes from the
// Z-API instance zapbus configured is the webhook secret zapbus put in the
// webhook URL (r.PathValue("secret"), the last segment of
// /providers/zapi/{mentorado}/webhook/{secret}) or, for a proxy that keeps
// it out of the URL, the X-Zapbus-Webhook-Secret header. It is compared in
// constant time with acc.ZAPI.WebhookSecret; a missing or wrong secret is
// provider.ErrUnauthenticated. A delivery naming another instance than the
// account's is dropped into Inbound.Rejected, so a delivery for one
// mentorado never writes to another; events always carry acc.Mentorado.
// Callback types zapbus does not use (presence, delivery to Z-API, …) give
// an empty Inbound.
func (d *Driver) Webhook(ctx context.Context, acc provider.Account, r *http.Request, body []byte) (*provider.Inbound, error) {
	if !Authentic(acc, r) {
		return nil, provider.ErrUnauthenticated
	}
	var cb callback
	if err := json.Unmarshal(body, &cb); err != nil || cb.Type == "" {
		return nil, provider.ErrBadPayload
	}
	in := &provider.Inbound{}
	if cb.InstanceID != acc.ZAPI.InstanceID {
		in.Rejected = append(in.Rejected, fmt.Sprintf("z-api %s for instance %q, not this mentorado's instance", cb.Type, event.Clean(cb.InstanceID)))
		return in, nil
	}
	var err error
	switch {
	case strings.EqualFold(cb.Type, TypeReceived):
		err = d.received(acc, &cb, in)
	case strings.EqualFold(cb.Type, TypeStatus):
		err = d.status(acc, &cb, in)
	case strings.EqualFold(cb.Type, TypeConnected):
		err = d.connected(acc, &cb, in)
	case strings.EqualFold(cb.Type, TypeDisconnected):
		err = d.disconnected(acc, &cb, in)
	default:
		d.log.Debug().Int64("mentorado", acc.Mentorado).Str("type", event.Clean(cb.Type)).Msg("z-api callback ignored")
	}
	if err != nil {
		return nil, err
	}
	for i := range in.Events {
		in.Events[i].Provider = event.ProviderZAPI
	}
	return in, nil
}

// Authentic reports whether r carries acc's webhook secret, in the path
// ({secret}) or in SecretHeader. Both sides are hashed first so the
// comparison takes the same time whatever the lengths.
func Authentic(acc provider.Account, r *http.Request) bool {
	if acc.ZAPI == nil || acc.ZAPI.WebhookSecret == "" || r == nil {
		return false
	}
	want := sha256.Sum256([]byte(acc.ZAPI.WebhookSecret))
	ok := false
	for _, got := range []string{r.PathValue("secret"), r.Header.Get(SecretHeader)} {
		if got == "" {
			continue
		}
		h := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(h[:], want[:]) == 1 {
			ok = true
		}
	}
	return ok
}

// ts is the callback's time, or now when it gave none.
func (d *Driver) ts(cb *callback) time.Time {
	if t, ok := cb.Momment.time(); ok {
		return t
	}
	return d.now().UTC()
}

// chatOf is the chat JID of Z-API's phone field: "<digits>" is a user,
// "<id>-group" a group (<id>@g.us, as whatsmeow and internal/waconv name
// it), and a JID is kept. "" for chats zapbus does not record (status
// broadcasts, newsletters).
func chatOf(phoneField string, isGroup bool) string {
	p := strings.TrimSpace(phoneField)
	switch {
	case p == "", strings.HasSuffix(p, "@newsletter"), strings.HasSuffix(p, "@broadcast"), strings.HasSuffix(p, "-broadcast"):
		return ""
	case strings.HasSuffix(p, "-group"):
		return strings.TrimSuffix(p, "-group") + "@g.us"
	case strings.Contains(p, "@"):
		return p
	case isGroup:
		return p + "@g.us"
	}
	if d := digits(p); d != "" {
		return d + "@s.whatsapp.net"
	}
	return ""
}

// validPhone is p when it is E.164 digits (8 to 15), else "".
func validPhone(p string) string {
	p = digits(p)
	if len(p) < 8 || len(p) > 15 {
		return ""
	}
	return p
}

func lid(s string) string {
	if strings.HasSuffix(s, "@lid") {
		return s
	}
	return ""
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// received converts a ReceivedCallback: a message (and a contact for the
// sender's name), or nothing for what zapbus does not record.
func (d *Driver) received(acc provider.Account, cb *callback, in *provider.Inbound) error {
	if cb.Notification != "" || cb.WaitingMessage || cb.IsNewsletter {
		// Notifications are WhatsApp system lines (group changes, missed
		// calls); a waiting message is a placeholder Z-API sends again
		// once it can decrypt it, under the same id.
		return nil
	}
	chat := chatOf(cb.Phone, cb.IsGroup)
	if chat == "" {
		return nil
	}
	if cb.MessageID == "" {
		in.Rejected = append(in.Rejected, "z-api ReceivedCallback without messageId")
		return nil
	}
	if p := validPhone(cb.ConnectedPhone); p != "" {
		d.rememberPhone(acc, p)
	}
	ts := d.ts(cb)
	m := &event.Message{
		WAID:      cb.MessageID,
		ChatJID:   chat,
		Direction: event.DirectionIn,
		Status:    event.MessageReceived,
		ReplyToID: cb.ReferenceMessageID,
		Timestamp: ts,
	}
	isGroup := strings.HasSuffix(chat, "@g.us")
	switch {
	case cb.FromMe:
		m.Direction, m.Status = event.DirectionOut, event.MessageSent
		own := validPhone(cb.ConnectedPhone)
		if own == "" {
			if v, ok := d.phones.Load(phoneKey(acc)); ok {
				own = v.(string)
			}
		}
		if own != "" {
			m.SenderJID = own + "@s.whatsapp.net"
		} else {
			d.log.Warn().Int64("mentorado", acc.Mentorado).Msg("z-api message from the phone without the connected number; sender set to the chat")
			m.SenderJID = chat
		}
		if !isGroup {
			m.Phone, m.LID = validPhone(cb.Phone), lid(cb.ChatLid)
		}
	case isGroup:
		m.Phone, m.LID = validPhone(cb.ParticipantPhone), lid(cb.ParticipantLid)
		switch {
		case m.Phone != "":
			m.SenderJID = m.Phone + "@s.whatsapp.net"
		case m.LID != "":
			m.SenderJID = m.LID
		default:
			m.SenderJID = chat
		}
	default:
		m.Phone, m.LID = validPhone(cb.Phone), lid(cb.SenderLid)
		m.SenderJID = chat
	}
	if !cb.FromMe {
		m.PushName = pushName(cb)
	}

	var ref *provider.MediaRef
	switch {
	case cb.Reaction != nil:
		m.Kind, m.Text, m.TargetID, m.ReplyToID = event.KindReaction, cb.Reaction.Value, cb.Reaction.ReferencedMessage.MessageID, ""
		if m.TargetID == "" {
			in.Rejected = append(in.Rejected, "z-api reaction without referencedMessage.messageId")
			return nil
		}
	case cb.IsEdit && cb.Text != nil:
		// An edit names the edited message by its id; the edit itself
		// has none of its own, so it gets one from the edit's time.
		m.Kind, m.Text, m.TargetID = event.KindEdit, cb.Text.Message, cb.MessageID
		m.WAID = cb.MessageID + "-edit-" + strconv.FormatInt(ts.UnixMilli(), 10)
	case cb.Text != nil:
		m.Kind, m.Text = event.KindText, cb.Text.Message
	case cb.Image != nil:
		m.Kind, ref = event.KindImage, mediaRef(cb.Image)
	case cb.Video != nil:
		m.Kind, ref = event.KindVideo, mediaRef(cb.Video)
	case cb.Audio != nil:
		m.Kind, ref = event.KindAudio, mediaRef(cb.Audio)
		if cb.Audio.PTT {
			m.Kind = event.KindPTT
		}
	case cb.Document != nil:
		m.Kind, ref = event.KindDocument, mediaRef(cb.Document)
		if ref.FileName == "" {
			ref.FileName = cb.Document.Title
		}
	case cb.Sticker != nil:
		m.Kind, ref = event.KindSticker, mediaRef(cb.Sticker)
	case cb.Location != nil:
		m.Kind, m.Text = event.KindLocation, strings.TrimSpace(strings.Join(nonEmpty(cb.Location.Name, cb.Location.Address, cb.Location.URL), "\n"))
	case cb.Contact != nil:
		m.Kind, m.Text = event.KindContact, cb.Contact.DisplayName
	case cb.Poll != nil:
		m.Kind, m.Text = event.KindPoll, cb.Poll.Question
	default:
		m.Kind = event.KindOther
	}
	m.Text = truncate(m.Text, event.MaxTextRunes)
	if ref != nil {
		m.Caption = truncate(ref.Caption, event.MaxCaptionRunes)
		ref.WAID, ref.ChatJID, ref.Kind, ref.Caption = m.WAID, m.ChatJID, m.Kind, m.Caption
		in.Media = append(in.Media, *ref)
	}
	env, err := event.New(acc.Mentorado, event.MessageEventID(acc.Mentorado, m.WAID), ts, m)
	if err != nil {
		return fmt.Errorf("zapi: message %s: %w", event.Clean(m.WAID), err)
	}
	in.Events = append(in.Events, env)

	if m.PushName != "" && !strings.HasSuffix(m.SenderJID, "@g.us") {
		ct := &event.Contact{JID: m.SenderJID, Phone: m.Phone, LID: m.LID, PushName: m.PushName}
		cenv, err := event.New(acc.Mentorado, event.ContactEventID(acc.Mentorado, ct, ts), ts, ct)
		if err != nil {
			return fmt.Errorf("zapi: contact %s: %w", ct.JID, err)
		}
		in.Events = append(in.Events, cenv)
	}
	return nil
}

// pushName is the sender's own name; Z-API puts the phone there when it
// knows no name, which is no name.
func pushName(cb *callback) string {
	n := strings.TrimSpace(event.Clean(cb.SenderName))
	if n == "" || digits(n) == n {
		return ""
	}
	return n
}

func mediaRef(z *zMedia) *provider.MediaRef {
	return &provider.MediaRef{URL: z.url(), MIME: z.MimeType, FileName: z.FileName, Caption: z.Caption}
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// status converts a MessageStatusCallback into a receipt. SENT (Z-API
// handed the message to WhatsApp) says nothing the send's reply did not:
// no event.
func (d *Driver) status(acc provider.Account, cb *callback, in *provider.Inbound) error {
	var kind event.ReceiptKind
	fromMe := false
	switch strings.ToUpper(strings.ReplaceAll(cb.Status, "-", "_")) {
	case "RECEIVED", "DELIVERED":
		kind = event.ReceiptDelivered
	case "READ":
		kind = event.ReceiptRead
	case "READ_BY_ME", "READ_SELF":
		kind, fromMe = event.ReceiptRead, true
	case "PLAYED":
		kind = event.ReceiptPlayed
	default:
		return nil
	}
	var ids []string
	for _, id := range cb.IDs {
		if id != "" {
			ids = append(ids, id)
		}
	}
	chat := chatOf(cb.Phone, cb.IsGroup)
	switch {
	case len(ids) == 0:
		in.Rejected = append(in.Rejected, "z-api MessageStatusCallback without ids")
		return nil
	case chat == "":
		return nil
	}
	ts := d.ts(cb)
	rc := &event.Receipt{MessageIDs: ids, ChatJID: chat, Kind: kind, FromMe: fromMe, Timestamp: ts}
	if !strings.HasSuffix(chat, "@g.us") {
		rc.Phone = validPhone(cb.Phone)
	}
	env, err := event.New(acc.Mentorado, event.ReceiptEventID(acc.Mentorado, kind, fromMe, ids), ts, rc)
	if err != nil {
		return fmt.Errorf("zapi: %s receipt: %w", kind, err)
	}
	in.Events = append(in.Events, env)
	return nil
}

// connected converts a ConnectedCallback.
func (d *Driver) connected(acc provider.Account, cb *callback, in *provider.Inbound) error {
	ts := d.ts(cb)
	c := &event.Connection{Status: event.StatusConnected, Phone: validPhone(cb.Phone)}
	if c.Phone != "" {
		c.JID = c.Phone + "@s.whatsapp.net"
	}
	d.rememberPhone(acc, c.Phone)
	env, err := event.New(acc.Mentorado, event.ConnectionEventID(acc.Mentorado, c.Status, ts), ts, c)
	if err != nil {
		return fmt.Errorf("zapi: connected: %w", err)
	}
	in.Events = append(in.Events, env)
	return nil
}

// disconnected converts a DisconnectedCallback.
func (d *Driver) disconnected(acc provider.Account, cb *callback, in *provider.Inbound) error {
	ts := d.ts(cb)
	reason := strings.TrimSpace(event.Clean(cb.Error))
	if reason == "" {
		reason = "z-api reported the instance disconnected"
	}
	c := &event.Connection{Status: event.StatusDisconnected, Reason: "z-api: " + truncate(reason, 300)}
	d.rememberPhone(acc, "")
	env, err := event.New(acc.Mentorado, event.ConnectionEventID(acc.Mentorado, c.Status, ts), ts, c)
	if err != nil {
		return fmt.Errorf("zapi: disconnected: %w", err)
	}
	in.Events = append(in.Events, env)
	return nil
}
