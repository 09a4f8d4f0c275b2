package caddymodules_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// plainGateway runs a Caddyfile on plain HTTP loopback ports. The Caddyfile
// text may use {ADMIN}, {PORT} and {METRICS}, which are replaced by free
// ports.
type plainGateway struct {
	*gatewaytest.Gateway
	admin, port, metrics int
	text                 string
	// ready is when the gateway was seen serving, after its replay store's
	// memory began (see freshIat).
	ready time.Time
}

func startPlain(t *testing.T, caddyfile string, opts gatewaytest.Options) *plainGateway {
	t.Helper()
	pg := &plainGateway{admin: gatewaytest.FreePort(t), port: gatewaytest.FreePort(t), metrics: gatewaytest.FreePort(t)}
	pg.text = pg.expand(caddyfile)
	opts.Caddyfile = pg.text
	opts.AdminPort = pg.admin
	pg.Gateway = gatewaytest.Start(t, &builder, opts)
	pg.ready = time.Now()
	return pg
}

func (pg *plainGateway) expand(s string) string {
	return strings.NewReplacer("{ADMIN}", strconv.Itoa(pg.admin), "{PORT}", strconv.Itoa(pg.port), "{METRICS}", strconv.Itoa(pg.metrics)).Replace(s)
}

func (pg *plainGateway) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", pg.port, path)
}

