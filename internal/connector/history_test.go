package connector_test

import (
	"bytes"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.mau.fi/whatsmeow"
	"go.mau.fi/whatsmeow/proto/waCommon"
	"go.mau.fi/whatsmeow/proto/waE2E"
	"go.mau.fi/whatsmeow/proto/waHistorySync"
	"go.mau.fi/whatsmeow/proto/waWeb"
	wastore "go.mau.fi/whatsmeow/store"
	"go.mau.fi/whatsmeow/types"
	"go.mau.fi/whatsmeow/types/events"
	"google.golang.org/protobuf/proto"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/connector/sim"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// The history worker with sim clients that can also fetch history blobs
// (from the test's map, as the CDN would serve them) and parse web
// messages (with whatsmeow's own ParseWebMessage). The real-whatsmeow
// path differs only in where the blob comes from.

// histLIDs is whatsmeow's LID store interface in memory (not a zapbus
// database).
type histLIDs struct {
	mu  sync.Mutex
	pns map[string]types.JID // LID user → phone JID
}

func (l *histLIDs) PutManyLIDMappings(_ context.Context, ms []wastore.LIDMapping) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range ms {
		l.pns[m.LID.User] = m.PN
	}
	return nil
}

func (l *histLIDs) PutLIDMapping(ctx context.Context, lid, pn types.JID) error {
	return l.PutManyLIDMappings(ctx, []wastore.LIDMapping{{LID: lid, PN: pn}})
}

func (l *histLIDs) GetPNForLID(_ context.Context, lid types.JID) (types.JID, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pns[lid.User], nil
}

func (l *histLIDs) GetLIDForPN(context.Context, types.JID) (types.JID, error) {
	return types.JID{}, nil
}

func (l *histLIDs) GetManyLIDsForPNs(context.Context, []types.JID) (map[types.JID]types.JID, error) {
	return nil, nil
}

// histCDN serves history blobs by direct path.
type histCDN struct {
	mu        sync.Mutex
	blobs     map[string][]byte
	failing   map[string]error
	downloads int
}

func (c *histCDN) get(path string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.downloads++
	if err := c.failing[path]; err != nil {
		return nil, err
	}
	b, ok := c.blobs[path]
	if !ok {
		return nil, whatsmeow.ErrMediaDownloadFailedWith404
	}
	return b, nil
}

type histFactory struct {
	sim  *sim.Factory
	cdn  *histCDN
	lids *histLIDs
	// parsed, when set, runs before each message is parsed (the restart test
	// stops the connector in the middle of a chunk with it).
	parsed func()
}

func (f *histFactory) NewClient(ctx context.Context, p connector.ClientParams) (connector.Client, error) {
	c, err := f.sim.NewClient(ctx, p)
	if err != nil {
		return nil, err
	}
	dev := &wastore.Device{LIDs: f.lids}
	if !p.Device.IsEmpty() {
		id := p.Device
		dev.ID = &id
	}
	return &histClient{Client: c.(*sim.Client), f: f, dev: dev, parser: whatsmeow.NewClient(dev, nil)}, nil
}

func (f *histFactory) DeleteDevice(ctx context.Context, jid types.JID) error {
	return f.sim.DeleteDevice(ctx, jid)
}

type histClient struct {
	*sim.Client
	f      *histFactory
	dev    *wastore.Device
	parser *whatsmeow.Client
}

func (c *histClient) Download(_ context.Context, msg whatsmeow.DownloadableMessage) ([]byte, error) {
	return c.f.cdn.get(msg.GetDirectPath())
}

func (c *histClient) ParseWebMessage(chat types.JID, web *waWeb.WebMessageInfo) (*events.Message, error) {
	if c.f.parsed != nil {
		c.f.parsed()
	}
	return c.parser.ParseWebMessage(chat, web)
}

func (c *histClient) DeviceStore() *wastore.Device { return c.dev }

var histSynced = time.Date(2026, 11, 24, 12, 0, 5, 0, time.UTC)

func histWeb(chat, id string, fromMe bool, m *waE2E.Message) *waHistorySync.HistorySyncMsg {
	return &waHistorySync.HistorySyncMsg{Message: &waWeb.WebMessageInfo{
		Key:              &waCommon.MessageKey{RemoteJID: proto.String(chat), FromMe: proto.Bool(fromMe), ID: proto.String(id)},
		Message:          m,
		MessageTimestamp: proto.Uint64(uint64(histSynced.Add(-time.Hour).Unix())),
		Status:           waWeb.WebMessageInfo_READ.Enum(),
	}}
}

