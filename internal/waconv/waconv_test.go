package waconv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waSyncAction"
	"go.mau.fi/whatsmeow/proto/waVnameCert"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json golden files")

const mentorado = 42

var (
	ts  = time.Date(2025, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	now = time.Date(2025, 1, 2, 9, 0, 0, 0, time.UTC)

	me       = jid("5511900000001:3@s.whatsapp.net") // the mentorado's companion device
	meLID    = jid("100000000000001:3@lid")
	alice    = jid("5511987654321@s.whatsapp.net")
	aliceDev = jid("5511987654321:2@s.whatsapp.net")
	aliceLID = jid("200000000000001@lid")
	bobLID   = jid("300000000000001:1@lid")        // no phone anywhere
	carolLID = jid("400000000000001@lid")          // phone only in the LID store
	carol    = jid("5521998765432@s.whatsapp.net") // what the store says
	group    = jid("120363000000000001@g.us")
	blist    = jid("1736000000@broadcast")
)

func jid(s string) types.JID {
	j, err := types.ParseJID(s)
	if err != nil {
		panic(err)
	}
	return j
}

// fakeLIDs is an in-memory LIDStore: whatsmeow's interface, not a database.
type fakeLIDs struct {
	pn    map[string]types.JID // LID user → PN
	err   error
	calls int
}

func (f *fakeLIDs) GetPNForLID(_ context.Context, lid types.JID) (types.JID, error) {
	f.calls++
	if f.err != nil {
		return types.JID{}, f.err
	}
	if lid.Server != types.HiddenUserServer {
		return types.JID{}, errors.New("non-LID JID") // as whatsmeow's sqlstore does
	}
	return f.pn[lid.User], nil
}

func newLIDs() *fakeLIDs {
	return &fakeLIDs{pn: map[string]types.JID{carolLID.User: carol}}
}

func converter(lids LIDStore) *Converter {
	return &Converter{Mentorado: mentorado, LIDs: lids, Now: func() time.Time { return now }}
}

// inbound DM from alice, addressed by phone number with her LID as alternate.
func fromAlice() types.MessageSource {
	return types.MessageSource{Chat: alice, Sender: aliceDev, SenderAlt: aliceLID, AddressingMode: types.AddressingModePN}
}

// outbound DM to alice, sent from the mentorado's phone or from zapbus.
func toAlice() types.MessageSource {
	return types.MessageSource{Chat: alice, Sender: me, IsFromMe: true, RecipientAlt: aliceLID}
}

func msg(src types.MessageSource, id, push string, m *waE2E.Message) *events.Message {
	return &events.Message{
		Info:       types.MessageInfo{MessageSource: src, ID: id, PushName: push, Timestamp: ts, Type: "text"},
		Message:    m,
		RawMessage: m,
	}
}

// dispatched builds the event the way whatsmeow dispatches it: raw message
// unwrapped by UnwrapRaw.
func dispatched(src types.MessageSource, id, push string, raw *waE2E.Message) *events.Message {
	evt := &events.Message{
		Info:       types.MessageInfo{MessageSource: src, ID: id, PushName: push, Timestamp: ts},
		RawMessage: raw,
	}
	return evt.UnwrapRaw()
}

// rawOnly is what a simulated client may emit: only RawMessage, still wrapped.
func rawOnly(src types.MessageSource, id string, raw *waE2E.Message) *events.Message {
	return &events.Message{Info: types.MessageInfo{MessageSource: src, ID: id, Timestamp: ts}, RawMessage: raw}
}

func text(s string) *waE2E.Message { return &waE2E.Message{Conversation: proto.String(s)} }

func key(id string, fromMe bool) *waCommon.MessageKey {
	return &waCommon.MessageKey{RemoteJID: proto.String(alice.String()), FromMe: proto.Bool(fromMe), ID: proto.String(id)}
}

func edit(target string, content *waE2E.Message) *waE2E.Message {
	return &waE2E.Message{EditedMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{
		ProtocolMessage: &waE2E.ProtocolMessage{
			Key:           key(target, true),
			Type:          waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(),
			EditedMessage: content,
			TimestampMS:   proto.Int64(ts.UnixMilli()),
		},
	}}}
}

type golden struct {
	name  string
	evt   any
	lids  bool // use the fake LID store
	wantN int
}

