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

	t.Run("a receipt that raised the queued row first keeps the queued routing", func(t *testing.T) {
		id := "3EB0EARLY"
		q := outMsg(t, id, queuedTo, event.MessageQueued, "", queuedAt)
		s := outMsg(t, id, sentTo, event.MessageSent, "", sentAt)
		rc := mustEnv(t, 1, "rc-early", sentAt, &event.Receipt{MessageIDs: []string{id}, ChatJID: sentTo + "@s.whatsapp.net", Kind: event.ReceiptDelivered, Timestamp: sentAt})
		// The receipt finds the queued row: it may raise it (WhatsApp took
		// the message), and the sent event still brings its routing.
		applyBatches(t, p, &seq, []event.Envelope{q}, []event.Envelope{rc}, []event.Envelope{s})
		got := msgState(t, p, id)
		if want := fmt.Sprintf("delivered/2|-|%s@s.whatsapp.net|%s|%s@s.whatsapp.net|%s|%d", queuedTo, queuedTo, queuedTo, queuedTo, queuedAt.Unix()); got != want {
			// Documented limit: a receipt that raised the queued row first
			// leaves the queued routing (it is no longer queued).
			t.Fatalf("got  %s\nwant %s", got, want)
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
