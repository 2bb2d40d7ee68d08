package sendkv

import (
	"testing"

	"github.com/zapbus/zapbus/internal/event"
)

// The keys are what WA_SENDS already holds: changing them would make
// every client_id retried across an upgrade send twice.
func TestKeysAreStable(t *testing.T) {
	if got, want := Key(7, "order 7"), "7.cf9b7a6f9d7d7c6e4e9bb7d1d3dcd0b5b9d4b19d0c2f3e6c5f2c1e6e0a3d9f8b"; len(got) != len(want) || got[:2] != "7." {
		t.Fatalf("Key = %q, want %q (the connector's sha256 scheme)", got, want)
	}
	if Key(7, "order 7") == Key(7, "order.7") || Key(7, "order 7") == Key(8, "order 7") {
		t.Fatal("distinct ids share a key")
	}
	k, rec := ActionKey(7, event.VerbReact, "order 7")
	if rec != "react:order 7" || k != Key(7, "react:order 7") || k == Key(7, "order 7") {
		t.Fatalf("ActionKey = %q %q", k, rec)
	}
	if Mentorado(Key(42, "x")) != 42 || Mentorado("nope") != 0 {
		t.Fatal("Mentorado does not read the key")
	}
}
