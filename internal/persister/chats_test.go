package persister

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// chatEnv builds events for the scenario tests of issue #12.
type chatEnv struct {
	t   *testing.T
	p   *Persister
	seq uint64
	at  time.Time
}

func newChatEnv(t *testing.T, p *Persister) *chatEnv {
	return &chatEnv{t: t, p: p, at: time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)}
}

// apply applies envs as one batch, each with the next sequence.
func (c *chatEnv) apply(envs ...event.Envelope) {
	c.t.Helper()
	var items []Item
	for _, e := range envs {
		c.seq++
		items = append(items, item(c.t, e, c.seq))
	}
	poison, err := c.p.Apply(context.Background(), items)
	if err != nil {
		c.t.Fatal(err)
	}
	for _, e := range poison {
		if e != nil {
			c.t.Fatalf("poison: %v", e)
		}
	}
}

func (c *chatEnv) next() time.Time { c.at = c.at.Add(time.Second); return c.at }

func (c *chatEnv) msg(m int64, id, chat, ph, lid, push string, dir event.Direction, h *event.History) event.Envelope {
	at := c.next()
	sender := chat
	if ph != "" && event.IsGroupJID(chat) {
		sender = ph + "@s.whatsapp.net"
	}
	st := event.MessageReceived
	if dir == event.DirectionOut {
		st, sender = event.MessageSent, "5511900000000@s.whatsapp.net"
	}
	ts := at
	if h != nil && h.SyncedAt.IsZero() {
		h.SyncedAt = at
	}
	return mustEnv(c.t, m, event.MessageEventID(m, id), at, &event.Message{WAID: id, ChatJID: chat, SenderJID: sender,
		Phone: ph, LID: lid, PushName: push, Direction: dir, Kind: event.KindText, Text: "oi", Timestamp: ts, Status: st, History: h})
}

