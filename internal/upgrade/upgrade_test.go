package upgrade

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestInstallKeepsThePreviousAndRevertPutsItBack(t *testing.T) {
	dir := t.TempDir()
	install, newBin := filepath.Join(dir, "cairn-caddy"), filepath.Join(dir, "new")
	for path, content := range map[string]string{install: "old", newBin: "new"} {
		if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	prev, err := Install(install, newBin)
	if err != nil || read(install) != "new" || read(prev) != "old" || prev != install+PreviousSuffix {
		t.Fatalf("Install: %v; installed %q, previous %q", err, read(install), read(prev))
	}
	if st, _ := os.Stat(install); st.Mode().Perm()&0o100 == 0 {
		t.Fatalf("the installed binary is not executable: %v", st.Mode())
	}
	if _, err := LoadState(install); !errors.Is(err, ErrNoUpgrade) {
		t.Fatalf("LoadState without an upgrade: %v", err)
	}
	want := State{From: "v0.10.0", To: "v0.11.0", Previous: prev, Target: "/b", Archive: "cairn-20261130T000000Z.cbk", StoreArgs: []string{"--data-dir", "/d"}}
	if err := SaveState(install, want); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(install + StateSuffix); st.Mode().Perm() != 0o600 {
		t.Fatalf("state file mode %v, want 0600", st.Mode().Perm())
	}
	got, err := LoadState(install)
	if err != nil || got.Archive != want.Archive || got.StoreArgs[1] != "/d" {
		t.Fatalf("LoadState: %+v, %v", got, err)
	}
	if err := Revert(install, prev); err != nil || read(install) != "old" || read(install+RolledBackSuffix) != "new" {
		t.Fatalf("Revert: %v; installed %q, rolled back %q", err, read(install), read(install+RolledBackSuffix))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}
