package event_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zapbus/zapbus/internal/event"
)

var t0 = time.Date(2026, 11, 24, 12, 30, 0, 0, time.UTC)

func samplePayloads() map[event.Type]event.Payload {
	retry := t0.Add(6 * time.Second)
	return map[event.Type]event.Payload{
		event.TypeConnection: &event.Connection{Status: event.StatusBackoff, Phone: "5511987654321", JID: "5511987654321:12@s.whatsapp.net", Reason: "keepalive timeout", Attempt: 2, RetryAt: &retry},
		event.TypeQR:         &event.QR{Code: "2@abc,def,ghi,jkl", ExpiresAt: t0.Add(60 * time.Second)},
		event.TypeMessage: &event.Message{WAID: "3EB0C767D82B1A5A4E21", ChatJID: "5511912345678@s.whatsapp.net", SenderJID: "5511912345678@s.whatsapp.net",
			Phone: "5511912345678", PushName: "Ana", Direction: event.DirectionIn, Kind: event.KindText, Text: "Olá!", Timestamp: t0, Status: event.MessageReceived},
		event.TypeReceipt: &event.Receipt{MessageIDs: []string{"3EB0A", "3EB0B"}, ChatJID: "5511912345678@s.whatsapp.net", Phone: "5511912345678", Kind: event.ReceiptRead, Timestamp: t0},
		event.TypeContact: &event.Contact{JID: "5511912345678@s.whatsapp.net", Phone: "5511912345678", LID: "123456789012345@lid", PushName: "Ana"},
		event.TypeGroup: &event.Group{JID: "120363041234567890@g.us", Subject: "Turma 7", Participants: []event.Participant{
			{JID: "5511987654321@s.whatsapp.net", Phone: "5511987654321", Admin: true}, {JID: "123456789012345@lid", LID: "123456789012345@lid"}}},
		event.TypeHistory: &event.HistoryProgress{Sync: "initial_bootstrap", Chunk: 1, Progress: 40, Conversations: 3, Messages: 20, SyncedAt: t0},
		event.TypeLead:    &event.Lead{LeadID: 7, Change: event.LeadMerged, Phone: "5511912345678", LID: "123456789012345@lid", Name: "Ana", NameSource: event.NameSourcePush, MergedLeadID: 6},
	}
}

func TestRoundTrip(t *testing.T) {
	for typ, p := range samplePayloads() {
		t.Run(string(typ), func(t *testing.T) {
			env, err := event.New(42, "42:test:"+string(typ), t0, p)
			if err != nil {
				t.Fatal(err)
			}
			b, err := env.Encode()
			if err != nil {
				t.Fatal(err)
			}
			got, payload, err := event.Decode(b)
			if err != nil {
				t.Fatalf("decode: %v\n%s", err, b)
			}
			if got.V != 1 || got.ID != env.ID || got.Type != typ || got.MentoradoID != 42 || !got.OccurredAt.Equal(t0) {
				t.Fatalf("envelope mismatch: %+v", got)
			}
			if payload.EventType() != typ {
				t.Fatalf("payload type %s", payload.EventType())
			}
			a, _ := json.Marshal(p)
			c, _ := json.Marshal(payload)
			if string(a) != string(c) {
				t.Fatalf("payload changed in round trip:\n%s\n%s", a, c)
			}
		})
	}
}

func TestSubjects(t *testing.T) {
	env, err := event.New(42, "x", t0, samplePayloads()[event.TypeMessage])
	if err != nil {
		t.Fatal(err)
	}
	if s := env.Subject(); s != "wa.42.evt.message" {
		t.Fatalf("subject %q", s)
	}
	qr, _ := event.New(42, "y", t0, samplePayloads()[event.TypeQR])
	if s := qr.Subject(); s != "wa.42.qr" {
		t.Fatalf("qr subject %q", s)
	}
	if s := event.CommandSubject(7, event.VerbSend); s != "wa.7.cmd.send" {
		t.Fatalf("command subject %q", s)
	}
	for subj, want := range map[string]string{"wa.42.evt.message": "message", "wa.42.qr": "qr", "wa.42.cmd.send": "send"} {
		m, k, err := event.ParseSubject(subj)
		if err != nil || m != 42 || k != want {
			t.Errorf("ParseSubject(%q) = %d %q %v", subj, m, k, err)
		}
	}
	for _, bad := range []string{"", "wa", "wa.x.evt.message", "wa.0.qr", "nats.42.qr", "wa.42.evt", "wa.42.foo.bar"} {
		if _, _, err := event.ParseSubject(bad); err == nil {
			t.Errorf("ParseSubject(%q) accepted", bad)
		}
	}
}

