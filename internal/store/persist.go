package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The persister's statements. The persister keeps its hot path on pgx
// (one batch of lookups, COPY for new messages, one batch of writes, one
// transaction; see internal/persister), but every statement and column list
// it sends is here, next to the other queries on the same tables.
//
// Set-based statements. Every statement takes parallel arrays (unnest) and
// touches each key at most once: the planner deduplicates per key in Go
// first, because ON CONFLICT DO UPDATE cannot affect the same row twice in
// one statement. Every write is idempotent: applying the same events again,
// in any batch split, leaves the same rows.

// Lookups (first round trip of a transaction).
var (
	// Every statement joins a few hundred keys (unnest) against big tables:
	// index nested loops are always right, but the planner cannot see the
	// array sizes and may pick hash joins over sequential scans, whose cost
	// grows with the tables. Disable those for this transaction only.
	PlannerHintsSQL = `SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
	set_config('enable_seqscan', 'off', true)`

	// LockMentoradosSQL (lock.go) comes next in the same batch.

	// The batch's mentorados that exist (events of others are poison),
	// with their lead settings (group_leads, history_leads,
	// history_lead_days): which messages create and link leads.
	KnownMentoradosSQL = `SELECT id, group_leads, history_leads, history_lead_days FROM mentorados WHERE id = ANY($1::bigint[])`
	// Mappings already learned, and for LIDs not mapped yet whether any
	// LID-only row (lead, contact, message) exists that a merge must fold.
	KnownLIDsSQL = `SELECT u.m, u.lid, coalesce(x.phone, ''), x.phone IS NULL
FROM unnest($1::bigint[], $2::text[]) AS u(m, lid)
LEFT JOIN whatsapp_lid_phones x ON x.mentorado_id = u.m AND x.lid = u.lid
WHERE x.phone IS NOT NULL
	OR EXISTS (SELECT 1 FROM leads l WHERE l.mentorado_id = u.m AND l.lid = u.lid AND l.phone IS NULL)
	OR EXISTS (SELECT 1 FROM whatsapp_contacts c WHERE c.mentorado_id = u.m AND c.lid = u.lid AND c.phone IS NULL)
	OR EXISTS (SELECT 1 FROM whatsapp_messages t WHERE t.mentorado_id = u.m AND t.lid = u.lid AND t.phone IS NULL)`
	// Phone leads that exist already, the rank of their name's source
	// (LeadNameRank*) and its version (the planner skips writing those that
	// need nothing) and their ids (for the messages' lead_id).
	KnownLeadsSQL = `SELECT l.mentorado_id, l.phone, ` + leadRank("l") + `, l.name_at, l.name_seq, l.id
FROM unnest($1::bigint[], $2::text[]) AS u(m, phone)
JOIN leads l ON l.mentorado_id = u.m AND l.phone = u.phone`
	// Messages of the batch that are stored already, have a receipt waiting
	// or have edits/revokes stored; only those need the upsert, pending and
	// recompute statements. The batch's mentorados are locked, so a message
	// not stored now cannot be stored by anyone else before this commits.
	KnownRelatedSQL = `SELECT k.m, k.id,
	EXISTS (SELECT 1 FROM whatsapp_pending_receipts p WHERE p.mentorado_id = k.m AND p.wa_message_id = k.id),
	EXISTS (SELECT 1 FROM whatsapp_messages x WHERE x.mentorado_id = k.m AND x.target_id = k.id AND x.kind IN ('edit', 'revoke')),
	EXISTS (SELECT 1 FROM whatsapp_messages t WHERE t.mentorado_id = k.m AND t.wa_message_id = k.id)
FROM unnest($1::bigint[], $2::text[]) AS k(m, id)
WHERE EXISTS (SELECT 1 FROM whatsapp_messages t WHERE t.mentorado_id = k.m AND t.wa_message_id = k.id)
	OR EXISTS (SELECT 1 FROM whatsapp_pending_receipts p WHERE p.mentorado_id = k.m AND p.wa_message_id = k.id)
	OR EXISTS (SELECT 1 FROM whatsapp_messages x WHERE x.mentorado_id = k.m AND x.target_id = k.id AND x.kind IN ('edit', 'revoke'))`
)

