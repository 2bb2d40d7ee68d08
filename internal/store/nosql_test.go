package store_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// sqlStatement matches a string literal that is (or embeds) an SQL
// statement: the shapes zapbus's queries take, case-sensitive as the code
// writes SQL keywords.
var sqlStatement = regexp.MustCompile(`\b(SELECT\s+[\w*(]|INSERT\s+INTO\s|UPDATE\s+\w+(\s+(AS\s+)?\w+)?\s+SET\s|DELETE\s+FROM\s|` +
	`\bSELECT\s+$|\bFROM\s+\w+(\s+\w+)?\s+WHERE\s|(CREATE|ALTER|DROP)\s+(TABLE|INDEX|UNIQUE\s+INDEX|DATABASE|SCHEMA|TYPE|FUNCTION|EXTENSION)\b|TRUNCATE\s|WITH\s+\w+\s+AS\s*\(|COPY\s+\w+)`)

// sqlAllowed are the directories outside internal/store and schema/ whose
// non-test files may hold SQL.
var sqlAllowed = map[string]string{
	// Test-only helper (imported by tests alone, never by a production
	// package): it creates and drops the per-test databases.
	"internal/testenv": "creates per-test databases",
	// Dev-only commands, never deployed: the benchmark's baselines are raw
	// SQL by definition (COPY, single-row commits), it creates and drops
	// its databases and reads pg_stat_*; the staging stack creates its
	// database and the chaos run compares the tables with the ledger.
	"cmd/zapbench":   "benchmark baselines, databases and counters",
	"internal/stage": "staging database and the chaos run's checks",
}

// TestNoSQLOutsideStore: internal/store owns the schema (docs/decisions/
// 0009-store-layout.md). A non-test Go file outside internal/store and
// schema/ holding an SQL statement in a string literal fails here; add a
// query type method in internal/store instead.
func TestNoSQLOutsideStore(t *testing.T) {
	root := moduleRoot(t)
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			switch {
			case rel != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules"),
				rel == "internal/store", rel == "schema":
				return filepath.SkipDir
			}
			if _, ok := sqlAllowed[rel]; ok {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		found = append(found, sqlLiterals(t, path, rel)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range found {
		t.Errorf("SQL outside internal/store: %s", f)
	}
}

// sqlLiterals returns "file:line: literal" for each string literal of the
// file that holds an SQL statement (comments are not literals).
func sqlLiterals(t *testing.T, path, rel string) []string {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatalf("parse %s: %v", rel, err)
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil {
			s = lit.Value
		}
		if sqlStatement.MatchString(s) {
			line := strings.TrimSpace(strings.SplitN(s, "\n", 2)[0])
			if len(line) > 60 {
				line = line[:60] + "…"
			}
			out = append(out, rel+":"+strconv.Itoa(fset.Position(lit.Pos()).Line)+": "+line)
		}
		return true
	})
	return out
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// TestSQLStatementPattern keeps the guard honest in both directions.
func TestSQLStatementPattern(t *testing.T) {
	for _, s := range []string{
		"SELECT id FROM mentorados WHERE id = $1",
		"SELECT count(*) > 0 FROM x",
		"INSERT INTO leads (x) VALUES ($1)",
		"UPDATE mentorados SET disabled_at = NULL",
		"UPDATE whatsapp_messages m SET lead_id = l.id",
		"UPDATE leads AS p SET lid = u.lid",
		"DELETE FROM wa_devices WHERE mentorado_id = $1",
		"\nWITH last AS (\n\tSELECT DISTINCT ON (phone) *",
		"CREATE TABLE t (id int)",
		"ALTER TABLE mentorados ADD COLUMN x int",
		"DROP DATABASE IF EXISTS x",
		"CREATE UNIQUE INDEX x ON y (z)",
		"TRUNCATE leads",
		"SELECT ",
		" FROM mentorados WHERE id = $1",
	} {
		if !sqlStatement.MatchString(s) {
			t.Errorf("not recognised as SQL: %q", s)
		}
	}
	for _, s := range []string{
		"select a phone", "Select the method", "update the session", "delete the device",
		"SELECT", "the INSERT path", "mentorado_id", "wa_devices", "no mentorado %d",
		"UPDATE", "created", "DELETE",
	} {
		if sqlStatement.MatchString(s) {
			t.Errorf("prose taken for SQL: %q", s)
		}
	}
}
