package release_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/release"
	"github.com/cairn-chat/cairn-caddy/internal/release/releasetest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// The system tests below run `make release` for real, for one target only
// (testTargets): the full matrix is the same code once per target, and
// each target costs a link of the whole gateway. `make release` itself
// builds all six.
const (
	testTargets = "linux/amd64"
	// Two package versions for the upgrade test; newVersion's release is
	// also the one checked for reproducibility and its recipes.
	oldVersion = "0.9.0"
	newVersion = "1.0.0"
	testURL    = "https://releases.example.test/cairn-caddy/v{version}"
)

// releases are this test binary's `make release` runs. Each test starts
// the runs it needs before t.Parallel and waits for the ones it reads
// after it: the first run fills the build cache, then the second of the
// reproducibility pair and the upgrade's old version run side by side,
// beside the checks of the first (lintian, rpm, the recipes).
var releases = releasetest.Releases{Targets: testTargets, URL: testURL}

func TestMain(m *testing.M) {
	code := m.Run()
	releases.Cleanup()
	os.Exit(code)
}

// TestMakeReleaseIsReproducible runs `make release` twice from the same
// commit, into different directories, and expects every artifact to have
// the same SHA-256: the tarball, the deb, the rpm, the SBOM and the
// recipes. Both runs share this machine's Go caches, so the test proves
// that nothing of a run (time, paths, output directory, umask of the
// moment, host name) leaks into the artifacts, not that another machine
// gets the same bytes; -trimpath, the empty build ID and the fixed
// timestamps are what carry that part.
func TestMakeReleaseIsReproducible(t *testing.T) {
	releases.Start(t, "a", newVersion)
	releases.Start(t, "b", newVersion)
	t.Parallel()
	a := releases.Dir(t, "a", newVersion)
	b := releases.Dir(t, "b", newVersion)
	sumsA, err := os.ReadFile(filepath.Join(a, release.SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	sumsB, err := os.ReadFile(filepath.Join(b, release.SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sumsA, sumsB) {
		t.Fatalf("two releases of one commit differ:\n%s\n---\n%s", sumsA, sumsB)
	}

	sums, err := release.ReadSums(filepath.Join(a, release.SumsFile))
	if err != nil {
		t.Fatal(err)
	}
	deb, rpm := release.PackageNames(newVersion, "amd64")
	want := []string{"cairn-caddy_" + newVersion + "_linux_amd64.tar.gz", deb, rpm,
		release.SBOMName(newVersion, release.Target{OS: "linux", Arch: "amd64"}), "cairn-caddy.rb", "PKGBUILD", "flake.nix"}
	for _, name := range want {
		if _, ok := sums[name]; !ok {
			t.Errorf("SHA256SUMS lacks %s", name)
		}
	}
	if len(sums) != len(want) {
		t.Errorf("SHA256SUMS lists %d files, want %d: %v", len(sums), len(want), sums)
	}
	// sha256sum itself agrees with the file.
	check := exec.Command("sha256sum", "--check", "--strict", release.SumsFile)
	check.Dir = a
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check: %v\n%s", err, out)
	}
}

// TestMakeReleaseRecipesMatchArtifacts reads the Homebrew formula, the
// PKGBUILD and the flake `make release` rendered and checks that each
// names this version and points at artifacts the release holds, with the
// SHA-256 of the file on disk.
func TestMakeReleaseRecipesMatchArtifacts(t *testing.T) {
	releases.Start(t, "a", newVersion)
	t.Parallel()
	dir := releases.Dir(t, "a", newVersion)
	base := strings.ReplaceAll(testURL, "{version}", newVersion)
	tarball := "cairn-caddy_" + newVersion + "_linux_amd64.tar.gz"

	type ref struct{ url, sha256 string }
	fromSRI := func(s string) string {
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "sha256-"))
		if err != nil {
			t.Fatalf("flake hash %q: %v", s, err)
		}
		return hex.EncodeToString(b)
	}
	for _, c := range []struct {
		file string
		re   *regexp.Regexp
		conv func(string) string
	}{
		{"cairn-caddy.rb", regexp.MustCompile(`url "([^"]+)"\s+sha256 "([0-9a-f]{64})"`), nil},
		{"PKGBUILD", regexp.MustCompile(`source_\w+=\('([^']+)'\)\s+sha256sums_\w+=\('([0-9a-f]{64})'\)`), nil},
		{"flake.nix", regexp.MustCompile(`url = "([^"]+)"; hash = "(sha256-[A-Za-z0-9+/=]+)";`), fromSRI},
	} {
		t.Run(c.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(dir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			text := string(raw)
			if !strings.Contains(text, newVersion) {
				t.Errorf("%s does not name version %s", c.file, newVersion)
			}
			if strings.Contains(text, "{{") {
				t.Errorf("%s has an unrendered template action", c.file)
			}
			var refs []ref
			for _, m := range c.re.FindAllStringSubmatch(text, -1) {
				sum := m[2]
				if c.conv != nil {
					sum = c.conv(sum)
				}
				refs = append(refs, ref{m[1], sum})
			}
			if len(refs) == 0 {
				t.Fatalf("%s references no artifact:\n%s", c.file, text)
			}
			seen := map[string]bool{}
			for _, r := range refs {
				name := path.Base(r.url)
				if r.url != base+"/"+name {
					t.Errorf("%s: %s is not under the release URL %s", c.file, r.url, base)
				}
				onDisk, err := release.FileSHA256(filepath.Join(dir, name))
				if err != nil {
					t.Errorf("%s references %s, which make release did not write: %v", c.file, name, err)
					continue
				}
				if r.sha256 != onDisk {
					t.Errorf("%s: %s has SHA-256 %s, the file %s", c.file, name, r.sha256, onDisk)
				}
				seen[name] = true
			}
			if !seen[tarball] {
				t.Errorf("%s does not reference %s", c.file, tarball)
			}
		})
	}
}

