package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// MentoradoLockClass is the advisory-lock class under which every writer of
// a mentorado's WhatsApp data serialises: persister batches, the notifier's
// clear-data and tenant deletion. The key within the class is the mentorado
// id modulo 2^31-1.
const MentoradoLockClass = 31330

// LockMentoradosSQL takes, inside a transaction, the locks of the
// mentorados in $1 (bigint[]) in id order, so writers cannot deadlock.
// Batches of the same mentorado serialise: concurrent persisters sharing the
// consumer then never miss each other's pending receipts, orphan messages or
// edits, while different mentorados still run in parallel. The persister
// queues it in its first batch (one round trip with its lookups).
var LockMentoradosSQL = `SELECT count(pg_advisory_xact_lock(` + mentoradoLockClassSQL + `, (u.m % 2147483647)::int))
	FROM (SELECT DISTINCT m FROM unnest($1::bigint[]) AS m ORDER BY m) AS u`

// mentoradoLockClassSQL is MentoradoLockClass as an SQL literal: the
// statement text stays what it was when the class was written out.
var mentoradoLockClassSQL = strconv.Itoa(MentoradoLockClass)

// LockMentorado takes mentorado m's lock until tx ends.
func LockMentorado(ctx context.Context, tx pgx.Tx, m int64) error {
	if _, err := tx.Exec(ctx, LockMentoradosSQL, []int64{m}); err != nil {
		return fmt.Errorf("store: lock mentorado %d: %w", m, err)
	}
	return nil
}
