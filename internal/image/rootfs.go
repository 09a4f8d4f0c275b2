package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Entry is one path of the image's root filesystem.
type Entry struct {
	// Path is absolute, in the image.
	Path string
	// Mode holds the permission bits and fs.ModeDir or fs.ModeSymlink.
	Mode fs.FileMode
	// UID and GID own the entry.
	UID, GID int
	// Data is a regular file's content.
	Data []byte
	// Link is a symbolic link's target.
	Link string
}

// Sources says where the base layer's files come from. The Debian files
// are read from the build machine's packages (ca-certificates, tzdata), so
// the image carries the bundle and zone data the machine's Debian release
// maintains.
type Sources struct {
	// RepoRoot is the checkout: deploy/image/rootfs/ (passwd, group,
	// nsswitch.conf) and Caddyfile.example come from it.
	RepoRoot string
	// CABundle is Debian's CA bundle, as update-ca-certificates writes it.
	CABundle string
	// Zoneinfo is the tzdata package's directory.
	Zoneinfo string
	// DocDir holds the packages' copyright files
	// (DocDir/<package>/copyright), shipped beside their data.
	DocDir string
}

// DebianSources are the standard Debian locations, with the checkout at
// repoRoot.
func DebianSources(repoRoot string) Sources {
	return Sources{
		RepoRoot: repoRoot,
		CABundle: "/etc/ssl/certs/ca-certificates.crt",
		Zoneinfo: "/usr/share/zoneinfo",
		DocDir:   "/usr/share/doc",
	}
}

// Image paths of the base layer's sources.
const (
	caBundlePath = "/etc/ssl/certs/ca-certificates.crt"
	zoneinfoPath = "/usr/share/zoneinfo"
	tmpDir       = "/tmp"
)

// RootfsDir is the checkout's directory copied to the image's root as it
// is (the Dockerfile does `COPY deploy/image/rootfs/ /`).
const RootfsDir = "deploy/image/rootfs"

// debianPackages are the packages whose files the base layer carries, for
// their copyright files.
var debianPackages = []string{"ca-certificates", "tzdata"}

// BaseEntries returns the base layer: every file except the binary. It is
// the same for every platform, so the platforms share it (one blob).
func BaseEntries(src Sources) ([]Entry, error) {
	var out []Entry
	add := func(e Entry) { out = append(out, e) }

	// The checkout's rootfs/ tree: /etc/passwd, /etc/group, nsswitch.conf.
	root := filepath.Join(src.RepoRoot, RootfsDir)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s: only regular files belong in %s", p, RootfsDir)
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		add(Entry{Path: "/" + filepath.ToSlash(rel), Mode: 0o644, Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", RootfsDir, err)
	}

	caddyfile, err := os.ReadFile(filepath.Join(src.RepoRoot, "Caddyfile.example"))
	if err != nil {
		return nil, fmt.Errorf("reading the default Caddyfile: %w", err)
	}
	add(Entry{Path: CaddyfilePath, Mode: 0o644, Data: caddyfile})

	ca, err := os.ReadFile(src.CABundle)
	if err != nil {
		return nil, fmt.Errorf("reading the CA bundle (Debian package ca-certificates): %w", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("%s holds no certificate", src.CABundle)
	}
	add(Entry{Path: caBundlePath, Mode: 0o644, Data: ca})

	zones, err := treeEntries(src.Zoneinfo, zoneinfoPath)
	if err != nil {
		return nil, fmt.Errorf("reading the time-zone data (Debian package tzdata): %w", err)
	}
	out = append(out, zones...)

	for _, pkg := range debianPackages {
		p := filepath.Join(src.DocDir, pkg, "copyright")
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("reading %s's copyright file: %w", pkg, err)
		}
		add(Entry{Path: path.Join("/usr/share/doc", pkg, "copyright"), Mode: 0o644, Data: data})
	}

	// The volume and Caddy's config directory belong to the user; /tmp is
	// everyone's, sticky.
	add(Entry{Path: DataDir, Mode: fs.ModeDir | 0o750, UID: UID, GID: GID})
	add(Entry{Path: ConfigDir, Mode: fs.ModeDir | 0o750, UID: UID, GID: GID})
	add(Entry{Path: tmpDir, Mode: fs.ModeDir | fs.ModeSticky | 0o777})
	// The binary's directory, so that the binary's layer adds one file.
	add(Entry{Path: path.Dir(BinaryPath), Mode: fs.ModeDir | 0o755})
	return withParents(out), nil
}

// BinaryEntry is the binary's layer.
func BinaryEntry(binary []byte) Entry {
	return Entry{Path: BinaryPath, Mode: 0o755, Data: binary}
}

// treeEntries copies a directory tree (regular files and relative symbolic
// links; absolute links point into the build machine's configuration and
// are left out) to dst in the image.
func treeEntries(dir, dst string) ([]Entry, error) {
	var out []Entry
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		switch {
		case d.IsDir():
			out = append(out, Entry{Path: target, Mode: fs.ModeDir | 0o755})
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if path.IsAbs(link) {
				// tzdata's zoneinfo/localtime -> /etc/localtime names the
				// machine's own zone: it would dangle in the image, which
				// runs in UTC unless TZ says otherwise.
				return nil
			}
			out = append(out, Entry{Path: target, Mode: fs.ModeSymlink | 0o777, Link: link})
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out = append(out, Entry{Path: target, Mode: 0o644, Data: data})
		default:
			return fmt.Errorf("%s: not a file, directory or link", p)
		}
		return nil
	})
	return out, err
}

// withParents adds the missing parent directories (root's, 0755) and sorts
// the entries by path, parents first.
func withParents(entries []Entry) []Entry {
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Path] = true
	}
	for _, e := range entries {
		for dir := path.Dir(e.Path); dir != "/" && !have[dir]; dir = path.Dir(dir) {
			have[dir] = true
			entries = append(entries, Entry{Path: dir, Mode: fs.ModeDir | 0o755})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Path < entries[j].Path })
	return entries
}

// layerTar writes entries as an uncompressed layer: paths relative to the
// root, every time set to created, no user or group names, so that the
// bytes depend only on the entries.
func layerTar(entries []Entry, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	created = created.UTC().Truncate(time.Second)
	for _, e := range entries {
		name := strings.TrimPrefix(e.Path, "/")
		h := &tar.Header{
			Name:    name,
			Mode:    int64(e.Mode.Perm()),
			Uid:     e.UID,
			Gid:     e.GID,
			ModTime: created,
			Format:  tar.FormatPAX,
		}
		if e.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case e.Mode.IsDir():
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case e.Mode&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.Link
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.Path, err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, fmt.Errorf("layer entry %s: %w", e.Path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
