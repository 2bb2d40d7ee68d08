package outbound

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/zapbus/zapbus/internal/event"
	"github.com/zapbus/zapbus/internal/store"
)

// Defaults are the settings of a mentorado that set none (values and
// their sources in docs/decisions/0020-outbox-pacing-campaigns.md).
func Defaults() Settings {
	return Settings{
		ChatPerMinute:     12,
		ChatBurst:         4,
		BulkMinGapSeconds: 20,
		BulkMaxGapSeconds: 60,
		DailyCap:          200,
		UnsolicitedBurst:  3,
		Typing:            true,
		TypingMinSeconds:  1,
		TypingMaxSeconds:  6,
		PauseAfterErrors:  5,
		QueueTTLSeconds:   6 * 3600,
		OptOutKeywords:    DefaultOptOutKeywords(),
	}
}

// DefaultOptOutKeywords are the opt-out words of a mentorado that set
// none, Portuguese and English (compared without case and accents).
func DefaultOptOutKeywords() []string {
	return []string{
		"SAIR", "PARAR", "PARE", "CANCELAR", "DESCADASTRAR", "REMOVER", "STOP",
		"UNSUBSCRIBE", "CANCEL", "REMOVE", "OPT OUT", "OPTOUT", "NAO QUERO MAIS",
		"NAO ENVIE MAIS", "STOP ALL", "END", "QUIT",
	}
}

// DefaultLimits are the operator maxima when the environment sets none.
func DefaultLimits() Limits {
	return Limits{
		MaxChatPerMinute:  60,
		MaxChatBurst:      20,
		MinBulkGapSeconds: 5,
		MaxDailyCap:       1000,
		MaxQueueTTL:       event.MaxTTLSeconds,
	}
}

// Bounds no setting passes whatever the operator says.
const (
	maxGapSeconds        = 3600 // a bulk gap longer than an hour is a mistake
	maxTypingSeconds     = 30
	maxPauseAfterErrors  = 100
	maxOptOutKeywords    = 50
	maxOptOutKeywordRune = 64
)

// Environment variables of the operator maxima (docs/operations.md).
const (
	EnvMaxChatPerMinute  = "ZAPBUS_SEND_MAX_CHAT_PER_MINUTE"
	EnvMaxChatBurst      = "ZAPBUS_SEND_MAX_CHAT_BURST"
	EnvMinBulkGapSeconds = "ZAPBUS_SEND_MIN_BULK_GAP_SECONDS"
	EnvMaxDailyCap       = "ZAPBUS_SEND_MAX_DAILY_CAP"
	EnvMaxQueueTTL       = "ZAPBUS_SEND_MAX_QUEUE_TTL_SECONDS"
)

// LimitsFromEnv reads the operator maxima from the environment
// (ZAPBUS_SEND_MAX_CHAT_PER_MINUTE, …; docs/operations.md), falling back
// to DefaultLimits.
func LimitsFromEnv(getenv func(string) string) (Limits, error) {
	l := DefaultLimits()
	num := func(name string, dst *float64, lo, hi float64) error {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || f < lo || f > hi {
			return fmt.Errorf("outbound: %s=%q: want a number from %g to %g", name, v, lo, hi)
		}
		*dst = f
		return nil
	}
	integer := func(name string, dst *int, lo, hi int) error {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("outbound: %s=%q: want an integer from %d to %d", name, v, lo, hi)
		}
		*dst = n
		return nil
	}
	for _, err := range []error{
		num(EnvMaxChatPerMinute, &l.MaxChatPerMinute, 1, 600),
		integer(EnvMaxChatBurst, &l.MaxChatBurst, 1, 1000),
		num(EnvMinBulkGapSeconds, &l.MinBulkGapSeconds, 0, maxGapSeconds),
		integer(EnvMaxDailyCap, &l.MaxDailyCap, 0, 1_000_000),
		integer(EnvMaxQueueTTL, &l.MaxQueueTTL, 1, event.MaxTTLSeconds),
	} {
		if err != nil {
			return DefaultLimits(), err
		}
	}
	return l, nil
}