// TestRPMPackage inspects the rpm with rpm itself: its files, its
// configuration files marked noreplace, and the scriptlets that create
// the service user and keep data on erase.
func TestRPMPackage(t *testing.T) {
	rpmTool := testenv.Tool(t, "rpm")
	releases.Start(t, "a", newVersion)
	t.Parallel()
	dir := releases.Dir(t, "a", newVersion)
	_, rpm := release.PackageNames(newVersion, "amd64")
	pkg := filepath.Join(dir, rpm)
	q := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(rpmTool, append([]string{"-qp"}, append(args, pkg)...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("rpm -qp %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	files := q("-l")
	for _, f := range []string{"/usr/bin/cairn-caddy", "/usr/lib/systemd/system/cairn-caddy.service", "/etc/cairn/Caddyfile", "/etc/cairn/cairn.env"} {
		if !strings.Contains(files, f+"\n") {
			t.Errorf("rpm -qpl lacks %s:\n%s", f, files)
		}
	}
	flags := q("--qf", "[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms} %{FILEUSERNAME}\n]")
	for _, want := range []string{"/etc/cairn/Caddyfile cn -rw-r--r-- root", "/etc/cairn/cairn.env cn -rw------- root"} {
		if !strings.Contains(flags, want) {
			t.Errorf("rpm file flags lack %q (config, noreplace):\n%s", want, flags)
		}
	}
	if v := q("--qf", "%{VERSION}-%{RELEASE} %{ARCH}"); v != newVersion+"-1 x86_64" {
		t.Errorf("rpm version and arch %q", v)
	}
	if l := q("--qf", "%{LICENSE}"); l != release.License {
		t.Errorf("rpm License tag %q, want %q (release.License)", l, release.License)
	}
	scripts := q("--scripts")
	for _, want := range []string{"postinstall scriptlet", "useradd --system", "preuninstall scriptlet", "postuninstall scriptlet", "try-restart cairn-caddy.service"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm -qp --scripts lacks %q:\n%s", want, scripts)
		}
	}
}

// TestDebPassesLintian runs Debian's lintian on the deb and fails on any
// error; warnings are allowed, and packaging/lintian-overrides holds the
// overrides with their reasons.
func TestDebPassesLintian(t *testing.T) {
	lintian := testenv.Tool(t, "lintian")
	releases.Start(t, "a", newVersion)
	t.Parallel()
	dir := releases.Dir(t, "a", newVersion)
	deb, _ := release.PackageNames(newVersion, "amd64")
	out, err := exec.Command(lintian, "--tag-display-limit", "0", "--fail-on", "error", filepath.Join(dir, deb)).CombinedOutput()
	var errs []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "E: ") {
			errs = append(errs, line)
		}
	}
	if err != nil || len(errs) > 0 {
		t.Fatalf("lintian: %v\n%s", err, out)
	}
	t.Logf("lintian:\n%s", out)

	// The copyright file states the project's licence.
	x := t.TempDir()
	if out, err := exec.Command(testenv.Tool(t, "dpkg-deb"), "-x", filepath.Join(dir, deb), x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	if c := readFile(t, filepath.Join(x, "usr/share/doc/cairn-caddy/copyright")); !strings.Contains(c, "\nLicense: "+release.License+"\n") {
		t.Errorf("the deb's copyright file does not say License: %s:\n%s", release.License, c)
	}
}

// TestDebInstallUpgradeRemovePurge installs the deb of one version with
// dpkg, edits the configuration, upgrades to the next version, then
// removes and purges it, checking at each step what an operator relies
// on: the service user, the configuration edits, the binary's version,
// data kept on remove and gone on purge. It changes this machine (a
// package, a system user, /etc/cairn, /var/lib/cairn), so it runs only
// where none of those exist already, holds the host lock every install
// test takes, and undoes everything it did when it ends.
func TestDebInstallUpgradeRemovePurge(t *testing.T) {
	testenv.RequireRoot(t, "dpkg -i")
	dpkg := testenv.Tool(t, "dpkg")
	releases.Start(t, "old", oldVersion)
	releases.Start(t, "a", newVersion)
	t.Parallel()
	oldPkg := releases.Deb(t, "old", oldVersion)
	newPkg := releases.Deb(t, "a", newVersion)
	releasetest.ClaimHost(t)

	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	// Install.
	out := run(dpkg, "-i", oldPkg)
	if !strings.Contains(out, "systemctl enable --now cairn-caddy") {
		t.Errorf("a first install does not say how to start the service:\n%s", out)
	}
	assertInstalledVersion(t, oldVersion)
	assertUser(t, true)
	assertMode(t, "/etc/cairn/cairn.env", 0o600, "cairn")
	assertMode(t, "/var/lib/cairn", 0o700|os.ModeDir, "cairn")
	unit := readFile(t, "/lib/systemd/system/cairn-caddy.service")
	if !strings.Contains(unit, "ExecStart=/usr/bin/cairn-caddy run --config /etc/cairn/Caddyfile") {
		t.Errorf("the packaged unit does not run the packaged binary:\n%s", unit)
	}

	// The operator edits the configuration and the service writes data.
	const edit = "\n# edited by the operator before the upgrade\n"
	appendFile(t, "/etc/cairn/Caddyfile", edit)
	appendFile(t, "/etc/cairn/cairn.env", "CAIRN_DOMAIN=chat.example.test\n")
	if err := os.WriteFile("/var/lib/cairn/marker", []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Upgrade: edits kept, same user, new binary. Without systemd as PID 1
	// the scripts say the service needs a restart instead of failing.
	out = run(dpkg, "-i", newPkg)
	assertInstalledVersion(t, newVersion)
	if !strings.HasSuffix(readFile(t, "/etc/cairn/Caddyfile"), edit) {
		t.Error("the upgrade lost the Caddyfile edit")
	}
	if !strings.Contains(readFile(t, "/etc/cairn/cairn.env"), "CAIRN_DOMAIN=chat.example.test") {
		t.Error("the upgrade lost the cairn.env edit")
	}
	assertUser(t, true)
	assertMode(t, "/etc/cairn/cairn.env", 0o600, "cairn")
	if _, err := os.Stat("/run/systemd/system"); err != nil && !strings.Contains(out, "systemd is not running") {
		t.Errorf("without systemd the upgrade does not say the service needs a restart:\n%s", out)
	}
	if v := run("/usr/bin/cairn-caddy", "version"); !strings.Contains(v, "cairn-caddy/"+newVersion) {
		t.Errorf("after the upgrade, cairn-caddy version says %q", v)
	}
	if mods := run("/usr/bin/cairn-caddy", "list-modules"); !strings.Contains(mods, "cairn_delivery") {
		t.Errorf("the packaged binary lacks the cairn modules:\n%s", mods)
	}

	// Remove: binary gone; configuration, data and user kept.
	run(dpkg, "-r", "cairn-caddy")
	if _, err := os.Stat("/usr/bin/cairn-caddy"); !os.IsNotExist(err) {
		t.Errorf("remove left /usr/bin/cairn-caddy: %v", err)
	}
	for _, f := range []string{"/etc/cairn/Caddyfile", "/etc/cairn/cairn.env", "/var/lib/cairn/marker"} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("remove deleted %s: %v", f, err)
		}
	}
	assertUser(t, true)

	// Purge: everything gone.
	run(dpkg, "-P", "cairn-caddy")
	for _, f := range []string{"/etc/cairn", "/var/lib/cairn"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("purge left %s: %v", f, err)
		}
	}
	assertUser(t, false)
	if out, _ := exec.Command("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "cairn-caddy").Output(); strings.TrimSpace(string(out)) != "" && !strings.HasPrefix(string(out), "un") {
		t.Errorf("after purge dpkg still knows cairn-caddy: %q", out)
	}
}

