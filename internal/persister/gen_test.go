package persister

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
)

// genOp is one publish: raw ones go out without a Nats-Msg-Id, so the
// stream stores a duplicate the persister must absorb.
type genOp struct {
	env event.Envelope
	raw bool
}

type gPerson struct {
	phone, lid, name string
	class            int // 0: phone+LID, 1: phone only, 2: LID only until revealed
	revealed         bool
}

type gMsg struct {
	id     string
	in     bool
	person *gPerson
	env    event.Envelope
}

type gMentorado struct {
	id      int64
	persons []*gPerson
	groups  []string
	msgs    []gMsg
	out     []gMsg
}

// generate builds about n events for mentorados 1..nm: inbound and outbound
// messages (text, media, reactions, edits, revokes), receipts (often before
// their message, in any rank order), contacts (names that change over time,
// LID-only, LID reveals), connection changes out of time order, duplicates,
// edits before their original and receipts for messages that never come.
func generate(t testing.TB, seed uint64, n, nm int) []genOp {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	base := time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)
	clock := 0
	now := func() time.Time { clock++; return base.Add(time.Duration(clock) * time.Millisecond) }
	names := []string{"Ana", "Bruno", "Carla", "Diego", "", "Eva", "Fábio", "Gil"}
	ms := make([]*gMentorado, nm)
	for i := range ms {
		g := &gMentorado{id: int64(i + 1)}
		for k := range 3 {
			g.groups = append(g.groups, fmt.Sprintf("120363%02d%08d@g.us", i, k))
		}
		for j := range 40 {
			g.persons = append(g.persons, &gPerson{
				phone: fmt.Sprintf("55119%02d%06d", i, j),
				lid:   fmt.Sprintf("20%02d%08d@lid", i, j),
				name:  names[(i+j)%len(names)],
				class: j % 3,
			})
		}
		ms[i] = g
	}
	var ops []genOp
	usedAt := map[time.Time]bool{}
	type held struct {
		op    genOp
		after int
	}
	var holds []held
	emit := func(env event.Envelope, raw bool) { ops = append(ops, genOp{env, raw}) }
	mk := func(m int64, id string, p event.Payload) event.Envelope { return mustEnv(t, m, id, now(), p) }
	counter := 0
	newID := func() string { counter++; return fmt.Sprintf("3EB0%08X", counter) }
	addr := func(p *gPerson) (ph, lid string) {
		switch p.class {
		case 0:
			return p.phone, p.lid
		case 1:
			return p.phone, ""
		}
		if p.revealed {
			return p.phone, p.lid
		}
		return "", p.lid
	}
	chat := func(p *gPerson) string {
		if ph, _ := addr(p); ph != "" {
			return phone.JID(ph)
		}
		return p.lid
	}
	for len(ops) < n {
		for i := 0; i < len(holds); i++ {
			if holds[i].after <= len(ops) {
				ops = append(ops, holds[i].op)
				holds = append(holds[:i], holds[i+1:]...)
				i--
			}
		}
		g := ms[r.IntN(nm)]
		p := g.persons[r.IntN(len(g.persons))]
		ph, lid := addr(p)
		x := r.IntN(100)
		switch {
		case x < 42: // inbound message
			id := newID()
			if r.IntN(8) == 0 { // the person changed their push name
				p.name = names[r.IntN(len(names))]
			}
			msg := &event.Message{WAID: id, ChatJID: chat(p), SenderJID: chat(p), Phone: ph, LID: lid,
				PushName: p.name, Direction: event.DirectionIn, Kind: event.KindText, Text: "oi " + id,
				Timestamp: now(), Status: event.MessageReceived}
			if r.IntN(5) == 0 { // in a group: the participant wrote
				msg.ChatJID = g.groups[r.IntN(len(g.groups))]
			}
			if r.IntN(6) == 0 { // from the history sync, up to 60 days old
				msg.History = &event.History{Sync: "initial_bootstrap", SyncedAt: msg.Timestamp}
				msg.Timestamp = msg.Timestamp.Add(-time.Duration(r.IntN(60*24)) * time.Hour)
			}
			switch y := r.IntN(100); {
			case y < 10:
				msg.Kind, msg.Text, msg.Caption = event.KindImage, "", "foto "+id
			case y < 16 && len(g.msgs) > 0:
				msg.Kind, msg.Text, msg.TargetID = event.KindReaction, "👍", g.msgs[r.IntN(len(g.msgs))].id
			}
			var medias []event.Envelope
			if msg.Kind == event.KindImage && r.IntN(3) > 0 { // a file, and what became of it
				msg.Media = &event.Media{ID: fmt.Sprintf("%064x", counter), MIME: "image/jpeg", Size: int64(1000 + r.IntN(9000)),
					Width: 640, Height: 480}
				if r.IntN(2) == 0 {
					msg.Media.Thumbnail = []byte{0xff, 0xd8, byte(counter)}
				}
				if r.IntN(4) == 0 {
					msg.Kind, msg.Media.MIME, msg.Media.FileName, msg.Media.Seconds = event.KindDocument, "application/pdf", "doc "+id+".pdf", 7
				}
				done := func(st event.MediaState) event.Envelope {
					d := &event.MediaDone{WAID: id, ChatJID: msg.ChatJID, State: st, MediaID: msg.Media.ID}
					if st == event.MediaStored {
						d.Size, d.MIME = msg.Media.Size+1, msg.Media.MIME
					} else {
						d.Reason = "download failed: 410"
					}
					return mk(g.id, event.MediaEventID(g.id, id)+":"+string(st), d)
				}
				switch z := r.IntN(10); {
				case z < 6:
					medias = append(medias, done(event.MediaStored))
				case z < 8:
					medias = append(medias, done(event.MediaFailed))
				case z < 9: // failed, then stored after all (stored wins in any order)
					medias = append(medias, done(event.MediaFailed), done(event.MediaStored))
				} // else: still pending
			}
			env := mk(g.id, event.MessageEventID(g.id, id), msg)
			gm := gMsg{id: id, in: true, person: p, env: env}
			if len(medias) > 0 && r.IntN(4) == 0 { // the media event before its message
				for _, e := range medias {
					emit(e, false)
				}
				holds = append(holds, held{genOp{env, false}, len(ops) + 1 + r.IntN(800)})
				g.msgs = append(g.msgs, gm)
				continue
			}
			for _, e := range medias {
				holds = append(holds, held{genOp{e, r.IntN(5) == 0}, len(ops) + 1 + r.IntN(50)})
			}
			if r.IntN(100) < 5 { // edit arrives before the original
				edit := *msg
				edit.WAID, edit.Kind, edit.Text, edit.TargetID, edit.Caption, edit.Media = newID(), event.KindEdit, "editado "+id, id, "", nil
				edit.Timestamp = now()
				emit(mk(g.id, event.MessageEventID(g.id, edit.WAID), &edit), false)
				holds = append(holds, held{genOp{env, false}, len(ops) + 1 + r.IntN(800)})
			} else {
				emit(env, false)
			}
			g.msgs = append(g.msgs, gm)
		case x < 60: // outbound message
			id := newID()
			msg := &event.Message{WAID: id, ChatJID: chat(p), SenderJID: fmt.Sprintf("55110000000%d@s.whatsapp.net", g.id),
				Phone: ph, LID: lid, Direction: event.DirectionOut, Kind: event.KindText, Text: "resposta " + id,
				Timestamp: now(), Status: event.MessageSent}
			switch r.IntN(10) {
			case 0: // to a group: no counterpart
				msg.ChatJID, msg.Phone, msg.LID = g.groups[r.IntN(len(g.groups))], "", ""
			case 1:
				msg.History = &event.History{Sync: "recent", SyncedAt: msg.Timestamp}
				msg.Timestamp = msg.Timestamp.Add(-time.Duration(r.IntN(60*24)) * time.Hour)
			}
			env := mk(g.id, event.MessageEventID(g.id, id), msg)
			gm := gMsg{id: id, person: p, env: env}
			if r.IntN(100) < 15 { // receipt before its message
				k := []event.ReceiptKind{event.ReceiptDelivered, event.ReceiptRead}[r.IntN(2)]
				rc := &event.Receipt{MessageIDs: []string{id}, ChatJID: chat(p), Phone: ph, Kind: k, Timestamp: now()}
				emit(mk(g.id, event.ReceiptEventID(g.id, k, false, rc.MessageIDs), rc), false)
				holds = append(holds, held{genOp{env, false}, len(ops) + 1 + r.IntN(800)})
			} else {
				emit(env, false)
			}
			g.msgs = append(g.msgs, gm)
			g.out = append(g.out, gm)
		case x < 74: // receipt
			var ids []string
			fromMe := false
			if r.IntN(4) == 0 && len(g.msgs) > 0 {
				fromMe = true
				for range 1 + r.IntN(3) {
					if m := g.msgs[r.IntN(len(g.msgs))]; m.in {
						ids = append(ids, m.id)
					}
				}
			} else if len(g.out) > 0 {
				for range 1 + r.IntN(3) {
					ids = append(ids, g.out[r.IntN(len(g.out))].id)
				}
			}
			if r.IntN(30) == 0 {
				ids = append(ids, "NEVER"+newID()) // its message never comes
			}
			if len(ids) == 0 {
				continue
			}
			k := []event.ReceiptKind{event.ReceiptDelivered, event.ReceiptRead, event.ReceiptPlayed}[r.IntN(3)]
			rc := &event.Receipt{MessageIDs: ids, ChatJID: chat(p), Kind: k, FromMe: fromMe, Timestamp: now()}
			emit(mk(g.id, event.ReceiptEventID(g.id, k, fromMe, ids), rc), false)
		case x < 84: // contact
			c := &event.Contact{JID: chat(p), PushName: p.name}
			switch {
			case p.class == 2 && !p.revealed && r.IntN(3) == 0:
				c = &event.Contact{JID: p.lid, LID: p.lid, Phone: p.phone, Name: "Agenda " + p.phone[9:]}
				p.revealed = true
			case ph != "":
				c.Phone, c.LID = ph, lid
				if r.IntN(2) == 0 { // address-book names change too
					c.Name = "Agenda " + names[r.IntN(len(names))] + " " + p.phone[9:]
				}
				if r.IntN(10) == 0 {
					c.BusinessName = "Loja " + names[r.IntN(len(names))] + " " + p.phone[9:]
				}
			default:
				c.LID = lid
			}
			at := now()
			emit(mustEnv(t, g.id, event.ContactEventID(g.id, c, at), at, c), false)
		case x < 88: // connection, out of time order
			st := event.Statuses[r.IntN(len(event.Statuses))]
			at := base.Add(time.Duration(r.IntN(3600)) * time.Second)
			for usedAt[at] {
				at = at.Add(time.Millisecond)
			}
			usedAt[at] = true
			c := &event.Connection{Status: st, Reason: "r" + string(st), Connector: fmt.Sprintf("connector-%d", at.Second()%3)}
			if st == event.StatusConnected {
				c.Phone, c.JID = fmt.Sprintf("55110000000%d", g.id), fmt.Sprintf("55110000000%d:3@s.whatsapp.net", g.id)
			}
			emit(mustEnv(t, g.id, event.ConnectionEventID(g.id, st, at), at, c), false)
		case x < 92 && len(g.msgs) > 0: // edit or revoke of an earlier message
			target := g.msgs[r.IntN(len(g.msgs))]
			tm := target.env
			_, pl, err := event.Decode(mustEncode(t, tm))
			if err != nil {
				t.Fatal(err)
			}
			orig := pl.(*event.Message)
			if orig.Kind == event.KindReaction {
				continue
			}
			ev := *orig
			ev.WAID, ev.TargetID, ev.Timestamp, ev.Caption, ev.Media = newID(), target.id, now(), "", nil
			if r.IntN(3) == 0 {
				ev.Kind, ev.Text = event.KindRevoke, ""
			} else {
				ev.Kind, ev.Text = event.KindEdit, "novo texto "+ev.WAID
			}
			emit(mk(g.id, event.MessageEventID(g.id, ev.WAID), &ev), false)
		case x < 97 && len(ops) > 0: // duplicate of an earlier message, stored again
			o := ops[r.IntN(len(ops))]
			if o.env.Type == event.TypeMessage && r.IntN(3) == 0 {
				// Seen live, then in the history sync (same id): one row.
				_, pl, err := event.Decode(mustEncode(t, o.env))
				if err != nil {
					t.Fatal(err)
				}
				h := *pl.(*event.Message)
				if h.History == nil {
					at := now()
					h.History, h.Status = &event.History{Sync: "full", SyncedAt: at}, event.MessageRead
					if h.Direction == event.DirectionIn {
						h.Status = event.MessageReceived
					}
					emit(mustEnv(t, o.env.MentoradoID, o.env.ID, at, &h), true)
				}
				continue
			}
			if o.env.Type == event.TypeMessage || o.env.Type == event.TypeMedia {
				emit(o.env, true)
			}
		default: // a group's snapshot, sometimes observed late (out of order)
			grp := &event.Group{JID: g.groups[r.IntN(len(g.groups))], Subject: "Turma " + names[r.IntN(len(names))],
				Participants: []event.Participant{}}
			if r.IntN(4) == 0 {
				grp.Topic = "regras " + fmt.Sprint(r.IntN(9))
			}
			for range r.IntN(5) {
				q := g.persons[r.IntN(len(g.persons))]
				qph, qlid := addr(q)
				if q.class == 2 && !q.revealed && r.IntN(4) == 0 { // the group lists both: the mapping
					qph, qlid, q.revealed = q.phone, q.lid, true
				}
				jid := qlid
				if qph != "" {
					jid = phone.JID(qph)
				}
				grp.Participants = append(grp.Participants, event.Participant{JID: jid, Phone: qph, LID: qlid, Admin: r.IntN(5) == 0})
			}
			grp.Left = r.IntN(10) == 0
			at := now()
			if r.IntN(3) == 0 {
				at = base.Add(time.Duration(r.IntN(clock)) * time.Millisecond)
				for usedAt[at] {
					at = at.Add(time.Microsecond)
				}
			}
			usedAt[at] = true
			emit(mustEnv(t, g.id, event.GroupEventID(g.id, grp, at), at, grp), false)
		}
	}
	for _, h := range holds {
		ops = append(ops, h.op)
	}
	return ops
}

func mustEncode(t testing.TB, env event.Envelope) []byte {
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
