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
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store/open"
)

// Options says what a backup holds.
type Options struct {
	// Store is the database to snapshot.
	Store open.Config
	// Key is the operator's backup key (LoadKey).
	Key []byte
	// DataDir is the directory whose files (keys) the archive holds;
	// empty means Store.DataDir. The embedded database's own files are
	// left out: the tables carry them.
	DataDir string
	// CaddyStorage, if set, is Caddy's file storage directory
	// (certificates, ACME accounts) to include.
	CaddyStorage string
	// Exclude lists directories under DataDir to leave out, such as a
	// local backup target placed there.
	Exclude []string
	// Progress, if set, is called after each table chunk and file.
	Progress func(Progress)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Progress reports a running backup or restore.
type Progress struct {
	Table string `json:"table,omitempty"`
	Rows  int64  `json:"rows"`
	Bytes int64  `json:"bytes"`
	// TotalRows is the snapshot's row count when known, for an ETA.
	TotalRows int64 `json:"total_rows,omitempty"`
}

// Write takes a snapshot of the store and writes it, with the data files,
// as one encrypted archive to w. Memory stays bounded by chunkSize whatever
// the database's size.
func Write(ctx context.Context, w io.Writer, opts Options) (*Manifest, error) {
	if len(opts.Key) < MinKeySize {
		return nil, ErrNoKey
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	snap, err := openSnapshot(ctx, opts.Store)
	if err != nil {
		return nil, err
	}
	defer snap.close()
	version, err := snap.schemaVersion(ctx)
	if err != nil {
		return nil, err
	}
	if version != SchemaVersion {
		return nil, fmt.Errorf("%s is at schema version %d; this binary backs up schema version %d: run the binary that matches it, or `cairn-caddy migrate up`", opts.Store, version, SchemaVersion)
	}
	m := &Manifest{
		Header: Header{
			FormatVersion: FormatVersion,
			SchemaVersion: version,
			SourceBackend: string(opts.Store.Kind()),
			CreatedAt:     now().UTC().Truncate(time.Second),
			Tables:        catalog,
		},
		Counters: map[string]int64{},
	}
	aw, err := newArchiveWriter(w, opts.Key, m.CreatedAt)
	if err != nil {
		return nil, err
	}
	if err := aw.json("header.json", m.Header); err != nil {
		return nil, err
	}
	var done Progress
	for _, t := range catalog {
		tw := aw.table(t)
		err := snap.rows(ctx, t, func(row []any) error {
			before := tw.chunk
			if err := tw.row(row); err != nil {
				return err
			}
			if tw.chunk != before && opts.Progress != nil {
				opts.Progress(Progress{Table: t.Name, Rows: done.Rows + tw.stats.Rows, Bytes: done.Bytes + tw.stats.Bytes})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		st, err := tw.close()
		if err != nil {
			return nil, err
		}
		m.TableStats = append(m.TableStats, st)
		done.Rows, done.Bytes = done.Rows+st.Rows, done.Bytes+st.Bytes
		if opts.Progress != nil {
			opts.Progress(Progress{Table: t.Name, Rows: done.Rows, Bytes: done.Bytes})
		}
	}
	for _, c := range counters {
		if m.Counters[c.name()], err = snap.counter(ctx, c); err != nil {
			return nil, err
		}
	}
	// The snapshot is complete: release it before the files are read.
	snap.close()
	dataDir := opts.DataDir
	if dataDir == "" {
		dataDir = opts.Store.DataDir
	}
	if dataDir != "" {
		skip := append([]string{open.SQLiteFileName, open.SQLiteFileName + "-wal", open.SQLiteFileName + "-shm", open.SQLiteFileName + "-journal"}, opts.Exclude...)
		if m.Files, err = addTree(aw, dataDir, "files/", skip, m.Files); err != nil {
			return nil, err
		}
	}
	if opts.CaddyStorage != "" {
		if m.Files, err = addTree(aw, opts.CaddyStorage, "caddy/", nil, m.Files); err != nil {
			return nil, err
		}
	}
	if err := aw.json("manifest.json", m); err != nil {
		return nil, err
	}
	if err := aw.close(); err != nil {
		return nil, err
	}
	return m, nil
}

// addTree archives the regular files under dir as prefix/<relative path>,
// leaving out skip (paths relative to dir, or absolute) and anything not a
// regular file. A missing dir adds nothing.
func addTree(aw *archiveWriter, dir, prefix string, skip []string, files []FileStats) ([]FileStats, error) {
	absDir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", dir, err)
	}
	skipped := func(path, rel string) bool {
		for _, s := range skip {
			if !filepath.IsAbs(s) {
				s = filepath.Join(absDir, s)
			}
			if path == filepath.Clean(s) {
				return true
			}
		}
		return false
	}
	err = filepath.WalkDir(absDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == absDir {
				return fs.SkipAll
			}
			return err
		}
		rel, _ := filepath.Rel(absDir, path)
		if path != absDir && skipped(path, rel) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		// Leave out restore leftovers, lock files, and databases a rollback
		// set aside (cairn.db.before-rollback-…): the store is archived as
		// tables, not files.
		if !d.Type().IsRegular() || strings.HasSuffix(rel, ".restore-tmp") || strings.HasSuffix(rel, ".lock") ||
			strings.HasPrefix(rel, open.SQLiteFileName+".before-rollback-") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		info, err := f.Stat()
		if err != nil {
			return err
		}
		sum := sha256.New()
		name := prefix + filepath.ToSlash(rel)
		if err := aw.stream(name, int64(info.Mode().Perm()), info.Size(), io.TeeReader(f, sum)); err != nil {
			return err
		}
		files = append(files, FileStats{Path: name, Size: info.Size(), Mode: int64(info.Mode().Perm()), SHA256: hex.EncodeToString(sum.Sum(nil))})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("archiving %s: %w", dir, err)
	}
	return files, nil
}

// Verify reads a whole archive and checks it, writing nothing: the key,
// every package's authentication, every table's rows and digest and every
// file's digest. It returns the manifest.
func Verify(r io.Reader, key []byte) (*Manifest, error) {
	return readArchive(r, key, visitor{})
}
