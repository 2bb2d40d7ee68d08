package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Clean returns s as text every consumer can store: invalid UTF-8 becomes
// U+FFFD (as encoding/json does anyway) and NUL characters are removed,
// because Postgres text cannot hold U+0000. Text that comes from WhatsApp
// is always stored, never refused for its content.
func Clean(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
}

// clean applies Clean to every string field of p, in place. New calls it
// before encoding (the contract boundary) and Payload after decoding, so
// envelopes written by older publishers are cleaned on the way in.
func clean(p Payload) {
	cs := func(ss ...*string) {
		for _, s := range ss {
			*s = Clean(*s)
		}
	}
	switch p := p.(type) {
	case *Connection:
		cs(&p.Phone, &p.JID, &p.Reason, &p.Connector)
	case *QR:
		cs(&p.Code, &p.PairingCode)
	case *Message:
		cs(&p.WAID, &p.ChatJID, &p.SenderJID, &p.Phone, &p.LID, &p.PushName, &p.Text, &p.Caption, &p.ReplyToID, &p.TargetID)
		if p.History != nil {
			cs(&p.History.Sync)
		}
	case *Receipt:
		for i := range p.MessageIDs {
			p.MessageIDs[i] = Clean(p.MessageIDs[i])
		}
		cs(&p.ChatJID, &p.Phone)
	case *Contact:
		cs(&p.JID, &p.Phone, &p.LID, &p.Name, &p.PushName, &p.BusinessName)
	case *Group:
		cs(&p.JID, &p.Subject, &p.Topic)
		for i := range p.Participants {
			x := &p.Participants[i]
			cs(&x.JID, &x.Phone, &x.LID)
		}
	case *HistoryProgress:
		cs(&p.Sync, &p.Reason)
	case *Lead:
		cs(&p.Phone, &p.LID, &p.Name, &p.NameSource, &p.ChatJID, &p.WAID, &p.Source, &p.Status)
		for i := range p.Tags {
			cs(&p.Tags[i])
		}
		for k, v := range p.Fields {
			if ck := Clean(k); ck != k || Clean(v) != v {
				delete(p.Fields, k)
				p.Fields[ck] = Clean(v)
			}
		}
	case *Webhook:
		cs(&p.Reason, &p.Host)
	}
}

// marshal encodes v as compact JSON without HTML escaping: the contract is
// not HTML, and escaping '<', '>' and '&' as \u003c (6 bytes for 1) would
// let a text within MaxTextRunes outgrow MaxEnvelopeBytes.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
