package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Result is one scenario's report. The JSON form is stable: fields are
// only ever added. A metric is named with its unit as suffix
// (events_per_s, p99_ms, bytes_per_client, ...).
type Result struct {
	Scenario string    `json:"scenario"`
	Short    bool      `json:"short"`
	Started  time.Time `json:"started"`
	Commit   string    `json:"commit"`
	Machine  Machine   `json:"machine"`
	// Params are the workload's knobs (events, mentorados, rate, ...).
	Params map[string]any `json:"params"`
	// Metrics are what was measured on zapbus.
	Metrics map[string]float64 `json:"metrics"`
	// Baselines are what was measured in the same run on the raw parts
	// (JetStream publish, pgx.CopyFrom, ...), named like Metrics.
	Baselines map[string]float64 `json:"baselines,omitempty"`
	// Ratios are Metrics over Baselines, named "<metric>/<baseline>".
	Ratios map[string]float64 `json:"ratios,omitempty"`
	// Checks are correctness facts the run verified (a failed one fails
	// the run): "every message stored once": true.
	Checks map[string]bool `json:"checks,omitempty"`
	Notes  []string        `json:"notes,omitempty"`
}

// Machine says where a run was taken.
type Machine struct {
	CPUs   int    `json:"cpus"`
	OS     string `json:"os"`
	Arch   string `json:"arch"`
	Go     string `json:"go"`
	Kernel string `json:"kernel,omitempty"`
}

// NewResult starts a result; scenarios fill it.
func NewResult() *Result {
	return &Result{Started: time.Now().UTC(), Params: map[string]any{}, Metrics: map[string]float64{},
		Baselines: map[string]float64{}, Ratios: map[string]float64{}, Checks: map[string]bool{}}
}

// Ratio records metric/baseline under "<metric>/<baseline>".
func (r *Result) Ratio(metric, baseline string) float64 {
	b := r.Baselines[baseline]
	if b == 0 {
		return 0
	}
	v := r.Metrics[metric] / b
	r.Ratios[metric+"/"+baseline] = v
	return v
}

func (r *Result) fill() {
	r.Machine = Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Machine.Kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		r.Commit = strings.TrimSpace(string(out))
	}
}

// Print writes the result as a table.
func (r *Result) Print(w io.Writer) error {
	fmt.Fprintf(w, "\n== %s (commit %s, %d CPUs, short=%v)\n", r.Scenario, r.Commit, r.Machine.CPUs, r.Short)
	for _, k := range sortedKeys(r.Params) {
		fmt.Fprintf(w, "  param    %-36s %v\n", k, r.Params[k])
	}
	for _, k := range sortedKeys(r.Metrics) {
		fmt.Fprintf(w, "  metric   %-36s %.3f\n", k, r.Metrics[k])
	}
	for _, k := range sortedKeys(r.Baselines) {
		fmt.Fprintf(w, "  baseline %-36s %.3f\n", k, r.Baselines[k])
	}
	for _, k := range sortedKeys(r.Ratios) {
		fmt.Fprintf(w, "  ratio    %-36s %.3f\n", k, r.Ratios[k])
	}
	failed := 0
	for _, k := range sortedKeys(r.Checks) {
		mark := "ok"
		if !r.Checks[k] {
			mark = "FAILED"
			failed++
		}
		fmt.Fprintf(w, "  check    %-36s %s\n", k, mark)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note     %s\n", n)
	}
	if failed > 0 {
		return fmt.Errorf("%d correctness check(s) failed", failed)
	}
	return nil
}

// Append adds the result as one JSON line to path.
func (r *Result) Append(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(r)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
