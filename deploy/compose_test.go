package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	_ "github.com/cairn-chat/cairn-caddy/caddymodules"
	"github.com/cairn-chat/cairn-caddy/internal/image"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const (
	composeFile = "docker-compose.prod.yml"
	envExample  = ".env.example"
)

// loadCompose loads the production Compose file the way `docker compose
// --env-file .env.example [--profile …] config` does: compose-go is the
// library the Compose CLI loads, interpolates, normalizes and validates
// with. The process environment is left out, so the result depends on the
// files only.
func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithWorkingDirectory("."),
		cli.WithEnvFiles(envExample),
		cli.WithDotEnv,
		cli.WithProfiles(profiles),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s with %s: %v", composeFile, envExample, err)
	}
	return p
}

// The services and what each may publish on the host.
var (
	coreServices       = []string{"cairn-caddy", "postgres", "redis"}
	monitoringServices = []string{"grafana", "prometheus"}
	allowedPublished   = map[string][]string{
		"cairn-caddy": {"0.0.0.0:80->80/tcp", "0.0.0.0:443->443/tcp", "0.0.0.0:443->443/udp"},
		"grafana":     {"127.0.0.1:3000->3000/tcp"},
	}
)

// TestComposeProdServices: without a profile the file runs the gateway,
// PostgreSQL and Redis; the monitoring profile adds Prometheus and Grafana.
func TestComposeProdServices(t *testing.T) {
	if got := serviceNames(loadCompose(t)); !slices.Equal(got, coreServices) {
		t.Errorf("services %v, want %v", got, coreServices)
	}
	want := append(append([]string{}, coreServices...), monitoringServices...)
	sort.Strings(want)
	if got := serviceNames(loadCompose(t, "monitoring")); !slices.Equal(got, want) {
		t.Errorf("services with --profile monitoring %v, want %v", got, want)
	}
}

// TestComposeProdInvariants checks what a production node needs of every
// service: a restart policy, a health check, resource limits that fit a
// 1 vCPU / 1 GB VPS, data in named volumes, the databases and monitoring on
// a private network, and nothing published but the public ports and
// Grafana on loopback: not the metrics listener, the admin API or a
// database.
func TestComposeProdInvariants(t *testing.T) {
	p := loadCompose(t, "monitoring")
	var coreMemory int64
	for name, s := range p.Services {
		if s.Restart != types.RestartPolicyUnlessStopped {
			t.Errorf("%s: restart %q, want unless-stopped", name, s.Restart)
		}
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] == "NONE" {
			t.Errorf("%s: no health check", name)
		}
		if s.Deploy == nil || s.Deploy.Resources.Limits == nil ||
			s.Deploy.Resources.Limits.MemoryBytes <= 0 || s.Deploy.Resources.Limits.NanoCPUs <= 0 {
			t.Errorf("%s: no CPU and memory limits", name)
		} else {
			l := s.Deploy.Resources.Limits
			if l.NanoCPUs > 1 {
				t.Errorf("%s: %v CPUs, more than the VPS has", name, l.NanoCPUs)
			}
			if slices.Contains(coreServices, name) {
				coreMemory += int64(l.MemoryBytes)
			}
		}
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s: volume %q is not a named volume of the file", name, v.Source)
				}
			case types.VolumeTypeBind:
				// Only read-only configuration from this directory.
				if !v.ReadOnly {
					t.Errorf("%s: bind mount %s is writable; data belongs in named volumes", name, v.Source)
				}
				rel, err := filepath.Rel(p.WorkingDir, v.Source)
				if err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("%s: bind mount %s is outside deploy/", name, v.Source)
				} else if _, err := os.Stat(rel); err != nil {
					t.Errorf("%s: bind mount source %s: %v", name, rel, err)
				}
			default:
				t.Errorf("%s: volume of type %s", name, v.Type)
			}
		}
		var published []string
		for _, port := range s.Ports {
			if port.Published == "" {
				continue
			}
			host := port.HostIP
			if host == "" {
				host = "0.0.0.0"
			}
			published = append(published, fmt.Sprintf("%s:%s->%d/%s", host, port.Published, port.Target, port.Protocol))
		}
		sort.Strings(published)
		want := append([]string{}, allowedPublished[name]...)
		sort.Strings(want)
		if !slices.Equal(published, want) {
			t.Errorf("%s publishes %v, want %v", name, published, want)
		}
		if !slices.Contains([]string{"cairn-caddy", "grafana"}, name) {
			for net := range s.Networks {
				if !p.Networks[net].Internal {
					t.Errorf("%s is on network %s, which is not internal: databases and Prometheus stay on the private network", name, net)
				}
			}
		}
	}
	// The three services that always run fit in 1 GB with room for the
	// kernel, Docker and the page cache.
	if coreMemory > 768<<20 {
		t.Errorf("gateway, PostgreSQL and Redis may use %d MiB together, more than a 1 GB VPS can give", coreMemory>>20)
	}

	gw := p.Services["cairn-caddy"]
	if !gw.ReadOnly {
		t.Error("cairn-caddy: the root file system should be read-only (read_only: true)")
	}
	if !slices.Contains(gw.CapDrop, "ALL") {
		t.Errorf("cairn-caddy: cap_drop %v, want ALL", gw.CapDrop)
	}
	// The metrics and admin listeners are not published (checked above
	// against the allowed list) and the metrics one is a port no
	// published port maps to.
	_, metricsPort, err := net.SplitHostPort(env(t, gw, "CAIRN_METRICS_ADDR"))
	if err != nil {
		t.Fatalf("CAIRN_METRICS_ADDR: %v", err)
	}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if port.Published == metricsPort || name == "cairn-caddy" && fmt.Sprint(port.Target) == metricsPort {
				t.Errorf("%s publishes the metrics port %s", name, metricsPort)
			}
		}
	}
	if !strings.HasPrefix(gw.Image, "ghcr.io/cairn-chat/cairn-caddy:") {
		t.Errorf("cairn-caddy image %q", gw.Image)
	}
	if _, ok := p.Networks["private"]; !ok || !p.Networks["private"].Internal {
		t.Error("the private network must be internal (no route out, nothing published)")
	}
}

