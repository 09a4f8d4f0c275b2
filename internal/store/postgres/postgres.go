// Package postgres is the store.Store for production and clusters: several
// gateway nodes share one PostgreSQL through pgx connection pools.
//
// Per-conversation ordering comes from row locks on the conversation's
// counter row (UPDATE ... RETURNING), not from any global lock, so writes to
// different conversations proceed in parallel. Migrations are embedded and
// run by Migrate under an advisory lock, so nodes may start together;
// New itself connects to nothing.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Config configures the PostgreSQL store.
type Config struct {
	// URL is the connection string, e.g. postgres://user@host/db. Pool
	// options (pool_max_conns, ...) may be given in it.
	URL string
	// MaxConns overrides the pool size when positive. pgxpool's default is
	// max(4, CPUs); a busy gateway wants more (each TryLock holder keeps
	// one connection for as long as it holds the lock).
	MaxConns int32
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// PurgeBatch bounds the rows one retention transaction deletes.
	// Default 5000.
	PurgeBatch int
}

// Store is the PostgreSQL store.Store.
type Store struct {
	// TxWriter runs each write in its own transaction; AppendMessage and
	// TouchDevice are single statements and are defined on Store itself.
	store.TxWriter

	pool    *pgxpool.Pool
	appends *appendBatcher
	now     func() time.Time
	// purgeBatch bounds the rows one purge transaction deletes, so a large
	// backlog never makes one long transaction.
	purgeBatch int
}

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// New returns the store for cfg without connecting: the pool dials on
// first use, so building a store has no effect on the database. Call
// Migrate (or check MigrationStatus) before serving from it.
func New(cfg Config) (*Store, error) {
	if cfg.URL == "" {
		return nil, errors.New("postgres store: URL is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PurgeBatch <= 0 {
		cfg.PurgeBatch = 5000
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres store: parse URL: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	// MinConns stays as the URL says (default 0): a pool with MinConns
	// would dial from its health check at once.
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	s := &Store{pool: pool, now: cfg.Now, purgeBatch: cfg.PurgeBatch}
	s.TxWriter = store.NewTxWriter(func(ctx context.Context, fn func(store.Writer) error) error {
		return s.inTx(ctx, func(w *writer) error { return fn(w) })
	})
	// Half the pool batches appends, so reads and other writes always find
	// a connection.
	s.appends = newAppendBatcher(pool, func() *writer { return &writer{q: pool, now: s.now} }, int(pc.MaxConns)/2)
	return s, nil
}

// Open returns the store for cfg with its migrations applied: New, then
// Migrate.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s, err := New(cfg)
	return store.Migrated(ctx, s, err)
}

// Close stops the append batcher and closes the pool.
func (s *Store) Close() error {
	s.appends.close()
	s.pool.Close()
	return nil
}

// Traits implements store.Store: cursors are drawn before commit, so they
// may become visible out of order, and several nodes share the database.
func (s *Store) Traits() store.Traits {
	return store.Traits{Backend: "postgres", OrderedCursors: false, MultiNode: true}
}

// lockKey maps a lock name to an advisory lock key, namespaced so it does
// not collide with other applications' keys on a shared database.
func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("cairn-caddy/store:" + name))
	return int64(h.Sum64())
}

// migrations returns the embedded migrations.
func migrations() ([]store.Migration, error) {
	return store.LoadMigrations(migrationFS, "migrations")
}

// MigrationStatus implements store.Migrator. It only reads: a database
// without a schema_migrations table has no migration applied.
func (s *Store) MigrationStatus(ctx context.Context) (store.MigrationStatus, error) {
	known, err := migrations()
	if err != nil {
		return store.MigrationStatus{}, err
	}
	applied, err := appliedMigrations(ctx, s.pool)
	if err != nil {
		return store.MigrationStatus{}, err
	}
	return store.PlanMigrations(known, applied), nil
}

