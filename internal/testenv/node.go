package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// RequireNodeHarness makes sure node and npm are installed and that the
// npm project in dir has its dependencies installed exactly as its
// package-lock.json says, running `npm ci` when they are missing or the
// lockfile changed since the last install. Without node or npm the test is
// skipped, unless CAIRN_REQUIRE_SERVICES=1, where it fails.
//
// `go test ./...` runs test binaries in parallel, and several use the same
// harness: the install holds an exclusive lock on dir/.npm-install.lock,
// so one binary installs while the others wait, and none reads a
// half-written node_modules.
func RequireNodeHarness(t testing.TB, dir string) {
	t.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if RequireServices() {
				t.Fatalf("%s is required for the harness in %s (CAIRN_REQUIRE_SERVICES=1): %v", tool, dir, err)
			}
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	if err := installNodeModules(dir); err != nil {
		t.Fatal(err)
	}
}

// installMarker is written into node_modules after a successful install;
// it holds the SHA-256 of the lockfile installed. `npm ci` deletes
// node_modules first, so an interrupted install leaves no marker.
const installMarker = ".cairn-installed-lock-sha256"

func installNodeModules(dir string) error {
	lock, err := os.OpenFile(filepath.Join(dir, ".npm-install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("npm install lock in %s: %w", dir, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("npm install lock in %s: %w", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // closing releases it too

	lockfile, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return fmt.Errorf("harness lockfile: %w", err)
	}
	sum := sha256.Sum256(lockfile)
	want := hex.EncodeToString(sum[:])
	marker := filepath.Join(dir, "node_modules", installMarker)
	if got, err := os.ReadFile(marker); err == nil && string(got) == want {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s: %w\n%s", dir, err, out)
	}
	if err := os.WriteFile(marker, []byte(want), 0o644); err != nil {
		return fmt.Errorf("mark the install in %s: %w", dir, err)
	}
	return nil
}
