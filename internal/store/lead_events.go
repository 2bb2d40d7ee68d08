package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Leads: creation, names, merges and their events (issue #12,
// docs/decisions/0012-chats-groups-history-leads.md).
//
// A lead's name comes from the best source that has one: crm (set in the
// CRM: never replaced) > address_book (the newest address-book name of a
// contact of the lead's phone or LID) > push (the push name of the earliest
// lead-creating inbound message) > business (the newest verified business
// name of the contact). Within a source the fact's version (occurred_at,
// stream seq) decides: newest for address_book and business, earliest for
// push. That is a total order over facts, so the lead ends with the best
// fact whatever order they are applied in. Rows written before migration
// 0007 have no name_source: a name without a version is crm (the old rule),
// with one push.
//
// Every statement that creates a lead, renames it, gives a LID-only lead
// its phone or folds a LID-only lead into a phone lead also inserts the
// lead event into lead_events (the outbox) in the same statement, keyed
// by its deterministic id (event.LeadEventID), ON CONFLICT DO NOTHING: a
// replay that changes nothing writes nothing. The persister publishes the
// rows after the commit (FlushLeadEvents).

// leadSource is lead row l's effective name source, NULL without a name.
func leadSource(l string) string {
	return "(CASE WHEN " + l + ".name = '' THEN NULL ELSE coalesce(" + l + ".name_source, CASE WHEN " + l +
		".name_at IS NULL THEN 'crm' ELSE 'push' END) END)"
}

// Ranks of name sources, as leadRank computes them (KnownLeadsSQL).
const (
	LeadNameRankNone        = 0
	LeadNameRankBusiness    = 1
	LeadNameRankPush        = 2
	LeadNameRankAddressBook = 3
	LeadNameRankCRM         = 4
)

// leadRank is the rank of lead row l's name source (LeadNameRank*).
func leadRank(l string) string {
	return "(CASE " + leadSource(l) + " WHEN 'crm' THEN 4 WHEN 'address_book' THEN 3 WHEN 'push' THEN 2 WHEN 'business' THEN 1 ELSE 0 END)"
}

// betterLeadName is true when row n's name (name, name_at, name_seq,
// name_source) replaces row o's: a better source, or the same source with a
// newer fact (address_book, business) or an earlier one (push). crm is
// never replaced.
func betterLeadName(n, o string) string {
	rn, ro := leadRank(n), leadRank(o)
	vn := "(coalesce(" + n + ".name_at, '-infinity'::timestamptz), " + n + ".name_seq)"
	vo := "(coalesce(" + o + ".name_at, '-infinity'::timestamptz), " + o + ".name_seq)"
	return "(" + rn + " > " + ro + " OR (" + rn + " = " + ro + " AND ((" + rn + " IN (1, 3) AND " + vn + " > " + vo + ") OR (" +
		rn + " = 2 AND " + vn + " < " + vo + "))))"
}

// leadCandidate is the name a new lead starts with, as the four columns
// name, name_at, name_seq, name_source: contact c's address-book name, else
// the push name u.name (version u.at, u.seq), else c's business name.
func leadCandidate(c, u string) string {
	ab, push, biz := c+".name <> ''", u+".name <> ''", c+".business_name <> ''"
	return "CASE WHEN " + ab + " THEN " + c + ".name WHEN " + push + " THEN " + u + ".name ELSE coalesce(" + c + ".business_name, '') END, " +
		"CASE WHEN " + ab + " THEN " + c + ".name_at WHEN " + push + " THEN " + u + ".at WHEN " + biz + " THEN " + c + ".business_name_at END, " +
		"CASE WHEN " + ab + " THEN " + c + ".name_seq WHEN " + push + " THEN " + u + ".seq WHEN " + biz + " THEN " + c + ".business_name_seq ELSE 0 END, " +
		"CASE WHEN " + ab + " THEN 'address_book' WHEN " + push + " THEN 'push' WHEN " + biz + " THEN 'business' END"
}

// linkable is true when message row t may link to its counterpart's lead:
// direct chats always, group messages only with the mentorado's
// group_leads on.
func linkable(t string) string {
	return "(" + t + ".chat_jid NOT LIKE '%@g.us' OR EXISTS (SELECT 1 FROM mentorados g WHERE g.id = " + t + ".mentorado_id AND g.group_leads))"
}

// leadData is event.Lead for lead row l (id, phone, lid, name and its
// source) and change, as jsonb without nulls.
func leadData(l, change string) string {
	return "jsonb_strip_nulls(jsonb_build_object('lead_id', " + l + ".id, 'change', " + change + ", 'phone', " + l + ".phone, 'lid', " + l +
		".lid, 'name', nullif(" + l + ".name, ''), 'name_source', " + leadSource(l) + "))"
}

// leadEventID is event.LeadEventID for lead row l: <m>:lead:<id>:<change>
// followed by key when key is not NULL.
func leadEventID(l, change, key string) string {
	return l + ".mentorado_id || ':lead:' || " + l + ".id || ':' || " + change + " || coalesce(':' || " + key + ", '')"
}

// nameVersion is the key of a renamed event: the name's version as
// <unix ms>:<stream seq>.
func nameVersion(l string) string {
	return "((extract(epoch FROM coalesce(" + l + ".name_at, 'epoch'::timestamptz)) * 1000)::bigint || ':' || " + l + ".name_seq)"
}

// leadsUpsert builds LeadsPhoneSQL and LeadsLIDSQL: key is the lead's key
// column (phone or lid), conflict the ON CONFLICT target, cjid the
// contact's JID for u, link the condition tying message t to lead ins.
func leadsUpsert(key, conflict, oldJoin, cjid, link string) string {
	cols, vals := "lid", "u.lid"
	if key == "phone" {
		cols, vals = "phone, lid", "u.phone, u.lid_"
	}
	return `WITH u AS (
	SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[],
		$7::timestamptz[], $8::text[], $9::text[]) AS u(m, ` + key + `, lid_, name, at, seq, occ, chat, waid)
),
old AS (
	SELECT l.id, l.name, ` + leadSource("l") + ` AS src FROM u JOIN leads l ON l.mentorado_id = u.m AND ` + oldJoin + `
),
ins AS (
	INSERT INTO leads AS l (mentorado_id, ` + cols + `, name, name_at, name_seq, name_source, source)
	SELECT u.m, ` + vals + `, ` + leadCandidate("c", "u") + `, 'whatsapp'
	FROM u LEFT JOIN whatsapp_contacts c ON c.mentorado_id = u.m AND c.jid = ` + cjid + `
	ON CONFLICT ` + conflict + ` DO UPDATE SET name = excluded.name, name_at = excluded.name_at,
		name_seq = excluded.name_seq, name_source = excluded.name_source, updated_at = now()
		WHERE ` + betterLeadName("excluded", "l") + `
	RETURNING l.id, l.mentorado_id, l.phone, l.lid, l.name, l.name_at, l.name_seq, l.name_source, l.xmax = 0 AS created
),
link AS (
	UPDATE whatsapp_messages t SET lead_id = ins.id, updated_at = now() FROM ins
	WHERE t.mentorado_id = ins.mentorado_id AND ` + link + ` AND t.lead_id IS NULL AND ` + linkable("t") + `
)
INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data)
SELECT ins.mentorado_id,
	` + leadEventID("ins", "CASE WHEN ins.created THEN 'created' ELSE 'renamed' END", "CASE WHEN NOT ins.created THEN "+nameVersion("ins")+" END") + `,
	CASE WHEN ins.created THEN u.occ ELSE coalesce(ins.name_at, u.occ) END,
	` + leadData("ins", "CASE WHEN ins.created THEN 'created' ELSE 'renamed' END") + `
		|| CASE WHEN ins.created THEN jsonb_build_object('chat_jid', u.chat, 'wa_id', u.waid) ELSE '{}'::jsonb END
FROM ins JOIN u ON u.m = ins.mentorado_id AND u.` + key + ` = ins.` + key + `
LEFT JOIN old ON old.id = ins.id
WHERE ins.created OR ins.name IS DISTINCT FROM old.name OR ` + leadSource("ins") + ` IS DISTINCT FROM old.src
ON CONFLICT DO NOTHING`
}

// Leads are found or created for the lead-creating inbound messages of a
// segment (direct chats; group chats with group_leads on; history messages
// as history_leads allows: the planner decides); a new lead starts with the
// best name it has (leadCandidate), adopts the orphan messages of its phone
// (or LID) that may link to it, and writes its created event. An existing
// lead takes the segment's push name when that is better (an earlier push
// name over a push or business name) and writes a renamed event when its
// name or source changed.
// Arrays: m, phone (or lid), lid (LeadsPhoneSQL; LeadsLIDSQL ignores it),
// push name, its at and seq, then the creating message's occurred_at, chat
// JID and WhatsApp id (for the created event).
var (
	LeadsPhoneSQL = leadsUpsert("phone", "(mentorado_id, phone)", "l.phone = u.phone",
		"u.phone || '@s.whatsapp.net'", "t.phone = ins.phone")
	LeadsLIDSQL = leadsUpsert("lid", "(mentorado_id, lid) WHERE lid IS NOT NULL AND phone IS NULL",
		"l.lid = u.lid AND l.phone IS NULL", "u.lid", "t.lid = ins.lid AND t.phone IS NULL")
)

// LeadContactNamesSQL gives leads the names of their contacts: after a
// segment's contacts (and merges) are written, the lead of each contact's
// phone (or LID, for a LID-only contact) takes the contact's address-book
// name, else its business name, when that is better (betterLeadName), and
// writes a renamed event when its name or source changed. Arrays: m,
// contact JID, occurred_at of the event that changed the contact.
var LeadContactNamesSQL = `WITH u AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[]) AS u(m, jid, occ)),
c AS (
	SELECT c.mentorado_id, c.phone, c.lid, u.occ,
		CASE WHEN c.name <> '' THEN c.name ELSE c.business_name END AS name,
		CASE WHEN c.name <> '' THEN c.name_at ELSE c.business_name_at END AS name_at,
		CASE WHEN c.name <> '' THEN c.name_seq ELSE c.business_name_seq END AS name_seq,
		CASE WHEN c.name <> '' THEN 'address_book' WHEN c.business_name <> '' THEN 'business' END AS name_source
	FROM u JOIN whatsapp_contacts c ON c.mentorado_id = u.m AND c.jid = u.jid
	WHERE c.name <> '' OR c.business_name <> ''
),
old AS (
	SELECT l.id, l.name, ` + leadSource("l") + ` AS src, c.occ
	FROM c JOIN leads l ON l.mentorado_id = c.mentorado_id
		AND ((c.phone IS NOT NULL AND l.phone = c.phone) OR (c.phone IS NULL AND l.lid = c.lid AND l.phone IS NULL))
),
upd AS (
	UPDATE leads l SET name = c.name, name_at = c.name_at, name_seq = c.name_seq, name_source = c.name_source, updated_at = now()
	FROM c
	WHERE l.mentorado_id = c.mentorado_id
		AND ((c.phone IS NOT NULL AND l.phone = c.phone) OR (c.phone IS NULL AND l.lid = c.lid AND l.phone IS NULL))
		AND ` + betterLeadName("c", "l") + `
	RETURNING l.id, l.mentorado_id, l.phone, l.lid, l.name, l.name_at, l.name_seq, l.name_source
)
INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data)
SELECT upd.mentorado_id, ` + leadEventID("upd", "'renamed'", nameVersion("upd")) + `, coalesce(upd.name_at, old.occ),
	` + leadData("upd", "'renamed'") + `
FROM upd JOIN old ON old.id = upd.id
WHERE upd.name IS DISTINCT FROM old.name OR ` + leadSource("upd") + ` IS DISTINCT FROM old.src
ON CONFLICT DO NOTHING`

// Lead merges (see the other merges in persist.go). Arrays: m, lid, phone,
// and for the statements that write events the occurred_at of the event
// that taught the mapping.
var (
	// The phone's lead takes the LID and the LID lead's name when that is
	// better (betterLeadName). Its merged event (MergeDeleteLeadSQL)
	// carries the name after the merge. What the CRM gave the LID lead
	// (leads API, decision 0018) is kept too: its tags join the phone
	// lead's, its fields fill the keys the phone lead lacks.
	MergeFillLeadSQL = `UPDATE leads p SET lid = coalesce(p.lid, o.lid),
	tags = p.tags || ARRAY(SELECT x FROM unnest(o.tags) WITH ORDINALITY AS u(x, i) WHERE x <> ALL(p.tags) ORDER BY i),
	fields = o.fields || p.fields,
	name = CASE WHEN ` + betterLeadName("o", "p") + ` THEN o.name ELSE p.name END,
	name_at = CASE WHEN ` + betterLeadName("o", "p") + ` THEN o.name_at ELSE p.name_at END,
	name_seq = CASE WHEN ` + betterLeadName("o", "p") + ` THEN o.name_seq ELSE p.name_seq END,
	name_source = CASE WHEN ` + betterLeadName("o", "p") + ` THEN ` + leadSource("o") + ` ELSE p.name_source END,
	updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(m, lid, phone)
JOIN leads o ON o.mentorado_id = u.m AND o.lid = u.lid AND o.phone IS NULL
WHERE p.mentorado_id = u.m AND p.phone = u.phone`

	// The LID-only lead is deleted; the phone lead's merged event names it.
	MergeDeleteLeadSQL = `WITH u AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS u(m, lid, phone, occ)),
d AS (
	DELETE FROM leads o USING u
	WHERE o.mentorado_id = u.m AND o.lid = u.lid AND o.phone IS NULL
		AND EXISTS (SELECT 1 FROM leads p WHERE p.mentorado_id = u.m AND p.phone = u.phone)
	RETURNING o.id, u.m, u.phone, u.occ
)
INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data)
SELECT p.mentorado_id, ` + leadEventID("p", "'merged'", "d.id::text") + `, d.occ,
	` + leadData("p", "'merged'") + ` || jsonb_build_object('merged_lead_id', d.id)
FROM d JOIN leads p ON p.mentorado_id = d.m AND p.phone = d.phone
ON CONFLICT DO NOTHING`

	// A LID-only lead without a phone twin becomes the phone's lead: its
	// phone event.
	MergeConvertLeadSQL = `WITH u AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[]) AS u(m, lid, phone, occ)),
c AS (
	UPDATE leads o SET phone = u.phone, updated_at = now() FROM u
	WHERE o.mentorado_id = u.m AND o.lid = u.lid AND o.phone IS NULL
	RETURNING o.id, o.mentorado_id, o.phone, o.lid, o.name, o.name_at, o.name_seq, o.name_source, u.occ
)
INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data)
SELECT c.mentorado_id, ` + leadEventID("c", "'phone'", "c.phone") + `, c.occ, ` + leadData("c", "'phone'") + `
FROM c
ON CONFLICT DO NOTHING`
)

// LeadEvent is one lead event waiting in the outbox (lead_events).
type LeadEvent struct {
	ID          int64
	MentoradoID int64
	EventID     string
	OccurredAt  time.Time
	Data        []byte // event.Lead as JSON
}

const (
	sqlLeadEventsLock = `SELECT id, mentorado_id, event_id, occurred_at, data::text FROM lead_events
ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`
	sqlLeadEventsDelete = `DELETE FROM lead_events WHERE id = ANY($1::bigint[])`
	sqlLeadEventsCount  = `SELECT count(*) FROM lead_events`
)

// FlushLeadEvents publishes up to limit waiting lead events, oldest first,
// and deletes the ones published, in one transaction that locks them (FOR
// UPDATE SKIP LOCKED): persisters flushing at the same time publish
// disjoint rows. When publish fails the flush stops there: the events
// published before are deleted, the others wait for the next flush. A crash
// after publishing and before the commit publishes them again later; their
// ids are deterministic, so JetStream drops them as duplicates within its
// window. It returns how many were published.
func (db *DB) FlushLeadEvents(ctx context.Context, limit int, publish func(context.Context, LeadEvent) error) (int, error) {
	var (
		n    int
		perr error
	)
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, sqlLeadEventsLock, limit)
		evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LeadEvent, error) {
			var e LeadEvent
			var data string
			err := r.Scan(&e.ID, &e.MentoradoID, &e.EventID, &e.OccurredAt, &data)
			e.Data = []byte(data)
			return e, err
		})
		if err != nil {
			return fmt.Errorf("store: lead events: %w", err)
		}
		done := make([]int64, 0, len(evs))
		for _, e := range evs {
			if perr = publish(ctx, e); perr != nil {
				break
			}
			done = append(done, e.ID)
		}
		if len(done) > 0 {
			if _, err := tx.Exec(ctx, sqlLeadEventsDelete, done); err != nil {
				return fmt.Errorf("store: delete lead events: %w", err)
			}
		}
		n = len(done)
		if perr != nil && len(done) == 0 {
			return perr
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, perr
}