// settingsFields maps each JSON name of Settings to its field index.
var settingsFields = func() map[string]int {
	t := reflect.TypeFor[Settings]()
	out := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out[name] = i
	}
	return out
}()

// Apply overlays a JSON merge-patch of settings on s and checks the result
// against l (a *FieldError when out of bounds, or an unknown field).
// A field set to null returns to its default (RFC 7396).
func (s Settings) Apply(patch json.RawMessage, l Limits) (Settings, error) {
	out, err := s.overlay(patch)
	if err != nil {
		return s, err
	}
	if err := out.Check(l); err != nil {
		return s, err
	}
	return out, nil
}

// overlay applies patch to s without checking bounds.
func (s Settings) overlay(patch json.RawMessage) (Settings, error) {
	fields, err := patchFields(patch)
	if err != nil {
		return s, err
	}
	out := s
	out.OptOutKeywords = append([]string(nil), s.OptOutKeywords...)
	dst := reflect.ValueOf(&out).Elem()
	def := reflect.ValueOf(Defaults())
	for name, raw := range fields {
		i, ok := settingsFields[name]
		if !ok {
			return s, &FieldError{Field: name, Msg: "unknown setting"}
		}
		if string(bytes.TrimSpace(raw)) == "null" {
			dst.Field(i).Set(def.Field(i))
			continue
		}
		v := reflect.New(dst.Field(i).Type())
		if err := json.Unmarshal(raw, v.Interface()); err != nil {
			return s, &FieldError{Field: name, Msg: "wrong type: want " + jsonKind(dst.Field(i).Type())}
		}
		dst.Field(i).Set(v.Elem())
	}
	return out, nil
}

// patchFields reads a merge-patch object (empty or null: no change).
func patchFields(patch json.RawMessage) (map[string]json.RawMessage, error) {
	p := bytes.TrimSpace(patch)
	if len(p) == 0 || string(p) == "null" {
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(p, &fields); err != nil {
		return nil, &FieldError{Field: "settings", Msg: "must be a JSON object"}
	}
	return fields, nil
}

// PatchOverrides merges patch into a mentorado's stored overrides (a JSON
// object; a null member removes the override) and returns the new
// overrides to store with the settings they make. The notifier's settings
// route stores overrides, not the whole settings, so a later change of the
// defaults reaches mentorados who did not set that field.
func PatchOverrides(stored, patch json.RawMessage, l Limits) (json.RawMessage, Settings, error) {
	cur, err := patchFields(stored)
	if err != nil {
		return nil, Settings{}, fmt.Errorf("outbound: stored settings: %w", err)
	}
	fields, err := patchFields(patch)
	if err != nil {
		return nil, Settings{}, err
	}
	if cur == nil {
		cur = map[string]json.RawMessage{}
	}
	for name, raw := range fields {
		if _, ok := settingsFields[name]; !ok {
			return nil, Settings{}, &FieldError{Field: name, Msg: "unknown setting"}
		}
		if string(bytes.TrimSpace(raw)) == "null" {
			delete(cur, name)
			continue
		}
		cur[name] = raw
	}
	merged, err := json.Marshal(cur)
	if err != nil {
		return nil, Settings{}, fmt.Errorf("outbound: settings: %w", err)
	}
	s, err := Defaults().Apply(merged, l)
	if err != nil {
		return nil, Settings{}, err
	}
	return merged, s, nil
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64:
		return "integer"
	case reflect.Float64:
		return "number"
	case reflect.Slice:
		return "array of strings"
	}
	return t.String()
}

