package persister

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
)

// model is an independent, one-event-at-a-time implementation of the
// persister's documented semantics over plain Go maps. Tests feed it the
// events the stream stored, in stream order, and compare its rows with the
// database's — also when the database got them reordered or redelivered
// (versioned fields must converge whatever the order).
type model struct {
	mentorados map[int64]*mMentorado
	known      map[mkey]string
	leads      []*mLead
	msgs       map[mkey]*mMsg
	pending    map[mkey]*mRcpt
	pmedia     map[mkey]*mMedia   // media events waiting for their message
	contacts   map[mkey]*mContact // key: (mentorado, jid)
	groups     map[mkey]*mGroup   // key: (mentorado, group jid)
	facts      []string           // lead events other than renamed, as leadFacts renders them
}

// mGroup is a group's newest snapshot.
type mGroup struct {
	subject, topic, parts string
	left                  bool
	ver                   mVer
}

// mMedia is a media event's effect: state stored or failed (pending is
// the message's own), stored size, failure reason.
type mMedia struct {
	state, err string
	size       int64
}

// mRank: a file never moves back (pending < failed < stored).
func mRank(state string) int {
	return map[string]int{"": -1, "pending": 0, "failed": 1, "stored": 2}[state]
}

type mMentorado struct {
	status, phone, jid, reason string
	connector                  string // of the newest status event
	at, phoneAt                time.Time
	seq, phoneSeq              uint64
	set                        settings
}

// creates: inbound messages of direct chats create leads (history ones as
// history_leads says), of groups only live and with group_leads.
func (mm *mMentorado) creates(p *event.Message) bool {
	if p.Direction != event.DirectionIn {
		return false
	}
	if strings.HasSuffix(p.ChatJID, "@g.us") {
		return mm.set.groupLeads && p.History == nil
	}
	if p.History == nil || mm.set.historyLeads == "all" {
		return true
	}
	return mm.set.historyLeads == "recent" && !p.Timestamp.Before(p.History.SyncedAt.AddDate(0, 0, -int(mm.set.historyDays)))
}

type mLead struct {
	m          int64
	phone, lid string
	name       mNamed // the best name fact
	rank       int    // its source: 1 business, 2 push, 3 address_book (0: none)
	deleted    bool
}

// offer gives the lead name fact v from a source of rank: a better
// source wins; within one, the newest address-book or business name, the
// earliest push name.
func (l *mLead) offer(v string, rank int, ver mVer) {
	if v == "" {
		return
	}
	if rank > l.rank || (rank == l.rank && ((rank != 2 && l.name.ver.less(ver)) || (rank == 2 && ver.less(l.name.ver)))) {
		l.name, l.rank = mNamed{v, ver}, rank
	}
}

// offerContact offers lead l the names of contact c.
func (l *mLead) offerContact(c *mContact) {
	if l != nil && c != nil {
		l.offer(c.name.v, 3, c.name.ver)
		l.offer(c.biz.v, 1, c.biz.ver)
	}
}

var mSources = []string{"-", "business", "push", "address_book"}

type mMsg struct {
	m                                                   int64
	id, chat, sender, phone, lid, push, dir, kind, body string
	caption, reply, target, status                      string
	rank                                                int
	edited, revoked                                     bool
	lead                                                *mLead
	links, history                                      bool
	sent                                                time.Time
	media                                               *event.Media
	mstate, merr                                        string
	msize                                               int64
}

// applyMedia applies a media event to a media message.
func (x *mMsg) applyMedia(e *mMedia) {
	if x.media == nil || mRank(e.state) <= mRank(x.mstate) {
		return
	}
	x.mstate, x.merr = e.state, e.err
	if e.size > 0 {
		x.msize = e.size
	}
}

type mRcpt struct {
	status string
	rank   int
}

type mContact struct {
	jid, phone, lid string
	name, push, biz mNamed // the newest fact of each
}

// mVer is a fact's version: event time, then stream sequence.
type mVer struct {
	at  time.Time
	seq uint64
}

func (v mVer) less(w mVer) bool { return v.at.Before(w.at) || (v.at.Equal(w.at) && v.seq < w.seq) }