// Connection status moves only to a newer (occurred_at, stream seq). The
// same status at the same instant from a higher sequence is the same event
// stored again (a republish) and changes nothing. The phone and JID follow
// the newest event that carried a phone, versioned the same way.
const ConnectionSQL = `UPDATE mentorados m SET
	wa_status = CASE WHEN s.newer THEN u.status ELSE m.wa_status END,
	wa_reason = CASE WHEN s.newer THEN u.reason ELSE m.wa_reason END,
	wa_status_at = CASE WHEN s.newer THEN u.at ELSE m.wa_status_at END,
	wa_status_seq = CASE WHEN s.newer THEN u.seq ELSE m.wa_status_seq END,
	wa_phone = CASE WHEN s.phone_newer THEN u.phone ELSE m.wa_phone END,
	wa_jid = CASE WHEN s.phone_newer THEN coalesce(u.jid, m.wa_jid) ELSE m.wa_jid END,
	wa_phone_at = CASE WHEN s.phone_newer THEN u.phone_at ELSE m.wa_phone_at END,
	wa_phone_seq = CASE WHEN s.phone_newer THEN u.phone_seq ELSE m.wa_phone_seq END,
	wa_connector = CASE WHEN s.newer THEN u.connector ELSE m.wa_connector END
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[],
		$6::text[], $7::text[], $8::timestamptz[], $9::bigint[], $10::text[])
	AS u(id, status, reason, at, seq, phone, jid, phone_at, phone_seq, connector),
LATERAL (SELECT
	(u.status IS NOT NULL AND (u.at > coalesce(m2.wa_status_at, '-infinity'::timestamptz)
		OR (u.at = m2.wa_status_at AND u.seq > m2.wa_status_seq AND u.status <> m2.wa_status))) AS newer,
	(u.phone IS NOT NULL AND (u.phone_at > coalesce(m2.wa_phone_at, '-infinity'::timestamptz)
		OR (u.phone_at = m2.wa_phone_at AND u.phone_seq > m2.wa_phone_seq AND u.phone <> m2.wa_phone))) AS phone_newer
	FROM mentorados m2 WHERE m2.id = u.id) AS s
WHERE m.id = u.id AND (s.newer OR s.phone_newer)`

// ConnectionLogSQL records every connection event in connection_log (the
// operator console's reconnects and bans of the last 24 h), idempotent by
// the event id, and prunes the batch's mentorados' rows older than
// ConnectionLogRetention on the connection_log_recent index: a mentorado
// without events keeps its few old rows until its next event. Events
// already older than the retention (a replay) are not recorded. Arrays:
// m, event id, status, reason, occurred_at; each (m, event id) once.
const ConnectionLogSQL = `WITH ins AS (
	INSERT INTO connection_log (mentorado_id, event_id, status, reason, occurred_at)
	SELECT u.m, u.id, u.status, u.reason, u.at
	FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS u(m, id, status, reason, at)
	WHERE u.at >= now() - '` + connectionLogRetention + `'::interval
	ON CONFLICT DO NOTHING
)
DELETE FROM connection_log
WHERE mentorado_id = ANY($1::bigint[]) AND occurred_at < now() - '` + connectionLogRetention + `'::interval`

// connectionLogRetention is how long connection_log keeps a row.
const connectionLogRetention = "7 days"

// LID merges, run when a (mentorado, lid) → phone mapping is first learned,
// before the writes of the event that taught it. Arrays: m, lid, phone, phone JID.
// The merges of leads themselves (fill, delete, convert) are in
// lead_events.go: they write lead events.
var (
	MapInsertSQL = `INSERT INTO whatsapp_lid_phones (mentorado_id, lid, phone)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING`

	// Messages of the LID-only lead move to the phone's lead.
	MergeMoveMessagesSQL = `UPDATE whatsapp_messages t SET lead_id = p.id, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(m, lid, phone)
JOIN leads o ON o.mentorado_id = u.m AND o.lid = u.lid AND o.phone IS NULL
JOIN leads p ON p.mentorado_id = u.m AND p.phone = u.phone
WHERE t.lead_id = o.id`

	MergeLeadLIDSQL = `UPDATE leads p SET lid = u.lid, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(m, lid, phone)
WHERE p.mentorado_id = u.m AND p.phone = u.phone AND p.lid IS NULL`

	MergeMessagePhoneSQL = `UPDATE whatsapp_messages t SET phone = u.phone, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(m, lid, phone)
WHERE t.mentorado_id = u.m AND t.lid = u.lid AND t.phone IS NULL`

	MergeLinkOrphansSQL = `UPDATE whatsapp_messages t SET lead_id = l.id, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(m, lid, phone)
JOIN leads l ON l.mentorado_id = u.m AND l.phone = u.phone
WHERE t.mentorado_id = u.m AND t.phone = u.phone AND t.lead_id IS NULL AND ` + linkable("t")

	MergeDeleteContactSQL = `DELETE FROM whatsapp_contacts o
USING unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(m, lid, phone, pjid)
WHERE o.mentorado_id = u.m AND o.lid = u.lid AND o.phone IS NULL
	AND EXISTS (SELECT 1 FROM whatsapp_contacts p WHERE p.mentorado_id = u.m AND p.jid = u.pjid)`

	MergeConvertContactSQL = `UPDATE whatsapp_contacts o SET jid = u.pjid, phone = u.phone, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(m, lid, phone, pjid)
WHERE o.mentorado_id = u.m AND o.lid = u.lid AND o.phone IS NULL`
)

