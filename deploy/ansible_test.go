package deploy

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

// ansibleDir holds the role and the playbooks, relative to this package.
const ansibleDir = "ansible"

// playbooks are deploy/ansible's playbooks.
var playbooks = []string{"setup.yml", "deploy.yml", "backup.yml", "update.yml"}

// TestAnsibleLintAndSyntax runs Debian's ansible-lint on deploy/ansible
// with its strictest (production) profile, and ansible-playbook
// --syntax-check on each playbook against the example inventory.
func TestAnsibleLintAndSyntax(t *testing.T) {
	t.Parallel() // mostly waiting on Ansible's Python: overlap it with the rest
	lint := tool(t, "ansible-lint", "ansible-lint")
	playbook := tool(t, "ansible-playbook", "ansible")
	// One run checks them all (Ansible's start-up is most of the time).
	syntax := exec.Command(playbook, append([]string{"-i", "inventory.example.yml", "--syntax-check"}, playbooks...)...)
	syntax.Dir = ansibleDir
	syntax.Env = ansibleEnv(t)
	if out, err := syntax.CombinedOutput(); err != nil {
		t.Errorf("ansible-playbook --syntax-check: %v\n%s", err, out)
	} else {
		for _, p := range playbooks {
			if !strings.Contains(string(out), "playbook: "+p) {
				t.Errorf("ansible-playbook --syntax-check did not check %s:\n%s", p, out)
			}
		}
	}
	// --offline: no Galaxy look-ups. -p: one line per finding. ansible-lint
	// lints the files git knows, which in CI is every committed file.
	cmd := exec.Command(lint, "--offline", "--profile", "production", "-p", "--nocolor")
	cmd.Dir = ansibleDir
	cmd.Env = ansibleEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ansible-lint --profile production: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Passed with production profile") {
		t.Fatalf("ansible-lint did not pass the production profile:\n%s", out)
	}
}

