package persister

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
)

// Outbox statuses (issue #14): a send queued, then sent, expired or failed.

// outMsg is mentorado 1's outbound text with WhatsApp id id to phone ph,
// with status st, as the connector publishes it (queued, expired and
// failed under event.OutboxEventID, sent under event.MessageEventID).
func outMsg(t testing.TB, id, ph string, st event.MessageStatus, reason string, at time.Time) event.Envelope {
	t.Helper()
	evID := event.MessageEventID(1, id)
	if st == event.MessageQueued || st == event.MessageExpired || st == event.MessageFailed {
		evID = event.OutboxEventID(1, id, st)
	}
	return mustEnv(t, 1, evID, at, &event.Message{WAID: id, ChatJID: ph + "@s.whatsapp.net",
		SenderJID: "5511987654321@s.whatsapp.net", Phone: ph, Direction: event.DirectionOut, Kind: event.KindText,
		Text: "Oi Ana, sua vaga está confirmada.", Timestamp: at, Status: st, ClientID: "order-" + id, StatusReason: reason})
}

// applyBatches applies each batch (events in stream order) in its own
// transaction, numbering stream sequences from *seq.
func applyBatches(t testing.TB, p *Persister, seq *uint64, batches ...[]event.Envelope) {
	t.Helper()
	for _, b := range batches {
		var items []Item
		for _, e := range b {
			*seq++
			items = append(items, item(t, e, *seq))
		}
		poison, err := p.Apply(context.Background(), items)
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		for i, e := range poison {
			if e != nil {
				t.Fatalf("event %d poison: %v", i, e)
			}
		}
	}
}

// msgState is a stored message as these tests compare it: status/rank,
// reason, chat_jid, phone, chat, the phone of its lead, sent_at (unix s).
func msgState(t testing.TB, p *Persister, id string) string {
	t.Helper()
	var s string
	err := p.db.Pool.QueryRow(context.Background(), `SELECT t.status || '/' || t.status_rank || '|' || coalesce(t.status_reason, '-') || '|' ||
		t.chat_jid || '|' || coalesce(t.phone, '-') || '|' || t.chat || '|' || coalesce(l.phone, '-') || '|' || extract(epoch FROM t.sent_at)::bigint
		FROM whatsapp_messages t LEFT JOIN leads l ON l.id = t.lead_id WHERE t.mentorado_id = 1 AND t.wa_message_id = $1`, id).Scan(&s)
	if err != nil {
		t.Fatalf("message %s: %v", id, err)
	}
	return s
}

