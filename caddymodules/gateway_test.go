package caddymodules_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
)

var builder gatewaytest.Builder

func TestMain(m *testing.M) {
	code := m.Run()
	builder.Cleanup()
	os.Exit(code)
}

// exampleGateway runs Caddyfile.example unchanged, on free ports.
type exampleGateway struct {
	*gatewaytest.Gateway
	base        string // https://localhost:<port>
	metricsBase string // http://127.0.0.1:<port>
	adminPort   int
	httpsPort   int
	httpPort    int
	client      *http.Client
}

func startExample(t *testing.T, env ...string) *exampleGateway {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(gatewaytest.RepoRoot(), "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	httpsPort, httpPort := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	adminPort, metricsPort := gatewaytest.FreePort(t), gatewaytest.FreePort(t)
	env = append([]string{
		"CAIRN_DOMAIN=localhost",
		fmt.Sprintf("CAIRN_HTTPS_PORT=%d", httpsPort),
		fmt.Sprintf("CAIRN_HTTP_PORT=%d", httpPort),
		fmt.Sprintf("CAIRN_ADMIN_ADDR=127.0.0.1:%d", adminPort),
		fmt.Sprintf("CAIRN_METRICS_ADDR=127.0.0.1:%d", metricsPort),
		"CAIRN_REDIS_URL=",
		"CAIRN_LOG_HASH_KEY=",
	}, env...)
	base := fmt.Sprintf("https://localhost:%d", httpsPort)
	// The certificate is issued asynchronously on first start: Start waits
	// until the site answers over TLS, on an XRPC path, so the probe does
	// not spend the public per-IP burst.
	g := gatewaytest.Start(t, &builder, gatewaytest.Options{Caddyfile: string(raw), Env: env, AdminPort: adminPort,
		AnswerURLs: []string{base + "/xrpc/_ready"}})
	return &exampleGateway{
		Gateway:     g,
		base:        base,
		metricsBase: fmt.Sprintf("http://127.0.0.1:%d", metricsPort),
		adminPort:   adminPort,
		httpsPort:   httpsPort,
		httpPort:    httpPort,
		client: &http.Client{
			Timeout: 10 * time.Second,
			// Caddy's internal CA signs localhost; the test does not install
			// its root (skip_install_trust), so it skips verification.
			Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		},
	}
}

func (eg *exampleGateway) get(t *testing.T, path string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, eg.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := eg.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

var securityHeaders = map[string]string{
	"Content-Security-Policy":   "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self' wss:",
	"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
	"X-Frame-Options":           "DENY",
	"X-Content-Type-Options":    "nosniff",
	"Referrer-Policy":           "strict-origin-when-cross-origin",
	"Permissions-Policy":        "camera=(), microphone=(), geolocation=()",
}

// assertSecurityHeaders checks the default headers; Strict-Transport-Security
// must be there over TLS and absent over plain HTTP.
func assertSecurityHeaders(t *testing.T, what string, resp *http.Response) {
	t.Helper()
	for k, v := range securityHeaders {
		if k == "Strict-Transport-Security" && resp.TLS == nil {
			v = ""
		}
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	if s := resp.Header.Get("Server"); s != "" {
		t.Errorf("%s: Server header %q leaked", what, s)
	}
}

func assertXRPCError(t *testing.T, what string, resp *http.Response, body []byte, status int, name string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d (body %s)", what, resp.StatusCode, status, body)
	}
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error != name || e.Message == "" {
		t.Fatalf("%s: body %q is not an XRPC %s error (%v)", what, body, name, err)
	}
}

func TestExampleServesThePipeline(t *testing.T) {
	eg := startExample(t)

	t.Run("xrpc answers with security headers, no-store and a minted request ID", func(t *testing.T) {
		resp, body := eg.get(t, "/xrpc/blue.catbird.mls.getConvos", nil)
		assertXRPCError(t, "getConvos without a token", resp, body, http.StatusUnauthorized, "AuthMissing")
		assertSecurityHeaders(t, "xrpc 401", resp)
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", cc)
		}
		if id := resp.Header.Get("X-Request-ID"); !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-`).MatchString(id) {
			t.Errorf("minted X-Request-ID %q is not a UUIDv7", id)
		}
	})

	t.Run("a well-formed inbound request ID is echoed, a malformed one replaced", func(t *testing.T) {
		resp, _ := eg.get(t, "/xrpc/blue.catbird.mls.getConvos", http.Header{"X-Request-Id": {"client.trace_0042-a"}})
		if got := resp.Header.Get("X-Request-ID"); got != "client.trace_0042-a" {
			t.Errorf("echoed ID = %q", got)
		}
		resp, _ = eg.get(t, "/xrpc/blue.catbird.mls.getConvos", http.Header{"X-Request-Id": {"short"}})
		if got := resp.Header.Get("X-Request-ID"); got == "short" || len(got) < 8 {
			t.Errorf("malformed inbound ID kept: %q", got)
		}
	})

	t.Run("health is public", func(t *testing.T) {
		resp, body := eg.get(t, "/xrpc/_health", nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"version"`) {
			t.Fatalf("health: %d %s", resp.StatusCode, body)
		}
		assertSecurityHeaders(t, "health", resp)
	})

	t.Run("the public site has no metrics and no admin API", func(t *testing.T) {
		// Outside /xrpc/ the public site is the web client (cairn_web):
		// these paths are client routes and get its index.html.
		for _, path := range []string{"/metrics", "/config/", "/load"} {
			resp, body := eg.get(t, path, nil)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `id="cairn-config"`) {
				t.Errorf("%s: %d, want the web client's index.html:\n%s", path, resp.StatusCode, body)
			}
			assertSecurityHeaders(t, path, resp)
			if strings.Contains(string(body), "go_goroutines") || strings.Contains(string(body), `"apps"`) {
				t.Fatalf("%s served metrics or the admin config on the public site", path)
			}
		}
	})

	t.Run("the internal site serves metrics", func(t *testing.T) {
		resp, err := http.Get(eg.metricsBase + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, want := range []string{"cairn_xrpc_requests_total", "go_goroutines", "cairn_ratelimit_decisions_total"} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestExampleRefusesOverLimitWithHeadersIgnoringForgedForwardedFor(t *testing.T) {
	eg := startExample(t)
	// The public preset (on /xrpc/_health) allows a burst of 6 per IP. Each request claims a
	// different client in X-Forwarded-For; the example trusts no proxy, so
	// every one counts against 127.0.0.1.
	var resp *http.Response
	var body []byte
	for i := range 7 {
		resp, body = eg.get(t, "/xrpc/_health", http.Header{"X-Forwarded-For": {fmt.Sprintf("198.51.100.%d", i+1)}})
		if i < 6 && resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d before the burst was spent", i+1, resp.StatusCode)
		}
	}
	assertXRPCError(t, "7th request", resp, body, http.StatusTooManyRequests, "RateLimitExceeded")
	assertSecurityHeaders(t, "429", resp)
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		// 60/min: one request per second; the next is due within a second.
		t.Errorf("Retry-After = %q, want 1", ra)
	}
	if resp.Header.Get("RateLimit-Limit") != "6" || resp.Header.Get("RateLimit-Remaining") != "0" || resp.Header.Get("RateLimit-Reset") == "" {
		t.Errorf("RateLimit headers: limit %q remaining %q reset %q", resp.Header.Get("RateLimit-Limit"), resp.Header.Get("RateLimit-Remaining"), resp.Header.Get("RateLimit-Reset"))
	}
	if resp.Header.Get("X-Request-ID") == "" {
		t.Error("429 lacks X-Request-ID")
	}
}

// lexiconDir returns the directory of the blue.catbird.mls lexicons: the
// repository's vendored copy when there is one, else the shared reference
// beside the repository.
func lexiconDir(t *testing.T) string {
	t.Helper()
	for _, dir := range []string{
		filepath.Join(gatewaytest.RepoRoot(), "lexicons", "blue", "catbird", "mls"),
		filepath.Join(gatewaytest.RepoRoot(), "..", "shared", "lexicons", "blue", "catbird", "mls"),
	} {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			return dir
		}
	}
	t.Fatal("no blue.catbird.mls lexicons found (lexicons/ in the repository, or ../shared/lexicons)")
	return ""
}

