package postgres_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/storetest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// backend gives every test a fresh, empty schema in one database made for
// the whole run: CREATE DATABASE serialises in PostgreSQL and costs far
// more than CREATE SCHEMA.
func backend(t *testing.T) storetest.Backend {
	dbURL := testenv.Postgres(t)
	return storetest.Backend{
		NewData: func(t *testing.T) string {
			schema := testenv.RandomName("s_")
			conn, err := pgx.Connect(t.Context(), dbURL)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(t.Context(), "CREATE SCHEMA "+schema); err != nil {
				t.Fatalf("create schema: %v", err)
			}
			u, err := url.Parse(dbURL)
			if err != nil {
				t.Fatalf("parse URL: %v", err)
			}
			q := u.Query()
			q.Set("search_path", schema)
			u.RawQuery = q.Encode()
			return u.String()
		},
		Open: func(ctx context.Context, url string, now func() time.Time) (store.Store, error) {
			// A tiny purge batch makes every retention test cross batch
			// boundaries.
			return postgres.Open(ctx, postgres.Config{URL: url, Now: now, PurgeBatch: 2})
		},
		Exec: func(t *testing.T, url, stmt string) {
			t.Helper()
			conn, err := pgx.Connect(t.Context(), url)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(t.Context(), stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		},
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, backend(t))
}

func TestOpenRequiresURL(t *testing.T) {
	if _, err := postgres.Open(t.Context(), postgres.Config{}); err == nil {
		t.Fatal("Open without URL succeeded")
	}
}

func TestMigrations(t *testing.T) {
	storetest.RunMigrations(t, storetest.MigrationBackend{
		NewData: backend(t).NewData,
		New: func(url string) (storetest.MigratingStore, error) {
			return postgres.New(postgres.Config{URL: url})
		},
		RecordMigration: func(t *testing.T, url string, version int, name string) {
			conn, err := pgx.Connect(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			if _, err := conn.Exec(t.Context(), `CREATE TABLE IF NOT EXISTS schema_migrations (
				version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)`); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(t.Context(), `INSERT INTO schema_migrations VALUES ($1, $2, now())`, version, name); err != nil {
				t.Fatal(err)
			}
		},
	})
}

// TestNewConnectsToNothing proves New is lazy: a store built on an address
// where nothing listens builds, and only its first use fails.
func TestNewConnectsToNothing(t *testing.T) {
	s, err := postgres.New(postgres.Config{URL: "postgres://nobody@127.0.0.1:1/none?connect_timeout=2"})
	if err != nil {
		t.Fatalf("New dialled: %v", err)
	}
	defer s.Close()
	if _, err := s.MigrationStatus(t.Context()); err == nil {
		t.Fatal("MigrationStatus against nothing succeeded")
	}
}

// TestTraits: cursors drawn before commit are not visible in order, and
// nodes share the database (so the suite checks cross-node locks).
func TestTraits(t *testing.T) {
	s, err := postgres.Open(t.Context(), postgres.Config{URL: testenv.Postgres(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := s.Traits(), (store.Traits{Backend: "postgres", MultiNode: true}); got != want {
		t.Fatalf("traits %+v, want %+v", got, want)
	}
}

func TestKeyPackageHashUpgrade(t *testing.T) {
	storetest.KeyPackageHashUpgrade(t, backend(t), func(t *testing.T, url string) {
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		_, err = conn.Exec(t.Context(), `ALTER TABLE key_packages DROP COLUMN data_sha256;
			DELETE FROM schema_migrations WHERE version = 2`)
		if err != nil {
			t.Fatalf("undo migration 2: %v", err)
		}
	})
}

// TestPoolStats checks the pool report behind cairn_store_pool_*: one "main"
// pool with its configured limit, whose connections are counted once used.
func TestPoolStats(t *testing.T) {
	s, err := postgres.Open(t.Context(), postgres.Config{URL: testenv.Postgres(t), MaxConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.MigrationStatus(t.Context()); err != nil {
		t.Fatal(err)
	}
	stats := s.PoolStats()
	if len(stats) != 1 || stats[0].Pool != "main" || stats[0].Max != 3 || stats[0].InUse+stats[0].Idle < 1 {
		t.Fatalf("pool stats %+v, want one main pool of 3 with a connection opened", stats)
	}
}