func goldenCases() []golden {
	reply := &waE2E.ContextInfo{StanzaID: proto.String("QUOTED1"), Participant: proto.String(alice.String())}
	return []golden{
		// Messages: direction and identity.
		{name: "msg_text_in_pn", wantN: 2, evt: msg(fromAlice(), "IN1", "Alice", text("olá, tudo bem?"))},
		{name: "msg_text_in_lid_addressing", wantN: 2, evt: msg(types.MessageSource{
			Chat: aliceLID, Sender: jid("200000000000001:2@lid"), SenderAlt: aliceDev, AddressingMode: types.AddressingModeLID,
		}, "IN2", "Alice", text("via LID"))},
		{name: "msg_text_in_lid_store", lids: true, wantN: 2, evt: msg(types.MessageSource{
			Chat: carolLID, Sender: carolLID, AddressingMode: types.AddressingModeLID,
		}, "IN3", "Carol", text("resolved by the LID store"))},
		{name: "msg_text_in_lid_unknown", lids: true, wantN: 2, evt: msg(types.MessageSource{
			Chat: bobLID.ToNonAD(), Sender: bobLID, AddressingMode: types.AddressingModeLID,
		}, "IN4", "Bob", text("nobody knows my number"))},
		{name: "msg_text_in_no_pushname", wantN: 1, evt: msg(fromAlice(), "IN5", "", text("no push name"))},
		{name: "msg_text_out_pn", wantN: 1, evt: msg(toAlice(), "OUT1", "Mentorado", text("resposta do celular"))},
		{name: "msg_text_out_lid_chat", wantN: 1, evt: msg(types.MessageSource{
			Chat: aliceLID, Sender: meLID, IsFromMe: true, RecipientAlt: alice,
		}, "OUT2", "", text("to a LID chat"))},
		{name: "msg_text_out_lid_store", lids: true, wantN: 1, evt: msg(types.MessageSource{
			Chat: carolLID, Sender: meLID, IsFromMe: true,
		}, "OUT3", "", text("to carol"))},
		{name: "msg_business_in", wantN: 2, evt: func() *events.Message {
			e := msg(fromAlice(), "IN6", "Alice", text("from a business"))
			e.Info.VerifiedName = &types.VerifiedName{Details: &waVnameCert.VerifiedNameCertificate_Details{VerifiedName: proto.String("Alice Ltda")}}
			return e
		}()},

		// Messages: content kinds.
		{name: "msg_extended_text_reply", wantN: 1, evt: msg(fromAlice(), "EXT1", "", &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{
			Text: proto.String("see https://example.com"), ContextInfo: reply,
		}})},
		{name: "msg_image_caption", wantN: 1, evt: msg(fromAlice(), "IMG1", "", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			Caption: proto.String("a photo"), Mimetype: proto.String("image/jpeg"), ContextInfo: reply,
		}})},
		{name: "msg_video", wantN: 1, evt: msg(fromAlice(), "VID1", "", &waE2E.Message{VideoMessage: &waE2E.VideoMessage{
			Caption: proto.String("a video"), Seconds: proto.Uint32(12),
		}})},
		{name: "msg_video_note", wantN: 1, evt: msg(fromAlice(), "PTV1", "", &waE2E.Message{PtvMessage: &waE2E.VideoMessage{Seconds: proto.Uint32(5)}})},
		{name: "msg_image_media", wantN: 1, evt: msg(fromAlice(), "IMG2", "", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
			Caption: proto.String("recibo"), Mimetype: proto.String("image/jpeg"), FileSHA256: bytes.Repeat([]byte{0xAB}, 32), FileLength: proto.Uint64(204800),
			Width: proto.Uint32(1080), Height: proto.Uint32(1920), JPEGThumbnail: []byte("\xff\xd8thumb"),
			MediaKey: bytes.Repeat([]byte{0x5E}, 32), DirectPath: proto.String("/v/t62/secret"), FileEncSHA256: bytes.Repeat([]byte{0xCD}, 32),
		}})},
		{name: "msg_audio_ptt", wantN: 1, evt: msg(fromAlice(), "AUD1", "", &waE2E.Message{AudioMessage: &waE2E.AudioMessage{PTT: proto.Bool(true), Seconds: proto.Uint32(7)}})},
		{name: "msg_document_with_caption", wantN: 1, evt: dispatched(fromAlice(), "DOC1", "", &waE2E.Message{DocumentWithCaptionMessage: &waE2E.FutureProofMessage{
			Message: &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{FileName: proto.String("proposta.pdf"), Caption: proto.String("segue a proposta")}},
		}})},
		{name: "msg_sticker", wantN: 1, evt: msg(fromAlice(), "STK1", "", &waE2E.Message{StickerMessage: &waE2E.StickerMessage{IsAnimated: proto.Bool(true)}})},
		{name: "msg_location", wantN: 1, evt: msg(fromAlice(), "LOC1", "", &waE2E.Message{LocationMessage: &waE2E.LocationMessage{
			DegreesLatitude: proto.Float64(-23.55052), DegreesLongitude: proto.Float64(-46.633308),
			Name: proto.String("Praça da Sé"), Address: proto.String("São Paulo, SP"),
		}})},
		{name: "msg_live_location", wantN: 1, evt: msg(fromAlice(), "LOC2", "", &waE2E.Message{LiveLocationMessage: &waE2E.LiveLocationMessage{
			DegreesLatitude: proto.Float64(-22.9068), DegreesLongitude: proto.Float64(-43.1729), Caption: proto.String("on my way"),
		}})},
		{name: "msg_contact_card", wantN: 1, evt: msg(fromAlice(), "VC1", "", &waE2E.Message{ContactMessage: &waE2E.ContactMessage{
			DisplayName: proto.String("Dr. João"), Vcard: proto.String("BEGIN:VCARD\nVERSION:3.0\nFN:Dr. João\nEND:VCARD"),
		}})},
		{name: "msg_contact_cards", wantN: 1, evt: msg(fromAlice(), "VC2", "", &waE2E.Message{ContactsArrayMessage: &waE2E.ContactsArrayMessage{
			DisplayName: proto.String("2 contacts"),
			Contacts:    []*waE2E.ContactMessage{{DisplayName: proto.String("Ana")}, {DisplayName: proto.String("Bruno")}},
		}})},
		{name: "msg_reaction", wantN: 1, evt: msg(fromAlice(), "REACT1", "", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
			Key: key("OUT1", false), Text: proto.String("👍"), SenderTimestampMS: proto.Int64(ts.UnixMilli()),
		}})},
		{name: "msg_reaction_removed", wantN: 1, evt: msg(toAlice(), "REACT2", "", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{
			Key: key("IN1", false), Text: proto.String(""),
		}})},
		{name: "msg_edit", wantN: 1, evt: dispatched(toAlice(), "EDIT1", "", edit("OUT1", text("corrected text")))},
		{name: "msg_edit_caption_raw_only", wantN: 1, evt: rawOnly(toAlice(), "EDIT2", edit("IMG9", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("new caption")}}))},
		{name: "msg_revoke", wantN: 1, evt: msg(fromAlice(), "REV1", "", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
			Type: waE2E.ProtocolMessage_REVOKE.Enum(), Key: key("IN1", false),
		}})},
		{name: "msg_poll", wantN: 1, evt: msg(fromAlice(), "POLL1", "", &waE2E.Message{PollCreationMessageV3: &waE2E.PollCreationMessage{
			Name:    proto.String("Melhor horário?"),
			Options: []*waE2E.PollCreationMessage_Option{{OptionName: proto.String("manhã")}, {OptionName: proto.String("tarde")}},
		}})},
		{name: "msg_ephemeral_raw_only", wantN: 1, evt: rawOnly(fromAlice(), "EPH1", &waE2E.Message{EphemeralMessage: &waE2E.FutureProofMessage{
			Message: &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("disappearing")}},
		}})},
		{name: "msg_view_once_dispatched", wantN: 1, evt: dispatched(fromAlice(), "VO1", "", &waE2E.Message{ViewOnceMessageV2: &waE2E.FutureProofMessage{
			Message: &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("once"), ViewOnce: proto.Bool(true)}},
		}})},
		{name: "msg_device_sent_raw_only", wantN: 1, evt: rawOnly(toAlice(), "DS1", &waE2E.Message{DeviceSentMessage: &waE2E.DeviceSentMessage{
			DestinationJID: proto.String(alice.String()), Message: text("sent from the phone"),
		}})},
		{name: "msg_buttons_reply", wantN: 1, evt: msg(fromAlice(), "BTN1", "", &waE2E.Message{ButtonsResponseMessage: &waE2E.ButtonsResponseMessage{
			SelectedButtonID: proto.String("yes"), Response: &waE2E.ButtonsResponseMessage_SelectedDisplayText{SelectedDisplayText: "Sim, quero"},
		}})},
		{name: "msg_other", wantN: 1, evt: msg(fromAlice(), "OTHER1", "", &waE2E.Message{PollUpdateMessage: &waE2E.PollUpdateMessage{
			PollCreationMessageKey: key("POLL1", false),
		}})},
		{name: "msg_with_sender_key", wantN: 1, evt: msg(types.MessageSource{Chat: group, Sender: aliceDev, IsGroup: true}, "SKD2", "", &waE2E.Message{
			SenderKeyDistributionMessage: &waE2E.SenderKeyDistributionMessage{GroupID: proto.String(group.String())},
			Conversation:                 proto.String("first group message"),
		})},

		// Messages: groups and broadcasts.
		{name: "msg_group_in_lid", wantN: 2, evt: msg(types.MessageSource{
			Chat: group, Sender: jid("200000000000001:2@lid"), SenderAlt: aliceDev, IsGroup: true, AddressingMode: types.AddressingModeLID,
		}, "GRP1", "Alice", text("hello group"))},
		{name: "msg_group_out", wantN: 1, evt: msg(types.MessageSource{Chat: group, Sender: me, IsFromMe: true, IsGroup: true}, "GRP2", "", text("hi all"))},
		{name: "msg_broadcast_list_in", wantN: 1, evt: msg(types.MessageSource{Chat: blist, Sender: aliceDev, IsGroup: true}, "BL1", "", text("broadcast"))},

		// Messages that map to nothing.
		{name: "skip_status_broadcast", wantN: 0, evt: msg(types.MessageSource{Chat: types.StatusBroadcastJID, Sender: aliceDev, IsGroup: true}, "ST1", "Alice", text("my status"))},
		{name: "skip_newsletter", wantN: 0, evt: msg(types.MessageSource{Chat: jid("120363999999999999@newsletter"), Sender: jid("120363999999999999@newsletter")}, "NL1", "", text("channel post"))},
		{name: "skip_history_sync_notification", wantN: 0, evt: msg(types.MessageSource{Chat: me.ToNonAD(), Sender: jid("5511900000001@s.whatsapp.net"), IsFromMe: true}, "HS1", "", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
			Type: waE2E.ProtocolMessage_HISTORY_SYNC_NOTIFICATION.Enum(), HistorySyncNotification: &waE2E.HistorySyncNotification{ChunkOrder: proto.Uint32(1)},
		}})},
		{name: "skip_app_state_key_share", wantN: 0, evt: msg(types.MessageSource{Chat: me.ToNonAD(), Sender: me, IsFromMe: true}, "KS1", "", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
			Type: waE2E.ProtocolMessage_APP_STATE_SYNC_KEY_SHARE.Enum(),
		}})},
		{name: "skip_sender_key_only", wantN: 0, evt: msg(types.MessageSource{Chat: group, Sender: aliceDev, IsGroup: true}, "SKD1", "Alice", &waE2E.Message{
			SenderKeyDistributionMessage: &waE2E.SenderKeyDistributionMessage{GroupID: proto.String(group.String())},
			MessageContextInfo:           &waE2E.MessageContextInfo{MessageSecret: []byte("secret")},
		})},
		{name: "skip_no_content", wantN: 0, evt: &events.Message{Info: types.MessageInfo{MessageSource: fromAlice(), ID: "NIL1", Timestamp: ts}}},

		// Receipts.
		{name: "rcpt_delivered", wantN: 1, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: aliceDev, SenderAlt: aliceLID},
			MessageIDs: []string{"OUT1"}, Timestamp: ts, Type: types.ReceiptTypeDelivered}},
		{name: "rcpt_read_many", wantN: 1, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: aliceDev},
			MessageIDs: []string{"OUT3", "OUT1", "OUT2"}, Timestamp: ts, Type: types.ReceiptTypeRead}},
		{name: "rcpt_read_by_me", wantN: 1, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: me, IsFromMe: true, RecipientAlt: aliceLID},
			MessageIDs: []string{"IN1"}, Timestamp: ts, Type: types.ReceiptTypeRead}},
		{name: "rcpt_read_self", wantN: 1, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: aliceLID, Sender: meLID, IsFromMe: true},
			MessageIDs: []string{"IN2"}, Timestamp: ts, Type: types.ReceiptTypeReadSelf}},
		{name: "rcpt_played", wantN: 1, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: carolLID, Sender: carolLID, AddressingMode: types.AddressingModeLID},
			MessageIDs: []string{"OUT9"}, Timestamp: ts, Type: types.ReceiptTypePlayed}, lids: true},
		{name: "rcpt_played_self", wantN: 1, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: me, IsFromMe: true},
			MessageIDs: []string{"AUD1"}, Timestamp: ts, Type: types.ReceiptTypePlayedSelf}},
		{name: "rcpt_group_read", wantN: 1, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: group, Sender: jid("200000000000001:2@lid"), SenderAlt: aliceDev, IsGroup: true},
			MessageIDs: []string{"GRP2"}, Timestamp: ts, Type: types.ReceiptTypeRead}},
		{name: "rcpt_no_timestamp", wantN: 1, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: aliceDev},
			MessageIDs: []string{"OUT1"}, Type: types.ReceiptTypeDelivered}},
		{name: "skip_rcpt_retry", wantN: 0, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: aliceDev}, MessageIDs: []string{"OUT1"}, Timestamp: ts, Type: types.ReceiptTypeRetry}},
		{name: "skip_rcpt_sender", wantN: 0, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: jid("5511900000001:1@s.whatsapp.net"), IsFromMe: true}, MessageIDs: []string{"OUT1"}, Timestamp: ts, Type: types.ReceiptTypeSender}},
		{name: "skip_rcpt_server_error", wantN: 0, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: aliceDev}, MessageIDs: []string{"OUT1"}, Timestamp: ts, Type: types.ReceiptTypeServerError}},
		{name: "skip_rcpt_inactive", wantN: 0, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: aliceDev}, MessageIDs: []string{"OUT1"}, Timestamp: ts, Type: types.ReceiptTypeInactive}},
		{name: "skip_rcpt_peer_msg", wantN: 0, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: me.ToNonAD(), Sender: me, IsFromMe: true}, MessageIDs: []string{"P1"}, Timestamp: ts, Type: types.ReceiptTypePeerMsg}},
		{name: "skip_rcpt_status", wantN: 0, evt: &events.Receipt{MessageSource: types.MessageSource{Chat: types.StatusBroadcastJID, Sender: aliceDev, IsGroup: true}, MessageIDs: []string{"S1"}, Timestamp: ts, Type: types.ReceiptTypeRead}},

		// Contacts.
		{name: "contact_push_name", wantN: 1, evt: &events.PushName{JID: aliceDev, JIDAlt: aliceLID, OldPushName: "Ali", NewPushName: "Alice",
			Message: &types.MessageInfo{MessageSource: fromAlice(), ID: "IN1", Timestamp: ts}}},
		{name: "contact_push_name_lid_store", lids: true, wantN: 1, evt: &events.PushName{JID: carolLID, NewPushName: "Carol"}},
		{name: "contact_push_name_lid_unknown", lids: true, wantN: 1, evt: &events.PushName{JID: bobLID, NewPushName: "Bob"}},
		{name: "contact_address_book", wantN: 1, evt: &events.Contact{JID: alice, Timestamp: ts, Action: &waSyncAction.ContactAction{
			FullName: proto.String("Alice Souza"), FirstName: proto.String("Alice"), LidJID: proto.String(aliceLID.String()),
		}}},
		{name: "contact_address_book_first_name_lid", lids: true, wantN: 1, evt: &events.Contact{JID: carolLID, Timestamp: ts, Action: &waSyncAction.ContactAction{
			FirstName: proto.String("Carol"),
		}}},
		{name: "contact_address_book_pn_in_action", wantN: 1, evt: &events.Contact{JID: bobLID.ToNonAD(), Timestamp: ts, Action: &waSyncAction.ContactAction{
			FullName: proto.String("Bob Lima"), PnJID: proto.String("5531987650000@s.whatsapp.net"),
		}}},
		{name: "contact_business_name", wantN: 1, evt: &events.BusinessName{JID: aliceDev, NewBusinessName: "Alice Ltda",
			Message: &types.MessageInfo{MessageSource: fromAlice(), ID: "IN6", Timestamp: ts}}},
		{name: "skip_contact_no_name", wantN: 0, evt: &events.Contact{JID: alice, Timestamp: ts, Action: &waSyncAction.ContactAction{}}},
		{name: "skip_contact_nil_action", wantN: 0, evt: &events.Contact{JID: alice, Timestamp: ts}},
		{name: "skip_push_name_empty", wantN: 0, evt: &events.PushName{JID: aliceDev, OldPushName: "Alice"}},
		{name: "skip_push_name_group", wantN: 0, evt: &events.PushName{JID: group, NewPushName: "weird"}},

		// Not ours.
		{name: "skip_connected", wantN: 0, evt: &events.Connected{}},
		{name: "skip_qr", wantN: 0, evt: &events.QR{Codes: []string{"2@secret"}}},
		{name: "skip_nil_message", wantN: 0, evt: (*events.Message)(nil)},
		{name: "skip_nil", wantN: 0, evt: nil},
	}
}