// When a LID-only contact folds into the phone's contact, each name keeps
// the newer of the two facts. Arrays: m, lid, phone, phone JID.
var MergeFillContactSQL = `UPDATE whatsapp_contacts p SET lid = coalesce(p.lid, o.lid),
	name = CASE WHEN ` + newerField("o", "p", "name") + ` THEN o.name ELSE p.name END,
	name_at = CASE WHEN ` + newerField("o", "p", "name") + ` THEN o.name_at ELSE p.name_at END,
	name_seq = CASE WHEN ` + newerField("o", "p", "name") + ` THEN o.name_seq ELSE p.name_seq END,
	push_name = CASE WHEN ` + newerField("o", "p", "push_name") + ` THEN o.push_name ELSE p.push_name END,
	push_name_at = CASE WHEN ` + newerField("o", "p", "push_name") + ` THEN o.push_name_at ELSE p.push_name_at END,
	push_name_seq = CASE WHEN ` + newerField("o", "p", "push_name") + ` THEN o.push_name_seq ELSE p.push_name_seq END,
	business_name = CASE WHEN ` + newerField("o", "p", "business_name") + ` THEN o.business_name ELSE p.business_name END,
	business_name_at = CASE WHEN ` + newerField("o", "p", "business_name") + ` THEN o.business_name_at ELSE p.business_name_at END,
	business_name_seq = CASE WHEN ` + newerField("o", "p", "business_name") + ` THEN o.business_name_seq ELSE p.business_name_seq END,
	updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(m, lid, phone, pjid)
JOIN whatsapp_contacts o ON o.mentorado_id = u.m AND o.lid = u.lid AND o.phone IS NULL
WHERE p.mentorado_id = u.m AND p.jid = u.pjid`

// Contacts: each name (address book, push, business) follows its newest
// fact by version (occurred_at, stream seq); an older fact applied late
// (redelivery, replay) changes nothing, and empty values never erase. A
// stored name without a version (written before versions existed) loses to
// any fact. Arrays: m, jid, phone, lid, then (value, at, seq) per name.
var ContactsSQL = `INSERT INTO whatsapp_contacts AS c (mentorado_id, jid, phone, lid,
	name, name_at, name_seq, push_name, push_name_at, push_name_seq, business_name, business_name_at, business_name_seq)
SELECT u.m, u.jid, u.phone, u.lid,
	u.name, CASE WHEN u.name <> '' THEN u.name_at END, CASE WHEN u.name <> '' THEN u.name_seq ELSE 0 END,
	u.push, CASE WHEN u.push <> '' THEN u.push_at END, CASE WHEN u.push <> '' THEN u.push_seq ELSE 0 END,
	u.biz, CASE WHEN u.biz <> '' THEN u.biz_at END, CASE WHEN u.biz <> '' THEN u.biz_seq ELSE 0 END
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
	$5::text[], $6::timestamptz[], $7::bigint[], $8::text[], $9::timestamptz[], $10::bigint[],
	$11::text[], $12::timestamptz[], $13::bigint[])
	AS u(m, jid, phone, lid, name, name_at, name_seq, push, push_at, push_seq, biz, biz_at, biz_seq)
ON CONFLICT (mentorado_id, jid) DO UPDATE SET
	phone = coalesce(excluded.phone, c.phone),
	lid = coalesce(excluded.lid, c.lid),
	name = CASE WHEN ` + newerName + ` THEN excluded.name ELSE c.name END,
	name_at = CASE WHEN ` + newerName + ` THEN excluded.name_at ELSE c.name_at END,
	name_seq = CASE WHEN ` + newerName + ` THEN excluded.name_seq ELSE c.name_seq END,
	push_name = CASE WHEN ` + newerPush + ` THEN excluded.push_name ELSE c.push_name END,
	push_name_at = CASE WHEN ` + newerPush + ` THEN excluded.push_name_at ELSE c.push_name_at END,
	push_name_seq = CASE WHEN ` + newerPush + ` THEN excluded.push_name_seq ELSE c.push_name_seq END,
	business_name = CASE WHEN ` + newerBiz + ` THEN excluded.business_name ELSE c.business_name END,
	business_name_at = CASE WHEN ` + newerBiz + ` THEN excluded.business_name_at ELSE c.business_name_at END,
	business_name_seq = CASE WHEN ` + newerBiz + ` THEN excluded.business_name_seq ELSE c.business_name_seq END,
	updated_at = now()
WHERE (excluded.phone IS NOT NULL AND excluded.phone IS DISTINCT FROM c.phone)
	OR (excluded.lid IS NOT NULL AND excluded.lid IS DISTINCT FROM c.lid)
	OR ` + newerName + ` OR ` + newerPush + ` OR ` + newerBiz

