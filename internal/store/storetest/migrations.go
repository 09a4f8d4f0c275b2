package storetest

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// MigratingStore is a backend's store with its schema controls.
type MigratingStore interface {
	store.Store
	store.Migrator
}

// MigrationBackend tells RunMigrations how to make data and build stores on
// it without migrating.
type MigrationBackend struct {
	// NewData returns the address of fresh, empty data for the calling
	// test, cleaned up when it ends.
	NewData func(t *testing.T) string
	// New builds a store on data without connecting or migrating (the
	// backend's lazy New). The suite closes it.
	New func(data string) (MigratingStore, error)
	// RecordMigration writes version and name into data's
	// schema_migrations (creating the table) without running anything, as
	// a newer binary that migrated the database would have left it.
	RecordMigration func(t *testing.T, data string, version int, name string)
}

// RunMigrations checks a backend's store.Migrator: status before and after
// Migrate, concurrent migrators, and the refusal of a schema newer than the
// binary.
func RunMigrations(t *testing.T, b MigrationBackend) {
	open := func(t *testing.T, data string) MigratingStore {
		t.Helper()
		s, err := b.New(data)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	status := func(t *testing.T, s MigratingStore) store.MigrationStatus {
		t.Helper()
		st, err := s.MigrationStatus(t.Context())
		if err != nil {
			t.Fatalf("MigrationStatus: %v", err)
		}
		return st
	}

	t.Run("FreshDatabaseHasEveryMigrationPending", func(t *testing.T) {
		s := open(t, b.NewData(t))
		st := status(t, s)
		if st.Current != 0 || st.Latest < 1 || len(st.Pending) == 0 || st.Pending[len(st.Pending)-1].Version != st.Latest || len(st.Unknown) != 0 || st.UpToDate() {
			t.Fatalf("fresh status %+v: want nothing applied and every known migration pending", st)
		}
		// Reading the status wrote nothing: it is the same again.
		if again := status(t, s); again.Current != 0 || len(again.Pending) != len(st.Pending) {
			t.Fatalf("status changed after a status read: %+v", again)
		}
	})

	t.Run("MigrateAppliesPendingOnce", func(t *testing.T) {
		s := open(t, b.NewData(t))
		pending := status(t, s).Pending
		applied, err := s.Migrate(t.Context())
		if err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		if len(applied) != len(pending) {
			t.Fatalf("Migrate applied %d migrations, want the %d pending", len(applied), len(pending))
		}
		st := status(t, s)
		if !st.UpToDate() || st.Current != st.Latest {
			t.Fatalf("status after Migrate %+v: want up to date", st)
		}
		if again, err := s.Migrate(t.Context()); err != nil || len(again) != 0 {
			t.Fatalf("second Migrate applied %d, err %v: want none", len(again), err)
		}
		// The schema serves: a read of a table the migrations made works.
		if _, err := s.EventHorizon(t.Context()); err != nil {
			t.Fatalf("migrated store does not answer: %v", err)
		}
	})

	t.Run("ConcurrentMigratorsApplyEachOnce", func(t *testing.T) {
		data := b.NewData(t)
		const n = 3
		var wg sync.WaitGroup
		counts := make([]int, n)
		errs := make([]error, n)
		for i := range n {
			s := open(t, data)
			wg.Go(func() {
				applied, err := s.Migrate(t.Context())
				counts[i], errs[i] = len(applied), err
			})
		}
		wg.Wait()
		total := 0
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("migrator %d: %v", i, errs[i])
			}
			total += counts[i]
		}
		if st := status(t, open(t, data)); !st.UpToDate() || total != countKnown(t, b) {
			t.Fatalf("migrators applied %d in total; status %+v", total, st)
		}
	})

	t.Run("NewerSchemaIsRefusedWithoutWriting", func(t *testing.T) {
		data := b.NewData(t)
		s := open(t, data)
		st := status(t, s)
		future := st.Latest + 1000
		b.RecordMigration(t, data, future, "9999_from_a_newer_binary.sql")
		st = status(t, s)
		if len(st.Unknown) != 1 || st.Unknown[0].Version != future || st.Current != future {
			t.Fatalf("status with a newer migration %+v: want it listed as unknown", st)
		}
		_, err := s.Migrate(t.Context())
		var tooNew *store.SchemaTooNewError
		if !errors.Is(err, store.ErrSchemaTooNew) || !errors.As(err, &tooNew) {
			t.Fatalf("Migrate on a newer schema: %v, want ErrSchemaTooNew", err)
		}
		for _, want := range []string{"9999_from_a_newer_binary.sql", "newer cairn-caddy", "cairn-caddy rollback"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("refusal %q does not say %q", err, want)
			}
		}
		if after := status(t, s); len(after.Pending) != len(st.Pending) {
			t.Fatalf("the refused Migrate applied migrations: pending %d, was %d", len(after.Pending), len(st.Pending))
		}
	})
}

// countKnown returns how many migrations the backend knows: all of them
// are pending on fresh data.
func countKnown(t *testing.T, b MigrationBackend) int {
	t.Helper()
	s, err := b.New(b.NewData(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer s.Close()
	st, err := s.MigrationStatus(t.Context())
	if err != nil {
		t.Fatalf("MigrationStatus: %v", err)
	}
	return len(st.Pending)
}
