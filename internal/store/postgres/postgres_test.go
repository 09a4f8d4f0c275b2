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
		CrossNodeLocks: true,
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
