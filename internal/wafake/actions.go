package wafake

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/types"
)

// stanzaType is the <message type> WhatsApp uses for msg (whatsmeow's
// getTypeFromMessage).
func stanzaType(msg *waE2E.Message) string {
	switch {
	case msg.ReactionMessage != nil || msg.EncReactionMessage != nil:
		return "reaction"
	case msg.PollCreationMessage != nil || msg.PollUpdateMessage != nil:
		return "poll"
	case mediaTypeAttr(msg) != "":
		return "media"
	}
	return "text"
}

// mediaTypeAttr is the <enc mediatype> attribute for msg.
func mediaTypeAttr(msg *waE2E.Message) string {
	switch {
	case msg.GetDocumentWithCaptionMessage().GetMessage() != nil:
		return mediaTypeAttr(msg.GetDocumentWithCaptionMessage().GetMessage())
	case msg.ImageMessage != nil:
		return "image"
	case msg.StickerMessage != nil:
		return "sticker"
	case msg.DocumentMessage != nil:
		return "document"
	case msg.AudioMessage != nil:
		if msg.AudioMessage.GetPTT() {
			return "ptt"
		}
		return "audio"
	case msg.VideoMessage != nil:
		if msg.VideoMessage.GetGifPlayback() {
			return "gif"
		}
		return "video"
	case msg.PtvMessage != nil:
		return "ptv"
	}
	return ""
}

// editAttr is the <message edit> attribute (types.EditAttribute).
func editAttr(msg *waE2E.Message) string {
	if msg.GetEditedMessage().GetMessage() != nil {
		msg = msg.GetEditedMessage().GetMessage()
	}
	switch {
	case msg.GetProtocolMessage().GetKey() != nil:
		switch msg.GetProtocolMessage().GetType() {
		case waE2E.ProtocolMessage_REVOKE:
			if msg.GetProtocolMessage().GetKey().GetFromMe() {
				return string(types.EditAttributeSenderRevoke)
			}
			return string(types.EditAttributeAdminRevoke)
		case waE2E.ProtocolMessage_MESSAGE_EDIT:
			return string(types.EditAttributeMessageEdit)
		}
	case msg.ReactionMessage != nil && msg.ReactionMessage.GetText() == "":
		return string(types.EditAttributeSenderRevoke)
	}
	return ""
}

// chatJIDs returns how this contact's phone addresses the 1:1 chat with the
// account and itself: the LIDs, or the phone-number JIDs when the contact
// uses PN addressing.
func (c *Contact) chatJIDs(a *Account) (chat, self types.JID) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.usePN {
		return a.user.pn, c.pn
	}
	return a.user.lid, c.lid
}

// sentByContact reports whether msgID is a message this contact sent.
func (c *Contact) sentByContact(msgID string) (*waE2E.Message, bool) {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	m := c.s.inbound[msgID]
	if m == nil || m.from != c {
		return nil, false
	}
	var msg waE2E.Message
	if proto.Unmarshal(m.plain, &msg) != nil {
		return nil, true
	}
	return &msg, true
}

// receivedMessage returns a message a client sent to this contact.
func (c *Contact) receivedMessage(msgID string) *waE2E.Message {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	for _, r := range c.received {
		if r.ID == msgID {
			return r.Message
		}
	}
	return nil
}

// replyContext builds the ContextInfo quoting quotedID (nil when empty):
// StanzaID, Participant (the quoted message's sender) and, when the fake
// knows it, the quoted message.
func (c *Contact) replyContext(a *Account, quotedID string) *waE2E.ContextInfo {
	if quotedID == "" {
		return nil
	}
	chat, self := c.chatJIDs(a)
	ci := &waE2E.ContextInfo{StanzaID: proto.String(quotedID)}
	if msg, own := c.sentByContact(quotedID); own {
		ci.Participant = proto.String(self.String())
		ci.QuotedMessage = msg
	} else {
		ci.Participant = proto.String(chat.String())
		ci.QuotedMessage = c.receivedMessage(quotedID)
	}
	return ci
}

// messageKey is the key of targetID as the contact's phone writes it:
// RemoteJID is the chat (the account), FromMe tells whether the contact
// sent the target itself. The fake knows which messages its contacts sent,
// so callers do not pass it.
func (c *Contact) messageKey(a *Account, targetID string) *waCommon.MessageKey {
	chat, _ := c.chatJIDs(a)
	_, own := c.sentByContact(targetID)
	return &waCommon.MessageKey{RemoteJID: proto.String(chat.String()), FromMe: proto.Bool(own), ID: proto.String(targetID)}
}

// SendReply sends a text (ExtendedTextMessage) quoting quotedID: a message
// of the contact's own or one the account's client sent to it. ContextInfo
// carries StanzaID, Participant (the quoted sender's JID) and the quoted
// message when the fake knows it.
func (c *Contact) SendReply(ctx context.Context, toAccountPhone, text, quotedID string) (string, error) {
	a, err := c.accountFor(toAccountPhone)
	if err != nil {
		return "", err
	}
	return c.send(ctx, a, &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
		Text: proto.String(text), ContextInfo: c.replyContext(a, quotedID),
	}})
}

// SendReaction reacts to targetID with emoji ("" removes the reaction;
// the stanza then has edit="7" like WhatsApp's). The key's FromMe is true
// when targetID is a message this contact sent and false for a message of
// the account's client — the fake works it out, so there is no fromMe
// parameter. It returns the reaction's own message id.
func (c *Contact) SendReaction(ctx context.Context, toAccountPhone, targetID, emoji string) (string, error) {
	a, err := c.accountFor(toAccountPhone)
	if err != nil {
		return "", err
	}
	return c.send(ctx, a, &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
		Key: c.messageKey(a, targetID), Text: proto.String(emoji), SenderTimestampMS: proto.Int64(time.Now().UnixMilli()),
	}})
}

