package zapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/zapi"
)

const (
	docInstance = "3C67AB641C8AA0412F6A2242B4E23AC7"
	mentorado   = int64(42)
	secret      = "whsec-0123456789abcdef"
)

func docAccount() provider.Account {
	return provider.Account{Mentorado: mentorado, Provider: event.ProviderZAPI, ZAPI: &provider.ZAPICredentials{
		InstanceID: docInstance, InstanceToken: "INSTTOKEN0123456789", ClientToken: "CLIENTTOKEN0123456789", WebhookSecret: secret,
	}}
}

func newDriver(t *testing.T, base string) *zapi.Driver {
	t.Helper()
	return zapi.New(zapi.Config{
		BaseURL: base, Retries: 3, Backoff: time.Millisecond, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.DebugLevel),
		Now: func() time.Time { return time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC) }, MediaHTTP: http.DefaultClient,
	})
}

// webhookRequest is a delivery to the gateway route with secret in the
// path (and header when given).
func webhookRequest(pathSecret, headerSecret string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/providers/zapi/42/webhook/"+pathSecret, nil)
	if pathSecret != "" {
		r.SetPathValue("secret", pathSecret)
	}
	if headerSecret != "" {
		r.Header.Set(zapi.SecretHeader, headerSecret)
	}
	return r
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func deliver(t *testing.T, d *zapi.Driver, acc provider.Account, body []byte) *provider.Inbound {
	t.Helper()
	in, err := d.Webhook(context.Background(), acc, webhookRequest(secret, ""), body)
	if err != nil {
		t.Fatalf("Webhook: %v", err)
	}
	for _, env := range in.Events {
		if env.Provider != event.ProviderZAPI || env.MentoradoID != mentorado {
			t.Fatalf("envelope %s: provider %q mentorado %d", env.ID, env.Provider, env.MentoradoID)
		}
		b, err := env.Encode()
		if err != nil {
			t.Fatalf("encode %s: %v", env.ID, err)
		}
		if _, _, err := event.Decode(b); err != nil {
			t.Fatalf("decode %s: %v", env.ID, err)
		}
	}
	return in
}

func payload[T event.Payload](t *testing.T, env event.Envelope) T {
	t.Helper()
	p, err := env.Payload()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := p.(T)
	if !ok {
		t.Fatalf("envelope %s is %T", env.ID, p)
	}
	return v
}

func TestWebhookSecret(t *testing.T) {
	d := newDriver(t, "http://127.0.0.1:1")
	body := readTestdata(t, "received_text.json")
	acc := docAccount()
	for _, tc := range []struct {
		name         string
		path, header string
		ok           bool
	}{
		{"path", secret, "", true},
		{"header", "", secret, true},
		{"header with a wrong path segment", "nope", secret, true},
		{"wrong path", "whsec-0123456789abcdeX", "", false},
		{"wrong header", "", "whsec", false},
		{"prefix", secret[:len(secret)-1], "", false},
		{"missing", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := d.Webhook(context.Background(), acc, webhookRequest(tc.path, tc.header), body)
			if tc.ok {
				if err != nil || len(in.Events) == 0 {
					t.Fatalf("got %v, %v", in, err)
				}
				return
			}
			if !errors.Is(err, provider.ErrUnauthenticated) || in != nil {
				t.Fatalf("got %v, %v; want ErrUnauthenticated", in, err)
			}
		})
	}
	t.Run("account without a secret", func(t *testing.T) {
		acc := docAccount()
		acc.ZAPI.WebhookSecret = ""
		if _, err := d.Webhook(context.Background(), acc, webhookRequest("", ""), body); !errors.Is(err, provider.ErrUnauthenticated) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestWebhookBadPayload(t *testing.T) {
	d := newDriver(t, "http://127.0.0.1:1")
	for _, body := range []string{"", "not json", "{}", `{"type": 7}`, `[1,2]`} {
		if _, err := d.Webhook(context.Background(), docAccount(), webhookRequest(secret, ""), []byte(body)); !errors.Is(err, provider.ErrBadPayload) {
			t.Errorf("%q: got %v, want ErrBadPayload", body, err)
		}
	}
}

func TestWebhookPayloads(t *testing.T) {
	d := newDriver(t, "http://127.0.0.1:1")
	acc := docAccount()
	at := func(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

	t.Run("text", func(t *testing.T) {
		in := deliver(t, d, acc, readTestdata(t, "received_text.json"))
		if len(in.Events) != 2 || len(in.Media) != 0 {
			t.Fatalf("events %d media %d", len(in.Events), len(in.Media))
		}
		env := in.Events[0]
		if env.ID != "42:msg:3EB0C767D26A1D8F6E02" || env.Type != event.TypeMessage || !env.OccurredAt.Equal(at(1764460800000)) {
			t.Fatalf("envelope %+v", env)
		}
		m := payload[*event.Message](t, env)
		want := event.Message{WAID: "3EB0C767D26A1D8F6E02", ChatJID: "5544999999999@s.whatsapp.net", SenderJID: "5544999999999@s.whatsapp.net",
			Phone: "5544999999999", LID: "81896604192873@lid", PushName: "Maria Souza", Direction: event.DirectionIn, Kind: event.KindText,
			Text: "Oi! Quero saber mais sobre a mentoria.", Status: event.MessageReceived}
		m.Timestamp = time.Time{}
		if *m != want {
			t.Fatalf("message\n got %+v\nwant %+v", *m, want)
		}
		c := payload[*event.Contact](t, in.Events[1])
		if *c != (event.Contact{JID: "5544999999999@s.whatsapp.net", Phone: "5544999999999", LID: "81896604192873@lid", PushName: "Maria Souza"}) {
			t.Fatalf("contact %+v", *c)
		}
		if in.Events[1].ID != event.ContactEventID(mentorado, c, at(1764460800000)) {
			t.Fatalf("contact id %s", in.Events[1].ID)
		}
	})

	media := []struct {
		file                  string
		kind                  event.Kind
		url, mime, name, capt string
	}{
		{"received_image.json", event.KindImage, "https://storage.z-api.io/3C67AB641C8AA0412F6A2242B4E23AC7/3EB0A1B2C3D4E5F60711.jpeg", "image/jpeg", "", "Meu comprovante"},
		{"received_audio.json", event.KindPTT, "https://storage.z-api.io/3C67AB641C8AA0412F6A2242B4E23AC7/3EB0AA11BB22CC33DD44.ogg", "audio/ogg; codecs=opus", "", ""},
		{"received_document.json", event.KindDocument, "https://storage.z-api.io/3C67AB641C8AA0412F6A2242B4E23AC7/3EB0DD55EE66FF778899.pdf", "application/pdf", "contrato.pdf", ""},
	}
	for _, tc := range media {
		t.Run(tc.file, func(t *testing.T) {
			in := deliver(t, d, acc, readTestdata(t, tc.file))
			m := payload[*event.Message](t, in.Events[0])
			if m.Kind != tc.kind || m.Caption != tc.capt || m.Media != nil || m.Direction != event.DirectionIn {
				t.Fatalf("message %+v", *m)
			}
			if len(in.Media) != 1 {
				t.Fatalf("media refs %+v", in.Media)
			}
			want := provider.MediaRef{WAID: m.WAID, ChatJID: "5544999999999@s.whatsapp.net", Kind: tc.kind, URL: tc.url, MIME: tc.mime, FileName: tc.name, Caption: tc.capt}
			if in.Media[0] != want {
				t.Fatalf("media ref\n got %+v\nwant %+v", in.Media[0], want)
			}
		})
	}

	t.Run("reaction", func(t *testing.T) {
		in := deliver(t, d, acc, readTestdata(t, "received_reaction.json"))
		m := payload[*event.Message](t, in.Events[0])
		if m.Kind != event.KindReaction || m.Text != "❤️" || m.TargetID != "3EB0796DC6B777C0C7CD" || m.WAID != "3EB0FEEDFACE00112233" {
			t.Fatalf("reaction %+v", *m)
		}
	})
	t.Run("reply", func(t *testing.T) {
		in := deliver(t, d, acc, readTestdata(t, "received_reply.json"))
		m := payload[*event.Message](t, in.Events[0])
		if m.ReplyToID != "3EB0796DC6B777C0C7CD" || m.Kind != event.KindText {
			t.Fatalf("reply %+v", *m)
		}
	})
	t.Run("sent from the phone", func(t *testing.T) {
		in := deliver(t, d, acc, readTestdata(t, "received_fromme.json"))
		if len(in.Events) != 1 {
			t.Fatalf("%d events; a message from the phone makes no contact", len(in.Events))
		}
		m := payload[*event.Message](t, in.Events[0])
		if m.Direction != event.DirectionOut || m.Status != event.MessageSent || m.SenderJID != "5511988887777@s.whatsapp.net" ||
			m.ChatJID != "5544999999999@s.whatsapp.net" || m.Phone != "5544999999999" || m.PushName != "" {
			t.Fatalf("from me %+v", *m)
		}
	})
	t.Run("group", func(t *testing.T) {
		in := deliver(t, d, acc, readTestdata(t, "received_group.json"))
		m := payload[*event.Message](t, in.Events[0])
		if m.ChatJID != "120363019502650977@g.us" || m.SenderJID != "5521977776666@s.whatsapp.net" || m.Phone != "5521977776666" ||
			m.LID != "99999999999999@lid" || m.PushName != "João Lima" {
			t.Fatalf("group %+v", *m)
		}
		c := payload[*event.Contact](t, in.Events[1])
		if c.JID != "5521977776666@s.whatsapp.net" || c.PushName != "João Lima" {
			t.Fatalf("contact %+v", *c)
		}
	})

	for _, tc := range []struct {
		file string
		kind event.ReceiptKind
	}{
		{"status_received.json", event.ReceiptDelivered},
		{"status_read.json", event.ReceiptRead},
		{"status_played.json", event.ReceiptPlayed},
	} {
		t.Run(tc.file, func(t *testing.T) {
			in := deliver(t, d, acc, readTestdata(t, tc.file))
			if len(in.Events) != 1 {
				t.Fatalf("%d events", len(in.Events))
			}
			r := payload[*event.Receipt](t, in.Events[0])
			ids := []string{"3EB0796DC6B777C0C7CD"}
			if r.Kind != tc.kind || r.ChatJID != "5544999999999@s.whatsapp.net" || r.Phone != "5544999999999" || r.FromMe ||
				len(r.MessageIDs) != 1 || r.MessageIDs[0] != ids[0] || !r.Timestamp.Equal(at(1764461280000)) {
				t.Fatalf("receipt %+v", *r)
			}
			if in.Events[0].ID != event.ReceiptEventID(mentorado, tc.kind, false, ids) {
				t.Fatalf("id %s", in.Events[0].ID)
			}
		})
	}

	t.Run("connected", func(t *testing.T) {
		in := deliver(t, d, acc, readTestdata(t, "connected.json"))
		c := payload[*event.Connection](t, in.Events[0])
		if c.Status != event.StatusConnected || c.Phone != "5511988887777" || c.JID != "5511988887777@s.whatsapp.net" {
			t.Fatalf("connection %+v", *c)
		}
		if in.Events[0].ID != event.ConnectionEventID(mentorado, event.StatusConnected, at(1764457200000)) {
			t.Fatalf("id %s", in.Events[0].ID)
		}
	})
	t.Run("disconnected", func(t *testing.T) {
		in := deliver(t, d, acc, readTestdata(t, "disconnected.json"))
		c := payload[*event.Connection](t, in.Events[0])
		if c.Status != event.StatusDisconnected || !strings.Contains(c.Reason, "Device has been disconnected") {
			t.Fatalf("connection %+v", *c)
		}
		// The disconnected callback's momment is in seconds.
		if want := event.ConnectionEventID(mentorado, event.StatusDisconnected, time.Unix(1764464400, 0)); in.Events[0].ID != want {
			t.Fatalf("id %s, want %s", in.Events[0].ID, want)
		}
	})

	for _, file := range []string{"status_sent.json", "presence.json", "delivery.json"} {
		t.Run(file+" ignored", func(t *testing.T) {
			in := deliver(t, d, acc, readTestdata(t, file))
			if len(in.Events) != 0 || len(in.Media) != 0 || len(in.Rejected) != 0 {
				t.Fatalf("got %+v", in)
			}
		})
	}
}

func TestWebhookForeignInstanceDropped(t *testing.T) {
	d := newDriver(t, "http://127.0.0.1:1")
	acc := docAccount()
	acc.Mentorado = 7
	acc.ZAPI.InstanceID = "OTHERINSTANCE"
	for _, f := range []string{"received_text.json", "status_read.json", "connected.json", "disconnected.json"} {
		in, err := d.Webhook(context.Background(), acc, webhookRequest(secret, ""), readTestdata(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if len(in.Events) != 0 || len(in.Media) != 0 || len(in.Rejected) != 1 || !strings.Contains(in.Rejected[0], docInstance) {
			t.Fatalf("%s: got %+v", f, in)
		}
	}
}

func TestWebhookReplaySameIDs(t *testing.T) {
	d := newDriver(t, "http://127.0.0.1:1")
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() || filepath.Ext(e.Name()) != ".json" {
			continue
		}
		body := readTestdata(t, e.Name())
		first := deliver(t, d, docAccount(), body)
		again := deliver(t, d, docAccount(), body)
		if len(first.Events) != len(again.Events) {
			t.Fatalf("%s: %d then %d events", e.Name(), len(first.Events), len(again.Events))
		}
		for i := range first.Events {
			if first.Events[i].ID != again.Events[i].ID || string(first.Events[i].Data) != string(again.Events[i].Data) {
				t.Fatalf("%s: event %d: %s then %s", e.Name(), i, first.Events[i].ID, again.Events[i].ID)
			}
			n++
		}
	}
	if n < 15 {
		t.Fatalf("only %d events compared", n)
	}
}

func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}
