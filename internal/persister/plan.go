package persister

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
)

// decoded is one event of a batch that passed decoding and validation.
type decoded struct {
	idx int // position in the Apply input
	seq uint64
	env event.Envelope
	p   event.Payload
}

// mkey is a per-mentorado key: a WhatsApp id, a phone, a LID or a JID.
type mkey struct {
	m int64
	s string
}

func cmpKey(a, b mkey) int {
	if c := cmp.Compare(a.m, b.m); c != 0 {
		return c
	}
	return strings.Compare(a.s, b.s)
}

// planner turns a batch of events into set-based statements. Events are
// cut into segments: a segment ends before an event that teaches a new
// LID → phone mapping for a person the segment already touched, so the
// LID merge runs exactly where a one-event-at-a-time pass would run it.
// Within a segment every key is written once (deduplicated in Go).
type planner struct {
	known map[mkey]string // (mentorado, lid) → phone: stored mappings plus those learned earlier in the batch
	// From the lookup and a pass over the batch:
	leadState map[mkey]int8    // phone leads that exist: leadNamed, leadVersioned or leadUnnamed
	leadVers  map[mkey]version // name versions of the leadVersioned ones
	pending   map[mkey]bool    // messages that may have a receipt waiting
	related   map[mkey]bool    // messages that may have edits or revokes
	stored    map[mkey]bool    // messages stored before this batch, or written by an earlier segment
	leadIDs   map[mkey]int64   // phone leads that exist (from the lookup)
	// New messages whose phone lead exists already, in messageColumns
	// order: copied before the batch's statements (see copyMessages).
	copyRows [][]any
	lidOnly  map[mkey]bool // LIDs with LID-only rows: stored, or written earlier in the batch
	conns    map[int64]*connRow
	segs     []*segment
	cur      *segment
}

type connRow struct {
	set            bool // a status event was seen
	status, reason string
	at             time.Time
	seq            uint64
	phone, jid     string // from the newest event with a phone
	phoneAt        time.Time
	phoneSeq       uint64
}

func newer(at time.Time, seq uint64, than time.Time, thanSeq uint64) bool {
	return at.After(than) || (at.Equal(than) && seq > thanSeq)
}

// version orders facts about the same field: event time, then stream
// sequence. The zero version is older than any fact.
type version struct {
	at  time.Time
	seq uint64
}

func (v version) newer(than version) bool { return newer(v.at, v.seq, than.at, than.seq) }

// named is a name with the version of the fact that carried it.
type named struct {
	v   string
	ver version
}

// newest keeps the newest non-empty fact.
func (n *named) newest(v string, ver version) {
	if v != "" && (n.v == "" || ver.newer(n.ver)) {
		n.v, n.ver = v, ver
	}
}

// earliest keeps the earliest non-empty fact.
func (n *named) earliest(v string, ver version) {
	if v != "" && (n.v == "" || n.ver.newer(ver)) {
		n.v, n.ver = v, ver
	}
}

type lidMap struct {
	m          int64
	lid, phone string
}

type contactRow struct {
	phone, lid           string
	name, push, business named // newest fact of each
}

type leadRow struct {
	lid  string
	name named // earliest push name
}

type msgRow struct {
	m      *event.Message // the first event of this id in the segment
	phone  string         // counterpart phone, resolved through the LID mapping
	rank   int
	status string
}

type rcptRow struct {
	rank   int
	status string
}

type segment struct {
	lids, phones map[mkey]bool // persons touched in this segment
	newMaps      []lidMap      // need the full merge
	lightMaps    []lidMap      // nothing LID-only to fold: record, and give the phone's lead its LID
	contacts     map[mkey]*contactRow
	leadsPhone   map[mkey]*leadRow
	leadsLID     map[mkey]*leadRow
	msgs         map[mkey]*msgRow
	rcpts        map[mkey]*rcptRow
	targets      map[mkey]bool
	pendingKeys  map[mkey]bool
	leadState    map[mkey]int8
}

const (
	leadNamed     int8 = 1 // named outside zapbus: never renamed
	leadUnnamed   int8 = 2
	leadVersioned int8 = 3 // named from a push name, version in leadVers
)

