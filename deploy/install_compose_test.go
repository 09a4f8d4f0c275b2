package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// fakeDocker is a docker command that records its arguments and answers
// `docker compose version`: this machine has no container engine, so the
// Compose install runs for real up to `docker compose up`, which is
// recorded instead of run.
const fakeDocker = `#!/bin/sh
printf '%s\n' "$*" >>"$FAKE_DOCKER_LOG"
case "$*" in
"compose version") echo "Docker Compose version v2.0.0-fake" ;;
esac
exit 0
`

// TestInstallScriptComposeFilesLoad runs install.sh in Compose mode for
// real, into a directory of its own, with a recording docker in place of
// the engine, and loads what it wrote (docker-compose.yml and .env) with
// compose-go, the library `docker compose` loads and validates with: the
// project loads without the process environment, the gateway gets the
// domain, email, operator token hash and resource limits the script was
// given, and the gateway's database URL carries the password the
// PostgreSQL service is created with; the monitoring profile loads from
// the same .env. The script then ran `docker compose up` on exactly those
// files.
func TestInstallScriptComposeFilesLoad(t *testing.T) {
	testenv.RequireRoot(t, "install.sh writes root-owned files")
	dir := t.TempDir()
	etc := filepath.Join(dir, "cairn")
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "docker"), []byte(fakeDocker), 0o755); err != nil {
		t.Fatal(err)
	}
	dockerLog := filepath.Join(dir, "docker.log")

	cmd := exec.Command("sh", installScript, "--json", "--yes", "--mode", "compose", "--etc-dir", etc,
		"--domain", "chat.example.com", "--email", "ops@example.com",
		"--memory-limit", "768M", "--cpu-limit", "0.5",
		"--http-port", fmt.Sprint(gatewaytest.FreePort(t)), "--https-port", fmt.Sprint(gatewaytest.FreePort(t)),
		"--admin-addr", fmt.Sprintf("localhost:%d", gatewaytest.FreePort(t)),
		"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", gatewaytest.FreePort(t)))
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "FAKE_DOCKER_LOG="+dockerLog)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("install.sh --mode compose: %v\n%s\n%s", err, out, stderr.Bytes())
	}
	events, raw := decodeEvents(t, out)
	for _, ev := range events {
		if ev.Result == "fail" || ev.MessageType == "error" {
			t.Fatalf("install.sh --mode compose: %+v\n%s", ev, out)
		}
	}
	if s := raw[len(raw)-1]; s["result"] != "installed" || s["mode"] != "compose" {
		t.Fatalf("summary %v", s)
	}

	composePath, envPath := filepath.Join(etc, "docker-compose.yml"), filepath.Join(etc, ".env")
	assertOwnedMode(t, envPath, "0", 0o600)
	load := func(profiles ...string) *types.Project {
		t.Helper()
		opts, err := cli.NewProjectOptions([]string{composePath},
			cli.WithWorkingDirectory(etc), cli.WithEnvFiles(envPath), cli.WithDotEnv, cli.WithProfiles(profiles))
		if err != nil {
			t.Fatal(err)
		}
		p, err := opts.LoadProject(context.Background())
		if err != nil {
			t.Fatalf("compose-go (profiles %v) refuses what install.sh wrote: %v\n.env:\n%s", profiles, err, readFileOrEmpty(envPath))
		}
		return p
	}
	p := load()
	// The monitoring profile, which an operator turns on later, loads from
	// the same .env, with a generated Grafana password.
	grafana, err := load("monitoring").GetService("grafana")
	if err != nil {
		t.Fatal(err)
	}
	if pw := grafana.Environment["GF_SECURITY_ADMIN_PASSWORD"]; pw == nil || len(*pw) < 32 {
		t.Errorf("Grafana's admin password is not a generated one: %v", pw)
	}
	gw, err := p.GetService("cairn-caddy")
	if err != nil {
		t.Fatal(err)
	}
	pg, err := p.GetService("postgres")
	if err != nil {
		t.Fatal(err)
	}
	env := func(name string) string {
		if v := gw.Environment[name]; v != nil {
			return *v
		}
		return ""
	}
	token, err := os.ReadFile(filepath.Join(etc, "operator-token"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bytes.TrimSpace(token))
	for name, want := range map[string]string{
		"CAIRN_DOMAIN":              "chat.example.com",
		"CAIRN_ACME_EMAIL":          "ops@example.com",
		"CAIRN_OPERATOR_TOKEN_HASH": "sha256:" + hex.EncodeToString(sum[:]),
	} {
		if got := env(name); got != want {
			t.Errorf("the gateway's %s is %q, want %q", name, got, want)
		}
	}
	password := pg.Environment["POSTGRES_PASSWORD"]
	if password == nil || len(*password) < 32 || !strings.Contains(env("CAIRN_DATABASE_URL"), ":"+*password+"@postgres:5432/") {
		t.Errorf("the gateway's database URL %q does not carry PostgreSQL's generated password", env("CAIRN_DATABASE_URL"))
	}
	if gw.Deploy == nil || gw.Deploy.Resources.Limits == nil {
		t.Fatal("the gateway has no resource limits")
	}
	if l := gw.Deploy.Resources.Limits; int64(l.MemoryBytes) != 768<<20 || float64(l.NanoCPUs) != 0.5 {
		t.Errorf("the gateway's limits: memory %d bytes, %v CPUs; want 768M and 0.5", l.MemoryBytes, l.NanoCPUs)
	}

	calls, err := os.ReadFile(dockerLog)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("compose --project-directory %s -f %s up -d --wait\n", etc, composePath); !strings.HasSuffix(string(calls), want) {
		t.Errorf("docker was run as:\n%s\nwant last: %s", calls, want)
	}
}

func readFileOrEmpty(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