// TestGolden converts each case and compares the envelopes with
// testdata/<name>.json. Run with -update to rewrite the files, then review
// the diff.
func TestGolden(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range goldenCases() {
		if seen[tc.name] {
			t.Fatalf("duplicate case %s", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			var lids LIDStore
			if tc.lids {
				lids = newLIDs()
			}
			envs, err := converter(lids).Convert(t.Context(), tc.evt)
			if err != nil {
				t.Fatalf("Convert: %v", err)
			}
			if len(envs) != tc.wantN {
				t.Fatalf("got %d envelopes, want %d", len(envs), tc.wantN)
			}
			for _, env := range envs {
				roundTrip(t, env)
			}
			if tc.wantN == 0 {
				return
			}
			got, err := json.MarshalIndent(envs, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs (run go test -update and review the diff)\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
	// Every golden file belongs to a case, so renamed cases leave nothing stale.
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, f := range files {
		if name := filepath.Base(f); !seen[name[:len(name)-len(".json")]] {
			t.Errorf("stale golden file %s", f)
		}
	}
}

// roundTrip checks that what Convert built is what a consumer will decode.
func roundTrip(t *testing.T, env event.Envelope) {
	t.Helper()
	b, err := env.Encode()
	if err != nil {
		t.Fatalf("encode %s: %v", env.ID, err)
	}
	got, _, err := event.Decode(b)
	if err != nil {
		t.Fatalf("decode %s: %v", env.ID, err)
	}
	if got.ID != env.ID || got.MentoradoID != mentorado {
		t.Fatalf("round trip: %+v", got)
	}
}

// payloads converts evt and decodes the payloads, for explicit assertions.
func payloads(t *testing.T, c *Converter, evt any) ([]event.Envelope, []event.Payload) {
	t.Helper()
	envs, err := c.Convert(t.Context(), evt)
	if err != nil {
		t.Fatalf("Convert: %v", err)
	}
	ps := make([]event.Payload, len(envs))
	for i, env := range envs {
		p, err := env.Payload()
		if err != nil {
			t.Fatalf("payload %d: %v", i, err)
		}
		ps[i] = p
	}
	return envs, ps
}

func TestMessageIdentity(t *testing.T) {
	tests := []struct {
		name             string
		src              types.MessageSource
		lids             bool
		dir              event.Direction
		phone, lid, chat string
		contactJID       string // "" when no contact is expected
	}{
		{"in pn", fromAlice(), false, event.DirectionIn, "5511987654321", "200000000000001@lid", "5511987654321@s.whatsapp.net", "5511987654321@s.whatsapp.net"},
		{"in lid with pn alt", types.MessageSource{Chat: aliceLID, Sender: aliceLID, SenderAlt: alice, AddressingMode: types.AddressingModeLID},
			false, event.DirectionIn, "5511987654321", "200000000000001@lid", "200000000000001@lid", "5511987654321@s.whatsapp.net"},
		{"in lid from store", types.MessageSource{Chat: carolLID, Sender: carolLID}, true, event.DirectionIn, "5521998765432", "400000000000001@lid", "400000000000001@lid", "5521998765432@s.whatsapp.net"},
		{"in lid without store", types.MessageSource{Chat: carolLID, Sender: carolLID}, false, event.DirectionIn, "", "400000000000001@lid", "400000000000001@lid", "400000000000001@lid"},
		{"in lid unknown", types.MessageSource{Chat: bobLID.ToNonAD(), Sender: bobLID}, true, event.DirectionIn, "", "300000000000001@lid", "300000000000001@lid", "300000000000001@lid"},
		{"in hosted lid", types.MessageSource{Chat: carolLID, Sender: types.JID{User: carolLID.User, Server: types.HostedLIDServer, Device: 99}}, true, event.DirectionIn, "5521998765432", "400000000000001@lid", "400000000000001@lid", "5521998765432@s.whatsapp.net"},
		{"out pn", toAlice(), false, event.DirectionOut, "5511987654321", "200000000000001@lid", "5511987654321@s.whatsapp.net", ""},
		{"out lid from store", types.MessageSource{Chat: carolLID, Sender: meLID, IsFromMe: true}, true, event.DirectionOut, "5521998765432", "400000000000001@lid", "400000000000001@lid", ""},
		{"in group", types.MessageSource{Chat: group, Sender: aliceDev, IsGroup: true}, false, event.DirectionIn, "5511987654321", "", "120363000000000001@g.us", "5511987654321@s.whatsapp.net"},
		{"out group", types.MessageSource{Chat: group, Sender: me, IsFromMe: true, IsGroup: true}, false, event.DirectionOut, "", "", "120363000000000001@g.us", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lids LIDStore
			if tt.lids {
				lids = newLIDs()
			}
			envs, ps := payloads(t, converter(lids), msg(tt.src, "ID1", "Someone", text("hi")))
			m := ps[0].(*event.Message)
			if m.Direction != tt.dir || m.Phone != tt.phone || m.LID != tt.lid || m.ChatJID != tt.chat {
				t.Errorf("direction %s phone %q lid %q chat %q; want %s %q %q %q", m.Direction, m.Phone, m.LID, m.ChatJID, tt.dir, tt.phone, tt.lid, tt.chat)
			}
			wantStatus := map[event.Direction]event.MessageStatus{event.DirectionIn: event.MessageReceived, event.DirectionOut: event.MessageSent}[tt.dir]
			if m.Status != wantStatus {
				t.Errorf("status %s, want %s", m.Status, wantStatus)
			}
			if envs[0].ID != event.MessageEventID(mentorado, "ID1") {
				t.Errorf("id %s", envs[0].ID)
			}
			if tt.contactJID == "" {
				if len(ps) != 1 {
					t.Fatalf("want no contact, got %d envelopes", len(ps))
				}
				if m.PushName != "" {
					t.Errorf("outbound message carries push name %q", m.PushName)
				}
				return
			}
			if len(ps) != 2 {
				t.Fatalf("want message + contact, got %d envelopes", len(ps))
			}
			ct := ps[1].(*event.Contact)
			if ct.JID != tt.contactJID || ct.Phone != tt.phone || ct.PushName != "Someone" || m.PushName != "Someone" {
				t.Errorf("contact %+v, message push name %q", ct, m.PushName)
			}
			if envs[1].ID != event.ContactEventID(mentorado, ct, envs[1].OccurredAt) {
				t.Errorf("contact id %s", envs[1].ID)
			}
		})
	}
}

func TestMessageKinds(t *testing.T) {
	tests := []struct {
		name                         string
		evt                          *events.Message
		kind                         event.Kind
		text, caption, reply, target string
	}{
		{"conversation", msg(fromAlice(), "A", "", text("oi")), event.KindText, "oi", "", "", ""},
		{"reply", msg(fromAlice(), "A", "", &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("yes"), ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String("Q")}}}), event.KindText, "yes", "", "Q", ""},
		{"image reply", msg(fromAlice(), "A", "", &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("c"), ContextInfo: &waE2E.ContextInfo{StanzaID: proto.String("Q2")}}}), event.KindImage, "", "c", "Q2", ""},
		{"document raw only", rawOnly(fromAlice(), "A", &waE2E.Message{DocumentWithCaptionMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{DocumentMessage: &waE2E.DocumentMessage{Caption: proto.String("doc")}}}}), event.KindDocument, "", "doc", "", ""},
		{"lottie sticker raw only", rawOnly(fromAlice(), "A", &waE2E.Message{LottieStickerMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{StickerMessage: &waE2E.StickerMessage{}}}}), event.KindSticker, "", "", "", ""},
		{"view once v2 extension wrapped in Message", msg(fromAlice(), "A", "", &waE2E.Message{ViewOnceMessageV2Extension: &waE2E.FutureProofMessage{Message: &waE2E.Message{AudioMessage: &waE2E.AudioMessage{}}}}), event.KindAudio, "", "", "", ""},
		{"ephemeral view once", rawOnly(fromAlice(), "A", &waE2E.Message{EphemeralMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{ViewOnceMessage: &waE2E.FutureProofMessage{Message: &waE2E.Message{VideoMessage: &waE2E.VideoMessage{Caption: proto.String("v")}}}}}}), event.KindVideo, "", "v", "", ""},
		{"reaction", msg(fromAlice(), "A", "", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Key: key("T", false), Text: proto.String("❤️")}}), event.KindReaction, "❤️", "", "", "T"},
		{"edit dispatched", dispatched(toAlice(), "A", "", edit("T", text("new"))), event.KindEdit, "new", "", "", "T"},
		{"edit raw only", rawOnly(toAlice(), "A", edit("T", &waE2E.Message{ExtendedTextMessage: &waE2E.ExtendedTextMessage{Text: proto.String("new ext")}})), event.KindEdit, "new ext", "", "", "T"},
		{"edit unwrapped protocol", msg(toAlice(), "A", "", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_MESSAGE_EDIT.Enum(), Key: key("T", true), EditedMessage: text("x")}}), event.KindEdit, "x", "", "", "T"},
		{"revoke", msg(toAlice(), "A", "", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum(), Key: key("T", true)}}), event.KindRevoke, "", "", "", "T"},
		{"poll v1", msg(fromAlice(), "A", "", &waE2E.Message{PollCreationMessage: &waE2E.PollCreationMessage{Name: proto.String("q?")}}), event.KindPoll, "q?", "", "", ""},
		{"poll v5", msg(fromAlice(), "A", "", &waE2E.Message{PollCreationMessageV5: &waE2E.PollCreationMessage{Name: proto.String("q5?")}}), event.KindPoll, "q5?", "", "", ""},
		{"contacts array", msg(fromAlice(), "A", "", &waE2E.Message{ContactsArrayMessage: &waE2E.ContactsArrayMessage{Contacts: []*waE2E.ContactMessage{{DisplayName: proto.String("A")}, {DisplayName: proto.String("B")}}}}), event.KindContact, "A, B", "", "", ""},
		{"list reply", msg(fromAlice(), "A", "", &waE2E.Message{ListResponseMessage: &waE2E.ListResponseMessage{Title: proto.String("Plano B")}}), event.KindOther, "Plano B", "", "", ""},
		{"unknown", msg(fromAlice(), "A", "", &waE2E.Message{GroupInviteMessage: &waE2E.GroupInviteMessage{GroupName: proto.String("g")}}), event.KindOther, "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ps := payloads(t, converter(nil), tt.evt)
			m := ps[0].(*event.Message)
			if m.Kind != tt.kind || m.Text != tt.text || m.Caption != tt.caption || m.ReplyToID != tt.reply || m.TargetID != tt.target {
				t.Errorf("got kind %s text %q caption %q reply %q target %q; want %s %q %q %q %q",
					m.Kind, m.Text, m.Caption, m.ReplyToID, m.TargetID, tt.kind, tt.text, tt.caption, tt.reply, tt.target)
			}
			if !m.Timestamp.Equal(ts.Truncate(time.Millisecond)) && !m.Timestamp.Equal(ts) {
				t.Errorf("timestamp %v, want %v", m.Timestamp, ts)
			}
		})
	}
}