func newSegment() *segment {
	return &segment{
		lids: map[mkey]bool{}, phones: map[mkey]bool{},
		contacts: map[mkey]*contactRow{}, leadsPhone: map[mkey]*leadRow{}, leadsLID: map[mkey]*leadRow{},
		msgs: map[mkey]*msgRow{}, rcpts: map[mkey]*rcptRow{}, targets: map[mkey]bool{}, pendingKeys: map[mkey]bool{},
	}
}

func newPlanner(known map[mkey]string) *planner {
	pl := &planner{known: known, leadState: map[mkey]int8{}, leadVers: map[mkey]version{}, pending: map[mkey]bool{}, related: map[mkey]bool{},
		stored: map[mkey]bool{}, leadIDs: map[mkey]int64{},
		lidOnly: map[mkey]bool{}, conns: map[int64]*connRow{}}
	pl.newSegment()
	return pl
}

func (pl *planner) newSegment() {
	s := newSegment()
	s.leadState = pl.leadState
	pl.segs = append(pl.segs, s)
	pl.cur = s
}

// scan notes, before planning, which messages of the batch its receipts,
// edits and revokes refer to, so the message's segment applies them even
// when they come earlier in the batch.
func (pl *planner) scan(evs []decoded) {
	for _, d := range evs {
		switch p := d.p.(type) {
		case *event.Receipt:
			for _, id := range p.MessageIDs {
				pl.pending[mkey{d.env.MentoradoID, id}] = true
			}
		case *event.Message:
			if p.Kind == event.KindEdit || p.Kind == event.KindRevoke {
				pl.related[mkey{d.env.MentoradoID, p.TargetID}] = true
			}
		}
	}
}

// learn records a LID → phone mapping carried by an event. A new mapping
// is merged before the event's own writes; when the current segment already
// wrote rows of either identity, a new segment starts so the merge sees them.
func (pl *planner) learn(m int64, lid, ph string) {
	k := mkey{m, lid}
	if _, ok := pl.known[k]; ok {
		return
	}
	if pl.cur.lids[k] || pl.cur.phones[mkey{m, ph}] {
		pl.newSegment()
	}
	pl.known[k] = ph
	if pl.lidOnly[k] {
		pl.cur.newMaps = append(pl.cur.newMaps, lidMap{m, lid, ph})
	} else {
		pl.cur.lightMaps = append(pl.cur.lightMaps, lidMap{m, lid, ph})
	}
}

// resolve returns the phone for a counterpart known by phone and/or LID.
func (pl *planner) resolve(m int64, ph, lid string) string {
	if ph != "" || lid == "" {
		return ph
	}
	return pl.known[mkey{m, lid}]
}

func (pl *planner) touch(m int64, ph, lid string) {
	switch {
	case ph != "":
		pl.cur.phones[mkey{m, ph}] = true
	case lid != "":
		pl.cur.lids[mkey{m, lid}] = true
		pl.lidOnly[mkey{m, lid}] = true
	}
}

// normalizeContact fills the LID of a LID JID and the phone of a phone JID.
func normalizeContact(c event.Contact) event.Contact {
	if c.LID == "" && strings.HasSuffix(c.JID, "@lid") {
		c.LID = c.JID
	}
	if c.Phone == "" {
		c.Phone = phone.FromJID(c.JID)
	}
	return c
}

