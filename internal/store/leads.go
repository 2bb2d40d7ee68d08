package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The CRM's leads (the leads API, issue #13,
// docs/decisions/0018-leads-api.md): list with filters, create, update,
// delete. Every write runs under the mentorado's lock (LockMentorado), so
// it serialises with the persister's batches of the same mentorado, and
// writes its lead event into the lead_events outbox in the same
// transaction, then NOTIFYs LeadEventsChannel: the persister publishes it
// a moment after the commit.

// LeadQueries are the leads API's reads and writes of leads.
type LeadQueries struct{ db *DB }

// Leads returns the queries on leads.
func (db *DB) Leads() LeadQueries { return LeadQueries{db: db} }

// LeadRow is a lead as the API shows it; nullable columns read as "".
type LeadRow struct {
	ID         int64
	Phone, LID string
	Name       string
	NameSource string // crm | address_book | push | business; "" without a name
	Source     string
	Status     string // the stage column
	Tags       []string
	Fields     map[string]string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	// MessageCount counts the lead's messages (edits, revokes and
	// reactions not included); LastMessageAt is the newest one's time.
	MessageCount  int64
	LastMessageAt *time.Time
}

// LeadKeyset is a position in the newest-first leads list: the
// (created_at, id) of the last lead of the previous page.
type LeadKeyset struct {
	CreatedAt time.Time
	ID        int64
}

// LeadFilter selects a mentorado's leads. Zero fields do not filter. The
// leads list uses it and so can anything else that selects leads (e.g. a
// campaign's audience): SQL renders it for any query over leads.
type LeadFilter struct {
	Q      string // name contains Q, case-insensitive
	Phone  string // E.164 digits: this number or its Brazilian 9th-digit variant
	Source string
	Status string
	Tags   []string // has every one of these tags
	// CreatedAfter and CreatedBefore bound created_at (exclusive).
	CreatedAfter, CreatedBefore *time.Time
}

// SQL renders f as conditions on the leads row named l, joined by AND
// ("TRUE" when f selects everything), with placeholders numbered after
// args; it returns the conditions and args with f's values appended. The
// caller adds the mentorado condition.
func (f LeadFilter) SQL(l string, args []any) (string, []any) {
	var conds []string
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Q != "" {
		conds = append(conds, l+".name ILIKE '%' || "+arg(likeEscape(f.Q))+" || '%' ESCAPE '\\'")
	}
	if f.Phone != "" {
		p := arg(f.Phone) + "::text"
		conds = append(conds, l+".phone = ANY(ARRAY["+p+", "+brazilVariant(p)+"])")
	}
	if f.Source != "" {
		conds = append(conds, l+".source = "+arg(f.Source))
	}
	if f.Status != "" {
		conds = append(conds, l+".stage = "+arg(f.Status))
	}
	if len(f.Tags) > 0 {
		conds = append(conds, l+".tags @> "+arg(f.Tags)+"::text[]")
	}
	if f.CreatedAfter != nil {
		conds = append(conds, l+".created_at > "+arg(*f.CreatedAfter))
	}
	if f.CreatedBefore != nil {
		conds = append(conds, l+".created_at < "+arg(*f.CreatedBefore))
	}
	if len(conds) == 0 {
		return "TRUE", args
	}
	return strings.Join(conds, " AND "), args
}

// likeEscape quotes LIKE's wildcards (and its escape character) in s.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// brazilVariant is the SQL for the other form of the E.164 digits x when x
// is a Brazilian mobile (with and without the 9th digit: both denote one
// person on WhatsApp), else NULL: phone.BrazilVariants in SQL (a test
// compares them).
func brazilVariant(x string) string {
	return "(CASE WHEN " + x + " LIKE '55%' AND length(" + x + ") = 13 AND substr(" + x + ", 5, 1) = '9' AND substr(" + x +
		", 6, 1) IN ('6', '7', '8', '9') THEN substr(" + x + ", 1, 4) || substr(" + x + ", 6) " +
		"WHEN " + x + " LIKE '55%' AND length(" + x + ") = 12 AND substr(" + x + ", 5, 1) IN ('6', '7', '8', '9') " +
		"THEN substr(" + x + ", 1, 4) || '9' || substr(" + x + ", 5) END)"
}