func TestDeterministicIDs(t *testing.T) {
	if id := event.MessageEventID(42, "ABC"); id != "42:msg:ABC" {
		t.Fatal(id)
	}
	a := event.ReceiptEventID(42, event.ReceiptRead, false, []string{"B", "A"})
	b := event.ReceiptEventID(42, event.ReceiptRead, false, []string{"A", "B"})
	if a != b {
		t.Fatalf("receipt id depends on order: %s %s", a, b)
	}
	if event.ReceiptEventID(42, event.ReceiptRead, false, []string{"A"}) != "42:rcpt:A:read" {
		t.Fatal("single receipt id")
	}
	if event.ReceiptEventID(42, event.ReceiptRead, true, []string{"A"}) == event.ReceiptEventID(42, event.ReceiptRead, false, []string{"A"}) {
		t.Fatal("own-device receipt must differ")
	}
	c1 := &event.Contact{JID: "1@s.whatsapp.net", PushName: "A"}
	c2 := &event.Contact{JID: "1@s.whatsapp.net", PushName: "B"}
	if event.ContactEventID(1, c1, t0) == event.ContactEventID(1, c2, t0) || event.ContactEventID(1, c1, t0) != event.ContactEventID(1, &event.Contact{JID: "1@s.whatsapp.net", PushName: "A"}, t0) {
		t.Fatal("contact ids must follow content")
	}
	q := &event.QR{Code: "secret-code", ExpiresAt: t0}
	if strings.Contains(event.QREventID(1, q), "secret") {
		t.Fatal("QR id leaks the code")
	}
}

