package event_test

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/schema"
)

func compileSchemas(t *testing.T) map[event.Type]*jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	out := map[event.Type]*jsonschema.Schema{}
	for _, typ := range event.Types {
		name := "events/" + string(typ) + ".json"
		b, err := schema.Events.ReadFile(name)
		if err != nil {
			t.Fatalf("schema for %s: %v", typ, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		url := "https://zapbus.dev/schema/" + name
		if err := c.AddResource(url, doc); err != nil {
			t.Fatal(err)
		}
		s, err := c.Compile(url)
		if err != nil {
			t.Fatalf("compile %s: %v", name, err)
		}
		out[typ] = s
	}
	return out
}

func validate(t *testing.T, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return s.Validate(v)
}

// docExamples returns the ```json <type> blocks of docs/events.md.
func docExamples(t *testing.T) map[event.Type][]string {
	t.Helper()
	f, err := os.Open("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[event.Type][]string{}
	var cur event.Type
	var buf strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case cur == "" && strings.HasPrefix(line, "```json "):
			cur = event.Type(strings.TrimPrefix(line, "```json "))
			buf.Reset()
		case cur != "" && line == "```":
			out[cur] = append(out[cur], buf.String())
			cur = ""
		case cur != "":
			buf.WriteString(line + "\n")
		}
	}
	return out
}

func TestDocumentedExamplesMatchSchemas(t *testing.T) {
	schemas := compileSchemas(t)
	examples := docExamples(t)
	for _, typ := range event.Types {
		if len(examples[typ]) == 0 {
			t.Errorf("docs/events.md has no example for %s", typ)
		}
		for _, ex := range examples[typ] {
			if err := validate(t, schemas[typ], []byte(ex)); err != nil {
				t.Errorf("documented %s example fails its schema: %v", typ, err)
			}
			env, _, err := event.Decode([]byte(ex))
			if err != nil {
				t.Errorf("documented %s example rejected by Decode: %v", typ, err)
				continue
			}
			if env.Type != typ {
				t.Errorf("example under %s has type %s", typ, env.Type)
			}
		}
	}
}

func TestEncoderOutputMatchesSchemas(t *testing.T) {
	schemas := compileSchemas(t)
	for typ, p := range samplePayloads() {
		env, err := event.New(42, "42:x", t0, p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := env.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, schemas[typ], b); err != nil {
			t.Errorf("encoded %s fails its schema: %v\n%s", typ, err, b)
		}
	}
	// Minimal payloads (only required fields) too.
	minimal := []event.Payload{
		&event.Connection{Status: event.StatusConnecting},
		&event.QR{PairingCode: "ABCD-EFGH", ExpiresAt: t0},
		&event.Message{WAID: "A", ChatJID: "c", SenderJID: "s", Direction: event.DirectionOut, Kind: event.KindRevoke, TargetID: "B", Timestamp: t0, Status: event.MessageSent},
		&event.Receipt{MessageIDs: []string{"A"}, ChatJID: "c", Kind: event.ReceiptPlayed, FromMe: true, Timestamp: t0},
		&event.Contact{JID: "123@lid"},
	}
	for _, p := range minimal {
		env, err := event.New(1, "1:x", t0, p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := env.Encode()
		if err := validate(t, schemas[p.EventType()], b); err != nil {
			t.Errorf("minimal %s fails its schema: %v\n%s", p.EventType(), err, b)
		}
	}
}

func TestSchemasRejectWhatDecodeRejects(t *testing.T) {
	schemas := compileSchemas(t)
	bad := map[event.Type]string{
		event.TypeMessage: `{"v":1,"id":"x","type":"message","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"wa_id":"A","chat_jid":"c","sender_jid":"s","direction":"up","kind":"text","timestamp":"2026-11-24T12:00:00Z","status":"received"}}`,
		event.TypeQR:      `{"v":1,"id":"x","type":"qr","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"code":"a","pairing_code":"b","expires_at":"2026-11-24T12:00:00Z"}}`,
		event.TypeReceipt: `{"v":2,"id":"x","type":"receipt","mentorado_id":1,"occurred_at":"2026-11-24T12:00:00Z","data":{"message_ids":["a"],"chat_jid":"c","kind":"read","timestamp":"2026-11-24T12:00:00Z"}}`,
	}
	for typ, b := range bad {
		if err := validate(t, schemas[typ], []byte(b)); err == nil {
			t.Errorf("%s schema accepted %s", typ, b)
		}
		if _, _, err := event.Decode([]byte(b)); err == nil {
			t.Errorf("Decode accepted %s", b)
		}
	}
}
