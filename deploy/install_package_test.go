package deploy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/release/releasetest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// releases are the `make release` runs of the package-mode test: the deb
// of two versions, for linux/amd64 (this machine).
var releases = releasetest.Releases{
	Targets: "linux/amd64",
	URL:     "https://releases.example.test/cairn-caddy/v{version}",
}

// TestInstallScriptPackageMode installs the deb `make release` builds with
// install.sh --package, for real, as root, non-interactively, on spare
// ports: the host's PID 1 is not systemd, so the script starts the
// packaged unit's ExecStart directly. The gateway must answer
// /xrpc/_health, running the packaged binary as the package's user; a
// re-run with the next version's deb upgrades the package and keeps the
// configuration, an operator's edit included; --uninstall removes the
// package and keeps configuration, data and user; --uninstall --purge
// removes those too. The package's names and paths are fixed (/etc/cairn,
// /var/lib/cairn, the cairn user), so the test takes the host lock of
// every install test and runs only where none of them exists.
func TestInstallScriptPackageMode(t *testing.T) {
	testenv.RequireRoot(t, "dpkg -i through install.sh")
	testenv.Tool(t, "dpkg")
	testenv.Tool(t, "setpriv")
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("PID 1 is systemd here; this test exercises the direct-start fallback")
	}
	const oldVersion, newVersion = "0.9.0", "1.0.0"
	releases.Start(t, "old", oldVersion)
	releases.Start(t, "new", newVersion)
	oldPkg := releases.Deb(t, "old", oldVersion)
	newPkg := releases.Deb(t, "new", newVersion)
	releasetest.ClaimHost(t)
	const (
		service  = "cairn-caddy"
		pidfile  = "/run/" + service + ".pid"
		dropIn   = "/etc/systemd/system/" + service + ".service.d"
		binary   = "/usr/bin/cairn-caddy"
		envPath  = releasetest.EtcDir + "/cairn.env"
		database = releasetest.DataDir + "/caddy/cairn/cairn.db"
	)
	for _, p := range []string{pidfile, dropIn} {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists on this machine; the test would remove it", p)
		}
	}
	t.Cleanup(func() {
		// Whatever happened: the script's own purge (ClaimHost's undo
		// runs after it).
		if out, err := exec.Command("sh", installScript, "--json", "--uninstall", "--purge").CombinedOutput(); err != nil {
			t.Logf("cleanup uninstall: %v\n%s", err, out)
		}
		os.RemoveAll(dropIn)
		os.Remove(pidfile)
	})

	httpPort, httpsPort := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	admin, metrics := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	install := func(extra ...string) map[string]any {
		t.Helper()
		cmd := exec.Command("sh", append([]string{installScript, "--json"}, extra...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		log, _ := os.ReadFile(filepath.Join(releasetest.DataDir, service+".log"))
		if err != nil {
			t.Fatalf("install.sh %s: %v\n%s\n%s\nservice log:\n%s", strings.Join(extra, " "), err, out, stderr.Bytes(), log)
		}
		events, raw := decodeEvents(t, out)
		for _, ev := range events {
			if ev.Result == "fail" || ev.MessageType == "error" {
				t.Fatalf("install.sh %s: %+v\n%s", strings.Join(extra, " "), ev, out)
			}
		}
		return raw[len(raw)-1]
	}
	pid := func() int {
		t.Helper()
		b, err := os.ReadFile(pidfile)
		if err != nil {
			t.Fatalf("pidfile: %v", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("pidfile %q: %v", b, err)
		}
		return n
	}

	// Install the first version's package.
	summary := install("--yes", "--package", oldPkg, "--domain", "localhost",
		"--http-port", strconv.Itoa(httpPort), "--https-port", strconv.Itoa(httpsPort),
		"--admin-addr", fmt.Sprintf("localhost:%d", admin), "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", metrics),
		"--memory-limit", "512M")
	if summary["result"] != "installed" {
		t.Fatalf("summary %v, want installed", summary)
	}
	assertPackage(t, oldVersion+"-1 ii")
	svcUser, err := user.Lookup(releasetest.ServiceUser)
	if err != nil {
		t.Fatalf("the package did not create its user: %v", err)
	}
	firstPID := pid()
	assertRunsAs(t, firstPID, svcUser.Uid)
	assertExe(t, firstPID, binary)
	assertHealthy(t, httpsPort)
	assertOwnedMode(t, envPath, svcUser.Uid, 0o600)
	token, err := os.ReadFile(filepath.Join(releasetest.EtcDir, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	assertOperatorAPI(t, metrics, string(bytes.TrimSpace(token)))
	if out, err := exec.Command(binary, "version").Output(); err != nil || !strings.HasPrefix(string(out), "cairn-caddy/"+oldVersion+" ") {
		t.Errorf("the installed binary's version: %q, %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(dropIn, "limits.conf")); err != nil {
		t.Errorf("the limits drop-in: %v", err)
	}

	// Re-run with the next version: the package is upgraded, the service
	// restarted on it, and cairn.env, with an operator's edit, kept.
	env, err := os.ReadFile(envPath)
	if err != nil {
		t.Fatal(err)
	}
	edited := append(env, []byte("CAIRN_LOG_LEVEL='info'\n")...)
	if err := os.WriteFile(envPath, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	summary = install("--yes", "--package", newPkg)
	if summary["result"] != "upgraded" {
		t.Fatalf("summary %v, want upgraded", summary)
	}
	assertPackage(t, newVersion+"-1 ii")
	if after, _ := os.ReadFile(envPath); !bytes.Equal(after, edited) {
		t.Errorf("the upgrade changed cairn.env:\n%s\nwant:\n%s", after, edited)
	}
	assertOwnedMode(t, envPath, svcUser.Uid, 0o600)
	secondPID := pid()
	if secondPID == firstPID || processAlive(firstPID) {
		t.Errorf("the upgrade did not restart the service (pid %d, then %d)", firstPID, secondPID)
	}
	assertRunsAs(t, secondPID, svcUser.Uid)
	assertExe(t, secondPID, binary)
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", secondPID))
	if err != nil || !bytes.Contains(environ, []byte("\x00CAIRN_LOG_LEVEL=info\x00")) {
		t.Errorf("the restarted service does not run with the edited cairn.env (%v)", err)
	}
	assertHealthy(t, httpsPort)
	if out, err := exec.Command(binary, "version").Output(); err != nil || !strings.HasPrefix(string(out), "cairn-caddy/"+newVersion+" ") {
		t.Errorf("the upgraded binary's version: %q, %v", out, err)
	}

	// Uninstall: the service stops, the package goes (dpkg keeps its
	// configuration: state rc); configuration, data and user stay.
	summary = install("--uninstall")
	if summary["result"] != "uninstalled" {
		t.Fatalf("summary %v", summary)
	}
	if processAlive(secondPID) {
		t.Errorf("the service (pid %d) still runs after --uninstall", secondPID)
	}
	for _, port := range []int{httpPort, httpsPort, admin, metrics} {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still answers after --uninstall", port)
		}
	}
	assertPackage(t, newVersion+"-1 rc")
	assertGone(t, binary, pidfile, dropIn)
	for _, kept := range []string{envPath, filepath.Join(releasetest.EtcDir, "Caddyfile"), filepath.Join(releasetest.EtcDir, "operator-token"), database} {
		if _, err := os.Stat(kept); err != nil {
			t.Errorf("--uninstall removed %s: %v", kept, err)
		}
	}
	if after, _ := os.ReadFile(envPath); !bytes.Equal(after, edited) {
		t.Error("--uninstall changed cairn.env")
	}
	if _, err := user.Lookup(releasetest.ServiceUser); err != nil {
		t.Errorf("--uninstall removed the user: %v", err)
	}

	// Purge: dpkg forgets the package; configuration, data and user go.
	summary = install("--uninstall", "--purge")
	if summary["result"] != "uninstalled" || summary["purged"] != "true" {
		t.Fatalf("summary %v", summary)
	}
	assertGone(t, releasetest.EtcDir, releasetest.DataDir)
	if _, err := user.Lookup(releasetest.ServiceUser); err == nil {
		t.Errorf("--purge left the user %s", releasetest.ServiceUser)
	}
	if _, err := user.LookupGroup(releasetest.ServiceUser); err == nil {
		t.Errorf("--purge left the group %s", releasetest.ServiceUser)
	}
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", releasetest.PackageName).Output(); strings.TrimSpace(string(out)) != "" && !strings.HasPrefix(string(out), "un") {
		t.Errorf("after --purge dpkg still knows %s: %q", releasetest.PackageName, out)
	}
}

// assertPackage checks dpkg's version and state abbreviation of the
// package ("1.0.0-1 ii").
func assertPackage(t *testing.T, want string) {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version} ${db:Status-Abbrev}", releasetest.PackageName).Output()
	if got := strings.TrimSpace(string(out)); err != nil || got != want {
		t.Fatalf("dpkg-query: %q (%v), want %q", got, err, want)
	}
}

// assertExe checks which binary a process runs.
func assertExe(t *testing.T, pid int, want string) {
	t.Helper()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || exe != want {
		t.Errorf("the service (pid %d) runs %q (%v), want %s", pid, exe, err, want)
	}
}
