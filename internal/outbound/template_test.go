package outbound

import (
	"strings"
	"testing"
)

func TestRender(t *testing.T) {
	v := Vars{Name: "  Maria Silva ", Phone: "5511987654321", Fields: map[string]string{"cidade": "Recife"}}
	for tmpl, want := range map[string]string{
		"Oi {{first_name}}!":                     "Oi Maria!",
		"{{name}} de {{field.cidade}}":           "Maria Silva de Recife",
		"tel {{ phone }}":                        "tel 5511987654321",
		"{{field.idade|?}} anos":                 "? anos",
		"{{field.idade}}.":                       ".",
		"sem variáveis { chaves } simples":       "sem variáveis { chaves } simples",
		"{{first_name|amigo}}, {{name|cliente}}": "Maria, Maria Silva",
	} {
		if err := CheckTemplate("text", tmpl); err != nil {
			t.Fatalf("%q: %v", tmpl, err)
		}
		if got := Render(tmpl, v); got != want {
			t.Errorf("Render(%q) = %q, want %q", tmpl, got, want)
		}
	}
	if got := Render("Olá {{first_name|amigo}}", Vars{}); got != "Olá amigo" {
		t.Errorf("fallback: %q", got)
	}
}

func TestCheckTemplateRejects(t *testing.T) {
	for _, tmpl := range []string{
		"Oi {{nome}}", "Oi {{first_name", "Oi first_name}}", "{{field.}}", "{{field.a b}}",
		"{{ {{name}} }}", "{{}}", "{{name}", "{{field.x|{y}}}",
	} {
		if f := fieldOf(t, CheckTemplate("message.text", tmpl)); f != "message.text" {
			t.Errorf("%q: field %q", tmpl, f)
		}
	}
}

// FuzzTemplate: whatever a campaign text is, CheckTemplate answers, and a
// text it accepts renders without panicking and without a leftover "{{".
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"Oi {{first_name|amigo}}", "{{field.cidade}}", "{{", "}}", "{{{name}}}", "a{b}c", "{{ phone }}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tmpl string) {
		if CheckTemplate("text", tmpl) != nil {
			return
		}
		out := Render(tmpl, Vars{Name: "Ana Lima", Phone: "5511987654321", Fields: map[string]string{"x": "y"}})
		if strings.Contains(out, "{{") {
			t.Fatalf("Render(%q) = %q keeps a variable", tmpl, out)
		}
	})
}
