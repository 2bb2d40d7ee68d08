package outbound

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
)

func fieldOf(t *testing.T, err error) string {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("want a *FieldError, got %v", err)
	}
	return fe.Field
}

func TestDefaultsPassTheirLimits(t *testing.T) {
	if err := Defaults().Check(DefaultLimits()); err != nil {
		t.Fatalf("defaults out of the default limits: %v", err)
	}
	for name, p := range Profiles() {
		if p.Profile != name {
			t.Errorf("profile %s names itself %q", name, p.Profile)
		}
		if _, err := ResolvePacing(json.RawMessage(`"`+name+`"`), Defaults(), DefaultLimits()); err != nil {
			t.Errorf("profile %s out of the default limits: %v", name, err)
		}
	}
	if d := Defaults(); d.DailyCap >= 250 {
		t.Errorf("daily cap %d: stay under Meta's 250 of a new number", d.DailyCap)
	}
}

func TestLimitsFromEnv(t *testing.T) {
	env := map[string]string{
		EnvMaxChatPerMinute:  "30",
		EnvMaxChatBurst:      "8",
		EnvMinBulkGapSeconds: "12.5",
		EnvMaxDailyCap:       "400",
		EnvMaxQueueTTL:       "3600",
	}
	l, err := LimitsFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{MaxChatPerMinute: 30, MaxChatBurst: 8, MinBulkGapSeconds: 12.5, MaxDailyCap: 400, MaxQueueTTL: 3600}
	if l != want {
		t.Fatalf("limits %+v, want %+v", l, want)
	}
	l, err = LimitsFromEnv(func(string) string { return "" })
	if err != nil || l != DefaultLimits() {
		t.Fatalf("empty env: %+v %v", l, err)
	}
	for k, v := range map[string]string{EnvMaxChatBurst: "x", EnvMaxDailyCap: "-1", EnvMaxQueueTTL: "999999999", EnvMinBulkGapSeconds: "NaN"} {
		if _, err := LimitsFromEnv(func(n string) string {
			if n == k {
				return v
			}
			return ""
		}); err == nil {
			t.Errorf("%s=%s accepted", k, v)
		}
	}
}

func TestApply(t *testing.T) {
	l := DefaultLimits()
	s, err := Defaults().Apply(json.RawMessage(`{"daily_cap": 50, "typing": false, "opt_out_keywords": ["tchau"]}`), l)
	if err != nil {
		t.Fatal(err)
	}
	if s.DailyCap != 50 || s.Typing || !slices.Equal(s.OptOutKeywords, []string{"tchau"}) || s.ChatBurst != Defaults().ChatBurst {
		t.Fatalf("applied %+v", s)
	}
	// null returns a field to its default (merge patch).
	s2, err := s.Apply(json.RawMessage(`{"daily_cap": null, "opt_out_keywords": null}`), l)
	if err != nil {
		t.Fatal(err)
	}
	if s2.DailyCap != Defaults().DailyCap || !slices.Equal(s2.OptOutKeywords, DefaultOptOutKeywords()) || s2.Typing {
		t.Fatalf("null patch: %+v", s2)
	}
	if s, err := s.Apply(nil, l); err != nil || s.DailyCap != 50 {
		t.Fatalf("empty patch: %+v %v", s, err)
	}
	for patch, field := range map[string]string{
		`{"daily_cap": 5000}`:           "daily_cap",
		`{"nope": 1}`:                   "nope",
		`{"chat_per_minute": 0}`:        "chat_per_minute",
		`{"chat_per_minute": 61}`:       "chat_per_minute",
		`{"chat_burst": 21}`:            "chat_burst",
		`{"bulk_min_gap_seconds": 1}`:   "bulk_min_gap_seconds",
		`{"bulk_min_gap_seconds": 90}`:  "bulk_max_gap_seconds", // above the default max
		`{"typing_max_seconds": 0.5}`:   "typing_max_seconds",
		`{"pause_after_errors": 0}`:     "pause_after_errors",
		`{"queue_ttl_seconds": 0}`:      "queue_ttl_seconds",
		`{"queue_ttl_seconds": 604801}`: "queue_ttl_seconds",
		`{"typing": "yes"}`:             "typing",
		`{"opt_out_keywords": ["!!!"]}`: "opt_out_keywords",
		`[1]`:                           "settings",
	} {
		if _, err := Defaults().Apply(json.RawMessage(patch), l); fieldOf(t, err) != field {
			t.Errorf("%s: field %q, want %q", patch, fieldOf(t, err), field)
		}
	}
}