func (c *chatEnv) query(sql string, args ...any) string {
	c.t.Helper()
	var s string
	if err := c.p.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		c.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func TestApplyGroupMessages(t *testing.T) {
	p := newTestPersister(t, 2) // 1: group_leads off, 2: on
	c := newChatEnv(t, p)
	const grp, ana = "120363041234567890@g.us", "5511912345678"
	// Ana has a lead from a direct message in both tenants.
	c.apply(c.msg(1, "D1", ana+"@s.whatsapp.net", ana, "", "Ana", event.DirectionIn, nil),
		c.msg(2, "D1", ana+"@s.whatsapp.net", ana, "", "Ana", event.DirectionIn, nil))
	// Group messages from Ana, and from Bia who has no lead.
	c.apply(c.msg(1, "G1", grp, ana, "201@lid", "Ana", event.DirectionIn, nil),
		c.msg(1, "G2", grp, "5511955554444", "", "Bia", event.DirectionIn, nil),
		c.msg(1, "G3", grp, "", "", "", event.DirectionOut, nil),
		c.msg(2, "G1", grp, ana, "", "Ana", event.DirectionIn, nil),
		c.msg(2, "G2", grp, "5511955554444", "", "Bia", event.DirectionIn, nil))
	if got := c.query(`SELECT count(*)::text FROM leads WHERE mentorado_id = 1`); got != "1" {
		t.Fatalf("mentorado 1 leads = %s, want only Ana's from the direct chat", got)
	}
	if got := c.query(`SELECT count(*)::text FROM leads WHERE mentorado_id = 2`); got != "2" {
		t.Fatalf("mentorado 2 (group_leads) leads = %s, want Ana and Bia", got)
	}
	for _, id := range []string{"G1", "G2", "G3"} {
		got := c.query(`SELECT chat || '|' || coalesce(lead_id::text, 'none') FROM whatsapp_messages WHERE mentorado_id = 1 AND wa_message_id = $1`, id)
		if got != grp+"|none" {
			t.Errorf("mentorado 1 %s: chat|lead = %s, want the group and no lead", id, got)
		}
	}
	// The group message is not in Ana's direct thread.
	if got := c.query(`SELECT string_agg(wa_message_id, ',' ORDER BY wa_message_id) FROM whatsapp_messages
		WHERE mentorado_id = 1 AND chat = $1`, ana+"@s.whatsapp.net"); got != "D1" {
		t.Errorf("Ana's direct thread = %s, want D1 only", got)
	}
	if got := c.query(`SELECT string_agg(wa_message_id || ':' || (lead_id IS NOT NULL)::text, ',' ORDER BY wa_message_id)
		FROM whatsapp_messages WHERE mentorado_id = 2 AND chat = $1`, grp); got != "G1:true,G2:true" {
		t.Errorf("mentorado 2 group messages = %s, want both linked", got)
	}
	// A LID mapping learned later links nothing in the group for mentorado 1.
	c.apply(c.msg(1, "D2", ana+"@s.whatsapp.net", ana, "201@lid", "Ana", event.DirectionIn, nil))
	if got := c.query(`SELECT count(*)::text FROM whatsapp_messages WHERE mentorado_id = 1 AND chat_jid = $1 AND lead_id IS NOT NULL`, grp); got != "0" {
		t.Errorf("%s group messages of mentorado 1 got a lead after the merge", got)
	}
}

func TestApplyHistoryLeads(t *testing.T) {
	p := newTestPersister(t, 3) // 1: recent (30 days), 2: all, 3: none
	c := newChatEnv(t, p)
	sync := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	hist := func(m int64, id, ph string, age time.Duration, dir event.Direction) event.Envelope {
		e := c.msg(m, id, ph+"@s.whatsapp.net", ph, "", "Hist "+id, dir, &event.History{Sync: "initial_bootstrap", SyncedAt: sync})
		_, pl, _ := event.Decode(mustEncode(t, e))
		msg := pl.(*event.Message)
		msg.Timestamp = sync.Add(-age)
		return mustEnv(t, m, e.ID, e.OccurredAt, msg)
	}
	day := 24 * time.Hour
	for m := int64(1); m <= 3; m++ {
		c.apply(hist(m, "RECENT", "5511900000001", 29*day, event.DirectionIn),
			hist(m, "OLD", "5511900000002", 31*day, event.DirectionIn),
			hist(m, "OUT", "5511900000003", day, event.DirectionOut))
	}
	want := map[int64]string{1: "5511900000001", 2: "5511900000001,5511900000002", 3: ""}
	for m, w := range want {
		if got := c.query(`SELECT coalesce(string_agg(phone, ',' ORDER BY phone), '') FROM leads WHERE mentorado_id = $1`, m); got != w {
			t.Errorf("mentorado %d history leads = %q, want %q", m, got, w)
		}
		if got := c.query(`SELECT bool_and(history)::text FROM whatsapp_messages WHERE mentorado_id = $1`, m); got != "true" {
			t.Errorf("mentorado %d: history flag %s", m, got)
		}
	}
	// A history message links to its phone's lead when one exists (now or
	// when it is created later).
	c.apply(c.msg(3, "LIVE", "5511900000002@s.whatsapp.net", "5511900000002", "", "Live", event.DirectionIn, nil))
	if got := c.query(`SELECT (lead_id IS NOT NULL)::text FROM whatsapp_messages WHERE mentorado_id = 3 AND wa_message_id = 'OLD'`); got != "true" {
		t.Errorf("old history message not linked to the lead its phone got later")
	}
	if got := c.query(`SELECT name || '|' || name_source FROM leads WHERE mentorado_id = 3`); got != "Live|push" {
		t.Errorf("lead named %s, want the live push name (history names only what it creates)", got)
	}
}

func TestApplyLiveAndHistoryStoredOnce(t *testing.T) {
	p := newTestPersister(t, 1)
	c := newChatEnv(t, p)
	live := c.msg(1, "X1", "5511900000009@s.whatsapp.net", "5511900000009", "", "Ana", event.DirectionIn, nil)
	_, pl, _ := event.Decode(mustEncode(t, live))
	h := *pl.(*event.Message)
	h.History, h.Status = &event.History{Sync: "full", SyncedAt: c.next()}, event.MessageRead
	hist := mustEnv(t, 1, live.ID, c.at, &h)
	c.apply(hist)
	if got := c.query(`SELECT history::text FROM whatsapp_messages WHERE wa_message_id = 'X1'`); got != "true" {
		t.Fatalf("history-only message: history = %s", got)
	}
	c.apply(live)
	c.apply(hist) // and the history copy again: live wins
	if got := c.query(`SELECT count(*) || '|' || bool_or(history) || '|' || max(status) FROM whatsapp_messages WHERE wa_message_id = 'X1'`); got != "1|false|read" {
		t.Fatalf("live + history = %s, want one row, not history, status read", got)
	}
}

func TestApplyLeadNameSources(t *testing.T) {
	p := newTestPersister(t, 1)
	c := newChatEnv(t, p)
	const ph = "5511977776666"
	contactAt := func(at time.Time, name, push, biz string) event.Envelope {
		ct := &event.Contact{JID: ph + "@s.whatsapp.net", Phone: ph, Name: name, PushName: push, BusinessName: biz}
		return mustEnv(t, 1, event.ContactEventID(1, ct, at), at, ct)
	}
	contact := func(name, push, biz string) event.Envelope { return contactAt(c.next(), name, push, biz) }
	early := c.at
	lead := func() string {
		return c.query(`SELECT name || '|' || coalesce(name_source, '-') FROM leads WHERE phone = $1`, ph)
	}
	c.apply(contact("", "", "Loja X"))
	c.apply(c.msg(1, "N1", ph+"@s.whatsapp.net", ph, "", "", event.DirectionIn, nil))
	if got := lead(); got != "Loja X|business" {
		t.Fatalf("lead = %s, want the business name", got)
	}
	c.apply(c.msg(1, "N2", ph+"@s.whatsapp.net", ph, "", "Rafa", event.DirectionIn, nil))
	if got := lead(); got != "Rafa|push" {
		t.Fatalf("push over business: lead = %s", got)
	}
	newer := contact("Rafael (agenda)", "", "")
	c.apply(newer)
	if got := lead(); got != "Rafael (agenda)|address_book" {
		t.Fatalf("address book renames: lead = %s", got)
	}
	c.apply(c.msg(1, "N3", ph+"@s.whatsapp.net", ph, "", "Outro", event.DirectionIn, nil), contact("", "Outro", ""))
	if got := lead(); got != "Rafael (agenda)|address_book" {
		t.Fatalf("a push name replaced the address-book name: %s", got)
	}
	c.apply(contact("Rafael Souza", "", ""))
	c.apply(contactAt(early, "Rafa velho", "", "")) // an older address-book fact applied late
	if got := lead(); got != "Rafael Souza|address_book" {
		t.Fatalf("newest address-book name: lead = %s", got)
	}
	// Named in the CRM: never renamed.
	if _, err := p.db.Pool.Exec(context.Background(), `UPDATE leads SET name = 'Cliente VIP', name_source = 'crm' WHERE phone = $1`, ph); err != nil {
		t.Fatal(err)
	}
	c.apply(contact("Outro nome", "", "Loja Y"), c.msg(1, "N4", ph+"@s.whatsapp.net", ph, "", "Zé", event.DirectionIn, nil))
	if got := lead(); got != "Cliente VIP|crm" {
		t.Fatalf("crm name replaced: %s", got)
	}
	// The old rule: a name without a version is a CRM name.
	if _, err := p.db.Pool.Exec(context.Background(), `UPDATE leads SET name = 'Legado', name_source = NULL, name_at = NULL WHERE phone = $1`, ph); err != nil {
		t.Fatal(err)
	}
	c.apply(contact("Mais um", "", ""))
	if got := lead(); got != "Legado|-" {
		t.Fatalf("legacy crm name replaced: %s", got)
	}
	// Renamed events: one per change of name or source, none for the
	// same name again.
	rows, err := p.db.Pool.Query(context.Background(), `SELECT data->>'change', coalesce(data->>'name', ''), coalesce(data->>'name_source', '')
		FROM lead_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var ch, n, s string
		if err := rows.Scan(&ch, &n, &s); err != nil {
			t.Fatal(err)
		}
		got = append(got, ch+":"+n+":"+s)
	}
	want := []string{"created:Loja X:business", "renamed:Rafa:push", "renamed:Rafael (agenda):address_book",
		"renamed:Rafael Souza:address_book"}
	if len(got) != len(want) {
		t.Fatalf("lead events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("lead events %v, want %v", got, want)
		}
	}
}

func TestApplyGroupSnapshotNewestWins(t *testing.T) {
	p := newTestPersister(t, 1)
	c := newChatEnv(t, p)
	const jid = "120363041234567890@g.us"
	snap := func(subject string, at time.Time, parts ...event.Participant) event.Envelope {
		g := &event.Group{JID: jid, Subject: subject, Participants: parts}
		return mustEnv(t, 1, event.GroupEventID(1, g, at), at, g)
	}
	t0 := c.next()
	old := snap("Turma 6", t0, event.Participant{JID: "5511911110000@s.whatsapp.net", Phone: "5511911110000"})
	newest := snap("Turma 7", t0.Add(time.Minute), event.Participant{JID: "201985678901234@lid", Phone: "5511912345678", LID: "201985678901234@lid", Admin: true})
	c.apply(newest)
	c.apply(old) // observed earlier, applied later
	got := c.query(`SELECT subject || '|' || participants::text FROM whatsapp_groups WHERE jid = $1`, jid)
	var parts []event.Participant
	subject, js, _ := cutPipe(got)
	if err := json.Unmarshal([]byte(js), &parts); err != nil {
		t.Fatal(err)
	}
	if subject != "Turma 7" || len(parts) != 1 || parts[0].LID != "201985678901234@lid" || !parts[0].Admin {
		t.Fatalf("group = %s, want the newest snapshot", got)
	}
	// The participant's LID → phone mapping was learned.
	if got := c.query(`SELECT phone FROM whatsapp_lid_phones WHERE lid = '201985678901234@lid'`); got != "5511912345678" {
		t.Fatalf("mapping = %s", got)
	}
}

func cutPipe(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '|' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// TestApplyLeadEventsOnce: a LID-only lead is created, then folded into
// the phone lead when the mapping is learned; replaying everything in
// other batch splits writes no second event.
func TestApplyLeadEventsOnce(t *testing.T) {
	p := newTestPersister(t, 1)
	c := newChatEnv(t, p)
	const ph, lid = "5511944443333", "301@lid"
	envs := []event.Envelope{
		c.msg(1, "L1", lid, "", lid, "Lia", event.DirectionIn, nil),
		c.msg(1, "P1", ph+"@s.whatsapp.net", ph, "", "Lia", event.DirectionIn, nil),
		c.msg(1, "B1", ph+"@s.whatsapp.net", ph, lid, "Lia", event.DirectionIn, nil), // teaches the mapping: merge
	}
	c.apply(envs[0])
	c.apply(envs[1])
	var lidLead, phoneLead int64
	_ = p.db.Pool.QueryRow(context.Background(), `SELECT id FROM leads WHERE lid = $1 AND phone IS NULL`, lid).Scan(&lidLead)
	_ = p.db.Pool.QueryRow(context.Background(), `SELECT id FROM leads WHERE phone = $1`, ph).Scan(&phoneLead)
	c.apply(envs[2])
	for range 2 {
		c.apply(envs...)
		c.apply(envs[2], envs[0])
	}
	rows, err := p.db.Pool.Query(context.Background(), `SELECT event_id, data::text FROM lead_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	var merged event.Lead
	mergedID := event.LeadEventID(1, phoneLead, event.LeadMerged, itoa(lidLead))
	for rows.Next() {
		var id, data string
		if err := rows.Scan(&id, &data); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if id == mergedID {
			if err := json.Unmarshal([]byte(data), &merged); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []string{event.LeadEventID(1, lidLead, event.LeadCreated, ""), event.LeadEventID(1, phoneLead, event.LeadCreated, ""),
		event.LeadEventID(1, phoneLead, event.LeadMerged, itoa(lidLead))}
	if len(ids) != len(want) || ids[0] != want[0] || ids[1] != want[1] || ids[2] != want[2] {
		t.Fatalf("lead events %v, want %v", ids, want)
	}
	if merged.MergedLeadID != lidLead || merged.LeadID != phoneLead || merged.Phone != ph || merged.LID != lid {
		t.Fatalf("merged event %+v", merged)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestRunPublishesLeadEvents: lead events are published on
// wa.<m>.evt.lead after the commit and removed from the outbox; rows left
// by a crash between commit and publish are published when a persister
// starts; the persister acks its own lead events without writing.
func TestRunPublishesLeadEvents(t *testing.T) {
	db := openDB(t, 1)
	natsURL := testenv.NATS(t)
	b := newBus(t, natsURL)
	cfg := testConfig
	// A leftover from a crash: written, committed, never published.
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data)
		VALUES (1, '1:lead:999:phone:5511900000000', now(), '{"lead_id":999,"change":"phone","phone":"5511900000000","lid":"9@lid"}')`); err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, db, b, testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, p)
	c := &chatEnv{t: t, at: time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)}
	items := publish(t, b, []genOp{{env: c.msg(1, "E1", "5511933332222@s.whatsapp.net", "5511933332222", "", "Eva", event.DirectionIn, nil)}}, false)
	cons, err := b.OrderedConsumer(context.Background(), bus.StreamEvents, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"wa.1.evt.lead"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]event.Lead{}
	for len(got) < 2 {
		msg, err := cons.Next(jetstream.FetchMaxWait(20 * time.Second))
		if err != nil {
			t.Fatalf("lead events on the stream: %v (got %v)", err, got)
		}
		env, pl, err := event.Decode(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		got[env.ID] = *pl.(*event.Lead)
	}
	var leadID int64
	if err := db.Pool.QueryRow(context.Background(), `SELECT id FROM leads WHERE phone = '5511933332222'`).Scan(&leadID); err != nil {
		t.Fatal(err)
	}
	created, ok := got[event.LeadEventID(1, leadID, event.LeadCreated, "")]
	if !ok || created.Name != "Eva" || created.NameSource != "push" || created.WAID != "E1" || created.ChatJID != "5511933332222@s.whatsapp.net" {
		t.Fatalf("created event %+v (all: %v)", created, got)
	}
	if _, ok := got["1:lead:999:phone:5511900000000"]; !ok {
		t.Fatalf("leftover not published: %v", got)
	}
	// The persister consumed its own lead events (acked, nothing written).
	info, err := b.StreamInfo(context.Background(), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	waitDrained(t, b, cfg.WithDefaults().Consumer, info.State.LastSeq, 30*time.Second)
	testenv.Eventually(t, 10*time.Second, func() bool {
		n, err := db.PendingLeadEvents(context.Background())
		return err == nil && n == 0
	}, "outbox not emptied")
	if dl := counterValue(p.metrics.dlq); dl != 0 {
		t.Fatalf("%v events dead-lettered", dl)
	}
	_ = items
	r.stop(t)
}
