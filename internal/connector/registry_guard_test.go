package connector_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"slices"
	"testing"
)

// eventCases collects the events.X types of the case clauses in function
// fn of file, keeping only clauses that keep says yes to.
func eventCases(t *testing.T, file, fn string, keep func(*ast.CaseClause) bool) map[string]bool {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, decl := range f.Decls {
		fd, ok := decl.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn {
			continue
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			cc, ok := n.(*ast.CaseClause)
			if !ok || !keep(cc) {
				return true
			}
			for _, expr := range cc.List {
				if star, ok := expr.(*ast.StarExpr); ok {
					if sel, ok := star.X.(*ast.SelectorExpr); ok {
						if pkg, ok := sel.X.(*ast.Ident); ok && pkg.Name == "events" {
							out[sel.Sel.Name] = true
						}
					}
				}
			}
			return true
		})
	}
	if len(out) == 0 {
		t.Fatalf("no event cases found in %s %s", file, fn)
	}
	return out
}

// TestStateChangesAreHandled: every type the registry (waconv.Decide)
// sends to the session as a state change has a case in session.onEvent,
// and onEvent handles nothing the registry does not send it. A type
// marked StateChange without a case would be acked and do nothing.
func TestStateChangesAreHandled(t *testing.T) {
	registry := eventCases(t, "../waconv/registry.go", "route", func(cc *ast.CaseClause) bool {
		if len(cc.Body) == 0 {
			return false
		}
		ret, ok := cc.Body[0].(*ast.ReturnStmt)
		if !ok || len(ret.Results) == 0 {
			return false
		}
		id, ok := ret.Results[0].(*ast.Ident)
		return ok && id.Name == "state"
	})
	handled := eventCases(t, "session.go", "onEvent", func(*ast.CaseClause) bool { return true })
	// Cases nested in onEvent name ConnectFailure reasons, not types: only
	// type cases are *events.X, so the sets compare directly.
	want, got := slices.Sorted(maps.Keys(registry)), slices.Sorted(maps.Keys(handled))
	if !slices.Equal(want, got) {
		t.Fatalf("registry state changes %v\nsession.onEvent cases    %v", want, got)
	}
}
