package store_test

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zapbus/zapbus/internal/store"
	"github.com/zapbus/zapbus/internal/testenv"
)

func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func exec(t *testing.T, db *store.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// TestModelsMatchSchema: every bun model selects every one of its columns
// from the migrated table, and the table has no column the model lacks.
func TestModelsMatchSchema(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	for _, m := range store.Models() {
		table := db.Bun.Table(reflect.TypeOf(m).Elem())
		row := reflect.New(reflect.TypeOf(m).Elem()).Interface()
		if err := db.Bun.NewSelect().Model(row).Limit(1).Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("%s: %v", table.Name, err)
		}
		var cols []string
		rows, err := db.Pool.Query(ctx, `SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY column_name`, table.Name)
		if err != nil {
			t.Fatal(err)
		}
		cols, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		var fields []string
		for name := range table.FieldMap { // with scan-only (generated) columns
			fields = append(fields, name)
		}
		slices.Sort(fields)
		if !slices.Equal(cols, fields) {
			t.Errorf("%s: table has %v, model %v", table.Name, cols, fields)
		}
	}
}

func TestMentoradoQueries(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	q := db.Mentorados()
	id, err := q.Create(ctx, "Ana", []byte("h1"))
	if err != nil || id <= 0 {
		t.Fatalf("create: %d %v", id, err)
	}
	id2, err := q.Create(ctx, "Bia", []byte("h2"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := q.Get(ctx, id)
	if err != nil || m.Name != "Ana" || m.WAStatus != "disconnected" || m.TokenCreatedAt == nil || m.WAPhone != nil || m.DisabledAt != nil {
		t.Fatalf("get: %+v %v", m, err)
	}
	if m.TokenHash != nil {
		t.Fatalf("get read the token hash")
	}
	if _, err := q.Get(ctx, id2+100); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if got, dis, err := q.ByTokenHash(ctx, []byte("h1")); got != id || dis || err != nil {
		t.Fatalf("by token: %d %v %v", got, dis, err)
	}
	if _, _, err := q.ByTokenHash(ctx, []byte("nope")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("by unknown token: %v", err)
	}
	old, err := q.RotateToken(ctx, id, []byte("h1b"))
	if err != nil || string(old) != "h1" {
		t.Fatalf("rotate: %q %v", old, err)
	}
	if _, err := q.RotateToken(ctx, id2+100, []byte("x")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rotate missing: %v", err)
	}
	if h, dis, err := q.TokenHash(ctx, id); string(h) != "h1b" || dis || err != nil {
		t.Fatalf("token hash: %q %v %v", h, dis, err)
	}
	// Disable keeps the first disabled_at; enable clears it.
	if err := q.Disable(ctx, id); err != nil {
		t.Fatal(err)
	}
	first, _ := q.Get(ctx, id)
	if err := q.Disable(ctx, id); err != nil {
		t.Fatal(err)
	}
	again, _ := q.Get(ctx, id)
	if first.DisabledAt == nil || !again.DisabledAt.Equal(*first.DisabledAt) {
		t.Fatalf("disable twice: %v then %v", first.DisabledAt, again.DisabledAt)
	}
	if _, dis, _ := q.ByTokenHash(ctx, []byte("h1b")); !dis {
		t.Fatal("disabled mentorado's token reads enabled")
	}
	if ex, dis, err := q.Check(ctx, id); !ex || !dis || err != nil {
		t.Fatalf("check disabled: %v %v %v", ex, dis, err)
	}
	if ex, dis, err := q.Check(ctx, id2+100); ex || dis || err != nil {
		t.Fatalf("check missing: %v %v %v", ex, dis, err)
	}
	hashes, err := q.EnabledTokenHashes(ctx, []int64{id, id2, id2 + 100})
	if err != nil || len(hashes) != 1 || string(hashes[id2]) != "h2" {
		t.Fatalf("enabled hashes: %v %v", hashes, err)
	}
	if err := q.Enable(ctx, id); err != nil {
		t.Fatal(err)
	}
	if m, _ := q.Get(ctx, id); m.DisabledAt != nil {
		t.Fatal("enable left disabled_at")
	}
	for _, f := range []func(context.Context, int64) error{q.Disable, q.Enable} {
		if err := f(ctx, id2+100); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("disable/enable missing: %v", err)
		}
	}
	// Keyset listing by id.
	id3, _ := q.Create(ctx, "Caio", nil)
	page, err := q.List(ctx, 0, 2)
	if err != nil || len(page) != 2 || page[0].ID != id || page[1].ID != id2 {
		t.Fatalf("list: %+v %v", page, err)
	}
	page, err = q.List(ctx, id2, 2)
	if err != nil || len(page) != 1 || page[0].ID != id3 {
		t.Fatalf("list after: %+v %v", page, err)
	}
	if h, _, err := q.TokenHash(ctx, id3); h != nil || err != nil {
		t.Fatalf("token hash of a tenant without token: %q %v", h, err)
	}
	// Status before and after a status event.
	st, err := q.Status(ctx, id)
	if err != nil || st.Status != "disconnected" || st.Phone != nil || st.Since == nil || !st.Since.Equal(m.CreatedAt) {
		t.Fatalf("status: %+v %v", st, err)
	}
	if s, at, err := q.StatusVersion(ctx, id); s != "disconnected" || at != nil || err != nil {
		t.Fatalf("status version: %q %v %v", s, at, err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	exec(t, db, `UPDATE mentorados SET wa_status = 'connected', wa_phone = '5511', wa_status_at = $2 WHERE id = $1`, id, at)
	st, _ = q.Status(ctx, id)
	if st.Status != "connected" || *st.Phone != "5511" || st.Reason != nil || !st.Since.Equal(at) {
		t.Fatalf("status: %+v", st)
	}
	if _, err := q.Status(ctx, id2+100); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("status missing: %v", err)
	}
	if _, _, err := q.StatusVersion(ctx, id2+100); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("status version missing: %v", err)
	}
	// Delete cascades.
	exec(t, db, `INSERT INTO wa_devices (mentorado_id) VALUES ($1)`, id)
	if err := q.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM wa_devices`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("devices after delete: %d %v", n, err)
	}
	if err := q.Delete(ctx, id); err != nil {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestDeviceQueries(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	a, _ := db.Mentorados().Create(ctx, "a", nil)
	b, _ := db.Mentorados().Create(ctx, "b", nil)
	d := db.Devices()
	if st, found, err := d.Get(ctx, a); found || err != nil || st != (store.DeviceState{}) {
		t.Fatalf("get none: %+v %v %v", st, found, err)
	}
	if ph, err := d.Phone(ctx, a); ph != "" || err != nil {
		t.Fatalf("phone none: %q %v", ph, err)
	}
	if err := d.SetDesired(ctx, a, store.DesiredConnected); err != nil {
		t.Fatal(err)
	}
	if st, found, _ := d.Get(ctx, a); !found || st.Desired != store.DesiredConnected || st.JID != "" {
		t.Fatalf("get desired: %+v", st)
	}
	// Not paired yet: not restored.
	if ids, err := d.WantConnected(ctx); len(ids) != 0 || err != nil {
		t.Fatalf("want connected: %v %v", ids, err)
	}
	if err := d.Paired(ctx, a, "5511@s.whatsapp.net", "5511"); err != nil {
		t.Fatal(err)
	}
	if err := d.Paired(ctx, b, "5522@s.whatsapp.net", "5522"); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := d.Get(ctx, a); st != (store.DeviceState{JID: "5511@s.whatsapp.net", Phone: "5511", Desired: "connected"}) {
		t.Fatalf("get paired: %+v", st)
	}
	if ph, _ := d.Phone(ctx, a); ph != "5511" {
		t.Fatalf("phone: %q", ph)
	}
	if ids, _ := d.WantConnected(ctx); !slices.Equal(ids, []int64{a, b}) {
		t.Fatalf("want connected: %v", ids)
	}
	if owner, taken, err := d.PhoneOwner(ctx, "5511", b); owner != a || !taken || err != nil {
		t.Fatalf("phone owner: %d %v %v", owner, taken, err)
	}
	if _, taken, _ := d.PhoneOwner(ctx, "5511", a); taken {
		t.Fatal("own phone taken")
	}
	// A disabled mentorado reads as disconnected and is not restored.
	if err := db.Mentorados().Disable(ctx, b); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := d.Get(ctx, b); st.Desired != store.DesiredDisconnected {
		t.Fatalf("disabled desired: %+v", st)
	}
	if ids, _ := d.WantConnected(ctx); !slices.Equal(ids, []int64{a}) {
		t.Fatalf("want connected with b disabled: %v", ids)
	}
	if err := d.Delete(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := d.Get(ctx, a); found {
		t.Fatal("deleted device found")
	}
	// The same queries run in a transaction.
	err := db.InTx(ctx, func(tx pgx.Tx) error {
		return store.DevicesOn(tx).SetDesired(ctx, a, store.DesiredDisconnected)
	})
	if st, found, _ := d.Get(ctx, a); err != nil || !found || st.Desired != store.DesiredDisconnected {
		t.Fatalf("set in tx: %+v %v", st, err)
	}
}

// seedMessage inserts one message row the way the persister would.
func seedMessage(t *testing.T, db *store.DB, w store.MessageWrite) {
	t.Helper()
	a := store.NewMessageArrays(1)
	a.Add(&w)
	exec(t, db, store.MessagesInsertSQL, a.Args()...)
}

func ptr[T any](v T) *T { return &v }

func TestMessageQueries(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	msg := func(id, phone string, at time.Duration, dir, kind string, rank int16) store.MessageWrite {
		return store.MessageWrite{MentoradoID: m, WAMessageID: id, ChatJID: phone + "@s.whatsapp.net", SenderJID: "s",
			Phone: ptr(phone), PushName: "P" + phone, Direction: dir, Kind: kind, Body: "body " + id,
			Status: "received", StatusRank: rank, SentAt: base.Add(at)}
	}
	exec(t, db, `INSERT INTO whatsapp_contacts (mentorado_id, jid, phone, push_name) VALUES ($1, '5522@s.whatsapp.net', '5522', 'Contact B')`, m)
	seedMessage(t, db, msg("a1", "5511", 1*time.Minute, "in", "text", 1))
	seedMessage(t, db, msg("a2", "5511", 2*time.Minute, "in", "text", 3))
	seedMessage(t, db, msg("a3", "5511", 3*time.Minute, "in", "text", 1))
	seedMessage(t, db, msg("b1", "5522", 4*time.Minute, "out", "text", 1))
	seedMessage(t, db, msg("c1", "5533", 5*time.Minute, "in", "text", 1))
	react := msg("r1", "5533", 6*time.Minute, "in", "reaction", 1)
	react.TargetID = ptr("c1")
	seedMessage(t, db, react)
	// The lead comes after its messages: they are orphans until linked.
	exec(t, db, `INSERT INTO leads (mentorado_id, phone, name) VALUES ($1, '5511', 'Lead A')`, m)

	q := db.Messages()
	convs, err := q.Conversations(ctx, m, nil, 2)
	if err != nil || len(convs) != 2 {
		t.Fatalf("conversations: %+v %v", convs, err)
	}
	if c := convs[0]; c.Last.WAMessageID != "c1" || c.Unread != 1 || c.LeadID != nil || c.Name != "P5533" || c.Last.Phone != "5533" {
		t.Fatalf("first conversation: %+v", c)
	}
	if c := convs[1]; c.Last.WAMessageID != "b1" || c.Unread != 0 || c.Name != "Contact B" {
		t.Fatalf("second conversation: %+v", c)
	}
	next, err := q.Conversations(ctx, m, &store.Keyset{SentAt: convs[1].Last.SentAt, ID: convs[1].Last.ID}, 2)
	if err != nil || len(next) != 1 {
		t.Fatalf("next page: %+v %v", next, err)
	}
	if c := next[0]; c.Last.WAMessageID != "a3" || c.Unread != 2 || c.LeadID == nil || c.Name != "Lead A" {
		t.Fatalf("third conversation: %+v", c)
	}
	leadA := *next[0].LeadID

	msgs, err := q.Conversation(ctx, m, "5511", nil, 2)
	if err != nil || len(msgs) != 2 || msgs[0].WAMessageID != "a3" || msgs[1].WAMessageID != "a2" {
		t.Fatalf("conversation: %+v %v", msgs, err)
	}
	if r := msgs[0]; r.Body != "body a3" || r.LID != "" || r.TargetID != "" || r.Direction != "in" || !r.SentAt.Equal(base.Add(3*time.Minute)) {
		t.Fatalf("message row: %+v", r)
	}
	// The lead was created after the messages: the insert found none.
	if msgs[0].LeadID != nil {
		t.Fatalf("lead linked early: %v", *msgs[0].LeadID)
	}
	more, _ := q.Conversation(ctx, m, "5511", &store.Keyset{SentAt: msgs[1].SentAt, ID: msgs[1].ID}, 2)
	if len(more) != 1 || more[0].WAMessageID != "a1" {
		t.Fatalf("conversation next page: %+v", more)
	}
	if rs, _ := q.Conversation(ctx, m, "5533", nil, 10); len(rs) != 1 {
		t.Fatalf("reactions listed: %+v", rs)
	}
	n, err := q.LinkOrphans(ctx, m)
	if err != nil || n != 3 {
		t.Fatalf("link orphans: %d %v", n, err)
	}
	msgs, _ = q.Conversation(ctx, m, "5511", nil, 10)
	for _, r := range msgs {
		if r.LeadID == nil || *r.LeadID != leadA {
			t.Fatalf("not linked: %+v", r)
		}
	}
	if n, _ := q.LinkOrphans(ctx, m); n != 0 {
		t.Fatalf("link orphans again: %d", n)
	}
}

func TestClearWhatsAppData(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	other, _ := db.Mentorados().Create(ctx, "o", nil)
	for _, id := range []int64{m, other} {
		seedMessage(t, db, store.MessageWrite{MentoradoID: id, WAMessageID: "x", ChatJID: "c", SenderJID: "s",
			Direction: "in", Kind: "text", Status: "received", StatusRank: 1, SentAt: time.Now()})
		exec(t, db, `INSERT INTO whatsapp_pending_receipts (mentorado_id, wa_message_id, status, status_rank) VALUES ($1, 'y', 'read', 3)`, id)
		exec(t, db, `INSERT INTO whatsapp_pending_media (mentorado_id, wa_message_id, state, state_rank) VALUES ($1, 'y', 'stored', 2)`, id)
		exec(t, db, `INSERT INTO whatsapp_lid_phones (mentorado_id, lid, phone) VALUES ($1, 'l@lid', '5511')`, id)
		exec(t, db, `INSERT INTO whatsapp_groups (mentorado_id, jid, subject) VALUES ($1, '1203@g.us', 'Turma')`, id)
		exec(t, db, `INSERT INTO whatsapp_contacts (mentorado_id, jid) VALUES ($1, 'j')`, id)
		exec(t, db, `INSERT INTO leads (mentorado_id, phone) VALUES ($1, '5511')`, id)
		exec(t, db, `INSERT INTO leads (mentorado_id, phone, source) VALUES ($1, '5522', 'crm')`, id)
	}
	got, err := db.ClearWhatsAppData(ctx, m)
	if err != nil || got != (store.Cleared{Messages: 1, Contacts: 1, Leads: 1}) {
		t.Fatalf("clear: %+v %v", got, err)
	}
	for table, want := range map[string][2]int{
		"whatsapp_messages": {0, 1}, "whatsapp_pending_receipts": {0, 1}, "whatsapp_pending_media": {0, 1}, "whatsapp_lid_phones": {0, 1},
		"whatsapp_groups": {0, 1}, "whatsapp_contacts": {0, 1}, "leads": {1, 2},
	} {
		for i, id := range []int64{m, other} {
			var n int
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM `+table+` WHERE mentorado_id = $1`, id).Scan(&n); err != nil || n != want[i] {
				t.Errorf("%s of %d: %d rows, want %d (%v)", table, id, n, want[i], err)
			}
		}
	}
}