// A simulated client may emit only RawMessage; whatsmeow emits both. The
// result must be the same.
func TestRawOnlyEqualsDispatched(t *testing.T) {
	raws := map[string]func() *waE2E.Message{
		"edit": func() *waE2E.Message { return edit("T", text("new")) },
		"ephemeral": func() *waE2E.Message {
			return &waE2E.Message{EphemeralMessage: &waE2E.FutureProofMessage{Message: text("e")}}
		},
		"view once": func() *waE2E.Message {
			return &waE2E.Message{ViewOnceMessageV2: &waE2E.FutureProofMessage{Message: &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("c")}}}}
		},
		"device sent": func() *waE2E.Message {
			return &waE2E.Message{DeviceSentMessage: &waE2E.DeviceSentMessage{DestinationJID: proto.String(alice.String()), Message: text("d")}}
		},
	}
	for name, raw := range raws {
		t.Run(name, func(t *testing.T) {
			c := converter(nil)
			a, err := c.Convert(t.Context(), rawOnly(toAlice(), "X", raw()))
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.Convert(t.Context(), dispatched(toAlice(), "X", "", raw()))
			if err != nil {
				t.Fatal(err)
			}
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if !bytes.Equal(ja, jb) {
				t.Errorf("raw only:   %s\ndispatched: %s", ja, jb)
			}
		})
	}
}

