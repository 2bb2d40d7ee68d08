package waconv

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/proto/waWeb"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
)

// History sync (issue #12). After pairing, the phone sends the chats it
// holds in chunks: each chunk is announced by a protocol message from our
// own device carrying a HistorySyncNotification (where to fetch the
// zlib-compressed waHistorySync.HistorySync blob, or the blob itself for
// the first one). The connector queues the notification, fetches the blob
// and streams it through ScanHistory; the conversions here turn what it
// yields into the ordinary message and contact events, the messages
// marked with event.History and carrying the id they would have live.

// HistoryNotificationOf returns the history sync notification an inbound
// event carries, the id of the message that carried it, and its
// timestamp (when the phone sent the history). Only our own device sends
// them: the same protocol message from anyone else is not one.
func HistoryNotificationOf(evt any) (notif *waE2E.HistorySyncNotification, id string, ts time.Time, ok bool) {
	e, isMsg := evt.(*events.Message)
	if !isMsg || e == nil || !e.Info.IsFromMe || e.Info.ID == "" {
		return nil, "", time.Time{}, false
	}
	raw := e.Message
	if raw == nil {
		raw = e.RawMessage
	}
	n := unwrap(raw).GetProtocolMessage().GetHistorySyncNotification()
	if n == nil {
		return nil, "", time.Time{}, false
	}
	return n, e.Info.ID, e.Info.Timestamp, true
}

// HistorySyncName is the contract's name of a sync type (event.History.Sync):
// WhatsApp's enum name in lower case, e.g. initial_bootstrap, recent, full,
// on_demand, push_name; a type this whatsmeow does not know keeps its number.
func HistorySyncName(t waHistorySync.HistorySync_HistorySyncType) string {
	return strings.ToLower(t.String())
}

// HistoryMessage converts a message parsed from a history sync
// (whatsmeow's Client.ParseWebMessage) exactly as the live message would
// be, same id included, with the history marker set and the status the
// phone recorded for it: inbound read (or played) is read, else received;
// outbound delivered, read and played are kept, anything else is sent.
// A message zapbus does not record (protocol, status, channel) maps to
// nothing.
func (c *Converter) HistoryMessage(ctx context.Context, evt *events.Message, mark event.History) ([]event.Envelope, error) {
	envs, err := c.message(ctx, evt)
	if err != nil || len(envs) == 0 {
		return envs, err
	}
	// c.message built and validated the live event; the marker and the
	// status are set on a copy of it, so the two can never differ in
	// anything else.
	for i, env := range envs {
		if env.Type != event.TypeMessage {
			continue
		}
		var m event.Message
		if err := json.Unmarshal(env.Data, &m); err != nil {
			return nil, fmt.Errorf("waconv: history message %q: %w", evt.Info.ID, err)
		}
		m.History = &event.History{Sync: mark.Sync, SyncedAt: mark.SyncedAt.UTC()}
		m.Status = historyStatus(m.Direction, evt.SourceWebMsg.GetStatus())
		if envs[i], err = c.fit(evt.Info.ID, env.OccurredAt, &m); err != nil {
			return nil, err
		}
	}
	return envs, nil
}

func historyStatus(dir event.Direction, st waWeb.WebMessageInfo_Status) event.MessageStatus {
	if dir == event.DirectionIn {
		if st == waWeb.WebMessageInfo_READ || st == waWeb.WebMessageInfo_PLAYED {
			return event.MessageRead
		}
		return event.MessageReceived
	}
	switch st {
	case waWeb.WebMessageInfo_DELIVERY_ACK:
		return event.MessageDelivered
	case waWeb.WebMessageInfo_READ:
		return event.MessageRead
	case waWeb.WebMessageInfo_PLAYED:
		return event.MessagePlayed
	}
	// ERROR is also what an unset status reads as: the message is in the
	// phone's history, so it was sent.
	return event.MessageSent
}

