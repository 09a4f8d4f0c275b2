// Package sqlite is the embedded store.Store: one SQLite file in WAL mode
// through modernc.org/sqlite (no cgo). All writes go through a single
// connection, which serialises them; reads use a separate pool.
//
// It suits one node. Several processes on one file work (SQLite's own locks
// and the busy timeout serialise them) but TryLock only excludes within the
// process, so run one node per data file.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Config configures the SQLite store. The zero value except Path works.
type Config struct {
	// Path is the database file, for example <data dir>/cairn.db.
	Path string
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection or process. Default 5 s.
	BusyTimeout time.Duration
	// ReadConns is the size of the read pool. Default 4.
	ReadConns int
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// RelaxedSync trades durability for speed (synchronous=NORMAL): about
	// 1.5x faster commits, but a power loss (not a process crash) can lose
	// the last acknowledged writes and reuse their seq numbers.
	RelaxedSync bool
	// PurgeBatch bounds the rows one retention transaction deletes.
	// Default 5000.
	PurgeBatch int
}

// Store is the SQLite store.Store.
type Store struct {
	// TxWriter runs each write in its own transaction of the writer
	// connection.
	store.TxWriter

	w   *sql.DB // one connection: the single writer
	gc  *committer
	ck  *sql.DB // one connection: the checkpointer's
	cp  *checkpointer
	r   *readPool
	now func() time.Time
	// purgeBatch bounds the rows one purge transaction deletes, so a large
	// backlog never holds the single writer for long.
	purgeBatch int

	// path and busyTimeout are kept for Migrate and MigrationStatus.
	path        string
	busyTimeout time.Duration

	mu    sync.Mutex
	locks map[string]bool
}

// New returns the store for the database file at cfg.Path without opening
// it: the file is created and connected to on first use. Call Migrate (or
// check MigrationStatus) before serving from it.
func New(cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("sqlite store: Path is required")
	}
	if cfg.BusyTimeout <= 0 {
		cfg.BusyTimeout = 5 * time.Second
	}
	if cfg.ReadConns <= 0 {
		cfg.ReadConns = 4
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PurgeBatch <= 0 {
		cfg.PurgeBatch = 5000
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// FULL syncs the WAL at every commit. NORMAL would only sync at
	// checkpoints: a power loss could then drop acknowledged messages and
	// hand their seq numbers out again.
	sync := "FULL"
	if cfg.RelaxedSync {
		sync = "NORMAL"
	}
	q.Add("_pragma", "synchronous("+sync+")")
	wq := url.Values{}
	for k, v := range q {
		wq[k] = v
	}
	// BEGIN IMMEDIATE takes the write lock up front, so a write transaction
	// never fails half-way on a lock upgrade from another process.
	wq.Set("_txlock", "immediate")
	// The checkpointer, not the commit that fills the WAL, checkpoints.
	wq.Add("_pragma", "wal_autocheckpoint(0)")
	// SQLite URI filenames give '?', '#' and '%' meaning; escape them.
	file := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(cfg.Path)
	w, err := sql.Open("sqlite", file+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	ck, err := sql.Open("sqlite", file+"?"+q.Encode())
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite checkpointer: %w", err)
	}
	ck.SetMaxOpenConns(1)
	ck.SetMaxIdleConns(1)
	q.Add("_pragma", "query_only(1)")
	r, err := sql.Open("sqlite", file+"?"+q.Encode())
	if err != nil {
		w.Close()
		ck.Close()
		return nil, fmt.Errorf("open sqlite readers: %w", err)
	}
	r.SetMaxOpenConns(cfg.ReadConns)
	r.SetMaxIdleConns(cfg.ReadConns)
	cp := newCheckpointer(ck)
	s := &Store{w: w, r: newReadPool(r), gc: newCommitter(w, cp.committed), ck: ck, cp: cp, now: cfg.Now, purgeBatch: cfg.PurgeBatch, locks: map[string]bool{}}
	s.TxWriter = store.NewTxWriter(func(ctx context.Context, fn func(store.Writer) error) error {
		return s.withWriter(ctx, func(w *txWriter) error { return fn(w) })
	})
	s.path, s.busyTimeout = cfg.Path, cfg.BusyTimeout
	return s, nil
}

// Open returns the store for cfg with its migrations applied, creating the
// database file if needed: New, then Migrate.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s, err := New(cfg)
	return store.Migrated(ctx, s, err)
}