func TestConvertDoesNotModifyEvent(t *testing.T) {
	raw := &waE2E.Message{
		EphemeralMessage:   &waE2E.FutureProofMessage{Message: edit("T", text("new"))},
		MessageContextInfo: &waE2E.MessageContextInfo{MessageSecret: []byte("s")},
	}
	evt := rawOnly(toAlice(), "X", raw)
	before := proto.CloneOf(raw)
	if _, err := converter(nil).Convert(t.Context(), evt); err != nil {
		t.Fatal(err)
	}
	if evt.Message != nil || evt.IsEphemeral || evt.IsEdit || !proto.Equal(raw, before) {
		t.Errorf("event modified: %+v", evt)
	}
}

func TestReceipts(t *testing.T) {
	tests := []struct {
		name   string
		evt    *events.Receipt
		kind   event.ReceiptKind
		fromMe bool
		phone  string
	}{
		{"delivered", &events.Receipt{MessageSource: fromAlice(), MessageIDs: []string{"M"}, Timestamp: ts}, event.ReceiptDelivered, false, "5511987654321"},
		{"read", &events.Receipt{MessageSource: fromAlice(), MessageIDs: []string{"M"}, Timestamp: ts, Type: types.ReceiptTypeRead}, event.ReceiptRead, false, "5511987654321"},
		{"read on my phone", &events.Receipt{MessageSource: toAlice(), MessageIDs: []string{"M"}, Timestamp: ts, Type: types.ReceiptTypeRead}, event.ReceiptRead, true, "5511987654321"},
		{"read self", &events.Receipt{MessageSource: types.MessageSource{Chat: carolLID, Sender: meLID}, MessageIDs: []string{"M"}, Timestamp: ts, Type: types.ReceiptTypeReadSelf}, event.ReceiptRead, true, "5521998765432"},
		{"played", &events.Receipt{MessageSource: fromAlice(), MessageIDs: []string{"M"}, Timestamp: ts, Type: types.ReceiptTypePlayed}, event.ReceiptPlayed, false, "5511987654321"},
		{"played self", &events.Receipt{MessageSource: types.MessageSource{Chat: alice, Sender: me}, MessageIDs: []string{"M"}, Timestamp: ts, Type: types.ReceiptTypePlayedSelf}, event.ReceiptPlayed, true, "5511987654321"},
		{"lid sender from store", &events.Receipt{MessageSource: types.MessageSource{Chat: carolLID, Sender: carolLID}, MessageIDs: []string{"M"}, Timestamp: ts}, event.ReceiptDelivered, false, "5521998765432"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			envs, ps := payloads(t, converter(newLIDs()), tt.evt)
			if len(ps) != 1 {
				t.Fatalf("got %d envelopes", len(ps))
			}
			r := ps[0].(*event.Receipt)
			if r.Kind != tt.kind || r.FromMe != tt.fromMe || r.Phone != tt.phone || len(r.MessageIDs) != 1 || r.MessageIDs[0] != "M" {
				t.Errorf("got %+v; want kind %s from_me %v phone %q", r, tt.kind, tt.fromMe, tt.phone)
			}
			if envs[0].ID != event.ReceiptEventID(mentorado, tt.kind, tt.fromMe, []string{"M"}) {
				t.Errorf("id %s", envs[0].ID)
			}
		})
	}
	t.Run("ids are copied", func(t *testing.T) {
		ids := []string{"B", "A"}
		evt := &events.Receipt{MessageSource: fromAlice(), MessageIDs: ids, Timestamp: ts}
		_, ps := payloads(t, converter(nil), evt)
		ids[0] = "changed"
		if got := ps[0].(*event.Receipt).MessageIDs; got[0] != "B" || got[1] != "A" {
			t.Errorf("message ids %v", got)
		}
	})
	t.Run("ignored types", func(t *testing.T) {
		for _, typ := range []types.ReceiptType{types.ReceiptTypeRetry, types.ReceiptTypeSender, types.ReceiptTypeServerError,
			types.ReceiptTypeInactive, types.ReceiptTypePeerMsg, types.ReceiptTypeHistorySync, "something-new"} {
			envs, err := converter(nil).Convert(t.Context(), &events.Receipt{MessageSource: fromAlice(), MessageIDs: []string{"M"}, Timestamp: ts, Type: typ})
			if err != nil || len(envs) != 0 {
				t.Errorf("type %q: %d envelopes, %v", typ, len(envs), err)
			}
		}
	})
}

