package waconv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/proto/waWeb"
	"go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/event"
)

var synced = time.Date(2025, 1, 3, 12, 0, 5, 0, time.UTC)

// webParser is a real whatsmeow client of our device, used only for
// ParseWebMessage (which needs nothing but the device's own JID).
func webParser() *whatsmeow.Client {
	id := me
	return whatsmeow.NewClient(&store.Device{ID: &id}, nil)
}

func webMsg(chat string, id string, fromMe bool, at time.Time, st waWeb.WebMessageInfo_Status, m *waE2E.Message) *waWeb.WebMessageInfo {
	return &waWeb.WebMessageInfo{
		Key:              &waCommon.MessageKey{RemoteJID: proto.String(chat), FromMe: proto.Bool(fromMe), ID: proto.String(id)},
		Message:          m,
		MessageTimestamp: proto.Uint64(uint64(at.Unix())),
		Status:           st.Enum(),
	}
}

func TestHistoryNotificationOf(t *testing.T) {
	notif := &waE2E.HistorySyncNotification{SyncType: waE2E.HistorySyncType_INITIAL_BOOTSTRAP.Enum(), ChunkOrder: proto.Uint32(0)}
	pm := &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_HISTORY_SYNC_NOTIFICATION.Enum(), HistorySyncNotification: notif}}
	own := msg(toAlice(), "NOTIF1", "", pm)
	own.Info.Chat = me.ToNonAD()
	got, id, at, ok := HistoryNotificationOf(own)
	if !ok || id != "NOTIF1" || !at.Equal(ts) || !proto.Equal(got, notif) {
		t.Fatalf("own notification: %v %q %s %v", ok, id, at, got)
	}
	// Wrapped in a device-sent message, as the phone may send it.
	wrapped := rawOnly(toAlice(), "NOTIF2", &waE2E.Message{DeviceSentMessage: &waE2E.DeviceSentMessage{Message: pm}})
	if _, id, _, ok := HistoryNotificationOf(wrapped); !ok || id != "NOTIF2" {
		t.Fatalf("device-sent notification: %v %q", ok, id)
	}
	// Anyone else's is not one.
	if _, _, _, ok := HistoryNotificationOf(msg(fromAlice(), "X", "", pm)); ok {
		t.Fatal("a notification from someone else was taken")
	}
	for _, evt := range []any{msg(toAlice(), "Y", "", text("hi")), &events.Receipt{}, (*events.Message)(nil)} {
		if _, _, _, ok := HistoryNotificationOf(evt); ok {
			t.Fatalf("%T taken for a notification", evt)
		}
	}
	// The live conversion maps the notification to nothing.
	if envs, err := converter(nil).Convert(context.Background(), own); err != nil || len(envs) != 0 {
		t.Fatalf("live conversion of the notification: %v %v", envs, err)
	}
}

func TestHistorySyncName(t *testing.T) {
	for typ, want := range map[waHistorySync.HistorySync_HistorySyncType]string{
		waHistorySync.HistorySync_INITIAL_BOOTSTRAP:   "initial_bootstrap",
		waHistorySync.HistorySync_RECENT:              "recent",
		waHistorySync.HistorySync_FULL:                "full",
		waHistorySync.HistorySync_ON_DEMAND:           "on_demand",
		waHistorySync.HistorySync_PUSH_NAME:           "push_name",
		waHistorySync.HistorySync_HistorySyncType(99): "99",
	} {
		if got := HistorySyncName(typ); got != want {
			t.Errorf("HistorySyncName(%d) = %q, want %q", typ, got, want)
		}
	}
}

