package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cairn-chat/cairn-caddy/internal/release"
)

// BuildTags are the build tags of the image's binary. cmd/cairn-caddy's
// default module list leaves out Caddy's ACME server, the only user of
// smallstep's database drivers; these tags leave the drivers out too
// (github.com/smallstep/nosql's own tags). See docs/install.md, "What the
// image leaves out".
const BuildTags = "nobadger,nobbolt,nomysql,nopgx"

// StripFlags strip the symbol table and DWARF data, as release binaries do.
const StripFlags = "-s -w"

// LDFlags are the linker flags of the image's binary built from the commit
// m describes: stripped, and stamped with m.PackageVersion() exactly as
// `make release` stamps its binaries (release.VersionLDFlags), so that
// `cairn-caddy version` and `release-info` report the release and
// `upgrade-binary` accepts the binary. `cairn-image ldflags` prints them
// for the Dockerfile.
func LDFlags(m Metadata) string {
	return StripFlags + " " + release.VersionLDFlags(m.PackageVersion())
}

// PackageVersion is the package version `make release` gives the same
// commit: a release or pre-release version (v1.2.3 is 1.2.3, v1.2.3-rc.1
// is 1.2.3~rc.1) when m.Version is one, the development version
// 0.0.0~git<commit time>.g<commit> otherwise (a later commit as `git
// describe` names it, a modified tree, an untagged commit), from
// m.Created and m.Revision, which `make image` sets to the commit's time
// and hash.
func (m Metadata) PackageVersion() string {
	if isRelease(m.Version) {
		if v, err := release.VersionFromTag("v" + strings.TrimPrefix(m.Version, "v")); err == nil {
			return v
		}
	}
	return release.DevVersion(m.Created, m.Revision)
}

// GoBuildArgs are the `go build` arguments, after "go", for the image's
// binary linked with ldflags (LDFlags); the Dockerfile runs the same
// command.
func GoBuildArgs(ldflags, out string) []string {
	return []string{"build", "-trimpath", "-tags", BuildTags, "-ldflags", ldflags, "-o", out, "./cmd/cairn-caddy"}
}

// GoBuildEnv is the environment `go build` runs in for p: a static binary
// (SQLite is pure Go, so cgo is not needed), cross-compiled when p is not
// this machine.
func GoBuildEnv(p v1.Platform) []string {
	return []string{"CGO_ENABLED=0", "GOOS=" + p.OS, "GOARCH=" + p.Architecture}
}

// BuildBinary compiles cmd/cairn-caddy of the checkout at repoRoot for p
// into out, stamped with m's version (LDFlags).
func BuildBinary(ctx context.Context, repoRoot string, p v1.Platform, m Metadata, out string) error {
	args := GoBuildArgs(LDFlags(m), out)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), GoBuildEnv(p)...)
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s (%s): %w\n%s", strings.Join(args, " "), PlatformString(p), err, output)
	}
	return nil
}