func TestContacts(t *testing.T) {
	tests := []struct {
		name                                 string
		evt                                  any
		jid, phone, lid, nameField, wantName string
	}{
		{"push name pn", &events.PushName{JID: aliceDev, JIDAlt: aliceLID, NewPushName: "Alice"}, "5511987654321@s.whatsapp.net", "5511987654321", "200000000000001@lid", "push", "Alice"},
		{"push name lid alt pn", &events.PushName{JID: aliceLID, JIDAlt: alice, NewPushName: "Alice"}, "5511987654321@s.whatsapp.net", "5511987654321", "200000000000001@lid", "push", "Alice"},
		{"push name lid store", &events.PushName{JID: carolLID, NewPushName: "Carol"}, "5521998765432@s.whatsapp.net", "5521998765432", "400000000000001@lid", "push", "Carol"},
		{"push name lid unknown", &events.PushName{JID: bobLID, NewPushName: "Bob"}, "300000000000001@lid", "", "300000000000001@lid", "push", "Bob"},
		{"address book full name", &events.Contact{JID: alice, Action: &waSyncAction.ContactAction{FullName: proto.String("Alice Souza"), FirstName: proto.String("Alice")}}, "5511987654321@s.whatsapp.net", "5511987654321", "", "name", "Alice Souza"},
		{"address book first name", &events.Contact{JID: alice, Action: &waSyncAction.ContactAction{FirstName: proto.String("Alice")}}, "5511987654321@s.whatsapp.net", "5511987654321", "", "name", "Alice"},
		{"address book lid jid", &events.Contact{JID: carolLID, Action: &waSyncAction.ContactAction{FullName: proto.String("Carol")}}, "5521998765432@s.whatsapp.net", "5521998765432", "400000000000001@lid", "name", "Carol"},
		{"address book lid in action", &events.Contact{JID: alice, Action: &waSyncAction.ContactAction{FullName: proto.String("A"), LidJID: proto.String("200000000000001@lid")}}, "5511987654321@s.whatsapp.net", "5511987654321", "200000000000001@lid", "name", "A"},
		{"business name", &events.BusinessName{JID: aliceLID, NewBusinessName: "Alice Ltda", Message: &types.MessageInfo{MessageSource: types.MessageSource{Chat: aliceLID, Sender: aliceLID, SenderAlt: alice}}}, "5511987654321@s.whatsapp.net", "5511987654321", "200000000000001@lid", "business", "Alice Ltda"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			envs, ps := payloads(t, converter(newLIDs()), tt.evt)
			if len(ps) != 1 {
				t.Fatalf("got %d envelopes", len(ps))
			}
			ct := ps[0].(*event.Contact)
			got := map[string]string{"push": ct.PushName, "name": ct.Name, "business": ct.BusinessName}
			if ct.JID != tt.jid || ct.Phone != tt.phone || ct.LID != tt.lid || got[tt.nameField] != tt.wantName {
				t.Errorf("got %+v; want jid %s phone %q lid %q %s %q", ct, tt.jid, tt.phone, tt.lid, tt.nameField, tt.wantName)
			}
			for field, v := range got {
				if field != tt.nameField && v != "" {
					t.Errorf("%s set to %q", field, v)
				}
			}
			if envs[0].ID != event.ContactEventID(mentorado, ct, envs[0].OccurredAt) {
				t.Errorf("id %s", envs[0].ID)
			}
			if !envs[0].OccurredAt.Equal(now) {
				t.Errorf("occurred_at %v, want Now %v", envs[0].OccurredAt, now)
			}
		})
	}
}

