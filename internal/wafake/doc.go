// Package wafake is a protocol-level fake WhatsApp chat server that drives
// the real, unmodified whatsmeow client offline: Noise handshake with a fake
// certificate root, QR pairing, login, 1:1 Signal-encrypted messages in both
// directions, receipts, the offline queue, and the failures a connector must
// survive (401, 515, replaced, temporary ban, dropped sockets).
//
// # Wiring a client
//
//	wafake.InstallRoot() // once per process; NewServer does it too
//	srv, _ := wafake.NewServer(log) // zerolog; stanzas are logged at debug
//	defer srv.Close()
//	cli := whatsmeow.NewClient(device, waLog.Zerolog(log))
//	srv.Configure(cli) // SetPreLoginHTTPClient + SetWebsocketHTTPClient + SetMediaHTTPClient
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
// Retry receipts work both ways: a contact that cannot decrypt a client's
// message (Contact.ResetSessions simulates a reinstall; a restarted fake
// has forgotten all sessions) answers with <receipt type="retry"> and a
// fresh bundle, and whatsmeow re-sends from its recent-message cache; a
// client that cannot decrypt a contact's message sends a retry receipt and
// the contact re-encrypts the message on a new session.
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
// logger in a ClientLog and call WaitSocketCloses.
//
// # Not implemented
//
// Groups and sender keys, app state, history sync, media upload/download,
// presence and chat states (ignored), more than one companion device per
// account. Contacts' Signal state lives in memory: after the fake restarts,
// a client's old sessions are repaired through retry receipts (which need
// the message in whatsmeow's in-memory recent-message cache).
// Contact.SendText needs the account to have uploaded prekeys (it does at
// its first login).
package wafake