// PendingLeadEvents counts the lead events waiting to be published.
func (db *DB) PendingLeadEvents(ctx context.Context) (int, error) {
	var n int
	err := db.Pool.QueryRow(ctx, sqlLeadEventsCount).Scan(&n)
	return n, err
}

// LeadEventsChannel is the Postgres NOTIFY channel of the lead_events
// outbox: the leads API notifies it in the transaction that wrote a lead
// event (delivered at the commit), and the persister's outbox loop listens
// on it, so an API change is published within a moment rather than at the
// next OutboxInterval.
const LeadEventsChannel = "zapbus_lead_events"

// leadCRMData is event.Lead for lead row l and change with the CRM's
// fields (source, status, tags, fields): the updated and deleted events.
func leadCRMData(l, change string) string {
	return leadData(l, change) + " || jsonb_build_object('source', " + l + ".source, 'status', " + l + ".stage, 'tags', " + l +
		".tags, 'fields', " + l + ".fields)"
}

var (
	// sqlLeadUpdatedEvent writes the updated event of lead $2 of mentorado
	// $1 as the row is now: key and occurred_at are its updated_at (unix
	// nanoseconds), which every API change moves forward.
	sqlLeadUpdatedEvent = `INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data)
SELECT l.mentorado_id, ` + leadEventID("l", "'updated'", "(round(extract(epoch FROM l.updated_at) * 1000000)::bigint * 1000)::text") + `,
	l.updated_at, ` + leadCRMData("l", "'updated'") + `
FROM leads l WHERE l.mentorado_id = $1 AND l.id = $2
ON CONFLICT DO NOTHING`

	// sqlLeadDeletedEvent writes the deleted event of lead $2 of
	// mentorado $1 (before the row goes); a lead is deleted once.
	sqlLeadDeletedEvent = `INSERT INTO lead_events (mentorado_id, event_id, occurred_at, data)
SELECT l.mentorado_id, ` + leadEventID("l", "'deleted'", "NULL") + `, clock_timestamp(), ` + leadCRMData("l", "'deleted'") + `
FROM leads l WHERE l.mentorado_id = $1 AND l.id = $2
ON CONFLICT DO NOTHING`

	sqlNotifyLeadEvents = `SELECT pg_notify('` + LeadEventsChannel + `', '')`
	sqlListenLeadEvents = `LISTEN ` + LeadEventsChannel
)