// HistoryPushName converts a push name from a history sync into a contact
// event observed at syncedAt (so a redone chunk publishes the same id).
func (c *Converter) HistoryPushName(ctx context.Context, p *waHistorySync.Pushname, syncedAt time.Time) ([]event.Envelope, error) {
	jid, err := types.ParseJID(p.GetID())
	if err != nil {
		return nil, nil
	}
	at := *c
	at.Now = func() time.Time { return syncedAt }
	return at.pushName(ctx, &events.PushName{JID: jid, NewPushName: p.GetPushname()})
}

// HistoryLIDPair parses a phone number ↔ LID pair of a history sync (a
// PhoneNumberToLIDMapping, or a conversation's pnJID and lidJID); false
// when either is missing or not a user of the right server.
func HistoryLIDPair(pnJID, lidJID string) (pn, lid types.JID, ok bool) {
	if pnJID == "" || lidJID == "" {
		return types.JID{}, types.JID{}, false
	}
	p, err1 := types.ParseJID(pnJID)
	l, err2 := types.ParseJID(lidJID)
	if err1 != nil || err2 != nil {
		return types.JID{}, types.JID{}, false
	}
	p, l = canonical(p), canonical(l)
	if p.Server != types.DefaultUserServer || l.Server != types.HiddenUserServer || p.User == "" || l.User == "" ||
		phone.FromJID(p.String()) == "" {
		return types.JID{}, types.JID{}, false
	}
	return p, l, true
}

// HistoryLIDContact is the contact event telling the persister that a
// phone number and a LID are the same person, observed at syncedAt.
func (c *Converter) HistoryLIDContact(pn, lid types.JID, syncedAt time.Time) (event.Envelope, error) {
	digits := phone.FromJID(pn.String())
	return c.contactEnvelope(syncedAt, &event.Contact{JID: phone.JID(digits), Phone: digits, LID: lid.String()})
}

// HistoryProgress is the progress event of one chunk, id
// <mentorado>:history:<notification id>, occurred now.
func (c *Converter) HistoryProgress(notificationID string, p *event.HistoryProgress) (event.Envelope, error) {
	env, err := event.New(c.Mentorado, event.HistoryEventID(c.Mentorado, notificationID), c.now(), p)
	if err != nil {
		return event.Envelope{}, fmt.Errorf("waconv: history progress %q: %w", notificationID, err)
	}
	return env, nil
}

// ErrHistoryCorrupt wraps every error of a blob that cannot be read as a
// history sync: retrying cannot help.
var ErrHistoryCorrupt = errors.New("waconv: corrupt history sync")

// MaxHistoryField bounds one top-level entry of a history sync (one
// conversation with its messages): larger is taken for corruption rather
// than allocated.
const MaxHistoryField = 128 << 20

// HistoryHeader is what a history sync says about itself.
type HistoryHeader struct {
	SyncType   waHistorySync.HistorySync_HistorySyncType
	ChunkOrder int
	Progress   int
	// Conversations counts the conversation entries, Statuses the status
	// updates (statusV3Messages), which zapbus does not record.
	Conversations, Statuses int
}

// HistoryVisitor receives the entries of a history sync one at a time; a
// nil function skips its entries without decoding them. An error a
// function returns stops the scan and is returned as it is.
type HistoryVisitor struct {
	Conversation func(*waHistorySync.Conversation) error
	Pushname     func(*waHistorySync.Pushname) error
	Mapping      func(*waHistorySync.PhoneNumberToLIDMapping) error
	Settings     func(*waHistorySync.GlobalSettings) error
}

// Field numbers of waHistorySync.HistorySync (WAWebProtobufsHistorySync.proto).
const (
	hsSyncType        = 1
	hsConversations   = 2
	hsStatusMessages  = 3
	hsChunkOrder      = 5
	hsProgress        = 6
	hsPushnames       = 7
	hsGlobalSettings  = 8
	hsPNToLIDMappings = 15
)

