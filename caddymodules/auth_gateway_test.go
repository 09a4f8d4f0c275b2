package caddymodules_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const authCaddyfile = `{
	admin 127.0.0.1:{ADMIN}
	cairn {
		mode development
		plc_url %s
		redis %s
	}
}
http://127.0.0.1:{PORT} {
	log {
		output stdout
		format json
	}
	cairn_request_id
	route /xrpc/* {
		cairn_auth {
			service_did did:web:gateway.test
			replay redis
			leeway 1s
		}
		cairn_rate_limit {
			zone per_did {
				key   did
				rate  2/1h
			}
		}
		respond "ok"
	}
}
http://127.0.0.1:{METRICS} {
	cairn_metrics
}
`

const (
	aliceDID = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
	bobDID   = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb"
	getConvo = "blue.catbird.mls.getConvos"
)

// testLeeway is the cairn_auth leeway of the gateway tests that mint
// tokens. A gateway refuses tokens issued before its replay memory began
// plus the leeway, so a short one keeps freshIat's wait short.
const testLeeway = time.Second

// freshIat waits until a token issued now is at least leeway past the start
// of every given gateway's replay memory (the memory store's begins before
// the gateway serves; the Redis store's records were made before the
// gateways started), and returns the iat to mint with.
func freshIat(t *testing.T, leeway time.Duration, gws ...*plainGateway) int64 {
	t.Helper()
	var latest time.Time
	for _, g := range gws {
		if g.ready.After(latest) {
			latest = g.ready
		}
	}
	return gatewaytest.FreshIat(latest, leeway)
}

