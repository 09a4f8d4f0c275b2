// Package release builds cairn-caddy's release artifacts: the binary for
// each target, reproducibly; a tarball of each; deb and rpm packages (with
// nfpm); a CycloneDX SBOM (with cyclonedx-gomod); SHA256SUMS; and the
// Homebrew, AUR and Nix recipes rendered with the real checksums.
// cmd/cairn-release is its command line and `make release` its usual
// caller; docs/install.md ("Release artifacts") describes the result.
//
// Reproducible means: from the same commit, with the same Go toolchain
// and tool versions, every file of the release directory has the same
// bytes. Builds use -trimpath and an empty build ID, and every timestamp
// (tar entries, package payloads and headers) is the commit time, as
// SOURCE_DATE_EPOCH.
package release

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Target is one platform a release binary is built for.
type Target struct {
	OS   string // GOOS
	Arch string // GOARCH
}

// String returns the target as os/arch.
func (t Target) String() string { return t.OS + "/" + t.Arch }

// ParseTargets reads targets written as os/arch, separated by spaces or
// commas.
func ParseTargets(s string) ([]Target, error) {
	var out []Target
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' || r == '\n' || r == '\t' }) {
		goos, goarch, ok := strings.Cut(f, "/")
		if !ok || goos == "" || goarch == "" || strings.Contains(goarch, "/") {
			return nil, fmt.Errorf("target %q: write it as os/arch (linux/amd64)", f)
		}
		out = append(out, Target{OS: goos, Arch: goarch})
	}
	if len(out) == 0 {
		return nil, errors.New("no targets")
	}
	return out, nil
}

// Config says what to build and where.
type Config struct {
	// Repo is the repository root.
	Repo string
	// Dist is the release directory. It must be absent, empty, or a
	// release directory written before (holding SHA256SUMS); it is emptied.
	Dist string
	// Source is the commit's version and time.
	Source Source
	// Targets are the platforms to build; packages are made for the linux
	// ones.
	Targets []Target
	// Tags are the Go build tags of the release binaries.
	Tags string
	// Maintainer is the packages' Maintainer field.
	Maintainer string
	// URL is the base download address of the release's files, which the
	// recipes point at.
	URL string
	// Go is the go command.
	Go string
	// NFPM and CycloneDX are the tools' module paths at pinned versions,
	// run with `go run`.
	NFPM, CycloneDX string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// caddyVersionVar is Caddy's hook for a packager's version string, which
// `cairn-caddy version` prints first.
const caddyVersionVar = "github.com/caddyserver/caddy/v2.CustomVersion"

// cairnVersionVar is the release identity `cairn-caddy upgrade-binary`
// and `rollback` compare (internal/version): semantic versioning with a
// leading v.
const cairnVersionVar = "github.com/cairn-chat/cairn-caddy/internal/version.stamped"

// SemVer turns a package version (1.2.3, 1.2.3~rc.1, 0.0.0~git<time>.g<sha>)
// into the semantic version internal/version expects (v1.2.3, v1.2.3-rc.1,
// v0.0.0-git<time>.g<sha>): Debian's ~ sorts before the release, as a
// semver pre-release does.
func SemVer(pkgVersion string) string {
	return "v" + strings.Replace(pkgVersion, "~", "-", 1)
}

// VersionLDFlags are the linker flags that stamp a binary with the package
// version pkgVersion: Caddy's version string (cairn-caddy/1.2.3, which
// `cairn-caddy version` prints) and the release identity
// internal/version reports (v1.2.3), which `upgrade-binary` and
// `rollback` compare. Release binaries and the image's binary carry the
// same stamp for the same commit.
func VersionLDFlags(pkgVersion string) string {
	return "-X " + caddyVersionVar + "=cairn-caddy/" + pkgVersion +
		" -X " + cairnVersionVar + "=" + SemVer(pkgVersion)
}

// Run builds the release into cfg.Dist and returns the SHA-256 of each
// file it wrote, by name.
func Run(ctx context.Context, cfg Config) (map[string]string, error) {
	if err := CheckVersion(cfg.Source.Version); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if err := prepareDist(cfg.Dist); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "cairn-release-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	var written []string
	data := RecipeData{Version: cfg.Source.Version, URL: cfg.URL, License: License}
	for _, t := range cfg.Targets {
		bin := filepath.Join(work, t.OS+"_"+t.Arch, "cairn-caddy")
		fmt.Fprintf(cfg.Log, "build %s\n", t)
		if err := buildBinary(ctx, cfg, t, bin); err != nil {
			return nil, err
		}
		tarball, err := writeTarball(cfg, t, bin)
		if err != nil {
			return nil, err
		}
		written = append(written, tarball.Name)
		data.Tarballs = append(data.Tarballs, tarball)
		sbom, err := writeSBOM(ctx, cfg, t, bin)
		if err != nil {
			return nil, err
		}
		written = append(written, sbom)
		if t.OS == "linux" {
			fmt.Fprintf(cfg.Log, "packages %s\n", t)
			pkgs, err := writePackages(ctx, cfg, t, bin)
			if err != nil {
				return nil, err
			}
			written = append(written, pkgs...)
		}
	}

	for _, r := range Recipes {
		out, err := renderRecipe(filepath.Join(cfg.Repo, r.Template), data)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(cfg.Dist, r.Output), out, 0o644); err != nil {
			return nil, err
		}
		written = append(written, r.Output)
	}
	return WriteSums(cfg.Dist, written)
}

