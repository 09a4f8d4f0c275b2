package caddymodules_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// operatorToken makes a static operator token and its hash with the
// operator-token command, as an operator would.
func operatorToken(t *testing.T) (token, hash string) {
	t.Helper()
	out, err := exec.Command(builder.Binary(t), "operator-token").CombinedOutput()
	if err != nil {
		t.Fatalf("operator-token: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`token: (\S+)\nhash:  (sha256:[0-9a-f]{64})`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("operator-token printed %q", out)
	}
	return m[1], m[2]
}

// cliResult is one operator command's outcome.
type cliResult struct {
	code           int
	stdout, stderr string
}

// events decodes the NDJSON stdout of a --json run.
func (r cliResult) events(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["message_type"] == nil {
			t.Fatalf("stdout line %q is not an NDJSON event (%v)", line, err)
		}
		out = append(out, m)
	}
	return out
}

// runCLI runs the built binary with env and args; stdin is not a terminal.
func runOperatorCLI(t *testing.T, home string, env []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.Command(builder.Binary(t), args...)
	cmd.Dir = home
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	r := cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, "panic:") {
		t.Fatalf("%v printed a stack trace:\n%s", args, r.stderr)
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); code != 0 && n > 0 {
		t.Errorf("%v: the error is %d lines, want one:\n%s", args, n+1, r.stderr)
	}
	return r
}