// beginReplayMemory records in the Redis at url that the gateways' replay
// memories (of tokens and of WebSocket tickets) begin now, as their first
// check would, so that tokens minted once freshIat allows are accepted from
// the first one. It returns when they began.
func beginReplayMemory(t *testing.T, url string) time.Time {
	t.Helper()
	opts, err := goredis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	defer c.Close()
	var began time.Time
	for _, prefix := range []string{"cairn:jti:", "cairn:ticket:"} {
		since, err := (&atpauth.RedisReplayStore{Client: c, Prefix: prefix}).Begin(context.Background())
		if err != nil {
			t.Fatalf("begin the replay memory: %v", err)
		}
		began = since
	}
	return began
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func errorName(t *testing.T, body string) string {
	t.Helper()
	var e struct{ Error string }
	_ = json.Unmarshal([]byte(body), &e)
	return e.Error
}

// TestAuthWithReferenceTokensAcrossTwoGateways runs two gateways sharing one
// Redis, with tokens minted by @atproto/crypto and @atproto/xrpc-server.
func TestAuthWithReferenceTokensAcrossTwoGateways(t *testing.T) {
	redis := testenv.StartRedisServer(t)
	beginReplayMemory(t, redis.URL())
	plc := atprototest.NewPLC(t)
	text := fmt.Sprintf(authCaddyfile, plc.URL, redis.URL())
	env := []string{"CAIRN_LOG_HASH_KEY=" + strings.Repeat("h", 40)}
	a := startPlain(t, text, gatewaytest.Options{Env: env})
	b := startPlain(t, text, gatewaytest.Options{Env: env})

	now := freshIat(t, testLeeway, a, b)
	tok := func(key, iss string) atprototest.Token {
		return atprototest.Token{Key: key, Iss: iss, Aud: "did:web:gateway.test", Lxm: getConvo, Iat: now, Exp: now + 60}
	}
	minted := atprototest.Mint(t,
		[]atprototest.Key{{Name: "alice", Type: "k256"}, {Name: "bob", Type: "p256"}},
		[]atprototest.Token{tok("alice", aliceDID), tok("alice", aliceDID), tok("alice", aliceDID), tok("bob", bobDID), tok("alice", aliceDID)},
	)
	plc.Publish(aliceDID, minted.Keys["alice"])
	plc.Publish(bobDID, minted.Keys["bob"])
	tokens := minted.Tokens
	url := func(g *plainGateway) string { return g.url("/xrpc/" + getConvo) }

	resp, body := do(t, http.MethodGet, url(a), nil)
	if resp.StatusCode != http.StatusUnauthorized || errorName(t, body) != "AuthMissing" || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d %s", resp.StatusCode, body)
	}

	if resp, body := do(t, http.MethodGet, url(a), bearer(tokens[0])); resp.StatusCode != http.StatusOK {
		t.Fatalf("valid k256 token refused: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, http.MethodGet, url(b), bearer(tokens[0]))
	if resp.StatusCode != http.StatusUnauthorized || errorName(t, body) != "JwtReplayed" {
		t.Fatalf("token replayed on the other gateway: %d %s", resp.StatusCode, body)
	}

	// The per-DID zone (2/1h) is keyed by the verified issuer: alice's
	// third fresh token is limited, bob (same client IP) is not.
	if resp, body := do(t, http.MethodGet, url(b), bearer(tokens[1])); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's second token: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, http.MethodGet, url(a), bearer(tokens[2])); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("alice's third request within 2/1h: %d %s", resp.StatusCode, body)
	}
	if resp, body := do(t, http.MethodGet, url(a), bearer(tokens[3])); resp.StatusCode != http.StatusOK {
		t.Fatalf("valid p256 token of another DID from the same IP: %d %s", resp.StatusCode, body)
	}

	// The access log names the user only by keyed hash.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(a.Logs(), `"user_id":"h:`) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, g := range []*plainGateway{a, b} {
		logs := g.Logs()
		if !regexp.MustCompile(`"user_id":"h:[0-9a-f]{16}"`).MatchString(logs) {
			t.Errorf("access log lacks a hashed user_id:\n%s", logs)
		}
		for _, secret := range append([]string{aliceDID, bobDID, "aliceaaaa"}, tokens...) {
			if strings.Contains(logs, secret) {
				t.Errorf("logs contain %q", secret)
			}
		}
	}
	m := scrape(t, a)
	if metricValue(m, "cairn_auth_requests_total", `reason="ok"`) != 3 || metricValue(m, "cairn_auth_requests_total", `reason="missing"`) != 1 {
		t.Errorf("auth outcomes not counted on gateway A:\n%s", m)
	}
	if metricValue(scrape(t, b), "cairn_auth_requests_total", `reason="replayed"`) != 1 {
		t.Errorf("replay not counted on gateway B")
	}

	// With Redis gone, a fresh token cannot be checked for replay: auth
	// fails closed.
	redis.Stop(t)
	resp, body = do(t, http.MethodGet, url(a), bearer(tokens[4]))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("replay store down: %d %s (Retry-After %q), want 503 with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
}

func TestAuthProductionRefusals(t *testing.T) {
	site := "http://127.0.0.1:1 {\n\tcairn_auth {\n\t\t%s\n\t}\n}\n"
	for _, tc := range []struct{ opts, want string }{
		{"service_did did:web:x.example\n\t\tlxm_optional", "lxm_optional"},
		{"service_did did:web:x.example\n\t\tplc_url http://127.0.0.1:2582", "plc_url"},
	} {
		out, ok := validate(t, fmt.Sprintf(site, tc.opts))
		if ok || !strings.Contains(out, tc.want) || !strings.Contains(out, "development-only") {
			t.Errorf("production accepted %s:\n%s", tc.want, out)
		}
	}
	if out, ok := validate(t, fmt.Sprintf(site, "leeway 5s")); ok || !strings.Contains(out, "service_did is required") {
		t.Errorf("cairn_auth without service_did:\n%s", out)
	}
	if out, ok := validate(t, fmt.Sprintf(site, "service_did did:web:x.example\n\t\treplay redis")); ok || !strings.Contains(out, "no Redis is configured") {
		t.Errorf("replay redis without Redis:\n%s", out)
	}
	if out, ok := validate(t, fmt.Sprintf(site, "service_did did:web:x.example\n\t\tmax_token_lifetime 2h")); ok || !strings.Contains(out, "exceeds the maximum") {
		t.Errorf("a 2h token lifetime was accepted:\n%s", out)
	}
}
