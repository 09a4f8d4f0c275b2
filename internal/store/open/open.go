// Package open builds the store backend a deployment configures: PostgreSQL
// when a database URL is given, otherwise the embedded SQLite file in the
// data directory. The cairn app, cmd/cairn-load and the operator commands
// all go through it, so they agree on which database a configuration means.
//
// Building a backend connects to nothing and creates no file; the schema is
// applied by the backend's Migrate (store.Migrator), which the caller runs
// explicitly. This package holds no domain logic and no Caddy.
package open

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
)

// SQLiteFileName is the embedded database's file name inside the data
// directory.
const SQLiteFileName = "cairn.db"

// Kind names a backend.
type Kind string

// The backends.
const (
	SQLite   Kind = "sqlite"
	Postgres Kind = "postgres"
)

// Config says where the store lives. It is plain data, as the cairn app's
// `database` and `data_dir` options give it once placeholders are expanded.
type Config struct {
	// Database is a PostgreSQL URL (postgres:// or postgresql://). Empty
	// means the embedded SQLite database in DataDir.
	Database string
	// DataDir holds the SQLite database file; required when Database is
	// empty.
	DataDir string
}

// Kind reports which backend c selects.
func (c Config) Kind() Kind {
	if strings.TrimSpace(c.Database) != "" {
		return Postgres
	}
	return SQLite
}

// SQLitePath is the embedded database's file: DataDir/cairn.db.
func (c Config) SQLitePath() string { return filepath.Join(c.DataDir, SQLiteFileName) }

// Validate rejects a configuration that names no usable database, with a
// message naming the option to fix. It reads nothing but c. Database may be
// a postgres:// URL or a keyword/value connection string (host=… dbname=…).
func (c Config) Validate() error {
	if c.Kind() == SQLite {
		if c.DataDir == "" {
			return errors.New("no database configured: set `database` to a PostgreSQL URL, or `data_dir` for the embedded SQLite database")
		}
		return nil
	}
	db := strings.TrimSpace(c.Database)
	if !strings.Contains(db, "://") {
		if !strings.Contains(db, "=") {
			return errors.New("database: want a PostgreSQL URL such as postgres://user:password@host:5432/dbname")
		}
		return nil
	}
	u, err := url.Parse(db)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return errors.New("database: want a PostgreSQL URL such as postgres://user:password@host:5432/dbname")
	}
	return nil
}

// String names the database for messages, without a password.
func (c Config) String() string {
	if c.Kind() == SQLite {
		return "SQLite " + c.SQLitePath()
	}
	db := strings.TrimSpace(c.Database)
	if !strings.Contains(db, "://") {
		return "PostgreSQL (connection string)"
	}
	u, err := url.Parse(db)
	if err != nil {
		return "PostgreSQL (unparsable URL)"
	}
	return "PostgreSQL " + u.Redacted()
}

// Key identifies the database, for sharing one open backend between
// holders of the same configuration. It contains the full URL, password
// included: never log it.
func (c Config) Key() string {
	if c.Kind() == SQLite {
		return string(SQLite) + ":" + c.SQLitePath()
	}
	return string(Postgres) + ":" + strings.TrimSpace(c.Database)
}

// Backend is a store with its schema controls, and the interfaces both
// backends implement beside store.Store (observe.Backend).
type Backend interface {
	store.Store
	store.Migrator
	store.AuditLog
	store.Bans
	store.PoolStatser
}

// New builds the backend c selects without connecting to it or creating
// any file. Run Migrate, or check MigrationStatus, before serving from it;
// Close it when done.
func New(c Config) (Backend, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Kind() == Postgres {
		s, err := postgres.New(postgres.Config{URL: strings.TrimSpace(c.Database)})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c, err)
		}
		return s, nil
	}
	s, err := sqlite.New(sqlite.Config{Path: c.SQLitePath()})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	return s, nil
}

// ErrPendingMigrations is matched by Prepare's refusal to serve from a
// schema with migrations pending when it may not apply them.
var ErrPendingMigrations = errors.New("schema migrations are pending")

// Prepare readies b's schema for serving. With migrate it applies the
// pending migrations and returns them; without, it refuses a schema with
// pending migrations (ErrPendingMigrations, saying to run `cairn-caddy
// migrate up`). Either way a schema newer than the binary is refused with a
// *store.SchemaTooNewError, before anything is written.
func Prepare(ctx context.Context, b Backend, migrate bool) ([]store.Migration, error) {
	if migrate {
		return b.Migrate(ctx)
	}
	st, err := b.MigrationStatus(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Check(); err != nil {
		return nil, err
	}
	if len(st.Pending) > 0 {
		return nil, fmt.Errorf("%w: %d, up to version %d, and migrations are manual: run `cairn-caddy migrate up --config <this config>` first",
			ErrPendingMigrations, len(st.Pending), st.Latest)
	}
	return nil, nil
}
