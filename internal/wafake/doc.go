// Package wafake is a protocol-level fake WhatsApp chat server that drives
// the real, unmodified whatsmeow client offline: Noise handshake with a fake
// certificate root, QR pairing, login, 1:1 Signal-encrypted messages in both
// directions (text, media through a fake CDN, replies, reactions, edits,
// revokes), receipts, media retry, the offline queue, and the failures a
// connector must survive (401, 515, replaced, temporary ban, dropped
// sockets).
//
// # Wiring a client
//
//	wafake.InstallRoot() // once per process; NewServer does it too
//	srv, _ := wafake.NewServer(log) // zerolog; stanzas are logged at debug
//	defer srv.Close()
//	cli := whatsmeow.NewClient(device, waLog.Zerolog(log))
//	srv.Configure(cli) // SetPreLoginHTTPClient + SetWebsocketHTTPClient + SetMediaHTTPClient
//
// In another process (cmd/wafake, the staging stack): NewServerAt(log,
// addr) listens on a fixed address, InstallRootKey(priv) makes the root the
// key from LoadOrCreateRootKey(file) instead of a random one, and
// RootPublicKey is what the other process trusts (internal/wafakeclient
// sets whatsmeow.WACertPubKey to it and dials addr). Count(CountReplaced)
// counts logins that replaced a live connection of the same device.
//
// The client still dials wss://web.whatsapp.com/ws/chat; the HTTP client's
// transport dials the fake's loopback listener instead (DialTLSContext, so
// no TLS is involved). whatsmeow.WACertPubKey is replaced by a fake root key
// that is shared by every Server in the process: InstallRoot never restores
// the real key, so do not talk to the real WhatsApp from a process that
// imports wafake. MessengerConfig is not used (it would switch whatsmeow
// into Messenger mode).
//
// # Pairing
//
// An unpaired client gets <pair-device> refs and emits events.QR. A test
// (or the dev binary's sim mode) hands one of the codes to
// Server.ScanQR(ctx, code, phone): the fake phone of account `phone` signs a
// device identity, the client answers pair-device-sign and emits
// events.PairSuccess, the fake sends stream:error 515 and the client logs in
// again and emits events.Connected. Server.PairClient does all of that for a
// configured client. Phone-number pairing works too: after cli.PairPhone
// returned its code, Server.EnterPairingCode(ctx, phone, code) plays the
// phone typing it (WaitPairingCode waits for the client's request). The account's LID is derived from the phone number
// ("9"+phone@lid) so it is stable across fake instances; a login from a
// device the fake does not know (the fake restarted, the device store did
// not) is accepted and provisions the account (SetAutoProvision(false) to
// fail it with 401 instead).
//
// After <success> the fake answers the prekey count, the prekey upload
// (captured: it is the bundle contacts encrypt to), passive/active and w:p
// pings; any other IQ gets a 501 error so nothing waits for a timeout.
//
// # Messages
//
// Server.Contact(phone) is a fake person with its own Signal identity (an
// in-memory libsignal store). Contact.SendText encrypts to the account's
// device and sends <message from=LID sender_pn=PN type="text"><enc
// type="pkmsg"|"msg"> — so events.Message has Info.Sender = the contact's
// LID and Info.SenderAlt = its phone JID. The fake keeps each inbound
// message until the client sends a <receipt> for it and delivers it again
// at every login (the offline queue), followed by <ib><offline count/></ib>.
// Queued notifications (group changes, server_sync, mediaretry) and
// receipts are sent once per connection until the client acks them.
// WaitReceipt / ReceiptSent / Receipts observe the client's receipts;
// Redeliver sends the identical stanza (same ciphertext) again.
//
// Messages the client sends are answered like the real server does: usync
// device lists (device 0 for contacts; 0 and the companion for accounts),
// LID lookups, prekey bundles (encrypt get <key>), and <ack class="message">
// so SendMessage returns. The contact decrypts its copy; Contact.WaitMessage
// returns it (ID, Text, the full waE2E.Message). Contact.SendReceipt sends a
// delivery/read/played receipt that the client reports as events.Receipt.
// Sending to any phone number works (the contact is created on demand). A
// message to another fake account's companion device is relayed to that
// account's client.
//
// Contact.SendReply quotes a message (ContextInfo StanzaID, Participant =
// the quoted sender's LID, and the quoted message when the fake knows it);
// SendReaction ("" removes, edit="7"), SendEdit (EditedMessage wrapping a
// MESSAGE_EDIT ProtocolMessage, edit="1": events.Message.IsEdit) and
// SendRevoke (REVOKE, edit="7") address the target by id; the key's
// RemoteJID is the account's LID and FromMe is true when the target is a
// message the contact sent itself (the fake knows, so there is no
// parameter). Stanza type ("text", "media", "reaction") and <enc
// mediatype> are set like whatsmeow's own. What a client sends is visible in
// Received: the accessors Reaction, Edit, Revoke and ReplyTo classify it.
// MarkRead's <receipt type="read"> (also with a <list> of ids) is recorded
// per message: Receipts, WaitReceiptType(ctx, id, "read"). The privacy
// query MarkRead makes is answered with read receipts on.
//
// # Sending at scale: registry, pacing, repeats, refusals, typing
//
// IsOnWhatsApp (usync <contact>+<n>@c.us</contact>) is answered from a
// registry (registry.go). By default every number is "in" (created on
// demand) except that a Brazilian mobile is one person under one form:
// when the other form of the number (with or without the 9th digit,
// phone.BrazilVariants) is a known contact, this form answers "out", so a
// client that asks for both variants and takes the JID of the "in" answer
// reaches the registered form (SetBrazilAliasing(true): the other form
// answers "in" with the registered form's JID instead, as the real server
// is reported to do for some numbers). SetRegistered(phone, false) takes
// a number off WhatsApp ("out"; true puts it back); SetStrictRegistry(true)
// makes only the numbers the test created registered (Contact, accounts,
// SetRegistered(…, true), address book entries), not those a client merely
// queried or sent to. A client that sends to a number that is "out"
// anyway gets an empty device list for it (usync devices): SendMessage
// succeeds and the message reaches no contact, like the "ghost chat" of a
// wrong 9th-digit form on the real WhatsApp.
//
// The contacts' phones stamp what they receive on the server's clock
// (SetClock(func() time.Time); nil: wall clock): Received.At, and Seq, a
// server-wide order of messages and chat states. SentBy(accountPhone)
// lists an account's received messages in arrival order across contacts,
// so a test driving a pacer with a fake clock checks the gaps between At.
// A phone shows a repeated message id once: a message whose id the contact
// already has (same chat) is not recorded again in Messages / WaitMessage /
// SentBy, only counted: Contact.Deliveries(id) (DeliveriesIn for a group),
// Server.Repeats across contacts.
//
// Account.FailSends(n, code) refuses the account's clients' next n
// messages (not peer messages to its own phone), FailSendsTo(phone, n,
// code) those to one contact: the fake answers <ack class="message"
// error=code> (SendErrorInvalidStanza 479, SendErrorRateLimited 421,
// SendErrorReachout 463; 0 means 479), whatsmeow's SendMessage returns an
// error wrapping whatsmeow.ErrServerReturnedError ("server returned error
// 479"), and the contact gets nothing. Account.Refused lists them.
//
// Chat states: cli.SendChatPresence sends <chatstate to=…><composing/> (or
// <paused/>, composing media="audio" for recording); the real server
// answers nothing and neither does the fake. It records each per contact
// (Contact.ChatStates) and per account (Server.ChatStates) with its time
// on the server's clock and its Seq, so a test can assert that typing
// preceded a message. They are not relayed to other clients.
// cli.SendPresence (<presence type="available"|"unavailable">) is recorded
// too: Account.Presence.
//
// # Media
//
// The fake is also WhatsApp's media CDN. The media_conn IQ (xmlns w:m)
// announces one host, MediaHost (mmg.whatsapp.net), with an auth token and
// a TTL; the fake's HTTP client (Configure sets it with SetMediaHTTPClient)
// routes that host to the fake's listener too. Uploads are whatsmeow's
// POST /mms/<type>/<token>?auth=…&token=…: the auth must match and the
// token must be the base64url SHA-256 of the body; the answer is WhatsApp's
// JSON {url, direct_path, handle, object_id}, with direct paths like
// /v/t62.7118-24/…_n.enc?ccb=11-4&oh=…&oe=…&_nc_sid=5e03e0. Downloads are
// GETs of the url or of host+direct path (any query), served from memory.
//
// Contact.SendMedia(ctx, phone, kind, data, MediaOptions{…}) plays the
// contact's phone sending an attachment (kind: image, video, ptv, audio,
// ptt, document, sticker): random 32-byte media key, HKDF-SHA256 to 112
// bytes with the kind's info string ("WhatsApp Image Keys", … stickers use
// the image keys), AES-256-CBC, HMAC-SHA256 over iv+ciphertext truncated to
// 10 bytes appended, FileSHA256 of the plaintext, FileEncSHA256 of the
// upload; the message (ImageMessage, VideoMessage, PtvMessage,
// AudioMessage with PTT, DocumentMessage, StickerMessage) carries URL,
// DirectPath, MediaKey, hashes, FileLength, Mimetype and the options, so
// cli.Download returns the bytes. In the other direction, when a client
// sends a message with an attachment, the contact downloads it by direct
// path, checks the hashes and the MAC and decrypts it: Received.Media, or
// Received.MediaErr saying what failed. MediaDownloads (HTTP 200 per
// direct path or message id), MediaDownloadErrors and MediaUploads count
// the traffic.
//
// Expiry and media retry: ExpireMedia(id) makes the attachment's paths
// answer 404 (ExpireMediaStatus for 410 or 403), so Download fails with
// whatsmeow.ErrMediaDownloadFailedWith404 / …410. The client's
// SendMediaRetryReceipt (<receipt type="server-error"> with the encrypted
// ServerErrorReceipt and <rmr>) is counted (MediaRetryRequests) and
// answered by the sending phone: it decrypts the request with the media
// key, re-uploads the same encrypted file to a new direct path and sends
// <notification type="mediaretry"> with the <rmr> echoed and the
// AES-GCM-encrypted MediaRetryNotification (SUCCESS, new DirectPath), which
// whatsmeow reports as events.MediaRetry for DecryptMediaRetryNotification.
// The old URL stays expired: download with the new direct path and no URL
// (or DownloadMediaWithPath). After ForgetMedia(id), or for media the fake
// phone did not send, the answer is <error code="2"/>
// (ErrMediaNotAvailableOnPhone). A request that does not decrypt gets
// DECRYPTION_ERROR. Notifications for an offline client wait in its queue.
//
// Retry receipts work both ways: a contact that cannot decrypt a client's
// message (Contact.ResetSessions simulates a reinstall; a restarted fake
// has forgotten all sessions) answers with <receipt type="retry"> and a
// fresh bundle, and whatsmeow re-sends from its recent-message cache; a
// client that cannot decrypt a contact's message sends a retry receipt and
// the contact re-encrypts the message on a new session.
//
// # LID-only contacts
//
// Contact.SetLIDOnly(true) hides a contact's phone number: its messages
// come from the LID without sender_pn (events.Message: Sender = the LID, no
// SenderAlt; whatsmeow's LID store learns nothing), group stanzas and group
// info carry no participant_pn / phone_number, and usync LID queries for its
// phone number answer no LID. SetLIDOnly(false): the next message carries
// sender_pn again and whatsmeow stores the mapping. Clients can send to a
// bare LID (…@lid): usync device lists and prekey fetches work for LID
// users. UsePNAddressing (from = the phone number, sender_lid) wins over
// SetLIDOnly.
//
// # Groups
//
// Server.CreateGroup(ctx, accountPhone, subject, members...) creates a
// LID-addressed group (120363…@g.us, addressing_mode="lid") with the
// account as creator and superadmin; member accounts' clients get
// <notification type="w:gp2"><create><group …><participant jid=LID
// phone_number=PN type=…/>… (events.JoinedGroup), from the offline queue if
// they are offline. The group info IQ (w:g2, <query request="interactive"/>)
// answers members with the group (subject, s_o, creator, description/topic,
// participants with admin flags), 404 item-not-found for an unknown group
// (whatsmeow.ErrGroupNotFound), 403 forbidden when the account is not a
// member (whatsmeow.ErrNotInGroup). cli.GetJoinedGroups lists the
// account's groups (<participating>); cli.LeaveGroup removes the account
// and notifies the members (<remove reason="leave">).
//
// Contact.SendGroupText / SendGroupMessage play a member's phone: one
// sender-key message (<enc type="skmsg">) plus, for each member account
// that does not have the contact's current sender key yet, a 1:1
// <enc type="pkmsg"|"msg"> carrying the SenderKeyDistributionMessage, in a
// <message from=group participant=LID participant_pn=PN
// addressing_mode="lid" type="text|media|reaction">. whatsmeow emits an
// events.Message for the distribution part (only SenderKeyDistributionMessage
// set) and one for the message (Chat = group, IsGroup, Sender = the LID,
// SenderAlt = the phone unless LID-only). Replies and reactions are
// whatever waE2E.Message the caller builds. Contact.SendGroupMedia is
// SendMedia for the group (ReplyTo quotes a group message with its
// sender's LID; media retry works for every member account).
// Contact.SendGroupReceipt sends
// <receipt from=group participant=LID> (events.Receipt with Chat = group).
//
// A client's cli.SendMessage to a group is answered like WhatsApp: group
// info, usync devices, prekeys; every member contact decrypts its sender
// key distribution and the skmsg; Contact.WaitMessage returns it with
// Received.Chat = the group. A send to a group the account is not in is
// acked with error 403 (404 for an unknown group), so SendMessage fails.
// Group messages are not relayed to other fake accounts' clients.
//
// SetGroupSubject, SetGroupTopic, AddParticipants, RemoveParticipants and
// RemoveAccount change the group and send the w:gp2 notification
// (<subject>, <description>, <add>, <remove>) to every member account
// (removed ones included): events.GroupInfo with Name, Topic, Join, Leave.
// The creator is the actor. After a removal the remaining members rotate
// their sender keys (their next message distributes a new one).
//
// # History sync
//
// Server.SendHistorySync(ctx, accountPhone, h) delivers h like the phone
// after pairing: marshalled, zlib-compressed, encrypted as "WhatsApp History
// Keys" media and put on the fake CDN (mms type md-msg-hist); then the
// account's own primary phone (device 0, whose Signal identity is the ADV
// account key the client trusts from pairing) sends the companion a
// ProtocolMessage{HISTORY_SYNC_NOTIFICATION} as a peer message (<message
// from=PN category="peer">). whatsmeow answers with a receipt of type
// hist_sync (WaitReceiptType(ctx, id, "hist_sync")); with
// ManualHistorySyncDownload it emits the events.Message carrying the
// notification for cli.DownloadHistorySync, otherwise it downloads it and
// emits events.HistorySync. BuildHistorySync(syncType, chunkOrder,
// progress, HistoryConversation{…}) writes WebMessageInfo entries like the
// phone (key{remoteJID, fromMe, id, participant}, messageTimestamp,
// message, pushName, status; ChatAlt adds the PN-LID mapping). Size is not
// limited (the blob is on the CDN). On-demand requests the client sends its
// phone (BuildHistorySyncRequest as a peer message) are recorded
// (PeerRequests) and answered by the SetHistoryOnDemand callback.
//
// # Address book (app state)
//
// Server.SetAddressBook(accountPhone, AddressBookEntry{…}…) adds or updates
// contacts in the account's app state collection critical_unblock_low:
// index ["contact", "<phone>@s.whatsapp.net"] (the LID for a LID-only
// entry), ContactAction{FullName, FirstName, LidJID}, one patch per call,
// encoded with whatsmeow's appstate.Processor (LTHash, index/value/snapshot
// /patch MACs) under a sync key of the account. The account's phone shares
// the key once per companion device (APP_STATE_SYNC_KEY_SHARE peer
// message) at the client's first login after SetAddressBook (or at once if
// it is online); whatsmeow then fetches all five collections (w:sync:app:state;
// the fake never sends snapshots: a full sync replays the patches, the other
// collections are empty). Later calls send <notification
// type="server_sync"><collection name="critical_unblock_low" version/>.
// With cli.EmitAppStateEventsOnFullSync the client emits events.Contact
// per entry; otherwise the full sync stores the names silently. Accounts
// without an address book get no key share (nothing changes for them).
//
// # Failures
//
// Account.Kick(Kick{Kind: …}) throws the live connection off:
//
//   - Kick401: <failure reason="401"/> → events.LoggedOut{OnConnect: true};
//     whatsmeow deletes the device from its store, the fake forgets it.
//   - KickDeviceRemoved: stream:error 401 device_removed → LoggedOut{OnConnect: false}.
//   - Kick515: <stream:error code="515"/> → whatsmeow reconnects (Connected again).
//   - KickReplaced: <stream:error><conflict type="replaced"/> → events.StreamReplaced, no reconnect.
//   - KickBan: <failure reason="402" code expire/> → events.TemporaryBan{Code, Expire};
//     logins during the ban fail the same way (with the remaining expiry).
//   - KickDrop: the socket just closes → events.Disconnected and auto-reconnect.
//
// A second login of the same device while a connection is live replaces the
// old connection (it gets the "replaced" stream error), like the real
// server: two processes sharing one device store fight each other.
//
// By default the fake closes the socket only after the client has handled
// the stanza: it follows the stanza with a harmless <notification
// type="server"> and waits for its ack (whatsmeow handles nodes strictly in
// order). Kick.CloseAfter (and SetCloseImmediately for replacements) closes
// right after writing instead, as the real server may. That is a race inside
// whatsmeow: the read pump sees EOF and cancels the connection context while
// the stanza may still sit in the handler queue. Observed outcomes for
// "replaced" (TestKickReplacedRace):
//
//   - StreamReplaced only: handled in time, no reconnect (most runs);
//   - StreamReplaced and Disconnected, then an automatic reconnect that
//     succeeds — the client is online again although it was told it was
//     replaced;
//   - StreamReplaced and Disconnected, no reconnect (the late handler marked
//     the disconnect expected before the reconnect loop looked);
//   - Disconnected only, reconnect (stanza lost: never seen, possible).
//
// A connector must treat StreamReplaced as "stop" even when a reconnect
// follows, and must not loop when a reconnect is replaced again.
//
// # Data races in whatsmeow
//
// Under -race, whatsmeow (this version) reports races in its own socket code
// when a server-side close runs concurrently with cli.Disconnect() or
// cli.IsConnected() (unsynchronised reads of FrameSocket.conn/closed). Do not
// poll cli.IsConnected() while the server may close the socket (use
// Account.Connected or events), and before calling cli.Disconnect() after a
// server-side close wait until the client has handled it: wrap the client's
// logger in a ClientLog and call WaitSocketCloses. whatsmeow also sends
// receipts and acks from goroutines; Account.WaitSettled waits until the
// client answered everything delivered on its live connection, so a test
// can Disconnect without racing them.
//
// # Not implemented
//
// App state other than the address book (mute, pin, archive, labels,
// push name setting), app state snapshots and external blobs,
// PN-addressed groups, communities, invites and group changes made by the
// client other than leaving (create, subject, participant changes:
// answered 501), relaying
// group messages to other fake accounts' clients, retries of group
// messages, link preview and sticker pack media, newsletters, media sent by
// a client being re-uploaded on retry (only contacts' phones re-upload),
// presence (ignored) and relaying chat states, more than one companion device per
// account. Contacts' Signal state lives in memory: after the fake restarts,
// a client's old sessions are repaired through retry receipts (which need
// the message in whatsmeow's in-memory recent-message cache).
// Contact.SendText needs the account to have uploaded prekeys (it does at
// its first login).
package wafake
