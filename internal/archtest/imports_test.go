package archtest

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/zapbus/zapbus"

// pkg is what go list says of one package of the module: its direct and
// transitive imports of production code (test files not included).
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
}

// listPackages runs go list over the whole module.
func listPackages(t *testing.T) map[string]pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json=ImportPath,Imports,Deps", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	pkgs := map[string]pkg{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs[strings.TrimPrefix(p.ImportPath, module+"/")] = p
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages; is the test running inside the module?", len(pkgs))
	}
	return pkgs
}

// rule forbids packages matching from to depend (directly or through
// others) on packages matching any of deny.
type rule struct {
	name   string
	from   func(path string) bool
	deny   []string // module-relative paths or external module prefixes; a prefix matches its subpackages
	except map[string]string
}

func under(prefix string) func(string) bool {
	return func(p string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
}

func matches(dep, pattern string) bool {
	dep = strings.TrimPrefix(dep, module+"/")
	return dep == pattern || strings.HasPrefix(dep, pattern+"/")
}

// rules are the import rules that hold today (issue #10). Exceptions are
// explicit, each with why it is there on purpose.
var rules = []rule{
	{
		name: "event is the wire contract and imports nothing else from zapbus",
		from: under("internal/event"),
		deny: []string{"internal", "cmd"},
	},
	{
		name: "persister and web never see WhatsApp: no whatsmeow, waconv or connector",
		from: func(p string) bool { return under("internal/persister")(p) || under("internal/web")(p) },
		deny: []string{"go.mau.fi/whatsmeow", "internal/waconv", "internal/connector"},
	},
	{
		name: "outbound (outbox, pacer, campaigns) never sees WhatsApp: the session gives it a Sender",
		from: under("internal/outbound"),
		deny: []string{"go.mau.fi/whatsmeow", "internal/waconv", "internal/connector", "internal/web", "internal/persister"},
	},
	{
		name: "the provider gateway and its drivers never see WhatsApp Web: no whatsmeow, waconv or connector (issue #16)",
		from: func(p string) bool {
			return under("internal/gateway")(p) || under("internal/provider")(p) || under("internal/sendkv")(p) || p == "cmd/gateway"
		},
		deny: []string{"go.mau.fi/whatsmeow", "internal/waconv", "internal/connector", "internal/web", "internal/persister"},
	},
	{
		name: "no production package depends on the test helpers testenv or wafake",
		from: func(p string) bool { return p != "internal/testenv" && p != "internal/wafake" },
		deny: []string{"internal/testenv", "internal/wafake"},
		except: map[string]string{
			// -sim mode runs the fake WhatsApp server in-process, so a
			// developer can pair and chat without a phone.
			"cmd/devstack": "internal/wafake",
			// The standalone fake WhatsApp process (staging and chaos
			// runs; dev only, never in the production image).
			"cmd/wafake": "internal/wafake",
			// The benchmark command pairs sessions on an in-process fake
			// (inbound and restore scenarios); it is never deployed.
			"cmd/zapbench": "internal/wafake",
			// A test helper package (process runner for start-up tests),
			// imported only by tests.
			"internal/startup/startuptest": "internal/testenv",
		},
	},
}

func TestImportRules(t *testing.T) {
	pkgs := listPackages(t)
	paths := make([]string, 0, len(pkgs))
	for p := range pkgs {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, r := range rules {
		for _, path := range paths {
			if !r.from(path) {
				continue
			}
			for _, d := range r.deny {
				bad := func(dep string) bool {
					if !matches(dep, d) || isStd(dep, d) {
						return false
					}
					allowed, ok := r.except[path]
					return !ok || !matches(dep, allowed)
				}
				if !slices.ContainsFunc(pkgs[path].Deps, bad) {
					continue
				}
				t.Errorf("%s: %s", r.name, strings.Join(chain(pkgs, path, bad), " -> "))
			}
		}
	}
}

// isStd keeps the deny pattern "internal" (module-relative) from matching
// the standard library's internal packages, which appear in Deps
// unqualified.
func isStd(dep, pattern string) bool {
	return !strings.HasPrefix(pattern, "go.") && !strings.HasPrefix(dep, module+"/")
}

// chain is the shortest import path from the package at from to a package
// bad accepts, for the failure message.
func chain(pkgs map[string]pkg, from string, bad func(string) bool) []string {
	type step struct {
		path string // module-relative for the module's packages
		prev *step
	}
	seen := map[string]bool{from: true}
	queue := []*step{{path: from}}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for _, imp := range pkgs[s.path].Imports {
			rel := strings.TrimPrefix(imp, module+"/")
			if seen[rel] {
				continue
			}
			seen[rel] = true
			next := &step{path: rel, prev: s}
			if bad(imp) {
				var out []string
				for ; next != nil; next = next.prev {
					out = append([]string{next.path}, out...)
				}
				return out
			}
			queue = append(queue, next)
		}
	}
	return []string{from, "…"} // through a dependency outside the module
}

// TestRulesSeePackages keeps the rules from passing vacuously: each names
// packages that exist.
func TestRulesSeePackages(t *testing.T) {
	pkgs := listPackages(t)
	for _, r := range rules {
		n := 0
		for path := range pkgs {
			if r.from(path) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("rule %q applies to no package", r.name)
		}
		for from := range r.except {
			if _, ok := pkgs[from]; !ok {
				t.Errorf("rule %q: exception %s is not a package any more; remove it", r.name, from)
			}
		}
	}
}
