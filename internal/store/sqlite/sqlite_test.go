package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/store/storetest"
)

func backend() storetest.Backend {
	return storetest.Backend{
		NewData: func(t *testing.T) string { return filepath.Join(t.TempDir(), "cairn.db") },
		Open: func(ctx context.Context, path string, now func() time.Time) (store.Store, error) {
			// A tiny purge batch makes every retention test cross batch
			// boundaries.
			return sqlite.Open(ctx, sqlite.Config{Path: path, Now: now, PurgeBatch: 2})
		},
		Exec: func(t *testing.T, path, stmt string) {
			t.Helper()
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.ExecContext(t.Context(), stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		},
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, backend())
}

func TestOpenRequiresPath(t *testing.T) {
	if _, err := sqlite.Open(t.Context(), sqlite.Config{}); err == nil {
		t.Fatal("Open without Path succeeded")
	}
}

func TestMigrations(t *testing.T) {
	storetest.RunMigrations(t, storetest.MigrationBackend{
		NewData: func(t *testing.T) string { return filepath.Join(t.TempDir(), "cairn.db") },
		New: func(path string) (storetest.MigratingStore, error) {
			return sqlite.New(sqlite.Config{Path: path})
		},
		RecordMigration: func(t *testing.T, path string, version int, name string) {
			db, err := sql.Open("sqlite", "file:"+path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.ExecContext(t.Context(), `CREATE TABLE IF NOT EXISTS schema_migrations (
				version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(t.Context(), `INSERT INTO schema_migrations VALUES (?, ?, 0)`, version, name); err != nil {
				t.Fatal(err)
			}
		},
	})
}

func TestNewCreatesNoFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cairn.db")
	s, err := sqlite.New(sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.MigrationStatus(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("New and MigrationStatus left %s behind (stat: %v)", path, err)
	}
	if st.Current != 0 || len(st.Pending) == 0 {
		t.Fatalf("status of a missing file %+v: want every migration pending", st)
	}
}

// TestTraits: one writer commits cursors in order, and its locks hold
// within the process only.
func TestTraits(t *testing.T) {
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.Traits(), (store.Traits{Backend: "sqlite", OrderedCursors: true}); got != want {
		t.Fatalf("traits %+v, want %+v", got, want)
	}
}

func TestKeyPackageHashUpgrade(t *testing.T) {
	storetest.KeyPackageHashUpgrade(t, backend(), func(t *testing.T, path string) {
		db, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, q := range []string{
			`DROP INDEX key_packages_sha256`,
			`ALTER TABLE key_packages DROP COLUMN data_sha256`,
			`DELETE FROM schema_migrations WHERE version = 2`,
		} {
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	})
}
