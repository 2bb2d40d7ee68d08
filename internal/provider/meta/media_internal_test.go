package meta

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/provider"
)

func TestDecodeSHA256(t *testing.T) {
	sum := sha256.Sum256([]byte("file"))
	for _, s := range []string{hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString(sum[:]),
		base64.RawStdEncoding.EncodeToString(sum[:]), base64.URLEncoding.EncodeToString(sum[:])} {
		got, ok := decodeSHA256(s)
		if !ok || string(got) != string(sum[:]) {
			t.Errorf("%q: %x %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "abc", strings.Repeat("z", 64), base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, ok := decodeSHA256(s); ok {
			t.Errorf("%q decoded", s)
		}
	}
}

// TestFetchMediaChecksSHA256: a download that does not match Meta's
// sha256 is refused.
func TestFetchMediaChecksSHA256(t *testing.T) {
	data := []byte("the real file")
	var srv *httptest.Server
	claimed := sha256.Sum256([]byte("another file"))
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-123456" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/v21.0/555":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"url":"` + srv.URL + `/dl/555","mime_type":"image/png","sha256":"` +
				base64.StdEncoding.EncodeToString(claimed[:]) + `","file_size":13,"id":"555"}`))
		case "/dl/555":
			_, _ = w.Write(data)
		}
	}))
	defer srv.Close()
	d := New(Config{BaseURL: srv.URL + "/v21.0"})
	acc := provider.Account{Mentorado: 1, Meta: &provider.MetaCredentials{PhoneNumberID: "1", AccessToken: "tok-123456"}}
	_, _, err := d.FetchMedia(context.Background(), acc, provider.MediaRef{ProviderID: "555"}, 1<<20)
	if ce, ok := err.(*event.CommandError); !ok || ce.Code != event.CodeProviderError || !strings.Contains(ce.Message, "sha256") {
		t.Fatalf("%v, want a sha256 mismatch", err)
	}
	claimed = sha256.Sum256(data) // a numeric file_size and a matching sum pass
	got, mimeType, err := d.FetchMedia(context.Background(), acc, provider.MediaRef{ProviderID: "555"}, 1<<20)
	if err != nil || string(got) != string(data) || mimeType != "image/png" {
		t.Fatalf("%q %s %v", got, mimeType, err)
	}
}
