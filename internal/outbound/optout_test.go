package outbound

import (
	"strings"
	"testing"
	"unicode"
)

func TestMatchOptOut(t *testing.T) {
	kw := DefaultOptOutKeywords()
	for _, text := range []string{"Sair", " sair! ", "PARAR", "stop", "Descadastrar", "descadastrar.", "🚫 SAIR 🚫",
		"Não quero mais", "nao   quero mais!!", "UNSUBSCRIBE", "Opt-out", "cancelar"} {
		if _, ok := MatchOptOut(kw, text); !ok {
			t.Errorf("%q should opt out", text)
		}
	}
	for _, text := range []string{"não quero sair agora", "sair?? não, quero saber mais", "stopped", "", "🙂", "pararam de chegar"} {
		if k, ok := MatchOptOut(kw, text); ok {
			t.Errorf("%q matched %q", text, k)
		}
	}
	if k, ok := MatchOptOut([]string{"Tchau Já"}, "TCHAU JA"); !ok || k != "Tchau Já" {
		t.Errorf("custom keyword with an accent: %q %v", k, ok)
	}
}

// FuzzMatchOptOut: any keyword surrounded by spaces, punctuation and emoji,
// in any case, still matches; nothing panics.
func FuzzMatchOptOut(f *testing.F) {
	f.Add("sair", "  ", "!!")
	f.Add("STOP", "🚫", ".")
	f.Fuzz(func(t *testing.T, kw, pre, post string) {
		if optOutFold(kw) == "" || strings.ContainsFunc(pre+post, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) {
			return
		}
		if _, ok := MatchOptOut([]string{kw}, pre+strings.ToUpper(kw)+post); !ok && len(pre+kw+post) <= 200 && strings.ToLower(strings.ToUpper(kw)) == strings.ToLower(kw) {
			t.Fatalf("%q around %q did not match", pre+post, kw)
		}
	})
}