// Groups: the newest snapshot of each group event wins, by version
// (occurred_at, stream seq) like contact names, whatever the order they
// are applied in. Arrays: m, jid, subject, topic, participants (JSON),
// left, at, seq.
const GroupsSQL = `INSERT INTO whatsapp_groups AS g (mentorado_id, jid, subject, topic, participants, "left", info_at, info_seq)
SELECT u.m, u.jid, u.subject, u.topic, u.participants::jsonb, u.left_, u.at, u.seq
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::boolean[], $7::timestamptz[], $8::bigint[])
	AS u(m, jid, subject, topic, participants, left_, at, seq)
ON CONFLICT (mentorado_id, jid) DO UPDATE SET subject = excluded.subject, topic = excluded.topic,
	participants = excluded.participants, "left" = excluded."left", info_at = excluded.info_at, info_seq = excluded.info_seq,
	updated_at = now()
WHERE (excluded.info_at, excluded.info_seq) > (coalesce(g.info_at, '-infinity'::timestamptz), g.info_seq)`

// newerField is true when row n carries field f with a newer version than
// row o: (f_at, f_seq) compared as a pair, a missing version lowest.
func newerField(n, o, f string) string {
	return "(" + n + "." + f + " <> '' AND (coalesce(" + n + "." + f + "_at, '-infinity'::timestamptz), " + n + "." + f + "_seq) > " +
		"(coalesce(" + o + "." + f + "_at, '-infinity'::timestamptz), " + o + "." + f + "_seq))"
}

var (
	newerName = newerField("excluded", "c", "name")
	newerPush = newerField("excluded", "c", "push_name")
	newerBiz  = newerField("excluded", "c", "business_name")
)

// Messages: one row per (mentorado, WhatsApp id). A repeated message only
// raises the status and fills a missing phone or lead; its content stays.
// The lead is the phone's lead the lookup found (a phone lead keeps its id
// for the whole transaction: merges only delete or convert LID-only leads),
// else looked up here, after this segment's lead writes.
// Messages the lookup found not stored (and not written earlier in the
// batch) take the plain insert: no speculative insertion, no conflict check
// beyond the unique index itself.
//
// New messages whose counterpart's phone lead exists already (the lookup
// found it, and a phone lead keeps its id for the whole transaction) are
// copied (COPY) before any other write of the batch: nothing the batch's
// statements do depends on their absence. Merges and lead creation only
// touch messages without a phone or without a lead; receipts, pending
// receipts and edit/revoke recomputation give the same result whether the
// message lands earlier or later in the transaction (status only moves up,
// edits and revokes are recomputed from rows).
var messageColumns = []struct{ name, typ string }{
	{"mentorado_id", "bigint"}, {"wa_message_id", "text"}, {"chat_jid", "text"}, {"sender_jid", "text"},
	{"phone", "text"}, {"lid", "text"}, {"push_name", "text"}, {"direction", "text"}, {"kind", "text"},
	{"body", "text"}, {"caption", "text"}, {"reply_to_id", "text"}, {"target_id", "text"},
	{"status", "text"}, {"status_rank", "smallint"}, {"lead_id", "bigint"}, {"sent_at", "timestamptz"},
	{"media_id", "text"}, {"media_mime", "text"}, {"media_size", "bigint"}, {"media_file_name", "text"},
	{"media_seconds", "integer"}, {"media_width", "integer"}, {"media_height", "integer"}, {"media_round", "boolean"},
	{"media_thumbnail", "bytea"}, {"media_state", "text"}, {"history", "boolean"}, {"status_reason", "text"},
}

// MessageColumns are the whatsapp_messages columns the persister writes, in
// the one order that MessagesInsertSQL's parameters (MessageArrays.Args)
// and a COPY row (MessageWrite.Values) share.
var MessageColumns = func() []string {
	out := make([]string, len(messageColumns))
	for i, c := range messageColumns {
		out[i] = c.name
	}
	return out
}()