// ansibleEnv is the environment Ansible runs with in these tests: this
// directory's ansible.cfg, and its caches in a scratch directory.
func ansibleEnv(t *testing.T) []string {
	t.Helper()
	abs, err := filepath.Abs(filepath.Join(ansibleDir, "ansible.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	return append(os.Environ(), "ANSIBLE_CONFIG="+abs, "ANSIBLE_LOCAL_TEMP="+filepath.Join(home, "tmp"),
		"ANSIBLE_NOCOLOR=1", "ANSIBLE_FORCE_COLOR=0", "ANSIBLE_STDOUT_CALLBACK=default",
		"ANSIBLE_DEPRECATION_WARNINGS=0", "XDG_CACHE_HOME="+filepath.Join(home, "cache"))
}

// debianInclude is what the test root has beyond debootstrap's minbase:
// Python for Ansible's modules (and python3-apt for its apt module), and
// the packages setup.yml installs, so that the converge needs no network.
var debianInclude = []string{"python3", "python3-apt", "nftables", "procps"}

// debianRoot returns a fresh Debian bookworm root in a scratch directory,
// unpacked from a tarball cached under /var/cache/cairn-ci (made with
// debootstrap --variant=minbase the first time, a few minutes; later
// runs only unpack it).
func debianRoot(t *testing.T) string {
	t.Helper()
	debootstrap := tool(t, "debootstrap", "debootstrap")
	cacheDir := os.Getenv("CAIRN_CI_CACHE")
	if cacheDir == "" {
		cacheDir = "/var/cache/cairn-ci"
	}
	sum := sha256.Sum256([]byte("bookworm minbase " + strings.Join(debianInclude, ",")))
	tarball := filepath.Join(cacheDir, "debian-bookworm-minbase-"+hex.EncodeToString(sum[:6])+".tar")
	if _, err := os.Stat(tarball); err != nil {
		if err := os.MkdirAll(cacheDir, 0o755); err != nil {
			t.Fatal(err)
		}
		build, err := os.MkdirTemp(cacheDir, "debootstrap-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(build)
		mirror := os.Getenv("CAIRN_DEBIAN_MIRROR")
		if mirror == "" {
			mirror = "http://deb.debian.org/debian"
		}
		start := time.Now()
		cmd := exec.Command(debootstrap, "--variant=minbase", "--include="+strings.Join(debianInclude, ","),
			"bookworm", filepath.Join(build, "root"), mirror)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("debootstrap: %v\n%s", err, tail(out, 30))
		}
		// The downloaded packages are not needed in the root.
		archives, _ := filepath.Glob(filepath.Join(build, "root", "var", "cache", "apt", "archives", "*.deb"))
		for _, a := range archives {
			os.Remove(a)
		}
		tmp := filepath.Join(build, "root.tar")
		if out, err := exec.Command("tar", "-C", filepath.Join(build, "root"), "-cf", tmp, ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, tarball); err != nil {
			t.Fatal(err)
		}
		t.Logf("debootstrap: made and cached %s in %s", tarball, time.Since(start).Round(time.Second))
	}
	// Not t.TempDir: the root's directories are the service user's, and
	// the chroot's paths must be reachable by it.
	root, err := os.MkdirTemp("", "cairn-ansible-root-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-C", root, "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v\n%s", tarball, err, out)
	}
	// debootstrap leaves /etc/hosts to the installer; a VPS has one.
	if err := os.WriteFile(filepath.Join(root, "etc", "hosts"), []byte("127.0.0.1 localhost\n::1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root
}

// recap matches a host's line of Ansible's PLAY RECAP.
var recap = regexp.MustCompile(`(?m)^node\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)`)

// converge runs setup.yml and deploy.yml against the root and returns the
// recap's changed count (summed over the plays).
func converge(t *testing.T, inventory string) (changed int, out []byte) {
	t.Helper()
	cmd := exec.Command("ansible-playbook", "-i", inventory, "setup.yml", "deploy.yml")
	cmd.Dir = ansibleDir
	cmd.Env = ansibleEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ansible-playbook setup.yml deploy.yml: %v\n%s", err, tail(out, 60))
	}
	m := recap.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		t.Fatalf("no PLAY RECAP for node in:\n%s", tail(out, 40))
	}
	for _, r := range m {
		if string(r[3]) != "0" || string(r[4]) != "0" {
			t.Fatalf("unreachable or failed tasks:\n%s", tail(out, 60))
		}
		n, _ := strconv.Atoi(string(r[2]))
		changed += n
	}
	return changed, out
}