// TestExampleOperatorAPI runs Caddyfile.example with an operator token and
// checks that the operator API is on the internal site only, that every
// call is audited, and drives bans and the audit log through the CLI.
func TestExampleOperatorAPI(t *testing.T) {
	token, hash := operatorToken(t)
	eg := startExample(t, "CAIRN_OPERATOR_TOKEN_HASH="+hash, "CAIRN_AUDIT_KEY=")

	t.Run("the public site never routes the operator API", func(t *testing.T) {
		// The public site answers these paths as it answers any unknown
		// one (the web face or a 404), never with the operator API.
		for _, path := range []string{"/operator/v1/status", "/operator/v1/bans", "/operator/v1/audit"} {
			resp, body := eg.get(t, path, bearer(token))
			if strings.Contains(resp.Header.Get("Content-Type"), "application/json") && resp.StatusCode == http.StatusOK ||
				strings.Contains(string(body), `"schema"`) || strings.Contains(string(body), `"bans"`) || strings.Contains(string(body), `"events"`) ||
				strings.Contains(string(body), "AuthMissing") || strings.Contains(string(body), "AuditUnavailable") {
				t.Fatalf("public %s reached the operator API: %d %s", path, resp.StatusCode, body)
			}
		}
	})

	t.Run("the public site serves the did:web document", func(t *testing.T) {
		resp, body := eg.get(t, "/.well-known/did.json", nil)
		var doc struct {
			ID      string `json:"id"`
			Service []struct {
				ID, Type, ServiceEndpoint string
			} `json:"service"`
			VerificationMethod []struct{ ID string } `json:"verificationMethod"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &doc) != nil || doc.ID != "did:web:localhost" ||
			len(doc.Service) != 1 || doc.Service[0].ID != "#atproto_mls" || doc.Service[0].ServiceEndpoint != "https://localhost" ||
			len(doc.VerificationMethod) != 1 || doc.VerificationMethod[0].ID != "did:web:localhost#atproto" {
			t.Fatalf("did.json: %d %s", resp.StatusCode, body)
		}
	})

	internal := eg.metricsBase + "/operator/v1/status"
	if code := status(t, internal, nil); code != http.StatusUnauthorized {
		t.Fatalf("internal status without a token: %d", code)
	}
	resp, body := do(t, http.MethodGet, internal, bearer(token))
	var st map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("internal status: %d %s", resp.StatusCode, body)
	}
	if store, _ := st["store"].(map[string]any); store["backend"] != "sqlite" || store["healthy"] != true {
		t.Errorf("status store = %v", st["store"])
	}
	if _, ok := st["last_backup"]; !ok || st["last_backup"] != nil || st["redis"] != nil {
		t.Errorf("status = %v: want last_backup null and redis null", st)
	}
	if schema, _ := st["schema"].(map[string]any); schema["current"] != schema["latest"] || schema["current"].(float64) < 2 {
		t.Errorf("status schema = %v", st["schema"])
	}

	// The audit key was generated into the data directory at start.
	keyFile := filepath.Join(eg.Home, "data", "caddy", "cairn", "audit.key")
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("audit key file: %v, %v; want mode 0600", info, err)
	}

	env := []string{"CAIRN_OPERATOR_URL=" + eg.metricsBase, "CAIRN_OPERATOR_TOKEN=" + token}
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"

	r := runOperatorCLI(t, eg.Home, env, "status", "--json")
	if ev := r.events(t); r.code != 0 || len(ev) != 1 || ev[0]["message_type"] != "summary" || ev[0]["healthy"] != true {
		t.Fatalf("status --json: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runOperatorCLI(t, eg.Home, env, "ban", did); r.code != 1 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("ban without --yes and without a terminal: %d %s", r.code, r.stderr)
	}
	r = runOperatorCLI(t, eg.Home, env, "ban", "--dry-run", "--json", did)
	ev := r.events(t)
	if r.code != 0 || len(ev) != 1 || ev[0]["changed"] != true || ev[0]["dry_run"] != true {
		t.Fatalf("ban --dry-run: %d %s", r.code, r.stdout)
	}
	banHash := ev[0]["hash"].(string)
	if r := runOperatorCLI(t, eg.Home, env, "ban", "list", "--json"); len(r.events(t)) != 1 {
		t.Fatalf("a dry run banned: %s", r.stdout)
	}
	if r := runOperatorCLI(t, eg.Home, env, "ban", "--yes", did); r.code != 0 || !strings.Contains(r.stdout, "banned "+banHash) {
		t.Fatalf("ban --yes: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = runOperatorCLI(t, eg.Home, env, "ban", "list", "--json")
	if ev := r.events(t); len(ev) != 2 || ev[0]["hash"] != banHash {
		t.Fatalf("ban list: %s", r.stdout)
	}
	r = runOperatorCLI(t, eg.Home, env, "audit", "--type", "ban.add", "--json")
	ev = r.events(t)
	if r.code != 0 || len(ev) != 2 || ev[0]["message_type"] != "audit_event" || ev[0]["actor"] != "static" || ev[0]["target"] != banHash {
		t.Fatalf("audit --type ban.add: %d %s", r.code, r.stdout)
	}
	if r := runOperatorCLI(t, eg.Home, env, "unban", "--yes", banHash); r.code != 0 || !strings.Contains(r.stdout, "unbanned") {
		t.Fatalf("unban: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// Wrong input is a usage error; a wrong token one actionable line.
	if r := runOperatorCLI(t, eg.Home, env, "audit", "--since", "yesterday"); r.code != 2 {
		t.Errorf("audit --since yesterday: %d %s", r.code, r.stderr)
	}
	if r := runOperatorCLI(t, eg.Home, []string{"CAIRN_OPERATOR_URL=" + eg.metricsBase, "CAIRN_OPERATOR_TOKEN=wrong"}, "status"); r.code != 1 || !strings.Contains(r.stderr, "InvalidToken") {
		t.Errorf("status with a wrong token: %d %s", r.code, r.stderr)
	}

	// Every call above was audited, and no raw DID is in the audit log.
	r = runOperatorCLI(t, eg.Home, env, "audit", "--limit", "500", "--json")
	actions := 0
	for _, e := range r.events(t) {
		if e["type"] == "operator.action" {
			actions++
		}
		if strings.Contains(fmt.Sprint(e), "ewvi7") {
			t.Errorf("an audit row holds the raw DID: %v", e)
		}
	}
	if actions < 10 {
		t.Errorf("%d operator.action rows, want one per call", actions)
	}

	// The chain verifies offline on the running node's store, with the
	// key found from the same configuration and environment.
	cfg := filepath.Join(eg.Home, "Caddyfile")
	r = runOperatorCLI(t, eg.Home, append(env, "CAIRN_DOMAIN=localhost"), "audit", "verify", "--config", cfg, "--json")
	if ev := r.events(t); r.code != 0 || ev[len(ev)-1]["ok"] != true {
		t.Fatalf("audit verify: %d %s %s", r.code, r.stdout, r.stderr)
	}
	// An edit behind the node's back is caught, with exit status 3.
	db, err := sql.Open("sqlite", "file:"+filepath.Join(eg.Home, "data", "caddy", "cairn", "cairn.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE audit_log SET actor = 'mallory' WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r = runOperatorCLI(t, eg.Home, append(env, "CAIRN_DOMAIN=localhost"), "audit", "verify", "--config", cfg)
	if r.code != 3 || !strings.Contains(r.stdout, "BROKEN:   row 2:") || !strings.Contains(r.stderr, "broken at row 2") {
		t.Fatalf("audit verify after an UPDATE: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runOperatorCLI(t, eg.Home, nil, "healthcheck", "--url", eg.base+"/xrpc/_health"); r.code != 0 || strings.TrimSpace(r.stdout) != "ok" {
		t.Errorf("healthcheck: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if r := runOperatorCLI(t, eg.Home, nil, "healthcheck", "--url", eg.base+"/xrpc/blue.catbird.mls.getConvos"); r.code != 1 {
		t.Errorf("healthcheck of a 401: %d", r.code)
	}
}

const banCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		mode development
		plc_url %s
		%s
	}
}
http://127.0.0.1:{PORT} {
	route /xrpc/* {
		cairn_auth {
			service_did did:web:gateway.test
			replay memory
			leeway 1s
		}
		cairn_delivery
		error 501
	}
	handle_errors {
		cairn_xrpc_errors
	}
}
http://127.0.0.1:{METRICS} {
	route /operator/v1/* {
		cairn_operator_auth {
			static_token_hash %s
			static_token_name ops-team
		}
		cairn_operator_api
	}
}
`

// TestBannedAccountIsRefused bans a verified caller through the CLI and
// sees its next call refused with 403 AccountBanned, and served again
// after unban.
func TestBannedAccountIsRefused(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) { testBannedAccountIsRefused(t, backend) })
	}
}

func testBannedAccountIsRefused(t *testing.T, backend string) {
	database := ""
	if backend == "postgres" {
		database = "database " + testenv.Postgres(t)
	}
	token, hash := operatorToken(t)
	plc := atprototest.NewPLC(t)
	g := startPlain(t, fmt.Sprintf(banCaddyfile, plc.URL, database, hash), gatewaytest.Options{})
	// Tokens issued after the gateway's replay memory began.
	now := freshIat(t, testLeeway, g)
	var toks []atprototest.Token
	for range 3 {
		toks = append(toks, atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: getConvo, Iat: now, Exp: now + 60})
	}
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}}, toks)
	plc.Publish(aliceDID, minted.Keys["alice"])
	env := []string{fmt.Sprintf("CAIRN_OPERATOR_URL=http://127.0.0.1:%d", g.metrics), "CAIRN_OPERATOR_TOKEN=" + token}

	get := func(tok string) (*http.Response, string) {
		return do(t, http.MethodGet, g.url("/xrpc/"+getConvo), bearer(tok))
	}
	if resp, body := get(minted.Tokens[0]); resp.StatusCode != http.StatusOK {
		t.Fatalf("before the ban: %d %s", resp.StatusCode, body)
	}
	if r := runOperatorCLI(t, g.Home, env, "ban", "--yes", aliceDID); r.code != 0 {
		t.Fatalf("ban: %d %s %s", r.code, r.stdout, r.stderr)
	}
	resp, body := get(minted.Tokens[1])
	if resp.StatusCode != http.StatusForbidden || errorName(t, body) != "AccountBanned" {
		t.Fatalf("banned call: %d %s", resp.StatusCode, body)
	}
	if r := runOperatorCLI(t, g.Home, env, "unban", "--yes", aliceDID); r.code != 0 {
		t.Fatalf("unban: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if resp, body := get(minted.Tokens[2]); resp.StatusCode != http.StatusOK {
		t.Fatalf("after unban: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(g.Logs(), aliceDID) || strings.Contains(g.Logs(), token) {
		t.Error("the banned DID or the operator token reached the logs")
	}
}

// TestOperatorAuthIsAuditedAggregated sends a burst of bad operator
// tokens and one good one, reloads (the old configuration flushes what it
// counted) and finds one aggregated row per source and per operator, and
// a config.load row per load.
func TestOperatorAuthIsAuditedAggregated(t *testing.T) {
	token, hash := operatorToken(t)
	text := fmt.Sprintf(banCaddyfile, "https://plc.directory", "", hash)
	text = strings.Replace(text, "mode development\n\t\tplc_url https://plc.directory", "mode development", 1)
	g := startPlain(t, text, gatewaytest.Options{})
	status := fmt.Sprintf("http://127.0.0.1:%d/operator/v1/status", g.metrics)
	for range 25 {
		if resp, _ := do(t, http.MethodGet, status, bearer("wrong")); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong token: %d", resp.StatusCode)
		}
	}
	if resp, body := do(t, http.MethodGet, status, bearer(token)); resp.StatusCode != http.StatusOK {
		t.Fatalf("good token: %d %s", resp.StatusCode, body)
	}
	g.Reload(t, g.admin, strings.Replace(g.text, "mode development", "mode development\n\t\tlog_level info", 1))

	env := []string{fmt.Sprintf("CAIRN_OPERATOR_URL=http://127.0.0.1:%d", g.metrics), "CAIRN_OPERATOR_TOKEN=" + token}
	byType := map[string][]map[string]any{}
	r := runOperatorCLI(t, g.Home, env, "audit", "--limit", "500", "--json")
	for _, e := range r.events(t) {
		if typ, ok := e["type"].(string); ok {
			byType[typ] = append(byType[typ], e)
		}
	}
	failed := byType["operator.auth.failed"]
	if len(failed) != 1 {
		t.Fatalf("operator.auth.failed rows = %v, want one for the one source", failed)
	}
	meta := failed[0]["metadata"].(map[string]any)
	if meta["count"] != float64(25) || !strings.HasPrefix(failed[0]["target"].(string), "h:") || strings.Contains(fmt.Sprint(failed[0]), "127.0.0.1") {
		t.Fatalf("failure row = %v: want count 25 and the source as a keyed hash", failed[0])
	}
	if ok := byType["operator.auth.ok"]; len(ok) != 1 || ok[0]["actor"] != "ops-team" || ok[0]["metadata"].(map[string]any)["count"] != float64(1) {
		t.Fatalf("operator.auth.ok rows = %v", ok)
	}
	if n := len(byType["config.load"]); n != 2 {
		t.Fatalf("%d config.load rows, want 2 (start and reload)", n)
	}
}