// SendEdit edits the contact's own message targetID to newText, like
// WhatsApp: EditedMessage{ProtocolMessage{MESSAGE_EDIT, key, EditedMessage}}
// with edit="1" on the stanza (whatsmeow reports it as events.Message with
// IsEdit). It returns the edit's own message id.
func (c *Contact) SendEdit(ctx context.Context, toAccountPhone, targetID, newText string) (string, error) {
	a, err := c.accountFor(toAccountPhone)
	if err != nil {
		return "", err
	}
	chat, _ := c.chatJIDs(a)
	return c.send(ctx, a, &waE2E.Message{EditedMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{
		ProtocolMessage: &waE2E.ProtocolMessage{
			Type:          waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(),
			Key:           &waCommon.MessageKey{RemoteJID: proto.String(chat.String()), FromMe: proto.Bool(true), ID: proto.String(targetID)},
			EditedMessage: &waE2E.Message{Conversation: proto.String(newText)},
			TimestampMS:   proto.Int64(time.Now().UnixMilli()),
		},
	}}})
}

// SendRevoke deletes the contact's own message targetID for everyone:
// ProtocolMessage{REVOKE, key{FromMe: true}} with edit="7". It returns the
// revoke's own message id.
func (c *Contact) SendRevoke(ctx context.Context, toAccountPhone, targetID string) (string, error) {
	a, err := c.accountFor(toAccountPhone)
	if err != nil {
		return "", err
	}
	chat, _ := c.chatJIDs(a)
	return c.send(ctx, a, &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
		Type: waE2E.ProtocolMessage_REVOKE.Enum(),
		Key:  &waCommon.MessageKey{RemoteJID: proto.String(chat.String()), FromMe: proto.Bool(true), ID: proto.String(targetID)},
	}})
}

func (c *Contact) send(ctx context.Context, a *Account, msg *waE2E.Message) (string, error) {
	id := newID()
	if err := c.sendMessageID(ctx, a, id, msg); err != nil {
		return "", err
	}
	return id, nil
}

// inner unwraps the wrappers a client's message may have.
func (r Received) inner() *waE2E.Message {
	m := r.Message
	if m.GetDeviceSentMessage().GetMessage() != nil {
		m = m.GetDeviceSentMessage().GetMessage()
	}
	if m.GetEphemeralMessage().GetMessage() != nil {
		m = m.GetEphemeralMessage().GetMessage()
	}
	if m.GetDocumentWithCaptionMessage().GetMessage() != nil {
		m = m.GetDocumentWithCaptionMessage().GetMessage()
	}
	return m
}

// Reaction returns the target id and emoji when the message is a reaction
// ("" emoji: the reaction was removed).
func (r Received) Reaction() (targetID, emoji string, ok bool) {
	rm := r.inner().GetReactionMessage()
	if rm == nil {
		return "", "", false
	}
	return rm.GetKey().GetID(), rm.GetText(), true
}

// Edit returns the target id and new text when the message is an edit.
func (r Received) Edit() (targetID, newText string, ok bool) {
	m := r.inner()
	if m.GetEditedMessage().GetMessage() != nil {
		m = m.GetEditedMessage().GetMessage()
	}
	p := m.GetProtocolMessage()
	if p.GetType() != waE2E.ProtocolMessage_MESSAGE_EDIT || p.GetKey() == nil {
		return "", "", false
	}
	return p.GetKey().GetID(), messageText(p.GetEditedMessage()), true
}

// Revoke returns the target id when the message deletes a message for
// everyone.
func (r Received) Revoke() (targetID string, ok bool) {
	p := r.inner().GetProtocolMessage()
	if p.GetType() != waE2E.ProtocolMessage_REVOKE || p.GetKey() == nil {
		return "", false
	}
	return p.GetKey().GetID(), true
}

// ReplyTo returns the id of the message this one quotes ("" if none).
func (r Received) ReplyTo() string {
	m := r.inner()
	for _, ci := range []*waE2E.ContextInfo{
		m.GetExtendedTextMessage().GetContextInfo(), m.GetImageMessage().GetContextInfo(),
		m.GetVideoMessage().GetContextInfo(), m.GetPtvMessage().GetContextInfo(),
		m.GetAudioMessage().GetContextInfo(), m.GetDocumentMessage().GetContextInfo(),
		m.GetStickerMessage().GetContextInfo(),
	} {
		if id := ci.GetStanzaID(); id != "" {
			return id
		}
	}
	return ""
}

// handlePrivacyGet answers the privacy settings query (MarkRead asks for
// it) with WhatsApp's defaults: read receipts on.
func (s *Server) handlePrivacyGet(c *conn, n *waBinary.Node) {
	cat := func(name, value string) waBinary.Node {
		return waBinary.Node{Tag: "category", Attrs: waBinary.Attrs{"name": name, "value": value}}
	}
	_ = c.send(iqResult(n, waBinary.Node{Tag: "privacy", Content: []waBinary.Node{
		cat("last", "all"), cat("online", "all"), cat("profile", "all"), cat("status", "contacts"),
		cat("groupadd", "all"), cat("readreceipts", "all"), cat("calladd", "all"),
	}}))
}