// prepareDist empties the release directory, refusing one that holds
// anything but an earlier release.
func prepareDist(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, SumsFile)); err != nil {
		return fmt.Errorf("%s is not empty and holds no %s: not a release directory, refusing to empty it", dir, SumsFile)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// buildBinary builds cmd/cairn-caddy for t, reproducibly: no cgo, no
// paths, no build ID, no VCS stamp (the version is passed explicitly),
// and the baseline instruction set of each architecture.
func buildBinary(ctx context.Context, cfg Config, t Target, out string) error {
	ldflags := "-s -w -buildid= " + VersionLDFlags(cfg.Source.Version)
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out}
	if cfg.Tags != "" {
		args = append(args, "-tags", cfg.Tags)
	}
	args = append(args, "./cmd/cairn-caddy")
	env := append(os.Environ(), "CGO_ENABLED=0", "GOOS="+t.OS, "GOARCH="+t.Arch,
		"GOFLAGS=", "GOAMD64=v1", "GOARM64=v8.0")
	return run(ctx, cfg.Repo, env, cfg.Go, args...)
}

// tarballName is the file name of t's tarball, without .tar.gz.
func tarballName(version string, t Target) string {
	return "cairn-caddy_" + version + "_" + t.OS + "_" + t.Arch
}

// writeTarball archives the binary with what an operator installs beside
// it: the example Caddyfile, the systemd unit and the README.
func writeTarball(cfg Config, t Target, bin string) (Artifact, error) {
	dir := tarballName(cfg.Source.Version, t)
	name := dir + ".tar.gz"
	files := []ArchiveFile{
		{Name: "cairn-caddy", Source: bin, Mode: 0o755},
		{Name: "Caddyfile.example", Source: filepath.Join(cfg.Repo, "Caddyfile.example"), Mode: 0o644},
		{Name: "README.md", Source: filepath.Join(cfg.Repo, "README.md"), Mode: 0o644},
		{Name: "cairn-caddy.service", Source: filepath.Join(cfg.Repo, "deploy/systemd/cairn-caddy.service"), Mode: 0o644},
	}
	path := filepath.Join(cfg.Dist, name)
	if err := WriteTarGz(path, dir, files, cfg.Source.Time); err != nil {
		return Artifact{}, err
	}
	sum, err := FileSHA256(path)
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{Name: name, Dir: dir, SHA256: sum, Target: t}, nil
}

// packagedBinary is where the packages install the binary; the unit in
// deploy/systemd names /usr/local/bin, where a hand install puts it.
const packagedBinary = "/usr/bin/cairn-caddy"