// Check validates s against l.
func (s Settings) Check(l Limits) error {
	fe := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	bad := func(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }
	switch {
	case bad(s.ChatPerMinute) || s.ChatPerMinute <= 0 || s.ChatPerMinute > l.MaxChatPerMinute:
		return fe("chat_per_minute", "must be above 0 and at most %g", l.MaxChatPerMinute)
	case s.ChatBurst < 1 || s.ChatBurst > l.MaxChatBurst:
		return fe("chat_burst", "must be 1 to %d", l.MaxChatBurst)
	case bad(s.BulkMinGapSeconds) || s.BulkMinGapSeconds < l.MinBulkGapSeconds || s.BulkMinGapSeconds > maxGapSeconds:
		return fe("bulk_min_gap_seconds", "must be %g to %d", l.MinBulkGapSeconds, maxGapSeconds)
	case bad(s.BulkMaxGapSeconds) || s.BulkMaxGapSeconds < s.BulkMinGapSeconds || s.BulkMaxGapSeconds > maxGapSeconds:
		return fe("bulk_max_gap_seconds", "must be bulk_min_gap_seconds (%g) to %d", s.BulkMinGapSeconds, maxGapSeconds)
	case s.DailyCap < 0 || s.DailyCap > l.MaxDailyCap:
		return fe("daily_cap", "must be 0 to %d", l.MaxDailyCap)
	case s.UnsolicitedBurst < 1 || s.UnsolicitedBurst > l.MaxChatBurst:
		return fe("unsolicited_burst", "must be 1 to %d", l.MaxChatBurst)
	case bad(s.TypingMinSeconds) || s.TypingMinSeconds < 0 || s.TypingMinSeconds > maxTypingSeconds:
		return fe("typing_min_seconds", "must be 0 to %d", maxTypingSeconds)
	case bad(s.TypingMaxSeconds) || s.TypingMaxSeconds < s.TypingMinSeconds || s.TypingMaxSeconds > maxTypingSeconds:
		return fe("typing_max_seconds", "must be typing_min_seconds (%g) to %d", s.TypingMinSeconds, maxTypingSeconds)
	case s.PauseAfterErrors < 1 || s.PauseAfterErrors > maxPauseAfterErrors:
		return fe("pause_after_errors", "must be 1 to %d", maxPauseAfterErrors)
	case s.QueueTTLSeconds < 1 || s.QueueTTLSeconds > l.MaxQueueTTL:
		return fe("queue_ttl_seconds", "must be 1 to %d", l.MaxQueueTTL)
	case len(s.OptOutKeywords) > maxOptOutKeywords:
		return fe("opt_out_keywords", "at most %d keywords", maxOptOutKeywords)
	}
	for _, k := range s.OptOutKeywords {
		if optOutFold(k) == "" || utf8.RuneCountInString(k) > maxOptOutKeywordRune {
			return fe("opt_out_keywords", "each keyword must have a letter or digit and at most %d characters", maxOptOutKeywordRune)
		}
	}
	return nil
}

// Clamp brings s within l (settings stored under looser maxima than the
// operator's current ones): the worker sends under what it gets.
func (s Settings) Clamp(l Limits) Settings {
	s.ChatPerMinute = min(max(s.ChatPerMinute, 0.1), l.MaxChatPerMinute)
	s.ChatBurst = min(max(s.ChatBurst, 1), l.MaxChatBurst)
	s.BulkMinGapSeconds = min(max(s.BulkMinGapSeconds, l.MinBulkGapSeconds), maxGapSeconds)
	s.BulkMaxGapSeconds = min(max(s.BulkMaxGapSeconds, s.BulkMinGapSeconds), maxGapSeconds)
	s.DailyCap = min(max(s.DailyCap, 0), l.MaxDailyCap)
	s.UnsolicitedBurst = min(max(s.UnsolicitedBurst, 1), l.MaxChatBurst)
	s.TypingMinSeconds = min(max(s.TypingMinSeconds, 0), maxTypingSeconds)
	s.TypingMaxSeconds = min(max(s.TypingMaxSeconds, s.TypingMinSeconds), maxTypingSeconds)
	s.PauseAfterErrors = min(max(s.PauseAfterErrors, 1), maxPauseAfterErrors)
	s.QueueTTLSeconds = min(max(s.QueueTTLSeconds, 1), l.MaxQueueTTL)
	return s
}

