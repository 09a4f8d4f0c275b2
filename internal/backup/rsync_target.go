package backup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"time"
)

// Rsync is a Target reached with the rsync command: a remote directory
// over SSH (user@host:/path), or a local directory rsync writes to (a
// mounted network share, for example).
type Rsync struct {
	// Dest is rsync's destination directory: user@host:/path or /path.
	Dest string
	// SSH is the remote shell command (rsync -e), for example
	// "ssh -i /root/.ssh/backup -p 2222". Empty means rsync's default.
	SSH string
	// Spool is the local directory where Put spools the archive before
	// sending it (rsync reads files, not streams); empty means
	// os.TempDir. The spool holds the archive encrypted.
	Spool string
}

// rsyncTimeout bounds each rsync run's I/O inactivity (rsync --timeout).
const rsyncTimeout = 5 * time.Minute

func (r Rsync) run(ctx context.Context, args ...string) ([]byte, error) {
	base := []string{"--timeout=" + strconv.Itoa(int(rsyncTimeout.Seconds())), "--protect-args"}
	if r.SSH != "" {
		base = append(base, "-e", r.SSH)
	}
	cmd := exec.CommandContext(ctx, "rsync", append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.IndexByte(msg, '\n'); i > 0 {
			msg = msg[:i]
		}
		return out, fmt.Errorf("rsync: %w: %s", err, msg)
	}
	return out, nil
}

func (r Rsync) remote(name string) string {
	return strings.TrimSuffix(r.Dest, "/") + "/" + name
}

// Put spools r to a local file, then sends it. rsync writes the
// destination to a temporary name and renames it when complete, so a
// failed transfer leaves no archive.
func (r Rsync) Put(ctx context.Context, name string, src io.Reader) error {
	if err := checkName(name); err != nil {
		return err
	}
	f, err := os.CreateTemp(r.Spool, ".cairn-spool-*")
	if err != nil {
		return fmt.Errorf("spooling %s: %w", name, err)
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return fmt.Errorf("spooling %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("spooling %s: %w", name, err)
	}
	if _, err := r.run(ctx, "--mkpath", "--chmod=F600", f.Name(), r.remote(name)); err != nil {
		return fmt.Errorf("sending %s to %s: %w", name, r, err)
	}
	return nil
}

// Open fetches name into a local temporary file, removed on Close.
func (r Rsync) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	as, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	found := false
	for _, a := range as {
		found = found || a.Name == name
	}
	if !found {
		return nil, fmt.Errorf("%w: %s in %s", ErrNoArchive, name, r)
	}
	dir, err := os.MkdirTemp(r.Spool, ".cairn-fetch-*")
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", name, err)
	}
	local := dir + "/" + name
	if _, err := r.run(ctx, r.remote(name), local); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("fetching %s from %s: %w", name, r, err)
	}
	f, err := os.Open(local)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &removeOnClose{File: f, dir: dir}, nil
}

type removeOnClose struct {
	*os.File
	dir string
}

func (f *removeOnClose) Close() error {
	err := f.File.Close()
	return errors.Join(err, os.RemoveAll(f.dir))
}

// List parses rsync --list-only of the destination directory.
func (r Rsync) List(ctx context.Context) ([]Archive, error) {
	out, err := r.run(ctx, "--list-only", "--no-human-readable", strings.TrimSuffix(r.Dest, "/")+"/")
	if err != nil {
		if strings.Contains(err.Error(), "No such file or directory") || strings.Contains(err.Error(), "change_dir") {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s: %w", r, err)
	}
	var as []Archive
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// -rw------- 1234 2026/11/30 03:00:00 cairn-….cbk
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || !strings.HasPrefix(fields[0], "-") {
			continue
		}
		name := path.Base(fields[len(fields)-1])
		t, ok := parseArchiveName(name)
		if !ok {
			continue
		}
		size, err := strconv.ParseInt(strings.ReplaceAll(fields[1], ",", ""), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("listing %s: unexpected line %q", r, sc.Text())
		}
		as = append(as, Archive{Name: name, Size: size, Created: t})
	}
	sortArchives(as)
	return as, nil
}

// Delete removes name with rsync alone (no remote shell command): an
// empty directory synchronised over the destination, deleting only name.
func (r Rsync) Delete(ctx context.Context, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	empty, err := os.MkdirTemp(r.Spool, ".cairn-empty-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(empty)
	_, err = r.run(ctx, "--recursive", "--delete", "--include=/"+name, "--exclude=*", empty+"/", strings.TrimSuffix(r.Dest, "/")+"/")
	if err != nil {
		return fmt.Errorf("deleting %s from %s: %w", name, r, err)
	}
	return nil
}

// String names the destination.
func (r Rsync) String() string { return "rsync " + r.Dest }

// parseRsync reads rsync://user@host/path (over SSH) or rsync:/local/path.
func parseRsync(spec string) (Rsync, error) {
	rest := strings.TrimPrefix(spec, "rsync:")
	if after, ok := strings.CutPrefix(rest, "//"); ok {
		host, p, ok := strings.Cut(after, "/")
		if !ok || host == "" || p == "" {
			return Rsync{}, fmt.Errorf("backup target %q: want rsync://user@host/path", spec)
		}
		return Rsync{Dest: host + ":/" + p}, nil
	}
	if !strings.HasPrefix(rest, "/") {
		return Rsync{}, fmt.Errorf("backup target %q: want rsync://user@host/path or rsync:/local/path", spec)
	}
	return Rsync{Dest: rest}, nil
}

var _ Target = Rsync{}
