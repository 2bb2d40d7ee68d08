package connector_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/zapbus/zapbus/internal/bus"
	"github.com/zapbus/zapbus/internal/connector"
	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/testenv"
)

// TestCommandsForGatewayProvidersAreRelayed (issue #16): a command for a
// mentorado whose active provider is Meta reaches the connectors on
// wa.<m>.cmd.<verb> (a client that does not route by provider); the
// connector relays it to the provider gateways' subject and passes their
// reply back, and never takes the mentorado's session lease. With no
// gateway running it answers unavailable. A template send for a
// WhatsApp Web mentorado is not_supported, refused before anything is
// sent. Every event the connector publishes says whatsapp_web.
func TestCommandsForGatewayProvidersAreRelayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ids := e.mentorados(2)
	m, w := ids[0], ids[1]
	ctx := context.Background()
	// m runs on Meta (sealed credentials are opaque to the connector).
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO provider_configs (mentorado_id, provider, settings, credentials, key_id, external_id)
VALUES ($1, 'meta', '{}', '\x00', 'k1', '106540352242922'), ($2, 'whatsapp_web', '{}', NULL, NULL, NULL)`, m, w); err != nil {
		t.Fatal(err)
	}
	e.paired(w, "5511900000021")
	e.start("a", nil, nil)
	testenv.Eventually(t, wait, func() bool { return e.status(w) == event.StatusConnected }, "w restored")

	var mu sync.Mutex
	var got []string
	sub, err := e.observer.NC.Subscribe(event.ProviderCommandWildcard(event.ProviderMeta), func(msg *nats.Msg) {
		mu.Lock()
		got = append(got, msg.Subject)
		mu.Unlock()
		r := event.Reply{Status: &event.StatusReply{Status: event.StatusConnected, Phone: "5511999990000", Since: time.Now().UTC()}}
		if strings.HasSuffix(msg.Subject, ".send") {
			var req event.SendRequest
			_ = json.Unmarshal(msg.Data, &req)
			r = event.Reply{Message: &event.Message{WAID: "wamid.X", Kind: req.Kind, Text: req.Template.Text(), Direction: event.DirectionOut}}
		}
		b, _ := json.Marshal(r)
		_ = msg.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.observer.NC.Flush(); err != nil {
		t.Fatal(err)
	}

	r := e.mustRequest(m, event.VerbStatus, nil)
	if r.Error != nil || r.Status == nil || r.Status.Phone != "5511999990000" {
		t.Fatalf("status relayed: %+v %+v", r.Status, r.Error)
	}
	tpl := event.SendRequest{Phone: "5511987654321", Kind: event.KindTemplate,
		Template: &event.Template{Name: "hello_world", Language: "en_US"}}
	r = e.mustRequest(m, event.VerbSend, tpl)
	if r.Error != nil || r.Message == nil || r.Message.WAID != "wamid.X" {
		t.Fatalf("template send relayed: %+v %+v", r.Message, r.Error)
	}
	mu.Lock()
	want := []string{event.ProviderCommandSubject(event.ProviderMeta, m, event.VerbStatus), event.ProviderCommandSubject(event.ProviderMeta, m, event.VerbSend)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("gateway got %v, want %v", got, want)
	}
	mu.Unlock()

	// No lease for m, ever.
	kv, err := e.observer.JS.KeyValue(ctx, bus.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, itoa(m)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease of a meta mentorado: %v", err)
	}

	// No gateway: unavailable, still no lease.
	_ = sub.Unsubscribe()
	_ = e.observer.NC.Flush()
	r = e.mustRequest(m, event.VerbConnect, event.ConnectRequest{})
	if r.Error == nil || r.Error.Code != event.CodeUnavailable || !strings.Contains(r.Error.Message, "no provider gateway running") {
		t.Fatalf("without a gateway: %+v", r.Error)
	}
	if _, err := kv.Get(ctx, itoa(m)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease after a connect without gateway: %v", err)
	}

	// WhatsApp Web cannot send templates: refused, nothing sent.
	r = e.mustRequest(w, event.VerbSend, tpl)
	if r.Error == nil || r.Error.Code != event.CodeNotSupported {
		t.Fatalf("template on whatsapp_web: %+v", r)
	}
	if n := len(e.world.Sent(w)); n != 0 {
		t.Fatalf("WhatsApp got %d messages", n)
	}

	// w moves to Meta while this connector still holds its session: a
	// connect is not run on whatsmeow but relayed (no gateway here).
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO provider_configs (mentorado_id, provider, settings, credentials, key_id, external_id)
VALUES ($1, 'meta', '{}', '\x00', 'k1', '106540352242923')`, w); err != nil {
		t.Fatal(err)
	}
	r = e.mustRequest(w, event.VerbConnect, event.ConnectRequest{})
	if r.Error == nil || !strings.Contains(r.Error.Message, "no provider gateway running for meta") {
		t.Fatalf("connect of a held session after the switch: %+v", r)
	}

	// Every event the connector published names whatsapp_web.
	envs := e.stored(bus.StreamEvents, event.MentoradoEvents(w))
	if len(envs) == 0 {
		t.Fatal("no events of w")
	}
	for _, env := range envs {
		if env.Provider != event.ProviderWeb {
			t.Fatalf("%s event %s names provider %q", env.Type, env.ID, env.Provider)
		}
	}
	if n := len(e.stored(bus.StreamEvents, event.MentoradoEvents(m))); n != 0 {
		t.Fatalf("%d events published for the meta mentorado", n)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestGatewayMentoradoNotRestored: a paired device that should be
// connected is not restored when its mentorado's active provider is Meta
// (the switch's disconnect did not reach a connector, say).
func TestGatewayMentoradoNotRestored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2*time.Second)
	ids := e.mentorados(2) // restored in id order, one at a time below
	m, w := ids[0], ids[1]
	e.paired(m, "5511900000031")
	e.paired(w, "5511900000032")
	ctx := context.Background()
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO provider_configs (mentorado_id, provider, settings, credentials, key_id, external_id)
VALUES ($1, 'meta', '{}', '\x00', 'k1', '106540352242931')`, m); err != nil {
		t.Fatal(err)
	}
	e.start("a", nil, nil, func(c *connector.Config) { c.RestoreConcurrency = 1 })
	testenv.Eventually(t, wait, func() bool { return e.status(w) == event.StatusConnected }, "w restored")
	kv, err := e.observer.JS.KeyValue(ctx, bus.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, itoa(m)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the meta mentorado's session was claimed: %v", err)
	}
	if n := len(e.stored(bus.StreamEvents, event.MentoradoEvents(m))); n != 0 {
		t.Fatalf("%d events of the meta mentorado's whatsmeow session", n)
	}
}