// TestNodeWithAnotherAuditKeyRefusesToStart starts a node, then a second
// one on the same database with its own audit key, as a cluster node that
// generated its own would: it must not start.
func TestNodeWithAnotherAuditKeyRefusesToStart(t *testing.T) {
	database := "database " + testenv.Postgres(t)
	_, hash := operatorToken(t)
	text := fmt.Sprintf(banCaddyfile, "https://plc.directory", database, hash)
	startPlain(t, text, gatewaytest.Options{Env: []string{"CAIRN_AUDIT_KEY=" + strings.Repeat("a", 40)}})
	second := &plainGateway{admin: gatewaytest.FreePort(t), port: gatewaytest.FreePort(t), metrics: gatewaytest.FreePort(t)}
	// A ready URL that never answers: StartErr returns when the process
	// exits.
	_, err := gatewaytest.StartErr(t, &builder, gatewaytest.Options{Caddyfile: second.expand(text), ReadyURL: "http://127.0.0.1:1/never",
		Env: []string{"CAIRN_AUDIT_KEY=" + strings.Repeat("b", 40)}})
	if err == nil || !strings.Contains(err.Error(), "exited during start-up") || !strings.Contains(err.Error(), "does not verify under this node's audit key") || !strings.Contains(err.Error(), "CAIRN_AUDIT_KEY") {
		t.Fatalf("second node with another key: %v", err)
	}
	if strings.Contains(err.Error(), strings.Repeat("b", 40)) {
		t.Fatal("the audit key reached the output")
	}
}

