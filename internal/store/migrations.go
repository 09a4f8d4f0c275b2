package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// Migration is one embedded schema migration of a backend.
type Migration struct {
	// Version orders migrations; it is the file name's numeric prefix.
	Version int
	// Name is the file name, recorded in schema_migrations.
	Name string
	// SQL is the migration's statements.
	SQL string
}

// LoadMigrations reads the migrations in dir of fsys (files named
// NNNN_description.sql) and returns them in version order. Backends embed
// their own dialect's files and apply them with their own locking.
func LoadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		prefix, _, ok := strings.Cut(e.Name(), "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", e.Name())
		}
		v, err := strconv.Atoi(prefix)
		if err != nil {
			return nil, fmt.Errorf("migration %s: bad version: %w", e.Name(), err)
		}
		b, err := fs.ReadFile(fsys, dir+"/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	// A build with the cairn_upgrade_test tag (the upgrade test's "newer"
	// binary) adds a test-only migration; the shipped binary has none.
	ms = append(ms, testOnlyMigrations...)
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// AppliedMigration is a row of a database's schema_migrations table.
type AppliedMigration struct {
	Version int
	Name    string
}

// MigrationStatus compares a database's schema with the migrations this
// binary embeds.
type MigrationStatus struct {
	// Current is the highest applied version; 0 for an empty database.
	Current int
	// Latest is the highest version this binary knows.
	Latest int
	// Pending lists the known migrations not yet applied, in order.
	Pending []Migration
	// Unknown lists applied migrations this binary does not know: a newer
	// binary migrated the database.
	Unknown []AppliedMigration
}

// UpToDate reports whether every known migration is applied and none is
// unknown.
func (s MigrationStatus) UpToDate() bool { return len(s.Pending) == 0 && len(s.Unknown) == 0 }

// Check returns a *SchemaTooNewError when the database holds migrations
// this binary does not know, and nil otherwise.
func (s MigrationStatus) Check() error {
	if len(s.Unknown) == 0 {
		return nil
	}
	return &SchemaTooNewError{Current: s.Current, Latest: s.Latest, Unknown: s.Unknown}
}

// PlanMigrations compares the known migrations with the applied ones.
func PlanMigrations(known []Migration, applied []AppliedMigration) MigrationStatus {
	var st MigrationStatus
	done := make(map[int]bool, len(applied))
	isKnown := make(map[int]bool, len(known))
	for _, m := range known {
		isKnown[m.Version] = true
		st.Latest = max(st.Latest, m.Version)
	}
	for _, a := range applied {
		done[a.Version] = true
		st.Current = max(st.Current, a.Version)
		if !isKnown[a.Version] {
			st.Unknown = append(st.Unknown, a)
		}
	}
	for _, m := range known {
		if !done[m.Version] {
			st.Pending = append(st.Pending, m)
		}
	}
	sort.Slice(st.Unknown, func(i, j int) bool { return st.Unknown[i].Version < st.Unknown[j].Version })
	return st
}

// ErrSchemaTooNew is matched (with errors.Is) by a *SchemaTooNewError.
var ErrSchemaTooNew = errors.New("store: database schema is newer than this binary")

// SchemaTooNewError refuses a database that a newer binary migrated: the
// older code would misread or corrupt what the newer schema holds.
type SchemaTooNewError struct {
	// Current is the database's highest applied version.
	Current int
	// Latest is the highest version this binary knows.
	Latest int
	// Unknown lists the applied migrations this binary does not know.
	Unknown []AppliedMigration
}

func (e *SchemaTooNewError) Error() string {
	names := make([]string, len(e.Unknown))
	for i, m := range e.Unknown {
		names[i] = m.Name
	}
	return fmt.Sprintf("the database schema is at version %d (%s), newer than this binary knows (version %d): "+
		"a newer cairn-caddy migrated it. Run that newer binary, or roll back: `cairn-caddy rollback` (after `cairn-caddy upgrade-binary`) "+
		"restores the previous binary and the backup taken before the upgrade; otherwise restore that backup into an empty database with `cairn-caddy restore`",
		e.Current, strings.Join(names, ", "), e.Latest)
}

// Is makes errors.Is(err, ErrSchemaTooNew) true.
func (e *SchemaTooNewError) Is(target error) bool { return target == ErrSchemaTooNew }

// Migrator inspects and applies a backend's embedded schema migrations.
// Both backends implement it; the opener in store/open returns it beside
// the Store.
type Migrator interface {
	// MigrationStatus reads which migrations the database holds without
	// writing anything; an absent database or an empty one has none.
	MigrationStatus(ctx context.Context) (MigrationStatus, error)
	// Migrate applies the pending migrations, each exactly once even when
	// several processes migrate at once, and returns those it applied. It
	// refuses, with a *SchemaTooNewError and without writing, a database
	// holding migrations this binary does not know.
	Migrate(ctx context.Context) ([]Migration, error)
}

// Migrated is a backend's Open: it migrates s, just built by the backend's
// New (with newErr), and closes it if migrating fails.
func Migrated[S interface {
	Migrator
	Close() error
}](ctx context.Context, s S, newErr error) (S, error) {
	var zero S
	if newErr != nil {
		return zero, newErr
	}
	if _, err := s.Migrate(ctx); err != nil {
		s.Close()
		return zero, err
	}
	return s, nil
}
