package persister

import (
	"cmp"
	"encoding/json"
	"strings"
	"time"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/outbound"
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
	settings  map[int64]settings // the batch's mentorados that exist, with their lead settings
	leadState map[mkey]int8      // phone leads that exist: the rank of their name's source (store.LeadNameRank*)
	leadVers  map[mkey]version   // their name versions (when they have one)
	pending   map[mkey]bool      // messages that may have a receipt waiting
	related   map[mkey]bool      // messages that may have edits or revokes
	stored    map[mkey]bool      // messages stored before this batch, or written by an earlier segment
	leadIDs   map[mkey]int64     // phone leads that exist (from the lookup)
	// New messages whose phone lead exists already, as COPY rows of
	// store.MessageColumns: copied before the batch's statements.
	copyRows [][]any
	lidOnly  map[mkey]bool // LIDs with LID-only rows: stored, or written earlier in the batch
	conns    map[int64]*connRow
	// optOutKeywords are the opt-out keywords of the batch's mentorados
	// that have inbound texts (optouts.go).
	optOutKeywords map[int64][]string
	// connLog is every connection event of the batch, once per (mentorado,
	// event id), for connection_log.
	connLog map[mkey]connLogRow
	segs    []*segment
	cur     *segment
}

type connRow struct {
	set            bool // a status event was seen
	status, reason string
	connector      string // of the newest status event
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

// settings are a mentorado's lead settings (mentorados.group_leads,
// history_leads, history_lead_days).
type settings struct {
	groupLeads   bool
	historyLeads string // none, recent, all
	historyDays  int32
}

// createsLead reports whether inbound message p creates (or names) its
// sender's lead: direct chats do, live or from history as history_leads
// allows (recent: a message at most history_lead_days before the sync);
// group chats only live and with group_leads on.
func (s settings) createsLead(p *event.Message) bool {
	if p.Direction != event.DirectionIn {
		return false
	}
	if event.IsGroupJID(p.ChatJID) {
		return s.groupLeads && p.History == nil
	}
	if p.History == nil {
		return true
	}
	switch s.historyLeads {
	case "all":
		return true
	case "none":
		return false
	}
	return !p.Timestamp.Before(p.History.SyncedAt.Add(-time.Duration(s.historyDays) * 24 * time.Hour))
}

// linksLead reports whether message p links to its counterpart's lead
// (when one exists): every direct message, group messages with group_leads.
func (s settings) linksLead(p *event.Message) bool {
	return s.groupLeads || !event.IsGroupJID(p.ChatJID)
}

// connLogRow is one connection event as connection_log stores it.
type connLogRow struct {
	status, reason string
	at             time.Time
}

type lidMap struct {
	m          int64
	lid, phone string
	at         time.Time // occurred_at of the event that taught it
}

type contactRow struct {
	phone, lid           string
	name, push, business named // newest fact of each
}

type leadRow struct {
	lid  string
	name named // earliest push name
	// The first message of the segment that creates the lead: its
	// created event names it.
	occ        time.Time
	chat, waID string
}

type msgRow struct {
	// m is the first event of this id in the segment, or the sent event of
	// a send first seen queued (adopts).
	m       *event.Message
	phone   string // counterpart phone, resolved through the LID mapping
	rank    int
	status  string
	reason  string // status_reason of the winning status (expired, failed)
	links   bool   // may link to the counterpart's lead (settings.linksLead)
	history bool   // every event of it in the segment came from the history sync
}

// groupRow is the newest snapshot of a group in the segment.
type groupRow struct {
	g   *event.Group
	ver version
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
	contactNames map[mkey]time.Time // contacts whose names leads may take (key: JID), with the event's occurred_at
	groups       map[mkey]*groupRow
	leadsPhone   map[mkey]*leadRow
	leadsLID     map[mkey]*leadRow
	msgs         map[mkey]*msgRow
	rcpts        map[mkey]*rcptRow
	media        map[mkey]*mediaRow // media events
	mediaMsgs    map[mkey]bool      // media messages: a media event may wait for them
	targets      map[mkey]bool
	optOuts      map[mkey]optOutRow // (mentorado, phone) → the first reply that opts it out
	pendingKeys  map[mkey]bool
	leadState    map[mkey]int8
}

func newSegment() *segment {
	return &segment{
		lids: map[mkey]bool{}, phones: map[mkey]bool{},
		contacts: map[mkey]*contactRow{}, contactNames: map[mkey]time.Time{}, groups: map[mkey]*groupRow{}, leadsPhone: map[mkey]*leadRow{}, leadsLID: map[mkey]*leadRow{},
		msgs: map[mkey]*msgRow{}, rcpts: map[mkey]*rcptRow{},
		media: map[mkey]*mediaRow{}, mediaMsgs: map[mkey]bool{}, targets: map[mkey]bool{}, pendingKeys: map[mkey]bool{},
		optOuts: map[mkey]optOutRow{},
	}
}

// newPlanner plans with the batch's lookup: the messages its receipts,
// edits and revokes refer to (lk.pending, lk.related, so the message's
// segment applies them even when they come earlier in the batch), to which
// lookup.read adds what the database holds.
func newPlanner(lk *lookup) *planner {
	lk.init()
	pl := &planner{known: map[mkey]string{}, settings: map[int64]settings{}, leadState: map[mkey]int8{}, leadVers: map[mkey]version{}, pending: lk.pending, related: lk.related,
		stored: map[mkey]bool{}, leadIDs: map[mkey]int64{},
		lidOnly: map[mkey]bool{}, conns: map[int64]*connRow{}, connLog: map[mkey]connLogRow{}}
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
func (pl *planner) learn(m int64, lid, ph string, at time.Time) {
	k := mkey{m, lid}
	if _, ok := pl.known[k]; ok {
		return
	}
	if pl.cur.lids[k] || pl.cur.phones[mkey{m, ph}] {
		pl.newSegment()
	}
	pl.known[k] = ph
	if pl.lidOnly[k] {
		pl.cur.newMaps = append(pl.cur.newMaps, lidMap{m, lid, ph, at})
	} else {
		pl.cur.lightMaps = append(pl.cur.lightMaps, lidMap{m, lid, ph, at})
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
			c.connector = p.Connector
		}
		pl.connLog[mkey{m, d.env.ID}] = connLogRow{status: string(p.Status), reason: p.Reason, at: at}
		if p.Phone != "" && (c.phone == "" || newer(at, d.seq, c.phoneAt, c.phoneSeq)) {
			c.phone, c.jid, c.phoneAt, c.phoneSeq = p.Phone, p.JID, at, d.seq
		}
	case *event.Contact:
		c := normalizeContact(*p)
		if c.Phone != "" && c.LID != "" {
			pl.learn(m, c.LID, c.Phone, d.env.OccurredAt)
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
		if c.Name != "" || c.BusinessName != "" {
			if at, ok := pl.cur.contactNames[k]; !ok || d.env.OccurredAt.After(at) {
				pl.cur.contactNames[k] = d.env.OccurredAt
			}
		}
	case *event.Group:
		for _, x := range p.Participants {
			if x.LID != "" && x.Phone != "" {
				pl.learn(m, x.LID, x.Phone, d.env.OccurredAt)
			}
		}
		k := mkey{m, p.JID}
		ver := version{d.env.OccurredAt, d.seq}
		if row := pl.cur.groups[k]; row == nil || ver.newer(row.ver) {
			pl.cur.groups[k] = &groupRow{g: p, ver: ver}
		}
	case *event.Message:
		if p.Phone != "" && p.LID != "" {
			pl.learn(m, p.LID, p.Phone, d.env.OccurredAt)
		}
		set := pl.settings[m]
		ph := pl.resolve(m, p.Phone, p.LID)
		pl.touch(m, ph, p.LID)
		k := mkey{m, p.WAID}
		rank := p.Status.Rank()
		if row := pl.cur.msgs[k]; row != nil {
			if adopts(row.status, p.Status) {
				row.m, row.phone, row.links = p, ph, set.linksLead(p)
			}
			if rank > row.rank {
				row.rank, row.status, row.reason = rank, string(p.Status), p.StatusReason
			}
			if row.phone == "" {
				row.phone = ph
			}
			row.history = row.history && p.History != nil
		} else {
			pl.cur.msgs[k] = &msgRow{m: p, phone: ph, rank: rank, status: string(p.Status), reason: p.StatusReason,
				links: set.linksLead(p), history: p.History != nil}
		}
		if set.createsLead(p) {
			var l *leadRow
			newLead := func() *leadRow {
				return &leadRow{lid: p.LID, occ: d.env.OccurredAt, chat: p.ChatJID, waID: p.WAID}
			}
			switch {
			case ph != "":
				lk := mkey{m, ph}
				if l = pl.cur.leadsPhone[lk]; l == nil {
					l = newLead()
					pl.cur.leadsPhone[lk] = l
				}
			case p.LID != "":
				lk := mkey{m, p.LID}
				if l = pl.cur.leadsLID[lk]; l == nil {
					l = newLead()
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
		if ph != "" && optOutCandidate(p) {
			if kw, ok := outbound.MatchOptOut(pl.optOutKeywords[m], p.Text); ok {
				if _, seen := pl.cur.optOuts[mkey{m, ph}]; !seen {
					pl.cur.optOuts[mkey{m, ph}] = optOutRow{keyword: kw, waID: p.WAID}
				}
			}
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

// adopts reports whether a message event with status st replaces the
// routing (chat, phone, LID, lead, time) of a row still queued in the
// outbox: the send WhatsApp took, whose number may have resolved to
// another JID than the one queued (store.MessagesUpsertSQL does the same
// for a stored row).
func adopts(row string, st event.MessageStatus) bool {
	r := st.Rank()
	return row == string(event.MessageQueued) && r >= 1 && r <= 4
}

// participantsJSON is a group's participants as whatsapp_groups stores them.
func participantsJSON(g *event.Group) string {
	ps := g.Participants
	if ps == nil {
		ps = []event.Participant{}
	}
	b, err := json.Marshal(ps)
	if err != nil { // cannot happen: plain strings and bools
		return "[]"
	}
	return string(b)
}

// fill sets *dst to v unless v is empty: later non-empty values win, empty
// values never erase.
func fill(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}