func TestDecodeRejects(t *testing.T) {
	valid := `{"v":1,"id":"1:msg:A","type":"message","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"wa_id":"A","chat_jid":"c","sender_jid":"s","direction":"in","kind":"text","timestamp":"2026-11-24T12:00:00Z","status":"received"}}`
	if _, _, err := event.Decode([]byte(valid)); err != nil {
		t.Fatalf("valid rejected: %v", err)
	}
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"not json", `{"v":1,`, event.ErrMalformed},
		{"array", `[]`, event.ErrMalformed},
		{"no version", strings.Replace(valid, `"v":1,`, ``, 1), event.ErrMissingField},
		{"future version", strings.Replace(valid, `"v":1`, `"v":2`, 1), event.ErrUnsupportedVersion},
		{"no id", strings.Replace(valid, `"id":"1:msg:A",`, ``, 1), event.ErrMissingField},
		{"unknown type", strings.Replace(valid, `"type":"message"`, `"type":"presence"`, 1), event.ErrUnknownType},
		{"no mentorado", strings.Replace(valid, `"mentorado_id":1,`, ``, 1), event.ErrInvalidField},
		{"negative mentorado", strings.Replace(valid, `"mentorado_id":1`, `"mentorado_id":-4`, 1), event.ErrInvalidField},
		{"no time", strings.Replace(valid, `"occurred_at":"2026-11-24T12:00:00Z",`, ``, 1), event.ErrMissingField},
		{"no data", `{"v":1,"id":"x","type":"message","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z"}`, event.ErrMissingField},
		{"null data", `{"v":1,"id":"x","type":"message","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":null}`, event.ErrMissingField},
		{"data wrong shape", `{"v":1,"id":"x","type":"message","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":[1]}`, event.ErrMalformed},
		{"missing wa_id", strings.Replace(valid, `"wa_id":"A",`, ``, 1), event.ErrMissingField},
		{"bad direction", strings.Replace(valid, `"direction":"in"`, `"direction":"sideways"`, 1), event.ErrInvalidField},
		{"bad kind", strings.Replace(valid, `"kind":"text"`, `"kind":"hologram"`, 1), event.ErrInvalidField},
		{"bad status", strings.Replace(valid, `"status":"received"`, `"status":"lost"`, 1), event.ErrInvalidField},
		{"bad phone", strings.Replace(valid, `"wa_id":"A",`, `"wa_id":"A","phone":"+55 11",`, 1), event.ErrInvalidField},
		{"edit without target", strings.Replace(valid, `"kind":"text"`, `"kind":"edit"`, 1), event.ErrMissingField},
		{"oversized", strings.Replace(valid, `"wa_id":"A",`, `"wa_id":"A","text":"`+strings.Repeat("x", event.MaxEnvelopeBytes)+`",`, 1), event.ErrTooLarge},
		{"text too long", strings.Replace(valid, `"wa_id":"A",`, `"wa_id":"A","text":"`+strings.Repeat("é", event.MaxTextRunes+1)+`",`, 1), event.ErrInvalidField},
		{"receipt without ids", `{"v":1,"id":"x","type":"receipt","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"message_ids":[],"chat_jid":"c","kind":"read","timestamp":"2026-11-24T12:00:00Z"}}`, event.ErrMissingField},
		{"receipt bad kind", `{"v":1,"id":"x","type":"receipt","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"message_ids":["a"],"chat_jid":"c","kind":"seen","timestamp":"2026-11-24T12:00:00Z"}}`, event.ErrInvalidField},
		{"qr both codes", `{"v":1,"id":"x","type":"qr","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"code":"a","pairing_code":"b","expires_at":"2026-11-24T12:00:00Z"}}`, event.ErrInvalidField},
		{"connection bad status", `{"v":1,"id":"x","type":"connection","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"status":"sleepy"}}`, event.ErrInvalidField},
		{"contact without jid", `{"v":1,"id":"x","type":"contact","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"name":"x"}}`, event.ErrMissingField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := event.Decode([]byte(tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			var e *event.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *event.Error", err)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := event.New(0, "x", t0, samplePayloads()[event.TypeContact]); !errors.Is(err, event.ErrInvalidField) {
		t.Fatalf("mentorado 0: %v", err)
	}
	if _, err := event.New(1, "", t0, samplePayloads()[event.TypeContact]); !errors.Is(err, event.ErrMissingField) {
		t.Fatalf("empty id: %v", err)
	}
	if _, err := event.New(1, "x", t0, &event.Message{}); !errors.Is(err, event.ErrMissingField) {
		t.Fatalf("empty message: %v", err)
	}
}

func TestStatusRank(t *testing.T) {
	order := []event.MessageStatus{event.MessagePending, event.MessageSent, event.MessageDelivered, event.MessageRead, event.MessagePlayed, event.MessageFailed}
	for i := 1; i < len(order); i++ {
		if order[i].Rank() <= order[i-1].Rank() {
			t.Fatalf("%s must outrank %s", order[i], order[i-1])
		}
	}
	if event.MessageStatus("nope").Rank() >= 0 {
		t.Fatal("unknown status has a rank")
	}
}

func TestCommandErrorIs(t *testing.T) {
	err := error(event.NewCommandError(event.CodeNotConnected, "session %d is %s", 4, "qr"))
	if !errors.Is(err, &event.CommandError{Code: event.CodeNotConnected}) {
		t.Fatal("errors.Is by code")
	}
	if errors.Is(err, &event.CommandError{Code: event.CodeNotOwner}) {
		t.Fatal("matched the wrong code")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"1:msg:A","type":"message","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"wa_id":"A","chat_jid":"c","sender_jid":"s","direction":"in","kind":"text","timestamp":"2026-11-24T12:00:00Z","status":"received"}}`))
	f.Add([]byte(`{"v":1,"id":"x","type":"qr","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"code":"a","expires_at":"2026-11-24T12:00:00Z"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		env, p, err := event.Decode(b)
		if err != nil {
			var e *event.Error
			if !errors.As(err, &e) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		// Anything accepted re-encodes and decodes to the same payload.
		out, err := env.Encode()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		_, p2, err := event.Decode(out)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		a, _ := json.Marshal(p)
		c, _ := json.Marshal(p2)
		if string(a) != string(c) {
			t.Fatalf("unstable: %s vs %s", a, c)
		}
	})
}

// TestContactEventIDDistinguishesObservations: a push name changed
// A → B → A is three facts; the third must not be dropped as a duplicate
// of the first by the stream's duplicate window. A retried publish of the
// same observation keeps its id.
func TestContactEventIDDistinguishesObservations(t *testing.T) {
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	a := &event.Contact{JID: "5511999999999@s.whatsapp.net", PushName: "A"}
	b := &event.Contact{JID: "5511999999999@s.whatsapp.net", PushName: "B"}
	first := event.ContactEventID(1, a, t0)
	second := event.ContactEventID(1, b, t0.Add(time.Minute))
	third := event.ContactEventID(1, a, t0.Add(2*time.Minute))
	if first == third || first == second || second == third {
		t.Fatalf("A → B → A ids collide: %s %s %s", first, second, third)
	}
	if again := event.ContactEventID(1, &event.Contact{JID: a.JID, PushName: "A"}, t0.Add(300*time.Microsecond)); again != first {
		t.Fatalf("a retried publish of the same observation changed id: %s vs %s", again, first)
	}
}

// TestCleanNULAndInvalidUTF8: what Postgres text cannot hold (U+0000,
// invalid UTF-8) is removed or replaced at the contract boundary, both when
// an envelope is built and when one written by an older publisher is read.
func TestCleanNULAndInvalidUTF8(t *testing.T) {
	for in, want := range map[string]string{
		"Evil\x00Name": "EvilName",
		"\x00":         "",
		"ok \xff end":  "ok \uFFFD end",
		"plain ção 😀":  "plain ção 😀",
	} {
		if got := event.Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	m := &event.Message{WAID: "A", ChatJID: "c", SenderJID: "s", PushName: "Evil\x00Name", Direction: event.DirectionIn,
		Kind: event.KindText, Text: "x\x00y\xfe", Caption: "\x00", Timestamp: at, Status: event.MessageReceived}
	env, err := event.New(1, "1:msg:A", at, m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte(`\u0000`)) {
		t.Fatalf("encoded envelope still carries NUL: %s", b)
	}
	_, p, err := event.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := p.(*event.Message); got.PushName != "EvilName" || got.Text != "xy\uFFFD" || got.Caption != "" {
		t.Fatalf("decoded %+v", got)
	}
	// An envelope from an older publisher, NUL included, decodes cleaned.
	old := `{"v":1,"id":"1:contact:x","type":"contact","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"jid":"5511999999999@s.whatsapp.net","push_name":"Evil\u0000Name","name":"\u0000"}}`
	_, p, err = event.Decode([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if c := p.(*event.Contact); c.PushName != "EvilName" || c.Name != "" {
		t.Fatalf("decoded %+v", c)
	}
}

// TestMaxTextFitsEnvelope: a text of MaxTextRunes characters of any
// content fits in an envelope, and nothing is HTML-escaped.
func TestMaxTextFitsEnvelope(t *testing.T) {
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for name, r := range map[string]string{"lt": "<", "amp": "&", "quote": `"`, "backslash": `\`, "ctrl": "\u0001", "ls": "\u2028", "emoji": "😀"} {
		text := strings.Repeat(r, event.MaxTextRunes)
		m := &event.Message{WAID: "3EB0AAAAAAAAAAAAAAAAAAAA", ChatJID: "5521911112222@s.whatsapp.net", SenderJID: "5511999999999@s.whatsapp.net",
			Phone: "5521911112222", Direction: event.DirectionOut, Kind: event.KindText, Text: text, Timestamp: at, Status: event.MessageSent}
		env, err := event.New(1, event.MessageEventID(1, m.WAID), at, m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, err := env.Encode()
		if err != nil {
			t.Fatalf("%s: %d characters do not fit: %v", name, event.MaxTextRunes, err)
		}
		if name == "lt" && len(b) > event.MaxTextRunes+1024 {
			t.Fatalf("'<' was escaped: %d bytes", len(b))
		}
		_, p, err := event.Decode(b)
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if p.(*event.Message).Text != text {
			t.Fatalf("%s: text changed in a round trip", name)
		}
	}
}
