package caddymodules_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const replayCaddyfile = `{
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
			replay %s
			leeway 1s
		}
		respond "ok"
	}
}
`

// replayCheck sends tok to g and wants the status and, for a refusal, the
// XRPC error name. A 503 right after a Redis restart (a pooled connection
// that broke) is retried: an outage is not what is tested here.
func replayCheck(t *testing.T, g *plainGateway, tok string, status int, name, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body := do(t, http.MethodGet, g.url("/xrpc/"+getConvo), bearer(tok))
		if resp.StatusCode == http.StatusServiceUnavailable && status != http.StatusServiceUnavailable && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if resp.StatusCode != status || (name != "" && errorName(t, body) != name) {
			t.Fatalf("%s: %d %s, want %d %s", what, resp.StatusCode, body, status, name)
		}
		if name == "JwtExpired" && !strings.Contains(body, "mint a new one") {
			t.Errorf("%s: the refusal %s does not tell the client to mint a new token", what, body)
		}
		return
	}
}

// TestReplayMemoryAcrossGatewayRestart: with the memory store, a gateway
// restart forgets every used token, so a token issued before the restart is
// refused (JwtExpired: mint a new one), used or not; one issued after works
// once.
func TestReplayMemoryAcrossGatewayRestart(t *testing.T) {
	plc := atprototest.NewPLC(t)
	text := fmt.Sprintf(replayCaddyfile, plc.URL, "", "memory")
	g := startPlain(t, text, gatewaytest.Options{})
	now := freshIat(t, testLeeway, g)
	tok := func() atprototest.Token {
		return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: getConvo, Iat: now, Exp: now + 60}
	}
	minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}}, []atprototest.Token{tok(), tok()})
	plc.Publish(aliceDID, minted.Keys["alice"])
	used, unused := minted.Tokens[0], minted.Tokens[1]

	replayCheck(t, g, used, http.StatusOK, "", "a fresh token")
	replayCheck(t, g, used, http.StatusUnauthorized, "JwtReplayed", "the token again")

	g.Stop()
	g2 := startPlain(t, text, gatewaytest.Options{})
	replayCheck(t, g2, used, http.StatusUnauthorized, "JwtExpired", "a token used before the restart")
	replayCheck(t, g2, unused, http.StatusUnauthorized, "JwtExpired", "a token issued before the restart")

	now = freshIat(t, testLeeway, g2)
	after := atprototest.Mint(t, []atprototest.Key{minted.Reuse("alice")}, []atprototest.Token{tok()}).Tokens[0]
	replayCheck(t, g2, after, http.StatusOK, "", "a token issued after the restart")
	replayCheck(t, g2, after, http.StatusUnauthorized, "JwtReplayed", "that token again")
}

// TestReplayMemoryAcrossRedisLoss runs two gateways on a Redis of the
// test's own and makes Redis forget: FLUSHALL, a restart without
// persistence, and a restart from a snapshot that predates the last use.
// Each time both gateways refuse the tokens used before (JwtExpired, not
// 200), and tokens issued after work once across both.
func TestReplayMemoryAcrossRedisLoss(t *testing.T) {
	rs := testenv.StartRedisServer(t)
	beginReplayMemory(t, rs.URL())
	plc := atprototest.NewPLC(t)
	text := fmt.Sprintf(replayCaddyfile, plc.URL, "redis "+rs.URL(), "redis")
	a := startPlain(t, text, gatewaytest.Options{})
	b := startPlain(t, text, gatewaytest.Options{})

	var now int64
	tok := func() atprototest.Token {
		return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: getConvo, Iat: now, Exp: now + 60}
	}
	key := atprototest.Key{Name: "alice", Type: "k256"}
	mint := func(n int) []string {
		t.Helper()
		reqs := make([]atprototest.Token, n)
		for i := range reqs {
			reqs[i] = tok()
		}
		m := atprototest.Mint(t, []atprototest.Key{key}, reqs)
		if key.Private == "" {
			plc.Publish(aliceDID, m.Keys["alice"])
			key = m.Reuse("alice")
		}
		return m.Tokens
	}
	// useBoth uses one fresh token on each gateway and shows each is
	// refused as replayed on the other: the memory is whole and shared.
	useBoth := func(what string) (onA, onB string) {
		t.Helper()
		toks := mint(2)
		replayCheck(t, a, toks[0], http.StatusOK, "", what+": a fresh token on A")
		replayCheck(t, b, toks[1], http.StatusOK, "", what+": a fresh token on B")
		replayCheck(t, b, toks[0], http.StatusUnauthorized, "JwtReplayed", what+": A's token on B")
		replayCheck(t, a, toks[1], http.StatusUnauthorized, "JwtReplayed", what+": B's token on A")
		return toks[0], toks[1]
	}
	// forgotten checks that both gateways refuse the tokens used before
	// the loss, and waits until tokens issued from then on are good.
	forgotten := func(what, onA, onB string) {
		t.Helper()
		replayCheck(t, b, onA, http.StatusUnauthorized, "JwtExpired", what+": A's used token on B")
		replayCheck(t, a, onB, http.StatusUnauthorized, "JwtExpired", what+": B's used token on A")
		now = gatewaytest.FreshIat(time.Now(), testLeeway)
	}

	now = freshIat(t, testLeeway, a, b)
	onA, onB := useBoth("at first")

	if err := rs.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	forgotten("after FLUSHALL", onA, onB)
	onA, onB = useBoth("after FLUSHALL")

	rs.Restart(t, false)
	forgotten("after a restart without persistence", onA, onB)
	inSnapshotA, inSnapshotB := useBoth("after a restart without persistence")

	// A snapshot taken, then tokens used, then a restart that loads the
	// snapshot: the record of the memory's start survives, the last uses
	// do not. The new run_id gives the loss away.
	rs.Save(t)
	onA, onB = useBoth("after the snapshot")
	rs.Restart(t, true)
	forgotten("after a restart from an older snapshot", onA, onB)
	// The uses the snapshot holds are still known as such.
	replayCheck(t, b, inSnapshotA, http.StatusUnauthorized, "JwtReplayed", "a use in the snapshot, on B")
	replayCheck(t, a, inSnapshotB, http.StatusUnauthorized, "JwtReplayed", "a use in the snapshot, on A")
	useBoth("after a restart from an older snapshot")
}

// TestGatewayStartRecordsTheReplayMemory: a gateway with Redis records at
// start when the replay memories began, so the first request after a first
// deployment or a flush is not the one that finds the record missing.
func TestGatewayStartRecordsTheReplayMemory(t *testing.T) {
	rs := testenv.StartRedisServer(t)
	before := time.Now().Add(-time.Second)
	plc := atprototest.NewPLC(t)
	startPlain(t, fmt.Sprintf(replayCaddyfile, plc.URL, "redis "+rs.URL(), "redis"), gatewaytest.Options{})
	c := rs.Client(t)
	for _, key := range []string{"cairn:jti:memory-since", "cairn:ticket:memory-since"} {
		v, err := c.Get(context.Background(), key).Result()
		if err != nil {
			t.Fatalf("%s after start: %v", key, err)
		}
		ms, _, _ := strings.Cut(v, " ")
		if n, err := strconv.ParseInt(ms, 10, 64); err != nil || time.UnixMilli(n).Before(before) {
			t.Errorf("%s = %q, want a time from this start", key, v)
		}
	}
}
