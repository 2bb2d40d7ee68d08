package main

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/zapbus/zapbus/internal/event"
)

// A realistic event mix for the persister and replay scenarios (issue #15):
// mentorados with their contacts (phone only, phone+LID, LID then phone,
// LID only; 9% legacy 8-digit Brazilian mobiles), ~60% messages in and out,
// ~34% receipts (some before their message, some naming several messages,
// some for messages that never come), ~4% contacts, 2% duplicate publishes
// (same Nats-Msg-Id: the stream's duplicate window drops them) and a fixed
// number of poison events. The generator also computes what the tables
// must hold afterwards, so a run checks correctness, not only speed.

// genPub is one publish as the connector makes it: subject, Nats-Msg-Id
// (the envelope id) and the encoded envelope.
type genPub struct {
	subject, msgID string
	data           []byte
	dup            bool // a retried publish of an earlier event
}

// genExpect is what the persister must have stored once every event is
// applied.
type genExpect struct {
	messages    int            // distinct messages
	status      map[string]int // "<m>:<wa id>" → final status rank (message and receipts)
	leadsPhone  int            // leads keyed by phone
	leadsLID    int            // leads known only by LID
	poison      int            // events that must end in WA_DLQ
	events      int            // distinct events (duplicates excluded), poison included
	msgEvents   int            // message events among them
	rcptEvents  int
	contactEvts int
}

type genPerson struct {
	phone, lid string
	class      int  // 0 phone only, 1 phone+LID, 2 LID then phone, 3 LID only
	revealed   bool // class 2: the phone has been published with the LID
	inbound    bool // sent at least one inbound message
	msgs       int
}

// phoneKnown reports whether the person's phone is in the stream by now.
func (p *genPerson) phoneKnown() bool { return p.class == 0 || p.class == 1 || p.revealed }

type genMentorado struct {
	id      int64
	persons []*genPerson
	outbox  []string // recent outbound message ids, receipts pick from them
}

