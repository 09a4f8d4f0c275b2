package image_test

import (
	"bufio"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"golang.org/x/mod/modfile"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/image"
)

// dockerfile is the repository's Dockerfile, parsed by BuildKit's own
// parser into its stages.
func dockerfile(t *testing.T) map[string]instructions.Stage {
	t.Helper()
	f, err := os.Open(filepath.Join(gatewaytest.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ast, err := parser.Parse(f)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range ast.Warnings {
		t.Errorf("Dockerfile: %s", w.Short)
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	byName := map[string]instructions.Stage{}
	for i, s := range stages {
		name := s.Name
		if i == len(stages)-1 {
			name = "final"
		}
		byName[name] = s
	}
	for _, want := range []string{"build", "debian", "final"} {
		if _, ok := byName[want]; !ok {
			t.Fatalf("Dockerfile has no %q stage", want)
		}
	}
	return byName
}

type noEnv struct{}

func (noEnv) Get(string) (string, bool) { return "", false }
func (noEnv) Keys() []string            { return nil }

// runWords returns the shell words of a stage's RUN lines, with variables
// ($VERSION, $LDFLAGS) left as written.
func runWords(t *testing.T, s instructions.Stage) [][]string {
	t.Helper()
	var out [][]string
	for _, c := range s.Commands {
		if r, ok := c.(*instructions.RunCommand); ok {
			lex := shell.NewLex('\\')
			lex.SkipUnsetEnv = true
			w, err := lex.ProcessWords(strings.Join(r.CmdLine, " "), noEnv{})
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, w)
		}
	}
	return out
}

func containsRun(words [][]string, want []string) bool {
	for _, w := range words {
		for i := 0; i+len(want) <= len(w); i++ {
			if reflect.DeepEqual(w[i:i+len(want)], want) {
				return true
			}
		}
	}
	return false
}

// TestDockerfileBuildsTheSameImage keeps the Dockerfile and `make image`
// equal: the binary is built with the same command, from the same Go
// toolchain; the Debian files come from the same release; and the final
// stage has the same files, owners, user, entrypoint, command, ports,
// volume, environment, working directory, stop signal, labels and health
// check as the image internal/image writes.
func TestDockerfileBuildsTheSameImage(t *testing.T) {
	stages := dockerfile(t)
	root := gatewaytest.RepoRoot()

	// The build stage: the toolchain of go.mod, the same go build.
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse("go.mod", gomod, nil)
	if err != nil {
		t.Fatal(err)
	}
	goVersion := strings.TrimPrefix(mf.Toolchain.Name, "go")
	if b := stages["build"].BaseName; !strings.HasPrefix(b, "golang:"+goVersion+"-") {
		t.Errorf("build stage FROM %s, want golang:%s-… (go.mod's toolchain)", b, goVersion)
	}
	build := runWords(t, stages["build"])
	goBuild := append([]string{"go"}, image.GoBuildArgs("$LDFLAGS", "/out/cairn-caddy")...)
	if !containsRun(build, goBuild) {
		t.Errorf("the build stage does not run `%s`: %q", strings.Join(goBuild, " "), build)
	}
	checkDockerfileStamp(t, build)
	if !containsRun(build, []string{"CGO_ENABLED=0"}) {
		t.Errorf("the build stage does not set CGO_ENABLED=0: %q", build)
	}

	// The Debian stage: the release this machine runs, whose packages
	// `make image` reads.
	codename := osRelease(t)["VERSION_CODENAME"]
	if b := stages["debian"].BaseName; !strings.HasPrefix(b, "debian:"+codename) {
		t.Errorf("debian stage FROM %s, want debian:%s (the release `make image` takes its files from)", b, codename)
	}
	debianRun := runWords(t, stages["debian"])
	if !containsRun(debianRun, []string{"ca-certificates", "tzdata"}) {
		t.Errorf("the debian stage does not install ca-certificates and tzdata: %q", debianRun)
	}

	final := stages["final"]
	if final.BaseName != "scratch" {
		t.Fatalf("the final stage is FROM %s, want scratch", final.BaseName)
	}

	// What make image writes.
	entries, err := image.BaseEntries(image.DebianSources(root))
	if err != nil {
		t.Fatal(err)
	}
	entries = append(entries, image.BinaryEntry(nil))
	byPath := map[string]image.Entry{}
	for _, e := range entries {
		byPath[e.Path] = e
	}
	cfg := image.Config(testMeta)

	var (
		dests       []string
		user        string
		env         []string
		ports       []string
		volumes     []string
		labels      = map[string]string{}
		workdir     string
		stop        string
		entry       []string
		cmd         []string
		health      *instructions.HealthCheckCommand
		debianRoots = map[string]string{}
	)
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.CopyCommand:
			if len(c.SourcePaths) != 1 {
				t.Fatalf("COPY %v: one source a line, so that each file is compared", c.SourcePaths)
			}
			src, dst := c.SourcePaths[0], c.DestPath
			var copied []string
			if c.From == "" && strings.HasSuffix(src, "/") {
				// A directory of the checkout: the files in it.
				dir := filepath.Join(root, src)
				err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
					if err != nil || d.IsDir() {
						return err
					}
					rel, _ := filepath.Rel(dir, p)
					copied = append(copied, path.Join(dst, filepath.ToSlash(rel)))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				copied = []string{path.Clean(dst)}
			}
			if c.From == "debian" {
				debianRoots[path.Clean(dst)] = src
			}
			uid, gid := 0, 0
			if c.Chown != "" {
				if c.Chown != image.User {
					t.Errorf("COPY %s --chown=%s, want the image's user %s", dst, c.Chown, image.User)
				}
				uid, gid = image.UID, image.GID
			}
			for _, p := range copied {
				e, ok := byPath[p]
				if !ok {
					t.Errorf("the Dockerfile copies %s, which make image does not write", p)
					continue
				}
				if e.UID != uid || e.GID != gid {
					t.Errorf("%s: the Dockerfile owns it %d:%d, make image %d:%d", p, uid, gid, e.UID, e.GID)
				}
			}
			dests = append(dests, copied...)
		case *instructions.UserCommand:
			user = c.User
		case *instructions.EnvCommand:
			for _, kv := range c.Env {
				env = append(env, kv.Key+"="+kv.Value)
			}
		case *instructions.ExposeCommand:
			ports = append(ports, c.Ports...)
		case *instructions.VolumeCommand:
			volumes = append(volumes, c.Volumes...)
		case *instructions.LabelCommand:
			for _, kv := range c.Labels {
				v := kv.Value
				if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
					v = v[1 : len(v)-1]
				}
				labels[kv.Key] = v
			}
		case *instructions.WorkdirCommand:
			workdir = c.Path
		case *instructions.StopSignalCommand:
			stop = c.Signal
		case *instructions.EntrypointCommand:
			if c.PrependShell {
				t.Errorf("ENTRYPOINT in shell form: the image has no shell")
			}
			entry = c.CmdLine
		case *instructions.CmdCommand:
			if c.PrependShell {
				t.Errorf("CMD in shell form: the image has no shell")
			}
			cmd = c.CmdLine
		case *instructions.HealthCheckCommand:
			health = c
		case *instructions.ArgCommand:
		default:
			t.Errorf("the final stage runs %T (%s): it has no shell and takes files only by COPY", c, c.Name())
		}
	}

	// Every path make image writes is copied by the Dockerfile, under a
	// copied directory, or a parent directory COPY creates.
	covered := func(p string) bool {
		for _, d := range dests {
			if p == d || strings.HasPrefix(p, d+"/") || strings.HasPrefix(d, p+"/") {
				return true
			}
		}
		return false
	}
	for _, e := range entries {
		if !covered(e.Path) {
			t.Errorf("make image writes %s, which the Dockerfile does not copy", e.Path)
		}
	}
	// Files from the Debian stage come from the same Debian paths.
	src := image.DebianSources(root)
	for dst, want := range map[string]string{
		"/etc/ssl/certs/ca-certificates.crt":       src.CABundle,
		"/usr/share/zoneinfo":                      src.Zoneinfo,
		"/usr/share/doc/ca-certificates/copyright": filepath.Join(src.DocDir, "ca-certificates/copyright"),
		"/usr/share/doc/tzdata/copyright":          filepath.Join(src.DocDir, "tzdata/copyright"),
	} {
		if got := debianRoots[dst]; got != want {
			t.Errorf("the Dockerfile copies %s from the debian stage's %q, make image from %q", dst, got, want)
		}
	}
	// The directories the user owns have the same modes.
	for dir, mode := range map[string]string{"/data": "0750", "/config": "0750", "/tmp": "1777"} {
		e := byPath[dir]
		want := strings.TrimLeft(mode, "0")
		got := strings.TrimLeft(octal(e), "0")
		if got != want {
			t.Errorf("%s: make image mode %s, the Dockerfile's chmod %s", dir, got, mode)
		}
		if !containsRun(debianRun, []string{"chmod", mode}) {
			t.Errorf("the debian stage does not chmod %s %s", mode, dir)
		}
	}

	if user != cfg.User {
		t.Errorf("USER %q, make image %q", user, cfg.User)
	}
	if !reflect.DeepEqual(entry, cfg.Entrypoint) {
		t.Errorf("ENTRYPOINT %q, make image %q", entry, cfg.Entrypoint)
	}
	if !reflect.DeepEqual(cmd, cfg.Cmd) {
		t.Errorf("CMD %q, make image %q", cmd, cfg.Cmd)
	}
	if !reflect.DeepEqual(sorted(env), sorted(cfg.Env)) {
		t.Errorf("ENV %q, make image %q", env, cfg.Env)
	}
	var wantPorts []string
	for p := range cfg.ExposedPorts {
		wantPorts = append(wantPorts, p)
	}
	if !reflect.DeepEqual(sorted(ports), sorted(wantPorts)) {
		t.Errorf("EXPOSE %q, make image %q", ports, wantPorts)
	}
	var wantVolumes []string
	for v := range cfg.Volumes {
		wantVolumes = append(wantVolumes, v)
	}
	if !reflect.DeepEqual(sorted(volumes), sorted(wantVolumes)) {
		t.Errorf("VOLUME %q, make image %q", volumes, wantVolumes)
	}
	if workdir != cfg.WorkingDir {
		t.Errorf("WORKDIR %q, make image %q", workdir, cfg.WorkingDir)
	}
	if stop != cfg.StopSignal {
		t.Errorf("STOPSIGNAL %q, make image %q", stop, cfg.StopSignal)
	}
	if health == nil {
		t.Fatal("no HEALTHCHECK")
	}
	h := health.Health
	if !reflect.DeepEqual(h.Test, cfg.Healthcheck.Test) || h.Interval != cfg.Healthcheck.Interval ||
		h.Timeout != cfg.Healthcheck.Timeout || h.StartPeriod != cfg.Healthcheck.StartPeriod || h.Retries != cfg.Healthcheck.Retries {
		t.Errorf("HEALTHCHECK %+v, make image %+v", h, cfg.Healthcheck)
	}

	// Labels: the same keys; the fixed ones with the same values, the
	// per-build ones from build arguments.
	argFor := map[string]string{
		image.LabelVersion:  "${VERSION}",
		image.LabelRevision: "${REVISION}",
		image.LabelCreated:  "${CREATED}",
	}
	for k, v := range cfg.Labels {
		got, ok := labels[k]
		switch {
		case !ok:
			t.Errorf("the Dockerfile has no label %s", k)
		case argFor[k] != "":
			if got != argFor[k] {
				t.Errorf("label %s = %q, want the build argument %s", k, got, argFor[k])
			}
		case got != v:
			t.Errorf("label %s = %q, make image %q", k, got, v)
		}
	}
	for k := range labels {
		if _, ok := cfg.Labels[k]; !ok {
			t.Errorf("the Dockerfile's label %s is not in make image's", k)
		}
	}
}

