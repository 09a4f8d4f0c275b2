// Command cairn-release builds cairn-caddy's release artifacts into a
// directory: tarballs per target, deb and rpm packages, a CycloneDX SBOM,
// SHA256SUMS and the Homebrew, AUR and Nix recipes. `make release` runs
// it; docs/install.md ("Release artifacts") describes what it writes.
//
//	cairn-release -dist dist -targets "linux/amd64 darwin/arm64"
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/release"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cairn-release:", strings.Join(strings.Fields(err.Error()), " "))
		os.Exit(1)
	}
}

func run() error {
	var (
		dist       = flag.String("dist", "dist", "Release directory (emptied first; refused if it holds anything but an earlier release)")
		targets    = flag.String("targets", "linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 freebsd/amd64 freebsd/arm64", "Targets to build, os/arch separated by spaces")
		version    = flag.String("version", "", "Package version (default: from a vX.Y.Z tag on the commit, else 0.0.0~git<time>.g<commit>)")
		tags       = flag.String("tags", "", "Go build tags of the binaries")
		maintainer = flag.String("maintainer", "", "Maintainer field of the packages (Name <email>)")
		url        = flag.String("url", "", "Base download URL the recipes point at; {version} is replaced")
		gocmd      = flag.String("go", "go", "The go command")
		nfpm       = flag.String("nfpm", "", "nfpm's command package at a pinned version")
		cyclonedx  = flag.String("cyclonedx", "", "cyclonedx-gomod's command package at a pinned version")
		quiet      = flag.Bool("quiet", false, "Print nothing but errors")
	)
	flag.Parse()
	if *nfpm == "" || *cyclonedx == "" || *maintainer == "" || *url == "" {
		return fmt.Errorf("-nfpm, -cyclonedx, -maintainer and -url are required (make release passes them)")
	}
	ts, err := release.ParseTargets(*targets)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	repo, err := os.Getwd()
	if err != nil {
		return err
	}
	distDir, err := filepath.Abs(*dist)
	if err != nil {
		return err
	}
	src, err := release.GitSource(ctx, repo)
	if err != nil {
		return err
	}
	if *version != "" {
		src.Version = *version
	}
	cfg := release.Config{
		Repo: repo, Dist: distDir, Source: src, Targets: ts, Tags: *tags,
		Maintainer: *maintainer, URL: strings.ReplaceAll(*url, "{version}", src.Version),
		Go: *gocmd, NFPM: *nfpm, CycloneDX: *cyclonedx, Log: os.Stdout,
	}
	if *quiet {
		cfg.Log = nil
	}
	sums, err := release.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if !*quiet {
		names := make([]string, 0, len(sums))
		for n := range sums {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Printf("release %s in %s:\n", src.Version, *dist)
		for _, n := range names {
			fmt.Printf("  %s  %s\n", sums[n], n)
		}
	}
	return nil
}
