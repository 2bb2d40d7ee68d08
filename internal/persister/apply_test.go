package persister

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/testenv"
)

func newTestPersister(t testing.TB, n int) *Persister {
	t.Helper()
	db := openDB(t, n)
	p, err := New(Config{}, db, nil, testenv.Logger(t).Level(1))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// stored emulates the stream: events with an id seen before are dropped
// (duplicate window) unless published raw.
func stored(t testing.TB, ops []genOp) []Item {
	seen := map[string]bool{}
	var items []Item
	for _, o := range ops {
		if !o.raw && seen[o.env.ID] {
			continue
		}
		seen[o.env.ID] = true
		items = append(items, item(t, o.env, uint64(len(items)+1)))
	}
	return items
}

func applyAll(t testing.TB, p *Persister, items []Item, sizes func() int) {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < len(items); {
		n := min(sizes(), len(items)-i)
		poison, err := p.Apply(ctx, items[i:i+n])
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		for j, e := range poison {
			if e != nil {
				t.Fatalf("event %d poison: %v", i+j, e)
			}
		}
		i += n
	}
}

func modelOf(items []Item, mentorados int) *model {
	md := newModel(mentorados)
	for _, it := range items {
		md.apply(it.Data, it.Seq)
	}
	return md
}

// TestApplyMatchesModel applies a generated stream in batches of varied
// sizes and compares every row with the one-by-one model; then applies it
// all again in a different split and expects nothing to change.
func TestApplyMatchesModel(t *testing.T) {
	ops := generate(t, 7, 4000, 3)
	items := stored(t, ops)
	want := modelOf(items, 3).rows()
	p := newTestPersister(t, 3)
	r := rand.New(rand.NewPCG(1, 2))
	applyAll(t, p, items, func() int { return []int{1, 7, 50, 500}[r.IntN(4)] })
	got := dump(t, p.db)
	diffLines(t, "after one pass", want, got)
	// The stream covers what issue #12 added.
	covered := map[string]int{}
	for _, l := range got {
		f := strings.Split(l, "|")
		switch {
		case f[0] == "group":
			covered["groups"]++
		case f[0] == "msg" && strings.HasSuffix(f[3], "@g.us"):
			covered["group messages"]++
			if f[18] != "-" {
				covered["group messages with a lead"]++
			}
		case f[0] == "msg" && f[len(f)-1] == "true":
			covered["history messages"]++
		case f[0] == "lead" && f[2] == "-":
			covered["LID-only leads"]++
		case f[0] == "lead" && f[len(f)-1] == "address_book":
			covered["address-book names"]++
		}
	}
	for _, k := range []string{"groups", "group messages", "group messages with a lead", "history messages", "LID-only leads", "address-book names"} {
		if covered[k] == 0 {
			t.Errorf("generated stream has no %s: %v", k, covered)
		}
	}
	md := modelOf(items, 3)
	diffLines(t, "lead events after one pass", md.leadFacts(), dumpLeadFacts(t, p.db))
	applyAll(t, p, items, func() int { return 333 })
	diffLines(t, "after a second pass", want, dump(t, p.db))
	diffLines(t, "lead events after a second pass", md.leadFacts(), dumpLeadFacts(t, p.db))
}

// TestApplyOneByOneEqualsBatch: the same stream one event per transaction
// and in one big batch give the same rows.
func TestApplyOneByOneEqualsBatch(t *testing.T) {
	items := stored(t, generate(t, 11, 1500, 2))
	a := newTestPersister(t, 2)
	applyAll(t, a, items, func() int { return 1 })
	b := newTestPersister(t, 2)
	applyAll(t, b, items, func() int { return 2000 })
	diffLines(t, "batch vs one by one", dump(t, a.db), dump(t, b.db))
	diffLines(t, "model vs one by one", modelOf(items, 2).rows(), dump(t, a.db))
	diffLines(t, "lead events, batch vs one by one", dumpLeadFacts(t, a.db), dumpLeadFacts(t, b.db))
}

func TestApplyScenarios(t *testing.T) {
	p := newTestPersister(t, 2)
	ctx := context.Background()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	seq := uint64(0)
	apply := func(envs ...event.Envelope) []error {
		t.Helper()
		var items []Item
		for _, e := range envs {
			seq++
			items = append(items, item(t, e, seq))
		}
		poison, err := p.Apply(ctx, items)
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		return poison
	}
	one := func(q string, args ...any) string {
		t.Helper()
		var s string
		if err := p.db.Pool.QueryRow(ctx, q, args...).Scan(&s); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return s
	}
	msg := func(id, ph, lid, push string, dir event.Direction, kind event.Kind, text, target string) event.Envelope {
		st := event.MessageReceived
		if dir == event.DirectionOut {
			st = event.MessageSent
		}
		chat := lid
		if ph != "" {
			chat = ph + "@s.whatsapp.net"
		}
		at = at.Add(time.Second)
		return mustEnv(t, 1, event.MessageEventID(1, id), at, &event.Message{WAID: id, ChatJID: chat, SenderJID: chat,
			Phone: ph, LID: lid, PushName: push, Direction: dir, Kind: kind, Text: text, TargetID: target, Timestamp: at, Status: st})
	}

	t.Run("receipt before message", func(t *testing.T) {
		rc := mustEnv(t, 1, "r1", at, &event.Receipt{MessageIDs: []string{"A1"}, ChatJID: "x", Kind: event.ReceiptRead, Timestamp: at})
		apply(rc)
		if got := one(`SELECT status FROM whatsapp_pending_receipts WHERE wa_message_id = 'A1'`); got != "read" {
			t.Fatalf("pending = %s", got)
		}
		apply(msg("A1", "5511900000001", "", "", event.DirectionOut, event.KindText, "hi", ""))
		if got := one(`SELECT status FROM whatsapp_messages WHERE wa_message_id = 'A1'`); got != "read" {
			t.Fatalf("status = %s, want read", got)
		}
		if got := one(`SELECT count(*)::text FROM whatsapp_pending_receipts`); got != "0" {
			t.Fatalf("pending left: %s", got)
		}
		// An older receipt does not move it back.
		apply(mustEnv(t, 1, "r2", at, &event.Receipt{MessageIDs: []string{"A1"}, ChatJID: "x", Kind: event.ReceiptDelivered, Timestamp: at}))
		if got := one(`SELECT status FROM whatsapp_messages WHERE wa_message_id = 'A1'`); got != "read" {
			t.Fatalf("status = %s after delivered, want read", got)
		}
	})

	t.Run("receipts and their message in one batch", func(t *testing.T) {
		rc := func(id string, k event.ReceiptKind) event.Envelope {
			return mustEnv(t, 1, "rb-"+id+string(k), at, &event.Receipt{MessageIDs: []string{id}, ChatJID: "x", Kind: k, Timestamp: at})
		}
		pm := &event.Message{WAID: "B3", ChatJID: "5511900000005@s.whatsapp.net", SenderJID: "5511900000005@s.whatsapp.net",
			Phone: "5511900000005", Direction: event.DirectionOut, Kind: event.KindText, Text: "audio", Timestamp: at,
			Status: event.MessagePlayed}
		played := mustEnv(t, 1, event.MessageEventID(1, "B3"), at, pm)
		apply(rc("B1", event.ReceiptRead),
			msg("B1", "5511900000005", "", "", event.DirectionOut, event.KindText, "one", ""),
			msg("B2", "5511900000005", "", "", event.DirectionOut, event.KindText, "two", ""),
			rc("B2", event.ReceiptDelivered), rc("B2", event.ReceiptRead), rc("B2", event.ReceiptDelivered),
			played, rc("B3", event.ReceiptRead))
		got := one(`SELECT string_agg(wa_message_id || '=' || status || '/' || status_rank, ',' ORDER BY wa_message_id)
			FROM whatsapp_messages WHERE wa_message_id IN ('B1', 'B2', 'B3')`)
		if got != "B1=read/3,B2=read/3,B3=played/4" {
			t.Fatalf("statuses = %s", got)
		}
		if got := one(`SELECT count(*)::text FROM whatsapp_pending_receipts WHERE wa_message_id LIKE 'B%'`); got != "0" {
			t.Fatalf("pending left: %s", got)
		}
		// Stored already: a repeat with a lower receipt in one batch keeps it.
		apply(msg("B2", "5511900000005", "", "", event.DirectionOut, event.KindText, "two", ""), rc("B2", event.ReceiptDelivered))
		if got := one(`SELECT status FROM whatsapp_messages WHERE wa_message_id = 'B2'`); got != "read" {
			t.Fatalf("B2 = %s after repeat, want read", got)
		}
	})

	t.Run("edit before original, then revoke", func(t *testing.T) {
		apply(msg("E2", "5511900000002", "", "Ana", event.DirectionIn, event.KindEdit, "fixed", "E1"),
			msg("E1", "5511900000002", "", "Ana", event.DirectionIn, event.KindText, "typo", ""))
		if got := one(`SELECT body || '/' || edited FROM whatsapp_messages WHERE wa_message_id = 'E1'`); got != "fixed/true" {
			t.Fatalf("edited = %s", got)
		}
		apply(msg("E3", "5511900000002", "", "Ana", event.DirectionIn, event.KindRevoke, "", "E1"))
		if got := one(`SELECT body || '/' || revoked FROM whatsapp_messages WHERE wa_message_id = 'E1'`); got != "/true" {
			t.Fatalf("revoked = %s", got)
		}
		if got := one(`SELECT body FROM whatsapp_messages WHERE wa_message_id = 'E2'`); got != "" {
			t.Fatalf("edit text kept after revoke: %q", got)
		}
	})

	t.Run("lid lead merged into phone lead", func(t *testing.T) {
		const lid, ph = "777@lid", "5511900000003"
		apply(msg("L1", "", lid, "Bia", event.DirectionIn, event.KindText, "oi", ""))
		apply(msg("L2", ph, "", "Beatriz", event.DirectionIn, event.KindText, "oi de novo", ""))
		if got := one(`SELECT count(*)::text FROM leads WHERE lid = $1 OR phone = $2`, lid, ph); got != "2" {
			t.Fatalf("leads before merge = %s", got)
		}
		c := &event.Contact{JID: lid, LID: lid, Phone: ph, PushName: "Bia"}
		apply(mustEnv(t, 1, event.ContactEventID(1, c, at), at, c))
		if got := one(`SELECT count(*)::text FROM leads WHERE lid = $1 OR phone = $2`, lid, ph); got != "1" {
			t.Fatalf("leads after merge = %s", got)
		}
		if got := one(`SELECT string_agg(DISTINCT coalesce(t.phone, '?') || '>' || l.phone, ',') FROM whatsapp_messages t JOIN leads l ON l.id = t.lead_id WHERE wa_message_id IN ('L1','L2')`); got != ph+">"+ph {
			t.Fatalf("messages after merge: %s", got)
		}
		if got := one(`SELECT jid || '|' || lid FROM whatsapp_contacts WHERE phone = $1`, ph); got != ph+"@s.whatsapp.net|"+lid {
			t.Fatalf("contact = %s", got)
		}
		// A late LID-only event resolves to the phone.
		apply(msg("L3", "", lid, "Bia", event.DirectionIn, event.KindText, "late", ""))
		if got := one(`SELECT coalesce(phone, '?') FROM whatsapp_messages WHERE wa_message_id = 'L3'`); got != ph {
			t.Fatalf("late lid message phone = %s", got)
		}
		if got := one(`SELECT count(*)::text FROM leads WHERE lid = $1 OR phone = $2`, lid, ph); got != "1" {
			t.Fatalf("leads after late lid event = %s", got)
		}
	})

	t.Run("connection never moves back", func(t *testing.T) {
		t1 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		newer := mustEnv(t, 2, "c2", t1.Add(time.Minute), &event.Connection{Status: event.StatusConnected, Phone: "5511988887777"})
		older := mustEnv(t, 2, "c1", t1, &event.Connection{Status: event.StatusQR})
		apply(newer, older)
		apply(older)
		if got := one(`SELECT wa_status || '|' || wa_phone FROM mentorados WHERE id = 2`); got != "connected|5511988887777" {
			t.Fatalf("status = %s", got)
		}
	})

	t.Run("poison isolated", func(t *testing.T) {
		bad := mustEnv(t, 9, "x", at, &event.Contact{JID: "1@lid"}) // mentorado 9 does not exist
		good := msg("P1", "5511900000009", "", "", event.DirectionIn, event.KindText, "ok", "")
		poison := apply(bad, good)
		var pe *PoisonError
		if !errors.As(poison[0], &pe) || !errors.Is(poison[0], ErrUnknownMentorado) {
			t.Fatalf("poison[0] = %v", poison[0])
		}
		if poison[1] != nil {
			t.Fatalf("good event poisoned: %v", poison[1])
		}
		seq++
		res, err := p.Apply(ctx, []Item{{Subject: "wa.1.evt.message", Seq: seq, Data: []byte(`{"v":1,`)},
			{Subject: "wa.1.evt.message", Seq: seq + 1, Data: []byte(`{"v":1,"id":"z","type":"message","mentorado_id":1,"occurred_at":"2026-01-01T00:00:00Z","data":{"wa_id":"Z1","chat_jid":"c","sender_jid":"c","direction":"in","kind":"text","text":"nul\u0000byte","timestamp":"2026-01-01T00:00:00Z","status":"received"}}`)}})
		if err != nil {
			t.Fatal(err)
		}
		if !errors.Is(res[0], event.ErrMalformed) {
			t.Fatalf("undecodable: %v", res[0])
		}
		// Text from WhatsApp is always stored: a NUL (which Postgres text
		// cannot hold) in an envelope from an older publisher is removed,
		// never a reason to dead-letter the message.
		if res[1] != nil {
			t.Fatalf("NUL byte text dead-lettered: %v", res[1])
		}
		if got := one(`SELECT body FROM whatsapp_messages WHERE wa_message_id = 'Z1'`); got != "nulbyte" {
			t.Fatalf("body = %q", got)
		}
		if got := one(`SELECT count(*)::text FROM whatsapp_messages WHERE wa_message_id = 'P1'`); got != "1" {
			t.Fatalf("good event not applied")
		}
	})

	t.Run("NUL in a push name", func(t *testing.T) {
		// As an older connector published them: a contact and a message
		// whose push name carries NUL. Both are stored, the name cleaned.
		seq++
		res, err := p.Apply(ctx, []Item{
			{Subject: "wa.1.evt.contact", Seq: seq, Data: []byte(`{"v":1,"id":"1:contact:nul","type":"contact","mentorado_id":1,"occurred_at":"2026-01-01T00:00:00Z","data":{"jid":"5521911112222@s.whatsapp.net","push_name":"Evil\u0000Name"}}`)},
			{Subject: "wa.1.evt.message", Seq: seq + 1, Data: []byte(`{"v":1,"id":"1:msg:N1","type":"message","mentorado_id":1,"occurred_at":"2026-01-01T00:00:00Z","data":{"wa_id":"N1","chat_jid":"5521911112222@s.whatsapp.net","sender_jid":"5521911112222@s.whatsapp.net","phone":"5521911112222","push_name":"Evil\u0000Name","direction":"in","kind":"text","text":"x","timestamp":"2026-01-01T00:00:00Z","status":"received"}}`)},
		})
		seq++
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range res {
			if e != nil {
				t.Fatalf("event %d dead-lettered: %v", i, e)
			}
		}
		if got := one(`SELECT push_name || '|' || (SELECT name FROM leads WHERE phone = '5521911112222') || '|' || (SELECT push_name FROM whatsapp_messages WHERE wa_message_id = 'N1')
			FROM whatsapp_contacts WHERE jid = '5521911112222@s.whatsapp.net'`); got != "EvilName|EvilName|EvilName" {
			t.Fatalf("contact|lead|message push name = %q", got)
		}
	})
}

// TestApplyRedeliveredBatchesMatchModel: a persister killed with a batch
// unacked gets that batch again after AckWait, when newer events are
// already applied. Redelivered batches must not move anything backwards:
// contact names (address book, push, business) and lead names end as the
// model applying the stream once, in order.
func TestApplyRedeliveredBatchesMatchModel(t *testing.T) {
	items := stored(t, generate(t, 23, 3000, 2))
	want := modelOf(items, 2).rows()
	p := newTestPersister(t, 2)
	r := rand.New(rand.NewPCG(5, 6))
	var batches [][]Item
	for i := 0; i < len(items); {
		n := min(1+r.IntN(120), len(items)-i)
		batches = append(batches, items[i:i+n])
		i += n
	}
	ctx := context.Background()
	redelivered := 0
	for i, b := range batches {
		todo := [][]Item{b}
		if i > 3 && r.IntN(3) == 0 { // an earlier batch comes back
			todo = append(todo, batches[i-1-r.IntN(min(i, 8))])
			redelivered++
		}
		for _, x := range todo {
			if poison, err := p.Apply(ctx, x); err != nil {
				t.Fatal(err)
			} else {
				for _, e := range poison {
					if e != nil {
						t.Fatalf("poison: %v", e)
					}
				}
			}
		}
	}
	t.Logf("%d batches, %d redelivered late", len(batches), redelivered)
	diffLines(t, "after redeliveries", want, dump(t, p.db))
	diffLines(t, "lead events after redeliveries", modelOf(items, 2).leadFacts(), dumpLeadFacts(t, p.db))
}

// TestApplyShuffledNamesMatchModel: contact facts and inbound messages
// whose names change over time, applied in any order (several persisters,
// replays, redeliveries) and some twice, converge to the rows of the model
// applying the stream once in order: each contact name is its newest fact,
// a lead's name its best fact (address book > earliest push name >
// business).
func TestApplyShuffledNamesMatchModel(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	base := time.Date(2026, 2, 1, 9, 0, 0, 0, time.UTC)
	names := []string{"Ana", "Bruno", "", "Camila", "Otávio", "Agenda Camila", "Agenda Otávio"}
	var envs []event.Envelope
	for i := range 1500 {
		m := int64(1 + r.IntN(2))
		person := r.IntN(12)
		ph := fmt.Sprintf("55119%08d", person)
		lid := ""
		if person%3 == 0 {
			lid = fmt.Sprintf("77%08d@lid", person)
		}
		// WhatsApp times are not stream order: offline messages and
		// syncs arrive late; some facts share an instant.
		at := base.Add(time.Duration(r.IntN(600)) * time.Second)
		pick := func() string { return names[r.IntN(len(names))] }
		if r.IntN(2) == 0 {
			c := &event.Contact{JID: phone.JID(ph), Phone: ph, LID: lid, Name: pick(), PushName: pick()}
			if r.IntN(5) == 0 {
				c.BusinessName = "Loja " + pick()
			}
			envs = append(envs, mustEnv(t, m, event.ContactEventID(m, c, at), at, c))
			continue
		}
		id := fmt.Sprintf("S%06d", i)
		msg := &event.Message{WAID: id, ChatJID: phone.JID(ph), SenderJID: phone.JID(ph), Phone: ph, LID: lid, PushName: pick(),
			Direction: event.DirectionIn, Kind: event.KindText, Text: "oi", Timestamp: at, Status: event.MessageReceived}
		envs = append(envs, mustEnv(t, m, event.MessageEventID(m, id), at, msg))
	}
	var items []Item
	for _, e := range envs {
		items = append(items, item(t, e, uint64(len(items)+1)))
	}
	want := modelOf(items, 2).rows()

	shuffled := slices.Clone(items)
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for range 300 { // and some delivered twice
		shuffled = append(shuffled, items[r.IntN(len(items))])
	}
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	p := newTestPersister(t, 2)
	applyAll(t, p, shuffled, func() int { return []int{1, 5, 40, 200}[r.IntN(4)] })
	diffLines(t, "shuffled", want, dump(t, p.db))
}