func TestPatchOverrides(t *testing.T) {
	l := DefaultLimits()
	stored, s, err := PatchOverrides(json.RawMessage(`{"daily_cap": 50}`), json.RawMessage(`{"typing": false}`), l)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(stored, &got); err != nil || len(got) != 2 || got["typing"] != false || got["daily_cap"] != 50.0 {
		t.Fatalf("stored %s", stored)
	}
	if s.DailyCap != 50 || s.Typing {
		t.Fatalf("settings %+v", s)
	}
	stored, s, err = PatchOverrides(stored, json.RawMessage(`{"daily_cap": null}`), l)
	if err != nil || string(stored) != `{"typing":false}` || s.DailyCap != Defaults().DailyCap {
		t.Fatalf("removing an override: %s %+v %v", stored, s, err)
	}
	if _, _, err := PatchOverrides(stored, json.RawMessage(`{"daily_cap": 1e9}`), l); fieldOf(t, err) != "daily_cap" {
		t.Fatal(err)
	}
}

func TestClamp(t *testing.T) {
	l := Limits{MaxChatPerMinute: 5, MaxChatBurst: 2, MinBulkGapSeconds: 30, MaxDailyCap: 10, MaxQueueTTL: 60}
	s := Defaults().Clamp(l)
	if err := s.Check(l); err != nil {
		t.Fatalf("clamped settings fail: %v (%+v)", err, s)
	}
	if s.BulkMinGapSeconds != 30 || s.BulkMaxGapSeconds != 60 || s.DailyCap != 10 {
		t.Fatalf("clamped %+v", s)
	}
}

func TestResolvePacing(t *testing.T) {
	l := DefaultLimits()
	s := Defaults()
	p, err := ResolvePacing(json.RawMessage(`"careful"`), s, l)
	if err != nil || p != Profiles()["careful"] {
		t.Fatalf("careful: %+v %v", p, err)
	}
	p, err = ResolvePacing(nil, s, l)
	if err != nil || p.MinGapSeconds != s.BulkMinGapSeconds || p.MaxGapSeconds != s.BulkMaxGapSeconds {
		t.Fatalf("empty: %+v %v", p, err)
	}
	p, err = ResolvePacing(json.RawMessage(`{"min_gap_seconds": 10, "max_gap_seconds": 15}`), s, l)
	if err != nil || p.MinGapSeconds != 10 || p.MaxGapSeconds != 15 || p.Profile != "" {
		t.Fatalf("custom: %+v %v", p, err)
	}
	strict := l
	strict.MinBulkGapSeconds = 10
	for _, raw := range []string{
		`"turbo"`, `{"min_gap_seconds": 20, "max_gap_seconds": 10}`, `{"min_gap_seconds": 1, "max_gap_seconds": 10}`,
		`{"min_gap_seconds": 10}`, `{"min_gap_seconds": 10, "max_gap_seconds": 20, "x": 1}`, `42`,
		`{"min_gap_seconds": 10, "max_gap_seconds": 99999}`, `"fast"`, // fast's 8 s is below this operator's 10 s
	} {
		if _, err := ResolvePacing(json.RawMessage(raw), s, strict); fieldOf(t, err) != "pacing" {
			t.Errorf("%s: %v", raw, err)
		}
	}
}