// insertLeadEvent writes lead id's updated event in tx and notifies the
// outbox's listeners (at the commit).
func insertLeadEvent(ctx context.Context, tx pgx.Tx, m, id int64, change string) error {
	if change != "updated" {
		return fmt.Errorf("store: lead event %q is not written by the API", change)
	}
	if _, err := tx.Exec(ctx, sqlLeadUpdatedEvent, m, id); err != nil {
		return fmt.Errorf("store: lead updated event: %w", err)
	}
	return notifyLeadEvents(ctx, tx)
}

// notifyLeadEvents notifies LeadEventsChannel; Postgres delivers it when
// tx commits (and never if it rolls back).
func notifyLeadEvents(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, sqlNotifyLeadEvents); err != nil {
		return fmt.Errorf("store: notify lead events: %w", err)
	}
	return nil
}

// LeadEventsListener is a dedicated connection (not one of the pool's)
// listening on LeadEventsChannel.
type LeadEventsListener struct{ conn *pgx.Conn }

// ListenLeadEvents opens a connection with the pool's settings and
// LISTENs on LeadEventsChannel. Close it when done; after an error from
// Wait, close it and listen again (notifications sent while no listener
// was connected are lost: flush the outbox after listening).
func (db *DB) ListenLeadEvents(ctx context.Context) (*LeadEventsListener, error) {
	cfg := db.Pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = LeadEventsListenerName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: listen lead events: %w", err)
	}
	if _, err := conn.Exec(ctx, sqlListenLeadEvents); err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("store: listen lead events: %w", err)
	}
	return &LeadEventsListener{conn: conn}, nil
}

// LeadEventsListenerName is the listener connection's application_name
// (pg_stat_activity).
const LeadEventsListenerName = "zapbus lead events listener"

// Wait blocks until a notification arrives (nil), ctx ends or the
// connection fails.
func (l *LeadEventsListener) Wait(ctx context.Context) error {
	_, err := l.conn.WaitForNotification(ctx)
	return err
}

// Close closes the connection.
func (l *LeadEventsListener) Close(ctx context.Context) error {
	return l.conn.Close(ctx)
}
