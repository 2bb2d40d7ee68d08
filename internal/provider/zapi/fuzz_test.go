package zapi_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
	"github.com/zapbus/zapbus/internal/provider/zapi"
)

// FuzzWebhook feeds webhook bodies (seeded with Z-API's documented ones)
// to the driver: it must answer events that encode and decode, or a
// typed error, and never panic.
func FuzzWebhook(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	d := zapi.New(zapi.Config{BaseURL: "http://127.0.0.1:1", Log: zerolog.Nop()})
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := d.Webhook(context.Background(), docAccount(), webhookRequest(secret, ""), body)
		if err != nil {
			var ce *event.CommandError
			if !errors.As(err, &ce) && !errors.Is(err, provider.ErrBadPayload) {
				// Invalid events are reported as errors wrapping *event.Error.
				var ee *event.Error
				if !errors.As(err, &ee) {
					t.Fatalf("untyped error %v", err)
				}
			}
			return
		}
		for _, env := range in.Events {
			if env.MentoradoID != mentorado {
				t.Fatalf("event for mentorado %d", env.MentoradoID)
			}
			b, err := env.Encode()
			if err != nil {
				continue // oversized: the gateway refuses it
			}
			if _, _, err := event.Decode(b); err != nil {
				t.Fatalf("event does not decode: %v", err)
			}
		}
	})
}
