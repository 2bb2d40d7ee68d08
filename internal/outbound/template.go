package outbound

import (
	"fmt"
	"strings"
)

// templateVar is one {{…}} of a campaign text.
type templateVar struct {
	name     string // name, first_name, phone or field.<key>
	fallback string
	hasFB    bool
}

// templatePart is literal text or a variable.
type templatePart struct {
	text string
	v    *templateVar
}

// parseTemplate splits tmpl into literal text and variables.
func parseTemplate(tmpl string) ([]templatePart, error) {
	var parts []templatePart
	rest := tmpl
	for {
		open := strings.Index(rest, "{{")
		closeAt := strings.Index(rest, "}}")
		if open < 0 {
			if closeAt >= 0 {
				return nil, fmt.Errorf("\"}}\" without \"{{\"")
			}
			if rest != "" {
				parts = append(parts, templatePart{text: rest})
			}
			return parts, nil
		}
		if closeAt >= 0 && closeAt < open {
			return nil, fmt.Errorf("\"}}\" without \"{{\"")
		}
		if open > 0 {
			parts = append(parts, templatePart{text: rest[:open]})
		}
		body := rest[open+2:]
		end := strings.Index(body, "}}")
		if end < 0 {
			return nil, fmt.Errorf("unclosed \"{{\"")
		}
		inner := body[:end]
		if strings.Contains(inner, "{{") || strings.ContainsAny(inner, "{}") {
			return nil, fmt.Errorf("malformed variable {{%s}}", inner)
		}
		v, err := parseVar(inner)
		if err != nil {
			return nil, err
		}
		parts = append(parts, templatePart{v: v})
		rest = body[end+2:]
	}
}

func parseVar(inner string) (*templateVar, error) {
	name, fb, hasFB := strings.Cut(inner, "|")
	name = strings.TrimSpace(name)
	v := &templateVar{name: name, fallback: strings.TrimSpace(fb), hasFB: hasFB}
	switch name {
	case "name", "first_name", "phone":
		return v, nil
	}
	if key, ok := strings.CutPrefix(name, "field."); ok && validFieldKey(key) {
		return v, nil
	}
	return nil, fmt.Errorf("unknown variable {{%s}}: want name, first_name, phone or field.<key>", name)
}

func validFieldKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// CheckTemplate validates a campaign text: {{name}}, {{first_name}},
// {{phone}} and {{field.<key>}}, each with an optional fallback
// ({{first_name|amigo}}). An unknown variable or a malformed brace is a
// *FieldError on field.
func CheckTemplate(field, tmpl string) error {
	if _, err := parseTemplate(tmpl); err != nil {
		return &FieldError{Field: field, Msg: err.Error()}
	}
	return nil
}

// Render fills tmpl for one recipient (tmpl passed CheckTemplate). A
// variable with no value takes its fallback, or nothing.
func Render(tmpl string, v Vars) string {
	parts, err := parseTemplate(tmpl)
	if err != nil {
		return tmpl
	}
	var b strings.Builder
	for _, p := range parts {
		if p.v == nil {
			b.WriteString(p.text)
			continue
		}
		val := ""
		switch p.v.name {
		case "name":
			val = strings.TrimSpace(v.Name)
		case "first_name":
			val, _, _ = strings.Cut(strings.TrimSpace(v.Name), " ")
		case "phone":
			val = v.Phone
		default:
			val = strings.TrimSpace(v.Fields[strings.TrimPrefix(p.v.name, "field.")])
		}
		if val == "" {
			val = p.v.fallback
		}
		b.WriteString(val)
	}
	return b.String()
}
