package persister

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

const (
	benchBatch  = 500
	benchPeople = 500 // per mentorado
)

// benchEvents builds a realistic mix: 80% inbound text from a pool of
// people (phone + LID, leads found or created), 8% outbound text, 8%
// receipts, 4% contacts, over 10 mentorados.
func benchEvents(tb testing.TB, n int, seed uint64) []Item {
	r := rand.New(rand.NewPCG(seed, 99))
	base := time.Date(2026, 5, 1, 8, 0, 0, 0, time.UTC)
	items := make([]Item, 0, n)
	var sent []string
	for i := range n {
		m := int64(1 + r.IntN(10))
		person := r.IntN(benchPeople)
		ph := fmt.Sprintf("55119%08d", int(m)*100000+person)
		lid := fmt.Sprintf("9%013d@lid", int(m)*100000+person)
		at := base.Add(time.Duration(i) * time.Millisecond)
		id := fmt.Sprintf("B%d%012d", seed, i)
		var env event.Envelope
		switch x := r.IntN(100); {
		case x < 80:
			env = mustEnv(tb, m, event.MessageEventID(m, id), at, &event.Message{WAID: id, ChatJID: ph + "@s.whatsapp.net",
				SenderJID: ph + "@s.whatsapp.net", Phone: ph, LID: lid, PushName: fmt.Sprintf("Pessoa %d", person),
				Direction: event.DirectionIn, Kind: event.KindText, Text: "Olá, quero saber mais sobre a mentoria " + id,
				Timestamp: at, Status: event.MessageReceived})
			sent = append(sent, fmt.Sprintf("%d/%s", m, id))
		case x < 88:
			env = mustEnv(tb, m, event.MessageEventID(m, id), at, &event.Message{WAID: id, ChatJID: ph + "@s.whatsapp.net",
				SenderJID: "5511900000000@s.whatsapp.net", Phone: ph, Direction: event.DirectionOut, Kind: event.KindText,
				Text: "Claro! Te mando os detalhes " + id, Timestamp: at, Status: event.MessageSent})
			sent = append(sent, fmt.Sprintf("%d/%s", m, id))
		case x < 96 && len(sent) > 0:
			var mid int64
			var target string
			_, _ = fmt.Sscanf(sent[len(sent)-1-r.IntN(min(len(sent), 200))], "%d/%s", &mid, &target)
			k := []event.ReceiptKind{event.ReceiptDelivered, event.ReceiptRead}[r.IntN(2)]
			rc := &event.Receipt{MessageIDs: []string{target}, ChatJID: ph + "@s.whatsapp.net", Kind: k, Timestamp: at}
			env = mustEnv(tb, mid, event.ReceiptEventID(mid, k, false, rc.MessageIDs)+id, at, rc)
		default:
			c := &event.Contact{JID: ph + "@s.whatsapp.net", Phone: ph, LID: lid, PushName: fmt.Sprintf("Pessoa %d", person)}
			env = mustEnv(tb, m, event.ContactEventID(m, c, at), at, c)
		}
		items = append(items, item(tb, env, uint64(i+1)))
	}
	return items
}