func do(t *testing.T, method, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// postXRPC calls an XRPC procedure on g with a bearer token and a JSON body.
func postXRPC(t *testing.T, g *plainGateway, nsid, token, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.url("/xrpc/"+nsid), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", nsid, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

// mustPostXRPC is postXRPC for a call that must succeed.
func mustPostXRPC(t *testing.T, g *plainGateway, nsid, token, body string) {
	t.Helper()
	if resp, out := postXRPC(t, g, nsid, token, body); resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", nsid, resp.StatusCode, out)
	}
}

func status(t *testing.T, url string, header http.Header) int {
	t.Helper()
	resp, _ := do(t, http.MethodGet, url, header)
	return resp.StatusCode
}

func scrape(t *testing.T, pg *plainGateway) string {
	t.Helper()
	_, body := do(t, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/metrics", pg.metrics), nil)
	return body
}

// metricValue sums the samples of name whose label set contains every
// fragment in labels.
func metricValue(scraped, name string, labels ...string) float64 {
	var sum float64
	for _, line := range strings.Split(scraped, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

const sharedLimitCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		redis %s
	}
}
http://127.0.0.1:{PORT} {
	cairn_rate_limit {
		on_backend_error %s
		zone %s {
			key   ip
			rate  %s
		}
	}
	respond "ok"
}
http://127.0.0.1:{METRICS} {
	cairn_metrics
}
`

func TestTwoGatewaysShareOneLimitThroughRedis(t *testing.T) {
	client, _ := testenv.Redis(t)
	zone := testenv.RandomName("shared_")
	t.Cleanup(func() {
		ctx := context.Background()
		if keys := client.Keys(ctx, "cairn:rl:"+zone+"|*").Val(); len(keys) > 0 {
			client.Del(ctx, keys...)
		}
	})
	text := fmt.Sprintf(sharedLimitCaddyfile, testenv.RedisURL(), "deny", zone, "5/1h")
	env := []string{"CAIRN_LOG_HASH_KEY=" + strings.Repeat("k", 40)}
	a := startPlain(t, text, gatewaytest.Options{Env: env})
	b := startPlain(t, text, gatewaytest.Options{Env: env})

	allowed := 0
	for i := range 12 {
		g := a
		if i%2 == 1 {
			g = b
		}
		if status(t, g.url("/"), nil) == http.StatusOK {
			allowed++
		}
	}
	if allowed != 5 {
		t.Fatalf("two gateways admitted %d requests together, want exactly 5 (one shared 5/1h limit)", allowed)
	}
	if m := scrape(t, a); metricValue(m, "cairn_ratelimit_decisions_total", `backend="shared"`) == 0 {
		t.Errorf("gateway A recorded no shared decisions:\n%s", m)
	}
	// What Redis holds names no client: the key carries the keyed hash of
	// the client's address, never the address.
	keys := client.Keys(context.Background(), "cairn:rl:"+zone+"|*").Val()
	if len(keys) == 0 {
		t.Fatal("no rate-limit key in Redis")
	}
	for _, k := range keys {
		if strings.Contains(k, "127.0.0.1") || !regexp.MustCompile(`\|h:[0-9a-f]{16}$`).MatchString(k) {
			t.Errorf("rate-limit key %q is not the zone and a keyed hash", k)
		}
	}
}

func TestRedisOutageFallsBackAndRecovers(t *testing.T) {
	redis := testenv.StartRedisServer(t)
	text := fmt.Sprintf(sharedLimitCaddyfile, redis.URL(), "local", "outage", "3/1h")
	g := startPlain(t, text, gatewaytest.Options{})

	if got := status(t, g.url("/"), nil); got != http.StatusOK {
		t.Fatalf("first request: %d", got)
	}
	redis.Stop(t)

	// With Redis down, policy local limits from memory: this node has not
	// counted anything yet, so it admits a fresh burst of 3, then refuses.
	var got []int
	for range 6 {
		got = append(got, status(t, g.url("/"), nil))
	}
	want := []int{200, 200, 200, 429, 429, 429}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("during the outage: statuses %v, want %v\n%s", got, want, g.Logs())
	}
	if n := strings.Count(g.Logs(), "redis unreachable"); n != 1 {
		t.Fatalf("outage logged %d times, want once per transition:\n%s", n, g.Logs())
	}
	m := scrape(t, g)
	if metricValue(m, "cairn_ratelimit_decisions_total", `backend="local_fallback"`) != 6 {
		t.Errorf("fallback decisions not counted:\n%s", m)
	}
	if metricValue(m, "cairn_backend_up", `backend="redis"`) != 0 {
		t.Errorf("cairn_backend_up{redis} not 0 during the outage")
	}

	redis.Restart(t, false)
	// The limiter probes Redis at most once a second; the fresh Redis has
	// no state for the key, so once it is used again the key has 3 requests.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(g.Logs(), "redis answers again") {
		if time.Now().After(deadline) {
			t.Fatalf("never switched back to Redis:\n%s", g.Logs())
		}
		status(t, g.url("/"), nil)
		time.Sleep(200 * time.Millisecond)
	}
	before := metricValue(scrape(t, g), "cairn_ratelimit_decisions_total", `backend="shared"`)
	status(t, g.url("/"), nil)
	after := metricValue(scrape(t, g), "cairn_ratelimit_decisions_total", `backend="shared"`)
	if after != before+1 {
		t.Errorf("after recovery the decision was not made by Redis (shared %v -> %v)", before, after)
	}
	if n := strings.Count(g.Logs(), "redis answers again"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
	if metricValue(scrape(t, g), "cairn_backend_up", `backend="redis"`) != 1 {
		t.Errorf("cairn_backend_up{redis} not back to 1")
	}
}

const reloadCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
}
http://127.0.0.1:{PORT} {
	log {
		output stdout
		format filter {
			wrap json
			fields {
				request>uri cairn_redact uri
			}
		}
	}
	cairn_request_id
	cairn_security_headers {
		X-Config-Generation %s
	}
	cairn_rate_limit {
		zone reload {
			key  ip
			rate 3/1h
		}
	}
	respond "ok"
}
http://127.0.0.1:{METRICS} {
	cairn_metrics
}
`