// BrazilVariantSQL evaluates brazilVariant for phone (tests compare it with
// phone.BrazilVariants); "" when phone has no variant.
func (q LeadQueries) BrazilVariantSQL(ctx context.Context, phone string) (string, error) {
	var v *string
	err := q.db.Pool.QueryRow(ctx, "SELECT "+brazilVariant("$1::text"), phone).Scan(&v)
	if err != nil || v == nil {
		return "", err
	}
	return *v, nil
}

// leadSelect reads LeadRow from leads row l with its message numbers.
var leadSelect = `SELECT l.id, coalesce(l.phone, ''), coalesce(l.lid, ''), l.name, coalesce(` + leadSource("l") + `, ''),
	l.source, l.stage, l.tags, l.fields, l.created_at, l.updated_at, s.n, s.last
FROM leads l
CROSS JOIN LATERAL (
	SELECT count(*) AS n, max(t.sent_at) AS last FROM whatsapp_messages t
	WHERE t.lead_id = l.id AND t.kind NOT IN ` + actionKinds + `
) s`

func scanLeads(rows pgx.Rows) ([]LeadRow, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (LeadRow, error) {
		var l LeadRow
		err := r.Scan(&l.ID, &l.Phone, &l.LID, &l.Name, &l.NameSource, &l.Source, &l.Status, &l.Tags, &l.Fields,
			&l.CreatedAt, &l.UpdatedAt, &l.MessageCount, &l.LastMessageAt)
		if l.Tags == nil {
			l.Tags = []string{}
		}
		if l.Fields == nil {
			l.Fields = map[string]string{}
		}
		return l, err
	})
}

// List returns at most n of mentorado m's leads that f selects, newest
// first (created_at, then id), after the keyset position after (nil: from
// the newest). It walks the index leads_created.
func (q LeadQueries) List(ctx context.Context, m int64, f LeadFilter, after *LeadKeyset, n int) ([]LeadRow, error) {
	cond, args := f.SQL("l", []any{m})
	sql := leadSelect + "\nWHERE l.mentorado_id = $1 AND " + cond
	if after != nil {
		args = append(args, after.CreatedAt, after.ID)
		sql += fmt.Sprintf(" AND (l.created_at, l.id) < ($%d, $%d)", len(args)-1, len(args))
	}
	args = append(args, n)
	sql += fmt.Sprintf("\nORDER BY l.created_at DESC, l.id DESC LIMIT $%d", len(args))
	rows, err := q.db.Pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list leads: %w", err)
	}
	out, err := scanLeads(rows)
	if err != nil {
		return nil, fmt.Errorf("store: list leads: %w", err)
	}
	return out, nil
}

// Get returns mentorado m's lead id (ErrNotFound when m has none with that
// id, another tenant's included).
func (q LeadQueries) Get(ctx context.Context, m, id int64) (LeadRow, error) {
	return getLead(ctx, q.db.Pool, m, id, false)
}

func getLead(ctx context.Context, qr Querier, m, id int64, forUpdate bool) (LeadRow, error) {
	sql := leadSelect + "\nWHERE l.mentorado_id = $1 AND l.id = $2"
	if forUpdate {
		sql += " FOR UPDATE OF l"
	}
	rows, err := qr.Query(ctx, sql, m, id)
	if err != nil {
		return LeadRow{}, fmt.Errorf("store: get lead: %w", err)
	}
	out, err := scanLeads(rows)
	if err != nil {
		return LeadRow{}, fmt.Errorf("store: get lead: %w", err)
	}
	if len(out) == 0 {
		return LeadRow{}, ErrNotFound
	}
	return out[0], nil
}

// LeadInput is a lead the CRM creates. Phone (E.164 digits) or LID
// (<digits>@lid) is required; Source and Status are set (the API fills
// its defaults).
type LeadInput struct {
	Phone, LID     string
	Name           string
	Source, Status string
	Tags           []string
	Fields         map[string]string
}

// LeadExistsError is Create's answer when the person already has a lead:
// the same phone, its 9th-digit variant, or the same LID.
type LeadExistsError struct{ ID int64 }