// lexiconParameters reads every lexicon document and returns, per method
// NSID, the names of its query parameters (parameters.properties of a
// query, procedure or subscription), so that a method added to the
// lexicons is covered without editing the test.
func lexiconParameters(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(lexiconDir(t), "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no lexicon files (%v)", err)
	}
	params := map[string][]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			ID   string `json:"id"`
			Defs map[string]struct {
				Type       string `json:"type"`
				Parameters struct {
					Properties map[string]json.RawMessage `json:"properties"`
				} `json:"parameters"`
			} `json:"defs"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		main := doc.Defs["main"]
		switch main.Type {
		case "query", "procedure", "subscription":
		default:
			continue
		}
		for name := range main.Parameters.Properties {
			params[doc.ID] = append(params[doc.ID], name)
		}
		slices.Sort(params[doc.ID])
	}
	return params
}

func TestExampleLogsNoIdentity(t *testing.T) {
	eg := startExample(t)
	const (
		did    = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
		convo  = "convo-4f1c2a9be7d04c1e"
		cursor = "cursor-77aa31"
		token  = "eyJhbGciOiJFUzI1NksiLCJ0eXAiOiJKV1QifQ.eyJpc3MiOiJkaWQ6cGxjOmV3dmk3bnh6eW91bjZ6aHhyaHM2NG9peiJ9.c2lnbmF0dXJl"
		device = "device-9f8e7d6c5b4a"
		// An address a proxy would add; the example trusts no proxy, so it
		// is only a header, but a header that must not be logged raw.
		forwarded = "198.51.100.77"
	)
	secrets := []string{did, "ewvi7nxzyoun6zhxrhs64oiz", convo, cursor, token, "alice.example", device, forwarded, "Catbird-Test/9.9"}
	paths := []string{
		"/xrpc/blue.catbird.mls.getMessages?convoId=" + convo + "&cursor=" + cursor + "&limit=50",
		"/xrpc/blue.catbird.mls.getKeyPackages?dids=" + did + "&dids=did:web:alice.example",
		"/xrpc/blue.catbird.mls.getEpoch?convoId=%zz" + convo, // unparseable query
		"/xrpc/blue.catbird.mls.getConvos?deviceId=" + device + "&ticket=" + token,
		"/page?did=" + did,
	}
	// Every query parameter of every lexicon method, each with a value of
	// its own that must never be logged, even where the parameter's name
	// is on the allowlist (an identity under `limit` is hashed too).
	params := lexiconParameters(t)
	nsids := slices.Sorted(maps.Keys(params))
	n := 0
	for _, nsid := range nsids {
		if len(params[nsid]) == 0 {
			continue
		}
		q := url.Values{}
		for _, name := range params[nsid] {
			n++
			v := fmt.Sprintf("did:plc:sentinel%04d%s", n, strings.ToLower(name))
			q.Add(name, v)
			secrets = append(secrets, v)
		}
		paths = append(paths, "/xrpc/"+nsid+"?"+q.Encode())
	}
	if n < 30 {
		t.Fatalf("only %d lexicon query parameters found; the lexicons did not load as expected", n)
	}
	for _, p := range paths {
		eg.get(t, p, http.Header{"Authorization": {"Bearer " + token}, "Cookie": {"session=" + token},
			"Last-Event-Id": {cursor}, "X-Device-Id": {device}, "X-Forwarded-For": {forwarded},
			"X-Real-Ip": {forwarded}, "Forwarded": {"for=" + forwarded}, "User-Agent": {"Catbird-Test/9.9"}})
	}
	// Wait until the access log line of every request above has been
	// written (the readiness probe writes lines too, so count per path).
	logged := func(logs string) bool {
		for _, p := range paths {
			path, _, _ := strings.Cut(p, "?")
			if !regexp.MustCompile(`"msg":"handled request".*"uri":"` + regexp.QuoteMeta(path) + `[?"]`).MatchString(logs) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	for !logged(eg.Logs()) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	logs := eg.Logs()
	if !logged(logs) {
		t.Fatalf("not every request reached the access log; the test would prove nothing:\n%s", logs)
	}
	for _, secret := range secrets {
		if strings.Contains(logs, secret) || strings.Contains(logs, url.QueryEscape(secret)) {
			t.Errorf("logs contain %q", secret)
		}
	}
	// No line about a client request shows the client's address; only the
	// admin API's own lines show its caller (the operator, on loopback).
	for line := range strings.Lines(logs) {
		if strings.Contains(line, `"logger":"admin.api"`) {
			continue
		}
		if strings.Contains(line, `"127.0.0.1"`) {
			t.Errorf("a log line shows the client address raw: %s", line)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`convoId=h%3A[0-9a-f]{16}`),
		regexp.MustCompile(`deviceId=h%3A[0-9a-f]{16}`),
		regexp.MustCompile(`"remote_ip":"h:[0-9a-f]{16}"`),
		regexp.MustCompile(`"X-Forwarded-For":\["h:[0-9a-f]{16}"\]`),
		// The allowlist keeps what is harmless.
		regexp.MustCompile(`[?&]limit=50[&"]`),
	} {
		if !want.MatchString(logs) {
			t.Errorf("access log lacks %s", want)
		}
	}
	if !strings.Contains(logs, `"request_id":"`) {
		t.Errorf("access log lacks request_id")
	}
	// Every access log line carries the request ID.
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, `"msg":"handled request"`) && !strings.Contains(line, `"request_id":"`) {
			t.Errorf("access log line without request_id: %s", line)
		}
	}
}

