package release_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/release"
	"github.com/cairn-chat/cairn-caddy/internal/version"
)

// TestWriteTarGzIsReproducible writes the same files twice, with different
// modification times and permissions on disk and in a different order,
// and expects the same bytes, every entry stamped with the given time and
// owned by 0/0.
func TestWriteTarGzIsReproducible(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(a, []byte("binary"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("readme"), 0o600); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2026, 11, 30, 5, 57, 40, 0, time.UTC)
	files := []release.ArchiveFile{{Name: "cairn-caddy", Source: a, Mode: 0o755}, {Name: "README.md", Source: b, Mode: 0o644}}

	first := filepath.Join(dir, "1.tar.gz")
	if err := release.WriteTarGz(first, "top", files, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(a, time.Now(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "2.tar.gz")
	if err := release.WriteTarGz(second, "top", []release.ArchiveFile{files[1], files[0]}, mtime); err != nil {
		t.Fatal(err)
	}
	one, _ := os.ReadFile(first)
	two, _ := os.ReadFile(second)
	if !bytes.Equal(one, two) {
		t.Fatal("two archives of the same files differ")
	}

	zr, err := gzip.NewReader(bytes.NewReader(one))
	if err != nil {
		t.Fatal(err)
	}
	if !zr.ModTime.IsZero() || zr.Name != "" {
		t.Errorf("gzip header carries name %q, time %v", zr.Name, zr.ModTime)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if !h.ModTime.Equal(mtime) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" {
			t.Errorf("%s: mtime %v uid %d gid %d uname %q", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname)
		}
		if h.Name == "top/cairn-caddy" && h.Mode != 0o755 {
			t.Errorf("binary mode %o, want 755", h.Mode)
		}
	}
	want := []string{"top/", "top/README.md", "top/cairn-caddy"}
	if len(names) != len(want) || names[0] != want[0] || names[1] != want[1] || names[2] != want[2] {
		t.Errorf("entries %v, want %v", names, want)
	}
}

func TestVersionFromTag(t *testing.T) {
	for tag, want := range map[string]string{
		"v1.2.3":        "1.2.3",
		"v0.10.0-rc.1":  "0.10.0~rc.1",
		"v2.0.0-beta2":  "2.0.0~beta2",
		"1.2.3":         "",
		"v1.2":          "",
		"v1.2.3-rc/1":   "",
		"v1.2.3; rm -r": "",
	} {
		got, err := release.VersionFromTag(tag)
		if want == "" {
			if err == nil {
				t.Errorf("VersionFromTag(%q) = %q, want an error", tag, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("VersionFromTag(%q) = %q, %v; want %q", tag, got, err, want)
		}
		if err := release.CheckVersion(got); err != nil {
			t.Errorf("CheckVersion(%q): %v", got, err)
		}
	}
	dev := release.DevVersion(time.Date(2026, 11, 30, 5, 57, 40, 0, time.UTC), "8cfe75ccd3136a1b")
	if dev != "0.0.0~git20261130055740.g8cfe75ccd313" {
		t.Errorf("DevVersion = %q", dev)
	}
	for _, bad := range []string{"", "1.0-1", "../1", "v1.0.0", "1.0 0"} {
		if release.CheckVersion(bad) == nil {
			t.Errorf("CheckVersion(%q) accepted it", bad)
		}
	}
}

func TestParseTargets(t *testing.T) {
	ts, err := release.ParseTargets("linux/amd64, darwin/arm64\nfreebsd/amd64")
	if err != nil || len(ts) != 3 || ts[1].String() != "darwin/arm64" {
		t.Fatalf("ParseTargets = %v, %v", ts, err)
	}
	for _, bad := range []string{"", "linux", "linux/", "/amd64", "linux/amd64/v3"} {
		if _, err := release.ParseTargets(bad); err == nil {
			t.Errorf("ParseTargets(%q) accepted it", bad)
		}
	}
}

func TestSumsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.tar.gz", "a.deb"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sums, err := release.WriteSums(dir, []string{"b.tar.gz", "a.deb"})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, release.SumsFile))
	if !bytes.HasPrefix(raw, []byte(sums["a.deb"]+"  a.deb\n")) {
		t.Errorf("SHA256SUMS not sorted in sha256sum format:\n%s", raw)
	}
	read, err := release.ReadSums(filepath.Join(dir, release.SumsFile))
	if err != nil || len(read) != 2 || read["b.tar.gz"] != sums["b.tar.gz"] {
		t.Errorf("ReadSums = %v, %v; want %v", read, err, sums)
	}
}

// TestSemVerOfPackageVersions checks that every version the release
// tooling makes turns into one internal/version accepts, in the same order.
func TestSemVerOfPackageVersions(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1.2.3", "v1.2.3"},
		{"1.2.3~rc.1", "v1.2.3-rc.1"},
		{"0.0.0~git20261130080000.ga0238b0", "v0.0.0-git20261130080000.ga0238b0"},
		{release.DevVersion(time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC), "012345678901"), "v0.0.0-git20261130080000.g012345678901"},
	} {
		got := release.SemVer(tc.in)
		if got != tc.want || !version.Valid(got) {
			t.Errorf("SemVer(%q) = %q (valid %v), want %q", tc.in, got, version.Valid(got), tc.want)
		}
	}
	if !version.Newer(release.SemVer("1.2.3"), release.SemVer("1.2.3~rc.1")) {
		t.Error("a release must be newer than its release candidate")
	}
}
