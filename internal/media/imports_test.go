package media_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportsStayLow: media is a leaf next to event: the connector, the
// notifier, bus and store import it, so it imports nothing of zapbus but
// event and config (an import of bus or store here would be a cycle or
// drag Postgres into every user of a file store).
func TestImportsStayLow(t *testing.T) {
	const module = "github.com/zapbus/zapbus/"
	out, err := exec.Command("go", "list", "-deps", module+"internal/media").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{"internal/media": true, "internal/event": true, "internal/config": true}
	for _, dep := range strings.Fields(string(out)) {
		if rel, ok := strings.CutPrefix(dep, module); ok && !allowed[rel] {
			t.Errorf("internal/media depends on %s; it may import only internal/event and internal/config", rel)
		}
	}
}
