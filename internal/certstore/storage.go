// Package certstore is a certmagic.Storage on PostgreSQL, so that the
// gateway nodes of a cluster share their certificates, ACME account keys and
// the locks that stop two nodes from ordering the same certificate at once.
//
// Values are sealed with AES-256-GCM before they leave the process: a dump
// of the database alone reveals no private key. Key names (which carry
// domain names, public anyway through Certificate Transparency) stay in
// clear, so that List and prefix deletes work in SQL.
//
// Locks are lease rows (name, owner, expiry) renewed while held, decided
// by single autocommit statements against the database clock: they work
// through transaction-mode poolers, need no connection held while a lock
// is, and a node that dies loses its locks when their lease runs out.
//
// A Storage connects, creates its tables and loads its key on first use,
// never in New: Caddy builds storage for `caddy validate` too.
//
// It is not the delivery service's store (internal/store), and it imports
// certmagic only for its interfaces and types, never Caddy.
package certstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// Defaults for Config's zero values.
const (
	DefaultLockTTL   = time.Minute
	DefaultLockPoll  = time.Second
	DefaultMaxConns  = 4
	DefaultOpTimeout = 15 * time.Second
)

// Config configures a Storage. Zero values take the defaults.
type Config struct {
	// URL is the PostgreSQL connection string (postgres://user@host/db).
	// pgx options may be given in it. Unless it names a
	// default_query_exec_mode, statements are sent unprepared ("exec"
	// mode, still one round trip), so the storage works behind
	// transaction-mode poolers that cannot carry prepared statements.
	URL string

	// Key is the 32-byte AES-256 key values are sealed under. Every node
	// sharing the database must have the same key.
	Key []byte

	// KeyFile is read for the key when Key is empty: 64 hexadecimal
	// characters. When it does not exist and the database holds no sealed
	// data yet, a key is generated into it (mode 0600) on first use, if
	// GenerateKeyFile is set.
	KeyFile string

	// GenerateKeyFile allows generating KeyFile on first use.
	GenerateKeyFile bool

	// LockTTL is the lease of a lock: a holder renews it every third of
	// the TTL, and a lock whose holder died is free after at most this
	// long. Default one minute.
	LockTTL time.Duration

	// LockPoll is how often a waiting Lock retries. Default one second.
	LockPoll time.Duration

	// MaxConns bounds the pool. Default 4.
	MaxConns int32

	// OpTimeout bounds each database statement. Default 15 s.
	OpTimeout time.Duration

	// Logger receives lease renewal failures. Default: none.
	Logger *zap.Logger
}

// Storage is a certmagic.Storage, certmagic.TryLocker and
// certmagic.LockLeaseRenewer on PostgreSQL. It is safe for concurrent use.
type Storage struct {
	cfg Config

	mu     sync.Mutex
	pool   *pgxpool.Pool
	sealer *sealer
	closed bool

	locksMu sync.Mutex
	leases  map[string]*lease
}

// New returns a Storage for cfg without connecting: the pool, the tables
// and the key are set up on first use.
func New(cfg Config) (*Storage, error) {
	if cfg.URL == "" {
		return nil, errors.New("certstore: a PostgreSQL URL is required")
	}
	if _, err := pgxpool.ParseConfig(cfg.URL); err != nil {
		return nil, fmt.Errorf("certstore: database URL: %w", err)
	}
	if len(cfg.Key) != 0 && len(cfg.Key) != KeySize {
		return nil, fmt.Errorf("certstore: encryption key is %d bytes, want %d", len(cfg.Key), KeySize)
	}
	if len(cfg.Key) == 0 && cfg.KeyFile == "" {
		return nil, errors.New("certstore: an encryption key or key file is required")
	}
	if cfg.LockTTL <= 0 {
		cfg.LockTTL = DefaultLockTTL
	}
	if cfg.LockPoll <= 0 {
		cfg.LockPoll = DefaultLockPoll
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = DefaultOpTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Storage{cfg: cfg, leases: make(map[string]*lease)}, nil
}

// ready opens the pool, migrates and loads the key on first use. A failure
// is not remembered: the next call tries again (the database may have been
// down at start-up).
func (s *Storage) ready(ctx context.Context) (*pgxpool.Pool, *sealer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, errors.New("certstore: storage is closed")
	}
	if s.sealer != nil {
		return s.pool, s.sealer, nil
	}
	if s.pool == nil {
		pc, err := pgxpool.ParseConfig(s.cfg.URL)
		if err != nil {
			return nil, nil, fmt.Errorf("certstore: database URL: %w", err)
		}
		pc.MaxConns = s.cfg.MaxConns
		if !strings.Contains(s.cfg.URL, "default_query_exec_mode") {
			pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
		}
		if pc.ConnConfig.ConnectTimeout == 0 {
			pc.ConnConfig.ConnectTimeout = 10 * time.Second
		}
		pool, err := pgxpool.NewWithConfig(context.Background(), pc)
		if err != nil {
			return nil, nil, fmt.Errorf("certstore: database pool: %w", err)
		}
		s.pool = pool
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.OpTimeout)
	defer cancel()
	if err := migrate(ctx, s.pool); err != nil {
		return nil, nil, err
	}
	sl, err := s.loadKey(ctx, s.pool)
	if err != nil {
		return nil, nil, err
	}
	s.sealer = sl
	return s.pool, s.sealer, nil
}

// Close releases the locks this Storage holds and closes its pool.
func (s *Storage) Close() error {
	s.locksMu.Lock()
	held := s.leases
	s.leases = make(map[string]*lease)
	s.locksMu.Unlock()
	s.mu.Lock()
	pool := s.pool
	s.closed = true
	s.mu.Unlock()
	for name, l := range held {
		l.stopRenewal()
		if pool != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = pool.Exec(ctx, `DELETE FROM cairn_certstore_locks WHERE name = $1 AND owner = $2`, name, l.owner)
			cancel()
		}
	}
	if pool != nil {
		pool.Close()
	}
	return nil
}