func TestReloadAndRestartKeepStateAndKey(t *testing.T) {
	home := t.TempDir()
	g := startPlain(t, fmt.Sprintf(reloadCaddyfile, "one"), gatewaytest.Options{Home: home, Env: []string{"CAIRN_LOG_HASH_KEY="}})
	for range 3 {
		if s := status(t, g.url("/?convoId=reload-convo-1"), nil); s != http.StatusOK {
			t.Fatalf("status %d within the burst", s)
		}
	}

	g.Reload(t, g.admin, g.expand(fmt.Sprintf(reloadCaddyfile, "two")))
	resp, _ := do(t, http.MethodGet, g.url("/?convoId=reload-convo-1"), nil)
	if resp.Header.Get("X-Config-Generation") != "two" {
		t.Fatalf("reload did not apply: X-Config-Generation %q", resp.Header.Get("X-Config-Generation"))
	}
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after reload the spent limit was forgotten: status %d", resp.StatusCode)
	}
	if v := metricValue(scrape(t, g), "cairn_ratelimit_decisions_total", `zone="reload"`); v != 4 {
		t.Errorf("decision counter after reload = %v, want 4 (it must not reset)", v)
	}

	keyFile := filepath.Join(home, "data", "caddy", "cairn", "log-hash.key")
	info, err := os.Stat(keyFile)
	if err != nil {
		t.Fatalf("generated log-hash key: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("log-hash key mode %v, want 0600", info.Mode().Perm())
	}
	hashes := regexp.MustCompile(`convoId=(h%3A[0-9a-f]{16})`).FindAllStringSubmatch(g.Logs(), -1)
	if len(hashes) < 4 {
		t.Fatalf("expected hashed convoIds in the access log:\n%s", g.Logs())
	}
	for _, h := range hashes {
		if h[1] != hashes[0][1] {
			t.Fatalf("the same convoId hashed differently across a reload: %s vs %s", h[1], hashes[0][1])
		}
	}

	g.Stop()
	g2 := startPlain(t, fmt.Sprintf(reloadCaddyfile, "three"), gatewaytest.Options{Home: home, Env: []string{"CAIRN_LOG_HASH_KEY="}})
	status(t, g2.url("/?convoId=reload-convo-1"), nil)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(g2.Logs(), "convoId=h%3A") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(g2.Logs(), "convoId="+hashes[0][1]) {
		t.Fatalf("after a restart the key changed: want %s in\n%s", hashes[0][1], g2.Logs())
	}
}

const trustedProxyCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	servers {
		trusted_proxies static 127.0.0.1/32
	}
}
http://127.0.0.1:{PORT} {
	cairn_rate_limit {
		zone per_client {
			key  ip
			rate 2/1h
		}
	}
	respond "ok"
}
`

func TestTrustedProxyClientsAndIPv6Grouping(t *testing.T) {
	g := startPlain(t, trustedProxyCaddyfile, gatewaytest.Options{})
	from := func(ip string) int {
		return status(t, g.url("/"), http.Header{"X-Forwarded-For": {ip}})
	}
	if a, b, c := from("198.51.100.7"), from("198.51.100.7"), from("198.51.100.7"); a != 200 || b != 200 || c != 429 {
		t.Fatalf("client 198.51.100.7 through a trusted proxy: %d %d %d, want 200 200 429", a, b, c)
	}
	if s := from("198.51.100.8"); s != 200 {
		t.Fatalf("another client behind the same proxy shares the bucket: %d", s)
	}
	// Two addresses of one /64 share a bucket; another /64 does not.
	if a, b, c := from("2001:db8:0:1::1"), from("2001:db8:0:1::ffff"), from("2001:db8:0:1:abcd::9"); a != 200 || b != 200 || c != 429 {
		t.Fatalf("one /64: %d %d %d, want 200 200 429", a, b, c)
	}
	if s := from("2001:db8:0:2::1"); s != 200 {
		t.Fatalf("a different /64 was limited: %d", s)
	}
}

func TestSecurityHeadersSurviveAProxiedUpstream(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Server", "upstream/1.0")
		w.Header().Set("X-Frame-Options", "ALLOWALL")
		w.Header().Set("Content-Security-Policy", "default-src *")
		w.WriteHeader(http.StatusTeapot)
	}))
	defer upstream.Close()
	dead := gatewaytest.FreePort(t)
	text := `{
	admin 127.0.0.1:{ADMIN}
}
http://127.0.0.1:{PORT} {
	cairn_security_headers
	handle /up/* {
		reverse_proxy ` + strings.TrimPrefix(upstream.URL, "http://") + `
	}
	handle /dead/* {
		reverse_proxy 127.0.0.1:` + strconv.Itoa(dead) + `
	}
	handle_errors {
		cairn_xrpc_errors
	}
}
`
	g := startPlain(t, text, gatewaytest.Options{})
	resp, _ := do(t, http.MethodGet, g.url("/up/x"), nil)
	if resp.StatusCode != http.StatusTeapot {
		t.Fatalf("upstream status %d", resp.StatusCode)
	}
	assertSecurityHeaders(t, "proxied response", resp)

	resp, body := do(t, http.MethodGet, g.url("/dead/x"), nil)
	assertXRPCError(t, "dead upstream", resp, []byte(body), http.StatusBadGateway, "UpstreamFailure")
	assertSecurityHeaders(t, "502 from the error route", resp)
}

const metricsPrivacyCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	servers {
		trusted_proxies static 127.0.0.1/32
	}
}
http://127.0.0.1:{PORT} {
	cairn_request_id
	cairn_xrpc_metrics
	cairn_rate_limit {
		preset edge api
	}
	respond "ok"
}
http://127.0.0.1:{METRICS} {
	cairn_metrics {
		bearer_token {env.TEST_METRICS_TOKEN}
	}
}
`

// TestMetricLabelsNeverCarryIdentities drives traffic full of identities —
// DIDs and conversation IDs in paths and queries, client IPs — then scrapes
// and checks every label value of every sample.
func TestMetricLabelsNeverCarryIdentities(t *testing.T) {
	const token = "metrics-token-0123456789"
	g := startPlain(t, metricsPrivacyCaddyfile, gatewaytest.Options{Env: []string{"TEST_METRICS_TOKEN=" + token}})
	const did, convo = "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "c0ffee4242c0ffee"
	for _, p := range []string{
		"/xrpc/blue.catbird.mls.getMessages?convoId=" + convo,
		"/xrpc/blue.catbird.mls.getKeyPackages?dids=" + did,
		"/xrpc/" + did,
		"/xrpc/" + convo,
		"/xrpc/blue.catbird.mls.sendMessage",
	} {
		status(t, g.url(p), http.Header{"X-Forwarded-For": {"203.0.113.77"}})
	}

	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", g.metrics)
	if resp, _ := do(t, http.MethodGet, metricsURL, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics without the bearer token: %d", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodGet, metricsURL, http.Header{"Authorization": {"Bearer wrong"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics with a wrong token: %d", resp.StatusCode)
	}
	resp, body := do(t, http.MethodGet, metricsURL, http.Header{"Authorization": {"Bearer " + token}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics with the token: %d", resp.StatusCode)
	}
	if metricValue(body, "cairn_xrpc_requests_total", `nsid="other"`) != 2 {
		t.Errorf("unknown methods not folded into nsid=\"other\":\n%s", body)
	}
	if metricValue(body, "cairn_xrpc_requests_total", `nsid="blue.catbird.mls.sendMessage"`) != 1 {
		t.Errorf("known method not counted under its NSID")
	}
	labelValue := regexp.MustCompile(`="([^"]*)"`)
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range labelValue.FindAllStringSubmatch(line, -1) {
			v := m[1]
			for _, secret := range []string{"did:", "ewvi7", convo, "203.0.113.77", "127.0.0.1", "::1"} {
				if strings.Contains(v, secret) {
					t.Errorf("label value %q carries %q: %s", v, secret, line)
				}
			}
		}
	}
}
