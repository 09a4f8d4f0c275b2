package sqlite_test

import (
	"context"
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