// TestHealthcheckProbesTheDomainOverLoopback: with CAIRN_DOMAIN set, as in
// a container of deploy/docker-compose.prod.yml, the default health check
// asks this machine's loopback for the public site by its name (SNI and
// Host), which is the only name the site answers; probing "localhost"
// there fails the TLS handshake, since no certificate names it.
func TestHealthcheckProbesTheDomainOverLoopback(t *testing.T) {
	httpsPort, httpPort, adminPort := gatewaytest.FreePort(t), gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	g := gatewaytest.Start(t, &builder, gatewaytest.Options{
		Caddyfile: fmt.Sprintf(`{
	admin 127.0.0.1:%d
	skip_install_trust
	http_port %d
}
cairn.test:%d {
	tls internal
	handle /xrpc/_health {
		respond `+"`"+`{"version":"cairn-caddy"}`+"`"+` 200
	}
	respond 404
}
`, adminPort, httpPort, httpsPort),
		AdminPort: adminPort,
	})
	port := fmt.Sprintf("CAIRN_HTTPS_PORT=%d", httpsPort)
	// The internal CA signs the site's certificate a moment after start.
	var r cliResult
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		r = runOperatorCLI(t, g.Home, []string{port, "CAIRN_DOMAIN=cairn.test", "CAIRN_HEALTHCHECK_URL="}, "healthcheck", "--json")
		if r.code == 0 || time.Now().After(deadline) {
			break
		}
	}
	if ev := r.events(t); r.code != 0 || ev[len(ev)-1]["url"] != fmt.Sprintf("https://cairn.test:%d/xrpc/_health", httpsPort) {
		t.Fatalf("healthcheck with CAIRN_DOMAIN=cairn.test: %d %s %s\n%s", r.code, r.stdout, r.stderr, g.Logs())
	}
	if r := runOperatorCLI(t, g.Home, []string{port, "CAIRN_DOMAIN=", "CAIRN_HEALTHCHECK_URL="}, "healthcheck"); r.code != 1 {
		t.Errorf("healthcheck of localhost, which the site does not answer: %d %s %s", r.code, r.stdout, r.stderr)
	}
}