func TestLIDStoreUse(t *testing.T) {
	t.Run("not asked when the phone is in the event", func(t *testing.T) {
		lids := newLIDs()
		if _, err := converter(lids).Convert(t.Context(), msg(fromAlice(), "A", "Alice", text("x"))); err != nil {
			t.Fatal(err)
		}
		if lids.calls != 0 {
			t.Errorf("LID store asked %d times", lids.calls)
		}
	})
	t.Run("lookup failure is an error, not a message without phone", func(t *testing.T) {
		boom := errors.New("db down")
		lids := &fakeLIDs{err: boom}
		c := converter(lids)
		for _, evt := range []any{
			msg(types.MessageSource{Chat: carolLID, Sender: carolLID}, "A", "", text("x")),
			&events.Receipt{MessageSource: types.MessageSource{Chat: carolLID, Sender: carolLID}, MessageIDs: []string{"M"}, Timestamp: ts, Type: types.ReceiptTypeRead},
			&events.PushName{JID: carolLID, NewPushName: "Carol"},
			&events.Contact{JID: carolLID, Action: &waSyncAction.ContactAction{FullName: proto.String("Carol")}},
			&events.BusinessName{JID: carolLID, NewBusinessName: "Carol SA"},
		} {
			envs, err := c.Convert(t.Context(), evt)
			if !errors.Is(err, boom) || envs != nil {
				t.Errorf("%T: %d envelopes, err %v; want %v", evt, len(envs), err, boom)
			}
		}
	})
	t.Run("canceled context propagates", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		c := converter(ctxLIDs{})
		_, err := c.Convert(ctx, &events.PushName{JID: carolLID, NewPushName: "Carol"})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
	})
}

type ctxLIDs struct{}

func (ctxLIDs) GetPNForLID(ctx context.Context, _ types.JID) (types.JID, error) {
	return types.JID{}, ctx.Err()
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		c    *Converter
		evt  any
		want error
	}{
		{"message without id", converter(nil), msg(fromAlice(), "", "", text("x")), event.ErrMissingField},
		{"message without sender", converter(nil), msg(types.MessageSource{Chat: alice}, "A", "", text("x")), event.ErrMissingField},
		{"revoke without target", converter(nil), msg(fromAlice(), "A", "", &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_REVOKE.Enum()}}), event.ErrMissingField},
		{"reaction without target", converter(nil), msg(fromAlice(), "A", "", &waE2E.Message{ReactionMessage: &waE2E.ReactionMessage{Text: proto.String("👍")}}), event.ErrMissingField},
		{"receipt without ids", converter(nil), &events.Receipt{MessageSource: fromAlice(), Timestamp: ts, Type: types.ReceiptTypeRead}, event.ErrMissingField},
		{"receipt with empty id", converter(nil), &events.Receipt{MessageSource: fromAlice(), MessageIDs: []string{"A", ""}, Timestamp: ts}, event.ErrInvalidField},
		{"no mentorado", &Converter{}, msg(fromAlice(), "A", "", text("x")), event.ErrInvalidField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			envs, err := tt.c.Convert(t.Context(), tt.evt)
			if !errors.Is(err, tt.want) || envs != nil {
				t.Errorf("%d envelopes, err %v; want %v", len(envs), err, tt.want)
			}
		})
	}
}

