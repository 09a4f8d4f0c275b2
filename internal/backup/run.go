package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Run takes a backup into t: Write streams straight into t.Put, so the
// archive is never held whole in memory or on local disk. It returns the
// archive as t lists it and its manifest.
func Run(ctx context.Context, t Target, opts Options) (Archive, *Manifest, error) {
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	at := now().UTC().Truncate(time.Second)
	// Names have a resolution of one second: a second backup within the
	// same second (an operator's, right after the schedule's) waits for
	// the next one rather than overwrite the first.
	if as, err := t.List(ctx); err == nil {
		for taken(as, ArchiveName(at)) {
			select {
			case <-ctx.Done():
				return Archive{}, nil, ctx.Err()
			case <-time.After(time.Until(at.Add(time.Second))):
			}
			at = at.Add(time.Second)
			if n := now().UTC().Truncate(time.Second); n.After(at) {
				at = n
			}
		}
	}
	opts.Now = func() time.Time { return at }
	name := ArchiveName(at)
	pr, pw := io.Pipe()
	type result struct {
		m   *Manifest
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := Write(ctx, pw, opts)
		pw.CloseWithError(err)
		done <- result{m, err}
	}()
	cr := &countReader{r: pr}
	putErr := t.Put(ctx, name, cr)
	pr.CloseWithError(errors.New("the target stopped reading"))
	res := <-done
	if res.err != nil {
		// The snapshot failed: say so rather than the target's complaint
		// about a stream that ended early. Put does not make a failed
		// stream visible.
		return Archive{}, nil, res.err
	}
	if putErr != nil {
		return Archive{}, nil, fmt.Errorf("storing %s in %s: %w", name, t, putErr)
	}
	return Archive{Name: name, Size: cr.n, Created: at}, res.m, nil
}

// taken reports whether as holds an archive called name.
func taken(as []Archive, name string) bool {
	for _, a := range as {
		if a.Name == name {
			return true
		}
	}
	return false
}

// Fetch copies the archive name from t into a new temporary file in dir
// (os.TempDir when empty), for Restore to read twice. "latest" names the
// newest archive. The file holds the archive still encrypted; the caller
// removes it.
func Fetch(ctx context.Context, t Target, name, dir string) (path string, err error) {
	if name == "" || name == "latest" {
		as, err := t.List(ctx)
		if err != nil {
			return "", fmt.Errorf("listing %s: %w", t, err)
		}
		if len(as) == 0 {
			return "", fmt.Errorf("%w: %s holds no archive", ErrNoArchive, t)
		}
		name = as[0].Name
	}
	r, err := t.Open(ctx, name)
	if err != nil {
		return "", err
	}
	defer r.Close()
	f, err := os.CreateTemp(dir, "cairn-restore-*.cbk")
	if err != nil {
		return "", fmt.Errorf("spooling the archive: %w", err)
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", fmt.Errorf("reading %s from %s: %w", name, t, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("spooling the archive: %w", err)
	}
	return f.Name(), nil
}