// generate builds about n events over nm mentorados and nc contacts in
// total, with poison poison events, deterministically from seed.
func generate(seed uint64, n, nm, nc, poison int) ([]genPub, genExpect) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := 0
	now := func() time.Time { clock++; return base.Add(time.Duration(clock) * time.Millisecond) }
	ms := make([]*genMentorado, nm)
	for i := range ms {
		ms[i] = &genMentorado{id: int64(i + 1)}
	}
	for j := range nc {
		g := ms[j%nm]
		ddd := 11 + (j*7)%80
		ph := fmt.Sprintf("55%02d9%08d", ddd, 10000000+j)
		if (j*37)%100 < 9 { // legacy 8-digit mobile, as old contacts still carry
			ph = fmt.Sprintf("55%02d%08d", ddd, 90000000+j)
		}
		class := 0
		switch c := (j * 53) % 100; {
		case c < 40:
			class = 0
		case c < 70:
			class = 1
		case c < 85:
			class = 2
		default:
			class = 3
		}
		g.persons = append(g.persons, &genPerson{phone: ph, lid: fmt.Sprintf("%d%08d@lid", 17+j%9, 1000000+j), class: class})
	}
	exp := genExpect{status: map[string]int{}}
	var pubs []genPub
	ids := map[string]bool{}
	emit := func(env event.Envelope) {
		data, err := env.Encode()
		if err != nil {
			panic(fmt.Sprintf("gen: encode %s: %v", env.ID, err))
		}
		// The same receipt twice (same kind, same messages) has the same
		// id: the connector's retry of one event, dropped by the stream.
		dup := ids[env.ID]
		ids[env.ID] = true
		pubs = append(pubs, genPub{subject: env.Subject(), msgID: env.ID, data: data, dup: dup})
		if dup {
			return
		}
		exp.events++
		switch env.Type {
		case event.TypeMessage:
			exp.msgEvents++
		case event.TypeReceipt:
			exp.rcptEvents++
		case event.TypeContact:
			exp.contactEvts++
		}
	}
	mk := func(m int64, id string, at time.Time, p event.Payload) event.Envelope {
		env, err := event.New(m, id, at, p)
		if err != nil {
			panic(fmt.Sprintf("gen: %s: %v", id, err))
		}
		return env
	}
	raise := func(m int64, id string, rank int) {
		k := fmt.Sprintf("%d:%s", m, id)
		if cur, ok := exp.status[k]; !ok || rank > cur {
			exp.status[k] = rank
		}
	}
	// held are messages whose receipt goes out first: each is emitted
	// once the stream has moved on by after events.
	type held struct {
		env   event.Envelope
		after int
	}
	var holds []held
	sent := map[string]int{} // highest receipt rank published per message id
	counter := 0
	texts := []string{"oi", "tudo bem?", "quero saber o preço", "obrigado!", "pode me ligar amanhã às 10h?", "👍", "fechado"}
	names := []string{"Ana", "Bruno", "Carla", "Diego", "Eva", "Fábio", "Gil", "Helena"}
	own := func(m int64) string { return fmt.Sprintf("55119000%05d@s.whatsapp.net", m) }
	message := func(g *genMentorado, p *genPerson, in bool) event.Envelope {
		counter++
		id := fmt.Sprintf("3EB0%012X", counter)
		at := now()
		ph, lid := "", ""
		switch p.class {
		case 0:
			ph = p.phone
		case 1:
			ph, lid = p.phone, p.lid
		case 2:
			lid = p.lid
			// The phone shows up with the LID on the person's third
			// message (or a contact event may have revealed it).
			if p.revealed || p.msgs >= 2 {
				ph, p.revealed = p.phone, true
			}
		case 3:
			lid = p.lid
		}
		p.msgs++
		chat := lid
		if ph != "" {
			chat = ph + "@s.whatsapp.net"
		}
		msg := &event.Message{WAID: id, ChatJID: chat, Phone: ph, LID: lid, Kind: event.KindText,
			Text: texts[r.IntN(len(texts))], Timestamp: at}
		if in {
			msg.Direction, msg.SenderJID, msg.Status = event.DirectionIn, chat, event.MessageReceived
			msg.PushName = names[r.IntN(len(names))]
			p.inbound = true
		} else {
			msg.Direction, msg.SenderJID, msg.Status = event.DirectionOut, own(g.id), event.MessageSent
			g.outbox = append(g.outbox, id)
			if len(g.outbox) > 300 {
				g.outbox = g.outbox[len(g.outbox)-300:]
			}
		}
		exp.messages++
		raise(g.id, id, msg.Status.Rank())
		return mk(g.id, event.MessageEventID(g.id, id), at, msg)
	}
	receipt := func(g *genMentorado, ids []string, kind event.ReceiptKind) event.Envelope {
		at := now()
		for _, id := range ids {
			raise(g.id, id, kind.Status().Rank())
		}
		rc := &event.Receipt{MessageIDs: ids, ChatJID: g.persons[0].phone + "@s.whatsapp.net", Kind: kind, Timestamp: at}
		return mk(g.id, event.ReceiptEventID(g.id, kind, false, ids), at, rc)
	}
	for len(pubs) < n-poison {
		for i := 0; i < len(holds); i++ {
			if holds[i].after--; holds[i].after <= 0 {
				emit(holds[i].env)
				holds = append(holds[:i], holds[i+1:]...)
				i--
			}
		}
		g := ms[r.IntN(nm)]
		p := g.persons[r.IntN(len(g.persons))]
		switch x := r.Float64(); {
		case x < 0.60:
			in := r.Float64() < 0.55
			env := message(g, p, in)
			if !in && r.Float64() < 0.05 {
				// Its receipt overtakes it (another connector, a resend).
				holds = append(holds, held{env: env, after: 1 + r.IntN(50)})
				emit(receipt(g, []string{g.outbox[len(g.outbox)-1]}, event.ReceiptDelivered))
				continue
			}
			emit(env)
		case x < 0.94:
			if len(g.outbox) == 0 || r.Float64() < 0.03 {
				counter++
				emit(receipt(g, []string{fmt.Sprintf("GHOST%012X", counter)}, event.ReceiptRead)) // never comes
				// A ghost's status is only in the pending table.
				delete(exp.status, fmt.Sprintf("%d:GHOST%012X", g.id, counter))
				continue
			}
			// Receipts move a message forward: delivered, then read (a
			// repeated receipt is the same event, a duplicate publish).
			id := g.outbox[len(g.outbox)-1-r.IntN(min(len(g.outbox), 100))]
			for try := 0; try < 8 && sent[id] >= 3; try++ {
				id = g.outbox[len(g.outbox)-1-r.IntN(min(len(g.outbox), 300))]
			}
			kind := event.ReceiptDelivered
			if sent[id] >= 2 {
				kind = event.ReceiptRead
			}
			ids := []string{id}
			if r.Float64() < 0.2 { // a read receipt for the last few messages
				kind = event.ReceiptRead
				for k := 0; k < 1+r.IntN(3); k++ {
					ids = append(ids, g.outbox[len(g.outbox)-1-r.IntN(min(len(g.outbox), 20))])
				}
				ids = dedupe(ids)
			}
			for _, id := range ids {
				sent[id] = max(sent[id], kind.Status().Rank())
			}
			emit(receipt(g, ids, kind))
		case x < 0.98:
			at := now()
			c := &event.Contact{PushName: names[r.IntN(len(names))]}
			if r.Float64() < 0.5 {
				c.Name = names[r.IntN(len(names))] + " CRM"
			}
			switch {
			case p.class == 3 || (p.class == 2 && !p.revealed && r.Float64() < 0.7):
				c.JID, c.LID = p.lid, p.lid
			case p.class == 2:
				c.JID, c.Phone, c.LID = p.phone+"@s.whatsapp.net", p.phone, p.lid
				p.revealed = true
			case p.class == 1:
				c.JID, c.Phone, c.LID = p.phone+"@s.whatsapp.net", p.phone, p.lid
			default:
				c.JID, c.Phone = p.phone+"@s.whatsapp.net", p.phone
			}
			emit(mk(g.id, event.ContactEventID(g.id, c, at), at, c))
		default:
			if len(pubs) == 0 {
				continue
			}
			d := pubs[len(pubs)-1-r.IntN(min(len(pubs), 2000))]
			d.dup = true
			pubs = append(pubs, d)
		}
	}
	for _, h := range holds {
		emit(h.env)
	}
	// Poison: events of a mentorado that does not exist, and envelopes
	// that do not decode, on subjects the connector may publish to.
	for i := range poison {
		counter++
		if i%2 == 0 {
			at := now()
			id := fmt.Sprintf("POISON%08X", counter)
			msg := &event.Message{WAID: id, ChatJID: "5511999990000@s.whatsapp.net", SenderJID: "5511999990000@s.whatsapp.net",
				Direction: event.DirectionIn, Kind: event.KindText, Text: "?", Timestamp: at, Status: event.MessageReceived}
			env := mk(int64(nm+1000), event.MessageEventID(int64(nm+1000), id), at, msg)
			data, _ := env.Encode()
			pubs = append(pubs, genPub{subject: env.Subject(), msgID: env.ID, data: data})
		} else {
			m := ms[i%nm].id
			pubs = append(pubs, genPub{subject: fmt.Sprintf("wa.%d.evt.message", m), msgID: fmt.Sprintf("%d:poison:%d", m, counter),
				data: []byte(`{"v":1,"id":"broken","type":"message","data":{`)})
		}
		exp.events++
		exp.poison++
	}
	// Shuffle the poison into the second half of the stream.
	for i := len(pubs) - poison; i < len(pubs); i++ {
		j := len(pubs)/2 + r.IntN(len(pubs)/2)
		pubs[i], pubs[j] = pubs[j], pubs[i]
	}
	for _, g := range ms {
		for _, p := range g.persons {
			if !p.inbound {
				continue
			}
			if p.phoneKnown() {
				exp.leadsPhone++
			} else {
				exp.leadsLID++
			}
		}
	}
	return pubs, exp
}

func dedupe(ids []string) []string {
	seen := map[string]bool{}
	out := ids[:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