func (pl *planner) add(d decoded) {
	m := d.env.MentoradoID
	switch p := d.p.(type) {
	case *event.Connection:
		c := pl.conns[m]
		if c == nil {
			c = &connRow{}
			pl.conns[m] = c
		}
		at := d.env.OccurredAt
		if !c.set || newer(at, d.seq, c.at, c.seq) {
			c.set, c.status, c.reason, c.at, c.seq = true, string(p.Status), p.Reason, at, d.seq
		}
		if p.Phone != "" && (c.phone == "" || newer(at, d.seq, c.phoneAt, c.phoneSeq)) {
			c.phone, c.jid, c.phoneAt, c.phoneSeq = p.Phone, p.JID, at, d.seq
		}
	case *event.Contact:
		c := normalizeContact(*p)
		if c.Phone != "" && c.LID != "" {
			pl.learn(m, c.LID, c.Phone)
		}
		ph := pl.resolve(m, c.Phone, c.LID)
		pl.touch(m, ph, c.LID)
		key := c.JID
		if ph != "" {
			key = phone.JID(ph)
		}
		k := mkey{m, key}
		row := pl.cur.contacts[k]
		if row == nil {
			row = &contactRow{}
			pl.cur.contacts[k] = row
		}
		fill(&row.phone, ph)
		fill(&row.lid, c.LID)
		ver := version{d.env.OccurredAt, d.seq}
		row.name.newest(c.Name, ver)
		row.push.newest(c.PushName, ver)
		row.business.newest(c.BusinessName, ver)
	case *event.Message:
		if p.Phone != "" && p.LID != "" {
			pl.learn(m, p.LID, p.Phone)
		}
		ph := pl.resolve(m, p.Phone, p.LID)
		pl.touch(m, ph, p.LID)
		k := mkey{m, p.WAID}
		rank := p.Status.Rank()
		if row := pl.cur.msgs[k]; row != nil {
			if rank > row.rank {
				row.rank, row.status = rank, string(p.Status)
			}
			if row.phone == "" {
				row.phone = ph
			}
		} else {
			pl.cur.msgs[k] = &msgRow{m: p, phone: ph, rank: rank, status: string(p.Status)}
		}
		if p.Direction == event.DirectionIn {
			var l *leadRow
			switch {
			case ph != "":
				lk := mkey{m, ph}
				if l = pl.cur.leadsPhone[lk]; l == nil {
					l = &leadRow{lid: p.LID}
					pl.cur.leadsPhone[lk] = l
				}
			case p.LID != "":
				lk := mkey{m, p.LID}
				if l = pl.cur.leadsLID[lk]; l == nil {
					l = &leadRow{}
					pl.cur.leadsLID[lk] = l
				}
			}
			if l != nil {
				l.name.earliest(p.PushName, version{d.env.OccurredAt, d.seq})
			}
		}
		switch p.Kind {
		case event.KindEdit, event.KindRevoke:
			pl.cur.targets[mkey{m, p.TargetID}] = true
		case event.KindReaction:
		default:
			if pl.related[k] {
				pl.cur.targets[k] = true
			}
		}
		if pl.pending[k] {
			pl.cur.pendingKeys[k] = true
		}
	case *event.Receipt:
		st := p.Kind.Status()
		rank := st.Rank()
		for _, id := range p.MessageIDs {
			k := mkey{m, id}
			if r := pl.cur.rcpts[k]; r == nil || rank > r.rank {
				pl.cur.rcpts[k] = &rcptRow{rank: rank, status: string(st)}
			}
		}
	}
}

