package waconv

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
)

// maxCaptionRunes bounds captions (WhatsApp allows 1,024 characters) so an
// oversized one cannot push an envelope over event.MaxEnvelopeBytes.
const maxCaptionRunes = 4096

// message converts a message into an event.Message, plus an event.Contact
// carrying the sender's push name (and verified business name) for inbound
// messages that have one.
func (c *Converter) message(ctx context.Context, evt *events.Message) ([]event.Envelope, error) {
	info := &evt.Info
	_, content, ok := recorded(evt)
	if !ok {
		return nil, nil
	}
	who, err := c.counterpart(ctx, &info.MessageSource)
	if err != nil {
		return nil, fmt.Errorf("waconv: message %s: %w", info.ID, err)
	}
	ts := c.orNow(info.Timestamp)
	chat := info.Chat
	if info.IsIncomingBroadcast() && !info.IsFromMe {
		// A broadcast-list message shows up in the direct chat with its sender.
		chat = info.Sender
	}
	m := &event.Message{
		WAID:      info.ID,
		ChatJID:   jidString(chat),
		SenderJID: jidString(info.Sender),
		Phone:     who.phone,
		LID:       who.lid,
		Direction: event.DirectionIn,
		Status:    event.MessageReceived,
		Kind:      content.kind,
		Text:      truncate(content.text, event.MaxTextRunes), // event.New cleans every field
		Caption:   truncate(content.caption, maxCaptionRunes),
		ReplyToID: content.replyTo,
		TargetID:  content.target,
		Media:     content.media,
		Timestamp: ts,
	}
	// event.New cleans every field of what Postgres cannot store (NUL,
	// invalid UTF-8); names are cleaned here already because a name that
	// is nothing but NUL is no name, and makes no contact event.
	push := event.Clean(info.PushName)
	if info.IsFromMe {
		m.Direction, m.Status = event.DirectionOut, event.MessageSent
	} else {
		m.PushName = push
	}
	env, err := c.fit(info.ID, ts, m)
	if err != nil {
		return nil, err
	}
	out := []event.Envelope{env}

	var business string
	if info.VerifiedName != nil {
		business = event.Clean(info.VerifiedName.Details.GetVerifiedName())
	}
	if info.IsFromMe || (push == "" && business == "") || !isUser(info.Sender) {
		return out, nil
	}
	ct := &event.Contact{JID: who.contactJID(), Phone: who.phone, LID: who.lid, PushName: push, BusinessName: business}
	cenv, err := c.contactEnvelope(ts, ct)
	if err != nil {
		return nil, err
	}
	return append(out, cenv), nil
}

// recorded returns the unwrapped body of a message zapbus records and what
// it keeps of it; false for messages it does not (chats it skips,
// newsletters, protocol and key-distribution-only messages). The message
// event and its download (DownloadOf) both start here, so a message is
// queued for download exactly when its event carries media.
func recorded(evt *events.Message) (*waE2E.Message, content, bool) {
	if skipChat(evt.Info.Chat) || evt.NewsletterMeta != nil {
		return nil, content{}, false
	}
	raw := evt.Message
	if raw == nil {
		raw = evt.RawMessage
	}
	m := unwrap(raw)
	c, ok := classify(m)
	return m, c, ok
}

// maxDataBytes leaves room for the envelope around the payload within
// event.MaxEnvelopeBytes.
const maxDataBytes = event.MaxEnvelopeBytes - 4096

// fit builds the message envelope, shortening a text whose JSON form would
// not fit in an envelope (65,536 characters JSON-escaped to 6 bytes each). An
// envelope the bus refuses would never be acked, and WhatsApp would redeliver
// the message forever.
func (c *Converter) fit(id string, ts time.Time, m *event.Message) (event.Envelope, error) {
	for range 8 {
		env, err := event.New(c.Mentorado, event.MessageEventID(c.Mentorado, id), ts, m)
		if err != nil {
			return event.Envelope{}, fmt.Errorf("waconv: message %q: %w", id, err)
		}
		if len(env.Data) <= maxDataBytes || m.Text == "" {
			return env, nil
		}
		runes := utf8.RuneCountInString(m.Text)
		m.Text = truncate(m.Text, runes*maxDataBytes/len(env.Data)*9/10)
	}
	return event.Envelope{}, fmt.Errorf("waconv: message %q: text does not fit in an envelope", id)
}

