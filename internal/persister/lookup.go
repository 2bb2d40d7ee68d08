package persister

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// The first round trip of a batch's transaction: what the batch's events
// need to know about stored rows (store.Known*SQL), collected before and
// read into the planner after.

// lookup collects what the first round trip asks about a batch, and which
// messages of the batch its receipts, edits and revokes refer to.
type lookup struct {
	seenM             map[int64]bool
	seen              map[mkey]bool
	mentorados        []int64
	lidM, leadM, msgM []int64
	lids, leadPhones  []string
	msgIDs            []string
	pending           map[mkey]bool // messages a receipt of the batch names
	related           map[mkey]bool // messages an edit or revoke of the batch targets
}

func (lk *lookup) init() {
	if lk.seen == nil {
		lk.seen, lk.seenM = map[mkey]bool{}, map[int64]bool{}
		lk.pending, lk.related = map[mkey]bool{}, map[mkey]bool{}
	}
}

func (lk *lookup) once(kind byte, k mkey) bool {
	lk.init()
	k.s = string(kind) + k.s
	if lk.seen[k] {
		return false
	}
	lk.seen[k] = true
	return true
}

// add notes what event d needs looked up. With planner.add it is one of the
// persister's two switches over event types: this one runs before the
// lookup round trip, planner.add after it, on its results.
func (lk *lookup) add(d decoded) {
	m := d.env.MentoradoID
	lk.init()
	if !lk.seenM[m] {
		lk.seenM[m] = true
		lk.mentorados = append(lk.mentorados, m)
	}
	var lid string
	switch p := d.p.(type) {
	case *event.Message:
		lid = p.LID
		if p.Phone != "" && lk.once('p', mkey{m, p.Phone}) {
			lk.leadM, lk.leadPhones = append(lk.leadM, m), append(lk.leadPhones, p.Phone)
		}
		if lk.once('m', mkey{m, p.WAID}) {
			lk.msgM, lk.msgIDs = append(lk.msgM, m), append(lk.msgIDs, p.WAID)
		}
		if p.Kind == event.KindEdit || p.Kind == event.KindRevoke {
			lk.related[mkey{m, p.TargetID}] = true
		}
	case *event.Contact:
		lid = normalizeContact(*p).LID
	case *event.Group:
		// Participants with both a LID and a phone teach mappings.
		for _, x := range p.Participants {
			if x.LID != "" && x.Phone != "" && lk.once('l', mkey{m, x.LID}) {
				lk.lidM, lk.lids = append(lk.lidM, m), append(lk.lids, x.LID)
			}
		}
	case *event.Receipt:
		for _, id := range p.MessageIDs {
			lk.pending[mkey{m, id}] = true
		}
	}
	if lid != "" && lk.once('l', mkey{m, lid}) {
		lk.lidM, lk.lids = append(lk.lidM, m), append(lk.lids, lid)
	}
}

// queue appends the lookup's statements to b: planner settings, the
// mentorados' locks, then what exists of the batch's mentorados, LIDs, phone
// leads and messages. read consumes their results in this order.
func (lk *lookup) queue(b *pgx.Batch) {
	b.Queue(store.PlannerHintsSQL)
	b.Queue(store.LockMentoradosSQL, lk.mentorados)
	b.Queue(store.KnownMentoradosSQL, lk.mentorados)
	if len(lk.lidM) > 0 {
		b.Queue(store.KnownLIDsSQL, lk.lidM, lk.lids)
	}
	if len(lk.leadM) > 0 {
		b.Queue(store.KnownLeadsSQL, lk.leadM, lk.leadPhones)
	}
	if len(lk.msgM) > 0 {
		b.Queue(store.KnownRelatedSQL, lk.msgM, lk.msgIDs)
	}
}

// read consumes the lookup results into the planner: the mentorados that
// exist and their lead settings go to pl.settings.
func (lk *lookup) read(ctx context.Context, br pgx.BatchResults, pl *planner) (err error) {
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("look up: %w", cerr)
		}
	}()
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("planner settings: %w", err)
	}
	if _, err := br.Exec(); err != nil {
		return fmt.Errorf("lock mentorados: %w", err)
	}
	rows, _ := br.Query()
	var (
		id  int64
		set settings
	)
	if _, err := pgx.ForEachRow(rows, []any{&id, &set.groupLeads, &set.historyLeads, &set.historyDays}, func() error {
		pl.settings[id] = set
		return nil
	}); err != nil {
		return fmt.Errorf("look up mentorados: %w", err)
	}
	if len(lk.lidM) > 0 {
		var (
			m          int64
			lid, phone string
			unmapped   bool // no mapping yet, but LID-only rows exist
		)
		rows, _ := br.Query()
		if _, err := pgx.ForEachRow(rows, []any{&m, &lid, &phone, &unmapped}, func() error {
			if unmapped {
				pl.lidOnly[mkey{m, lid}] = true
			} else {
				pl.known[mkey{m, lid}] = phone
			}
			return nil
		}); err != nil {
			return fmt.Errorf("look up lids: %w", err)
		}
	}
	if len(lk.leadM) > 0 {
		var (
			m       int64
			phone   string
			rank    int32
			nameAt  *time.Time
			nameSeq int64
			leadID  int64
		)
		rows, _ := br.Query()
		if _, err := pgx.ForEachRow(rows, []any{&m, &phone, &rank, &nameAt, &nameSeq, &leadID}, func() error {
			k := mkey{m, phone}
			pl.leadState[k] = int8(rank)
			if nameAt != nil {
				pl.leadVers[k] = version{*nameAt, uint64(nameSeq)}
			}
			pl.leadIDs[k] = leadID
			return nil
		}); err != nil {
			return fmt.Errorf("look up leads: %w", err)
		}
	}
	if len(lk.msgM) > 0 {
		var (
			m                        int64
			waID                     string
			pending, related, stored bool
		)
		rows, _ := br.Query()
		if _, err := pgx.ForEachRow(rows, []any{&m, &waID, &pending, &related, &stored}, func() error {
			k := mkey{m, waID}
			if pending {
				pl.pending[k] = true
			}
			if stored {
				pl.stored[k] = true
			}
			if related {
				pl.related[k] = true
			}
			return nil
		}); err != nil {
			return fmt.Errorf("look up messages: %w", err)
		}
	}
	return nil
}
