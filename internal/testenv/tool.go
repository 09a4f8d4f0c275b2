package testenv

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

// Tool returns the path of the command-line tool name (promtool, …). When
// it is not installed the test is skipped, or fails under
// CAIRN_REQUIRE_SERVICES=1; .ci/run installs every tool a test asks for.
func Tool(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		unavailable(t, name, err)
	}
	return path
}

// RequireRoot skips the test unless it runs as root, or fails it under
// CAIRN_REQUIRE_SERVICES=1 (CI runs as root). Tests that install a package
// for real need it.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "root ("+why+")", errNotRoot)
	}
}

var errNotRoot = errors.New("not running as root")