// checkDockerfileStamp runs the command the build stage takes its linker
// flags from (LDFLAGS="$(…)"), with the build arguments of a release and of
// a development build, and expects the flags `make image` links with: the
// same version stamp.
func checkDockerfileStamp(t *testing.T, build [][]string) {
	t.Helper()
	var sub string
	for _, words := range build {
		for _, w := range words {
			if v, ok := strings.CutPrefix(w, "LDFLAGS=$("); ok && strings.HasSuffix(v, ")") {
				sub = strings.TrimSuffix(v, ")")
			}
		}
	}
	if sub == "" {
		t.Fatalf("the build stage does not set LDFLAGS=\"$(…)\" for its go build: %q", build)
	}
	dev := testMeta
	dev.Version = "v1.2.3-4-gabcdef0"
	for _, m := range []image.Metadata{testMeta, dev} {
		cmd := exec.Command("sh", "-c", sub)
		cmd.Dir = gatewaytest.RepoRoot()
		cmd.Env = append(os.Environ(), "VERSION="+m.Version, "REVISION="+m.Revision,
			"CREATED="+m.Created.UTC().Format(time.RFC3339))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("the Dockerfile's %q: %v\n%s", sub, err, stderr.String())
		}
		if got, want := strings.TrimSpace(string(out)), image.LDFlags(m); got != want {
			t.Errorf("VERSION=%s: the Dockerfile links with %q, make image with %q", m.Version, got, want)
		}
	}
}

func octal(e image.Entry) string {
	m := uint32(e.Mode.Perm())
	if e.Mode&os.ModeSticky != 0 {
		m |= 0o1000
	}
	return strconv.FormatUint(uint64(m), 8)
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// osRelease reads /etc/os-release.
func osRelease(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("/etc/os-release")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	re := regexp.MustCompile(`^([A-Z_]+)="?([^"]*)"?$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			out[m[1]] = m[2]
		}
	}
	return out
}