// ScanHistory reads a decompressed waHistorySync.HistorySync from r one
// top-level field at a time, decoding one conversation (push name,
// mapping) at a time, so memory holds one entry, never the whole sync. The
// header is complete only when the scan is: WhatsApp writes chunkOrder and
// progress after the conversations.
func ScanHistory(r io.Reader, v HistoryVisitor) (HistoryHeader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	var h HistoryHeader
	var buf []byte
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrHistoryCorrupt, fmt.Sprintf(format, args...))
	}
	for {
		tag, err := binaryUvarint(br)
		if err == io.EOF {
			return h, nil
		}
		if err != nil {
			return h, corrupt("tag: %v", err)
		}
		num, typ := protowire.DecodeTag(tag)
		if num <= 0 {
			return h, corrupt("field number %d", num)
		}
		switch typ {
		case protowire.VarintType:
			x, err := binaryUvarint(br)
			if err != nil {
				return h, corrupt("field %d: %v", num, err)
			}
			switch num {
			case hsSyncType:
				h.SyncType = waHistorySync.HistorySync_HistorySyncType(int32(x))
			case hsChunkOrder:
				h.ChunkOrder = int(uint32(x))
			case hsProgress:
				h.Progress = int(uint32(x))
			}
			continue
		case protowire.Fixed32Type, protowire.Fixed64Type:
			n := 4
			if typ == protowire.Fixed64Type {
				n = 8
			}
			if _, err := br.Discard(n); err != nil {
				return h, corrupt("field %d: %v", num, err)
			}
			continue
		case protowire.BytesType:
		default:
			return h, corrupt("field %d: wire type %d", num, typ)
		}
		size, err := binaryUvarint(br)
		if err != nil {
			return h, corrupt("field %d length: %v", num, err)
		}
		if size > MaxHistoryField {
			return h, corrupt("field %d: %d bytes", num, size)
		}
		var msg proto.Message
		var visit func() error
		switch num {
		case hsConversations:
			h.Conversations++
			if v.Conversation != nil {
				c := &waHistorySync.Conversation{}
				msg, visit = c, func() error { return v.Conversation(c) }
			}
		case hsStatusMessages:
			h.Statuses++
		case hsPushnames:
			if v.Pushname != nil {
				p := &waHistorySync.Pushname{}
				msg, visit = p, func() error { return v.Pushname(p) }
			}
		case hsGlobalSettings:
			if v.Settings != nil {
				g := &waHistorySync.GlobalSettings{}
				msg, visit = g, func() error { return v.Settings(g) }
			}
		case hsPNToLIDMappings:
			if v.Mapping != nil {
				m := &waHistorySync.PhoneNumberToLIDMapping{}
				msg, visit = m, func() error { return v.Mapping(m) }
			}
		}
		if msg == nil {
			if n, err := br.Discard(int(size)); err != nil {
				return h, corrupt("field %d: %d of %d bytes: %v", num, n, size, err)
			}
			continue
		}
		if uint64(cap(buf)) < size {
			buf = make([]byte, size)
		}
		buf = buf[:size]
		if _, err := io.ReadFull(br, buf); err != nil {
			return h, corrupt("field %d: %v", num, err)
		}
		// Unmarshal copies what it keeps, so buf is reused for the next
		// entry; a huge one is not kept alive for small ones.
		err = proto.Unmarshal(buf, msg)
		if size > 4<<20 {
			buf = nil
		}
		if err != nil {
			return h, corrupt("field %d: %v", num, err)
		}
		if err := visit(); err != nil {
			return h, err
		}
	}
}

// binaryUvarint reads a protobuf varint; io.EOF only when r ends before
// its first byte.
func binaryUvarint(r io.ByteReader) (uint64, error) {
	var x uint64
	for i := 0; i < 10; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if i > 0 && err == io.EOF {
				return 0, io.ErrUnexpectedEOF
			}
			return 0, err
		}
		x |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return x, nil
		}
	}
	return 0, errors.New("varint overflow")
}