// normalize gives keys the shape certmagic's FileStorage gives them through
// the file system: no leading, trailing or doubled slashes.
func normalize(key string) string {
	return strings.TrimPrefix(path.Clean("/"+key), "/")
}

// likePrefix returns a LIKE pattern matching every key below dir.
func likePrefix(dir string) string {
	if dir == "" {
		return "%"
	}
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(dir) + "/%"
}

func (s *Storage) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.OpTimeout)
}

// Store puts value at key, replacing any value there.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	pool, sl, err := s.ready(ctx)
	if err != nil {
		return err
	}
	key = normalize(key)
	sealed, err := sl.seal(key, value)
	if err != nil {
		return err
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	_, err = pool.Exec(ctx, `INSERT INTO cairn_certstore_values (key, value, size, modified) VALUES ($1, $2, $3, now())
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, size = excluded.size, modified = excluded.modified`,
		key, sealed, len(value))
	if err != nil {
		return fmt.Errorf("certstore: store %s: %w", key, err)
	}
	return nil
}

// Load returns the value at key, or an error matching fs.ErrNotExist.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	pool, sl, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	key = normalize(key)
	ctx, cancel := s.op(ctx)
	defer cancel()
	var sealed []byte
	err = pool.QueryRow(ctx, `SELECT value FROM cairn_certstore_values WHERE key = $1`, key).Scan(&sealed)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("certstore: load %s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("certstore: load %s: %w", key, err)
	}
	value, err := sl.open(key, sealed)
	if err != nil {
		return nil, fmt.Errorf("certstore: load %s: %w", key, err)
	}
	return value, nil
}

// Delete removes key and, if key is a directory, every key below it. A
// key that does not exist is not an error.
func (s *Storage) Delete(ctx context.Context, key string) error {
	pool, _, err := s.ready(ctx)
	if err != nil {
		return err
	}
	key = normalize(key)
	ctx, cancel := s.op(ctx)
	defer cancel()
	if _, err := pool.Exec(ctx, `DELETE FROM cairn_certstore_values WHERE key = $1 OR key LIKE $2`, key, likePrefix(key)); err != nil {
		return fmt.Errorf("certstore: delete %s: %w", key, err)
	}
	return nil
}

// Exists reports whether key is a value or a directory of values. An
// error reads as false.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	pool, _, err := s.ready(ctx)
	if err != nil {
		return false
	}
	key = normalize(key)
	ctx, cancel := s.op(ctx)
	defer cancel()
	var exists bool
	err = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM cairn_certstore_values WHERE key = $1 OR key LIKE $2)`, key, likePrefix(key)).Scan(&exists)
	return err == nil && exists
}

// List returns the keys below dir: its direct children (values and
// directories) or, when recursive, every value and directory beneath it,
// as certmagic's FileStorage lists them. A dir that is a value has no
// children; a dir that does not exist is fs.ErrNotExist.
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	pool, _, err := s.ready(ctx)
	if err != nil {
		return nil, err
	}
	dir = normalize(dir)
	ctx, cancel := s.op(ctx)
	defer cancel()
	rows, err := pool.Query(ctx, `SELECT key FROM cairn_certstore_values WHERE key = $1 OR key LIKE $2`, dir, likePrefix(dir))
	if err != nil {
		return nil, fmt.Errorf("certstore: list %s: %w", dir, err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("certstore: list %s: %w", dir, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("certstore: list %s: %w", dir, fs.ErrNotExist)
	}
	base := dir
	if base != "" {
		base += "/"
	}
	seen := make(map[string]bool)
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, k := range keys {
		if k == dir {
			continue
		}
		rest := strings.TrimPrefix(k, base)
		if !recursive {
			child, _, _ := strings.Cut(rest, "/")
			add(base + child)
			continue
		}
		for i := 0; i < len(rest); i++ {
			if rest[i] == '/' {
				add(base + rest[:i])
			}
		}
		add(k)
	}
	sort.Strings(out)
	return out, nil
}

// Stat describes key: a value (terminal, with its size and time of
// storing) or a directory of values.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	pool, _, err := s.ready(ctx)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	key = normalize(key)
	ctx, cancel := s.op(ctx)
	defer cancel()
	info := certmagic.KeyInfo{Key: key, IsTerminal: true}
	err = pool.QueryRow(ctx, `SELECT size, modified FROM cairn_certstore_values WHERE key = $1`, key).Scan(&info.Size, &info.Modified)
	if err == nil {
		return info, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return certmagic.KeyInfo{}, fmt.Errorf("certstore: stat %s: %w", key, err)
	}
	var modified *time.Time
	if err := pool.QueryRow(ctx, `SELECT max(modified) FROM cairn_certstore_values WHERE key LIKE $1`, likePrefix(key)).Scan(&modified); err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("certstore: stat %s: %w", key, err)
	}
	if modified == nil {
		return certmagic.KeyInfo{}, fmt.Errorf("certstore: stat %s: %w", key, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: key, Modified: *modified, IsTerminal: false}, nil
}

// String names the storage for Caddy's and certmagic's logs, without
// credentials.
func (s *Storage) String() string {
	return "cairn_postgres"
}

// Interface guards.
var (
	_ certmagic.Storage          = (*Storage)(nil)
	_ certmagic.TryLocker        = (*Storage)(nil)
	_ certmagic.LockLeaseRenewer = (*Storage)(nil)
)
