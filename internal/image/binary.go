package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BuildTags are the build tags of the image's binary. cmd/cairn-caddy's
// default module list leaves out Caddy's ACME server, the only user of
// smallstep's database drivers; these tags leave the drivers out too
// (github.com/smallstep/nosql's own tags). See docs/install.md, "What the
// image leaves out".
const BuildTags = "nobadger,nobbolt,nomysql,nopgx"

// LDFlags strip the symbol table and DWARF data, as release binaries do.
const LDFlags = "-s -w"

// GoBuildArgs are the `go build` arguments, after "go", for the image's
// binary; the Dockerfile runs the same command.
func GoBuildArgs(out string) []string {
	return []string{"build", "-trimpath", "-tags", BuildTags, "-ldflags", LDFlags, "-o", out, "./cmd/cairn-caddy"}
}

// GoBuildEnv is the environment `go build` runs in for p: a static binary
// (SQLite is pure Go, so cgo is not needed), cross-compiled when p is not
// this machine.
func GoBuildEnv(p v1.Platform) []string {
	return []string{"CGO_ENABLED=0", "GOOS=" + p.OS, "GOARCH=" + p.Architecture}
}

// BuildBinary compiles cmd/cairn-caddy of the checkout at repoRoot for p
// into out.
func BuildBinary(ctx context.Context, repoRoot string, p v1.Platform, out string) error {
	cmd := exec.CommandContext(ctx, "go", GoBuildArgs(out)...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), GoBuildEnv(p)...)
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s (%s): %w\n%s", strings.Join(GoBuildArgs(out), " "), PlatformString(p), err, output)
	}
	return nil
}
