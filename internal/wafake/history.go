package wafake

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	waBinary "go.mau.fi/whatsmeow/binary"
	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/proto/waWeb"
	"go.mau.fi/whatsmeow/types"
)

// History sync blobs: whatsmeow.MediaHistory and its mms type.
const (
	mediaInfoHistory = "WhatsApp History Keys"
	mmsHistory       = "md-msg-hist"
)

// pairedAccount returns the account of phone if it has a companion device.
func (s *Server) pairedAccount(phone string) (*Account, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[phone]
	if u == nil || u.account == nil || u.account.device == 0 {
		return nil, fmt.Errorf("%w: %s", ErrUnknownAccount, phone)
	}
	return u.account, nil
}

// sendFromPhone makes the account's own primary phone (device 0 of its
// phone number) send msg to its companion device, Signal-encrypted with the
// phone's identity (the ADV account key, which whatsmeow trusts from
// pairing), as a peer message: <message from=PN category="peer"
// type="text">. whatsmeow sees it as IsFromMe and resolves the phone number
// to the account's LID for the session. It is queued like a contact's
// message (redelivered until receipted); a client that cannot decrypt it
// gets it again on a fresh session through its retry receipt.
func (s *Server) sendFromPhone(ctx context.Context, a *Account, msg *waE2E.Message) (string, error) {
	plain, err := proto.Marshal(msg)
	if err != nil {
		return "", err
	}
	u := a.user
	s.mu.Lock()
	if a.device == 0 {
		s.mu.Unlock()
		return "", fmt.Errorf("%w: %s is not paired", ErrUnknownAccount, u.phone)
	}
	addr := a.lidDeviceLocked().SignalAddress()
	var b *bundle
	if !u.peer.hasSession(addr) {
		b = a.accountBundleLocked()
	}
	s.mu.Unlock()
	ct, encType, err := u.peer.encrypt(ctx, addr, b, plain)
	if err != nil {
		return "", fmt.Errorf("wafake: encrypt from the account's phone: %w", err)
	}
	id := newID()
	node := waBinary.Node{Tag: "message", Attrs: waBinary.Attrs{
		"from": u.pn, "id": id, "t": fmt.Sprint(time.Now().Unix()), "type": "text",
		"category": "peer", "push_priority": "high_force",
	}, Content: []waBinary.Node{{Tag: "enc", Attrs: waBinary.Attrs{"v": "2", "type": encType}, Content: ct}}}
	m := &inboundMsg{id: id, acct: a, from: u, node: node, plain: plain}
	s.mu.Lock()
	s.inbound[id] = m
	a.inbox = append(a.inbox, m)
	s.notifyLocked()
	s.mu.Unlock()
	s.flush(a)
	return id, ctx.Err()
}

// SendHistorySync delivers a history sync blob the way the account's phone
// does after pairing: h is marshalled, zlib-compressed, encrypted as media
// of type "WhatsApp History Keys" (whatsmeow.MediaHistory) and put on the
// fake CDN (mms type md-msg-hist); then the account's primary phone sends
// the companion a ProtocolMessage{HISTORY_SYNC_NOTIFICATION} with the
// HistorySyncNotification (hashes, media key, direct path, length, sync
// type, chunk order, progress) as a peer message. It returns the
// notification message's id: whatsmeow answers it with a receipt of type
// "hist_sync" (WaitReceiptType(ctx, id, "hist_sync")). With
// ManualHistorySyncDownload the client emits the events.Message carrying
// the notification and cli.DownloadHistorySync returns h; otherwise it
// downloads it itself and emits events.HistorySync. Queued while the client
// is offline.
func (s *Server) SendHistorySync(ctx context.Context, accountPhone string, h *waHistorySync.HistorySync) (string, error) {
	a, err := s.pairedAccount(accountPhone)
	if err != nil {
		return "", err
	}
	raw, err := proto.Marshal(h)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	if _, err = zw.Write(raw); err == nil {
		err = zw.Close()
	}
	if err != nil {
		return "", err
	}
	compressed := buf.Bytes()
	mediaKey := randomBytes(32)
	enc, err := encryptMedia(mediaKey, compressed, mediaInfoHistory)
	if err != nil {
		return "", err
	}
	fileSHA, encSHA := sha256.Sum256(compressed), sha256.Sum256(enc)
	s.mu.Lock()
	b := s.storeBlobLocked(enc, mmsHistory)
	s.mu.Unlock()
	notif := &waE2E.HistorySyncNotification{
		FileSHA256:    fileSHA[:],
		FileEncSHA256: encSHA[:],
		FileLength:    proto.Uint64(uint64(len(compressed))),
		MediaKey:      mediaKey,
		DirectPath:    proto.String(b.directURL),
		SyncType:      waE2E.HistorySyncType(h.GetSyncType()).Enum(),
		ChunkOrder:    proto.Uint32(h.GetChunkOrder()),
		Progress:      proto.Uint32(h.GetProgress()),
	}
	if ts := oldestTimestamp(h); ts != 0 {
		notif.OldestMsgInChunkTimestampSec = proto.Int64(int64(ts))
	}
	id, err := s.sendFromPhone(ctx, a, &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
		Type:                    waE2E.ProtocolMessage_HISTORY_SYNC_NOTIFICATION.Enum(),
		HistorySyncNotification: notif,
	}})
	if err == nil {
		s.mu.Lock()
		b.msgID = id
		s.mu.Unlock()
	}
	return id, err
}

