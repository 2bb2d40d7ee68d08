package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
)

// DefaultMaxConns is the pool size unless DATABASE_URL sets pool_max_conns.
const DefaultMaxConns = 16

// DB bundles the pgx pool (for COPY, batches and hot paths) with a bun.DB on
// the same pool (for ordinary queries) and a database/sql handle. Other
// packages query through its query types (Mentorados, Devices, Messages,
// Whatsmeow) and operations (ClearWhatsAppData, InTx, WithMentoradoLock,
// WithSessionLock), not through the handles.
type DB struct {
	// Pool is the pgx pool. Production code outside store does not use it
	// (tests do, to arrange and assert rows).
	Pool *pgxpool.Pool
	// SQL is the pool as a *sql.DB, for whatsmeow's sqlstore, which owns
	// its whatsmeow_* tables and their statements.
	SQL *sql.DB
	// Bun runs bun queries on the same pool.
	Bun *bun.DB
}

// Open connects to Postgres, checks the connection and applies migrations.
// Processes call it through internal/startup, which retries while Postgres
// is unreachable; a malformed URL is a *ConfigError and is not retried.
func Open(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, &ConfigError{Err: fmt.Errorf("store: DATABASE_URL: %w", err)}
	}
	if cfg.MaxConnLifetime == time.Hour {
		cfg.MaxConnLifetime = 30 * time.Minute
	}
	// pgx defaults to max(4, CPUs) connections: too few for a connector
	// whose sessions all write whatsmeow's keys (pairing 100 sessions was
	// ~15% faster with 20). pool_max_conns in DATABASE_URL still wins.
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: open: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: ping: %w", err)
	}
	if _, err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	sqldb := stdlib.OpenDBFromPool(pool)
	return &DB{Pool: pool, SQL: sqldb, Bun: bun.NewDB(sqldb, pgdialect.New())}, nil
}

// ConfigError is a setting Open cannot use; retrying does not help
// (Permanent reports true, which ends internal/startup's wait).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string   { return e.Err.Error() }
func (e *ConfigError) Unwrap() error   { return e.Err }
func (e *ConfigError) Permanent() bool { return true }

// Close releases every connection. It is safe to call more than once.
func (db *DB) Close() {
	if db == nil {
		return
	}
	_ = db.Bun.Close()
	db.Pool.Close()
}

// Ready reports whether Postgres answers.
func (db *DB) Ready(ctx context.Context) error {
	return db.Pool.Ping(ctx)
}
