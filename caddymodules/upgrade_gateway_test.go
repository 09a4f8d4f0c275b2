package caddymodules_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/open"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const upgradeCaddyfile = `{
	admin 127.0.0.1:%d
	cairn {
		mode development
		plc_url %s
		data_dir %s
	}
}
http://127.0.0.1:%d {
	handle /xrpc/_health {
		respond 200
	}
	route /xrpc/* {
		cairn_auth {
			service_did did:web:gateway.test
			replay memory
			leeway 1s
		}
		cairn_delivery
		error 501
	}
}
`

// restartScript stops the gateway its pid file names and starts the
// installed binary, as a service manager's restart would.
const restartScript = `#!/bin/sh
if [ -f "$DIR/pid" ]; then
	pid=$(cat "$DIR/pid")
	kill "$pid" 2>/dev/null
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
HOME="$DIR/home" XDG_DATA_HOME="$DIR/home/data" XDG_CONFIG_HOME="$DIR/home/config" \
	nohup "$DIR/bin/cairn-caddy" run --config "$DIR/Caddyfile" --adapter caddyfile >>"$DIR/gateway.log" 2>&1 &
echo $! >"$DIR/pid"
`

// upgradeBinary builds cairn-caddy stamped as version, with extra build
// flags. It uses the build flags of the package's other builds (no
// -trimpath, which would recompile everything), so the shared build cache
// serves all but the link and the packages a build tag touches.
func upgradeBinary(t *testing.T, version string, flags ...string) string {
	b := &gatewaytest.Builder{Flags: append([]string{
		"-ldflags=-X github.com/cairn-chat/cairn-caddy/internal/version.stamped=" + version}, flags...)}
	t.Cleanup(b.Cleanup)
	return b.Binary(t)
}

// TestUpgradeThenRollbackLosesNothingAcknowledged builds two binaries
// from this tree, v0.10.0 and a v0.11.0 with a test-only migration, serves
// conversations created through the gateway on v0.10.0, upgrades with
// upgrade-binary (backup, checks, swap, migrate, restart, health check)
// and rolls back with rollback: every conversation acknowledged before
// the upgrade is served by each version.
func TestUpgradeThenRollbackLosesNothingAcknowledged(t *testing.T) {
	ctx := context.Background()
	oldBin := upgradeBinary(t, "v0.10.0")
	newBin := upgradeBinary(t, "v0.11.0", "-tags=cairn_upgrade_test")

	dir := t.TempDir()
	dataDir, target, keyFile := filepath.Join(dir, "home", "cairn"), filepath.Join(dir, "backups"), filepath.Join(dir, "backup.key")
	install := filepath.Join(dir, "bin", "cairn-caddy")
	testenv.Must(t, os.MkdirAll(filepath.Dir(install), 0o755), "bin dir")
	raw, err := os.ReadFile(oldBin)
	testenv.Must(t, err, "read the old binary")
	testenv.Must(t, os.WriteFile(install, raw, 0o755), "install the old binary")
	testenv.Must(t, os.WriteFile(keyFile, []byte(strings.Repeat("7e", 32)), 0o600), "backup key")
	plc := atprototest.NewPLC(t)
	port := gatewaytest.FreePort(t)
	testenv.Must(t, os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(fmt.Sprintf(upgradeCaddyfile, gatewaytest.FreePort(t), plc.URL, dataDir, port)), 0o600), "Caddyfile")
	testenv.Must(t, os.WriteFile(filepath.Join(dir, "restart.sh"), []byte(restartScript), 0o700), "restart script")
	restart := fmt.Sprintf("DIR=%s sh %s", dir, filepath.Join(dir, "restart.sh"))
	health := fmt.Sprintf("http://127.0.0.1:%d/xrpc/_health", port)
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(dir, "gateway.log"))
			t.Logf("gateway log:\n%s", logs)
		}
	})
	cairn := func(args ...string) cliResult {
		t.Helper()
		cmd := exec.Command(install, args...)
		cmd.Env = append(os.Environ(), "CAIRN_BACKUP_KEY=", "CAIRN_AUDIT_KEY=", "CAIRN_HEALTHCHECK_URL=")
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		r := cliResult{stdout: stdout.String(), stderr: stderr.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return r
	}
	version := func() string {
		var info struct{ Version string }
		r := cairn("release-info", "--json")
		if err := json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &info); err != nil {
			t.Fatalf("release-info: %+v", r)
		}
		return info.Version
	}
	// started waits for the health check and returns when the replay
	// memory of the process began (tokens must be issued after it).
	started := func() time.Time {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			if resp, err := http.Get(health); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return time.Now()
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the gateway did not start")
			}
		}
	}
	mint := func(since time.Time, lxms ...string) []string {
		now := gatewaytest.FreshIat(since, testLeeway)
		var toks []atprototest.Token
		for _, lxm := range lxms {
			toks = append(toks, atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: lxm, Iat: now, Exp: now + 60})
		}
		m := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256", Private: "a3f1c9d2e4b5a6978877665544332211a3f1c9d2e4b5a6978877665544332211"}}, toks)
		plc.Publish(aliceDID, m.Keys["alice"])
		return m.Tokens
	}
	const create = "blue.catbird.mls.createConvo"
	createConvo := func(tok, groupID string) {
		t.Helper()
		body := `{"groupId":"` + groupID + `","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"up-` + groupID + `"}`
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/xrpc/%s", port, create), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("createConvo %s: %v %v", groupID, err, resp)
		}
		resp.Body.Close()
	}
	convos := func(tok string) string {
		t.Helper()
		resp, body := do(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/xrpc/%s", port, getConvo), bearer(tok))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("getConvos: %d %s", resp.StatusCode, body)
		}
		return body
	}
	acknowledged := []string{"a0000000000000000000000000000001", "a0000000000000000000000000000002", "a0000000000000000000000000000003"}

	// v0.10.0 serves; three conversations are acknowledged.
	if out, err := exec.Command("sh", "-c", restart).CombinedOutput(); err != nil {
		t.Fatalf("start: %v %s", err, out)
	}
	toks := mint(started(), create, create, create)
	for i, id := range acknowledged {
		createConvo(toks[i], id)
	}
	if v := version(); v != "v0.10.0" {
		t.Fatalf("installed %s", v)
	}

	args := []string{"upgrade-binary", "--binary", newBin, "--data-dir", dataDir, "--to", target, "--key-file", keyFile,
		"--restart", restart, "--health-url", health}
	// Refusals and the dry run change nothing.
	if r := cairn("upgrade-binary", "--binary", oldBin, "--data-dir", dataDir, "--to", target, "--key-file", keyFile, "--yes"); r.code != 1 || !strings.Contains(r.stderr, "not newer") {
		t.Fatalf("upgrading to the same version: %+v", r)
	}
	if r := cairn(args...); r.code != 1 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("upgrade off a terminal without --yes: %+v", r)
	}
	r := cairn(append(args, "--dry-run")...)
	if r.code != 0 || !strings.Contains(r.stdout, "## v0.11.0") || !strings.Contains(r.stdout, "9001_upgrade_test_probe.sql") || !strings.Contains(r.stdout, "dry run") {
		t.Fatalf("dry run: %+v", r)
	}
	if v := version(); v != "v0.10.0" {
		t.Fatalf("after the dry run the installed binary is %s", v)
	}

	// The upgrade.
	r = cairn(append(args, "--yes", "--json")...)
	if r.code != 0 {
		t.Fatalf("upgrade-binary: %+v", r)
	}
	sum := r.events(t)[len(r.events(t))-1]
	if sum["message_type"] != "summary" || sum["to"] != "v0.11.0" || sum["healthy"] != true || sum["backup"] == "" {
		t.Fatalf("upgrade summary %v", sum)
	}
	if v := version(); v != "v0.11.0" {
		t.Fatalf("after the upgrade the installed binary is %s", v)
	}
	toks = mint(started(), getConvo, create)
	listed := convos(toks[0])
	for _, id := range acknowledged {
		if !strings.Contains(listed, id) {
			t.Errorf("v0.11.0 lost %s: %s", id, listed)
		}
	}
	createConvo(toks[1], "b0000000000000000000000000000001")

	// The previous binary refuses the migrated schema, saying how to roll back.
	out, _ := exec.Command(install+".previous", "migrate", "status", "--data-dir", dataDir).CombinedOutput()
	if !strings.Contains(string(out), "newer than this binary knows") || !strings.Contains(string(out), "cairn-caddy rollback") {
		t.Fatalf("v0.10.0 on the migrated schema: %s", out)
	}

	// The rollback.
	r = cairn("rollback", "--restart", restart, "--health-url", health, "--yes", "--json")
	if r.code != 0 {
		t.Fatalf("rollback: %+v", r)
	}
	if v := version(); v != "v0.10.0" {
		t.Fatalf("after the rollback the installed binary is %s", v)
	}
	toks = mint(started(), getConvo)
	listed = convos(toks[0])
	for _, id := range acknowledged {
		if !strings.Contains(listed, id) {
			t.Errorf("the rollback lost %s: %s", id, listed)
		}
	}
	if aside, _ := filepath.Glob(filepath.Join(dataDir, "cairn.db.before-rollback-*")); len(aside) == 0 {
		t.Error("the upgraded database was not kept")
	}
	b, err := open.New(open.Config{DataDir: dataDir})
	testenv.Must(t, err, "open")
	defer b.Close()
	rows, err := b.(store.AuditLog).AuditRecords(ctx, store.AuditFilter{Types: []string{"backup.restore"}})
	testenv.Must(t, err, "audit")
	if len(rows) != 1 {
		t.Errorf("%d backup.restore rows, want the rollback's", len(rows))
	}
	if r := cairn("rollback", "--yes"); r.code != 1 || !strings.Contains(r.stderr, "no upgrade to roll back") {
		t.Errorf("a second rollback: %+v", r)
	}
}
