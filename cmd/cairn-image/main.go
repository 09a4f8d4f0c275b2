// Command cairn-image builds cairn-caddy's container image without a
// container engine (`make image`), and reports what makes the binary big
// (`make size`).
//
//	cairn-image build [flags]   the OCI layout and `docker load` archives
//	cairn-image size BINARY     size by package and module, from `go tool nm -size`
//	cairn-image ldflags [flags] the binary's linker flags, with its version stamp (the Dockerfile's)
//
// See docs/install.md ("Container image") and docs/benchmarks.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/cairn-chat/cairn-caddy/internal/binsize"
	"github.com/cairn-chat/cairn-caddy/internal/image"
)

const usage = `usage:
  cairn-image build [flags]        build the image (see -h)
  cairn-image size [flags] BINARY  size by package of a binary built without -s
  cairn-image inspect LAYOUT       each platform image's size in an OCI layout
  cairn-image ldflags [flags]      the image binary's linker flags (see -h)
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "build":
		err = build(os.Args[2:], os.Stdout)
	case "size":
		err = size(os.Args[2:], os.Stdout)
	case "inspect":
		err = inspect(os.Args[2:], os.Stdout)
	case "ldflags":
		err = ldflags(os.Args[2:], os.Stdout)
	case "-h", "--help", "help":
		fmt.Fprint(os.Stdout, usage)
		return
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cairn-image %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func build(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	out := fs.String("out", "dist/image", "directory to write the OCI layout (oci/) and the docker archives to")
	version := fs.String("version", "", "the version label; a release vX.Y.Z also names the tags")
	revision := fs.String("revision", "", "the commit built")
	created := fs.Int64("created", 0, "build time as Unix seconds (the commit's time, for reproducible builds)")
	source := fs.String("source", "https://github.com/cairn-chat/cairn-caddy", "the source repository URL")
	licenses := fs.String("licenses", image.DefaultLicenses, "SPDX expression for the licenses label")
	repo := fs.String("repo", "ghcr.io/cairn-chat/cairn-caddy", "the image repository the tags name")
	branch := fs.String("branch", "main", "the tag of a build that is not a release")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated platforms")
	root := fs.String("root", ".", "the checkout (go.mod, Caddyfile.example, deploy/image/rootfs)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	prebuilt := map[string]string{}
	fs.Func("binary", "PLATFORM=PATH: pack this static binary for the platform instead of building it (repeatable)", func(v string) error {
		plat, path, ok := strings.Cut(v, "=")
		if !ok || path == "" {
			return fmt.Errorf("want PLATFORM=PATH, as linux/amd64=dist/cairn-caddy")
		}
		prebuilt[plat] = path
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *created <= 0 {
		return fmt.Errorf("--created: want the build time in Unix seconds (git log -1 --format=%%ct)")
	}
	tags, err := image.Tags(*version, *branch)
	if err != nil {
		return err
	}
	repoRoot, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	binDir, err := os.MkdirTemp("", "cairn-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(binDir)
	spec := image.Spec{
		Metadata: image.Metadata{
			Version:  *version,
			Revision: *revision,
			Created:  time.Unix(*created, 0).UTC(),
			Source:   *source,
			Licenses: *licenses,
		},
		Sources:  image.DebianSources(repoRoot),
		Binaries: map[string]string{},
	}
	if err := spec.Metadata.Validate(); err != nil {
		return err
	}
	for _, ps := range strings.Split(*platforms, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(ps))
		if err != nil {
			return fmt.Errorf("--platforms %q: %w", ps, err)
		}
		if path, ok := prebuilt[image.PlatformString(*p)]; ok {
			spec.Binaries[image.PlatformString(*p)] = path
			continue
		}
		bin := filepath.Join(binDir, "cairn-caddy-"+p.OS+"-"+p.Architecture)
		fmt.Fprintf(os.Stderr, "building cairn-caddy for %s\n", image.PlatformString(*p))
		if err := image.BuildBinary(context.Background(), repoRoot, *p, spec.Metadata, bin); err != nil {
			return err
		}
		spec.Binaries[image.PlatformString(*p)] = bin
	}
	idx, err := image.Build(spec)
	if err != nil {
		return err
	}
	res, err := image.Write(idx, *out, *repo, tags)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "image index %s\n", res.Index)
	fmt.Fprintf(stdout, "OCI layout  %s\n", res.Layout)
	for _, p := range sortedKeys(res.DockerArchives) {
		fmt.Fprintf(stdout, "docker load %s (%s)\n", res.DockerArchives[p], p)
	}
	for _, t := range res.Tags {
		fmt.Fprintf(stdout, "tag         %s\n", t)
	}
	return nil
}

func size(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("size", flag.ContinueOnError)
	top := fs.Int("top", 40, "how many packages and modules to list")
	asJSON := fs.Bool("json", false, "print the whole report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one binary (built without -ldflags=-s)")
	}
	nm := exec.Command("go", "tool", "nm", "-size", fs.Arg(0))
	nm.Stderr = os.Stderr
	pipe, err := nm.StdoutPipe()
	if err != nil {
		return err
	}
	if err := nm.Start(); err != nil {
		return fmt.Errorf("go tool nm: %w", err)
	}
	rep, perr := binsize.Parse(pipe)
	if err := nm.Wait(); err != nil {
		return fmt.Errorf("go tool nm -size %s: %w (a binary built with -ldflags=-s has no symbols)", fs.Arg(0), err)
	}
	if perr != nil {
		return perr
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"total": rep.Total, "modules": rep.Modules(), "packages": rep.Packages})
	}
	fmt.Fprintf(stdout, "symbols total %s\n\nby module:\n", mb(rep.Total))
	for i, m := range rep.Modules() {
		if i == *top {
			break
		}
		fmt.Fprintf(stdout, "%10s  %5.1f%%  %s\n", mb(m.Bytes), 100*float64(m.Bytes)/float64(rep.Total), m.Path)
	}
	fmt.Fprintf(stdout, "\nby package:\n")
	for i, p := range rep.Packages {
		if i == *top {
			break
		}
		fmt.Fprintf(stdout, "%10s  %5.1f%%  %s\n", mb(p.Bytes), 100*float64(p.Bytes)/float64(rep.Total), p.Path)
	}
	return nil
}

func inspect(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("inspect", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the sizes as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("want one OCI layout directory (dist/image/oci)")
	}
	_, idx, err := image.ReadLayout(fs.Arg(0))
	if err != nil {
		return err
	}
	sizes, err := image.Sizes(idx)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(sizes)
	}
	fmt.Fprintln(stdout, "| image | uncompressed | compressed |")
	fmt.Fprintln(stdout, "|---|---|---|")
	for _, s := range sizes {
		fmt.Fprintf(stdout, "| %s | %s | %s |\n", s.Platform, mb(s.Uncompressed), mb(s.Compressed))
	}
	return nil
}

// ldflags prints the linker flags `make image` builds the binary with for
// a version, revision and commit time: the Dockerfile's build stage runs
// it, so that both stamp the same version.
func ldflags(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ldflags", flag.ContinueOnError)
	version := fs.String("version", "", "the version label (a release vX.Y.Z is stamped as such)")
	revision := fs.String("revision", "", "the commit built")
	created := fs.String("created", "", "the commit's time, as Unix seconds or RFC 3339 (2026-11-30T08:44:31Z)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *version == "" || *revision == "" {
		return fmt.Errorf("--version and --revision are required")
	}
	at, err := parseTime(*created)
	if err != nil {
		return fmt.Errorf("--created %q: %w", *created, err)
	}
	m := image.Metadata{Version: *version, Revision: *revision, Created: at}
	if err := m.CheckStamp(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, image.LDFlags(m))
	return err
}

// parseTime reads Unix seconds or an RFC 3339 time.
func parseTime(s string) (time.Time, error) {
	if secs, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(secs, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, errors.New("want Unix seconds or an RFC 3339 time")
	}
	return t.UTC(), nil
}

func mb(b int64) string { return fmt.Sprintf("%.2f MB", float64(b)/1e6) }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