// mNamed is a name with the version of the fact that set it.
type mNamed struct {
	v   string
	ver mVer
}

func (n *mNamed) newest(v string, ver mVer) {
	if v != "" && (n.v == "" || n.ver.less(ver)) {
		n.v, n.ver = v, ver
	}
}

func (n *mNamed) earliest(v string, ver mVer) {
	if v != "" && (n.v == "" || ver.less(n.ver)) {
		n.v, n.ver = v, ver
	}
}

// dump renders the version like the database dump: its time, "-" when unset.
func (n mNamed) dump() string {
	if n.v == "" {
		return "-"
	}
	return n.ver.at.UTC().Format(dumpTime)
}

func newModel(mentorados int) *model {
	md := &model{mentorados: map[int64]*mMentorado{}, known: map[mkey]string{}, msgs: map[mkey]*mMsg{},
		pending: map[mkey]*mRcpt{}, pmedia: map[mkey]*mMedia{}, contacts: map[mkey]*mContact{}, groups: map[mkey]*mGroup{}}
	for i := 1; i <= mentorados; i++ {
		md.mentorados[int64(i)] = &mMentorado{status: "disconnected", set: testSettings(int64(i))}
	}
	return md
}

// apply applies one stored event; it returns false when the event is
// poison (undecodable or of an unknown mentorado).
func (md *model) apply(data []byte, seq uint64) bool {
	env, p, err := event.Decode(data)
	if err != nil || env.Type == event.TypeQR {
		return false
	}
	m := env.MentoradoID
	mm := md.mentorados[m]
	if mm == nil {
		return false
	}
	switch p := p.(type) {
	case *event.Connection:
		at := env.OccurredAt
		if mm.at.IsZero() || at.After(mm.at) || (at.Equal(mm.at) && seq > mm.seq && string(p.Status) != mm.status) {
			mm.status, mm.reason, mm.at, mm.seq = string(p.Status), p.Reason, at, seq
			mm.connector = p.Connector
		}
		if p.Phone != "" && (mm.phoneAt.IsZero() || at.After(mm.phoneAt) || (at.Equal(mm.phoneAt) && seq > mm.phoneSeq && p.Phone != mm.phone)) {
			mm.phone, mm.phoneAt, mm.phoneSeq = p.Phone, at, seq
			if p.JID != "" {
				mm.jid = p.JID
			}
		}
	case *event.Contact:
		c := *p
		if c.LID == "" && strings.HasSuffix(c.JID, "@lid") {
			c.LID = c.JID
		}
		if c.Phone == "" {
			c.Phone = phone.FromJID(c.JID)
		}
		if c.Phone != "" && c.LID != "" {
			md.learn(m, c.LID, c.Phone, env.OccurredAt)
		}
		ph := c.Phone
		if ph == "" && c.LID != "" {
			ph = md.known[mkey{m, c.LID}]
		}
		jid := c.JID
		if ph != "" {
			jid = phone.JID(ph)
		}
		row := md.contacts[mkey{m, jid}]
		if row == nil {
			row = &mContact{jid: jid}
			md.contacts[mkey{m, jid}] = row
		}
		fill(&row.phone, ph)
		fill(&row.lid, c.LID)
		ver := mVer{env.OccurredAt, seq}
		row.name.newest(c.Name, ver)
		row.push.newest(c.PushName, ver)
		row.biz.newest(c.BusinessName, ver)
		if ph != "" {
			md.leadByPhone(m, ph).offerContact(row)
		} else if c.LID != "" {
			md.leadByLID(m, c.LID).offerContact(row)
		}
	case *event.Group:
		for _, x := range p.Participants {
			if x.LID != "" && x.Phone != "" {
				md.learn(m, x.LID, x.Phone, env.OccurredAt)
			}
		}
		ver := mVer{env.OccurredAt, seq}
		if g := md.groups[mkey{m, p.JID}]; g == nil || g.ver.less(ver) {
			var parts []string
			for _, x := range p.Participants {
				parts = append(parts, fmt.Sprintf("%s,%s,%s,%t", x.JID, x.Phone, x.LID, x.Admin))
			}
			md.groups[mkey{m, p.JID}] = &mGroup{subject: p.Subject, topic: p.Topic, parts: strings.Join(parts, ";"), left: p.Left, ver: ver}
		}
	case *event.Message:
		if p.Phone != "" && p.LID != "" {
			md.learn(m, p.LID, p.Phone, env.OccurredAt)
		}
		ph := p.Phone
		if ph == "" && p.LID != "" {
			ph = md.known[mkey{m, p.LID}]
		}
		links := mm.set.groupLeads || !strings.HasSuffix(p.ChatJID, "@g.us")
		if mm.creates(p) {
			ver := mVer{env.OccurredAt, seq}
			var l *mLead
			switch {
			case ph != "":
				l = md.leadByPhone(m, ph)
				if l == nil {
					l = &mLead{m: m, phone: ph, lid: p.LID}
					md.leads = append(md.leads, l)
					md.facts = append(md.facts, fmt.Sprintf("leadevent|%d|created|%s", m, ph))
					l.offerContact(md.contacts[mkey{m, phone.JID(ph)}])
					for _, x := range md.msgs {
						if x.m == m && x.phone == ph && x.lead == nil && x.links {
							x.lead = l
						}
					}
				}
			case p.LID != "":
				l = md.leadByLID(m, p.LID)
				if l == nil {
					l = &mLead{m: m, lid: p.LID}
					md.leads = append(md.leads, l)
					md.facts = append(md.facts, fmt.Sprintf("leadevent|%d|created|lid:%s", m, p.LID))
					l.offerContact(md.contacts[mkey{m, p.LID}])
					for _, x := range md.msgs {
						if x.m == m && x.lid == p.LID && x.phone == "" && x.lead == nil && x.links {
							x.lead = l
						}
					}
				}
			}
			if l != nil {
				l.offer(p.PushName, 2, ver)
			}
		}
		var lead *mLead
		switch {
		case !links:
		case ph != "":
			lead = md.leadByPhone(m, ph)
		case p.LID != "":
			lead = md.leadByLID(m, p.LID)
		}
		k := mkey{m, p.WAID}
		if x := md.msgs[k]; x != nil {
			if p.Status.Rank() > x.rank {
				x.rank, x.status = p.Status.Rank(), string(p.Status)
			}
			if x.phone == "" {
				x.phone = ph
			}
			if x.lead == nil {
				x.lead = lead
			}
			x.history = x.history && p.History != nil
		} else {
			md.msgs[k] = &mMsg{m: m, id: p.WAID, chat: p.ChatJID, sender: p.SenderJID, phone: ph, lid: p.LID,
				push: p.PushName, dir: string(p.Direction), kind: string(p.Kind), body: p.Text, caption: p.Caption,
				reply: p.ReplyToID, target: p.TargetID, status: string(p.Status), rank: p.Status.Rank(),
				lead: lead, sent: p.Timestamp, links: links, history: p.History != nil}
			if p.Media != nil {
				x := md.msgs[k]
				x.media, x.mstate, x.msize = p.Media, "pending", p.Media.Size
			}
		}
		if e := md.pmedia[k]; e != nil && md.msgs[k].media != nil {
			md.msgs[k].applyMedia(e)
			delete(md.pmedia, k)
		}
		if r := md.pending[k]; r != nil {
			if x := md.msgs[k]; r.rank > x.rank {
				x.rank, x.status = r.rank, r.status
			}
			delete(md.pending, k)
		}
		switch p.Kind {
		case event.KindEdit, event.KindRevoke:
			md.recompute(m, p.TargetID)
		case event.KindReaction:
		default:
			md.recompute(m, p.WAID)
		}
	case *event.Receipt:
		st := p.Kind.Status()
		for _, id := range p.MessageIDs {
			k := mkey{m, id}
			if x := md.msgs[k]; x != nil {
				if st.Rank() > x.rank {
					x.rank, x.status = st.Rank(), string(st)
				}
			} else if r := md.pending[k]; r == nil || st.Rank() > r.rank {
				md.pending[k] = &mRcpt{string(st), st.Rank()}
			}
		}
	case *event.MediaDone:
		k := mkey{m, p.WAID}
		e := &mMedia{state: string(p.State), err: p.Reason, size: p.Size}
		if x := md.msgs[k]; x != nil {
			x.applyMedia(e)
		} else if w := md.pmedia[k]; w == nil || mRank(e.state) > mRank(w.state) {
			md.pmedia[k] = e
		}
	}
	return true
}

