package certstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are applied in order, each once; the index plus one is the
// version recorded in cairn_certstore_migrations. Append, never edit.
var migrations = []string{
	// 1: values (sealed), lock leases, and the fingerprint of the key the
	// values are sealed under. Keys use the "C" collation so that prefix
	// matches (LIKE 'a/%') can use the primary key's index.
	`CREATE TABLE cairn_certstore_values (
		key      text COLLATE "C" PRIMARY KEY,
		value    bytea NOT NULL,
		size     bigint NOT NULL,
		modified timestamptz NOT NULL DEFAULT now()
	);
	CREATE TABLE cairn_certstore_locks (
		name    text PRIMARY KEY,
		owner   text NOT NULL,
		expires timestamptz NOT NULL
	);
	CREATE TABLE cairn_certstore_key (
		only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
		key_id   text NOT NULL,
		created  timestamptz NOT NULL DEFAULT now()
	);`,
}

// migrationLockKey is the transaction-scoped advisory lock that serialises
// nodes migrating at once ("cairn-certstore" in ASCII, as an int64).
const migrationLockKey int64 = 0x636169726e2d6373

// migrate applies pending migrations in one transaction. The advisory lock
// is transaction-scoped (pg_advisory_xact_lock), so it works through a
// transaction-mode pooler and is released by COMMIT or by a dead
// connection.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
			return fmt.Errorf("certstore migrate: advisory lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS cairn_certstore_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("certstore migrate: version table: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM cairn_certstore_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("certstore migrate: read version: %w", err)
		}
		if current > len(migrations) {
			return fmt.Errorf("certstore migrate: the database is at version %d, newer than this binary knows (%d): upgrade cairn-caddy", current, len(migrations))
		}
		for v := current + 1; v <= len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
				return fmt.Errorf("certstore migrate: version %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO cairn_certstore_migrations (version) VALUES ($1)`, v); err != nil {
				return fmt.Errorf("certstore migrate: record version %d: %w", v, err)
			}
		}
		return nil
	})
}
