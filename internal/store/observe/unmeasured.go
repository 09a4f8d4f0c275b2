package observe

import (
	"context"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// The methods below pass through unmeasured: Traits, Close and PoolStats
// make no round trip, and the schema's methods run once at start and for
// the operator's status, not per request.

// Traits implements store.Store.
func (s *Store) Traits() store.Traits { return s.b.Traits() }

// Close implements store.Store.
func (s *Store) Close() error { return s.b.Close() }

// PoolStats implements store.PoolStatser.
func (s *Store) PoolStats() []store.PoolStats { return s.b.PoolStats() }

// MigrationStatus implements store.Migrator.
func (s *Store) MigrationStatus(ctx context.Context) (store.MigrationStatus, error) {
	return s.b.MigrationStatus(ctx)
}

// Migrate implements store.Migrator.
func (s *Store) Migrate(ctx context.Context) ([]store.Migration, error) { return s.b.Migrate(ctx) }

// unmeasured names the methods of Backend that pass through unmeasured.
var unmeasured = []string{"Traits", "Close", "PoolStats", "MigrationStatus", "Migrate"}