// TestClearWaitsForTenantLock: clear-data serialises with a persister
// batch of the same mentorado (store.LockMentorado).
func TestClearWaitsForTenantLock(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := store.LockMentorado(ctx, tx, m); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.ClearWhatsAppData(ctx, m)
		done <- err
	}()
	testenv.Eventually(t, 10*time.Second, func() bool {
		var waiting int
		_ = db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND NOT granted`,
			store.MentoradoLockClass).Scan(&waiting)
		return waiting == 1
	}, "clear-data did not wait for the tenant lock")
	select {
	case err := <-done:
		t.Fatalf("clear-data finished under the lock: %v", err)
	default:
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestLockClassInSQL(t *testing.T) {
	if !strings.Contains(store.LockMentoradosSQL, "pg_advisory_xact_lock("+strconv.Itoa(store.MentoradoLockClass)+",") {
		t.Fatalf("lock statement does not use MentoradoLockClass: %s", store.LockMentoradosSQL)
	}
}

// TestMessageColumnsOneOrder: the statement's parameters (MessageArrays)
// and a COPY row (MessageWrite.Values) follow MessageColumns, and both
// write the same row.
func TestMessageColumnsOneOrder(t *testing.T) {
	w := store.MessageWrite{MentoradoID: 7, WAMessageID: "id", ChatJID: "chat", SenderJID: "sender", Phone: ptr("5511"),
		LID: ptr("l@lid"), PushName: "push", Direction: "in", Kind: "text", Body: "body", Caption: "cap",
		ReplyToID: ptr("r"), TargetID: ptr("t"), Status: "read", StatusRank: 3, LeadID: ptr(int64(9)),
		SentAt:  time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		MediaID: ptr(strings.Repeat("ab", 32)), MediaMIME: ptr("image/jpeg"), MediaSize: ptr(int64(1234)), MediaFileName: ptr("a.jpg"),
		MediaSeconds: ptr(int32(3)), MediaWidth: ptr(int32(640)), MediaHeight: ptr(int32(480)), MediaRound: true,
		MediaThumbnail: []byte{0xff, 0xd8, 0xff}, MediaState: ptr("pending")}
	vals := w.Values()
	a := store.NewMessageArrays(1)
	a.Add(&w)
	args := a.Args()
	if len(vals) != len(store.MessageColumns) || len(args) != len(store.MessageColumns) {
		t.Fatalf("%d values, %d args, %d columns", len(vals), len(args), len(store.MessageColumns))
	}
	for i := range args {
		if el := reflect.ValueOf(args[i]).Index(0).Interface(); !reflect.DeepEqual(el, vals[i]) {
			t.Errorf("column %s: parameter %v, COPY value %v", store.MessageColumns[i], el, vals[i])
		}
	}
	if !strings.Contains(store.MessagesInsertSQL, "$"+strconv.Itoa(len(store.MessageColumns))+"::") ||
		strings.Contains(store.MessagesInsertSQL, "$"+strconv.Itoa(len(store.MessageColumns)+1)) {
		t.Fatalf("insert does not take one parameter per column:\n%s", store.MessagesInsertSQL)
	}

	db := openStore(t)
	ctx := context.Background()
	m, _ := db.Mentorados().Create(ctx, "m", nil)
	var lead int64
	if err := db.Pool.QueryRow(ctx, `INSERT INTO leads (mentorado_id, phone) VALUES ($1, '5511') RETURNING id`, m).Scan(&lead); err != nil {
		t.Fatal(err)
	}
	w.MentoradoID, w.LeadID = m, &lead
	a = store.NewMessageArrays(1)
	a.Add(&w)
	exec(t, db, store.MessagesInsertSQL, a.Args()...)
	w.WAMessageID = "copied"
	if _, err := db.Pool.CopyFrom(ctx, pgx.Identifier{"whatsapp_messages"}, store.MessageColumns, pgx.CopyFromRows([][]any{w.Values()})); err != nil {
		t.Fatal(err)
	}
	cols := strings.Join(store.MessageColumns[2:], ", ")
	var same bool
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT row(`+cols+`) FROM whatsapp_messages WHERE wa_message_id = 'id')::text =
		(SELECT row(`+cols+`) FROM whatsapp_messages WHERE wa_message_id = 'copied')::text`).Scan(&same); err != nil || !same {
		t.Fatalf("insert and COPY wrote different rows (%v)", err)
	}
	// The upsert of a stored message only raises its status.
	w.WAMessageID, w.Status, w.StatusRank, w.Body = "id", "played", 4, "changed"
	a = store.NewMessageArrays(1)
	a.Add(&w)
	exec(t, db, store.MessagesUpsertSQL, a.Args()...)
	var status, body string
	if err := db.Pool.QueryRow(ctx, `SELECT status, body FROM whatsapp_messages WHERE wa_message_id = 'id'`).Scan(&status, &body); err != nil {
		t.Fatal(err)
	}
	if status != "played" || body != "body" {
		t.Fatalf("upsert: status %q body %q", status, body)
	}
}