// validate runs `cairn-caddy validate` on a Caddyfile, with env added to
// the environment, and returns its output and whether it was accepted.
func validate(t *testing.T, caddyfile string, env ...string) (string, bool) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(builder.Binary(t), "validate", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err == nil
}

func TestProductionRefusesEachDevelopmentOption(t *testing.T) {
	site := "\nhttp://127.0.0.1:1 {\n\tcairn_request_id\n\t%s\n}\n"
	for _, tc := range []struct {
		name, global, handler, wantInError string
	}{
		{"insecure did:web", "did_web_allow_http", "", "did_web_allow_http"},
		{"PLC directory override", "plc_url http://127.0.0.1:2582", "", "plc_url"},
		{"resolver allow-list", "resolver_allow_hosts 127.0.0.1", "", "resolver_allow_hosts"},
		{"identity-revealing debug logs", "log_identities", "", "log_identities"},
		{"direct XRPC proxy", "", "cairn_xrpc_proxy http://127.0.0.1:2583", "cairn_xrpc_proxy"},
		{"push endpoints on private hosts", "push {\n\t\t\tallow_hosts 127.0.0.1\n\t\t\tunifiedpush {\n\t\t\t\tcontact mailto:ops@example.com\n\t\t\t}\n\t\t}", "", "push allow_hosts"},
		{"APNs host override", "push {\n\t\t\tapns {\n\t\t\t\tkey_file /nonexistent.p8\n\t\t\t\tkey_id K\n\t\t\t\tteam_id T\n\t\t\t\ttopic app\n\t\t\t\thost https://127.0.0.1:1\n\t\t\t}\n\t\t}", "", "push apns host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := fmt.Sprintf(site, tc.handler)
			prod := fmt.Sprintf("{\n\tcairn {\n\t\tmode production\n\t\t%s\n\t}\n}\n", tc.global) + body
			out, ok := validate(t, prod)
			if ok {
				t.Fatalf("production accepted %s:\n%s", tc.wantInError, out)
			}
			if !strings.Contains(out, tc.wantInError) || !strings.Contains(out, "development-only") {
				t.Fatalf("refusal does not name %s as development-only:\n%s", tc.wantInError, out)
			}
			dev := fmt.Sprintf("{\n\tcairn {\n\t\tmode development\n\t\t%s\n\t}\n}\n", tc.global) + body
			if out, ok := validate(t, dev); !ok {
				t.Fatalf("development mode refused %s:\n%s", tc.wantInError, out)
			}
		})
	}
	t.Run("production is the default mode", func(t *testing.T) {
		out, ok := validate(t, "{\n\tcairn {\n\t\tlog_identities\n\t}\n}\n"+fmt.Sprintf(site, ""))
		if ok || !strings.Contains(out, "log_identities") {
			t.Fatalf("default mode accepted log_identities:\n%s", out)
		}
	})
}