// MessagesInsertSQL inserts new messages, one array parameter per column
// of MessageColumns:
//
//	INSERT INTO whatsapp_messages AS t (mentorado_id, …, history)
//	SELECT u.mentorado_id, …, coalesce(u.lead_id, <the lead of u.phone, else of u.lid>), …, u.history
//	FROM unnest($1::bigint[], …, $29::text[]) AS u(mentorado_id, …, status_reason)
var MessagesInsertSQL = func() string {
	var cols, sel, params strings.Builder
	for i, c := range messageColumns {
		if i > 0 {
			cols.WriteString(", ")
			sel.WriteString(", ")
			params.WriteString(", ")
		}
		cols.WriteString(c.name)
		if c.name == "lead_id" {
			// A group message links to its sender's lead only when the
			// mentorado's group_leads is on.
			sel.WriteString(`coalesce(u.lead_id, CASE
		WHEN u.chat_jid LIKE '%@g.us' AND NOT (SELECT g.group_leads FROM mentorados g WHERE g.id = u.mentorado_id) THEN NULL
		WHEN u.phone IS NOT NULL THEN (SELECT l.id FROM leads l WHERE l.mentorado_id = u.mentorado_id AND l.phone = u.phone)
		WHEN u.lid IS NOT NULL THEN (SELECT l.id FROM leads l WHERE l.mentorado_id = u.mentorado_id AND l.lid = u.lid AND l.phone IS NULL)
	END)`)
		} else {
			sel.WriteString("u." + c.name)
		}
		fmt.Fprintf(&params, "$%d::%s[]", i+1, c.typ)
	}
	return "INSERT INTO whatsapp_messages AS t (" + cols.String() + ")\nSELECT " + sel.String() +
		"\nFROM unnest(" + params.String() + ")\n\tAS u(" + cols.String() + ")"
}()

// MessagesUpsertSQL is MessagesInsertSQL for messages that may be stored
// already: status only moves up (with the status_reason of the status that
// wins: why a send expired or failed), a missing phone or lead is filled.
// The content, media metadata and media_state stay: a redelivered or
// replayed message never moves its file back to pending. A message seen
// live and in the history sync is one row, history only while every copy
// was history: live wins, whatever the order.
//
// An outbound message still queued (the outbox, issue #14) that is now
// sent takes the sent event's routing (outboxAdopt): chat_jid, phone, LID
// (so chat), lead and sent_at, since the number may have resolved to
// another JID when it was sent (the Brazilian 9th digit) and the thread
// orders by when it went out. A queued event applied after its sent one
// (redelivery) changes nothing: rank 0 never wins.
var MessagesUpsertSQL = MessagesInsertSQL + `
ON CONFLICT (mentorado_id, wa_message_id) DO UPDATE SET
	status = CASE WHEN excluded.status_rank > t.status_rank THEN excluded.status ELSE t.status END,
	status_rank = greatest(t.status_rank, excluded.status_rank),
	status_reason = CASE WHEN excluded.status_rank > t.status_rank THEN excluded.status_reason ELSE t.status_reason END,
	chat_jid = CASE WHEN ` + outboxAdopt + ` THEN excluded.chat_jid ELSE t.chat_jid END,
	phone = CASE WHEN ` + outboxAdopt + ` THEN excluded.phone ELSE coalesce(t.phone, excluded.phone) END,
	lid = CASE WHEN ` + outboxAdopt + ` THEN excluded.lid ELSE t.lid END,
	lead_id = CASE WHEN ` + outboxAdopt + ` THEN excluded.lead_id ELSE coalesce(t.lead_id, excluded.lead_id) END,
	sent_at = CASE WHEN ` + outboxAdopt + ` THEN excluded.sent_at ELSE t.sent_at END,
	history = t.history AND excluded.history,
	updated_at = now()
WHERE excluded.status_rank > t.status_rank
	OR (t.phone IS NULL AND excluded.phone IS NOT NULL)
	OR (t.lead_id IS NULL AND excluded.lead_id IS NOT NULL)
	OR (t.history AND NOT excluded.history)`

// outboxAdopt is true when the stored row t is a queued send and the
// proposed row is one WhatsApp took (sent, delivered, read, played).
const outboxAdopt = `(t.status = 'queued' AND excluded.status_rank BETWEEN 1 AND 4)`