func (md *model) leadByPhone(m int64, ph string) *mLead {
	for _, l := range md.leads {
		if !l.deleted && l.m == m && l.phone == ph {
			return l
		}
	}
	return nil
}

func (md *model) leadByLID(m int64, lid string) *mLead {
	for _, l := range md.leads {
		if !l.deleted && l.m == m && l.lid == lid && l.phone == "" {
			return l
		}
	}
	return nil
}

func (md *model) recompute(m int64, target string) {
	var edits []*mMsg
	revoked := false
	for _, x := range md.msgs {
		if x.m != m || x.target != target {
			continue
		}
		switch x.kind {
		case "edit":
			edits = append(edits, x)
		case "revoke":
			revoked = true
		}
	}
	t := md.msgs[mkey{m, target}]
	if t != nil && (t.kind == "edit" || t.kind == "revoke" || t.kind == "reaction") {
		t = nil
	}
	if len(edits) > 0 && t != nil {
		slices.SortFunc(edits, func(a, b *mMsg) int {
			if c := b.sent.Compare(a.sent); c != 0 {
				return c
			}
			return strings.Compare(b.id, a.id)
		})
		t.edited = true
		if !t.revoked {
			t.body = edits[0].body
		}
	}
	if revoked {
		if t != nil {
			t.revoked, t.body, t.caption = true, "", ""
		}
		for _, e := range edits {
			e.body = ""
		}
	}
}

