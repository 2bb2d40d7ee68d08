package waconv

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.mau.fi/whatsmeow/types/events"
)

// notEvents are exported types of whatsmeow's types/events package that
// are never dispatched to an event handler: field types, enums and
// interfaces used by the events.
var notEvents = map[string]string{
	"PermanentDisconnect":   "interface implemented by the disconnect events",
	"TempBanReason":         "enum, field of TemporaryBan",
	"ConnectFailureReason":  "enum, field of ConnectFailure and LoggedOut",
	"DecryptFailMode":       "enum, field of UndecryptableMessage",
	"UnavailableType":       "enum, field of UndecryptableMessage",
	"NewsletterMessageMeta": "struct, field of Message",
	"ReceiptType":           "alias of types.ReceiptType, field of Receipt",
	"MediaRetryError":       "struct, field of MediaRetry",
	"BlocklistAction":       "enum, field of Blocklist",
	"BlocklistChangeAction": "enum, field of BlocklistChange",
}

// whatsmeowEventTypes lists the exported types declared in the pinned
// whatsmeow's types/events package.
func whatsmeowEventTypes(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "go.mau.fi/whatsmeow").Output()
	if err != nil {
		t.Fatalf("go list whatsmeow: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "types", "events")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no sources in %s: %v", dir, err)
	}
	var names []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range file.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				if ts := spec.(*ast.TypeSpec); ts.Name.IsExported() {
					names = append(names, ts.Name.Name)
				}
			}
		}
	}
	return names
}

// registryCases lists the events.X types named in route's case clauses.
func registryCases(t *testing.T) map[string]bool {
	t.Helper()
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "registry.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]bool{}
	for _, decl := range file.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Name.Name != "route" {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			cc, ok := n.(*ast.CaseClause)
			if !ok {
				return true
			}
			for _, expr := range cc.List {
				star, ok := expr.(*ast.StarExpr)
				if !ok {
					continue
				}
				if sel, ok := star.X.(*ast.SelectorExpr); ok {
					if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "events" {
						cases[sel.Sel.Name] = true
					}
				}
			}
			return true
		})
	}
	if len(cases) == 0 {
		t.Fatal("found no case clauses in route")
	}
	return cases
}

// TestRegistryCoversEveryEvent fails when the pinned whatsmeow has an event
// type the registry does not decide on: bumping whatsmeow must come with a
// decision (publish, state change or ignore with a reason) for each new type.
func TestRegistryCoversEveryEvent(t *testing.T) {
	declared := whatsmeowEventTypes(t)
	cases := registryCases(t)
	for _, name := range declared {
		if _, skip := notEvents[name]; skip {
			if cases[name] {
				t.Errorf("events.%s is listed as not an event but has a registry case", name)
			}
			continue
		}
		if !cases[name] {
			t.Errorf("events.%s has no decision in the registry (internal/waconv/registry.go route)", name)
		}
	}
	for name := range notEvents {
		if !slices.Contains(declared, name) {
			t.Errorf("notEvents lists events.%s, which whatsmeow no longer declares", name)
		}
	}
	for name := range cases {
		if !slices.Contains(declared, name) {
			t.Errorf("the registry decides on events.%s, which whatsmeow does not declare", name)
		}
	}
}

func TestDecide(t *testing.T) {
	type notAnEvent struct{}
	cases := []struct {
		evt  any
		want Action
	}{
		{&events.Message{}, Publish},
		{&events.Receipt{}, Publish},
		{&events.PushName{}, Publish},
		{&events.Contact{}, Publish},
		{&events.BusinessName{}, Publish},
		{&events.Connected{}, StateChange},
		{&events.Disconnected{}, StateChange},
		{&events.LoggedOut{}, StateChange},
		{&events.TemporaryBan{}, StateChange},
		{&events.KeepAliveRestored{}, Ignore},
		{&events.HistorySync{}, Ignore},
		{&events.CallOffer{}, Ignore},
		{&events.MediaRetry{}, Media},
		{events.Message{}, Unknown}, // whatsmeow dispatches pointers
		{&notAnEvent{}, Unknown},
		{nil, Unknown},
	}
	for _, c := range cases {
		d := Decide(c.evt)
		if d.Action != c.want {
			t.Errorf("Decide(%T) = %s, want %s", c.evt, d.Action, c.want)
		}
		if d.Action == Ignore && d.Reason == "" {
			t.Errorf("Decide(%T): ignored without a reason", c.evt)
		}
	}
}

// TestConvertOnlyPublishes: types the registry does not mark Publish
// convert to nothing, and a nil event of a published type too.
func TestConvertOnlyPublishes(t *testing.T) {
	c := &Converter{Mentorado: mentorado}
	for _, evt := range []any{&events.Connected{}, &events.HistorySync{}, (*events.Message)(nil), struct{}{}} {
		envs, err := c.Convert(context.Background(), evt)
		if err != nil || len(envs) != 0 {
			t.Errorf("Convert(%T) = %d envelopes, %v; want none", evt, len(envs), err)
		}
	}
}
