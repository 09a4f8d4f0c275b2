package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/storetest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

func backend() storetest.Backend {
	return storetest.Backend{
		NewData: func(t *testing.T) string { return testenv.Postgres(t) },
		Open: func(ctx context.Context, url string, now func() time.Time) (store.Store, error) {
			// A tiny purge batch makes every retention test cross batch
			// boundaries.
			return postgres.Open(ctx, postgres.Config{URL: url, Now: now, PurgeBatch: 2})
		},
	}
}

func TestConformance(t *testing.T) {
	storetest.Run(t, backend())
}

func TestOpenRequiresURL(t *testing.T) {
	if _, err := postgres.Open(t.Context(), postgres.Config{}); err == nil {
		t.Fatal("Open without URL succeeded")
	}
}
