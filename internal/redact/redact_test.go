package redact

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestPhone(t *testing.T) {
	for in, want := range map[string]string{
		"5521911112222":       "55219****2222",
		"552111112222":        "55211***2222",
		"+55 (21) 91111-2222": "+55 (21) 9****-2222",
		"11987654":            "11****54",
		"12345":               "*****",
		"":                    "",
	} {
		if got := Phone(in); got != want {
			t.Errorf("Phone(%q) = %q, want %q", in, got, want)
		}
	}
}

// JIDs and LIDs in a text keep their device and server.
func TestJIDInText(t *testing.T) {
	for in, want := range map[string]string{
		"5521911112222@s.whatsapp.net":     "55219****2222@s.whatsapp.net",
		"5521911112222:3@s.whatsapp.net":   "55219****2222:3@s.whatsapp.net",
		"123456789012345:7@lid":            "12345******2345:7@lid",
		"5521911112222.0:3@s.whatsapp.net": "55219****2222.0:3@s.whatsapp.net",
	} {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestText(t *testing.T) {
	for in, want := range map[string]string{
		"Successfully paired 5521911112222:1@s.whatsapp.net": "Successfully paired 55219****2222:1@s.whatsapp.net",
		"lid 95521911112222:1@lid and 5511987654321":         "lid 95521*****2222:1@lid and 55119****4321",
		"message 3EB0C431D8A1B2C3D4E5 seq 42":                "message 3EB0C431D8A1B2C3D4E5 seq 42",
		"group 120363012345678901@g.us":                      "group 120363012345678901@g.us",
	} {
		if got := Text(in); got != want {
			t.Errorf("Text(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzText(f *testing.F) {
	f.Add("5521911112222:1@s.whatsapp.net")
	f.Add("+55 21 91111-2222 x 1234567890123456")
	run := regexp.MustCompile(`\b\d{10,15}\b`)
	f.Fuzz(func(t *testing.T, s string) {
		got := Text(s)
		if len(got) != len(s) {
			t.Fatalf("length changed: %q -> %q", s, got)
		}
		if m := run.FindString(got); m != "" && strings.Count(m, "*") == 0 {
			t.Fatalf("phone-like %q left in %q", m, got)
		}
	})
}

// A logger writing through Writer masks numbers at info and above and
// keeps them at debug.
func TestWriter(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(Writer(&buf)).Level(zerolog.DebugLevel)
	log.Debug().Str("jid", "5521911112222:1@s.whatsapp.net").Msg("debug 5521911112222")
	log.Info().Str("phone", "5521911112222").Msg("info")
	log.Error().Str("err", "send to 5521911112222@s.whatsapp.net failed").Msg("error")
	log.Log().Msg("no level 5521911112222")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("lines %q", lines)
	}
	if strings.Count(lines[0], "5521911112222") != 2 {
		t.Errorf("debug line lost the full number: %s", lines[0])
	}
	for _, l := range lines[1:] {
		if strings.Contains(l, "5521911112222") || !strings.Contains(l, "55219****2222") {
			t.Errorf("line above debug not masked: %s", l)
		}
	}
}
