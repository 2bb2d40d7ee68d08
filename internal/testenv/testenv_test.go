package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestPostgresSweepsStaleDatabases(t *testing.T) {
	base := os.Getenv("DATABASE_URL")
	if base == "" {
		base = DefaultDatabaseURL
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Skipf("postgres: %v", err)
	}
	defer admin.Close(ctx)
	stale := fmt.Sprintf("%s%d_dead", dbPrefix, time.Now().Add(-3*time.Hour).Unix())
	young := fmt.Sprintf("%s%d_busy", dbPrefix, time.Now().Add(-time.Minute).Unix())
	for _, n := range []string{stale, young} {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+n); err != nil {
			t.Fatal(err)
		}
	}
	defer admin.Exec(ctx, "DROP DATABASE IF EXISTS "+young+" WITH (FORCE)")

	Postgres(t) // sweeps before creating its own

	exists := func(n string) bool {
		var ok bool
		_ = admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", n).Scan(&ok)
		return ok
	}
	if exists(stale) {
		t.Errorf("stale database %s not dropped", stale)
	}
	if !exists(young) {
		t.Errorf("young database %s dropped: another test binary may be using it", young)
	}
}