// MessageWrite is one whatsapp_messages row as the persister writes it.
type MessageWrite struct {
	MentoradoID                              int64
	WAMessageID, ChatJID, SenderJID          string
	Phone, LID                               *string
	PushName, Direction, Kind, Body, Caption string
	ReplyToID, TargetID                      *string
	Status                                   string
	StatusRank                               int16
	LeadID                                   *int64
	SentAt                                   time.Time
	// Media metadata (all nil for messages without a file); MediaState is
	// "pending" for a media message.
	MediaID, MediaMIME, MediaFileName, MediaState *string
	MediaSize                                     *int64
	MediaSeconds, MediaWidth, MediaHeight         *int32
	MediaRound                                    bool
	MediaThumbnail                                []byte
	History                                       bool    // from the phone's history sync
	StatusReason                                  *string // why an outbound message expired or failed
}

// Values is w as a COPY row of MessageColumns.
func (w *MessageWrite) Values() []any {
	return []any{w.MentoradoID, w.WAMessageID, w.ChatJID, w.SenderJID, w.Phone, w.LID, w.PushName, w.Direction,
		w.Kind, w.Body, w.Caption, w.ReplyToID, w.TargetID, w.Status, w.StatusRank, w.LeadID, w.SentAt,
		w.MediaID, w.MediaMIME, w.MediaSize, w.MediaFileName, w.MediaSeconds, w.MediaWidth, w.MediaHeight,
		w.MediaRound, w.MediaThumbnail, w.MediaState, w.History, w.StatusReason}
}

// MessageArrays collects MessageWrites as the parallel arrays that
// MessagesInsertSQL and MessagesUpsertSQL take.
type MessageArrays struct {
	ms                                    []int64
	ids, chats, senders                   []string
	phones, lids                          []*string
	pushes, dirs, kinds, bodies, captions []string
	replies, targets                      []*string
	statuses                              []string
	ranks                                 []int16
	leads                                 []*int64
	sent                                  []time.Time
	mediaIDs, mimes, fileNames, states    []*string
	reasons                               []*string
	sizes                                 []*int64
	seconds, widths, heights              []*int32
	rounds, histories                     []bool
	thumbs                                [][]byte
}

// NewMessageArrays returns arrays with room for n messages.
func NewMessageArrays(n int) *MessageArrays {
	return &MessageArrays{
		ms: make([]int64, 0, n), ids: make([]string, 0, n), chats: make([]string, 0, n), senders: make([]string, 0, n),
		phones: make([]*string, 0, n), lids: make([]*string, 0, n), pushes: make([]string, 0, n), dirs: make([]string, 0, n),
		kinds: make([]string, 0, n), bodies: make([]string, 0, n), captions: make([]string, 0, n),
		replies: make([]*string, 0, n), targets: make([]*string, 0, n), statuses: make([]string, 0, n),
		ranks: make([]int16, 0, n), leads: make([]*int64, 0, n), sent: make([]time.Time, 0, n),
		mediaIDs: make([]*string, 0, n), mimes: make([]*string, 0, n), fileNames: make([]*string, 0, n), states: make([]*string, 0, n),
		sizes: make([]*int64, 0, n), seconds: make([]*int32, 0, n), widths: make([]*int32, 0, n), heights: make([]*int32, 0, n),
		rounds: make([]bool, 0, n), thumbs: make([][]byte, 0, n), histories: make([]bool, 0, n), reasons: make([]*string, 0, n),
	}
}

// Add appends w.
func (a *MessageArrays) Add(w *MessageWrite) {
	a.ms, a.ids, a.chats, a.senders = append(a.ms, w.MentoradoID), append(a.ids, w.WAMessageID), append(a.chats, w.ChatJID), append(a.senders, w.SenderJID)
	a.phones, a.lids, a.pushes, a.dirs = append(a.phones, w.Phone), append(a.lids, w.LID), append(a.pushes, w.PushName), append(a.dirs, w.Direction)
	a.kinds, a.bodies, a.captions = append(a.kinds, w.Kind), append(a.bodies, w.Body), append(a.captions, w.Caption)
	a.replies, a.targets, a.statuses = append(a.replies, w.ReplyToID), append(a.targets, w.TargetID), append(a.statuses, w.Status)
	a.ranks, a.leads, a.sent = append(a.ranks, w.StatusRank), append(a.leads, w.LeadID), append(a.sent, w.SentAt)
	a.mediaIDs, a.mimes, a.sizes, a.fileNames = append(a.mediaIDs, w.MediaID), append(a.mimes, w.MediaMIME), append(a.sizes, w.MediaSize), append(a.fileNames, w.MediaFileName)
	a.seconds, a.widths, a.heights = append(a.seconds, w.MediaSeconds), append(a.widths, w.MediaWidth), append(a.heights, w.MediaHeight)
	a.rounds, a.thumbs, a.states = append(a.rounds, w.MediaRound), append(a.thumbs, w.MediaThumbnail), append(a.states, w.MediaState)
	a.histories, a.reasons = append(a.histories, w.History), append(a.reasons, w.StatusReason)
}

