package event

import "testing"

// Every row of the registry builds the payload of its own type, and no type
// is listed twice: a copy-pasted row would decode one type into another's
// payload.
func TestRegistryRows(t *testing.T) {
	seen := map[Type]bool{}
	for _, r := range registry {
		if seen[r.typ] {
			t.Errorf("type %q listed twice", r.typ)
		}
		seen[r.typ] = true
		if got := r.payload().EventType(); got != r.typ {
			t.Errorf("row %q builds a %q payload", r.typ, got)
		}
	}
	if len(Types) != len(registry) {
		t.Errorf("Types has %d entries, registry %d", len(Types), len(registry))
	}
}