func TestBadConfigIsRefusedWithActionableMessages(t *testing.T) {
	for _, tc := range []struct{ name, caddyfile, want string }{
		{"unknown mode", "{\n\tcairn {\n\t\tmode staging\n\t}\n}\nhttp://127.0.0.1:1 {\n\tcairn_request_id\n}\n", `mode \"staging\": must be`},
		{"short hash key", "{\n\tcairn {\n\t\tlog_hash_key tooshort\n\t}\n}\nhttp://127.0.0.1:1 {\n\tcairn_request_id\n}\n", "at least 32 bytes"},
		{"bad redis URL", "{\n\tcairn {\n\t\tredis ftp://x\n\t}\n}\nhttp://127.0.0.1:1 {\n\tcairn_request_id\n}\n", "cairn redis"},
		{"bad rate", "http://127.0.0.1:1 {\n\tcairn_rate_limit {\n\t\tzone z {\n\t\t\tkey ip\n\t\t\trate lots\n\t\t}\n\t}\n}\n", "zone z: rate"},
		{"bad zone key", "http://127.0.0.1:1 {\n\tcairn_rate_limit {\n\t\tzone z {\n\t\t\tkey email\n\t\t\trate 1/1s\n\t\t}\n\t}\n}\n", `key \"email\": want ip or did`},
		{"unknown preset", "http://127.0.0.1:1 {\n\tcairn_rate_limit {\n\t\tpreset everything\n\t}\n}\n", `unknown preset \"everything\"`},
		{"redis backend without redis", "http://127.0.0.1:1 {\n\tcairn_rate_limit {\n\t\tpreset public\n\t\tbackend redis\n\t}\n}\n", "no Redis is configured"},
		{"duplicate zone", "http://127.0.0.1:1 {\n\tcairn_rate_limit {\n\t\tpreset public\n\t\tzone public_ip {\n\t\t\tkey ip\n\t\t\trate 1/1s\n\t\t}\n\t}\n}\n", "defined twice"},
		{"audit ip policy", "{\n\tcairn {\n\t\taudit {\n\t\t\tip full\n\t\t}\n\t}\n}\nhttp://127.0.0.1:1 {\n\tcairn_request_id\n}\n", `audit ip \"full\": want`},
		{"audit retention", "{\n\tcairn {\n\t\taudit {\n\t\t\tretention forever\n\t\t}\n\t}\n}\nhttp://127.0.0.1:1 {\n\tcairn_request_id\n}\n", "audit retention"},
		{"audit unknown option", "{\n\tcairn {\n\t\taudit {\n\t\t\tsign yes\n\t\t}\n\t}\n}\nhttp://127.0.0.1:1 {\n\tcairn_request_id\n}\n", "unrecognized audit option"},
		{"short audit key", "{\n\tcairn {\n\t\taudit {\n\t\t\tkey tooshort\n\t\t}\n\t}\n}\nhttp://127.0.0.1:1 {\n\tcairn_request_id\n}\n", "at least 32 bytes"},
		{"operator api options", "http://127.0.0.1:1 {\n\tcairn_operator_api {\n\t\tfoo\n\t}\n}\n", "takes no options"},
		{"bad header", "http://127.0.0.1:1 {\n\tcairn_security_headers {\n\t\tX-Bad \"a\nb\"\n\t}\n}\n", "line breaks"},
		{"looser modifier", "http://127.0.0.1:1 {\n\tcairn_rate_limit {\n\t\tsignals {\n\t\t\tnew_account 7d\n\t\t}\n\t\tzone z {\n\t\t\tkey did\n\t\t\trate 10/1m\n\t\t\twhen new_account rate 20/1m\n\t\t}\n\t}\n}\n", "a modifier may only tighten"},
		{"modifier without its signal", "http://127.0.0.1:1 {\n\tcairn_rate_limit {\n\t\tzone z {\n\t\t\tkey did\n\t\t\trate 10/1m\n\t\t\twhen high_churn rate 1/1m\n\t\t}\n\t}\n}\n", "needs the high_churn signal defined"},
		{"signals in cairn_edge", "http://127.0.0.1:1 {\n\tcairn_edge {\n\t\trate_limit {\n\t\t\tpreset edge\n\t\t\tsignals {\n\t\t\t\tnew_account 7d\n\t\t\t}\n\t\t}\n\t}\n}\n", "cairn_edge runs before cairn_auth"},
		{"proof of work outside the namespace", "http://127.0.0.1:1 {\n\tcairn_delivery {\n\t\tproof_of_work {\n\t\t\tdifficulty 8\n\t\t\tmethods com.example.x\n\t\t}\n\t}\n}\n", "want a blue.catbird.mls.* method"},
		{"proof of work too hard with signals", "http://127.0.0.1:1 {\n\tcairn_delivery {\n\t\tproof_of_work {\n\t\t\tdifficulty 30\n\t\t\tnew_account +4\n\t\t}\n\t}\n}\n", "extra bits 4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, ok := validate(t, tc.caddyfile)
			if ok {
				t.Fatalf("accepted:\n%s", tc.caddyfile)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("error does not say %q:\n%s", tc.want, out)
			}
		})
	}
}