func oldestTimestamp(h *waHistorySync.HistorySync) uint64 {
	var oldest uint64
	for _, c := range h.GetConversations() {
		for _, m := range c.GetMessages() {
			if ts := m.GetMessage().GetMessageTimestamp(); ts != 0 && (oldest == 0 || ts < oldest) {
				oldest = ts
			}
		}
	}
	return oldest
}

// HistoryConversation is one chat of a history sync built by
// BuildHistorySync.
type HistoryConversation struct {
	Chat types.JID // contact (PN or LID) or group
	// ChatAlt is a direct chat's other address when the phone knows it
	// (the phone number of a LID chat, or the LID of a phone chat): it
	// becomes Conversation.PnJID / LidJID and a PhoneNumberToLidMappings
	// entry, from which whatsmeow stores the mapping.
	ChatAlt     types.JID
	Name        string // group subject or contact name, optional
	UnreadCount uint32
	Messages    []HistoryMessage
}

// HistoryMessage is one message of a HistoryConversation.
type HistoryMessage struct {
	ID        string // default: a new id
	FromMe    bool
	Sender    types.JID // groups: the participant who sent it (not for FromMe)
	PushName  string    // the sender's push name (not for FromMe)
	Text      string    // message{conversation}; ignored when Message is set
	Message   *waE2E.Message
	Timestamp time.Time // default: now
	// Status as the phone stores it; 0 (ERROR) means not set.
	Status waWeb.WebMessageInfo_Status
}

// BuildHistorySync builds a history sync the way the phone writes one:
// every message is a WebMessageInfo with key{remoteJID, fromMe, id,
// participant}, messageTimestamp, message, pushName and status, in the
// order given (msgOrderID 1, 2, …); a conversation's timestamps are its
// newest message's.
func BuildHistorySync(syncType waHistorySync.HistorySync_HistorySyncType, chunkOrder, progress uint32, convs ...HistoryConversation) *waHistorySync.HistorySync {
	h := &waHistorySync.HistorySync{
		SyncType:   syncType.Enum(),
		ChunkOrder: proto.Uint32(chunkOrder),
		Progress:   proto.Uint32(progress),
	}
	for _, c := range convs {
		conv := &waHistorySync.Conversation{ID: proto.String(c.Chat.String())}
		if c.Name != "" {
			conv.Name = proto.String(c.Name)
		}
		if pn, lid := directPair(c.Chat, c.ChatAlt); !pn.IsEmpty() && !lid.IsEmpty() {
			conv.PnJID, conv.LidJID = proto.String(pn.String()), proto.String(lid.String())
			h.PhoneNumberToLidMappings = append(h.PhoneNumberToLidMappings, &waHistorySync.PhoneNumberToLIDMapping{
				PnJID: proto.String(pn.String()), LidJID: proto.String(lid.String()),
			})
		}
		if c.UnreadCount != 0 {
			conv.UnreadCount = proto.Uint32(c.UnreadCount)
		}
		var newest uint64
		for i, m := range c.Messages {
			id := m.ID
			if id == "" {
				id = newID()
			}
			ts := m.Timestamp
			if ts.IsZero() {
				ts = time.Now()
			}
			key := &waCommon.MessageKey{
				RemoteJID: proto.String(c.Chat.String()), FromMe: proto.Bool(m.FromMe), ID: proto.String(id),
			}
			wmi := &waWeb.WebMessageInfo{Key: key, MessageTimestamp: proto.Uint64(uint64(ts.Unix()))}
			if c.Chat.Server == types.GroupServer && !m.FromMe && !m.Sender.IsEmpty() {
				key.Participant = proto.String(m.Sender.ToNonAD().String())
				wmi.Participant = key.Participant
			}
			switch {
			case m.Message != nil:
				wmi.Message = m.Message
			default:
				wmi.Message = &waE2E.Message{Conversation: proto.String(m.Text)}
			}
			if m.PushName != "" && !m.FromMe {
				wmi.PushName = proto.String(m.PushName)
			}
			if m.Status != waWeb.WebMessageInfo_ERROR {
				wmi.Status = m.Status.Enum()
			}
			conv.Messages = append(conv.Messages, &waHistorySync.HistorySyncMsg{Message: wmi, MsgOrderID: proto.Uint64(uint64(i + 1))})
			newest = max(newest, uint64(ts.Unix()))
		}
		if newest != 0 {
			conv.ConversationTimestamp = proto.Uint64(newest)
			conv.LastMsgTimestamp = proto.Uint64(newest)
		}
		h.Conversations = append(h.Conversations, conv)
	}
	return h
}