const histLID = "777000000000001@lid"
const histLIDPhone = "5511977700001"

// histChunk is a history sync of n direct chats of k texts each, plus a
// chat known only by LID (its phone in the chunk's mappings), a protocol
// message and a status update (both skipped).
func histChunk(t testing.TB, typ waHistorySync.HistorySync_HistorySyncType, chunk uint32, n, k int) (blob []byte, ids []string) {
	t.Helper()
	hs := &waHistorySync.HistorySync{
		SyncType: typ.Enum(), ChunkOrder: proto.Uint32(chunk), Progress: proto.Uint32(60),
		Pushnames: []*waHistorySync.Pushname{{ID: proto.String("5511900000100@s.whatsapp.net"), Pushname: proto.String("Ana")}},
		PhoneNumberToLidMappings: []*waHistorySync.PhoneNumberToLIDMapping{
			{PnJID: proto.String(histLIDPhone + "@s.whatsapp.net"), LidJID: proto.String(histLID)},
		},
		StatusV3Messages: []*waWeb.WebMessageInfo{histWeb("status@broadcast", "STATUS1", false, &waE2E.Message{Conversation: proto.String("story")}).Message},
	}
	for i := range n {
		chat := fmt.Sprintf("55119%08d@s.whatsapp.net", 100+i)
		conv := &waHistorySync.Conversation{ID: proto.String(chat)}
		for j := range k {
			id := fmt.Sprintf("H%d_%d_%d", chunk, i, j)
			ids = append(ids, id)
			conv.Messages = append(conv.Messages, histWeb(chat, id, j%3 == 0, &waE2E.Message{Conversation: proto.String(fmt.Sprintf("text %d/%d", i, j))}))
		}
		hs.Conversations = append(hs.Conversations, conv)
	}
	lidConv := &waHistorySync.Conversation{ID: proto.String(histLID)}
	for j := range 2 {
		id := fmt.Sprintf("L%d_%d", chunk, j)
		ids = append(ids, id)
		lidConv.Messages = append(lidConv.Messages, histWeb(histLID, id, false, &waE2E.Message{Conversation: proto.String("via lid")}))
	}
	lidConv.Messages = append(lidConv.Messages, histWeb(histLID, fmt.Sprintf("P%d", chunk), true,
		&waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{Type: waE2E.ProtocolMessage_EPHEMERAL_SETTING.Enum()}}))
	hs.Conversations = append(hs.Conversations, lidConv)
	raw, err := proto.Marshal(hs)
	if err != nil {
		t.Fatal(err)
	}
	return deflate(t, raw), ids
}

