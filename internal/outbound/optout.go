package outbound

import (
	"strings"
	"unicode"
)

// MatchOptOut reports whether an inbound text opts its sender out: the
// whole message is one of keywords, ignoring case, accents, surrounding
// spaces, punctuation and symbols (emoji), and runs of inner spaces. It
// returns the keyword matched. A sentence that merely contains a keyword
// ("não quero sair agora") does not match.
func MatchOptOut(keywords []string, text string) (string, bool) {
	if len(text) > 200 { // no keyword is that long; skip folding long texts
		return "", false
	}
	t := optOutFold(text)
	if t == "" {
		return "", false
	}
	for _, k := range keywords {
		if optOutFold(k) == t {
			return k, true
		}
	}
	return "", false
}

// optOutFold lower-cases s, strips accents, drops punctuation and symbols
// and collapses spaces.
func optOutFold(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(s) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = false
			if f, ok := optOutAccents[r]; ok {
				r = f
			}
			b.WriteRune(r)
		case unicode.IsSpace(r):
			space = true
		default: // punctuation, symbols, emoji, joiners: ignored
		}
	}
	return b.String()
}

// optOutAccents folds the accented Latin letters of Portuguese, Spanish and
// French (enough for keywords; no Unicode normalisation table needed).
var optOutAccents = func() map[rune]rune {
	m := map[rune]rune{}
	for base, accented := range map[rune]string{
		'a': "áàâãäå", 'e': "éèêë", 'i': "íìîï", 'o': "óòôõö", 'u': "úùûü", 'c': "ç", 'n': "ñ", 'y': "ýÿ",
	} {
		for _, r := range accented {
			m[r] = base
		}
	}
	return m
}()