// PackageNames returns the deb and rpm file names of version for the Go
// architecture goarch, as nfpm names them.
func PackageNames(version, goarch string) (deb, rpm string) {
	rpmArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[goarch]
	if rpmArch == "" {
		rpmArch = goarch
	}
	return "cairn-caddy_" + version + "-1_" + goarch + ".deb", "cairn-caddy-" + version + "-1." + rpmArch + ".rpm"
}

// writePackages makes the deb and the rpm of a linux target with nfpm
// (packaging/nfpm.yaml), from a staging directory with the binary, the
// unit pointed at the packaged binary, the Debian copyright file and the
// Debian changelog.
func writePackages(ctx context.Context, cfg Config, t Target, bin string) ([]string, error) {
	root := filepath.Join(filepath.Dir(bin), "pkgroot")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	if err := copyFile(bin, filepath.Join(root, "cairn-caddy"), 0o755); err != nil {
		return nil, err
	}
	unit, err := os.ReadFile(filepath.Join(cfg.Repo, "deploy/systemd/cairn-caddy.service"))
	if err != nil {
		return nil, err
	}
	unit = bytes.ReplaceAll(unit, []byte("/usr/local/bin/cairn-caddy"), []byte(packagedBinary))
	if err := os.WriteFile(filepath.Join(root, "cairn-caddy.service"), unit, 0o644); err != nil {
		return nil, err
	}
	copyright, err := renderRecipe(filepath.Join(cfg.Repo, CopyrightTemplate), RecipeData{Version: cfg.Source.Version, License: License})
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "copyright"), copyright, 0o644); err != nil {
		return nil, err
	}
	changelog, err := debianChangelog(cfg)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, "changelog.Debian.gz"), changelog, 0o644); err != nil {
		return nil, err
	}

	deb, rpm := PackageNames(cfg.Source.Version, t.Arch)
	env := append(os.Environ(),
		"VERSION="+cfg.Source.Version, "ARCH="+t.Arch, "PKGROOT="+root,
		"MAINTAINER="+cfg.Maintainer,
		"SOURCE_DATE_EPOCH="+strconv.FormatInt(cfg.Source.Time.Unix(), 10))
	for _, p := range []struct{ format, name string }{{"deb", deb}, {"rpm", rpm}} {
		if err := run(ctx, cfg.Repo, env, cfg.Go, "run", "-trimpath", cfg.NFPM, "package", "--config", "packaging/nfpm.yaml",
			"--packager", p.format, "--target", filepath.Join(cfg.Dist, p.name)); err != nil {
			return nil, err
		}
	}
	return []string{deb, rpm}, nil
}

// debianChangelog is the changelog.Debian.gz Debian policy asks every
// package for: one entry for this version, pointing at the release notes.
func debianChangelog(cfg Config) ([]byte, error) {
	var text bytes.Buffer
	fmt.Fprintf(&text, "cairn-caddy (%s-1) unstable; urgency=medium\n\n", cfg.Source.Version)
	fmt.Fprintf(&text, "  * Release %s; see the release notes at\n    https://github.com/cairn-chat/cairn-caddy/releases\n\n", cfg.Source.Version)
	fmt.Fprintf(&text, " -- %s  %s\n", cfg.Maintainer, cfg.Source.Time.UTC().Format(time.RFC1123Z))
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(text.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// SBOMName is the file name of the CycloneDX SBOM of t's binary.
func SBOMName(version string, t Target) string {
	return tarballName(version, t) + ".cdx.json"
}

// writeSBOM writes the CycloneDX SBOM of one release binary with
// cyclonedx-gomod's bin mode: the modules and the Go version the binary
// was actually linked from (its embedded build information), its build
// settings and its hashes. The serial number and timestamp, which would
// make two runs differ, are left out.
func writeSBOM(ctx context.Context, cfg Config, t Target, bin string) (string, error) {
	name := SBOMName(cfg.Source.Version, t)
	err := run(ctx, cfg.Repo, os.Environ(), cfg.Go, "run", "-trimpath", cfg.CycloneDX, "bin", "-json", "-std",
		"-noserial", "-notimestamp", "-version", cfg.Source.Version,
		"-output", filepath.Join(cfg.Dist, name), bin)
	return name, err
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// run runs a command in dir, returning its output in the error when it
// fails.
func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
