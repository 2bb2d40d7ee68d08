package persister

import (
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/phone"
	"github.com/zapbus/zapbus/internal/store"
)

// Statement building: a plan (plan.go) becomes the parallel arrays of the
// set-based statements in store/persist.go, queued on a pgx batch, plus the
// COPY rows of new messages. Nothing here decides what to write; it only
// lays out what the planner decided, in the statements' parameter order.

// namedCols are the parallel arrays of a versioned name column.
type namedCols struct {
	v   []string
	at  []time.Time
	seq []int64
}

func (c *namedCols) add(n named) {
	c.v, c.at, c.seq = append(c.v, n.v), append(c.at, n.ver.at), append(c.seq, int64(n.ver.seq))
}

// creators are the parallel arrays of the messages that create leads
// (leadRow): occurred_at, chat JID, WhatsApp id.
type creators struct {
	occ        []time.Time
	chat, waID []string
}

func (c *creators) add(l *leadRow) {
	c.occ, c.chat, c.waID = append(c.occ, l.occ), append(c.chat, l.chat), append(c.waID, l.waID)
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

// columns splits keys into the (mentorado, key) arrays of a statement.
func columns(keys []mkey) ([]int64, []string) {
	ms, ids := make([]int64, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ms[i], ids[i] = k.m, k.s
	}
	return ms, ids
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
		connectors := make([]*string, n)
		for i, id := range ids {
			c := pl.conns[id]
			status[i], reasons[i], ats[i], seqs[i] = c.status, nullable(c.reason), c.at, int64(c.seq)
			phones[i], jids[i], phoneAts[i], phoneSeqs[i] = nullable(c.phone), nullable(c.jid), c.phoneAt, int64(c.phoneSeq)
			connectors[i] = nullable(c.connector)
		}
		b.Queue(store.ConnectionSQL, ids, status, reasons, ats, seqs, phones, jids, phoneAts, phoneSeqs, connectors)
	}
	if len(pl.connLog) > 0 {
		keys := sortedKeys(pl.connLog)
		n := len(keys)
		ms, ids := columns(keys)
		status, reasons, ats := make([]string, n), make([]string, n), make([]time.Time, n)
		for i, k := range keys {
			r := pl.connLog[k]
			status[i], reasons[i], ats[i] = r.status, r.reason, r.at
		}
		b.Queue(store.ConnectionLogSQL, ms, ids, status, reasons, ats)
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
		ats := make([]time.Time, n)
		for i, x := range s.newMaps {
			ms[i], lids[i], phones[i], pjids[i], ats[i] = x.m, x.lid, x.phone, phone.JID(x.phone), x.at
			// The merged contact's names may be better than the lead's.
			if _, ok := s.contactNames[mkey{x.m, pjids[i]}]; !ok {
				s.contactNames[mkey{x.m, pjids[i]}] = x.at
			}
		}
		b.Queue(store.MapInsertSQL, ms, lids, phones)
		b.Queue(store.MergeMoveMessagesSQL, ms, lids, phones)
		b.Queue(store.MergeFillLeadSQL, ms, lids, phones)
		b.Queue(store.MergeDeleteLeadSQL, ms, lids, phones, ats)
		b.Queue(store.MergeConvertLeadSQL, ms, lids, phones, ats)
		b.Queue(store.MergeLeadLIDSQL, ms, lids, phones)
		b.Queue(store.MergeMessagePhoneSQL, ms, lids, phones)
		b.Queue(store.MergeLinkOrphansSQL, ms, lids, phones)
		b.Queue(store.MergeFillContactSQL, ms, lids, phones, pjids)
		b.Queue(store.MergeDeleteContactSQL, ms, lids, phones, pjids)
		b.Queue(store.MergeConvertContactSQL, ms, lids, phones, pjids)
	}
	if n := len(s.lightMaps); n > 0 {
		slices.SortFunc(s.lightMaps, func(a, b lidMap) int { return cmpKey(mkey{a.m, a.lid}, mkey{b.m, b.lid}) })
		ms, lids, phones := make([]int64, n), make([]string, n), make([]string, n)
		for i, x := range s.lightMaps {
			ms[i], lids[i], phones[i] = x.m, x.lid, x.phone
		}
		b.Queue(store.MapInsertSQL, ms, lids, phones)
		b.Queue(store.MergeLeadLIDSQL, ms, lids, phones)
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
		b.Queue(store.ContactsSQL, ms, jids, phones, lids, names.v, names.at, names.seq, pushes.v, pushes.at, pushes.seq,
			bizs.v, bizs.at, bizs.seq)
	}
	if len(s.contactNames) > 0 {
		keys := sortedKeys(s.contactNames)
		ms, jids, ats := make([]int64, len(keys)), make([]string, len(keys)), make([]time.Time, len(keys))
		for i, k := range keys {
			ms[i], jids[i], ats[i] = k.m, k.s, s.contactNames[k]
		}
		b.Queue(store.LeadContactNamesSQL, ms, jids, ats)
	}
	if len(s.groups) > 0 {
		keys := sortedKeys(s.groups)
		n := len(keys)
		ms, jids, subjects, topics, parts := make([]int64, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		lefts, ats, seqs := make([]bool, n), make([]time.Time, n), make([]int64, n)
		for i, k := range keys {
			g := s.groups[k]
			ms[i], jids[i], subjects[i], topics[i], parts[i] = k.m, k.s, g.g.Subject, g.g.Topic, participantsJSON(g.g)
			lefts[i], ats[i], seqs[i] = g.g.Left, g.ver.at, int64(g.ver.seq)
		}
		b.Queue(store.GroupsSQL, ms, jids, subjects, topics, parts, lefts, ats, seqs)
	}
	for k, l := range s.leadsPhone {
		// Existing leads need a write only to take the segment's push
		// name: when they have no name or a business one, or an older
		// push name. (What the lookup saw can only be better than what an
		// earlier segment wrote: sources only rise, push names only move
		// to earlier facts; the statement checks again.)
		st, exists := s.leadState[k]
		switch {
		case !exists:
		case l.name.v == "",
			st > store.LeadNameRankPush,
			st == store.LeadNameRankPush && !pl.leadVers[k].newer(l.name.ver):
			delete(s.leadsPhone, k)
		}
	}
	if len(s.leadsPhone) > 0 {
		keys := sortedKeys(s.leadsPhone)
		n := len(keys)
		ms, phones, lids := make([]int64, n), make([]string, n), make([]*string, n)
		var names namedCols
		var by creators
		for i, k := range keys {
			l := s.leadsPhone[k]
			ms[i], phones[i], lids[i] = k.m, k.s, nullable(l.lid)
			names.add(l.name)
			by.add(l)
		}
		b.Queue(store.LeadsPhoneSQL, ms, phones, lids, names.v, names.at, names.seq, by.occ, by.chat, by.waID)
	}
	if len(s.leadsLID) > 0 {
		keys := sortedKeys(s.leadsLID)
		n := len(keys)
		ms, lids := make([]int64, n), make([]string, n)
		var names namedCols
		var by creators
		for i, k := range keys {
			ms[i], lids[i] = k.m, k.s
			names.add(s.leadsLID[k].name)
			by.add(s.leadsLID[k])
		}
		b.Queue(store.LeadsLIDSQL, ms, lids, lids, names.v, names.at, names.seq, by.occ, by.chat, by.waID)
	}
	// A receipt for a message this segment writes is folded into the
	// message's row, which is then written once: status only moves up in
	// rank, so the row ends as the insert followed by the receipt's update
	// would leave it, without a second row version. A receipt for a
	// message still queued in the segment waits for its sent event
	// instead (store.PendingReceiptsSQL).
	for k, r := range s.rcpts {
		if row := s.msgs[k]; row != nil && row.status != string(event.MessageQueued) {
			if r.rank > row.rank {
				row.rank, row.status = r.rank, r.status
			}
			delete(s.rcpts, k)
		}
	}
	// Opt-outs by replies this segment stores for the first time: a
	// redelivered or replayed reply does not opt its sender out again
	// (after an opt-in through the API, say).
	if len(s.optOuts) > 0 {
		var ms []int64
		var phones, kws, ids []string
		for _, k := range sortedKeys(s.optOuts) {
			o := s.optOuts[k]
			if stored[mkey{k.m, o.waID}] {
				continue
			}
			ms, phones, kws, ids = append(ms, k.m), append(phones, k.s), append(kws, o.keyword), append(ids, o.waID)
		}
		if len(ms) > 0 {
			b.Queue(store.OptOutsSQL, ms, phones, kws, ids)
		}
	}
	storedBefore := map[mkey]bool{}
	for k := range s.mediaMsgs {
		storedBefore[k] = stored[k]
	}
	if len(s.msgs) > 0 {
		var fresh, seen []mkey
		for _, k := range sortedKeys(s.msgs) {
			r := s.msgs[k]
			lead, hasLead := leadIDs[mkey{k.m, r.phone}]
			hasLead = hasLead && r.links
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
		s.queueMessages(b, store.MessagesInsertSQL, fresh, leadIDs)
		s.queueMessages(b, store.MessagesUpsertSQL, seen, leadIDs)
		for _, k := range fresh {
			stored[k] = true
		}
	}
	if len(s.pendingKeys) > 0 {
		ms, ids := columns(sortedKeys(s.pendingKeys))
		b.Queue(store.ApplyPendingSQL, ms, ids)
	}
	if len(s.rcpts) > 0 {
		keys := sortedKeys(s.rcpts)
		n := len(keys)
		ms, ids, statuses, ranks := make([]int64, n), make([]string, n), make([]string, n), make([]int16, n)
		for i, k := range keys {
			r := s.rcpts[k]
			ms[i], ids[i], statuses[i], ranks[i] = k.m, k.s, r.status, int16(r.rank)
		}
		b.Queue(store.ReceiptsSQL, ms, ids, statuses, ranks)
		b.Queue(store.PendingReceiptsSQL, ms, ids, statuses, ranks)
	}
	// Media messages this segment stores take a media event that waited
	// for them; media events of stored messages apply, the others wait.
	var newMedia []mkey
	for _, k := range sortedKeys(s.mediaMsgs) {
		if !storedBefore[k] {
			newMedia = append(newMedia, k)
		}
	}
	if len(newMedia) > 0 {
		ms, ids := columns(newMedia)
		b.Queue(store.ApplyPendingMediaSQL, ms, ids)
	}
	if len(s.media) > 0 {
		keys := sortedKeys(s.media)
		n := len(keys)
		ms, ids, states, ranks := make([]int64, n), make([]string, n), make([]string, n), make([]int16, n)
		sizes, errs := make([]*int64, n), make([]*string, n)
		for i, k := range keys {
			r := s.media[k]
			ms[i], ids[i], states[i], ranks[i] = k.m, k.s, r.state, int16(r.rank)
			if r.size > 0 {
				sizes[i] = &r.size
			}
			errs[i] = nullable(r.err)
		}
		b.Queue(store.MediaSQL, ms, ids, states, ranks, sizes, errs)
		b.Queue(store.PendingMediaSQL, ms, ids, states, ranks, sizes, errs)
	}
	if len(s.targets) > 0 {
		ms, ids := columns(sortedKeys(s.targets))
		b.Queue(store.RecomputeEditsSQL, ms, ids)
		b.Queue(store.RecomputeRevokesSQL, ms, ids)
		b.Queue(store.RecomputeRevokedEditsSQL, ms, ids)
	}
}

// queueMessages queues one message statement for keys (sorted), if any.
func (s *segment) queueMessages(b *pgx.Batch, sql string, keys []mkey, leadIDs map[mkey]int64) {
	if len(keys) == 0 {
		return
	}
	a := store.NewMessageArrays(len(keys))
	for _, k := range keys {
		r := s.msgs[k]
		w := s.write(k)
		if id, ok := leadIDs[mkey{k.m, r.phone}]; ok && r.phone != "" && r.links {
			w.LeadID = &id
		}
		a.Add(&w)
	}
	b.Queue(sql, a.Args()...)
}

// copyRow is the new message k, whose phone lead is lead, as a COPY row of
// store.MessageColumns.
func (s *segment) copyRow(k mkey, lead int64) []any {
	w := s.write(k)
	w.LeadID = &lead
	return w.Values()
}

// write is message k of the segment as a whatsapp_messages row, without
// its lead.
func (s *segment) write(k mkey) store.MessageWrite {
	r := s.msgs[k]
	msg := r.m
	w := store.MessageWrite{
		MentoradoID: k.m, WAMessageID: k.s, ChatJID: msg.ChatJID, SenderJID: msg.SenderJID,
		Phone: nullable(r.phone), LID: nullable(msg.LID), PushName: msg.PushName, Direction: string(msg.Direction),
		Kind: string(msg.Kind), Body: msg.Text, Caption: msg.Caption,
		ReplyToID: nullable(msg.ReplyToID), TargetID: nullable(msg.TargetID),
		Status: r.status, StatusRank: int16(r.rank), SentAt: msg.Timestamp, History: r.history,
		StatusReason: nullable(r.reason),
	}
	if md := msg.Media; md != nil {
		w.MediaID, w.MediaMIME, w.MediaFileName = &md.ID, &md.MIME, nullable(md.FileName)
		w.MediaSize, w.MediaSeconds, w.MediaWidth, w.MediaHeight = positive(md.Size), positive32(md.Seconds), positive32(md.Width), positive32(md.Height)
		w.MediaRound, w.MediaThumbnail, w.MediaState = md.Round, md.Thumbnail, &mediaPending
	}
	return w
}

var mediaPending = string(event.MediaPending)

func positive(v int64) *int64 {
	if v <= 0 {
		return nil
	}
	return &v
}

func positive32(v int) *int32 {
	if v <= 0 {
		return nil
	}
	x := int32(v)
	return &x
}