// directPair orders a chat and its alternative address as (phone, LID);
// empty unless one is each.
func directPair(a, b types.JID) (pn, lid types.JID) {
	a, b = a.ToNonAD(), b.ToNonAD()
	switch {
	case a.Server == types.DefaultUserServer && b.Server == types.HiddenUserServer:
		return a, b
	case a.Server == types.HiddenUserServer && b.Server == types.DefaultUserServer:
		return b, a
	}
	return types.EmptyJID, types.EmptyJID
}

// SetHistoryOnDemand sets how the account's phone answers a client's
// on-demand history request (cli.BuildHistorySyncRequest sent with
// SendMessage(ctx, ownJID, msg, whatsmeow.SendRequestExtra{Peer: true});
// whatsmeow needs a session with its phone, which any earlier message from
// the phone, like a history sync, gives it): f gets the request and returns
// the history to deliver with SendHistorySync (build it with sync type
// ON_DEMAND; a nil SyncType becomes ON_DEMAND), or nil for none. Requests
// are recorded either way (PeerRequests).
func (s *Server) SetHistoryOnDemand(f func(accountPhone string, req *waE2E.PeerDataOperationRequestMessage_HistorySyncOnDemandRequest) *waHistorySync.HistorySync) {
	s.mu.Lock()
	s.onDemand = f
	s.mu.Unlock()
}

// PeerRequests returns the peer data operation requests (on-demand
// history, placeholder resends, …) the account's client sent to its phone.
func (s *Server) PeerRequests(accountPhone string) []*waE2E.PeerDataOperationRequestMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[accountPhone]; u != nil && u.account != nil {
		return append([]*waE2E.PeerDataOperationRequestMessage(nil), u.account.peerReqs...)
	}
	return nil
}

// onOwnPhoneMessage is the account's phone handling what its companion
// sent it: peer data requests are recorded and on-demand history requests
// answered (SetHistoryOnDemand).
func (s *Server) onOwnPhoneMessage(a *Account, msg *waE2E.Message) {
	req := msg.GetProtocolMessage().GetPeerDataOperationRequestMessage()
	if req == nil {
		return
	}
	s.mu.Lock()
	a.peerReqs = append(a.peerReqs, req)
	f := s.onDemand
	s.notifyLocked()
	s.mu.Unlock()
	if f == nil || req.GetPeerDataOperationRequestType() != waE2E.PeerDataOperationRequestType_HISTORY_SYNC_ON_DEMAND {
		return
	}
	go func() {
		h := f(a.user.phone, req.GetHistorySyncOnDemandRequest())
		if h == nil {
			return
		}
		if h.SyncType == nil {
			h.SyncType = waHistorySync.HistorySync_ON_DEMAND.Enum()
		}
		if _, err := s.SendHistorySync(s.ctx, a.user.phone, h); err != nil {
			s.log.Warn().Err(err).Str("phone", a.user.phone).Msg("cannot answer the on-demand history request")
		}
	}()
}