// Len is the number of messages added.
func (a *MessageArrays) Len() int { return len(a.ms) }

// Args are the statement's parameters, in MessageColumns order.
func (a *MessageArrays) Args() []any {
	return []any{a.ms, a.ids, a.chats, a.senders, a.phones, a.lids, a.pushes, a.dirs,
		a.kinds, a.bodies, a.captions, a.replies, a.targets, a.statuses, a.ranks, a.leads, a.sent,
		a.mediaIDs, a.mimes, a.sizes, a.fileNames, a.seconds, a.widths, a.heights, a.rounds, a.thumbs, a.states, a.histories, a.reasons}
}

// CopyMessages copies rows (MessageWrite.Values) into whatsapp_messages
// inside tx.
func CopyMessages(ctx context.Context, tx pgx.Tx, rows [][]any) error {
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"whatsapp_messages"}, MessageColumns, pgx.CopyFromRows(rows))
	return err
}

// Receipts: status only moves up in rank. A receipt for a message not
// stored yet waits in whatsapp_pending_receipts and is applied (and
// removed) when the message lands. A message still queued in the outbox
// (issue #14) counts as not landed: its receipt (which can only come
// after WhatsApp took it) waits for the sent event, so the row first takes
// the sent event's routing (MessagesUpsertSQL), then the receipt.
const (
	ApplyPendingSQL = `WITH k AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS k(m, id)),
d AS (
	DELETE FROM whatsapp_pending_receipts p USING k
	WHERE p.mentorado_id = k.m AND p.wa_message_id = k.id
		AND NOT EXISTS (SELECT 1 FROM whatsapp_messages q WHERE q.mentorado_id = k.m AND q.wa_message_id = k.id AND q.status = 'queued')
	RETURNING p.mentorado_id, p.wa_message_id, p.status, p.status_rank
)
UPDATE whatsapp_messages t SET status = d.status, status_rank = d.status_rank, updated_at = now() FROM d
WHERE t.mentorado_id = d.mentorado_id AND t.wa_message_id = d.wa_message_id AND d.status_rank > t.status_rank`

	ReceiptsSQL = `UPDATE whatsapp_messages t SET status = u.status, status_rank = u.rank, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::smallint[]) AS u(m, id, status, rank)
WHERE t.mentorado_id = u.m AND t.wa_message_id = u.id AND u.rank > t.status_rank AND t.status <> 'queued'`

	PendingReceiptsSQL = `INSERT INTO whatsapp_pending_receipts AS p (mentorado_id, wa_message_id, status, status_rank)
SELECT u.m, u.id, u.status, u.rank
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::smallint[]) AS u(m, id, status, rank)
WHERE NOT EXISTS (SELECT 1 FROM whatsapp_messages t WHERE t.mentorado_id = u.m AND t.wa_message_id = u.id AND t.status <> 'queued')
ON CONFLICT (mentorado_id, wa_message_id) DO UPDATE SET status = excluded.status, status_rank = excluded.status_rank
WHERE excluded.status_rank > p.status_rank`
)

// Edits and revokes are stored as their own rows (kind edit / revoke, with
// target_id) and their effect on the target is recomputed from those rows
// whenever the target or one of them lands, so the order of arrival does
// not matter. The latest edit (by WhatsApp timestamp, then id) gives the
// body; a revoke clears the body and caption of the target and the text of
// its edits, and marks it revoked. Arrays: m, target id.
const (
	RecomputeEditsSQL = `WITH k AS (SELECT DISTINCT m, id FROM unnest($1::bigint[], $2::text[]) AS k(m, id)),
e AS (
	SELECT DISTINCT ON (x.mentorado_id, x.target_id) x.mentorado_id, x.target_id, x.body
	FROM whatsapp_messages x JOIN k ON x.mentorado_id = k.m AND x.target_id = k.id
	WHERE x.kind = 'edit'
	ORDER BY x.mentorado_id, x.target_id, x.sent_at DESC, x.wa_message_id DESC
)
UPDATE whatsapp_messages t SET body = CASE WHEN t.revoked THEN t.body ELSE e.body END, edited = true, updated_at = now()
FROM e
WHERE t.mentorado_id = e.mentorado_id AND t.wa_message_id = e.target_id
	AND t.kind NOT IN ('edit', 'revoke', 'reaction')
	AND ((NOT t.revoked AND t.body <> e.body) OR NOT t.edited)`

	RecomputeRevokesSQL = `WITH k AS (SELECT DISTINCT m, id FROM unnest($1::bigint[], $2::text[]) AS k(m, id)),
r AS (
	SELECT DISTINCT x.mentorado_id, x.target_id
	FROM whatsapp_messages x JOIN k ON x.mentorado_id = k.m AND x.target_id = k.id
	WHERE x.kind = 'revoke'
)
UPDATE whatsapp_messages t SET revoked = true, body = '', caption = '', updated_at = now() FROM r
WHERE t.mentorado_id = r.mentorado_id AND t.wa_message_id = r.target_id
	AND t.kind NOT IN ('edit', 'revoke', 'reaction')
	AND (NOT t.revoked OR t.body <> '' OR t.caption <> '')`

	RecomputeRevokedEditsSQL = `WITH k AS (SELECT DISTINCT m, id FROM unnest($1::bigint[], $2::text[]) AS k(m, id)),
r AS (
	SELECT DISTINCT x.mentorado_id, x.target_id
	FROM whatsapp_messages x JOIN k ON x.mentorado_id = k.m AND x.target_id = k.id
	WHERE x.kind = 'revoke'
)
UPDATE whatsapp_messages t SET body = '', updated_at = now() FROM r
WHERE t.mentorado_id = r.mentorado_id AND t.target_id = r.target_id AND t.kind = 'edit' AND t.body <> ''`
)

