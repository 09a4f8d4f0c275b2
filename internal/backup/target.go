package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Target is where archives are kept: a local directory, S3-compatible
// object storage or a host reached by rsync over SSH. Every implementation
// passes runTargetSuite.
type Target interface {
	// Put stores the archive read from r under name. The archive becomes
	// visible to List and Open only once complete: a backup interrupted
	// half-way leaves nothing that looks like an archive.
	Put(ctx context.Context, name string, r io.Reader) error
	// Open reads the archive name; a missing one is an error matching
	// ErrNoArchive.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// List returns the archives, newest first.
	List(ctx context.Context) ([]Archive, error)
	// Delete removes the archive name.
	Delete(ctx context.Context, name string) error
	// String names the target for messages, without credentials.
	String() string
}

// ErrNoArchive means the target holds no archive of that name.
var ErrNoArchive = errors.New("no such archive")

// Archive is one archive a target holds.
type Archive struct {
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
}

// Archive names are cairn-<UTC time>.cbk, so that their order is their
// age on every target.
const (
	namePrefix = "cairn-"
	nameSuffix = ".cbk"
	nameTime   = "20060102T150405Z"
)

// ArchiveName names an archive taken at t.
func ArchiveName(t time.Time) string {
	return namePrefix + t.UTC().Format(nameTime) + nameSuffix
}

// parseArchiveName returns the time an archive name holds, or false for a
// name that is not an archive's.
func parseArchiveName(name string) (time.Time, bool) {
	s, ok := strings.CutPrefix(name, namePrefix)
	if !ok {
		return time.Time{}, false
	}
	if s, ok = strings.CutSuffix(s, nameSuffix); !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(nameTime, s)
	return t, err == nil
}

// checkName refuses a name that is not an archive's: no target reads or
// deletes anything else.
func checkName(name string) error {
	if _, ok := parseArchiveName(name); !ok {
		return fmt.Errorf("%q is not an archive name (cairn-YYYYMMDDTHHMMSSZ.cbk)", name)
	}
	return nil
}

// sortArchives orders archives newest first.
func sortArchives(as []Archive) {
	slices.SortFunc(as, func(a, b Archive) int { return strings.Compare(b.Name, a.Name) })
}

// Prune deletes all but the newest keep archives of t and returns the
// names it deleted.
func Prune(ctx context.Context, t Target, keep int) ([]string, error) {
	if keep < 1 {
		return nil, errors.New("keep must be at least 1")
	}
	as, err := t.List(ctx)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, a := range as[min(keep, len(as)):] {
		if err := t.Delete(ctx, a.Name); err != nil {
			return deleted, fmt.Errorf("deleting %s from %s: %w", a.Name, t, err)
		}
		deleted = append(deleted, a.Name)
	}
	return deleted, nil
}

// Dir is a Target in a local directory (a mounted volume, for example).
type Dir struct {
	// Path is the directory; it is created, mode 0700, if missing.
	Path string
}

// Put writes name through a temporary file renamed into place once synced.
func (d Dir) Put(_ context.Context, name string, r io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", d.Path, err)
	}
	f, err := os.CreateTemp(d.Path, ".partial-*")
	if err != nil {
		return fmt.Errorf("writing to %s: %w", d.Path, err)
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), filepath.Join(d.Path, name)); err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// Open opens name.
func (d Dir) Open(_ context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(d.Path, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s in %s", ErrNoArchive, name, d)
	}
	return f, err
}

// List lists the archives in the directory; a missing directory holds
// none.
func (d Dir) List(context.Context) ([]Archive, error) {
	entries, err := os.ReadDir(d.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", d, err)
	}
	var as []Archive
	for _, e := range entries {
		t, ok := parseArchiveName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", d, err)
		}
		as = append(as, Archive{Name: e.Name(), Size: info.Size(), Created: t})
	}
	sortArchives(as)
	return as, nil
}

// Delete removes name.
func (d Dir) Delete(_ context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(d.Path, name)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w: %s in %s", ErrNoArchive, name, d)
		}
		return err
	}
	return nil
}

// String names the directory.
func (d Dir) String() string { return "directory " + d.Path }

var _ Target = Dir{}

// ParseTarget reads a target from its command-line or Caddyfile form: a
// directory path, s3://bucket/prefix?endpoint=host:port&region=r, or
// rsync://user@host/path (rsync over SSH; CAIRN_BACKUP_RSYNC_SSH sets the
// ssh command).
func ParseTarget(spec string) (Target, error) {
	if strings.HasPrefix(spec, "s3://") {
		return parseS3(spec)
	}
	if strings.HasPrefix(spec, "rsync:") {
		r, err := parseRsync(spec)
		if err != nil {
			return nil, err
		}
		r.SSH = os.Getenv(RsyncSSHEnv)
		return r, nil
	}
	if strings.Contains(spec, "://") {
		return nil, fmt.Errorf("backup target %q: unsupported scheme; want a directory, s3://bucket/prefix or rsync://user@host/path", spec)
	}
	if spec == "" {
		return nil, errors.New("empty backup target")
	}
	return Dir{Path: spec}, nil
}

// RsyncSSHEnv is the environment variable holding the remote shell
// command for rsync targets, such as "ssh -i /root/.ssh/backup".
const RsyncSSHEnv = "CAIRN_BACKUP_RSYNC_SSH"