// TestAnsibleConvergeInDebianRoot applies setup.yml and deploy.yml to a
// fresh Debian root through Ansible's chroot connection, twice: the first
// run changes the root, the second must change nothing. It then checks
// what the role wrote (the firewall ruleset with nft -c, the kernel and
// limit settings, swap, the service user and the migrated database), the
// installed unit with systemd-analyze verify, and starts the installed
// binary inside the root the way the unit does, on spare ports, until it
// answers /xrpc/_health. Applying the firewall, swapon, sysctl and
// starting the unit under systemd only happen on a real host (the test
// sets cairn_firewall_apply, cairn_apply_runtime and cairn_manage_service
// to false); see docs/install.md.
func TestAnsibleConvergeInDebianRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CAIRN_REQUIRE_SERVICES") == "1" {
			t.Fatal("the chroot converge needs root (CI runs as root)")
		}
		t.Skip("the chroot converge needs root")
	}
	t.Parallel() // mostly waiting on chroot and Python: overlap it with the rest
	tool(t, "ansible-playbook", "ansible")
	nft := tool(t, "nft", "nftables")
	analyze := tool(t, "systemd-analyze", "systemd")
	binary := builder.Binary(t)
	start := time.Now()
	root := debianRoot(t)
	t.Logf("Debian root ready in %s", time.Since(start).Round(time.Second))

	httpsPort, httpPort := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	adminPort, metricsPort := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	vars := fmt.Sprintf(`---
ansible_connection: community.general.chroot
ansible_host: %q
ansible_python_interpreter: /usr/bin/python3
cairn_binary_src: %q
cairn_domain: localhost
cairn_https_port: %d
cairn_http_port: %d
cairn_admin_addr: "127.0.0.1:%d"
cairn_metrics_port: %d
cairn_log_hash_key: "test-only-log-hash-key-0123456789abcdef"
cairn_swap_size_mb: 4
cairn_metrics_allowed_sources: [192.0.2.10, "2001:db8::10"]
# A chroot: nothing applied to this machine's kernel or firewall, no
# systemd to start the unit, and apt's lists are the cached root's.
cairn_firewall_apply: false
cairn_apply_runtime: false
cairn_manage_service: false
cairn_apt_cache_valid_time: 315360000
`, root, binary, httpsPort, httpPort, adminPort, metricsPort)
	dir := t.TempDir()
	inventory := filepath.Join(dir, "inventory.yml")
	writeFile(t, inventory, "cairn:\n  hosts:\n    node:\n")
	if err := os.MkdirAll(filepath.Join(dir, "host_vars"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "host_vars", "node.yml"), vars)

	first := time.Now()
	changed, _ := converge(t, inventory)
	if changed == 0 {
		t.Fatal("the first converge changed nothing in a fresh root")
	}
	t.Logf("first converge: changed=%d in %s", changed, time.Since(first).Round(time.Second))
	second := time.Now()
	if changed, out := converge(t, inventory); changed != 0 {
		t.Fatalf("the second converge changed %d tasks, want 0:\n%s", changed, changedTasks(out))
	}
	t.Logf("second converge: changed=0 in %s", time.Since(second).Round(time.Second))

	// The firewall: the ruleset nftables.service would load, checked by
	// this machine's nft without applying it.
	ruleset := filepath.Join(root, "etc", "nftables.conf")
	if out, err := exec.Command(nft, "-c", "-f", ruleset).CombinedOutput(); err != nil {
		t.Errorf("nft -c -f /etc/nftables.conf: %v\n%s", err, out)
	}
	rules := readFile(t, ruleset)
	for _, want := range []string{
		"policy drop;",
		fmt.Sprintf("tcp dport { %d, %d } accept", httpPort, httpsPort),
		fmt.Sprintf("ip saddr 192.0.2.10 tcp dport %d accept", metricsPort),
		fmt.Sprintf("ip6 saddr 2001:db8::10 tcp dport %d accept", metricsPort),
		fmt.Sprintf("tcp dport %d drop", metricsPort),
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("/etc/nftables.conf lacks %q:\n%s", want, rules)
		}
	}
	// The metrics port is dropped after the scrapers and before nothing
	// else accepts it.
	if strings.Index(rules, fmt.Sprintf("tcp dport %d drop", metricsPort)) < strings.Index(rules, "saddr 2001:db8::10") {
		t.Errorf("the metrics port is dropped before its allowed sources:\n%s", rules)
	}
	sysctl := readFile(t, filepath.Join(root, "etc", "sysctl.d", "60-cairn.conf"))
	for _, want := range []string{"net.core.somaxconn = 4096", "fs.file-max = 2097152", "vm.swappiness = 10"} {
		if !strings.Contains(sysctl, want) {
			t.Errorf("60-cairn.conf lacks %q", want)
		}
	}
	if limits := readFile(t, filepath.Join(root, "etc", "security", "limits.d", "60-cairn.conf")); !strings.Contains(limits, "cairn hard nofile 1048576") {
		t.Errorf("limits.d/60-cairn.conf: %s", limits)
	}
	if fi, err := os.Stat(filepath.Join(root, "swapfile")); err != nil || fi.Size() != 4<<20 || fi.Mode().Perm() != 0o600 {
		t.Errorf("swapfile: %v %v", fi, err)
	}
	if !strings.Contains(readFile(t, filepath.Join(root, "etc", "fstab")), "/swapfile none swap sw 0 0") {
		t.Error("fstab has no swap line")
	}
	uid := passwdUID(t, root, "cairn")
	assertOwnedMode(t, filepath.Join(root, "etc", "cairn", "cairn.env"), uid, 0o600)
	assertOwnedMode(t, filepath.Join(root, "var", "lib", "cairn"), uid, 0o700)
	env := readFile(t, filepath.Join(root, "etc", "cairn", "cairn.env"))
	for _, want := range []string{"CAIRN_DOMAIN='localhost'", fmt.Sprintf("CAIRN_HTTPS_PORT='%d'", httpsPort), "CAIRN_LOG_HASH_KEY='test-only-"} {
		if !strings.Contains(env, want) {
			t.Errorf("cairn.env lacks %q", want)
		}
	}
	if strings.Contains(env, "CAIRN_DATABASE_URL") {
		t.Error("cairn.env sets an empty CAIRN_DATABASE_URL")
	}
	// migrate up ran as the service user: the database is there, and theirs.
	assertOwnedMode(t, filepath.Join(root, "var", "lib", "cairn", "caddy", "cairn", "cairn.db"), uid, 0o600)

	// The installed unit, verified by systemd with the root's paths
	// (systemd's own units copied in for the targets it names).
	if out, err := exec.Command("cp", "-r", "/usr/lib/systemd/system", filepath.Join(root, "usr", "lib", "systemd")).CombinedOutput(); err != nil {
		t.Fatalf("copying systemd's units: %v\n%s", err, out)
	}
	if out, err := exec.Command(analyze, "verify", "--root="+root, "/etc/systemd/system/cairn-caddy.service").CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	startUnitInRoot(t, root)
	// The installed binary's own health check, inside the root, as
	// deploy.yml runs it on a real host; then the answer from outside.
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := exec.Command("chroot", root, "/usr/local/bin/cairn-caddy", "healthcheck",
			"--url", fmt.Sprintf("https://localhost:%d/xrpc/_health", httpsPort), "--timeout", "3s").CombinedOutput()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cairn-caddy healthcheck in the root: %v\n%s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	assertHealthy(t, httpsPort)
}

