package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/store/open"
)

// ErrNotEmpty means the target store holds data and Force was not given.
var ErrNotEmpty = errors.New("the target store is not empty: restore replaces everything in it; pass --force to allow that")

// RestoreOptions says where a restore goes.
type RestoreOptions struct {
	// Store is the database to restore into. A database without schema
	// is migrated first; its schema must then match the archive's.
	Store open.Config
	// Key is the operator's backup key.
	Key []byte
	// DataDir receives the archive's data files; empty means
	// Store.DataDir, and no data files are restored when both are empty.
	DataDir string
	// CaddyStorage receives the archive's Caddy storage, if it has any;
	// empty leaves it out.
	CaddyStorage string
	// Force allows replacing a store that holds data, and data files that
	// differ from the archive's.
	Force bool
	// Progress, if set, is called after each restored chunk.
	Progress func(Progress)

	// beforeCommit, for tests, runs just before the transaction commits.
	beforeCommit func() error
}

// Result is what a restore did.
type Result struct {
	Manifest *Manifest
	// Files are the paths written, absolute.
	Files []string
	// SkippedCaddy counts archived Caddy storage files not restored
	// because no CaddyStorage was given.
	SkippedCaddy int
}

// Restore restores the archive in the local file at path. It verifies the
// whole archive first, then restores it inside one transaction that it
// commits only after a second full check of what it wrote: a wrong key, a
// corrupted or truncated archive, a non-empty store without Force, or any
// failure on the way leaves the store as it was. Data files are written
// beside their destination and renamed into place after the commit.
func Restore(ctx context.Context, path string, opts RestoreOptions) (*Result, error) {
	m, err := verifyFile(path, opts.Key)
	if err != nil {
		return nil, err
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = opts.Store.DataDir
	}
	dest := func(name string) string {
		if rel, ok := strings.CutPrefix(name, "files/"); ok && dataDir != "" {
			return filepath.Join(dataDir, filepath.FromSlash(rel))
		}
		if rel, ok := strings.CutPrefix(name, "caddy/"); ok && opts.CaddyStorage != "" {
			return filepath.Join(opts.CaddyStorage, filepath.FromSlash(rel))
		}
		return ""
	}
	if err := prepareSchema(ctx, opts.Store); err != nil {
		return nil, err
	}
	s, err := openSink(ctx, opts.Store)
	if err != nil {
		return nil, err
	}
	defer s.rollback()
	if err := clearTarget(ctx, s, opts.Force); err != nil {
		return nil, err
	}
	res := &Result{Manifest: m}
	for _, f := range m.Files {
		d := dest(f.Path)
		if d == "" {
			if strings.HasPrefix(f.Path, "caddy/") {
				res.SkippedCaddy++
			}
			continue
		}
		if err := checkFileConflict(d, f, opts.Force); err != nil {
			return nil, err
		}
	}
	var temps []string
	defer func() {
		for _, t := range temps {
			os.Remove(t)
		}
	}()
	var done Progress
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the archive: %w", err)
	}
	defer f.Close()
	m2, err := readArchive(f, opts.Key, visitor{
		rows: func(t Table, rows [][]any) error {
			if err := s.insert(ctx, t, rows); err != nil {
				return fmt.Errorf("restoring %s: %w", t.Name, err)
			}
			done.Table, done.Rows = t.Name, done.Rows+int64(len(rows))
			if opts.Progress != nil {
				done.TotalRows = m.Rows()
				opts.Progress(done)
			}
			return nil
		},
		file: func(name string, mode, size int64, r io.Reader) error {
			d := dest(name)
			if d == "" {
				return nil
			}
			tmp := d + ".restore-tmp"
			temps = append(temps, tmp)
			return writeFile(tmp, 0o600, r)
		},
	})
	if err != nil {
		return nil, err
	}
	if !sameManifest(m, m2) {
		return nil, fmt.Errorf("%w: the archive changed while it was restored", ErrCorrupt)
	}
	if err := restoreCounters(ctx, s, m); err != nil {
		return nil, err
	}
	if opts.beforeCommit != nil {
		if err := opts.beforeCommit(); err != nil {
			return nil, err
		}
	}
	if err := s.commit(ctx); err != nil {
		return nil, fmt.Errorf("committing the restore: %w", err)
	}
	for _, t := range temps {
		final := strings.TrimSuffix(t, ".restore-tmp")
		if err := os.Rename(t, final); err != nil {
			return res, fmt.Errorf("the store is restored, but moving %s into place failed: %w", final, err)
		}
		res.Files = append(res.Files, final)
	}
	temps = nil
	return res, nil
}

