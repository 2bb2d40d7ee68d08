package web

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The dashboard's languages: one catalog each, embedded with the assets.
var dashboardLangs = []string{"pt-BR", "en"}

func loadCatalog(t *testing.T, lang string) map[string]string {
	t.Helper()
	b, err := assetsFS.ReadFile("assets/i18n." + lang + ".json")
	if err != nil {
		t.Fatalf("catalog %s is not embedded: %v", lang, err)
	}
	var c map[string]string
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("catalog %s: want a flat JSON object of strings: %v", lang, err)
	}
	return c
}

var placeholderRE = regexp.MustCompile(`\{\w+\}`)

// TestCatalogsHaveTheSameKeys keeps the languages in step: a string added
// in one language only would show its key in the other.
func TestCatalogsHaveTheSameKeys(t *testing.T) {
	cats := map[string]map[string]string{}
	for _, l := range dashboardLangs {
		cats[l] = loadCatalog(t, l)
	}
	for _, a := range dashboardLangs {
		for _, b := range dashboardLangs {
			if a == b {
				continue
			}
			for _, k := range slices.Sorted(maps.Keys(cats[a])) {
				if _, ok := cats[b][k]; !ok {
					t.Errorf("key %q is in %s but not in %s", k, a, b)
				}
			}
		}
	}
	base := cats[dashboardLangs[0]]
	for _, k := range slices.Sorted(maps.Keys(base)) {
		want := slices.Sorted(slices.Values(placeholderRE.FindAllString(base[k], -1)))
		for _, l := range dashboardLangs {
			v, ok := cats[l][k]
			if !ok {
				continue
			}
			if strings.TrimSpace(v) == "" {
				t.Errorf("%s: %q is empty", l, k)
			}
			if got := slices.Sorted(slices.Values(placeholderRE.FindAllString(v, -1))); !slices.Equal(got, want) {
				t.Errorf("%s: %q has placeholders %v, %s has %v", l, k, got, dashboardLangs[0], want)
			}
		}
	}
}

// TestDashboardStringsAreInTheCatalogs checks every key the markup and the
// scripts use, and every value the page translates by prefix: connection
// statuses, message kinds and statuses, and every error code the API can
// answer with.
func TestDashboardStringsAreInTheCatalogs(t *testing.T) {
	used := map[string]string{} // key → where it is used
	// The dashboard and the operator console.
	for _, page := range []string{"index.html", "console.html"} {
		html, err := assetsFS.ReadFile("assets/" + page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`data-i18n(?:-[a-z-]+)?="([^"]*)"`).FindAllSubmatch(html, -1) {
			used[string(m[1])] = page
		}
	}
	for _, name := range []string{"app.js", "i18n.js", "console.js", "campaigns.js", "provider.js"} {
		js, err := assetsFS.ReadFile("assets/" + name)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`\bt\(\s*"([^"]+)"\s*[,)]`).FindAllSubmatch(js, -1) {
			used[string(m[1])] = name
		}
	}
	if len(used) < 20 {
		t.Fatalf("found only %d keys in the markup and scripts: is the pattern still right?", len(used))
	}

	eventConsts := goConsts(t, filepath.Join("..", "event"))
	for typ, prefixes := range map[string][]string{
		"Status":        {"status.", "hint."},
		"Kind":          {"kind."},
		"MessageStatus": {"msgstatus."},
	} {
		if len(eventConsts[typ]) == 0 {
			t.Fatalf("no constants of type event.%s found", typ)
		}
		for _, v := range eventConsts[typ] {
			for _, p := range prefixes {
				used[p+v] = "event." + typ
			}
		}
	}
	codes := apiErrorCodes(t)
	for _, c := range codes {
		used["error."+c] = "API error code"
	}
	for _, k := range []string{"error.generic", "error.network"} {
		used[k] = "I18N.error"
	}

	for _, l := range dashboardLangs {
		cat := loadCatalog(t, l)
		for _, k := range slices.Sorted(maps.Keys(used)) {
			if _, ok := cat[k]; !ok {
				t.Errorf("%s: key %q (used by %s) is missing", l, k, used[k])
			}
		}
	}
	// And nothing is kept that nothing uses (a key is used by name, or by
	// one of the prefixes above).
	for _, k := range slices.Sorted(maps.Keys(loadCatalog(t, dashboardLangs[0]))) {
		if _, ok := used[k]; !ok {
			t.Errorf("key %q is in the catalogs but nothing uses it", k)
		}
	}
}