func env(t *testing.T, s types.ServiceConfig, key string) string {
	t.Helper()
	v, ok := s.Environment[key]
	if !ok || v == nil {
		t.Fatalf("%s: %s is not set", s.Name, key)
	}
	return *v
}

// TestEnvExampleDocumentsEveryVariable: each variable the Compose file
// reads is in .env.example with a comment above it, .env.example sets
// nothing the file does not read, and its secrets are placeholders the
// gateway and the operator cannot mistake for real ones.
func TestEnvExampleDocumentsEveryVariable(t *testing.T) {
	raw, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	// ${VAR}, ${VAR:-default}, ${VAR:?message}; $$ escapes a dollar for
	// the container's shell.
	for _, m := range regexp.MustCompile(`(^|[^$])\$\{([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(string(raw), -1) {
		used[m[2]] = true
	}
	f, err := os.Open(envExample)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	documented := map[string]string{}
	commented := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
			commented = false
		case strings.HasPrefix(line, "#"):
			commented = true
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Errorf("%s: %q is not VAR=value", envExample, line)
				continue
			}
			if !commented {
				t.Errorf("%s: %s has no comment saying what it is", envExample, k)
			}
			documented[k] = v
		}
	}
	for v := range used {
		if _, ok := documented[v]; !ok {
			t.Errorf("%s reads %s, which %s does not document", composeFile, v, envExample)
		}
	}
	for v := range documented {
		if !used[v] {
			t.Errorf("%s sets %s, which %s does not read", envExample, v, composeFile)
		}
	}
	for _, secret := range []string{"POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"} {
		if documented[secret] != "CHANGE_ME" {
			t.Errorf("%s: %s=%q; an example must not carry a usable secret (CHANGE_ME)", envExample, secret, documented[secret])
		}
	}
}

// TestComposeCaddyfileAdapts adapts and validates the Caddyfile the image
// runs (Caddyfile.example, image.CaddyfilePath) with the environment the
// Compose file gives the gateway, in this process with cairn's modules:
// the public site on 443, and the internal site (metrics, operator API)
// on the port Prometheus scrapes, which is not published. It is valid with
// .env.example's empty keys (generated on the volume) and with keys set,
// and refused, naming the variable, with a key too short.
func TestComposeCaddyfileAdapts(t *testing.T) {
	p := loadCompose(t, "monitoring")
	gw := p.Services["cairn-caddy"]
	for k, v := range gw.Environment {
		if v != nil {
			t.Setenv(k, *v)
		}
	}
	// Caddy's data directory, which validation may create.
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	body, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(body, map[string]any{"filename": image.CaddyfilePath})
	if err != nil {
		t.Fatalf("adapting the image's Caddyfile with the Compose environment: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s", w)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Listen []string `json:"listen"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		t.Fatal(err)
	}
	var listens []string
	for _, s := range cfg.Apps.HTTP.Servers {
		listens = append(listens, s.Listen...)
	}
	sort.Strings(listens)
	for _, want := range []string{":443", "0.0.0.0:9180"} {
		if !slices.Contains(listens, want) {
			t.Errorf("the adapted config listens on %v, not %s", listens, want)
		}
	}
	validate := func() error {
		var c caddy.Config
		if err := json.Unmarshal(cfgJSON, &c); err != nil {
			t.Fatal(err)
		}
		return caddy.Validate(&c)
	}
	// .env.example leaves the keys empty: generated on the volume.
	if err := validate(); err != nil {
		t.Errorf("validating the image's Caddyfile with the Compose environment: %v", err)
	}
	t.Setenv("CAIRN_LOG_HASH_KEY", strings.Repeat("ab", 32))
	t.Setenv("CAIRN_AUDIT_KEY", strings.Repeat("cd", 32))
	if err := validate(); err != nil {
		t.Errorf("validating with keys set in .env: %v", err)
	}
	t.Setenv("CAIRN_LOG_HASH_KEY", "CHANGE_ME")
	if err := validate(); err == nil || !strings.Contains(err.Error(), "CAIRN_LOG_HASH_KEY") {
		t.Errorf("a short CAIRN_LOG_HASH_KEY was not refused: %v", err)
	}

	// Prometheus scrapes that port on the gateway's service name.
	prom, err := os.ReadFile("compose/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prom), "- cairn-caddy:9180") {
		t.Error("compose/prometheus.yml does not scrape cairn-caddy:9180")
	}
	ds, err := os.ReadFile("compose/grafana-datasource.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ds), "url: http://prometheus:9090") {
		t.Error("compose/grafana-datasource.yml does not point at the prometheus service")
	}
}

// TestComposePrometheusConfig runs promtool over the Compose Prometheus
// configuration laid out as the Compose file mounts it.
func TestComposePrometheusConfig(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{
		"compose/prometheus.yml":           "prometheus.yml",
		"prometheus/rules/cairn.rules.yml": "rules/cairn.rules.yml",
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(promtool, "check", "config", filepath.Join(dir, "prometheus.yml")).CombinedOutput(); err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}

func serviceNames(p *types.Project) []string {
	var out []string
	for name := range p.Services {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
