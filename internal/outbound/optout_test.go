package outbound

import "testing"

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
