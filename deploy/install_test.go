package deploy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"

	_ "modernc.org/sqlite" // the installed node's database, to fake a newer schema
)

// installScript is deploy/install.sh, relative to this package.
const installScript = "install.sh"

// tool returns the path of a command the test needs. .ci/run installs it;
// without it the test skips, unless CAIRN_REQUIRE_SERVICES=1 says a missing
// tool is a failure.
func tool(t *testing.T, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CAIRN_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%s not found (install Debian's %s package): %v", name, debianPackage, err)
		}
		t.Skipf("%s not found; install the %s package (CAIRN_REQUIRE_SERVICES=1 makes this a failure)", name, debianPackage)
	}
	return path
}

func TestInstallScriptIsShellcheckClean(t *testing.T) {
	shellcheck := tool(t, "shellcheck", "shellcheck")
	// As POSIX sh, with every default check down to style and info
	// level: a finding of any severity fails.
	out, err := exec.Command(shellcheck, "--shell=sh", "--severity=style", installScript).CombinedOutput()
	if err != nil {
		t.Fatalf("shellcheck %s: %v\n%s", installScript, err, out)
	}
}

// TestInstallScriptBats runs testdata/install.bats: argument parsing,
// validation and the dry-run plan, on a fake host.
func TestInstallScriptBats(t *testing.T) {
	bats := tool(t, "bats", "bats")
	cmd := exec.Command(bats, "--tap", filepath.Join("testdata", "install.bats"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bats: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

// fakeHost writes the host facts install.sh reads (under --root): a Debian
// 12 os-release, 1 GB of memory and no listening sockets. It returns the
// root and a stand-in binary that only answers `version`.
func fakeHost(t *testing.T) (root, binary string) {
	t.Helper()
	root = t.TempDir()
	write := func(name, content string, mode os.FileMode) {
		t.Helper()
		path := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n", 0o644)
	write("proc/meminfo", "MemTotal:        1003456 kB\n", 0o644)
	write("proc/net/tcp", "  sl  local_address rem_address   st\n", 0o644)
	write("proc/net/tcp6", "  sl  local_address rem_address   st\n", 0o644)
	write("bin/cairn-caddy", "#!/bin/sh\necho v2.11.9-test\n", 0o755)
	return root, filepath.Join(root, "bin", "cairn-caddy")
}

// installEvent is one NDJSON line of install.sh --json.
type installEvent struct {
	MessageType string `json:"message_type"`
	Step        string `json:"step"`
	Result      string `json:"result"`
	Message     string `json:"message"`
	Error       string `json:"error"`
}

// decodeEvents parses install.sh --json output: every line must be one
// JSON object with a message_type.
func decodeEvents(t *testing.T, out []byte) (events []installEvent, raw []map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var ev installEvent
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON object: %q: %v\n%s", sc.Text(), err, out)
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.MessageType == "" {
			t.Fatalf("no message_type in %q", sc.Text())
		}
		events = append(events, ev)
		raw = append(raw, m)
	}
	return events, raw
}

func TestInstallScriptJSONDryRun(t *testing.T) {
	root, bin := fakeHost(t)
	cfg := filepath.Join(t.TempDir(), "cairn.yml")
	if err := os.WriteFile(cfg, []byte("domain: chat.example.com\nbinary: "+bin+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A refused value with a quote, a backslash and a tab: the error is
	// still one valid JSON object, and names the value as typed.
	bad := `postgres://cairn:pw@db/cairn?x=a"b\c	d`
	out, err := exec.Command("sh", installScript, "--dry-run", "--json", "--root", root, "--config", cfg, "--database", bad).Output()
	if code := exitCode(err); code != 2 {
		t.Fatalf("a refused value: exit %d (%v), want 2\n%s", code, err, out)
	}
	if events, _ := decodeEvents(t, out); len(events) != 1 || events[0].MessageType != "error" || !strings.Contains(events[0].Error, bad) {
		t.Fatalf("want one error event naming %q, got %+v", bad, events)
	}

	out, err = exec.Command("sh", installScript, "--dry-run", "--json", "--root", root, "--config", cfg,
		"--database", `postgres://cairn:p%22w@db.internal/cairn?application_name=a"b`).Output()
	if err != nil {
		t.Fatalf("install.sh --dry-run --json: %v\n%s", err, out)
	}
	events, raw := decodeEvents(t, out)
	if len(events) < 10 {
		t.Fatalf("only %d events:\n%s", len(events), out)
	}
	steps := map[string]bool{}
	for _, ev := range events[:len(events)-1] {
		if ev.MessageType != "step" || ev.Step == "" || ev.Message == "" {
			t.Errorf("want a step with a name and a message, got %+v", ev)
		}
		switch ev.Result {
		case "ok", "warn", "plan", "skip":
		default:
			t.Errorf("step %s: result %q", ev.Step, ev.Result)
		}
		steps[ev.Step] = true
	}
	for _, want := range []string{"check.os", "check.port", "check.disk", "check.memory", "user", "binary", "unit", "env", "caddyfile", "start", "health", "health.public"} {
		if !steps[want] {
			t.Errorf("no step %s in:\n%s", want, out)
		}
	}
	if last := raw[len(raw)-1]; last["message_type"] != "summary" || last["result"] != "planned" || last["checks"] != "passed" {
		t.Errorf("last line %v, want the summary of a planned run", last)
	}
	if bytes.Contains(out, []byte("p%22w")) {
		t.Errorf("the database password is printed:\n%s", out)
	}
}

// TestInstallScriptWizard answers the interactive wizard through a
// terminal (expect): every question refuses a bad answer and asks again,
// and the dry-run plan carries the answers.
func TestInstallScriptWizard(t *testing.T) {
	expect := tool(t, "expect", "expect")
	root, bin := fakeHost(t)
	cmd := exec.Command(expect, filepath.Join("testdata", "install_wizard.exp"),
		"sh", installScript, "--dry-run", "--root", root, "--binary", bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("wizard: %v\n%s", err, out)
	}
	for _, want := range []string{
		"write /etc/cairn/cairn.env (0600, owner cairn): domain chat.example.com, database postgres://cairn:***@db.internal:5432/cairn",
		"MemoryMax=768M CPUQuota=100%",
		"write the operator token to /etc/cairn/operator-token",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("the plan lacks %q:\n%s", want, out)
		}
	}
	if n := bytes.Count(out, []byte("s3cret")); n != 1 {
		// Once, as typed (the terminal echoes it); never in the plan.
		t.Errorf("the database password is printed beyond its echo:\n%s", out)
	}
}

// nativeInstall is one real install on this machine, under names and
// paths of its own so that nothing of the machine's is touched: the
// service, the user and every directory are unique to the test.
type nativeInstall struct {
	t                                  *testing.T
	dir                                string
	service, user                      string
	etc, data, bin, units, runDir      string
	httpPort, httpsPort, admin, metric int
}

func (n *nativeInstall) args(extra ...string) []string {
	return append([]string{installScript, "--json",
		"--service", n.service, "--user", n.user,
		"--etc-dir", n.etc, "--data-dir", n.data, "--bin-dir", n.bin,
		"--unit-dir", n.units, "--run-dir", n.runDir,
	}, extra...)
}

// run runs install.sh with the test's names and paths and returns its
// events; a failure (or a failed step) fails the test.
func (n *nativeInstall) run(extra ...string) ([]installEvent, map[string]any) {
	n.t.Helper()
	cmd := exec.Command("sh", n.args(extra...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		n.t.Fatalf("install.sh %s: %v\n%s\n%s\nservice log:\n%s", strings.Join(extra, " "), err, out, stderr.Bytes(), n.log())
	}
	events, raw := decodeEvents(n.t, out)
	for _, ev := range events {
		if ev.Result == "fail" || ev.MessageType == "error" {
			n.t.Fatalf("install.sh %s: %+v\n%s", strings.Join(extra, " "), ev, out)
		}
	}
	return events, raw[len(raw)-1]
}

// runExpectingFailure runs install.sh and returns its events and error
// without failing the test.
func (n *nativeInstall) runExpectingFailure(extra ...string) ([]installEvent, error) {
	n.t.Helper()
	out, err := exec.Command("sh", n.args(extra...)...).Output()
	events, _ := decodeEvents(n.t, out)
	return events, err
}

func hasStep(events []installEvent, step, result string) bool {
	for _, ev := range events {
		if ev.Step == step && ev.Result == result {
			return true
		}
	}
	return false
}

// execSQLite runs one statement on the installed node's SQLite database.
func execSQLite(t *testing.T, path, stmt string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

func (n *nativeInstall) log() string {
	b, _ := os.ReadFile(filepath.Join(n.data, n.service+".log"))
	return string(b)
}

func (n *nativeInstall) pid() int {
	n.t.Helper()
	b, err := os.ReadFile(filepath.Join(n.runDir, n.service+".pid"))
	if err != nil {
		n.t.Fatalf("pidfile: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		n.t.Fatalf("pidfile %q: %v", b, err)
	}
	return pid
}

// TestInstallScriptNativeInstall installs the binary built from this tree
// for real, as root, on spare ports; the host's PID 1 is not systemd, so
// the script's fallback starts the service directly. The gateway must
// answer /xrpc/_health and an operator call; a re-run upgrades the binary
// and keeps the configuration; --uninstall stops it and keeps data and
// configuration; --purge removes them and the user.
func TestInstallScriptNativeInstall(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CAIRN_REQUIRE_SERVICES") == "1" {
			t.Fatal("the real install needs root (CI runs as root)")
		}
		t.Skip("the real install needs root")
	}
	tool(t, "setpriv", "util-linux")
	tool(t, "useradd", "passwd")
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		// Under systemd the script would start a real unit of the host's
		// manager; this test covers the documented fallback.
		t.Skip("PID 1 is systemd here; this test exercises the direct-start fallback")
	}
	binary := builder.Binary(t)

	// A directory the service user can reach (t.TempDir is 0700).
	dir, err := os.MkdirTemp("", "cairn-install-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	id := os.Getpid() % 100000
	n := &nativeInstall{t: t, dir: dir,
		service: fmt.Sprintf("cairn-test-%d", id), user: fmt.Sprintf("cairntest%d", id),
		etc: filepath.Join(dir, "etc"), data: filepath.Join(dir, "data"), bin: filepath.Join(dir, "bin"),
		units: filepath.Join(dir, "units"), runDir: filepath.Join(dir, "run"),
		httpPort: gatewaytest.FreePort(t), httpsPort: gatewaytest.FreePort(t),
		admin: gatewaytest.FreePort(t), metric: gatewaytest.FreePort(t),
	}
	if _, err := user.Lookup(n.user); err == nil {
		t.Fatalf("a user %s already exists here; the test needs a name of its own", n.user)
	}
	t.Cleanup(func() {
		// Whatever happened, leave nothing behind: the script's own purge,
		// then the directory.
		if out, err := exec.Command("sh", n.args("--uninstall", "--purge")...).CombinedOutput(); err != nil {
			t.Logf("cleanup uninstall: %v\n%s", err, out)
		}
		os.RemoveAll(dir)
	})

	_, summary := n.run("--yes", "--binary", binary, "--domain", "localhost",
		"--http-port", strconv.Itoa(n.httpPort), "--https-port", strconv.Itoa(n.httpsPort),
		"--admin-addr", fmt.Sprintf("localhost:%d", n.admin), "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", n.metric),
		"--memory-limit", "512M", "--cpu-limit", "0.5")
	if summary["result"] != "installed" {
		t.Fatalf("summary %v, want installed", summary)
	}
	svcUser, err := user.Lookup(n.user)
	if err != nil {
		t.Fatalf("the service user was not created: %v", err)
	}
	pid := n.pid()
	assertRunsAs(t, pid, svcUser.Uid)
	assertHealthy(t, n.httpsPort)

	// cairn.env: 0600 and the service user's; the operator token in it
	// only as a hash, which the token written beside it matches.
	envPath := filepath.Join(n.etc, "cairn.env")
	assertOwnedMode(t, envPath, svcUser.Uid, 0o600)
	assertOwnedMode(t, filepath.Join(n.etc, "operator-token"), "0", 0o600)
	token, err := os.ReadFile(filepath.Join(n.etc, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(envPath)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bytes.TrimSpace(token))
	if !bytes.Contains(env, []byte("CAIRN_OPERATOR_TOKEN_HASH='sha256:"+hex.EncodeToString(sum[:])+"'")) {
		t.Errorf("cairn.env lacks the token's hash:\n%s", env)
	}
	assertOperatorAPI(t, n.metric, string(bytes.TrimSpace(token)))
	unitPath := filepath.Join(n.units, n.service+".service")
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	// The unit as written for this install is one systemd accepts.
	if out, err := exec.Command(tool(t, "systemd-analyze", "systemd"), "verify", unitPath).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
	}
	limits, err := os.ReadFile(filepath.Join(n.units, n.service+".service.d", "limits.conf"))
	if err != nil || !bytes.Contains(limits, []byte("\nMemoryMax=512M\nCPUQuota=50%\n")) {
		t.Errorf("limits drop-in: %v\n%s", err, limits)
	}
	// The direct start gives the service cairn.env's environment, as
	// EnvironmentFile= does.
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil || !bytes.Contains(environ, []byte("\x00GOMEMLIMIT=460MiB\x00")) || !bytes.Contains(environ, []byte("\x00CAIRN_DOMAIN=localhost\x00")) {
		t.Errorf("the service's environment lacks cairn.env's variables (%v):\n%q", err, environ)
	}
	for _, want := range []string{"User=" + n.user + "\n", "ExecStart=" + n.bin + "/cairn-caddy run --config " + n.etc + "/Caddyfile\n",
		"EnvironmentFile=-" + n.etc + "/cairn.env\n", "XDG_DATA_HOME=" + n.data + " "} {
		if !bytes.Contains(unit, []byte(want)) {
			t.Errorf("the unit lacks %q:\n%s", want, unit)
		}
	}

	// Re-run with a second build: the binary is upgraded (the old one
	// kept), the configuration, including an operator's edit, is not touched.
	edited := append(env, []byte("CAIRN_LOG_LEVEL='info'\n")...)
	if err := os.WriteFile(envPath, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	second := filepath.Join(dir, "cairn-caddy-second")
	copyFile(t, binary, second, []byte("second build"))
	_, summary = n.run("--yes", "--binary", second)
	if summary["result"] != "upgraded" {
		t.Fatalf("summary %v, want upgraded", summary)
	}
	if after, _ := os.ReadFile(envPath); !bytes.Equal(after, edited) {
		t.Errorf("the upgrade changed cairn.env:\n%s\nwant:\n%s", after, edited)
	}
	if !sameFile(t, second, filepath.Join(n.bin, "cairn-caddy")) || !sameFile(t, binary, filepath.Join(n.bin, "cairn-caddy.previous")) {
		t.Error("want the second build installed and the first kept as cairn-caddy.previous")
	}
	if newPID := n.pid(); newPID == pid || processAlive(pid) {
		t.Errorf("the upgrade did not restart the service (pid %d, then %d)", pid, newPID)
	}
	pid = n.pid()
	assertHealthy(t, n.httpsPort)

	// A binary that cannot use the database (here: a schema newer than it
	// knows, as after a rollback past a migration) is refused before the
	// running service is touched.
	db := filepath.Join(n.data, "caddy", "cairn", "cairn.db")
	execSQLite(t, db, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', 0)`)
	events, err := n.runExpectingFailure("--yes", "--binary", binary)
	if err == nil || !hasStep(events, "migrations", "fail") || !strings.Contains(fmt.Sprint(events), "newer than this binary") {
		t.Fatalf("install over a newer schema: %v; want a failed migrations step naming the newer schema:\n%+v", err, events)
	}
	if n.pid() != pid || !processAlive(pid) {
		t.Error("the refused upgrade stopped the running service")
	}
	if !sameFile(t, second, filepath.Join(n.bin, "cairn-caddy")) {
		t.Error("the refused upgrade replaced the binary")
	}
	assertGone(t, filepath.Join(n.bin, "cairn-caddy.new"))
	assertHealthy(t, n.httpsPort)
	execSQLite(t, db, `DELETE FROM schema_migrations WHERE version = 999`)

	// Uninstall: the service stops and the program goes; data and
	// configuration stay.
	_, summary = n.run("--uninstall")
	if summary["result"] != "uninstalled" {
		t.Fatalf("summary %v", summary)
	}
	if processAlive(pid) {
		t.Errorf("the service (pid %d) still runs after --uninstall", pid)
	}
	for _, port := range []int{n.httpPort, n.httpsPort, n.admin, n.metric} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still answers after --uninstall", port)
		}
	}
	assertGone(t, filepath.Join(n.bin, "cairn-caddy"), filepath.Join(n.bin, "cairn-caddy.previous"),
		filepath.Join(n.units, n.service+".service"), filepath.Join(n.runDir, n.service+".pid"))
	for _, kept := range []string{envPath, filepath.Join(n.etc, "Caddyfile"), filepath.Join(n.data, "caddy", "cairn", "cairn.db")} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("--uninstall removed %s: %v", kept, err)
		}
	}

	// Purge: data, configuration and the user go; what is left is only
	// the empty directories that stand in for the host's own.
	n.run("--uninstall", "--purge")
	assertGone(t, n.etc, n.data)
	if _, err := user.Lookup(n.user); err == nil {
		t.Errorf("--purge left the user %s", n.user)
	}
	if _, err := user.LookupGroup(n.user); err == nil {
		t.Errorf("--purge left the group %s", n.user)
	}
	var left []string
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && path != second {
			left = append(left, path)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("left after --purge: %v", left)
	}
}

func assertHealthy(t *testing.T, port int) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// A localhost install serves a certificate of Caddy's own CA: this
		// checks the answer, not the chain.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	resp, err := client.Get(fmt.Sprintf("https://localhost:%d/xrpc/_health", port))
	if err != nil {
		t.Fatalf("/xrpc/_health: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"version"`)) {
		t.Fatalf("/xrpc/_health: %d %s", resp.StatusCode, body)
	}
}

func assertOperatorAPI(t *testing.T, port int, token string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/operator/v1/status", port), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("operator status: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("operator status with the generated token: %d %s", resp.StatusCode, body)
	}
}

// assertRunsAs checks the process's real and effective uid and that it
// holds no capability but binding low ports (0x400), as the unit grants.
func assertRunsAs(t *testing.T, pid int, uid string) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("the service (pid %d) does not run: %v", pid, err)
	}
	for line := range strings.Lines(string(status)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[0] == "Uid:" && (f[1] != uid || f[2] != uid):
			t.Errorf("the service runs as uid %s/%s, want %s", f[1], f[2], uid)
		case len(f) == 2 && (f[0] == "CapEff:" || f[0] == "CapBnd:" || f[0] == "CapPrm:") && f[1] != "0000000000000400":
			t.Errorf("%s %s, want only CAP_NET_BIND_SERVICE (0x400)", f[0], f[1])
		}
	}
}

func assertOwnedMode(t *testing.T, path, uid string, mode os.FileMode) {
	t.Helper()
	out, err := exec.Command("stat", "-c", "%u %a", path).Output()
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	if want := fmt.Sprintf("%s %o", uid, mode); strings.TrimSpace(string(out)) != want {
		t.Errorf("%s: owner and mode %q, want %q", path, strings.TrimSpace(string(out)), want)
	}
}

func assertGone(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
}

// exitCode is a command's exit status from its error (0 for nil).
func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// copyFile copies src to dst (0755) with suffix appended: an ELF binary
// runs the same with trailing bytes, so it stands in for a second build.
func copyFile(t *testing.T, src, dst string, suffix []byte) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, append(b, suffix...), 0o755); err != nil {
		t.Fatal(err)
	}
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	return err == nil && bytes.Equal(x, y)
}