// Close closes both pools.
func (s *Store) Close() error {
	s.gc.close()
	s.cp.close()
	return errors.Join(s.w.Close(), s.r.Close(), s.ck.Close())
}

// Traits implements store.Store: the single writer commits cursors in the
// order it draws them, and TryLock excludes within this process only.
func (s *Store) Traits() store.Traits {
	return store.Traits{Backend: "sqlite", OrderedCursors: true, MultiNode: false}
}

// MigrationStatus implements store.Migrator. It only reads: a database file
// that does not exist is not created, and has no migration applied.
func (s *Store) MigrationStatus(ctx context.Context) (store.MigrationStatus, error) {
	known, err := store.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return store.MigrationStatus{}, err
	}
	if _, err := os.Stat(s.path); errors.Is(err, fs.ErrNotExist) {
		return store.PlanMigrations(known, nil), nil
	}
	applied, err := appliedMigrations(ctx, s.r.db)
	if err != nil {
		return store.MigrationStatus{}, err
	}
	return store.PlanMigrations(known, applied), nil
}

// queryer is what both *sql.DB and a write transaction offer.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// appliedMigrations reads schema_migrations, if the table exists.
func appliedMigrations(ctx context.Context, q queryer) ([]store.AppliedMigration, error) {
	rows, err := q.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`)
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	exists := rows.Next()
	rows.Close()
	if !exists {
		return nil, nil
	}
	if rows, err = q.QueryContext(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	var applied []store.AppliedMigration
	for rows.Next() {
		var m store.AppliedMigration
		if err := rows.Scan(&m.Version, &m.Name); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		applied = append(applied, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return applied, nil
}

// Migrate implements store.Migrator, creating the database file (and its
// directory, mode 0700) if needed.
// Each migration runs in its own immediate transaction that re-reads the
// applied versions, so concurrent migrators apply each once. SQLite can
// answer SQLITE_BUSY without waiting while another connection is still
// setting up the WAL of a fresh file, so a busy start is retried until the
// busy timeout.
func (s *Store) Migrate(ctx context.Context) ([]store.Migration, error) {
	known, err := store.LoadMigrations(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return nil, fmt.Errorf("migrate: create the database's directory: %w", err)
	}
	deadline := time.Now().Add(s.busyTimeout)
	for {
		done, err := s.applyMigrations(ctx, known)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return done, err
		}
		select {
		case <-ctx.Done():
			return done, fmt.Errorf("migrate: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Store) applyMigrations(ctx context.Context, known []store.Migration) ([]store.Migration, error) {
	var done []store.Migration
	for {
		var applied *store.Migration
		err := s.write(ctx, func(tx writeTx) error {
			if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
				version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
				return err
			}
			have, err := appliedMigrations(ctx, tx)
			if err != nil {
				return err
			}
			plan := store.PlanMigrations(known, have)
			if err := plan.Check(); err != nil {
				return err
			}
			if len(plan.Pending) == 0 {
				return nil
			}
			m := plan.Pending[0]
			if err := tx.execScript(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.Name, err)
			}
			if step := migrationStep(m.Version); step != nil {
				if err := step(ctx, tx); err != nil {
					return fmt.Errorf("apply migration %s: %w", m.Name, err)
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, s.now().UnixMilli()); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.Name, err)
			}
			applied = &m
			return nil
		})
		if err != nil {
			return done, fmt.Errorf("migrate: %w", err)
		}
		if applied == nil {
			return done, nil
		}
		done = append(done, *applied)
	}
}

// migrationStep returns the part of migration version that SQL alone
// cannot do in SQLite, run in the migration's transaction after its SQL; nil
// if there is none.
func migrationStep(version int) func(ctx context.Context, tx writeTx) error {
	switch version {
	case 2:
		return backfillKeyPackageSHA256
	}
	return nil
}

// backfillKeyPackageSHA256 fills key_packages.data_sha256 of the rows stored
// before migration 2 (SQLite has no SHA-256 function).
func backfillKeyPackageSHA256(ctx context.Context, tx writeTx) error {
	rows, err := tx.QueryContext(ctx, `SELECT ref, data FROM key_packages WHERE data_sha256 = ''`)
	if err != nil {
		return fmt.Errorf("backfill key package hashes: %w", err)
	}
	sums := map[string]string{}
	for rows.Next() {
		var ref string
		var data []byte
		if err := rows.Scan(&ref, &data); err != nil {
			rows.Close()
			return fmt.Errorf("backfill key package hashes: %w", err)
		}
		sums[ref] = store.KeyPackageSHA256(data)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("backfill key package hashes: %w", err)
	}
	for ref, sum := range sums {
		if _, err := tx.ExecContext(ctx, `UPDATE key_packages SET data_sha256 = ? WHERE ref = ?`, sum, ref); err != nil {
			return fmt.Errorf("backfill key package hashes: %w", err)
		}
	}
	return nil
}

// write runs fn in a transaction of the single writer, through the group
// commit.
func (s *Store) write(ctx context.Context, fn func(tx writeTx) error) error {
	return classify(s.gc.write(ctx, fn))
}

// withWriter runs fn with a Writer bound to a fresh transaction.
func (s *Store) withWriter(ctx context.Context, fn func(w *txWriter) error) error {
	return s.write(ctx, func(tx writeTx) error { return fn(&txWriter{tx: tx, now: s.now}) })
}

// TryLock takes a process-local named lock: with one writer per file there
// is no other node to exclude.
func (s *Store) TryLock(ctx context.Context, name string) (func(), bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locks[name] {
		return nil, false, nil
	}
	s.locks[name] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.locks, name)
			s.mu.Unlock()
		})
	}, true, nil
}

// TableColumns lists a table's column names, for schema conformance tests.
func (s *Store) TableColumns(ctx context.Context, table string) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		return nil, fmt.Errorf("table info %s: %w", table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("table info %s: %w", table, err)
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// Idempotent implements store.Store.
func (s *Store) Idempotent(ctx context.Context, key store.IdempotencyKey, requestHash []byte,
	fn func(ctx context.Context, tx store.Writer) ([]byte, error)) ([]byte, bool, error) {
	digest := key.Digest()
	var resp []byte
	var replayed bool
	err := s.withWriter(ctx, func(w *txWriter) error {
		var storedHash, stored []byte
		err := w.tx.QueryRowContext(ctx, `SELECT request_hash, response FROM idempotency WHERE digest = ?`, digest).Scan(&storedHash, &stored)
		switch {
		case err == nil:
			if len(requestHash) > 0 && len(storedHash) > 0 && string(requestHash) != string(storedHash) {
				return fmt.Errorf("idempotency key reused with a different request: %w", store.ErrConflict)
			}
			resp, replayed = stored, true
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("read idempotency record: %w", err)
		}
		out, err := fn(ctx, w)
		if err != nil {
			return err
		}
		if out == nil {
			out = []byte{}
		}
		if _, err := w.tx.ExecContext(ctx, `INSERT INTO idempotency (digest, request_hash, response, created_at) VALUES (?, ?, ?, ?)`,
			digest, requestHash, out, w.bucket()); err != nil {
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
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func msOrNull(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

func fromNullMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMS(v.Int64)
}

// jsonList encodes ss as a JSON array for `IN (SELECT value FROM json_each(?))`.
func jsonList(ss []string) string {
	if ss == nil {
		ss = []string{}
	}
	b, _ := json.Marshal(ss) // a []string always marshals
	return string(b)
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Migrator = (*Store)(nil)
)

// Migrations returns the migrations this binary embeds, in order (both
// backends embed the same versions), for `release-info`.
func Migrations() ([]store.Migration, error) {
	return store.LoadMigrations(migrationFS, "migrations")
}