// learn records a new LID mapping and merges the LID-only lead, messages
// and contact into the phone's.
func (md *model) learn(m int64, lid, ph string, at time.Time) {
	if _, ok := md.known[mkey{m, lid}]; ok {
		return
	}
	md.known[mkey{m, lid}] = ph
	o, p := md.leadByLID(m, lid), md.leadByPhone(m, ph)
	switch {
	case o != nil && p != nil:
		for _, x := range md.msgs {
			if x.lead == o {
				x.lead = p
			}
		}
		if p.lid == "" {
			p.lid = o.lid
		}
		p.offer(o.name.v, o.rank, o.name.ver)
		o.deleted = true
		md.facts = append(md.facts, fmt.Sprintf("leadevent|%d|merged|%s", m, ph))
	case o != nil:
		o.phone = ph
		md.facts = append(md.facts, fmt.Sprintf("leadevent|%d|phone|%s>%s", m, lid, ph))
	}
	if l := md.leadByPhone(m, ph); l != nil && l.lid == "" {
		l.lid = lid
	}
	for _, x := range md.msgs {
		if x.m == m && x.lid == lid && x.phone == "" {
			x.phone = ph
		}
	}
	if l := md.leadByPhone(m, ph); l != nil {
		for _, x := range md.msgs {
			if x.m == m && x.phone == ph && x.lead == nil && x.links {
				x.lead = l
			}
		}
	}
	pjid := phone.JID(ph)
	pc := md.contacts[mkey{m, pjid}]
	for k, c := range md.contacts {
		if k.m != m || c.lid != lid || c.phone != "" {
			continue
		}
		if pc != nil {
			if pc.lid == "" {
				pc.lid = c.lid
			}
			pc.name.newest(c.name.v, c.name.ver)
			pc.push.newest(c.push.v, c.push.ver)
			pc.biz.newest(c.biz.v, c.biz.ver)
			delete(md.contacts, k)
		} else {
			delete(md.contacts, k)
			c.jid, c.phone = pjid, ph
			md.contacts[mkey{m, pjid}] = c
		}
	}
	md.leadByPhone(m, ph).offerContact(md.contacts[mkey{m, pjid}])
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

const dumpTime = "2006-01-02T15:04:05.000"

// rows renders the model like dump renders the database.
func (md *model) rows() []string {
	var out []string
	for id, m := range md.mentorados {
		at := "-"
		if !m.at.IsZero() {
			at = m.at.UTC().Format(dumpTime)
		}
		pat := "-"
		if !m.phoneAt.IsZero() {
			pat = m.phoneAt.UTC().Format(dumpTime)
		}
		out = append(out, strings.Join([]string{"mentorado", fmt.Sprint(id), m.status, dash(m.phone), dash(m.jid),
			dash(m.reason), at, fmt.Sprint(m.seq), pat, fmt.Sprint(m.phoneSeq), dash(m.connector)}, "|"))
	}
	for _, l := range md.leads {
		if !l.deleted {
			out = append(out, strings.Join([]string{"lead", fmt.Sprint(l.m), dash(l.phone), dash(l.lid), l.name.v, "whatsapp", "new", l.name.dump(),
				mSources[l.rank]}, "|"))
		}
	}
	for _, x := range md.msgs {
		lead := "-"
		if x.lead != nil {
			lead = x.lead.phone
			if lead == "" {
				lead = "lid:" + x.lead.lid
			}
		}
		chat := x.chat // the generated column
		switch {
		case strings.HasSuffix(x.chat, "@g.us"):
		case x.phone != "":
			chat = phone.JID(x.phone)
		case x.lid != "":
			chat = x.lid
		}
		out = append(out, strings.Join([]string{"msg", fmt.Sprint(x.m), x.id, x.chat, x.sender, dash(x.phone), dash(x.lid),
			x.push, x.dir, x.kind, x.body, x.caption, dash(x.reply), dash(x.target), x.status, fmt.Sprint(x.rank),
			fmt.Sprint(x.edited), fmt.Sprint(x.revoked), lead, x.sent.UTC().Format(dumpTime)}, "|")+"|"+x.dumpMedia()+
			"|"+chat+"|"+fmt.Sprint(x.history))
	}
	for k, g := range md.groups {
		out = append(out, strings.Join([]string{"group", fmt.Sprint(k.m), k.s, g.subject, g.topic, dash(g.parts), fmt.Sprint(g.left),
			g.ver.at.UTC().Format(dumpTime)}, "|"))
	}
	for k, e := range md.pmedia {
		out = append(out, strings.Join([]string{"pmedia", fmt.Sprint(k.m), k.s, e.state, fmt.Sprint(e.size), dash(e.err)}, "|"))
	}
	for k, r := range md.pending {
		out = append(out, strings.Join([]string{"pending", fmt.Sprint(k.m), k.s, r.status, fmt.Sprint(r.rank)}, "|"))
	}
	for k, c := range md.contacts {
		out = append(out, strings.Join([]string{"contact", fmt.Sprint(k.m), c.jid, dash(c.phone), dash(c.lid), c.name.v, c.push.v, c.biz.v, c.name.dump(), c.push.dump(), c.biz.dump()}, "|"))
	}
	for k, ph := range md.known {
		out = append(out, strings.Join([]string{"lidmap", fmt.Sprint(k.m), k.s, ph}, "|"))
	}
	slices.Sort(out)
	return out
}

// leadFacts are the lead events the model wrote, but renamed (which
// depend on how the stream was cut into batches), sorted.
func (md *model) leadFacts() []string {
	out := slices.Clone(md.facts)
	slices.Sort(out)
	return out
}

// dumpMedia renders the media columns like dump does.
func (x *mMsg) dumpMedia() string {
	md := x.media
	if md == nil {
		return "-|-|-|-|-|-|-|false|-|-|-"
	}
	num := func(v int64) string {
		if v <= 0 {
			return "-"
		}
		return fmt.Sprint(v)
	}
	thumb := "-"
	if md.Thumbnail != nil {
		thumb = fmt.Sprintf("%x", md.Thumbnail)
	}
	return strings.Join([]string{md.ID, md.MIME, num(x.msize), dash(md.FileName), num(int64(md.Seconds)), num(int64(md.Width)),
		num(int64(md.Height)), fmt.Sprint(md.Round), thumb, x.mstate, dash(x.merr)}, "|")
}