// fill sets *dst to v unless v is empty: later non-empty values win, empty
// values never erase.
func fill(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// namedCols are the parallel arrays of a versioned name column.
type namedCols struct {
	v   []string
	at  []time.Time
	seq []int64
}

func (c *namedCols) add(n named) {
	c.v, c.at, c.seq = append(c.v, n.v), append(c.at, n.ver.at), append(c.seq, int64(n.ver.seq))
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func sortedKeys[V any](m map[mkey]V) []mkey {
	keys := make([]mkey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, cmpKey)
	return keys
}

// queue appends the plan's statements to b, in the order a one-by-one pass
// would need them.
func (pl *planner) queue(b *pgx.Batch) {
	if len(pl.conns) > 0 {
		ids := make([]int64, 0, len(pl.conns))
		for id := range pl.conns {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		n := len(ids)
		status, reasons, ats, seqs := make([]string, n), make([]*string, n), make([]time.Time, n), make([]int64, n)
		phones, jids, phoneAts, phoneSeqs := make([]*string, n), make([]*string, n), make([]time.Time, n), make([]int64, n)
		for i, id := range ids {
			c := pl.conns[id]
			status[i], reasons[i], ats[i], seqs[i] = c.status, nullable(c.reason), c.at, int64(c.seq)
			phones[i], jids[i], phoneAts[i], phoneSeqs[i] = nullable(c.phone), nullable(c.jid), c.phoneAt, int64(c.phoneSeq)
		}
		b.Queue(sqlConnection, ids, status, reasons, ats, seqs, phones, jids, phoneAts, phoneSeqs)
	}
	for _, s := range pl.segs {
		s.queue(b, pl)
	}
}

// queue appends the segment's statements. pl.stored holds the messages
// that exist already (before the batch or from an earlier segment): only
// those take the upsert; the segment's messages are added to it. New
// messages whose phone lead the lookup found go to pl.copyRows instead.
func (s *segment) queue(b *pgx.Batch, pl *planner) {
	stored, leadIDs := pl.stored, pl.leadIDs
	if n := len(s.newMaps); n > 0 {
		slices.SortFunc(s.newMaps, func(a, b lidMap) int { return cmpKey(mkey{a.m, a.lid}, mkey{b.m, b.lid}) })
		ms, lids, phones, pjids := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
		for i, x := range s.newMaps {
			ms[i], lids[i], phones[i], pjids[i] = x.m, x.lid, x.phone, phone.JID(x.phone)
		}
		b.Queue(sqlMapInsert, ms, lids, phones)
		b.Queue(sqlMergeMoveMessages, ms, lids, phones)
		b.Queue(sqlMergeFillLead, ms, lids, phones)
		b.Queue(sqlMergeDeleteLead, ms, lids, phones)
		b.Queue(sqlMergeConvertLead, ms, lids, phones)
		b.Queue(sqlMergeLeadLID, ms, lids, phones)
		b.Queue(sqlMergeMessagePhone, ms, lids, phones)
		b.Queue(sqlMergeLinkOrphans, ms, lids, phones)
		b.Queue(sqlMergeFillContact, ms, lids, phones, pjids)
		b.Queue(sqlMergeDeleteContact, ms, lids, phones, pjids)
		b.Queue(sqlMergeConvertContact, ms, lids, phones, pjids)
	}
	if n := len(s.lightMaps); n > 0 {
		slices.SortFunc(s.lightMaps, func(a, b lidMap) int { return cmpKey(mkey{a.m, a.lid}, mkey{b.m, b.lid}) })
		ms, lids, phones := make([]int64, n), make([]string, n), make([]string, n)
		for i, x := range s.lightMaps {
			ms[i], lids[i], phones[i] = x.m, x.lid, x.phone
		}
		b.Queue(sqlMapInsert, ms, lids, phones)
		b.Queue(sqlMergeLeadLID, ms, lids, phones)
	}
	if len(s.contacts) > 0 {
		keys := sortedKeys(s.contacts)
		n := len(keys)
		ms, jids, phones, lids := make([]int64, n), make([]string, n), make([]*string, n), make([]*string, n)
		var names, pushes, bizs namedCols
		for i, k := range keys {
			c := s.contacts[k]
			ms[i], jids[i], phones[i], lids[i] = k.m, k.s, nullable(c.phone), nullable(c.lid)
			names.add(c.name)
			pushes.add(c.push)
			bizs.add(c.business)
		}
		b.Queue(sqlContacts, ms, jids, phones, lids, names.v, names.at, names.seq, pushes.v, pushes.at, pushes.seq,
			bizs.v, bizs.at, bizs.seq)
	}
	for k, l := range s.leadsPhone {
		// Existing leads need a write only to fill an empty name or to
		// take an earlier one. (The versions looked up can only be newer
		// than what an earlier segment wrote: names move to earlier facts.)
		switch st := s.leadState[k]; {
		case st == leadNamed,
			st == leadUnnamed && l.name.v == "",
			st == leadVersioned && (l.name.v == "" || !pl.leadVers[k].newer(l.name.ver)):
			delete(s.leadsPhone, k)
		}
	}
	if len(s.leadsPhone) > 0 {
		keys := sortedKeys(s.leadsPhone)
		n := len(keys)
		ms, phones, lids := make([]int64, n), make([]string, n), make([]*string, n)
		var names namedCols
		for i, k := range keys {
			l := s.leadsPhone[k]
			ms[i], phones[i], lids[i] = k.m, k.s, nullable(l.lid)
			names.add(l.name)
		}
		b.Queue(sqlLeadsPhone, ms, phones, lids, names.v, names.at, names.seq)
	}
	if len(s.leadsLID) > 0 {
		keys := sortedKeys(s.leadsLID)
		n := len(keys)
		ms, lids := make([]int64, n), make([]string, n)
		var names namedCols
		for i, k := range keys {
			ms[i], lids[i] = k.m, k.s
			names.add(s.leadsLID[k].name)
		}
		b.Queue(sqlLeadsLID, ms, lids, names.v, names.at, names.seq)
	}
	// A receipt for a message this segment writes is folded into the
	// message's row, which is then written once: status only moves up in
	// rank, so the row ends as the insert followed by the receipt's update
	// would leave it, without a second row version.
	for k, r := range s.rcpts {
		if row := s.msgs[k]; row != nil {
			if r.rank > row.rank {
				row.rank, row.status = r.rank, r.status
			}
			delete(s.rcpts, k)
		}
	}
	if len(s.msgs) > 0 {
		var fresh, seen []mkey
		for _, k := range sortedKeys(s.msgs) {
			r := s.msgs[k]
			lead, hasLead := leadIDs[mkey{k.m, r.phone}]
			switch {
			case stored[k]:
				seen = append(seen, k)
			case r.phone != "" && hasLead:
				pl.copyRows = append(pl.copyRows, s.copyRow(k, lead))
				stored[k] = true
			default:
				fresh = append(fresh, k)
			}
		}
		s.queueMessages(b, sqlMessagesInsert, fresh, leadIDs)
		s.queueMessages(b, sqlMessages, seen, leadIDs)
		for _, k := range fresh {
			stored[k] = true
		}
	}
	if len(s.pendingKeys) > 0 {
		keys := sortedKeys(s.pendingKeys)
		ms, ids := make([]int64, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			ms[i], ids[i] = k.m, k.s
		}
		b.Queue(sqlApplyPending, ms, ids)
	}
	if len(s.rcpts) > 0 {
		keys := sortedKeys(s.rcpts)
		n := len(keys)
		ms, ids, statuses, ranks := make([]int64, n), make([]string, n), make([]string, n), make([]int16, n)
		for i, k := range keys {
			r := s.rcpts[k]
			ms[i], ids[i], statuses[i], ranks[i] = k.m, k.s, r.status, int16(r.rank)
		}
		b.Queue(sqlReceipts, ms, ids, statuses, ranks)
		b.Queue(sqlPendingReceipts, ms, ids, statuses, ranks)
	}
	if len(s.targets) > 0 {
		keys := sortedKeys(s.targets)
		n := len(keys)
		ms, ids := make([]int64, n), make([]string, n)
		for i, k := range keys {
			ms[i], ids[i] = k.m, k.s
		}
		b.Queue(sqlRecomputeEdits, ms, ids)
		b.Queue(sqlRecomputeRevokes, ms, ids)
		b.Queue(sqlRecomputeRevokedEdits, ms, ids)
	}
}

// queueMessages queues one message statement for keys (sorted), if any.
func (s *segment) queueMessages(b *pgx.Batch, sql string, keys []mkey, leadIDs map[mkey]int64) {
	n := len(keys)
	if n == 0 {
		return
	}
	ms, ids, chats, senders := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
	phones, lids, pushes, dirs := make([]*string, n), make([]*string, n), make([]string, n), make([]string, n)
	kinds, bodies, captions, replies := make([]string, n), make([]string, n), make([]string, n), make([]*string, n)
	targets, statuses, ranks, sent := make([]*string, n), make([]string, n), make([]int16, n), make([]time.Time, n)
	leads := make([]*int64, n)
	for i, k := range keys {
		r := s.msgs[k]
		if id, ok := leadIDs[mkey{k.m, r.phone}]; ok && r.phone != "" {
			leads[i] = &id
		}
		msg := r.m
		ms[i], ids[i], chats[i], senders[i] = k.m, k.s, msg.ChatJID, msg.SenderJID
		phones[i], lids[i], pushes[i], dirs[i] = nullable(r.phone), nullable(msg.LID), msg.PushName, string(msg.Direction)
		kinds[i], bodies[i], captions[i], replies[i] = string(msg.Kind), msg.Text, msg.Caption, nullable(msg.ReplyToID)
		targets[i], statuses[i], ranks[i], sent[i] = nullable(msg.TargetID), r.status, int16(r.rank), msg.Timestamp
	}
	b.Queue(sql, ms, ids, chats, senders, phones, lids, pushes, dirs, kinds, bodies, captions, replies,
		targets, statuses, ranks, sent, leads)
}

// copyRow is the new message k as a row of messageColumns.
func (s *segment) copyRow(k mkey, lead int64) []any {
	r := s.msgs[k]
	msg := r.m
	return []any{k.m, k.s, msg.ChatJID, msg.SenderJID, r.phone, nullable(msg.LID), msg.PushName, string(msg.Direction),
		string(msg.Kind), msg.Text, msg.Caption, nullable(msg.ReplyToID), nullable(msg.TargetID), r.status, int16(r.rank),
		lead, msg.Timestamp}
}