// Media events: a media message's file moves from pending (the message
// row) to stored or failed, by rank only (pending 0, failed 1, stored 2),
// so a redelivered or replayed event never moves it back, whatever the
// order. A media event for a message not stored yet waits in
// whatsapp_pending_media and is applied (and removed) when the message
// lands. media_size takes the stored size when the event has one;
// media_error says why a file failed.
const (
	mediaRank = `CASE t.media_state WHEN 'stored' THEN 2 WHEN 'failed' THEN 1 ELSE 0 END`

	// Arrays: m, wa id, state, rank, size (nil: keep), error.
	MediaSQL = `UPDATE whatsapp_messages t SET media_state = u.state, media_size = coalesce(u.size, t.media_size),
	media_error = u.error, updated_at = now()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::smallint[], $5::bigint[], $6::text[]) AS u(m, id, state, rank, size, error)
WHERE t.mentorado_id = u.m AND t.wa_message_id = u.id AND t.media_state IS NOT NULL AND u.rank > ` + mediaRank

	PendingMediaSQL = `INSERT INTO whatsapp_pending_media AS p (mentorado_id, wa_message_id, state, state_rank, media_size, media_error)
SELECT u.m, u.id, u.state, u.rank, u.size, u.error
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::smallint[], $5::bigint[], $6::text[]) AS u(m, id, state, rank, size, error)
WHERE NOT EXISTS (SELECT 1 FROM whatsapp_messages t WHERE t.mentorado_id = u.m AND t.wa_message_id = u.id)
ON CONFLICT (mentorado_id, wa_message_id) DO UPDATE SET state = excluded.state, state_rank = excluded.state_rank,
	media_size = excluded.media_size, media_error = excluded.media_error
WHERE excluded.state_rank > p.state_rank`

	// Arrays: m, wa id of media messages the batch stores.
	ApplyPendingMediaSQL = `WITH k AS (SELECT * FROM unnest($1::bigint[], $2::text[]) AS k(m, id)),
d AS (
	DELETE FROM whatsapp_pending_media p USING k
	WHERE p.mentorado_id = k.m AND p.wa_message_id = k.id
	RETURNING p.mentorado_id, p.wa_message_id, p.state, p.state_rank, p.media_size, p.media_error
)
UPDATE whatsapp_messages t SET media_state = d.state, media_size = coalesce(d.media_size, t.media_size),
	media_error = d.media_error, updated_at = now() FROM d
WHERE t.mentorado_id = d.mentorado_id AND t.wa_message_id = d.wa_message_id AND t.media_state IS NOT NULL
	AND d.state_rank > ` + mediaRank
)

// OptOutsSQL records contacts who opted out of campaigns by replying with
// one of the mentorado's opt-out keywords (issue #14), in the transaction
// that stores the reply: source keyword, the keyword matched and the
// reply's WhatsApp id. A contact opted out already (by keyword or through
// the API) keeps its first opt-out. Arrays: m, phone, keyword, wa id.
const OptOutsSQL = `INSERT INTO opt_outs (mentorado_id, phone, source, keyword, wa_message_id)
SELECT u.m, u.phone, 'keyword', u.keyword, u.id
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(m, phone, keyword, id)
ON CONFLICT DO NOTHING`