func jidString(j types.JID) string {
	if j.IsEmpty() {
		return ""
	}
	return j.ToNonAD().String()
}

// unwrap peels the wrappers whatsmeow's events.Message.UnwrapRaw peels
// (device-sent, bot invoke, ephemeral, view-once v1/v2/v2-extension, lottie
// sticker, document with caption, edited), without modifying m. Events built
// by whatsmeow are already unwrapped; simulated ones may carry only
// RawMessage.
func unwrap(m *waE2E.Message) *waE2E.Message {
	for range 16 {
		var inner *waE2E.Message
		switch {
		case m.GetDeviceSentMessage().GetMessage() != nil:
			inner = m.GetDeviceSentMessage().GetMessage()
		case m.GetBotInvokeMessage().GetMessage() != nil:
			inner = m.GetBotInvokeMessage().GetMessage()
		case m.GetEphemeralMessage().GetMessage() != nil:
			inner = m.GetEphemeralMessage().GetMessage()
		case m.GetViewOnceMessage().GetMessage() != nil:
			inner = m.GetViewOnceMessage().GetMessage()
		case m.GetViewOnceMessageV2().GetMessage() != nil:
			inner = m.GetViewOnceMessageV2().GetMessage()
		case m.GetViewOnceMessageV2Extension().GetMessage() != nil:
			inner = m.GetViewOnceMessageV2Extension().GetMessage()
		case m.GetLottieStickerMessage().GetMessage() != nil:
			inner = m.GetLottieStickerMessage().GetMessage()
		case m.GetDocumentWithCaptionMessage().GetMessage() != nil:
			inner = m.GetDocumentWithCaptionMessage().GetMessage()
		case m.GetEditedMessage().GetMessage() != nil:
			inner = m.GetEditedMessage().GetMessage()
		default:
			return m
		}
		m = inner
	}
	return m
}

// content is what zapbus keeps of a message body.
type content struct {
	kind    event.Kind
	text    string
	caption string
	replyTo string
	target  string
	media   *event.Media // media kinds with a usable FileSHA256
}