// A message from the history has the id, and every field, the live
// message has; only the marker and the phone's recorded status differ.
func TestHistoryMessageSameAsLive(t *testing.T) {
	ctx := context.Background()
	c := converter(newLIDs())
	cli := webParser()
	mark := event.History{Sync: "initial_bootstrap", SyncedAt: synced}
	at := ts.Truncate(time.Second)

	for _, tc := range []struct {
		name   string
		live   *events.Message
		web    *waWeb.WebMessageInfo
		status event.MessageStatus
	}{
		{"inbound read", msg(fromAlice(), "IN1", "", text("oi")), webMsg(alice.String(), "IN1", false, at, waWeb.WebMessageInfo_READ, text("oi")), event.MessageRead},
		{"inbound unread", msg(fromAlice(), "IN2", "", text("oi")), webMsg(alice.String(), "IN2", false, at, waWeb.WebMessageInfo_DELIVERY_ACK, text("oi")), event.MessageReceived},
		{"outbound delivered", msg(toAlice(), "OUT1", "", text("olá")), webMsg(alice.String(), "OUT1", true, at, waWeb.WebMessageInfo_DELIVERY_ACK, text("olá")), event.MessageDelivered},
		{"outbound played", msg(toAlice(), "OUT2", "", text("olá")), webMsg(alice.String(), "OUT2", true, at, waWeb.WebMessageInfo_PLAYED, text("olá")), event.MessagePlayed},
		{"outbound no status", msg(toAlice(), "OUT3", "", text("olá")), webMsg(alice.String(), "OUT3", true, at, waWeb.WebMessageInfo_ERROR, text("olá")), event.MessageSent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.live.Info.Timestamp = at
			tc.live.Info.Sender = tc.live.Info.Sender.ToNonAD()
			// A history message has no alternate address (the chat's LID
			// comes with the sync's mappings instead).
			tc.live.Info.SenderAlt, tc.live.Info.RecipientAlt = types.EmptyJID, types.EmptyJID
			liveEnvs, err := c.Convert(ctx, tc.live)
			if err != nil || len(liveEnvs) != 1 {
				t.Fatalf("live: %v %v", liveEnvs, err)
			}
			evt, err := cli.ParseWebMessage(alice, tc.web)
			if err != nil {
				t.Fatal(err)
			}
			envs, err := c.HistoryMessage(ctx, evt, mark)
			if err != nil || len(envs) != 1 {
				t.Fatalf("history: %v %v", envs, err)
			}
			if envs[0].ID != liveEnvs[0].ID || envs[0].ID != event.MessageEventID(mentorado, tc.web.GetKey().GetID()) {
				t.Fatalf("id %q, live %q", envs[0].ID, liveEnvs[0].ID)
			}
			p, err := envs[0].Payload()
			if err != nil {
				t.Fatal(err)
			}
			hm := p.(*event.Message)
			if hm.History == nil || hm.History.Sync != "initial_bootstrap" || !hm.History.SyncedAt.Equal(synced) || hm.Status != tc.status {
				t.Fatalf("history %+v status %q", hm.History, hm.Status)
			}
			lp, _ := liveEnvs[0].Payload()
			lm := lp.(*event.Message)
			hm.History, hm.Status, lm.Status = nil, "", ""
			a, _ := json.Marshal(hm)
			b, _ := json.Marshal(lm)
			if !bytes.Equal(a, b) || !envs[0].OccurredAt.Equal(liveEnvs[0].OccurredAt) {
				t.Fatalf("history differs from live:\n%s\n%s", a, b)
			}
		})
	}

	// An inbound message with a push name also yields the contact, as live.
	web := webMsg(alice.String(), "IN3", false, at, waWeb.WebMessageInfo_READ, text("oi"))
	web.PushName = proto.String("Alice")
	evt, err := cli.ParseWebMessage(alice, web)
	if err != nil {
		t.Fatal(err)
	}
	envs, err := c.HistoryMessage(ctx, evt, mark)
	if err != nil || len(envs) != 2 || envs[0].Type != event.TypeMessage || envs[1].Type != event.TypeContact {
		t.Fatalf("push name message: %v %v", envs, err)
	}

	// What zapbus does not record maps to nothing, as live.
	pm := &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_EPHEMERAL_SETTING.Enum()}}
	evt, err = cli.ParseWebMessage(alice, webMsg(alice.String(), "P1", true, at, waWeb.WebMessageInfo_READ, pm))
	if err != nil {
		t.Fatal(err)
	}
	if envs, err := c.HistoryMessage(ctx, evt, mark); err != nil || len(envs) != 0 {
		t.Fatalf("protocol message: %v %v", envs, err)
	}

	// A media message keeps its media and is queued for download as live.
	img := &waE2E.Message{ImageMessage: &waE2E.ImageMessage{
		Mimetype: proto.String("image/jpeg"), FileSHA256: bytes.Repeat([]byte{0xab}, 32), FileLength: proto.Uint64(10),
		MediaKey: bytes.Repeat([]byte{1}, 32), DirectPath: proto.String("/v/x"), FileEncSHA256: bytes.Repeat([]byte{2}, 32),
	}}
	evt, err = cli.ParseWebMessage(alice, webMsg(alice.String(), "IMG1", false, at, waWeb.WebMessageInfo_READ, img))
	if err != nil {
		t.Fatal(err)
	}
	envs, err = c.HistoryMessage(ctx, evt, mark)
	if err != nil || len(envs) != 1 {
		t.Fatalf("image: %v %v", envs, err)
	}
	p, _ := envs[0].Payload()
	if m := p.(*event.Message); m.Media == nil || m.Kind != event.KindImage {
		t.Fatalf("image event %+v", m)
	}
	if d, ok := DownloadOf(evt); !ok || d.WAID != "IMG1" || d.ChatJID != alice.String() {
		t.Fatalf("image download %+v %v", d, ok)
	}
}