func TestExampleLogsTruncatedClientIPsWhenAsked(t *testing.T) {
	eg := startExample(t, "CAIRN_LOG_CLIENT_IPS=truncate")
	resp, _ := eg.get(t, "/xrpc/blue.catbird.mls.getConvos", http.Header{"X-Forwarded-For": {"198.51.100.77, 2001:db8:7:8::1"}})
	id := resp.Header.Get("X-Request-ID")
	var line string
	deadline := time.Now().Add(10 * time.Second)
	for line == "" && time.Now().Before(deadline) {
		for l := range strings.Lines(eg.Logs()) {
			if strings.Contains(l, `"msg":"handled request"`) && strings.Contains(l, id) {
				line = l
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if line == "" {
		t.Fatalf("no access log line for request %s:\n%s", id, eg.Logs())
	}
	for _, want := range []string{`"remote_ip":"127.0.0.0"`, `"client_ip":"127.0.0.0"`, `"X-Forwarded-For":["198.51.100.0, 2001:db8:7::"]`} {
		if !strings.Contains(line, want) {
			t.Errorf("access log line lacks %s: %s", want, line)
		}
	}
	for _, raw := range []string{"198.51.100.77", "2001:db8:7:8::1", `"127.0.0.1"`} {
		if strings.Contains(line, raw) {
			t.Errorf("access log line shows %s: %s", raw, line)
		}
	}
}