// classify extracts kind, text and references from an unwrapped message. It
// reports false for messages that carry nothing for the CRM: protocol
// messages other than edit and revoke, and key-distribution-only messages.
func classify(m *waE2E.Message) (content, bool) {
	if m == nil || isEmpty(m) {
		return content{}, false
	}
	var c content
	var inner proto.Message // the typed message, for its ContextInfo
	switch {
	case m.Conversation != nil:
		c.kind, c.text = event.KindText, m.GetConversation()
	case m.ExtendedTextMessage != nil:
		c.kind, c.text, inner = event.KindText, m.GetExtendedTextMessage().GetText(), m.ExtendedTextMessage
	case m.ImageMessage != nil:
		c.kind, c.caption, inner = event.KindImage, m.GetImageMessage().GetCaption(), m.ImageMessage
	case m.VideoMessage != nil:
		c.kind, c.caption, inner = event.KindVideo, m.GetVideoMessage().GetCaption(), m.VideoMessage
	case m.PtvMessage != nil: // round video note
		c.kind, c.caption, inner = event.KindVideo, m.GetPtvMessage().GetCaption(), m.PtvMessage
	case m.AudioMessage != nil:
		c.kind, inner = event.KindAudio, m.AudioMessage
	case m.DocumentMessage != nil:
		c.kind, c.caption, inner = event.KindDocument, m.GetDocumentMessage().GetCaption(), m.DocumentMessage
	case m.StickerMessage != nil:
		c.kind, inner = event.KindSticker, m.StickerMessage
	case m.LocationMessage != nil:
		l := m.GetLocationMessage()
		c.kind, c.text, c.caption, inner = event.KindLocation, event.PlaceText(l.GetName(), l.GetAddress(), l.GetDegreesLatitude(), l.GetDegreesLongitude()), l.GetComment(), l
	case m.LiveLocationMessage != nil:
		l := m.GetLiveLocationMessage()
		c.kind, c.text, c.caption, inner = event.KindLocation, event.PlaceText("", "", l.GetDegreesLatitude(), l.GetDegreesLongitude()), l.GetCaption(), l
	case m.ContactMessage != nil:
		c.kind, c.text, inner = event.KindContact, m.GetContactMessage().GetDisplayName(), m.ContactMessage
	case m.ContactsArrayMessage != nil:
		a := m.GetContactsArrayMessage()
		names := make([]string, 0, len(a.GetContacts()))
		for _, ct := range a.GetContacts() {
			if n := ct.GetDisplayName(); n != "" {
				names = append(names, n)
			}
		}
		if len(names) == 0 && a.GetDisplayName() != "" {
			names = append(names, a.GetDisplayName())
		}
		c.kind, c.text, inner = event.KindContact, strings.Join(names, ", "), a
	case m.ReactionMessage != nil:
		r := m.GetReactionMessage()
		// An empty emoji withdraws the sender's reaction.
		c.kind, c.text, c.target = event.KindReaction, r.GetText(), r.GetKey().GetID()
	case m.ProtocolMessage != nil:
		p := m.GetProtocolMessage()
		switch p.GetType() {
		case waE2E.ProtocolMessage_REVOKE:
			c.kind, c.target = event.KindRevoke, p.GetKey().GetID()
		case waE2E.ProtocolMessage_MESSAGE_EDIT:
			c.kind, c.target = event.KindEdit, p.GetKey().GetID()
			if edited, ok := classify(unwrap(p.GetEditedMessage())); ok {
				c.text = edited.text
				if c.text == "" {
					c.text = edited.caption
				}
			}
		default:
			return content{}, false
		}
	case m.PollCreationMessage != nil, m.PollCreationMessageV2 != nil, m.PollCreationMessageV3 != nil, m.PollCreationMessageV5 != nil:
		p := firstPoll(m)
		c.kind, c.text, inner = event.KindPoll, p.GetName(), p
	case m.ButtonsResponseMessage != nil:
		c.kind, c.text, inner = event.KindOther, m.GetButtonsResponseMessage().GetSelectedDisplayText(), m.ButtonsResponseMessage
	case m.TemplateButtonReplyMessage != nil:
		c.kind, c.text, inner = event.KindOther, m.GetTemplateButtonReplyMessage().GetSelectedDisplayText(), m.TemplateButtonReplyMessage
	case m.ListResponseMessage != nil:
		c.kind, c.text, inner = event.KindOther, m.GetListResponseMessage().GetTitle(), m.ListResponseMessage
	case m.InteractiveResponseMessage != nil:
		c.kind, c.text, inner = event.KindOther, m.GetInteractiveResponseMessage().GetBody().GetText(), m.InteractiveResponseMessage
	default:
		c.kind = event.KindOther
	}
	if inner != nil {
		c.replyTo = contextInfo(inner).GetStanzaID()
	}
	if part, kind := mediaPart(m); part != nil && c.kind.IsMedia() {
		c.kind, c.media = kind, describe(part, kind, m)
	}
	return c, true
}

func firstPoll(m *waE2E.Message) *waE2E.PollCreationMessage {
	for _, p := range []*waE2E.PollCreationMessage{m.PollCreationMessage, m.PollCreationMessageV2, m.PollCreationMessageV3, m.PollCreationMessageV5} {
		if p != nil {
			return p
		}
	}
	return nil
}

// isEmpty reports messages that only carry encryption bookkeeping (sender
// key distribution, message secrets), which whatsmeow dispatches too.
func isEmpty(m *waE2E.Message) bool {
	if m.SenderKeyDistributionMessage == nil && m.FastRatchetKeySenderKeyDistributionMessage == nil && m.MessageContextInfo == nil {
		return proto.Size(m) == 0
	}
	rest := proto.CloneOf(m)
	rest.SenderKeyDistributionMessage = nil
	rest.FastRatchetKeySenderKeyDistributionMessage = nil
	rest.MessageContextInfo = nil
	return proto.Size(rest) == 0
}

// contextInfo returns the ContextInfo field of a typed message, if it has one.
func contextInfo(m proto.Message) *waE2E.ContextInfo {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName("contextInfo")
	if fd == nil || !r.Has(fd) {
		return nil
	}
	ci, _ := r.Get(fd).Message().Interface().(*waE2E.ContextInfo)
	return ci
}

// truncate keeps at most n runes of s.
func truncate(s string, n int) string {
	if len(s) <= n { // bytes ≥ runes
		return s
	}
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}