func deflate(t testing.TB, raw []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	if _, err := zw.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// histNotification is the protocol message our own phone sends to announce
// a chunk.
func histNotification(device types.JID, id string, n *waE2E.HistorySyncNotification) *events.Message {
	own := device.ToNonAD()
	return &events.Message{
		Info: types.MessageInfo{
			MessageSource: types.MessageSource{Chat: own, Sender: device, IsFromMe: true},
			ID:            id, Timestamp: histSynced, Category: "peer",
		},
		Message: &waE2E.Message{ProtocolMessage: &waE2E.ProtocolMessage{
			Type: waE2E.ProtocolMessage_HISTORY_SYNC_NOTIFICATION.Enum(), HistorySyncNotification: n,
		}},
	}
}

func cdnNotification(typ waE2E.HistorySyncType, chunk uint32, path string) *waE2E.HistorySyncNotification {
	return &waE2E.HistorySyncNotification{
		SyncType: typ.Enum(), ChunkOrder: proto.Uint32(chunk), Progress: proto.Uint32(60), DirectPath: proto.String(path),
		MediaKey: bytes.Repeat([]byte{7}, 32), FileSHA256: bytes.Repeat([]byte{1}, 32), FileEncSHA256: bytes.Repeat([]byte{2}, 32), FileLength: proto.Uint64(1),
	}
}

type histEnv struct {
	*env
	m   int64
	dev types.JID
	cdn *histCDN
	lid *histLIDs
}

func newHistEnv(t *testing.T, phone string) *histEnv {
	t.Helper()
	e := newEnv(t, 2*time.Second)
	m := e.mentorados(1)[0]
	e.paired(m, phone)
	dev, _ := e.world.Device(m)
	return &histEnv{env: e, m: m, dev: dev,
		cdn: &histCDN{blobs: map[string][]byte{}, failing: map[string]error{}},
		lid: &histLIDs{pns: map[string]types.JID{}}}
}

func (h *histEnv) factory(parsed func()) *histFactory {
	return &histFactory{sim: &sim.Factory{W: h.world}, cdn: h.cdn, lids: h.lid, parsed: parsed}
}

func histCfg(c *connector.Config) {
	c.History = connector.HistoryConfig{MaxAttempts: 2, RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond, Poll: 20 * time.Millisecond}
}

// progress returns m's history progress events by notification id.
func (h *histEnv) progress(t *testing.T) map[string]*event.HistoryProgress {
	t.Helper()
	out := map[string]*event.HistoryProgress{}
	for _, env := range h.stored(bus.StreamEvents, event.EventSubject(h.m, event.TypeHistory)) {
		p, err := env.Payload()
		if err != nil {
			t.Fatal(err)
		}
		for id := range out {
			if env.ID == event.HistoryEventID(h.m, id) {
				t.Fatalf("two progress events for %s", id)
			}
		}
		var notif string
		if _, err := fmt.Sscanf(env.ID, fmt.Sprintf("%d:history:%%s", h.m), &notif); err != nil {
			t.Fatalf("progress id %q", env.ID)
		}
		out[notif] = p.(*event.HistoryProgress)
	}
	return out
}

// messages returns m's stored message events by WhatsApp id, failing on
// an id stored twice.
func (h *histEnv) messages(t *testing.T) map[string]*event.Message {
	t.Helper()
	out := map[string]*event.Message{}
	for _, env := range h.stored(bus.StreamEvents, event.EventSubject(h.m, event.TypeMessage)) {
		p, err := env.Payload()
		if err != nil {
			t.Fatal(err)
		}
		msg := p.(*event.Message)
		if out[msg.WAID] != nil {
			t.Fatalf("message %s stored twice", msg.WAID)
		}
		out[msg.WAID] = msg
	}
	return out
}

func (h *histEnv) queued(t *testing.T) int {
	t.Helper()
	n, err := h.db.HistorySyncs().Pending(context.Background(), h.m)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (h *histEnv) inject(t *testing.T, evt *events.Message) {
	t.Helper()
	acked, err := h.world.InjectMessage(h.m, evt)
	if err != nil || !acked {
		t.Fatalf("notification %s not acked: %v %v", evt.Info.ID, acked, err)
	}
}

// A chunk from the CDN and the inline first chunk each become their
// messages, marked as history under their live ids, then one progress
// event; a message already seen live is stored once; the chunk's
// phone ↔ LID pair resolves its LID chat; the queue ends empty.
func TestHistorySyncImport(t *testing.T) {
	t.Parallel()
	h := newHistEnv(t, "5511900000301")
	recent, recentIDs := histChunk(t, waHistorySync.HistorySync_RECENT, 1, 40, 5)
	h.cdn.blobs["/hist/recent-1"] = recent
	initial, initialIDs := histChunk(t, waHistorySync.HistorySync_INITIAL_BOOTSTRAP, 0, 3, 2)

	h.start("a", h.factory(nil), nil, histCfg)
	testenv.Eventually(t, wait, func() bool { return h.status(h.m) == event.StatusConnected }, "connected")

	// Seen live first: the history copy is dropped as a duplicate.
	live := &events.Message{
		Info: types.MessageInfo{
			MessageSource: types.MessageSource{Chat: types.NewJID("5511900000100", types.DefaultUserServer), Sender: types.NewJID("5511900000100", types.DefaultUserServer)},
			ID:            "H1_0_1", Timestamp: histSynced.Add(-time.Hour),
		},
		Message: &waE2E.Message{Conversation: proto.String("text 0/1")},
	}
	h.inject(t, live)

	h.inject(t, histNotification(h.dev, "NOTIF-RECENT", cdnNotification(waE2E.HistorySyncType_RECENT, 1, "/hist/recent-1")))
	inline := &waE2E.HistorySyncNotification{SyncType: waE2E.HistorySyncType_INITIAL_BOOTSTRAP.Enum(), ChunkOrder: proto.Uint32(0), InitialHistBootstrapInlinePayload: initial}
	h.inject(t, histNotification(h.dev, "NOTIF-INITIAL", inline))
	// A notification from anyone else is not ours to import.
	foreign := histNotification(h.dev, "NOTIF-FOREIGN", cdnNotification(waE2E.HistorySyncType_FULL, 9, "/hist/recent-1"))
	foreign.Info.IsFromMe = false
	foreign.Info.Sender = types.NewJID("5511900000999", types.DefaultUserServer)
	h.inject(t, foreign)

	testenv.Eventually(t, wait, func() bool { return len(h.progress(t)) == 2 }, "two progress events")
	testenv.Eventually(t, wait, func() bool { return h.queued(t) == 0 }, "history queue empty")

	prog := h.progress(t)
	want := map[string]event.HistoryProgress{
		"NOTIF-RECENT":  {Sync: "recent", Chunk: 1, Progress: 60, Conversations: 41, Messages: 202, Skipped: 2, SyncedAt: histSynced},
		"NOTIF-INITIAL": {Sync: "initial_bootstrap", Chunk: 0, Progress: 60, Conversations: 4, Messages: 8, Skipped: 2, SyncedAt: histSynced},
	}
	for id, w := range want {
		got := prog[id]
		if got == nil || !got.SyncedAt.Equal(w.SyncedAt) {
			t.Fatalf("progress %s: %+v", id, got)
		}
		got.SyncedAt = w.SyncedAt
		if *got != w {
			t.Errorf("progress %s = %+v, want %+v", id, *got, w)
		}
	}

	msgs := h.messages(t)
	if n := len(recentIDs) + len(initialIDs); len(msgs) != n {
		t.Fatalf("%d message events, want %d", len(msgs), n)
	}
	for _, ids := range [][]string{recentIDs, initialIDs} {
		for _, id := range ids {
			m := msgs[id]
			switch {
			case m == nil:
				t.Fatalf("history message %s missing", id)
			case id == "H1_0_1":
				if m.History != nil {
					t.Errorf("the live message was replaced by its history copy: %+v", m)
				}
			case m.History == nil || !m.History.SyncedAt.Equal(histSynced):
				t.Errorf("message %s without the history marker: %+v", id, m)
			case m.Direction == event.DirectionIn && m.Status != event.MessageRead:
				t.Errorf("message %s status %q", id, m.Status)
			}
		}
	}
	if m := msgs["H1_1_0"]; m.History.Sync != "recent" || m.Direction != event.DirectionOut {
		t.Errorf("recent message %+v", m)
	}
	if m := msgs["H0_0_1"]; m.History.Sync != "initial_bootstrap" {
		t.Errorf("initial message %+v", m)
	}
	// The LID chat's sender got its phone from the chunk's mapping.
	if m := msgs["L1_0"]; m.Phone != histLIDPhone || m.LID != histLID {
		t.Errorf("LID chat message %+v", m)
	}
	// The pair and the push name are contacts too, and the LID store knows the pair.
	var sawPair, sawPush bool
	for _, env := range h.stored(bus.StreamEvents, event.EventSubject(h.m, event.TypeContact)) {
		p, _ := env.Payload()
		ct := p.(*event.Contact)
		sawPair = sawPair || (ct.Phone == histLIDPhone && ct.LID == histLID)
		sawPush = sawPush || (ct.Phone == "5511900000100" && ct.PushName == "Ana")
	}
	if !sawPair || !sawPush {
		t.Errorf("contacts: pair %v, push name %v", sawPair, sawPush)
	}
	if pn, _ := h.lid.GetPNForLID(context.Background(), types.NewJID("777000000000001", types.HiddenUserServer)); pn.User != histLIDPhone {
		t.Errorf("LID store: %v", pn)
	}
	if _, ok := prog["NOTIF-FOREIGN"]; ok {
		t.Error("a notification from someone else was imported")
	}
}

// A connector stopped in the middle of a chunk gives it back; the next
// owner imports it from the start, and the messages published twice are
// stored once.
func TestHistorySyncSurvivesRestart(t *testing.T) {
	t.Parallel()
	h := newHistEnv(t, "5511900000302")
	blob, ids := histChunk(t, waHistorySync.HistorySync_FULL, 2, 30, 4)
	h.cdn.blobs["/hist/full-2"] = blob

	var once sync.Once
	reached, release := make(chan struct{}), make(chan struct{})
	var parsed int
	var mu sync.Mutex
	gate := func() {
		mu.Lock()
		parsed++
		n := parsed
		mu.Unlock()
		if n == 50 {
			once.Do(func() { close(reached) })
			<-release
		}
	}
	r1 := h.start("a", h.factory(gate), nil, histCfg)
	testenv.Eventually(t, wait, func() bool { return h.status(h.m) == event.StatusConnected }, "connected")
	h.inject(t, histNotification(h.dev, "NOTIF-FULL", cdnNotification(waE2E.HistorySyncType_FULL, 2, "/hist/full-2")))
	select {
	case <-reached:
	case <-time.After(wait):
		t.Fatal("the import never reached the 50th message")
	}
	r1.cancel() // the connector stops while the chunk is half done
	close(release)
	<-r1.done
	if got := len(h.messages(t)); got == 0 || got >= len(ids) {
		t.Fatalf("%d of %d messages before the restart", got, len(ids))
	}
	if h.queued(t) != 1 || len(h.progress(t)) != 0 {
		t.Fatalf("after the stop: %d queued, %d progress events", h.queued(t), len(h.progress(t)))
	}

	h.start("b", h.factory(nil), nil, histCfg)
	testenv.Eventually(t, wait, func() bool { return len(h.progress(t)) == 1 }, "progress after the restart")
	testenv.Eventually(t, wait, func() bool { return h.queued(t) == 0 }, "history queue empty")
	msgs := h.messages(t) // fails on an id stored twice
	if len(msgs) != len(ids) {
		t.Fatalf("%d message events, want %d", len(msgs), len(ids))
	}
	for _, id := range ids {
		if msgs[id] == nil || msgs[id].History == nil || msgs[id].History.Sync != "full" {
			t.Fatalf("message %s: %+v", id, msgs[id])
		}
	}
	if p := h.progress(t)["NOTIF-FULL"]; p == nil || p.Messages != len(ids) || p.Failed {
		t.Fatalf("progress %+v", p)
	}
}

// A corrupt blob and a blob that cannot be downloaded each end in a failed
// progress event with the reason, and leave the queue.
func TestHistorySyncFailures(t *testing.T) {
	t.Parallel()
	h := newHistEnv(t, "5511900000303")
	good, _ := histChunk(t, waHistorySync.HistorySync_RECENT, 3, 2, 2)
	raw := make([]byte, 0)
	{
		zr, err := zlib.NewReader(bytes.NewReader(good))
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(zr); err != nil {
			t.Fatal(err)
		}
		raw = buf.Bytes()
	}
	h.cdn.blobs["/hist/truncated"] = deflate(t, raw[:len(raw)*2/3]) // valid zlib, cut proto
	h.cdn.blobs["/hist/garbage"] = []byte("not zlib at all")
	h.cdn.failing["/hist/down"] = errors.New("connection refused")

	h.start("a", h.factory(nil), nil, histCfg)
	testenv.Eventually(t, wait, func() bool { return h.status(h.m) == event.StatusConnected }, "connected")
	h.inject(t, histNotification(h.dev, "NOTIF-TRUNC", cdnNotification(waE2E.HistorySyncType_RECENT, 3, "/hist/truncated")))
	h.inject(t, histNotification(h.dev, "NOTIF-GARBAGE", cdnNotification(waE2E.HistorySyncType_RECENT, 4, "/hist/garbage")))
	h.inject(t, histNotification(h.dev, "NOTIF-DOWN", cdnNotification(waE2E.HistorySyncType_RECENT, 5, "/hist/down")))
	h.inject(t, histNotification(h.dev, "NOTIF-GONE", cdnNotification(waE2E.HistorySyncType_RECENT, 6, "/hist/gone")))

	testenv.Eventually(t, wait, func() bool { return len(h.progress(t)) == 4 }, "four progress events")
	testenv.Eventually(t, wait, func() bool { return h.queued(t) == 0 }, "history queue empty")
	prog := h.progress(t)
	for id, reason := range map[string]string{
		"NOTIF-TRUNC": "corrupt", "NOTIF-GARBAGE": "corrupt", "NOTIF-DOWN": "download_failed", "NOTIF-GONE": "http_404",
	} {
		p := prog[id]
		if p == nil || !p.Failed || p.Reason != reason || p.Sync != "recent" || !p.SyncedAt.Equal(histSynced) {
			t.Errorf("%s: %+v, want failed with %q", id, p, reason)
		}
	}
	if n := len(h.messages(t)); n != 0 {
		t.Errorf("%d messages published from corrupt chunks", n)
	}
	h.cdn.mu.Lock()
	downloads := h.cdn.downloads
	h.cdn.mu.Unlock()
	if downloads != 2+2+1 { // two chunks fetched once, the failing one twice (MaxAttempts), the one gone from the CDN once (404 is final)
		t.Errorf("%d downloads", downloads)
	}
}