// TestOutboxStatuses: a queued send, sent to the JID its number resolved
// to (the Brazilian 9th digit: queued to 55 11 9xxxx-xxxx, sent to the
// 8-digit account), ends sent with the sent event's chat, phone, lead and
// time, in every order and batch split the stream may deliver them;
// expired and failed keep their reason and are terminal.
func TestOutboxStatuses(t *testing.T) {
	p := newTestPersister(t, 1)
	ctx := context.Background()
	const queuedTo, sentTo = "5511912345678", "551112345678"
	// Both numbers have a lead, so the lead link visibly moves.
	if _, err := p.db.Pool.Exec(ctx, `INSERT INTO leads (mentorado_id, phone, name) VALUES (1, $1, 'nine'), (1, $2, 'eight')`, queuedTo, sentTo); err != nil {
		t.Fatal(err)
	}
	queuedAt := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	sentAt := queuedAt.Add(90 * time.Second)
	wantSent := fmt.Sprintf("sent/1|-|%s@s.whatsapp.net|%s|%s@s.whatsapp.net|%s|%d", sentTo, sentTo, sentTo, sentTo, sentAt.Unix())
	var seq uint64

	orders := []struct {
		name    string
		batches func(q, s event.Envelope) [][]event.Envelope
	}{
		{"queued then sent, two batches", func(q, s event.Envelope) [][]event.Envelope { return [][]event.Envelope{{q}, {s}} }},
		{"queued then sent, one batch", func(q, s event.Envelope) [][]event.Envelope { return [][]event.Envelope{{q, s}} }},
		{"sent then queued (redelivery), two batches", func(q, s event.Envelope) [][]event.Envelope { return [][]event.Envelope{{s}, {q}} }},
		{"sent then queued (redelivery), one batch", func(q, s event.Envelope) [][]event.Envelope { return [][]event.Envelope{{s, q}} }},
		{"queued, sent, queued again, sent again", func(q, s event.Envelope) [][]event.Envelope {
			return [][]event.Envelope{{q}, {s}, {q, s}, {q}}
		}},
	}
	for i, o := range orders {
		t.Run(o.name, func(t *testing.T) {
			id := fmt.Sprintf("3EB0ORDER%02d", i)
			q := outMsg(t, id, queuedTo, event.MessageQueued, "", queuedAt)
			s := outMsg(t, id, sentTo, event.MessageSent, "", sentAt)
			applyBatches(t, p, &seq, o.batches(q, s)...)
			if got := msgState(t, p, id); got != wantSent {
				t.Fatalf("got  %s\nwant %s", got, wantSent)
			}
		})
	}

	t.Run("queued alone stays queued on the queued number", func(t *testing.T) {
		applyBatches(t, p, &seq, []event.Envelope{outMsg(t, "3EB0ALONE", queuedTo, event.MessageQueued, "", queuedAt)})
		want := fmt.Sprintf("queued/0|-|%s@s.whatsapp.net|%s|%s@s.whatsapp.net|%s|%d", queuedTo, queuedTo, queuedTo, queuedTo, queuedAt.Unix())
		if got := msgState(t, p, "3EB0ALONE"); got != want {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})

	t.Run("receipts move a sent send forward only", func(t *testing.T) {
		id := "3EB0RCPT"
		rc := func(k event.ReceiptKind) event.Envelope {
			return mustEnv(t, 1, "rc-"+id+"-"+string(k), sentAt, &event.Receipt{MessageIDs: []string{id}, ChatJID: sentTo + "@s.whatsapp.net", Kind: k, Timestamp: sentAt})
		}
		q := outMsg(t, id, queuedTo, event.MessageQueued, "", queuedAt)
		s := outMsg(t, id, sentTo, event.MessageSent, "", sentAt)
		applyBatches(t, p, &seq, []event.Envelope{q}, []event.Envelope{s, rc(event.ReceiptDelivered)}, []event.Envelope{rc(event.ReceiptRead)})
		want := fmt.Sprintf("read/3|-|%s@s.whatsapp.net|%s|%s@s.whatsapp.net|%s|%d", sentTo, sentTo, sentTo, sentTo, sentAt.Unix())
		if got := msgState(t, p, id); got != want {
			t.Fatalf("after read: got  %s\nwant %s", got, want)
		}
		// Redelivered older events change nothing.
		applyBatches(t, p, &seq, []event.Envelope{s, q, rc(event.ReceiptDelivered)})
		if got := msgState(t, p, id); got != want {
			t.Fatalf("after redelivery: got  %s\nwant %s", got, want)
		}
	})

	t.Run("a receipt before the sent event waits for it", func(t *testing.T) {
		for i, batches := range [][][]event.Envelope{nil, nil, nil} {
			id := fmt.Sprintf("3EB0EARLY%d", i)
			q := outMsg(t, id, queuedTo, event.MessageQueued, "", queuedAt)
			s := outMsg(t, id, sentTo, event.MessageSent, "", sentAt)
			rc := mustEnv(t, 1, "rc-"+id, sentAt, &event.Receipt{MessageIDs: []string{id}, ChatJID: sentTo + "@s.whatsapp.net", Kind: event.ReceiptDelivered, Timestamp: sentAt})
			switch i {
			case 0: // three batches
				batches = [][]event.Envelope{{q}, {rc}, {s}}
			case 1: // queued and the receipt in one batch
				batches = [][]event.Envelope{{q, rc}, {s}}
			case 2: // then the queued event again with the sent one
				batches = [][]event.Envelope{{q}, {rc, q}, {q, s}}
			}
			applyBatches(t, p, &seq, batches[:len(batches)-1]...)
			wantQueued := fmt.Sprintf("queued/0|-|%s@s.whatsapp.net|%s|%s@s.whatsapp.net|%s|%d", queuedTo, queuedTo, queuedTo, queuedTo, queuedAt.Unix())
			if got := msgState(t, p, id); got != wantQueued {
				t.Fatalf("order %d before the sent event: got  %s\nwant %s", i, got, wantQueued)
			}
			applyBatches(t, p, &seq, batches[len(batches)-1])
			want := fmt.Sprintf("delivered/2|-|%s@s.whatsapp.net|%s|%s@s.whatsapp.net|%s|%d", sentTo, sentTo, sentTo, sentTo, sentAt.Unix())
			if got := msgState(t, p, id); got != want {
				t.Fatalf("order %d: got  %s\nwant %s", i, got, want)
			}
			var pending int
			if err := p.db.Pool.QueryRow(ctx, `SELECT count(*) FROM whatsapp_pending_receipts WHERE wa_message_id = $1`, id).Scan(&pending); err != nil || pending != 0 {
				t.Fatalf("order %d: %d pending receipts left (%v)", i, pending, err)
			}
		}
	})

	for _, tc := range []struct {
		st     event.MessageStatus
		reason string
	}{{event.MessageExpired, "ttl_expired"}, {event.MessageFailed, "disconnected_by_user"}} {
		t.Run(string(tc.st)+" is terminal with its reason", func(t *testing.T) {
			id := "3EB0" + string(tc.st)
			q := outMsg(t, id, queuedTo, event.MessageQueued, "", queuedAt)
			x := outMsg(t, id, queuedTo, tc.st, tc.reason, queuedAt.Add(time.Hour))
			want := fmt.Sprintf("%s/9|%s|%s@s.whatsapp.net|%s|%s@s.whatsapp.net|%s|%d", tc.st, tc.reason, queuedTo, queuedTo, queuedTo, queuedTo, queuedAt.Unix())
			applyBatches(t, p, &seq, []event.Envelope{q}, []event.Envelope{x})
			if got := msgState(t, p, id); got != want {
				t.Fatalf("two batches: got  %s\nwant %s", got, want)
			}
			// Redelivered, with a receipt, in one batch and reversed: the same.
			rc := mustEnv(t, 1, "rc-"+id, sentAt, &event.Receipt{MessageIDs: []string{id}, ChatJID: "x", Kind: event.ReceiptRead, Timestamp: sentAt})
			applyBatches(t, p, &seq, []event.Envelope{x, q, rc})
			if got := msgState(t, p, id); got != want {
				t.Fatalf("after redelivery: got  %s\nwant %s", got, want)
			}
			id2 := id + "R"
			applyBatches(t, p, &seq, []event.Envelope{outMsg(t, id2, queuedTo, tc.st, tc.reason, queuedAt.Add(time.Hour)), outMsg(t, id2, queuedTo, event.MessageQueued, "", queuedAt)})
			want2 := fmt.Sprintf("%s/9|%s|%s@s.whatsapp.net|%s|%s@s.whatsapp.net|%s|%d", tc.st, tc.reason, queuedTo, queuedTo, queuedTo, queuedTo, queuedAt.Add(time.Hour).Unix())
			if got := msgState(t, p, id2); got != want2 {
				t.Fatalf("reversed in one batch: got  %s\nwant %s", got, want2)
			}
		})
	}
}

// inMsg is mentorado m's inbound text from ph (or LID lid) in chat.
func inMsg(t testing.TB, m int64, id, ph, lid, chat, text string, hist bool, at time.Time) event.Envelope {
	t.Helper()
	sender := chat
	if ph != "" {
		sender = ph + "@s.whatsapp.net"
	} else if lid != "" {
		sender = lid
	}
	msg := &event.Message{WAID: id, ChatJID: chat, SenderJID: sender, Phone: ph, LID: lid, Direction: event.DirectionIn,
		Kind: event.KindText, Text: text, Timestamp: at, Status: event.MessageReceived}
	if hist {
		msg.History = &event.History{Sync: "recent", SyncedAt: at.Add(time.Hour)}
	}
	return mustEnv(t, m, event.MessageEventID(m, id), at, msg)
}

// TestOptOutKeywords: a live direct reply that is one of the mentorado's
// opt-out keywords (the defaults, or its own) opts its sender out in the
// transaction that stores it; partial matches, groups, history, outbound
// messages and LID-only senders do not; the first opt-out of a phone stays;
// a reply applied again after the opt-out was removed does not opt out
// again; a transaction that does not commit leaves neither.
func TestOptOutKeywords(t *testing.T) {
	p := newTestPersister(t, 2)
	ctx := context.Background()
	if _, err := p.db.Pool.Exec(ctx, `INSERT INTO send_settings (mentorado_id, settings) VALUES (2, '{"opt_out_keywords":["CHEGA"]}')`); err != nil {
		t.Fatal(err)
	}
	if _, err := p.db.Pool.Exec(ctx, `INSERT INTO opt_outs (mentorado_id, phone, source) VALUES (1, '5511911110009', 'api')`); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	dm := func(ph string) string { return ph + "@s.whatsapp.net" }
	var seq uint64
	applyBatches(t, p, &seq, []event.Envelope{
		inMsg(t, 1, "IN1", "5511911110001", "", dm("5511911110001"), "  Sair! ", false, at),
		inMsg(t, 1, "IN2", "5511911110002", "", dm("5511911110002"), "sair por favor", false, at),
		inMsg(t, 1, "IN3", "5511911110003", "", "120363000000000001@g.us", "STOP", false, at),
		inMsg(t, 1, "IN4", "5511911110004", "", dm("5511911110004"), "parar", true, at),
		outMsg(t, "OUT5", "5511911110005", event.MessageSent, "", at), // text is not a keyword; below one that is
		inMsg(t, 1, "IN6", "", "99887766@lid", "99887766@lid", "SAIR", false, at),
		inMsg(t, 2, "IN7", "5511911110007", "", dm("5511911110007"), "sair", false, at),
		inMsg(t, 2, "IN8", "5511911110008", "", dm("5511911110008"), "Chega.", false, at),
		inMsg(t, 1, "IN9", "5511911110009", "", dm("5511911110009"), "não quero mais", false, at),
		// Two in a row from one phone: the first stays.
		inMsg(t, 1, "IN10", "5511911110010", "", dm("5511911110010"), "Parar", false, at),
		inMsg(t, 1, "IN11", "5511911110010", "", dm("5511911110010"), "STOP", false, at.Add(time.Second)),
	}, []event.Envelope{
		inMsg(t, 1, "IN12", "5511911110010", "", dm("5511911110010"), "cancelar", false, at.Add(2*time.Second)),
		mustEnv(t, 1, event.MessageEventID(1, "OUT13"), at, &event.Message{WAID: "OUT13", ChatJID: dm("5511911110013"),
			SenderJID: "5511987654321@s.whatsapp.net", Phone: "5511911110013", Direction: event.DirectionOut, Kind: event.KindText,
			Text: "SAIR", Timestamp: at, Status: event.MessageSent}),
	})
	optOuts := func() []string {
		t.Helper()
		rows, err := p.db.Pool.Query(ctx, `SELECT mentorado_id || '|' || phone || '|' || source || '|' || coalesce(keyword, '-') || '|' || coalesce(wa_message_id, '-')
			FROM opt_outs ORDER BY mentorado_id, phone`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	want := []string{
		"1|5511911110001|keyword|SAIR|IN1",
		"1|5511911110009|api|-|-",
		"1|5511911110010|keyword|PARAR|IN10",
		"2|5511911110008|keyword|CHEGA|IN8",
	}
	diffLines(t, "opt-outs", want, optOuts())

	// Removed (an opt-in), then the same reply again (redelivery, replay):
	// no new opt-out.
	if _, err := p.db.Pool.Exec(ctx, `DELETE FROM opt_outs WHERE phone = '5511911110001'`); err != nil {
		t.Fatal(err)
	}
	applyBatches(t, p, &seq, []event.Envelope{inMsg(t, 1, "IN1", "5511911110001", "", dm("5511911110001"), "  Sair! ", false, at)})
	diffLines(t, "after a redelivered reply", want[1:], optOuts())

	// The LID sender's phone becomes known: its next reply opts it out
	// under the phone.
	applyBatches(t, p, &seq, []event.Envelope{
		mustEnv(t, 1, "contact-lid", at, &event.Contact{JID: "99887766@lid", LID: "99887766@lid", Phone: "5511911110006"}),
		inMsg(t, 1, "IN14", "", "99887766@lid", "99887766@lid", "sair", false, at.Add(time.Minute)),
	})
	want = []string{"1|5511911110006|keyword|SAIR|IN14", want[1], want[2], want[3]}
	diffLines(t, "after the LID's phone is known", want, optOuts())

	// A batch that does not commit writes neither the reply nor its opt-out.
	p.beforeCommit = func(context.Context) error { return fmt.Errorf("injected") }
	if _, err := p.Apply(ctx, []Item{item(t, inMsg(t, 1, "IN15", "5511911110015", "", dm("5511911110015"), "stop", false, at), 1000)}); err == nil {
		t.Fatal("apply succeeded with a failing commit hook")
	}
	p.beforeCommit = nil
	var n int
	if err := p.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM whatsapp_messages WHERE wa_message_id = 'IN15') +
		(SELECT count(*) FROM opt_outs WHERE phone = '5511911110015')`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rolled back batch left %d rows (%v)", n, err)
	}
	applyBatches(t, p, &seq, []event.Envelope{inMsg(t, 1, "IN15", "5511911110015", "", dm("5511911110015"), "stop", false, at)})
	want = []string{want[0], want[1], want[2], "1|5511911110015|keyword|STOP|IN15", want[3]}
	diffLines(t, "after the retry", want, optOuts())
}

// TestCampaignAndSendingEventsAcked: the persister consumes every event
// type, its own campaign events and the connector's sending events
// included: they apply (nothing to write) and are never poison.
func TestCampaignAndSendingEventsAcked(t *testing.T) {
	p := newTestPersister(t, 1)
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	c := &event.Campaign{CampaignID: 7, Name: "Black Friday", State: event.CampaignRunning, Counts: event.CampaignCounts{Total: 2, Pending: 1, Sent: 1}}
	s := &event.Sending{Bulk: event.BulkPaused, Reason: "temporary_ban"}
	items := []Item{
		item(t, mustEnv(t, 1, event.CampaignEventID(1, c, 1), at, c), 1),
		item(t, mustEnv(t, 1, event.SendingEventID(1, event.BulkPaused, at), at, s), 2),
	}
	poison, err := p.Apply(context.Background(), items)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range poison {
		if e != nil {
			t.Fatalf("event %d poison: %v", i, e)
		}
	}
}