// apiErrorCodes collects every error code the API can answer with: the
// HTTP layer's (code* constants of this package) and the commands'
// (event.Code*).
func apiErrorCodes(t *testing.T) []string {
	t.Helper()
	var codes []string
	for dir, prefix := range map[string]string{".": "code", filepath.Join("..", "event"): "Code"} {
		for name, v := range goStringConsts(t, dir) {
			if strings.HasPrefix(name, prefix) && len(name) > len(prefix) && name[len(prefix)] >= 'A' && name[len(prefix)] <= 'Z' {
				codes = append(codes, v)
			}
		}
	}
	slices.Sort(codes)
	codes = slices.Compact(codes)
	for _, want := range []string{"not_connected", "unauthorized", "rate_limited", "invalid_phone"} {
		if !slices.Contains(codes, want) {
			t.Fatalf("error code %q not found among %v: did the constants move?", want, codes)
		}
	}
	return codes
}

// goConsts returns the string constants of the non-test files in dir,
// grouped by their declared type name.
func goConsts(t *testing.T, dir string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	eachConst(t, dir, func(name, typ, val string) { out[typ] = append(out[typ], val) })
	return out
}

// goStringConsts returns the string constants of the non-test files in dir
// by name.
func goStringConsts(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	eachConst(t, dir, func(name, typ, val string) { out[name] = val })
	return out
}

func eachConst(t *testing.T, dir string, fn func(name, typ, val string)) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, err := parser.ParseFile(fset, f, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				typ := ""
				if id, ok := vs.Type.(*ast.Ident); ok {
					typ = id.Name
				}
				for i, name := range vs.Names {
					if i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					fn(name.Name, typ, v)
				}
			}
		}
	}
}

// TestDashboardMarkupHasNoWords: every word on the page comes from a
// catalog, so the markup carries keys, not text (the brand name aside), and
// no literal label, placeholder, alt or title.
func TestDashboardMarkupHasNoWords(t *testing.T) {
	for _, page := range []string{"index.html", "console.html"} {
		t.Run(page, func(t *testing.T) { testMarkupHasNoWords(t, page) })
	}
}

func testMarkupHasNoWords(t *testing.T, page string) {
	b, err := assetsFS.ReadFile("assets/" + page)
	if err != nil {
		t.Fatal(err)
	}
	html := regexp.MustCompile(`(?s)<!doctype[^>]*>`).ReplaceAllString(string(b), "")
	for _, m := range regexp.MustCompile(`>([^<]+)<`).FindAllStringSubmatch(html, -1) {
		if text := strings.TrimSpace(m[1]); text != "" && text != "zapbus" {
			t.Errorf("%s has hard-coded text %q: use data-i18n", page, text)
		}
	}
	for _, m := range regexp.MustCompile(`\s(placeholder|aria-label|alt|title)="[^"]*"`).FindAllString(html, -1) {
		t.Errorf("%s has a literal attribute%s: use data-i18n-%s", page, m, strings.SplitN(strings.TrimSpace(m), "=", 2)[0])
	}
	// Every control is labelled: by a <label for>, or a translated
	// aria-label, or its own translated text.
	labelled := map[string]bool{}
	for _, m := range regexp.MustCompile(`<label for="([^"]+)"`).FindAllStringSubmatch(html, -1) {
		labelled[m[1]] = true
	}
	for _, m := range regexp.MustCompile(`<(input|textarea|select|button)\b[^>]*>`).FindAllString(html, -1) {
		id := ""
		if s := regexp.MustCompile(`\sid="([^"]+)"`).FindStringSubmatch(m); s != nil {
			id = s[1]
		}
		if labelled[id] || strings.Contains(m, "data-i18n-aria-label=") || strings.Contains(m, `data-i18n="`) {
			continue
		}
		t.Errorf("control without a label: %s", m)
	}
}