func assertInstalledVersion(t *testing.T, version string) {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version} ${db:Status-Abbrev}", "cairn-caddy").Output()
	if want := version + "-1 ii"; err != nil || strings.TrimSpace(string(out)) != want {
		t.Fatalf("dpkg-query says %q (%v), want %q", out, err, want)
	}
}

func assertUser(t *testing.T, exists bool) {
	t.Helper()
	out, err := exec.Command("getent", "passwd", "cairn").Output()
	switch {
	case exists && err != nil:
		t.Fatal("the cairn user does not exist")
	case !exists && err == nil:
		t.Fatalf("the cairn user still exists: %s", out)
	case exists:
		// A system user without a login shell, at home in the data directory.
		f := strings.Split(strings.TrimSpace(string(out)), ":")
		if len(f) != 7 || f[5] != "/var/lib/cairn" || !strings.HasSuffix(f[6], "nologin") {
			t.Errorf("cairn user: %s", out)
		}
	}
}

func assertMode(t *testing.T, path string, mode os.FileMode, owner string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode()&(os.ModeDir|os.ModePerm) != mode {
		t.Errorf("%s: mode %v, want %v", path, st.Mode(), mode)
	}
	out, err := exec.Command("stat", "-c", "%U", path).Output()
	if err != nil || strings.TrimSpace(string(out)) != owner {
		t.Errorf("%s: owner %q, want %s", path, out, owner)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprint(f, text); err != nil {
		t.Fatal(err)
	}
}
