package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReportIsStableJSON(t *testing.T) {
	r := NewResult()
	r.Scenario = "x"
	r.Metrics["events_per_s"] = 100
	r.Baselines["copy_rows_per_s"] = 400
	if got := r.Ratio("events_per_s", "copy_rows_per_s"); got != 0.25 {
		t.Fatalf("ratio %v", got)
	}
	r.Checks["stored once"] = true
	path := filepath.Join(t.TempDir(), "r.json")
	if err := r.Append(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var back map[string]any
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "started", "machine", "params", "metrics", "baselines", "ratios", "checks"} {
		if _, ok := back[k]; !ok {
			t.Errorf("report lacks %q: %s", k, b)
		}
	}
	r.Checks["lost nothing"] = false
	var out bytes.Buffer
	if err := r.Print(&out); err == nil || !strings.Contains(out.String(), "FAILED") {
		t.Fatalf("a failed check must fail the run: %v\n%s", err, out.String())
	}
}

func TestUnknownScenario(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"nope"}, &out); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Fatalf("got %v", err)
	}
}