func (e *LeadExistsError) Error() string { return fmt.Sprintf("store: lead %d exists", e.ID) }

// Create inserts mentorado m's lead in. A name makes name_source crm (never
// replaced by WhatsApp's names). A LID whose phone is known
// (whatsapp_lid_phones) gives the lead that phone too. In the same
// transaction the lead adopts the orphan messages of its person (those of
// its phone and the phone's 9th-digit variant, and LID-only messages of its
// LID or of a LID mapped to those phones; group messages only with the
// mentorado's group_leads on, as the persister links them) and writes its
// updated event. It returns the lead and how many messages it adopted, or
// a *LeadExistsError.
func (q LeadQueries) Create(ctx context.Context, m int64, in LeadInput) (LeadRow, int64, error) {
	var (
		out    LeadRow
		linked int64
	)
	if in.Tags == nil {
		in.Tags = []string{}
	}
	if in.Fields == nil {
		in.Fields = map[string]string{}
	}
	err := q.db.WithMentoradoLock(ctx, m, func(tx pgx.Tx) error {
		if in.Phone == "" {
			err := tx.QueryRow(ctx, sqlLeadLIDPhone, m, in.LID).Scan(&in.Phone)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("store: lead phone of lid: %w", err)
			}
		}
		var existing int64
		switch err := tx.QueryRow(ctx, sqlLeadExisting, m, in.Phone, in.LID).Scan(&existing); {
		case err == nil:
			return &LeadExistsError{ID: existing}
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("store: lead exists: %w", err)
		}
		var id int64
		if err := tx.QueryRow(ctx, sqlLeadInsert, m, in.Phone, in.LID, in.Name, in.Source, in.Status, in.Tags, in.Fields).Scan(&id); err != nil {
			return fmt.Errorf("store: create lead: %w", err)
		}
		tag, err := tx.Exec(ctx, sqlLeadAdopt, m, id, in.Phone, in.LID)
		if err != nil {
			return fmt.Errorf("store: lead adopts its messages: %w", err)
		}
		linked = tag.RowsAffected()
		if err := insertLeadEvent(ctx, tx, m, id, "updated"); err != nil {
			return err
		}
		out, err = getLead(ctx, tx, m, id, false)
		return err
	})
	return out, linked, err
}

// Existing-lead and adoption statements of Create. $1 mentorado, $2 phone
// (” none), $3 LID (” none).
var (
	sqlLeadLIDPhone = `SELECT phone FROM whatsapp_lid_phones WHERE mentorado_id = $1 AND lid = $2`

	sqlLeadExisting = `SELECT l.id FROM leads l WHERE l.mentorado_id = $1 AND (
	($2 <> '' AND l.phone = ANY(ARRAY[$2::text, ` + brazilVariant("$2::text") + `]))
	OR ($3 <> '' AND l.lid = $3)
	OR ($2 <> '' AND l.phone IS NULL AND l.lid IN (SELECT p.lid FROM whatsapp_lid_phones p
		WHERE p.mentorado_id = $1 AND p.phone = ANY(ARRAY[$2::text, ` + brazilVariant("$2::text") + `])))
) ORDER BY l.id LIMIT 1`

	sqlLeadInsert = `INSERT INTO leads (mentorado_id, phone, lid, name, name_source, source, stage, tags, fields)
VALUES ($1, nullif($2, ''), nullif($3, ''), $4, CASE WHEN $4 <> '' THEN 'crm' END, $5, $6, $7, $8)
RETURNING id`

	// $2 the lead, $3 its phone, $4 its LID.
	sqlLeadAdopt = `UPDATE whatsapp_messages t SET lead_id = $2, updated_at = now()
WHERE t.mentorado_id = $1 AND t.lead_id IS NULL AND ` + linkable("t") + ` AND (
	($3 <> '' AND t.phone = ANY(ARRAY[$3::text, ` + brazilVariant("$3::text") + `]))
	OR (t.phone IS NULL AND t.lid IS NOT NULL AND (t.lid = $4 OR t.lid IN (SELECT p.lid FROM whatsapp_lid_phones p
		WHERE p.mentorado_id = $1 AND $3 <> '' AND p.phone = ANY(ARRAY[$3::text, ` + brazilVariant("$3::text") + `]))))
)`
)