func TestHistoryContacts(t *testing.T) {
	ctx := context.Background()
	c := converter(newLIDs())
	envs, err := c.HistoryPushName(ctx, &waHistorySync.Pushname{ID: proto.String(alice.String()), Pushname: proto.String("Alice")}, synced)
	if err != nil || len(envs) != 1 || !envs[0].OccurredAt.Equal(synced) {
		t.Fatalf("push name: %v %v", envs, err)
	}
	p, _ := envs[0].Payload()
	if ct := p.(*event.Contact); ct.PushName != "Alice" || ct.Phone != "5511987654321" {
		t.Fatalf("push name contact %+v", ct)
	}
	again, _ := c.HistoryPushName(ctx, &waHistorySync.Pushname{ID: proto.String(alice.String()), Pushname: proto.String("Alice")}, synced)
	if again[0].ID != envs[0].ID {
		t.Fatal("a redone push name has another id")
	}
	for _, bad := range []*waHistorySync.Pushname{{ID: proto.String("garbage@@"), Pushname: proto.String("x")}, {ID: proto.String(alice.String())}, {ID: proto.String(group.String()), Pushname: proto.String("g")}} {
		if envs, err := c.HistoryPushName(ctx, bad, synced); err != nil || len(envs) != 0 {
			t.Fatalf("push name %v: %v %v", bad, envs, err)
		}
	}

	pn, lid, ok := HistoryLIDPair("5511987654321@s.whatsapp.net", "200000000000001@lid")
	if !ok || pn != alice || lid != aliceLID {
		t.Fatalf("pair %s %s %v", pn, lid, ok)
	}
	for _, bad := range [][2]string{{"", "200000000000001@lid"}, {"5511987654321@s.whatsapp.net", ""}, {"200000000000001@lid", "5511987654321@s.whatsapp.net"}, {"x@@", "y@lid"}} {
		if _, _, ok := HistoryLIDPair(bad[0], bad[1]); ok {
			t.Fatalf("pair %q accepted", bad)
		}
	}
	env, err := c.HistoryLIDContact(pn, lid, synced)
	if err != nil {
		t.Fatal(err)
	}
	p, _ = env.Payload()
	if ct := p.(*event.Contact); ct.JID != alice.String() || ct.Phone != "5511987654321" || ct.LID != aliceLID.String() {
		t.Fatalf("mapping contact %+v", ct)
	}

	prog, err := c.HistoryProgress("NOTIF1", &event.HistoryProgress{Sync: "recent", Chunk: 2, Progress: 40, Conversations: 3, Messages: 9, SyncedAt: synced})
	if err != nil || prog.ID != event.HistoryEventID(mentorado, "NOTIF1") || prog.Type != event.TypeHistory {
		t.Fatalf("progress %+v %v", prog, err)
	}
	if _, err := c.HistoryProgress("N", &event.HistoryProgress{Sync: "recent", Failed: true, SyncedAt: synced}); err == nil {
		t.Fatal("a failed progress without a reason passed")
	}
}

