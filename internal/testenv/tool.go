package testenv

import (
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