// LeadPatch changes a lead's CRM fields; nil fields stay. Fields merge into
// the lead's (a nil value deletes the key), as JSON Merge Patch does.
type LeadPatch struct {
	Name   *string
	Status *string
	Tags   *[]string
	Fields map[string]*string
}

// Update applies p to mentorado m's lead id (ErrNotFound when there is
// none) and returns it as stored. check sees the lead after the patch,
// before it is written, and may refuse it (its error is returned as is):
// the merged fields, say, may exceed a limit. A name set makes name_source
// crm ("" clears the name and leaves naming to WhatsApp again). A patch that
// changes nothing writes nothing and emits no event; otherwise the lead's
// updated event is written with the change.
func (q LeadQueries) Update(ctx context.Context, m, id int64, p LeadPatch, check func(LeadRow) error) (LeadRow, error) {
	var out LeadRow
	err := q.db.WithMentoradoLock(ctx, m, func(tx pgx.Tx) error {
		cur, err := getLead(ctx, tx, m, id, true)
		if err != nil {
			return err
		}
		next := cur
		next.Fields = maps.Clone(cur.Fields)
		if p.Name != nil {
			next.Name = *p.Name
			next.NameSource = ""
			if next.Name != "" {
				next.NameSource = "crm"
			}
		}
		if p.Status != nil {
			next.Status = *p.Status
		}
		if p.Tags != nil {
			next.Tags = *p.Tags
		}
		for k, v := range p.Fields {
			if v == nil {
				delete(next.Fields, k)
			} else {
				next.Fields[k] = *v
			}
		}
		if check != nil {
			if err := check(next); err != nil {
				return err
			}
		}
		if next.Name == cur.Name && next.NameSource == cur.NameSource && next.Status == cur.Status &&
			slices.Equal(next.Tags, cur.Tags) && maps.Equal(next.Fields, cur.Fields) {
			out = cur
			return nil
		}
		if _, err := tx.Exec(ctx, sqlLeadUpdate, m, id, p.Name != nil, next.Name, next.Status, next.Tags, next.Fields); err != nil {
			return fmt.Errorf("store: update lead: %w", err)
		}
		if err := insertLeadEvent(ctx, tx, m, id, "updated"); err != nil {
			return err
		}
		out, err = getLead(ctx, tx, m, id, false)
		return err
	})
	return out, err
}

// sqlLeadUpdate writes a lead's CRM fields. $3: the name was set (then its
// source is crm, or none for ""; its version goes). updated_at moves
// forward by at least a microsecond: it keys the updated event, one per
// change.
var sqlLeadUpdate = `UPDATE leads l SET
	name = CASE WHEN $3 THEN $4 ELSE l.name END,
	name_source = CASE WHEN NOT $3 THEN l.name_source WHEN $4 <> '' THEN 'crm' END,
	name_at = CASE WHEN $3 THEN NULL ELSE l.name_at END,
	name_seq = CASE WHEN $3 THEN 0 ELSE l.name_seq END,
	stage = $5, tags = $6, fields = $7,
	updated_at = greatest(clock_timestamp(), l.updated_at + interval '1 microsecond')
WHERE l.mentorado_id = $1 AND l.id = $2`

// Delete deletes mentorado m's lead id (ErrNotFound when there is none)
// and writes its deleted event. Its messages stay, unlinked (the foreign
// key sets their lead_id to NULL); a later message of the same person
// creates a new lead as usual, which adopts them.
func (q LeadQueries) Delete(ctx context.Context, m, id int64) error {
	return q.db.WithMentoradoLock(ctx, m, func(tx pgx.Tx) error {
		// The event is written first: it reads the lead's row.
		tag, err := tx.Exec(ctx, sqlLeadDeletedEvent, m, id)
		if err != nil {
			return fmt.Errorf("store: lead deleted event: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound // ids are never reused: no event of this lead can exist already
		}
		tag, err = tx.Exec(ctx, `DELETE FROM leads WHERE mentorado_id = $1 AND id = $2`, m, id)
		if err != nil {
			return fmt.Errorf("store: delete lead: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		return notifyLeadEvents(ctx, tx)
	})
}
