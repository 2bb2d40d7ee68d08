// Package store owns zapbus's Postgres schema: it opens the pool (pgx, with
// bun on top), applies the numbered migrations in schema/, and holds every
// SQL statement the other packages run. Each table has a bun model
// (models.go) and one query type (db.Mentorados(), db.Devices(),
// db.Messages(), db.Whatsmeow()); operations across tables are DB methods
// (ClearWhatsAppData). The persister's set-based statements and the column
// order of its message writes are in persist.go. No other package holds SQL
// (TestNoSQLOutsideStore); docs/decisions/0009-store-layout.md.
package store

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/zapbus/zapbus/schema"
)

// migrationLockKey is the advisory lock taken while migrating, so two
// processes starting together apply each migration once.
const migrationLockKey int64 = 0x7a6170627573 // "zapbus"

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in order.
func Migrations() ([]Migration, error) {
	entries, err := fs.ReadDir(schema.Migrations, "migrations")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("store: migration %q: name must start with a positive number and _", e.Name())
		}
		b, err := fs.ReadFile(schema.Migrations, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("store: two migrations numbered %d", out[i].Version)
		}
	}
	return out, nil
}

// Migrate applies every migration not yet applied, each in its own
// transaction, holding a session advisory lock so concurrent callers wait
// for each other. It returns the versions it applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) ([]int, error) {
	migs, err := Migrations()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, sqlAdvisoryLock, migrationLockKey); err != nil {
		return nil, fmt.Errorf("store: migrate lock: %w", err)
	}
	defer func() {
		// Unlock even when ctx is done; the lock is per session.
		_, _ = conn.Exec(context.WithoutCancel(ctx), sqlAdvisoryUnlock, migrationLockKey)
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS zapbus_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	rows, err := conn.Query(ctx, "SELECT version FROM zapbus_migrations")
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("store: migrate: %w", err)
	}
	var applied []int
	for _, m := range migs {
		if slices.Contains(done, m.Version) {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO zapbus_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("store: migration %s: %w", m.Name, err)
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}