// historyBlob is a HistorySync with n conversations of k messages each,
// push names, mappings and status updates, serialized.
func historyBlob(t *testing.T, n, k int) []byte {
	t.Helper()
	hs := &waHistorySync.HistorySync{
		SyncType:   waHistorySync.HistorySync_RECENT.Enum(),
		ChunkOrder: proto.Uint32(3),
		Progress:   proto.Uint32(57),
		Pushnames:  []*waHistorySync.Pushname{{ID: proto.String(alice.String()), Pushname: proto.String("Alice")}},
		PhoneNumberToLidMappings: []*waHistorySync.PhoneNumberToLIDMapping{
			{PnJID: proto.String(alice.String()), LidJID: proto.String(aliceLID.String())},
		},
		StatusV3Messages: []*waWeb.WebMessageInfo{webMsg("status@broadcast", "S1", false, ts, 0, text("story"))},
		GlobalSettings:   &waHistorySync.GlobalSettings{ChatDbLidMigrationTimestamp: proto.Int64(1700000000)},
	}
	for i := range n {
		chat := fmt.Sprintf("55119%08d@s.whatsapp.net", i)
		conv := &waHistorySync.Conversation{ID: proto.String(chat), Name: proto.String(fmt.Sprintf("chat %d", i))}
		for j := range k {
			conv.Messages = append(conv.Messages, &waHistorySync.HistorySyncMsg{
				Message: webMsg(chat, fmt.Sprintf("M%d_%d", i, j), j%2 == 0, ts, waWeb.WebMessageInfo_READ, text(fmt.Sprintf("message %d of %d", j, i))),
			})
		}
		hs.Conversations = append(hs.Conversations, conv)
	}
	b, err := proto.Marshal(hs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestScanHistory(t *testing.T) {
	blob := historyBlob(t, 50, 4)
	var convs []string
	var msgs, names, maps int
	var migrated int64
	h, err := ScanHistory(bytes.NewReader(blob), HistoryVisitor{
		Conversation: func(c *waHistorySync.Conversation) error {
			convs = append(convs, c.GetID())
			msgs += len(c.GetMessages())
			return nil
		},
		Pushname: func(p *waHistorySync.Pushname) error { names++; return nil },
		Mapping: func(m *waHistorySync.PhoneNumberToLIDMapping) error {
			if m.GetLidJID() != aliceLID.String() {
				t.Errorf("mapping %v", m)
			}
			maps++
			return nil
		},
		Settings: func(g *waHistorySync.GlobalSettings) error { migrated = g.GetChatDbLidMigrationTimestamp(); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	if h.SyncType != waHistorySync.HistorySync_RECENT || h.ChunkOrder != 3 || h.Progress != 57 || h.Conversations != 50 || h.Statuses != 1 {
		t.Fatalf("header %+v", h)
	}
	if len(convs) != 50 || convs[0] != "5511900000000@s.whatsapp.net" || convs[49] != "5511900000049@s.whatsapp.net" || msgs != 200 || names != 1 || maps != 1 || migrated != 1700000000 {
		t.Fatalf("visited %d conversations (%v…), %d messages, %d names, %d mappings", len(convs), convs[:1], msgs, names, maps)
	}

	// Without visitors everything is skipped, the header still read.
	if h2, err := ScanHistory(bytes.NewReader(blob), HistoryVisitor{}); err != nil || h2 != h {
		t.Fatalf("skipping scan: %+v %v", h2, err)
	}

	// A visitor's error stops the scan as it is.
	boom := errors.New("boom")
	seen := 0
	if _, err := ScanHistory(bytes.NewReader(blob), HistoryVisitor{Conversation: func(*waHistorySync.Conversation) error {
		seen++
		if seen == 3 {
			return boom
		}
		return nil
	}}); !errors.Is(err, boom) || seen != 3 {
		t.Fatalf("visitor error: %v after %d", err, seen)
	}

	// Truncated or garbled blobs are corrupt, wherever they break.
	for _, cut := range []int{1, len(blob) / 2, len(blob) - 1} {
		_, err := ScanHistory(bytes.NewReader(blob[:cut]), HistoryVisitor{Conversation: func(*waHistorySync.Conversation) error { return nil }})
		if !errors.Is(err, ErrHistoryCorrupt) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
	}
	for name, bad := range map[string][]byte{
		"group wire type": {0x13},
		"huge field":      {0x12, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad message":     {0x12, 0x02, 0x0a, 0x05},
		"varint overflow": bytes.Repeat([]byte{0xff}, 11),
		"field zero":      {0x02, 0x00},
	} {
		if _, err := ScanHistory(bytes.NewReader(bad), HistoryVisitor{Conversation: func(*waHistorySync.Conversation) error { return nil }}); !errors.Is(err, ErrHistoryCorrupt) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// An empty blob is an empty sync (initial_bootstrap, chunk 0).
	if h, err := ScanHistory(bytes.NewReader(nil), HistoryVisitor{}); err != nil || h != (HistoryHeader{}) {
		t.Fatalf("empty: %+v %v", h, err)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// The scan hands over each conversation as soon as it is read: the first
// arrives when little more than it has been read, not after the whole
// sync was.
func TestScanHistoryStreams(t *testing.T) {
	blob := historyBlob(t, 3000, 5)
	cr := &countingReader{r: bytes.NewReader(blob)}
	var atFirst, convs int
	if _, err := ScanHistory(cr, HistoryVisitor{Conversation: func(*waHistorySync.Conversation) error {
		if convs == 0 {
			atFirst = cr.n
		}
		convs++
		return nil
	}}); err != nil {
		t.Fatal(err)
	}
	if convs != 3000 || atFirst > 128<<10 || len(blob) < 1<<20 {
		t.Fatalf("%d conversations; %d of %d bytes read at the first", convs, atFirst, len(blob))
	}
}