// BenchmarkApply measures the persister's apply path (decode + one
// transaction per 500 events) against a raw pgx.CopyFrom of the same
// events, one row each, into an equivalent plain table in the same
// database, and reports both rates and their ratio.
//
//	go test -run '^$' -bench Apply -benchtime 200x ./internal/persister/
func BenchmarkApply(b *testing.B) {
	p := newTestPersister(b, 10)
	ctx := context.Background()
	// Warm up: most people already known (leads exist), like a running system.
	applyAll(b, p, benchEvents(b, 4*10*benchPeople, 1), func() int { return benchBatch })
	items := benchEvents(b, b.N*benchBatch, 2)
	rows := make([][]any, len(items))
	for i, it := range items {
		env, pl, err := event.Decode(it.Data)
		if err != nil {
			b.Fatal(err)
		}
		row := []any{env.MentoradoID, fmt.Sprintf("%s#%d", env.ID, i), "", "", "", "", "", "in", string(env.Type), "", "", int16(1), env.OccurredAt}
		switch x := pl.(type) {
		case *event.Message:
			row = []any{env.MentoradoID, x.WAID, x.ChatJID, x.SenderJID, x.Phone, x.LID, x.PushName, string(x.Direction),
				string(x.Kind), x.Text, string(x.Status), int16(x.Status.Rank()), x.Timestamp}
		case *event.Contact:
			row[2], row[4], row[5], row[6] = x.JID, x.Phone, x.LID, x.PushName
		case *event.Receipt:
			row[2], row[10] = x.ChatJID, string(x.Kind)
		}
		rows[i] = row
	}
	// Half the batches through Apply (decode included), half pre-decoded
	// (as the consumer loop can decode the next batch while the current one
	// is written).
	half := len(items) / 2 / benchBatch * benchBatch
	var pre []*Decoded
	for i := half; i < len(items); i += benchBatch {
		pre = append(pre, Decode(items[i:min(i+benchBatch, len(items))]))
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < half; i += benchBatch {
		if _, err := p.Apply(ctx, items[i:i+benchBatch]); err != nil {
			b.Fatal(err)
		}
	}
	fullDur := time.Since(start)
	start = time.Now()
	for _, d := range pre {
		if _, err := p.ApplyDecoded(ctx, d); err != nil {
			b.Fatal(err)
		}
	}
	preDur := time.Since(start)
	b.StopTimer()

	// The same rows, one per event, by raw COPY: into a table like
	// whatsapp_messages (same columns, indexes and unique keys; no foreign
	// keys) and into a bare table without any index.
	cols := []string{"mentorado_id", "wa_message_id", "chat_jid", "sender_jid", "phone", "lid", "push_name", "direction",
		"kind", "body", "status", "status_rank", "sent_at"}
	copyRate := func(table, ddl string) float64 {
		if _, err := p.db.Pool.Exec(ctx, ddl); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := 0; i < len(rows); i += benchBatch {
			if _, err := p.db.Pool.CopyFrom(ctx, pgx.Identifier{table}, cols,
				pgx.CopyFromRows(rows[i:min(i+benchBatch, len(rows))])); err != nil {
				b.Fatal(err)
			}
		}
		return float64(len(rows)) / time.Since(start).Seconds()
	}
	likeRate := copyRate("bench_like", `CREATE TABLE bench_like (LIKE whatsapp_messages INCLUDING ALL)`)
	bareRate := copyRate("bench_bare", `CREATE TABLE bench_bare (mentorado_id bigint, wa_message_id text, chat_jid text,
		sender_jid text, phone text, lid text, push_name text, direction text, kind text, body text, status text,
		status_rank smallint, sent_at timestamptz)`)
	fullRate := float64(half) / fullDur.Seconds()
	applyRate := float64(len(items)-half) / preDur.Seconds()
	b.ReportMetric(fullRate, "events/s")
	b.ReportMetric(applyRate, "predecoded-events/s")
	b.ReportMetric(likeRate, "copy-rows/s")
	b.ReportMetric(applyRate/likeRate, "ratio")
	b.ReportMetric(applyRate/bareRate, "ratio-bare")
	b.Logf("%d events, batches of %d: Apply (decode included) %.0f events/s; pre-decoded %.0f events/s"+
		" | raw CopyFrom of the same rows into a whatsapp_messages-like table (same indexes, no FKs): %.0f rows/s, ratio %.2f (%.2f with decode)"+
		" | into a bare table without indexes: %.0f rows/s, ratio %.2f",
		len(items), benchBatch, fullRate, applyRate, likeRate, applyRate/likeRate, fullRate/likeRate, bareRate, applyRate/bareRate)
}

// BenchmarkEndToEnd measures the whole path: events already stored in
// WA_EVENTS (embedded JetStream), a persister consuming them with the
// default configuration, until the durable consumer's ack floor reaches
// the last event.
//
//	go test -run '^$' -bench EndToEnd -benchtime 200x ./internal/persister/
func BenchmarkEndToEnd(b *testing.B) {
	db := openDB(b, 10)
	bs := newBus(b, testenv.NATS(b))
	warm, err := New(Config{}, db, nil, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	applyAll(b, warm, benchEvents(b, 4*10*benchPeople, 1), func() int { return benchBatch })
	items := benchEvents(b, b.N*benchBatch, 2)
	ops := make([]genOp, len(items))
	for i, it := range items {
		env, _, err := event.Decode(it.Data)
		if err != nil {
			b.Fatal(err)
		}
		ops[i] = genOp{env: env}
	}
	stored := publish(b, bs, ops, false)
	last := stored[len(stored)-1].Seq
	p, err := New(Config{}, db, bs, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	t0 := time.Now()
	r := start(b, p)
	waitDrained(b, bs, "persister", last, 5*time.Minute)
	dur := time.Since(t0)
	b.StopTimer()
	r.stop(b)
	rate := float64(len(stored)) / dur.Seconds()
	b.ReportMetric(rate, "events/s")
	b.Logf("end to end through JetStream: %d events in %s: %.0f events/s", len(stored), dur.Round(time.Millisecond), rate)
}