// appliedMigrations reads schema_migrations, if it exists in the search
// path.
func appliedMigrations(ctx context.Context, q querier) ([]store.AppliedMigration, error) {
	var exists bool
	if err := q.QueryRow(ctx, `SELECT to_regclass('schema_migrations') IS NOT NULL`).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	if !exists {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	applied, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AppliedMigration, error) {
		var m store.AppliedMigration
		err := r.Scan(&m.Version, &m.Name)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return applied, nil
}

// Migrate implements store.Migrator. It holds a session advisory lock
// while it works, so nodes starting together apply each migration exactly
// once, and refuses a database a newer binary migrated before writing
// anything.
func (s *Store) Migrate(ctx context.Context) ([]store.Migration, error) {
	known, err := migrations()
	if err != nil {
		return nil, err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Release()
	key := lockKey("migrations")
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return nil, fmt.Errorf("migrate: take advisory lock: %w", err)
	}
	defer func() {
		// A fresh context: the lock must go even if ctx is done.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
			// Closing the connection releases the session lock.
			_ = conn.Conn().Close(uctx)
		}
	}()
	applied, err := appliedMigrations(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	plan := store.PlanMigrations(known, applied)
	if err := plan.Check(); err != nil {
		return nil, err
	}
	if len(plan.Pending) == 0 {
		return nil, nil
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)`); err != nil {
		return nil, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var done []store.Migration
	for _, m := range plan.Pending {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
				m.Version, m.Name, s.now())
			return err
		})
		if err != nil {
			return done, fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
		done = append(done, m)
	}
	return done, nil
}

// inTx runs fn with a Writer bound to a new transaction. A lost connection
// before COMMIT is sent is store.ErrUnavailable (the server rolls the
// transaction back); one while COMMIT is in flight is
// store.ErrOutcomeUnknown.
func (s *Store) inTx(ctx context.Context, fn func(w *writer) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return classify(fmt.Errorf("begin: %w", err))
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit; a lost connection rolls back itself
	if err := fn(&writer{q: tx, now: s.now}); err != nil {
		return classify(err) // fn's own errors carry their context
	}
	if err := tx.Commit(ctx); err != nil {
		return classifyCommit(fmt.Errorf("commit: %w", err))
	}
	return nil
}

// TryLock takes a session advisory lock on a dedicated pooled connection.
func (s *Store) TryLock(ctx context.Context, name string) (func(), bool, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, false, errorf("try lock %s: acquire connection: %w", name, err)
	}
	key := lockKey("lock:" + name)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil {
		conn.Release()
		return nil, false, errorf("try lock %s: %w", name, err)
	}
	if !ok {
		conn.Release()
		return nil, false, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1)`, key); err != nil {
				// Closing the session releases the lock for certain.
				_ = conn.Conn().Close(uctx)
			}
			conn.Release()
		})
	}, true, nil
}

// TableColumns lists a table's column names, for schema conformance tests.
func (s *Store) TableColumns(ctx context.Context, table string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT column_name::text FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`, table)
	if err != nil {
		return nil, fmt.Errorf("table info %s: %w", table, err)
	}
	cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("table info %s: %w", table, err)
	}
	return cols, nil
}

// Idempotent implements store.Store. The key is claimed first with an
// insert: a concurrent retry blocks on it until the first attempt commits
// (and then replays its response) or rolls back (and then runs itself).
func (s *Store) Idempotent(ctx context.Context, key store.IdempotencyKey, requestHash []byte,
	fn func(ctx context.Context, tx store.Writer) ([]byte, error)) ([]byte, bool, error) {
	digest := key.Digest()
	var resp []byte
	var replayed bool
	err := s.inTx(ctx, func(w *writer) error {
		tag, err := w.q.Exec(ctx, `INSERT INTO idempotency (digest, request_hash, response, created_at)
			VALUES ($1, $2, NULL, $3) ON CONFLICT (digest) DO NOTHING`, digest, requestHash, w.bucket())
		if err != nil {
			return fmt.Errorf("claim idempotency key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			var storedHash, stored []byte
			if err := w.q.QueryRow(ctx, `SELECT request_hash, response FROM idempotency WHERE digest = $1`, digest).Scan(&storedHash, &stored); err != nil {
				return fmt.Errorf("read idempotency record: %w", err)
			}
			if len(requestHash) > 0 && len(storedHash) > 0 && string(requestHash) != string(storedHash) {
				return fmt.Errorf("idempotency key reused with a different request: %w", store.ErrConflict)
			}
			resp, replayed = stored, true
			if resp == nil {
				resp = []byte{}
			}
			return nil
		}
		out, err := fn(ctx, w)
		if err != nil {
			return err
		}
		if out == nil {
			out = []byte{}
		}
		if _, err := w.q.Exec(ctx, `UPDATE idempotency SET response = $2 WHERE digest = $1`, digest, out); err != nil {
			return fmt.Errorf("write idempotency record: %w", err)
		}
		resp = out
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return resp, replayed, nil
}

func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

func utc(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC()
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Migrator = (*Store)(nil)
)
