package persister

import (
	"cmp"
	"strings"
	"time"

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
	// New messages whose phone lead exists already, as COPY rows of
	// store.MessageColumns: copied before the batch's statements.
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

// mediaRow is the media event of a message that wins in the segment: the
// highest state rank (mediaRank), the first of equal rank.
type mediaRow struct {
	rank  int
	state string
	size  int64
	err   string
}

// mediaRank orders media states: a file never moves back, whatever order
// the events arrive in (pending 0 is the message row's own state).
func mediaRank(s event.MediaState) int {
	switch s {
	case event.MediaStored:
		return 2
	case event.MediaFailed:
		return 1
	}
	return 0
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
	media        map[mkey]*mediaRow // media events
	mediaMsgs    map[mkey]bool      // media messages: a media event may wait for them
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
		msgs: map[mkey]*msgRow{}, rcpts: map[mkey]*rcptRow{},
		media: map[mkey]*mediaRow{}, mediaMsgs: map[mkey]bool{}, targets: map[mkey]bool{}, pendingKeys: map[mkey]bool{},
	}
}

// newPlanner plans with the batch's lookup: the messages its receipts,
// edits and revokes refer to (lk.pending, lk.related, so the message's
// segment applies them even when they come earlier in the batch), to which
// lookup.read adds what the database holds.
func newPlanner(lk *lookup) *planner {
	lk.init()
	pl := &planner{known: map[mkey]string{}, leadState: map[mkey]int8{}, leadVers: map[mkey]version{}, pending: lk.pending, related: lk.related,
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
		if p.Media != nil {
			pl.cur.mediaMsgs[k] = true
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
	case *event.MediaDone:
		k := mkey{m, p.WAID}
		if r := pl.cur.media[k]; r == nil || mediaRank(p.State) > r.rank {
			pl.cur.media[k] = &mediaRow{rank: mediaRank(p.State), state: string(p.State), size: p.Size, err: p.Reason}
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