func TestWhatsmeowDeleteDevice(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	// Stand-ins for whatsmeow's tables, which its sqlstore creates.
	exec(t, db, `CREATE TABLE whatsmeow_device (jid text PRIMARY KEY)`)
	exec(t, db, `CREATE TABLE whatsmeow_privacy_tokens (our_jid text, their_jid text)`)
	for _, j := range []string{"a@s.whatsapp.net", "b@s.whatsapp.net"} {
		exec(t, db, `INSERT INTO whatsmeow_device VALUES ($1)`, j)
		exec(t, db, `INSERT INTO whatsmeow_privacy_tokens VALUES ($1, 'x')`, j)
	}
	if err := db.Whatsmeow().DeleteDevice(ctx, "a@s.whatsapp.net"); err != nil {
		t.Fatal(err)
	}
	var devs, toks int
	if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM whatsmeow_device), (SELECT count(*) FROM whatsmeow_privacy_tokens)`).
		Scan(&devs, &toks); err != nil || devs != 1 || toks != 1 {
		t.Fatalf("left %d devices, %d tokens (%v)", devs, toks, err)
	}
}

func TestWithSessionLock(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	const key = 0x7a6170746573
	held := 0
	err := db.WithSessionLock(ctx, key, func() error {
		return db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
			AND ((classid::bigint << 32) | objid::bigint) = $1`, int64(key)).Scan(&held)
	})
	if err != nil || held != 1 {
		t.Fatalf("lock held %d times inside: %v", held, err)
	}
	if err := db.WithSessionLock(ctx, key, func() error { return nil }); err != nil {
		t.Fatalf("lock not released: %v", err)
	}
}
