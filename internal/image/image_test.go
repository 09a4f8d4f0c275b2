package image_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/image"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"github.com/cairn-chat/cairn-caddy/internal/version"
)

// The image is built once per test binary, from binaries built once: the
// amd64 image carries cairn-caddy, built as `make image` builds it, which
// the tests run; the arm64 image carries testdata/probe, a small static
// program cross-compiled in seconds, which the tests only inspect (its ELF
// machine, its place in the index). Cross-compiling cairn-caddy for arm64
// takes minutes of CPU, which `make image` spends and the suite does not.
var (
	buildOnce sync.Once
	built     struct {
		dir  string
		spec image.Spec
		out  image.Output
		err  error
	}
)

var testMeta = image.Metadata{
	Version:  "v1.2.3",
	Revision: "0123456789abcdef0123456789abcdef01234567",
	Created:  time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC),
	Source:   "https://github.com/cairn-chat/cairn-caddy",
	Licenses: image.DefaultLicenses,
}

const testRepo = "ghcr.io/cairn-chat/cairn-caddy"

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildImage builds the binaries and the image the way `make image` does
// (cmd/cairn-image runs the same functions) and writes it.
func buildImage(t *testing.T) (image.Spec, image.Output) {
	t.Helper()
	buildOnce.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "cairn-image-test-")
		if built.err != nil {
			return
		}
		spec := image.Spec{
			Metadata: testMeta,
			Sources:  image.DebianSources(gatewaytest.RepoRoot()),
			Binaries: map[string]string{},
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, p := range image.Platforms {
			bin := filepath.Join(built.dir, "cairn-caddy-"+p.Architecture)
			spec.Binaries[image.PlatformString(p)] = bin
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if p.Architecture == amd64.Architecture {
					err = image.BuildBinary(context.Background(), gatewaytest.RepoRoot(), p, testMeta, bin)
				} else {
					err = buildProbe(p, bin)
				}
				if err != nil {
					mu.Lock()
					built.err = errors.Join(built.err, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if built.err != nil {
			return
		}
		tags, err := image.Tags(testMeta.Version, "main")
		if err != nil {
			built.err = err
			return
		}
		idx, err := image.Build(spec)
		if err != nil {
			built.err = err
			return
		}
		built.spec = spec
		built.out, built.err = image.Write(idx, filepath.Join(built.dir, "out"), testRepo, tags)
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.spec, built.out
}

// buildProbe cross-compiles testdata/probe for p, static and stripped.
func buildProbe(p v1.Platform, out string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", image.StripFlags, "-o", out, "./testdata/probe")
	cmd.Env = append(os.Environ(), image.GoBuildEnv(p)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the %s probe: %v\n%s", image.PlatformString(p), err, b)
	}
	return nil
}

// layoutImage reads the image for p back from the OCI layout written.
func layoutImage(t *testing.T, out image.Output, p v1.Platform) v1.Image {
	t.Helper()
	_, idx, err := image.ReadLayout(out.Layout)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == p.OS && d.Platform.Architecture == p.Architecture {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("the index has no image for %s", image.PlatformString(p))
	return nil
}

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

// TestLayoutIsAMultiPlatformIndex: the layout's index.json names the image
// index once per tag, and the index holds one OCI image per platform, each
// with its platform's static, stripped binary (cairn-caddy for amd64, the
// probe for arm64; see buildImage) and the same base layer.
func TestLayoutIsAMultiPlatformIndex(t *testing.T) {
	_, out := buildImage(t)
	om, _, err := image.ReadLayout(out.Layout)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, d := range om.Manifests {
		if d.Digest.String() != out.Index {
			t.Errorf("index.json names %s, want the index %s", d.Digest, out.Index)
		}
		if d.MediaType != types.OCIImageIndex {
			t.Errorf("index.json entry media type %s, want %s", d.MediaType, types.OCIImageIndex)
		}
		refs = append(refs, d.Annotations["org.opencontainers.image.ref.name"])
	}
	sort.Strings(refs)
	if want := []string{"1", "1.2", "1.2.3", "latest"}; !reflect.DeepEqual(refs, want) {
		t.Errorf("tags in the layout %v, want %v", refs, want)
	}

	for _, p := range image.Platforms {
		img := layoutImage(t, out, p)
		mt, _ := img.MediaType()
		if mt != types.OCIManifestSchema1 {
			t.Errorf("%s: manifest media type %s, want OCI", image.PlatformString(p), mt)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS != p.OS || cf.Architecture != p.Architecture {
			t.Errorf("%s: config says %s/%s", image.PlatformString(p), cf.OS, cf.Architecture)
		}
		bin := fileInImage(t, img, image.BinaryPath)
		f, err := elf.NewFile(bytes.NewReader(bin))
		if err != nil {
			t.Fatalf("%s: %s is not ELF: %v", image.PlatformString(p), image.BinaryPath, err)
		}
		want := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[p.Architecture]
		if f.Machine != want {
			t.Errorf("%s: the binary is for %s", image.PlatformString(p), f.Machine)
		}
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				t.Errorf("%s: the binary is dynamically linked", image.PlatformString(p))
			}
		}
		if f.Section(".symtab") != nil {
			t.Errorf("%s: the binary is not stripped (-s)", image.PlatformString(p))
		}
	}

	// The base layer is the same blob on every platform.
	a, _ := layoutImage(t, out, image.Platforms[0]).Layers()
	b, _ := layoutImage(t, out, image.Platforms[1]).Layers()
	da, _ := a[0].Digest()
	db, _ := b[0].Digest()
	if da != db {
		t.Errorf("base layers differ between platforms: %s, %s", da, db)
	}
}

// TestBuildRefusesABinaryForAnotherMachine: an amd64 binary offered as the
// arm64 image's is refused when the image is built, not when a container
// fails to start on an arm64 host.
func TestBuildRefusesABinaryForAnotherMachine(t *testing.T) {
	spec, _ := buildImage(t)
	wrong := spec
	wrong.Binaries = map[string]string{"linux/arm64": spec.Binaries["linux/amd64"]}
	if _, err := image.Build(wrong); err == nil || !strings.Contains(err.Error(), "not arm64") {
		t.Errorf("Build with an amd64 binary for linux/arm64: %v", err)
	}
}

// fileInImage returns a regular file's content from the image's flattened
// file system.
func fileInImage(t *testing.T, img v1.Image, p string) []byte {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s is not in the image", p)
		}
		if err != nil {
			t.Fatal(err)
		}
		if "/"+strings.TrimPrefix(path.Clean(h.Name), "/") == p {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// TestImageConfig: the config JSON, as Docker and containerd read it, has
// the user, volume, ports, entrypoint, health check and OCI labels.
func TestImageConfig(t *testing.T) {
	_, out := buildImage(t)
	img := layoutImage(t, out, amd64)
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Created string `json:"created"`
		Config  struct {
			User         string
			Entrypoint   []string
			Cmd          []string
			Env          []string
			Volumes      map[string]struct{}
			ExposedPorts map[string]struct{}
			Labels       map[string]string
			Healthcheck  struct {
				Test        []string
				Interval    int64
				Timeout     int64
				StartPeriod int64
				Retries     int
			}
		} `json:"config"`
		History []struct {
			CreatedBy string `json:"created_by"`
		} `json:"history"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	c := doc.Config
	if c.User != "65532:65532" {
		t.Errorf("User %q, want the numeric non-root 65532:65532", c.User)
	}
	if !reflect.DeepEqual(c.Entrypoint, []string{"/usr/bin/cairn-caddy"}) {
		t.Errorf("Entrypoint %q", c.Entrypoint)
	}
	if !reflect.DeepEqual(c.Cmd, []string{"run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"}) {
		t.Errorf("Cmd %q", c.Cmd)
	}
	if _, ok := c.Volumes["/data"]; !ok || len(c.Volumes) != 1 {
		t.Errorf("Volumes %v, want /data only", c.Volumes)
	}
	for _, p := range []string{"80/tcp", "443/tcp", "443/udp"} {
		if _, ok := c.ExposedPorts[p]; !ok {
			t.Errorf("ExposedPorts %v lacks %s", c.ExposedPorts, p)
		}
	}
	if len(c.ExposedPorts) != 3 {
		t.Errorf("ExposedPorts %v: the metrics and admin ports must not be exposed", c.ExposedPorts)
	}
	if !reflect.DeepEqual(c.Healthcheck.Test, []string{"CMD", "/usr/bin/cairn-caddy", "healthcheck"}) {
		t.Errorf("Healthcheck.Test %q", c.Healthcheck.Test)
	}
	if c.Healthcheck.Interval <= 0 || c.Healthcheck.Timeout <= 0 || c.Healthcheck.Retries <= 0 {
		t.Errorf("Healthcheck timings %+v", c.Healthcheck)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.version":  "v1.2.3",
		"org.opencontainers.image.revision": testMeta.Revision,
		"org.opencontainers.image.source":   "https://github.com/cairn-chat/cairn-caddy",
		"org.opencontainers.image.licenses": image.DefaultLicenses,
		"org.opencontainers.image.created":  "2026-11-30T06:00:00Z",
		"org.opencontainers.image.title":    "cairn-caddy",
	}
	for k, v := range wantLabels {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if doc.Created != "2026-11-30T06:00:00Z" {
		t.Errorf("created %q, want the build's fixed time", doc.Created)
	}
	if !hasEnv(c.Env, "XDG_DATA_HOME=/data") {
		t.Errorf("Env %q: Caddy's data directory must be on the /data volume", c.Env)
	}
	if len(doc.History) != 2 {
		t.Errorf("history %+v, want the base and the binary layers", doc.History)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.Annotations["org.opencontainers.image.revision"] != testMeta.Revision {
		t.Errorf("manifest annotations %v lack the revision", m.Annotations)
	}
}

func hasEnv(env []string, kv string) bool {
	for _, e := range env {
		if e == kv {
			return true
		}
	}
	return false
}

// TestDockerArchivesLoadTheSameImage: each platform's `docker load`
// archive carries every tag and the same config and layers as the layout.
func TestDockerArchivesLoadTheSameImage(t *testing.T) {
	_, out := buildImage(t)
	for _, p := range image.Platforms {
		file := out.DockerArchives[image.PlatformString(p)]
		if file == "" {
			t.Fatalf("no docker archive for %s: %v", image.PlatformString(p), out.DockerArchives)
		}
		want := layoutImage(t, out, p)
		wantCfg, _ := want.ConfigName()
		wantLayers, _ := want.Layers()
		for _, ref := range []string{"latest", "1.2.3", "1.2", "1"} {
			tag, err := name.NewTag(testRepo + ":" + ref)
			if err != nil {
				t.Fatal(err)
			}
			img, err := tarball.ImageFromPath(file, &tag)
			if err != nil {
				t.Fatalf("%s: %s: %v", file, tag, err)
			}
			cfg, _ := img.ConfigName()
			if cfg != wantCfg {
				t.Errorf("%s %s: config %s, layout has %s", file, tag, cfg, wantCfg)
			}
			layers, err := img.Layers()
			if err != nil || len(layers) != len(wantLayers) {
				t.Fatalf("%s %s: %d layers (%v), want %d", file, tag, len(layers), err, len(wantLayers))
			}
			for i := range layers {
				a, _ := layers[i].DiffID()
				b, _ := wantLayers[i].DiffID()
				if a != b {
					t.Errorf("%s %s: layer %d is %s, layout has %s", file, tag, i, a, b)
				}
			}
		}
	}
}

// TestBuildIsReproducible: the same inputs give the same index digest.
func TestBuildIsReproducible(t *testing.T) {
	spec, out := buildImage(t)
	idx, err := image.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d.String() != out.Index {
		t.Errorf("a second build has index %s, the first %s", d, out.Index)
	}
}

// unpacked is an image's root file system written to a directory.
type unpacked struct {
	dir   string
	paths map[string]*tar.Header // by absolute path in the image
}

// unpack writes the flattened file system of img to a new directory, with
// owners and modes as the image declares them (the test runs as root).
func unpack(t *testing.T, img v1.Image) unpacked {
	t.Helper()
	u := unpacked{dir: t.TempDir(), paths: map[string]*tar.Header{}}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rel := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if rel == ".." || strings.HasPrefix(rel, "../") || path.IsAbs(rel) {
			t.Fatalf("layer entry %q escapes the root", h.Name)
		}
		u.paths["/"+rel] = h
		dst := filepath.Join(u.dir, filepath.FromSlash(rel))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(h.Linkname, dst); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		default:
			t.Fatalf("layer entry %s has type %c: only files, directories and links are declared", h.Name, h.Typeflag)
		}
	}
	// Owners and modes last, so a directory's mode does not stop its
	// children being written.
	for p, h := range u.paths {
		dst := filepath.Join(u.dir, filepath.FromSlash(p))
		if err := os.Lchown(dst, h.Uid, h.Gid); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeSymlink {
			mode := fs.FileMode(h.Mode).Perm()
			if h.Mode&0o1000 != 0 {
				mode |= fs.ModeSticky
			}
			if err := os.Chmod(dst, mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	return u
}

// TestImageHoldsOnlyWhatItDeclares: the flattened file system is the
// binary, the CA bundle, the zone files (byte for byte the Debian
// package's), passwd/group/nsswitch.conf, the Caddyfile, two copyright
// files and three directories: no shell, no package manager, no other
// executable, no source, no Go cache.
func TestImageHoldsOnlyWhatItDeclares(t *testing.T) {
	_, out := buildImage(t)
	img := layoutImage(t, out, amd64)
	root := gatewaytest.RepoRoot()
	host := image.DebianSources(root)
	readHost := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	wantFiles := map[string][]byte{
		"/etc/passwd":                              readHost(filepath.Join(root, "deploy/image/rootfs/etc/passwd")),
		"/etc/group":                               readHost(filepath.Join(root, "deploy/image/rootfs/etc/group")),
		"/etc/nsswitch.conf":                       readHost(filepath.Join(root, "deploy/image/rootfs/etc/nsswitch.conf")),
		"/etc/caddy/Caddyfile":                     readHost(filepath.Join(root, "Caddyfile.example")),
		"/etc/ssl/certs/ca-certificates.crt":       readHost(host.CABundle),
		"/usr/share/doc/ca-certificates/copyright": readHost(filepath.Join(host.DocDir, "ca-certificates/copyright")),
		"/usr/share/doc/tzdata/copyright":          readHost(filepath.Join(host.DocDir, "tzdata/copyright")),
		"/usr/bin/cairn-caddy":                     nil, // checked below
	}
	wantDirs := map[string]int{ // owner uid
		"/etc": 0, "/etc/caddy": 0, "/etc/ssl": 0, "/etc/ssl/certs": 0,
		"/usr": 0, "/usr/bin": 0, "/usr/share": 0, "/usr/share/doc": 0,
		"/usr/share/doc/ca-certificates": 0, "/usr/share/doc/tzdata": 0,
		"/data": image.UID, "/config": image.UID, "/tmp": 0,
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := map[string]bool{}
	zoneFiles := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := "/" + path.Clean(strings.TrimPrefix(h.Name, "/"))
		seen[p] = true
		if h.ModTime.UTC() != testMeta.Created {
			t.Errorf("%s: mtime %s, want the build's fixed time", p, h.ModTime)
		}
		if banned(p) {
			t.Errorf("%s is in the image: no shell, package manager, source or build cache belongs there", p)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg && bytes.HasPrefix(data, []byte("\x7fELF")) && p != image.BinaryPath {
			t.Errorf("%s is an executable; the binary is the only one declared", p)
		}
		switch {
		case p == "/usr/share/zoneinfo" || strings.HasPrefix(p, "/usr/share/zoneinfo/"):
			hostPath := filepath.Join(host.Zoneinfo, strings.TrimPrefix(p, "/usr/share/zoneinfo"))
			fi, err := os.Lstat(hostPath)
			if err != nil {
				t.Errorf("%s is not a file of the tzdata package: %v", p, err)
				continue
			}
			switch h.Typeflag {
			case tar.TypeReg:
				zoneFiles++
				if !bytes.Equal(data, readHost(hostPath)) {
					t.Errorf("%s differs from tzdata's %s", p, hostPath)
				}
			case tar.TypeSymlink:
				if link, _ := os.Readlink(hostPath); link != h.Linkname {
					t.Errorf("%s -> %s, tzdata's points to %s", p, h.Linkname, link)
				}
			case tar.TypeDir:
				if !fi.IsDir() {
					t.Errorf("%s is a directory, tzdata's is not", p)
				}
			}
		case h.Typeflag == tar.TypeDir:
			uid, ok := wantDirs[p]
			if !ok {
				t.Errorf("undeclared directory %s", p)
			} else if h.Uid != uid {
				t.Errorf("%s owned by %d, want %d", p, h.Uid, uid)
			}
		case h.Typeflag == tar.TypeReg:
			want, ok := wantFiles[p]
			if !ok {
				t.Errorf("undeclared file %s (%d bytes)", p, len(data))
			} else if want != nil && !bytes.Equal(data, want) {
				t.Errorf("%s differs from its source", p)
			}
			if h.Uid != 0 || fs.FileMode(h.Mode).Perm()&0o022 != 0 {
				t.Errorf("%s: owner %d mode %o; files must be root's and not writable by others", p, h.Uid, h.Mode)
			}
		default:
			t.Errorf("undeclared entry %s (type %c)", p, h.Typeflag)
		}
	}
	for p := range wantFiles {
		if !seen[p] {
			t.Errorf("%s is missing", p)
		}
	}
	for p := range wantDirs {
		if !seen[p] {
			t.Errorf("directory %s is missing", p)
		}
	}
	if zoneFiles < 300 {
		t.Errorf("only %d zone files: tzdata incomplete", zoneFiles)
	}
	// Every zone file and relative link of the package is there; an
	// absolute link (zoneinfo/localtime -> /etc/localtime) names the build
	// machine's zone and is left out.
	err := filepath.WalkDir(host.Zoneinfo, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(host.Zoneinfo, p)
		in := path.Join("/usr/share/zoneinfo", filepath.ToSlash(rel))
		if d.Type()&fs.ModeSymlink != 0 {
			if link, _ := os.Readlink(p); path.IsAbs(link) {
				if seen[in] {
					t.Errorf("%s, a link to the build machine's %s, is in the image", in, link)
				}
				return nil
			}
		}
		if !seen[in] {
			t.Errorf("tzdata's %s is missing from the image", in)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// banned reports paths that must never be in the image: shells, package
// managers and their databases, Go source, module and build caches.
func banned(p string) bool {
	base := path.Base(p)
	switch base {
	case "sh", "bash", "dash", "ash", "zsh", "busybox", "toybox",
		"apt", "apt-get", "dpkg", "apk", "rpm", "yum", "dnf", "microdnf", "pip", "go":
		return true
	}
	for _, prefix := range []string{"/bin", "/sbin", "/lib", "/var/lib/dpkg", "/var/lib/apt", "/root/", "/src", "/go", "/home"} {
		if p == prefix || strings.HasPrefix(p, prefix+"/") {
			return true
		}
	}
	return strings.HasSuffix(p, ".go") || strings.Contains(p, "go-build") || strings.Contains(p, "/pkg/mod") ||
		base == "go.mod" || base == "go.sum" || base == ".git"
}

// requireRoot: chroot and the image's owners need root, which CI has.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if testenv.RequireServices() {
		t.Fatal("the image test chroots into the image: it must run as root (CAIRN_REQUIRE_SERVICES=1)")
	}
	t.Skip("not root: cannot chroot into the image (set CAIRN_REQUIRE_SERVICES=1 to fail instead)")
}

// container is the image's binary running chrooted in its unpacked root
// file system as the image's user, with the image's environment: what a
// container runtime does, minus namespaces.
type container struct {
	proc *testenv.Process
	logs *testenv.SyncBuffer
}

// runtimeFiles writes what a container runtime provides at start:
// /etc/hosts and /etc/resolv.conf (Docker bind-mounts both).
func runtimeFiles(t *testing.T, root string) {
	t.Helper()
	for name, content := range map[string]string{
		"etc/hosts":       "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
		"etc/resolv.conf": "nameserver 127.0.0.1\n",
	} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// unpackAMD64 builds the image (once), unpacks its amd64 root file system
// with the files a runtime adds, and returns it with the image's config.
func unpackAMD64(t *testing.T) (*v1.ConfigFile, unpacked) {
	t.Helper()
	_, out := buildImage(t)
	img := layoutImage(t, out, amd64)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	u := unpack(t, img)
	runtimeFiles(t, u.dir)
	return cf, u
}

// chrootCmd runs argv in root as the image's user with the image's
// environment plus env, as a container runtime does: chroot(2) into root,
// the user's numeric group and user with no supplementary groups, and /
// as the working directory. It does that through SysProcAttr rather than
// chroot(1) --userspec: the kernel clears a process's parent-death signal
// when its credentials change, and the Go runtime changes them before it
// sets the signal, so a container started with testenv.StartProcess still
// dies with a test binary that is killed.
func chrootCmd(t *testing.T, root string, cfg v1.Config, env []string, argv ...string) *exec.Cmd {
	t.Helper()
	uid, gid, ok := strings.Cut(cfg.User, ":")
	u, uerr := strconv.ParseUint(uid, 10, 32)
	g, gerr := strconv.ParseUint(gid, 10, 32)
	if !ok || uerr != nil || gerr != nil {
		t.Fatalf("the image's user %q is not numeric uid:gid", cfg.User)
	}
	if len(argv) == 0 || !filepath.IsAbs(argv[0]) {
		t.Fatalf("command %q: want an absolute path in the image", argv)
	}
	return &exec.Cmd{
		Path: argv[0],
		Args: argv,
		Env:  append(append([]string{}, cfg.Env...), env...),
		Dir:  "/",
		SysProcAttr: &syscall.SysProcAttr{
			Chroot:     root,
			Credential: &syscall.Credential{Uid: uint32(u), Gid: uint32(g), Groups: []uint32{}},
		},
	}
}

func startContainer(t *testing.T, root string, cfg v1.Config, env []string, args ...string) *container {
	t.Helper()
	if len(args) == 0 {
		args = cfg.Cmd
	}
	c := &container{logs: &testenv.SyncBuffer{}}
	cmd := chrootCmd(t, root, cfg, env, append(append([]string{}, cfg.Entrypoint...), args...)...)
	cmd.Stdout, cmd.Stderr = c.logs, c.logs
	var err error
	if c.proc, err = testenv.StartProcess(t, cmd); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitFor polls until get answers without a transport error.
func (c *container) waitFor(t *testing.T, client *http.Client, url string) *http.Response {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-c.proc.Done():
			t.Fatalf("cairn-caddy exited in the image:\n%s", c.logs.String())
		default:
		}
		resp, err := client.Get(url)
		if err == nil {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v\n%s", url, err, c.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestImageServesFromItsRootFS unpacks the image written to the layout and
// runs its entrypoint and command chrooted as its declared user: the
// production Caddyfile it ships serves /xrpc/_health over HTTPS (Caddy's
// internal CA, the embedded SQLite store, in-memory limits), the image's
// own health check passes, and the data lands on the volume, owned by the
// user.
func TestImageServesFromItsRootFS(t *testing.T) {
	requireRoot(t)
	cf, u := unpackAMD64(t)

	httpsPort, httpPort := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	env := []string{
		fmt.Sprintf("CAIRN_HTTPS_PORT=%d", httpsPort),
		fmt.Sprintf("CAIRN_HTTP_PORT=%d", httpPort),
		fmt.Sprintf("CAIRN_ADMIN_ADDR=127.0.0.1:%d", gatewaytest.FreePort(t)),
		fmt.Sprintf("CAIRN_METRICS_ADDR=127.0.0.1:%d", gatewaytest.FreePort(t)),
	}
	c := startContainer(t, u.dir, cf.Config, env)

	// Trust the internal CA the node created on the volume.
	rootPEM := filepath.Join(u.dir, "data/caddy/pki/authorities/local/root.crt")
	var pool *x509.CertPool
	for deadline := time.Now().Add(60 * time.Second); pool == nil; time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(rootPEM); err == nil {
			pool = x509.NewCertPool()
			if !pool.AppendCertsFromPEM(b) {
				pool = nil
			}
		}
		if pool == nil && time.Now().After(deadline) {
			t.Fatalf("no internal CA at %s:\n%s", rootPEM, c.logs.String())
		}
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp := c.waitFor(t, client, fmt.Sprintf("https://localhost:%d/xrpc/_health", httpsPort))
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "cairn-caddy") {
		t.Fatalf("/xrpc/_health: %d %s", resp.StatusCode, body)
	}
	resp, err := client.Get(fmt.Sprintf("https://localhost:%d/xrpc/blue.catbird.mls.getConvos", httpsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "AuthMissing") {
		t.Errorf("getConvos without a token: %d %s, want 401 AuthMissing", resp.StatusCode, body)
	}

	// The image's HEALTHCHECK, run the way the runtime runs it: in the
	// container, as its user, with its environment.
	hc := cf.Config.Healthcheck
	if hc == nil || len(hc.Test) < 2 || hc.Test[0] != "CMD" {
		t.Fatalf("health check %+v: want an exec-form CMD", hc)
	}
	check := chrootCmd(t, u.dir, cf.Config, env, hc.Test[1:]...)
	if outp, err := check.CombinedOutput(); err != nil {
		t.Errorf("the image's health check %q failed: %v\n%s", hc.Test[1:], err, outp)
	}

	// The process runs as the declared user, and what it wrote is on the
	// volume and owned by that user.
	st, err := os.Stat(fmt.Sprintf("/proc/%d", c.proc.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid != image.UID {
		t.Errorf("the process runs as uid %d, want %d", uid, image.UID)
	}
	err = filepath.WalkDir(filepath.Join(u.dir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if uid := info.Sys().(*syscall.Stat_t).Uid; uid != image.UID {
			t.Errorf("%s owned by %d, want the image's user", p, uid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(u.dir, "data/caddy")); err != nil {
		t.Errorf("Caddy's data directory is not on the volume: %v", err)
	}
}

// TestImageAnswersAnAuthenticatedCall runs the image's binary chrooted as
// its user on a development Caddyfile an operator would mount on the
// volume (embedded SQLite, in-memory limits, DIDs from a local PLC
// directory, since production mode resolves only plc.directory), and makes
// an authenticated call with a service-auth token the reference atproto
// packages mint.
func TestImageAnswersAnAuthenticatedCall(t *testing.T) {
	requireRoot(t)
	atprototest.RequireHarness(t)
	cf, u := unpackAMD64(t)
	dev, err := os.ReadFile(filepath.Join(gatewaytest.RepoRoot(), "Caddyfile.dev"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(u.dir, "data/Caddyfile"), dev, 0o644); err != nil {
		t.Fatal(err)
	}

	plc := atprototest.NewPLC(t)
	port := gatewaytest.FreePort(t)
	env := []string{
		"CAIRN_PLC_URL=" + plc.URL,
		fmt.Sprintf("CAIRN_HTTP_PORT=%d", port),
		fmt.Sprintf("CAIRN_ADMIN_ADDR=127.0.0.1:%d", gatewaytest.FreePort(t)),
		fmt.Sprintf("CAIRN_METRICS_ADDR=127.0.0.1:%d", gatewaytest.FreePort(t)),
	}
	c := startContainer(t, u.dir, cf.Config, env, "run", "--config", "/data/Caddyfile", "--adapter", "caddyfile")
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 10 * time.Second}
	resp := c.waitFor(t, client, base+"/xrpc/_health")
	resp.Body.Close()
	started := time.Now()

	const alice = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
	iat := gatewaytest.FreshIat(started, atpauth.DefaultLeeway)
	minted := atprototest.Mint(t,
		[]atprototest.Key{{Name: "alice", Type: "k256"}},
		[]atprototest.Token{{Key: "alice", Iss: alice, Aud: "did:web:localhost", Lxm: "blue.catbird.mls.getConvos", Iat: iat, Exp: iat + 60}},
	)
	plc.Publish(alice, minted.Keys["alice"])
	req, _ := http.NewRequest(http.MethodGet, base+"/xrpc/blue.catbird.mls.getConvos", nil)
	req.Header.Set("Authorization", "Bearer "+minted.Tokens[0])
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var convos struct {
		Convos []json.RawMessage `json:"conversations"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &convos) != nil || convos.Convos == nil {
		t.Fatalf("authenticated getConvos: %d %s, want 200 with a conversations list\n%s", resp.StatusCode, body, c.logs.String())
	}
}

// TestImageBinaryReportsItsVersion runs the image's binary chrooted as its
// user and asks it for its version the way `cairn-caddy upgrade-binary`
// does (release-info --json) and the way an operator does (version): it
// reports the release the image is labelled with, as a release version
// upgrade-binary accepts, and Caddy's version line names the package
// version `make release` gives the same commit.
func TestImageBinaryReportsItsVersion(t *testing.T) {
	requireRoot(t)
	cf, u := unpackAMD64(t)
	label := cf.Config.Labels[image.LabelVersion]

	info := chrootCmd(t, u.dir, cf.Config, nil, append(append([]string{}, cf.Config.Entrypoint...), "release-info", "--json")...)
	outp, err := info.Output()
	if err != nil {
		t.Fatalf("release-info --json in the image: %v\n%s", err, outp)
	}
	var summary struct {
		Type    string `json:"type"`
		Version string `json:"version"`
	}
	for _, line := range strings.Split(strings.TrimSpace(string(outp)), "\n") {
		if err := json.Unmarshal([]byte(line), &summary); err != nil {
			t.Fatalf("release-info --json line %q: %v", line, err)
		}
	}
	if summary.Version != label || !version.Valid(summary.Version) {
		t.Errorf("the image's binary reports version %q (valid release version: %v), want its label %q", summary.Version, version.Valid(summary.Version), label)
	}

	ver := chrootCmd(t, u.dir, cf.Config, nil, append(append([]string{}, cf.Config.Entrypoint...), "version")...)
	outp, err = ver.Output()
	if err != nil {
		t.Fatalf("version in the image: %v\n%s", err, outp)
	}
	if want := "cairn-caddy/" + testMeta.PackageVersion(); !strings.HasPrefix(string(outp), want+" ") {
		t.Errorf("cairn-caddy version in the image printed %q, want it to start with %q", outp, want)
	}
}
