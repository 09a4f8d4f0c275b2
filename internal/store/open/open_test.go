package open_test

import (
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/store/open"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

func TestConfigChoosesTheBackend(t *testing.T) {
	for _, tc := range []struct {
		cfg     open.Config
		kind    open.Kind
		str     string
		invalid string
	}{
		{cfg: open.Config{DataDir: "/var/lib/cairn"}, kind: open.SQLite, str: "SQLite /var/lib/cairn/cairn.db"},
		{cfg: open.Config{Database: "  ", DataDir: "/d"}, kind: open.SQLite, str: "SQLite /d/cairn.db"},
		{cfg: open.Config{Database: "postgres://u:secret@db:5432/cairn"}, kind: open.Postgres, str: "PostgreSQL postgres://u:xxxxx@db:5432/cairn"},
		{cfg: open.Config{Database: "host=db dbname=cairn password=secret"}, kind: open.Postgres, str: "PostgreSQL (connection string)"},
		{cfg: open.Config{}, kind: open.SQLite, invalid: "data_dir"},
		{cfg: open.Config{Database: "db.example.com"}, kind: open.Postgres, invalid: "PostgreSQL URL"},
		{cfg: open.Config{Database: "mysql://db/x"}, kind: open.Postgres, invalid: "PostgreSQL URL"},
	} {
		if got := tc.cfg.Kind(); got != tc.kind {
			t.Errorf("%+v: kind %s, want %s", tc.cfg, got, tc.kind)
		}
		err := tc.cfg.Validate()
		if tc.invalid != "" {
			if err == nil || !strings.Contains(err.Error(), tc.invalid) {
				t.Errorf("%+v: Validate %v, want an error naming %q", tc.cfg, err, tc.invalid)
			}
			if _, err := open.New(tc.cfg); err == nil {
				t.Errorf("%+v: New accepted an invalid config", tc.cfg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", tc.cfg, err)
		}
		if got := tc.cfg.String(); got != tc.str {
			t.Errorf("%+v: String %q, want %q", tc.cfg, got, tc.str)
		}
	}
}

// TestNewIsLazyAndMigrateMakesTheSchema opens both backends through the
// opener: New creates and connects to nothing, Migrate makes a schema that
// serves.
func TestNewIsLazyAndMigrateMakesTheSchema(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	for _, cfg := range []open.Config{{DataDir: dir}, {Database: testenv.Postgres(t)}} {
		b, err := open.New(cfg)
		if err != nil {
			t.Fatalf("%s: %v", cfg, err)
		}
		if _, err := os.Stat(dir); cfg.Kind() == open.SQLite && !os.IsNotExist(err) {
			t.Fatalf("%s: New created the data directory", cfg)
		}
		if _, err := b.Migrate(t.Context()); err != nil {
			t.Fatalf("%s: Migrate: %v", cfg, err)
		}
		if _, err := b.EventHorizon(t.Context()); err != nil {
			t.Fatalf("%s: migrated store does not answer: %v", cfg, err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, open.SQLiteFileName)); err != nil {
		t.Fatalf("Migrate did not create the SQLite file in the data directory: %v", err)
	}
}

func TestPrepareMigratesOrRefusesPendingMigrations(t *testing.T) {
	b, err := open.New(open.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := open.Prepare(t.Context(), b, false); !errors.Is(err, open.ErrPendingMigrations) || !strings.Contains(err.Error(), "migrate up") {
		t.Fatalf("Prepare without migrating a fresh database: %v, want ErrPendingMigrations naming migrate up", err)
	}
	applied, err := open.Prepare(t.Context(), b, true)
	if err != nil || len(applied) == 0 {
		t.Fatalf("Prepare with migrating: %d applied, %v", len(applied), err)
	}
	if applied, err := open.Prepare(t.Context(), b, false); err != nil || len(applied) != 0 {
		t.Fatalf("Prepare without migrating an up-to-date database: %v, %v", applied, err)
	}
}

// FuzzConfig feeds arbitrary database URLs to the opener's checks: they
// never panic, and a URL's password never reaches the name used in
// messages.
func FuzzConfig(f *testing.F) {
	for _, seed := range []string{"", "postgres://u:pw@h/db", "postgresql://h:5432/db?sslmode=disable", "postgres://u:p%40ss@[::1]:5/db", "mysql://x", "::", "postgres://%zz"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, database string) {
		c := open.Config{Database: database, DataDir: "/data"}
		name := c.String()
		_ = c.Key()
		if c.Validate() != nil {
			return
		}
		u, err := url.Parse(strings.TrimSpace(database))
		if err != nil || c.Kind() != open.Postgres {
			return
		}
		if pw, ok := u.User.Password(); ok && len(pw) >= 4 && strings.Contains(name, pw) && !strings.Contains(u.Redacted(), pw) {
			t.Fatalf("String %q shows the password of %q", name, database)
		}
	})
}
