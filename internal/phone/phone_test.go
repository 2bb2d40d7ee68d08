package phone

import (
	"errors"
	"slices"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"+55 (11) 98765-4321", "5511987654321"},
		{"11 98765-4321", "5511987654321"},
		{"(11) 98765.4321", "5511987654321"},
		{"5511987654321", "5511987654321"},
		{"005511987654321", "5511987654321"},
		{"+55 11 8765-4321", "551187654321"}, // legacy mobile without the 9th digit
		{"1187654321", "551187654321"},
		{"551187654321", "551187654321"},
		{"+55 11 3456-7890", "551134567890"}, // São Paulo landline
		{"11 3456-7890", "551134567890"},
		{"+55 21 2345-6789", "552123456789"}, // Rio landline
		{"+1 (415) 555-2671", "14155552671"},
		{"+44 20 7946 0958", "442079460958"},
		{"+351 912 345 678", "351912345678"},
		{"14155552671", "14155552671"},
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if err != nil {
			t.Errorf("Normalize(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNormalizeRegion(t *testing.T) {
	got, err := Normalizer{Region: "US"}.Normalize("(415) 555-2671")
	if err != nil || got != "14155552671" {
		t.Fatalf("US national: %q, %v", got, err)
	}
}

func TestNormalizeRejects(t *testing.T) {
	for _, in := range []string{"", "   ", "abc", "123", "+55", "55119876543210000", "5511abc87654", "+999 1234", "javascript:alert(1)", "0000000000", "+55 11 1234-5678"} {
		got, err := Normalize(in)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("Normalize(%q) = %q, %v; want ErrInvalid", in, got, err)
		}
	}
}

func TestFromJID(t *testing.T) {
	tests := map[string]string{
		"5511987654321@s.whatsapp.net":    "5511987654321",
		"5511987654321:12@s.whatsapp.net": "5511987654321",
		"123456789012345@lid":             "",
		"120363025246125888@g.us":         "",
		"status@broadcast":                "",
		"garbage":                         "",
		"abc@s.whatsapp.net":              "",
	}
	for in, want := range tests {
		if got := FromJID(in); got != want {
			t.Errorf("FromJID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBrazilVariants(t *testing.T) {
	tests := map[string][]string{
		"5511987654321": {"5511987654321", "551187654321"},
		"551187654321":  {"551187654321", "5511987654321"},
		"551134567890":  {"551134567890"},
		"14155552671":   {"14155552671"},
	}
	for in, want := range tests {
		if got := BrazilVariants(in); !slices.Equal(got, want) {
			t.Errorf("BrazilVariants(%q) = %v, want %v", in, got, want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"+55 11 98765-4321", "11987654321", "abc", "", "00", "+", "5511987654321"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Normalize(s)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if len(got) < 8 || len(got) > 15 {
			t.Fatalf("Normalize(%q) = %q: length", s, got)
		}
		// Idempotent: normalising the output again gives the same digits.
		again, err := Normalize("+" + got)
		if err != nil || again != got {
			t.Fatalf("Normalize(+%q) = %q, %v; not idempotent", got, again, err)
		}
	})
}