// verifyFile runs Verify on the file at path.
func verifyFile(path string, key []byte) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the archive: %w", err)
	}
	defer f.Close()
	return Verify(f, key)
}

func sameManifest(a, b *Manifest) bool {
	if a.Rows() != b.Rows() || len(a.TableStats) != len(b.TableStats) || len(a.Files) != len(b.Files) {
		return false
	}
	for i := range a.TableStats {
		if a.TableStats[i] != b.TableStats[i] {
			return false
		}
	}
	for i := range a.Files {
		if a.Files[i] != b.Files[i] {
			return false
		}
	}
	return true
}

// prepareSchema migrates a target without schema, and refuses one whose
// schema is not the archive's.
func prepareSchema(ctx context.Context, cfg open.Config) error {
	b, err := open.New(cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	st, err := b.MigrationStatus(ctx)
	if err != nil {
		return fmt.Errorf("reading the schema of %s: %w", cfg, err)
	}
	if st.Current == 0 {
		if _, err := b.Migrate(ctx); err != nil {
			return fmt.Errorf("creating the schema of %s: %w", cfg, err)
		}
		if st, err = b.MigrationStatus(ctx); err != nil {
			return fmt.Errorf("reading the schema of %s: %w", cfg, err)
		}
	}
	if st.Current != SchemaVersion {
		return fmt.Errorf("%s is at schema version %d and the archive at %d: restore into a store at the archive's version", cfg, st.Current, SchemaVersion)
	}
	return nil
}

// clearTarget refuses a store with data unless force, and empties it.
// The singleton tables (event_horizon, audit_anchor) do not count.
func clearTarget(ctx context.Context, s sink, force bool) error {
	for _, t := range catalog {
		if singletonTables[t.Name] {
			continue
		}
		n, err := s.rowCount(ctx, t)
		if err != nil {
			return fmt.Errorf("reading the target store: %w", err)
		}
		if n > 0 && !force {
			return ErrNotEmpty
		}
	}
	for i := len(catalog) - 1; i >= 0; i-- {
		if err := s.clear(ctx, catalog[i]); err != nil {
			return fmt.Errorf("emptying %s: %w", catalog[i].Name, err)
		}
	}
	return nil
}

// restoreCounters sets each generated key's counter above the archive's
// counter, any restored value and, for event cursors, the purge horizon:
// a cursor or id handed out before the backup is never handed out again.
func restoreCounters(ctx context.Context, s sink, m *Manifest) error {
	for _, c := range counters {
		floor := m.Counters[c.name()]
		v, err := s.maxValue(ctx, c)
		if err != nil {
			return fmt.Errorf("reading %s: %w", c.name(), err)
		}
		floor = max(floor, v)
		if c.Table == "events" {
			h, err := s.horizon(ctx)
			if err != nil {
				return fmt.Errorf("reading the event horizon: %w", err)
			}
			floor = max(floor, h)
		}
		if err := s.setCounter(ctx, c, floor); err != nil {
			return fmt.Errorf("setting the counter of %s: %w", c.name(), err)
		}
	}
	return nil
}

// checkFileConflict refuses to replace a file whose content differs from
// the archive's, unless force.
func checkFileConflict(path string, f FileStats, force bool) error {
	have, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) || force {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	sum := sha256.Sum256(have)
	if hex.EncodeToString(sum[:]) != f.SHA256 {
		return fmt.Errorf("%s differs from the archive's copy: pass --force to replace it", path)
	}
	return nil
}

func writeFile(path string, mode fs.FileMode, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return f.Close()
}
