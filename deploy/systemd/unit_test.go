// Package systemd_test checks the systemd unit in this directory with
// systemd's own tools, offline: its sandbox rating and its syntax.
package systemd_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const unitFile = "cairn-caddy.service"

// maxExposure is the highest `systemd-analyze security` exposure the unit
// may have (0 is fully sandboxed, 10 is not at all).
const maxExposure = 2.0

// systemdAnalyze returns the path of systemd-analyze. It is part of
// Debian's systemd package, which .ci/run installs; without it the test
// skips, unless CAIRN_REQUIRE_SERVICES=1 says a missing tool is a failure.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CAIRN_REQUIRE_SERVICES") == "1" {
			t.Fatalf("systemd-analyze not found (install Debian's systemd package): %v", err)
		}
		t.Skip("systemd-analyze not found; install the systemd package (CAIRN_REQUIRE_SERVICES=1 makes this a failure)")
	}
	return path
}

func TestSystemdUnitIsHardened(t *testing.T) {
	tool := systemdAnalyze(t)
	// --offline reads the unit file alone: no running systemd is needed.
	out, err := exec.Command(tool, "security", "--offline=true", "--no-pager", unitFile).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no overall exposure level in:\n%s", out)
	}
	level, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("exposure %q: %v", m[1], err)
	}
	if level > maxExposure {
		t.Fatalf("%s: exposure %.1f, want at most %.1f; what it lacks:\n%s", unitFile, level, maxExposure, missing(out))
	}
	t.Logf("exposure %.1f", level)
}

// missing returns the lines of a security report that the unit fails.
func missing(report []byte) string {
	var b strings.Builder
	for line := range strings.Lines(string(report)) {
		if strings.HasPrefix(line, "✗") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestSystemdUnitVerifies runs `systemd-analyze verify` on the unit as
// installed: at /etc/systemd/system in a scratch root that holds systemd's
// own units (for the targets it names) and an executable at the path
// ExecStart names. Any complaint, even one verify only warns about (an
// unknown key, a misspelt directive), fails the test.
func TestSystemdUnitVerifies(t *testing.T) {
	tool := systemdAnalyze(t)
	root := t.TempDir()
	unitDir := filepath.Join(root, "etc", "systemd", "system")
	mkdir(t, unitDir, filepath.Join(root, "usr", "local", "bin"), filepath.Join(root, "usr", "lib", "systemd"))
	raw, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(unitDir, unitFile), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's command exists and is executable.
	if err := os.WriteFile(filepath.Join(root, "usr", "local", "bin", "cairn-caddy"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-r", "/usr/lib/systemd/system", filepath.Join(root, "usr", "lib", "systemd")).CombinedOutput(); err != nil {
		t.Fatalf("copying systemd's units: %v\n%s", err, out)
	}
	out, err := exec.Command(tool, "verify", "--root="+root, "/etc/systemd/system/"+unitFile).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdUnitKeepsWhatTheGatewayNeeds guards the sandbox against
// being tightened past what the gateway needs to run.
func TestSystemdUnitKeepsWhatTheGatewayNeeds(t *testing.T) {
	raw, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(raw)
	for _, want := range []string{
		"\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n",   // ports 80 and 443 as user cairn
		"\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", // and nothing more
		"\nStateDirectory=cairn\n",                       // /var/lib/cairn, owned by the service user
		"\nReadWritePaths=/var/lib/cairn\n",              // the database, keys, certificates
		"XDG_DATA_HOME=/var/lib/cairn ",                  // Caddy's storage inside it
		"XDG_CONFIG_HOME=/var/lib/cairn/",                // Caddy's autosave too: /etc is read-only
		"\nRestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX\n",
		"\nLimitNOFILE=1048576\n", // one descriptor per event stream
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("%s lacks %q", unitFile, strings.TrimSpace(want))
		}
	}
	for _, forbidden := range []string{"PrivateUsers=true", "PrivateNetwork=true"} {
		// A private user namespace drops the bind capability's effect on
		// the host network; a private network cuts off clients and backends.
		if strings.Contains(unit, "\n"+forbidden) {
			t.Errorf("%s sets %s, which stops the gateway serving", unitFile, forbidden)
		}
	}
}

func mkdir(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
