package meta_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

// shape lists the key paths of a JSON document (array elements merged),
// so a builder's output can be compared with Meta's example.
func shape(t *testing.T, b []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				set[prefix+"."+k] = true
				walk(prefix+"."+k, c)
			}
		case []any:
			for _, c := range x {
				walk(prefix+"[]", c)
			}
		}
	}
	walk("", v)
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestFakeBuildsMetaShapes checks the fake's webhook builders against
// Meta's examples in testdata: the same keys (the fake may omit optional
// ones, never invent any).
func TestFakeBuildsMetaShapes(t *testing.T) {
	f := setup(t, 0)
	_, text := f.num.InboundText(customer, "Maria Souza", "oi")
	_, image := f.num.InboundImage(customer, "recibo")
	_, reply := f.num.InboundReply(customer, "Maria Souza", "sim", ourMessage)
	_, reaction := f.num.InboundReaction(customer, "Maria Souza", ourMessage, "👍")
	for _, tc := range []struct {
		name      string
		built     []byte
		file      string
		mayOmit   []string
		mustEqual bool
	}{
		{"text", text, "inbound_text.json", nil, true},
		{"image", image, "inbound_image.json", nil, true},
		{"reply", reply, "inbound_reply.json", nil, true},
		{"reaction", reaction, "inbound_reaction.json", nil, true},
		{"delivered", f.num.Status(ourMessage, customer, "delivered"), "status_delivered.json",
			[]string{".entry[].changes[].value.statuses[].pricing.type"}, false},
		{"read", f.num.Status(ourMessage, customer, "read"), "status_read.json", nil, true},
		{"failed", f.num.Status(ourMessage, customer, "failed"), "status_failed.json", nil, true},
	} {
		got, want := shape(t, tc.built), shape(t, testdata(t, tc.file))
		for _, k := range got {
			if !slices.Contains(want, k) {
				t.Errorf("%s: the fake invents %s, which %s does not have", tc.name, k, tc.file)
			}
		}
		for _, k := range want {
			if !slices.Contains(got, k) && !slices.Contains(tc.mayOmit, k) {
				t.Errorf("%s: the fake omits %s of %s", tc.name, k, tc.file)
			}
		}
	}
}

// TestFakeDeliveries drives a webhook endpoint like the gateway's with
// the fake's signed, unsigned, badly signed and replayed deliveries.
func TestFakeDeliveries(t *testing.T) {
	f := setup(t, 0)
	var mu sync.Mutex
	var got []event.Envelope
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		in, err := f.d.Webhook(r.Context(), f.acc, r, body)
		switch {
		case errors.Is(err, provider.ErrUnauthenticated):
			http.Error(w, "unauthenticated", http.StatusUnauthorized)
			return
		case err != nil:
			http.Error(w, "bad payload", http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, in.Events...)
		mu.Unlock()
	})
	ts := httptest.NewServer(h)
	defer ts.Close()
	ctx := context.Background()

	wamid, body := f.num.InboundText(customer, "Maria Souza", "Quero agendar")
	for name, deliver := range map[string]func() (int, error){
		"unsigned":      func() (int, error) { return f.srv.DeliverUnsigned(ctx, ts.URL, body) },
		"bad signature": func() (int, error) { return f.srv.DeliverBadSignature(ctx, ts.URL, body) },
	} {
		if code, err := deliver(); err != nil || code != http.StatusUnauthorized {
			t.Errorf("%s: %d %v, want 401", name, code, err)
		}
	}
	for range 2 { // a delivery and its replay
		if code, err := f.srv.Deliver(ctx, ts.URL, appSecret, body); err != nil || code != http.StatusOK {
			t.Fatalf("signed delivery: %d %v", code, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("%d events, want message+contact twice", len(got))
	}
	if got[0].ID != event.MessageEventID(mentorado, wamid) || got[0].ID != got[2].ID || got[1].ID != got[3].ID {
		t.Errorf("replay ids %s %s / %s %s", got[0].ID, got[1].ID, got[2].ID, got[3].ID)
	}
	if !strings.Contains(string(got[0].Data), "Quero agendar") {
		t.Errorf("message %s", got[0].Data)
	}
}
