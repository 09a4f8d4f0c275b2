package testenv

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// LockHost serializes tests, across test binaries and processes, that
// change this machine itself under a shared name: installing the
// cairn-caddy package, creating the cairn user, writing /etc/cairn. Every
// test that installs cairn-caddy for real takes LockHost(t, "cairn-install")
// so that `go test ./...` running packages in parallel never has two of
// them on the host at once. The lock is released when the test ends.
func LockHost(t testing.TB, name string) {
	t.Helper()
	path := filepath.Join(os.TempDir(), "cairn-test-host-"+name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("host lock %s: %v", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("host lock %s: %v", path, err)
	}
	t.Cleanup(func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	})
}
