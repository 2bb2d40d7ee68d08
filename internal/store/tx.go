package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what the query types run on: the pool, or a transaction
// (*pgxpool.Pool and pgx.Tx both satisfy it).
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// InTx runs fn in a transaction on the pool: committed when fn returns nil,
// rolled back otherwise. The persister uses it for its batch, whose
// statements (store/persist.go) it sends itself with pgx batches and COPY.
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.Pool, fn)
}

// WithMentoradoLock runs fn in a transaction that holds mentorado m's lock
// (LockMentorado): fn's writes serialise with persister batches of m.
func (db *DB) WithMentoradoLock(ctx context.Context, m int64, fn func(pgx.Tx) error) error {
	return db.InTx(ctx, func(tx pgx.Tx) error {
		if err := LockMentorado(ctx, tx, m); err != nil {
			return err
		}
		return fn(tx)
	})
}

// WithSessionLock runs fn while one pooled connection holds the session
// advisory lock key, so processes starting together run fn one at a time
// (migrations, whatsmeow's schema upgrades). The lock is released even when
// ctx is done.
func (db *DB) WithSessionLock(ctx context.Context, key int64, fn func() error) error {
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("store: session lock: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, sqlAdvisoryLock, key); err != nil {
		return fmt.Errorf("store: session lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), sqlAdvisoryUnlock, key) }()
	return fn()
}

const (
	sqlAdvisoryLock   = "SELECT pg_advisory_lock($1)"
	sqlAdvisoryUnlock = "SELECT pg_advisory_unlock($1)"
)

// CreateDatabase creates database name through admin, a connection to
// another database of the same server (the dev stack's first start).
func CreateDatabase(ctx context.Context, admin *pgx.Conn, name string) error {
	_, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}
