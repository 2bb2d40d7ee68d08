// Package config reads process settings from the environment for the mains
// in cmd/: each setting is an environment variable (NAME, or NAME_FILE whose
// file holds the value, for secrets), later overridable by a flag. Problems
// are collected so a process reports every bad setting at once, each naming
// its variable.
package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Env reads settings through getenv.
type Env struct {
	getenv func(string) string
	errs   []error
}

// NewEnv returns an Env reading through getenv (os.Getenv in production).
func NewEnv(getenv func(string) string) *Env { return &Env{getenv: getenv} }

// String returns NAME_FILE's contents (trimmed) when set, else NAME, else def.
func (e *Env) String(name, def string) string {
	if f := e.getenv(name + "_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s_FILE: %w", name, err))
			return def
		}
		return strings.TrimSpace(string(b))
	}
	if v := e.getenv(name); v != "" {
		return v
	}
	return def
}

// Duration parses a positive Go duration ("15s", "2h").
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v := e.String(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.errs = append(e.errs, fmt.Errorf("%s: want a positive duration, got %q", name, v))
		return def
	}
	return d
}

// Int parses a positive integer.
func (e *Env) Int(name string, def int) int {
	v := e.String(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		e.errs = append(e.errs, fmt.Errorf("%s: want a positive integer, got %q", name, v))
		return def
	}
	return n
}

// Rate parses a positive number (events per second), or "off", which
// returns -1: the convention of settings where a negative value turns a
// limit off.
func (e *Env) Rate(name string, def float64) float64 {
	v := e.String(name, "")
	switch v {
	case "":
		return def
	case "off":
		return -1
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		e.errs = append(e.errs, fmt.Errorf("%s: want a positive number or off, got %q", name, v))
		return def
	}
	return f
}

// Cap parses a positive integer, or "off", which returns -1.
func (e *Env) Cap(name string, def int) int {
	if e.String(name, "") == "off" {
		return -1
	}
	return e.Int(name, def)
}

// Err returns every problem met so far, joined.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// LogLevel parses ZAPBUS_LOG_LEVEL's value.
func LogLevel(v string) (zerolog.Level, error) {
	lvl, err := zerolog.ParseLevel(v)
	if err != nil || v == "" {
		return zerolog.InfoLevel, fmt.Errorf("ZAPBUS_LOG_LEVEL: unknown level %q (want debug, info, warn or error)", v)
	}
	return lvl, nil
}

// Bytes parses a positive size: a number of bytes with an optional unit,
// decimal (KB, MB, GB: powers of 1000) or binary (KiB, MiB, GiB: powers of
// 1024), e.g. "16MiB", "100MB", "524288".
func (e *Env) Bytes(name string, def int64) int64 {
	v := e.String(name, "")
	if v == "" {
		return def
	}
	n, err := ParseBytes(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %w", name, err))
		return def
	}
	return n
}

// ParseBytes parses a positive size as Env.Bytes does.
func ParseBytes(v string) (int64, error) {
	s := strings.TrimSpace(v)
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(s[len(num):])
	mult := map[string]int64{
		"": 1, "B": 1,
		"KB": 1e3, "MB": 1e6, "GB": 1e9,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30,
	}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || mult == 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("want a positive size such as 16MiB, 100MB or 524288 (bytes), got %q", v)
	}
	return n * mult, nil
}