// startUnitInRoot starts the installed unit's ExecStart inside the root
// the way systemd would: as its User, with only the bind capability, its
// Environment= and EnvironmentFile=, and umask 0077.
func startUnitInRoot(t *testing.T, root string) {
	t.Helper()
	unit := readFile(t, filepath.Join(root, "etc", "systemd", "system", "cairn-caddy.service"))
	value := func(key string) []string {
		var vals []string
		sc := bufio.NewScanner(strings.NewReader(unit))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok {
				vals = append(vals, v)
			}
		}
		if len(vals) == 0 {
			t.Fatalf("the installed unit has no %s=", key)
		}
		return vals
	}
	user := value("User")[0]
	args := []string{root, "setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--no-new-privs",
		"--bounding-set=-all,+net_bind_service", "--inh-caps=-all,+net_bind_service", "--ambient-caps=-all,+net_bind_service", "--",
		"env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/var/lib/cairn"}
	for _, e := range value("Environment") {
		args = append(args, strings.Fields(e)...)
	}
	args = append(args, "sh", "-c", `set -a; . "$1"; set +a; shift; umask 077; exec "$@"`, "cairn-env",
		strings.TrimPrefix(value("EnvironmentFile")[0], "-"))
	args = append(args, strings.Fields(value("ExecStart")[0])...)
	logPath := filepath.Join(t.TempDir(), "service.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("chroot", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		logFile.Close()
		if t.Failed() {
			t.Logf("service log:\n%s", tail([]byte(readFile(t, logPath)), 30))
		}
	})
}

// passwdUID is a user's uid in the root's /etc/passwd.
func passwdUID(t *testing.T, root, name string) string {
	t.Helper()
	for line := range strings.Lines(readFile(t, filepath.Join(root, "etc", "passwd"))) {
		f := strings.Split(line, ":")
		if len(f) > 2 && f[0] == name {
			return f[2]
		}
	}
	t.Fatalf("no user %s in the root's /etc/passwd", name)
	return ""
}

// changedTasks lists the tasks Ansible reported as changed.
func changedTasks(out []byte) string {
	var b strings.Builder
	var task string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "TASK [") {
			task = line
		}
		if strings.HasPrefix(line, "changed:") {
			b.WriteString(task + line)
		}
	}
	return b.String()
}

func tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