func TestTimestamps(t *testing.T) {
	t.Run("message without timestamp uses Now", func(t *testing.T) {
		evt := msg(fromAlice(), "A", "", text("x"))
		evt.Info.Timestamp = time.Time{}
		envs, ps := payloads(t, converter(nil), evt)
		if m := ps[0].(*event.Message); !m.Timestamp.Equal(now) || !envs[0].OccurredAt.Equal(now) {
			t.Errorf("timestamp %v occurred_at %v, want %v", m.Timestamp, envs[0].OccurredAt, now)
		}
	})
	t.Run("default Now is the clock", func(t *testing.T) {
		evt := msg(fromAlice(), "A", "", text("x"))
		evt.Info.Timestamp = time.Time{}
		before := time.Now().Add(-time.Second)
		envs, err := (&Converter{Mentorado: mentorado}).Convert(t.Context(), evt)
		if err != nil {
			t.Fatal(err)
		}
		if envs[0].OccurredAt.Before(before) {
			t.Errorf("occurred_at %v is not the current time", envs[0].OccurredAt)
		}
	})
	t.Run("message timestamp is occurred_at", func(t *testing.T) {
		envs, _ := payloads(t, converter(nil), msg(fromAlice(), "A", "", text("x")))
		if !envs[0].OccurredAt.Equal(ts.Truncate(time.Millisecond)) {
			t.Errorf("occurred_at %v, want %v", envs[0].OccurredAt, ts)
		}
	})
}

func TestLongTextIsTruncated(t *testing.T) {
	long := bytes.Repeat([]byte("é"), event.MaxTextRunes+10)
	_, ps := payloads(t, converter(nil), msg(fromAlice(), "A", "", text(string(long))))
	if got := []rune(ps[0].(*event.Message).Text); len(got) != event.MaxTextRunes {
		t.Errorf("text has %d runes, want %d", len(got), event.MaxTextRunes)
	}
}

// whatsmeow emits events.PushName next to the message that carried the new
// name; both yield the same contact envelope id, so JetStream keeps one.
func TestPushNameFromMessageAndEventDedupe(t *testing.T) {
	for _, src := range []types.MessageSource{
		fromAlice(),
		{Chat: aliceLID, Sender: jid("200000000000001:2@lid"), SenderAlt: aliceDev, AddressingMode: types.AddressingModeLID},
		{Chat: group, Sender: jid("200000000000001:2@lid"), SenderAlt: aliceDev, IsGroup: true},
	} {
		c := converter(nil)
		fromMsg, err := c.Convert(t.Context(), msg(src, "M", "Alice", text("x")))
		if err != nil || len(fromMsg) != 2 {
			t.Fatalf("message: %d envelopes, %v", len(fromMsg), err)
		}
		info := types.MessageInfo{MessageSource: src, ID: "M", PushName: "Alice", Timestamp: ts}
		fromEvt, err := c.Convert(t.Context(), &events.PushName{JID: src.Sender, JIDAlt: src.SenderAlt, Message: &info, NewPushName: "Alice"})
		if err != nil || len(fromEvt) != 1 {
			t.Fatalf("push name: %d envelopes, %v", len(fromEvt), err)
		}
		if fromMsg[1].ID != fromEvt[0].ID || !bytes.Equal(fromMsg[1].Data, fromEvt[0].Data) {
			t.Errorf("%s: message contact %s %s, push name event %s %s", src.SourceString(), fromMsg[1].ID, fromMsg[1].Data, fromEvt[0].ID, fromEvt[0].Data)
		}
	}
}

// Characters that JSON escapes to six bytes must not push the envelope over
// the bus limit: such an envelope could never be published nor acked.
func TestEscapedTextFitsEnvelope(t *testing.T) {
	long := strings.Repeat("<", event.MaxTextRunes)
	envs, ps := payloads(t, converter(nil), msg(fromAlice(), "A", "", text(long)))
	b, err := envs[0].Encode()
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	got := ps[0].(*event.Message).Text
	if len(got) == 0 || !strings.HasPrefix(long, got) || len(b) > event.MaxEnvelopeBytes {
		t.Errorf("text %d runes, envelope %d bytes", len(got), len(b))
	}
}

// TestNULAndInvalidUTF8AreCleaned: anyone on WhatsApp chooses their push
// name; a NUL (which Postgres text cannot hold) in it, in a text, a caption
// or an address-book name must not make the event unstorable. The
// envelopes carry the cleaned strings.
func TestNULAndInvalidUTF8AreCleaned(t *testing.T) {
	c := converter(nil)
	img := &waE2E.Message{ImageMessage: &waE2E.ImageMessage{Caption: proto.String("foto\x00")}}
	cases := map[string]any{
		"message":      msg(fromAlice(), "ID1", "Evil\x00Name", text("x\x00y\xff")),
		"caption":      msg(fromAlice(), "ID2", "Evil\x00Name", img),
		"push name":    &events.PushName{JID: aliceDev, NewPushName: "Evil\x00Name"},
		"address book": &events.Contact{JID: alice, Timestamp: ts, Action: &waSyncAction.ContactAction{FullName: proto.String("Evil\x00Name")}},
		"business":     &events.BusinessName{JID: aliceDev, NewBusinessName: "Evil\x00Name"},
	}
	for name, evt := range cases {
		envs, err := c.Convert(t.Context(), evt)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(envs) == 0 {
			t.Fatalf("%s: no envelope", name)
		}
		for _, env := range envs {
			if bytes.Contains(env.Data, []byte(`\u0000`)) || !utf8.Valid(env.Data) {
				t.Errorf("%s: %s carries NUL or invalid UTF-8: %s", name, env.Type, env.Data)
			}
			p, err := env.Payload()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			switch p := p.(type) {
			case *event.Message:
				if p.PushName != "EvilName" || (p.Kind == event.KindText && p.Text != "xy\uFFFD") || (p.Kind == event.KindImage && p.Caption != "foto") {
					t.Errorf("%s: message %+v", name, p)
				}
			case *event.Contact:
				if got := p.PushName + p.Name + p.BusinessName; got != "EvilName" {
					t.Errorf("%s: contact %+v", name, p)
				}
			}
		}
	}
}

// TestPushNameABAIsThreeFacts: a push name changed A → B → A inside the
// stream's duplicate window gives three contact events with distinct ids
// (the third is not a duplicate of the first), and converting the same
// message again (whatsmeow redelivery) keeps the id.
func TestPushNameABAIsThreeFacts(t *testing.T) {
	c := converter(nil)
	ids := map[string]bool{}
	var first string
	for i, name := range []string{"A", "B", "A"} {
		m := msg(fromAlice(), fmt.Sprintf("ID%d", i), name, text("oi"))
		m.Info.Timestamp = ts.Add(time.Duration(i) * time.Minute)
		envs, err := c.Convert(t.Context(), m)
		if err != nil || len(envs) != 2 {
			t.Fatalf("convert %d: %v, %d envelopes", i, err, len(envs))
		}
		id := envs[1].ID
		if ids[id] {
			t.Fatalf("push name %q at step %d reuses id %s", name, i, id)
		}
		ids[id] = true
		if i == 0 {
			first = id
			again, _ := c.Convert(t.Context(), m)
			if again[1].ID != first {
				t.Fatalf("a redelivered message changed the contact id: %s vs %s", again[1].ID, first)
			}
		}
	}
}
