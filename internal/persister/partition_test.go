package persister

import (
	"testing"

	"github.com/zapbus/zapbus/internal/event"
)

// TestPartitionKeepsTenantsWhole: every mentorado's events land in one
// part, in stream order, and nothing is lost or repeated; one partition is
// the batch itself.
func TestPartitionKeepsTenantsWhole(t *testing.T) {
	var evs []decoded
	for i := range 1000 {
		evs = append(evs, decoded{idx: i, seq: uint64(i + 1), env: event.Envelope{MentoradoID: int64(i*7%23 + 1)}})
	}
	if parts := partition(evs, 1); len(parts) != 1 || len(parts[0]) != len(evs) {
		t.Fatalf("one partition: %d parts", len(parts))
	}
	parts := partition(evs, 4)
	if len(parts) != 4 {
		t.Fatalf("%d parts, want 4 (23 mentorados)", len(parts))
	}
	owner := map[int64]int{}
	seen := 0
	for p, part := range parts {
		last := uint64(0)
		for _, e := range part {
			if o, ok := owner[e.env.MentoradoID]; ok && o != p {
				t.Fatalf("mentorado %d in parts %d and %d", e.env.MentoradoID, o, p)
			}
			owner[e.env.MentoradoID] = p
			if e.seq <= last {
				t.Fatalf("part %d out of stream order: %d after %d", p, e.seq, last)
			}
			last = e.seq
			seen++
		}
	}
	if seen != len(evs) {
		t.Fatalf("%d events in the parts, want %d", seen, len(evs))
	}
	if parts := partition(evs[:3], 64); len(parts) != 3 {
		t.Fatalf("empty parts kept: %d parts for 3 mentorados", len(parts))
	}
}