// LoadSettings reads mentorado m's settings (Defaults overlaid with its
// stored overrides) and whether its bulk sending is paused. Overrides
// stored under other maxima are not checked here (Clamp bounds them).
func LoadSettings(ctx context.Context, db *store.DB, m int64) (Settings, store.SendSettingsRow, error) {
	row, err := db.SendSettings(ctx, m)
	if err != nil {
		return Defaults(), row, err
	}
	s, err := Defaults().overlay(row.Settings)
	if err != nil {
		return Defaults(), row, fmt.Errorf("outbound: mentorado %d settings: %w", m, err)
	}
	return s, row, nil
}

// Profiles are the named pacing profiles (careful, standard, fast).
func Profiles() map[string]Pacing {
	return map[string]Pacing{
		"careful":  {Profile: "careful", MinGapSeconds: 45, MaxGapSeconds: 120},
		"standard": {Profile: "standard", MinGapSeconds: 20, MaxGapSeconds: 60},
		"fast":     {Profile: "fast", MinGapSeconds: 8, MaxGapSeconds: 20},
	}
}

// ResolvePacing reads a campaign's pacing from the API: a profile name (a
// JSON string), a custom object, or nothing (the mentorado's bulk gap). A
// gap below l.MinBulkGapSeconds is a *FieldError.
func ResolvePacing(raw json.RawMessage, s Settings, l Limits) (Pacing, error) {
	fe := func(format string, args ...any) error {
		return &FieldError{Field: "pacing", Msg: fmt.Sprintf(format, args...)}
	}
	r := bytes.TrimSpace(raw)
	var p Pacing
	switch {
	case len(r) == 0 || string(r) == "null":
		p = Pacing{MinGapSeconds: s.BulkMinGapSeconds, MaxGapSeconds: s.BulkMaxGapSeconds}
	case r[0] == '"':
		var name string
		if err := json.Unmarshal(r, &name); err != nil {
			return Pacing{}, fe("not a valid string")
		}
		var ok bool
		if p, ok = Profiles()[strings.ToLower(strings.TrimSpace(name))]; !ok {
			return Pacing{}, fe("unknown profile %q: want careful, standard or fast", name)
		}
	case r[0] == '{':
		var c struct {
			MinGapSeconds *float64 `json:"min_gap_seconds"`
			MaxGapSeconds *float64 `json:"max_gap_seconds"`
		}
		dec := json.NewDecoder(bytes.NewReader(r))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return Pacing{}, fe("want {\"min_gap_seconds\": n, \"max_gap_seconds\": n}: %v", err)
		}
		if c.MinGapSeconds == nil || c.MaxGapSeconds == nil {
			return Pacing{}, fe("min_gap_seconds and max_gap_seconds are both required")
		}
		p = Pacing{MinGapSeconds: *c.MinGapSeconds, MaxGapSeconds: *c.MaxGapSeconds}
	default:
		return Pacing{}, fe("want a profile name (careful, standard, fast) or {min_gap_seconds, max_gap_seconds}")
	}
	switch {
	case math.IsNaN(p.MinGapSeconds) || math.IsNaN(p.MaxGapSeconds):
		return Pacing{}, fe("gaps must be numbers")
	case p.MinGapSeconds < l.MinBulkGapSeconds:
		return Pacing{}, fe("min_gap_seconds %g is below the operator's minimum of %g", p.MinGapSeconds, l.MinBulkGapSeconds)
	case p.MaxGapSeconds < p.MinGapSeconds:
		return Pacing{}, fe("max_gap_seconds must be at least min_gap_seconds")
	case p.MaxGapSeconds > maxGapSeconds:
		return Pacing{}, fe("max_gap_seconds must be at most %d", maxGapSeconds)
	}
	return p, nil
}
