// Package releasetest runs `make release` for tests, concurrently and once
// per test binary for each build, and guards the host when a test
// installs the package it made: the release tests (internal/release) and
// the install script's package mode (deploy) use it.
package releasetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/release"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// Releases are the `make release` runs of one test binary, by name. Start
// begins a run in the background and Dir waits for it, so a test can start
// every run it needs before t.Parallel and the runs overlap. The first run
// goes alone and the others wait for it: it fills the Go build cache, so
// the ones after it only link and package, which on a machine of few
// cores is what running them side by side speeds up (two cold builds at
// once compile every package twice). The zero value is ready to use;
// Cleanup (from TestMain) removes what was built.
type Releases struct {
	// Targets are the release targets (RELEASE_TARGETS); each target
	// costs a link of the whole gateway.
	Targets string
	// URL is the base download URL the recipes point at (RELEASE_URL).
	URL string

	mu    sync.Mutex
	root  string
	runs  map[string]*run
	first *run // the run the others wait for
}

// run is one `make release`.
type run struct {
	version string
	dir     string
	done    chan struct{}
	out     []byte
	err     error
}

// Start begins `make release VERSION=version` into a directory of its own
// named name, unless it has begun already. Two names may hold the same
// version: the reproducibility test builds one commit twice.
func (r *Releases) Start(t testing.TB, name, version string) {
	t.Helper()
	testenv.Tool(t, "make")
	testenv.Tool(t, "git")
	r.mu.Lock()
	defer r.mu.Unlock()
	if prev, ok := r.runs[name]; ok {
		if prev.version != version {
			t.Fatalf("release %q was started for version %s, now asked for %s", name, prev.version, version)
		}
		return
	}
	if r.root == "" {
		root, err := os.MkdirTemp("", "cairn-release-test-")
		if err != nil {
			t.Fatal(err)
		}
		r.root, r.runs = root, map[string]*run{}
	}
	b := &run{version: version, dir: filepath.Join(r.root, name), done: make(chan struct{})}
	r.runs[name] = b
	first := r.first
	if first == nil {
		r.first = b
	}
	cmd := exec.Command("make", "--no-print-directory", "release", "DIST="+b.dir, "VERSION="+version,
		"RELEASE_TARGETS="+r.Targets, "RELEASE_URL="+r.URL)
	cmd.Dir = gatewaytest.RepoRoot()
	go func() {
		defer close(b.done)
		if first != nil {
			<-first.done
		}
		b.out, b.err = cmd.CombinedOutput()
	}()
}

// Dir waits for the run named name (started with Start, or started now
// for version) and returns its release directory; a failed run fails the
// test.
func (r *Releases) Dir(t testing.TB, name, version string) string {
	t.Helper()
	r.Start(t, name, version)
	r.mu.Lock()
	b := r.runs[name]
	r.mu.Unlock()
	<-b.done
	if b.err != nil {
		t.Fatalf("make release VERSION=%s (%s): %v\n%s", b.version, name, b.err, b.out)
	}
	return b.dir
}

// Deb waits for the run named name and returns the path of its deb for
// this machine's architecture.
func (r *Releases) Deb(t testing.TB, name, version string) string {
	t.Helper()
	deb, _ := release.PackageNames(version, runtime.GOARCH)
	return filepath.Join(r.Dir(t, name, version), deb)
}

// Cleanup waits for the runs still going and removes every release
// directory. Call it from TestMain after m.Run.
func (r *Releases) Cleanup() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.runs {
		<-b.done
	}
	if r.root != "" {
		os.RemoveAll(r.root)
	}
}

// Paths the cairn-caddy package owns or creates on a host.
const (
	// PackageName is the deb and rpm name.
	PackageName = "cairn-caddy"
	// ServiceUser is the system user the maintainer scripts create.
	ServiceUser = "cairn"
	// EtcDir holds the configuration files the package ships.
	EtcDir = "/etc/cairn"
	// DataDir is the service user's data directory.
	DataDir = "/var/lib/cairn"
)

// ClaimHost readies this machine for a test that installs the package:
// it takes the host lock every install test takes, fails unless the host
// is clean (RequireCleanHost), and undoes the install when the test ends
// (UndoInstall).
func ClaimHost(t testing.TB) {
	t.Helper()
	testenv.LockHost(t, "cairn-install")
	RequireCleanHost(t)
	t.Cleanup(func() { UndoInstall(t) })
}

// RequireCleanHost fails the test when this machine already has what the
// package creates: replacing or purging it would destroy someone's
// installation. Take testenv.LockHost(t, "cairn-install") first.
func RequireCleanHost(t testing.TB) {
	t.Helper()
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", PackageName).Output(); strings.HasPrefix(string(out), "i") || strings.HasPrefix(string(out), "r") {
		t.Fatalf("%s is installed on this machine (%s); the test would replace and purge it: remove it first", PackageName, strings.TrimSpace(string(out)))
	}
	if err := exec.Command("getent", "passwd", ServiceUser).Run(); err == nil {
		t.Fatalf("a %s user exists on this machine; the test would delete it on purge", ServiceUser)
	}
	for _, p := range []string{EtcDir, DataDir} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists on this machine; the test would delete it on purge", p)
		}
	}
}

// UndoInstall purges the package and anything its scripts may have left
// if a test stopped half way. Register it with t.Cleanup after
// RequireCleanHost passed.
func UndoInstall(t testing.TB) {
	if out, err := exec.Command("dpkg", "-P", PackageName).CombinedOutput(); err != nil {
		t.Logf("cleanup: dpkg -P %s: %v\n%s", PackageName, err, out)
	}
	if exec.Command("getent", "passwd", ServiceUser).Run() == nil {
		_ = exec.Command("userdel", ServiceUser).Run()
	}
	if exec.Command("getent", "group", ServiceUser).Run() == nil {
		_ = exec.Command("groupdel", ServiceUser).Run()
	}
	for _, p := range []string{EtcDir, DataDir} {
		if err := os.RemoveAll(p); err != nil {
			t.Logf("cleanup: %v", fmt.Errorf("removing %s: %w", p, err))
		}
	}
}
