package caddymodules_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cairn-chat/cairn-caddy/internal/atprototest"
	"github.com/cairn-chat/cairn-caddy/internal/gatewaytest"
	"github.com/cairn-chat/cairn-caddy/internal/pow"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// adaptiveCaddyfile has adaptive signals in the per-DID limiter and proof
// of work in the delivery service. %s: the PLC URL, the cairn app's redis
// line, the limiter's backend, the stamps' replay store.
const adaptiveCaddyfile = `{
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
		cairn_rate_limit {
			backend %s
			signals {
				new_account 1h
				forget 2h
				large_group 3
			}
			zone create {
				key did
				rate 100/1h
				match nsid blue.catbird.mls.createConvo
				when new_account rate 4/1h
			}
			zone send {
				key did
				rate 100/1h
				match nsid blue.catbird.mls.sendMessage
				when large_group rate 1/1h burst 1
			}
		}
		cairn_delivery {
			proof_of_work {
				difficulty 8
				new_account +2
				max_clock_skew 1s
				replay %s
			}
		}
		error 501
	}
	handle_errors {
		cairn_xrpc_errors
	}
}
http://127.0.0.1:{METRICS} {
	cairn_metrics
}
`

// TestProofOfWorkAndAdaptiveLimitsThroughTheGateway drives a new account
// through the gateway on memory and on Redis: createConvo is refused 428
// with a challenge (difficulty raised by the new-account signal), succeeds
// with the solved stamp, refuses the stamp replayed, and the new-account
// modifier then refuses with 429; a message into a conversation of three
// members meets the large-group modifier. Metrics and logs name no one.
func TestProofOfWorkAndAdaptiveLimitsThroughTheGateway(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			hashKey := testenv.RandomName("adaptive-key-") + strings.Repeat("k", 32)
			redisLine, client, base := signalsRedis(t, backend, hashKey)
			if client != nil {
				defer func() {
					// The account's record is in Redis under a keyed hash.
					if n := client.Exists(context.Background(), base+"seen").Val(); n != 1 {
						t.Errorf("no first-seen record %q in Redis", base+"seen")
					}
				}()
			}
			plc := atprototest.NewPLC(t)
			text := fmt.Sprintf(adaptiveCaddyfile, plc.URL, redisLine, backend, backend)
			g := startPlain(t, text, gatewaytest.Options{Env: []string{"CAIRN_LOG_HASH_KEY=" + hashKey}})
			now := freshIat(t, testLeeway, g)
			// Stamps must be dated at least max_clock_skew after the replay
			// memory began (at start-up); freshIat waited the same second.
			time.Sleep(time.Second)
			tok := func(lxm string) atprototest.Token {
				return atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: "blue.catbird.mls." + lxm, Iat: now, Exp: now + 60}
			}
			var want []atprototest.Token
			for range 5 {
				want = append(want, tok("createConvo"))
			}
			want = append(want, tok("sendMessage"), tok("sendMessage"))
			minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}}, want)
			plc.Publish(aliceDID, minted.Keys["alice"])
			tokens := minted.Tokens

			const groupID = "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
			body := `{"groupId":"` + groupID + `","cipherSuite":"MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519","idempotencyKey":"adaptive",` +
				`"initialMembers":["` + bobDID + `#b1","did:plc:carolcccccccccccccccccccc#c1"]}`
			create := "blue.catbird.mls.createConvo"

			// No stamp: 428, a challenge for 8 bits plus 2 for a new account.
			resp, out := postXRPC(t, g, create, tokens[0], body)
			if resp.StatusCode != http.StatusPreconditionRequired || errorName(t, out) != "ProofOfWorkRequired" {
				t.Fatalf("createConvo without a stamp: %d %s", resp.StatusCode, out)
			}
			if got := resp.Header.Get(pow.DifficultyHeader); got != "10" {
				t.Fatalf("difficulty %q, want 10 (8 + 2 for a new account)", got)
			}
			ch, err := pow.ParseChallenge(resp.Header.Get(pow.ChallengeHeader))
			if err != nil || ch.NSID != create || ch.Bits != 10 {
				t.Fatalf("challenge %q: %+v, %v", resp.Header.Get(pow.ChallengeHeader), ch, err)
			}
			// The client solves and retries.
			stamp, err := ch.Solve(aliceDID, time.Now())
			testenv.Must(t, err, "solve")
			resp, out = postWithStamp(t, g, create, tokens[1], body, stamp)
			if resp.StatusCode != http.StatusOK || !strings.Contains(out, groupID) {
				t.Fatalf("createConvo with the solved stamp: %d %s", resp.StatusCode, out)
			}
			// The same stamp again is a replay.
			resp, out = postWithStamp(t, g, create, tokens[2], strings.Replace(body, `"adaptive"`, `"adaptive-2"`, 1), stamp)
			if resp.StatusCode != http.StatusPreconditionRequired || errorName(t, out) != "ProofOfWorkReplayed" {
				t.Fatalf("createConvo with a used stamp: %d %s", resp.StatusCode, out)
			}
			// The fourth call is the new account's last under its modifier
			// (4/1h); the fifth is refused by it.
			resp, _ = postXRPC(t, g, create, tokens[3], body)
			if resp.StatusCode != http.StatusPreconditionRequired {
				t.Fatalf("fourth createConvo: %d, want 428 (admitted by the limiter)", resp.StatusCode)
			}
			resp, out = postXRPC(t, g, create, tokens[4], body)
			if resp.StatusCode != http.StatusTooManyRequests || errorName(t, out) != "RateLimitExceeded" ||
				!strings.Contains(out, `\"create\" for new_account`) || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("fifth createConvo: %d %s, want 429 from create's new_account modifier", resp.StatusCode, out)
			}

			// Three members make the conversation large: one message passes
			// its modifier (1/1h), the next is refused.
			msg := func(id string) string {
				ct := applicationMessage(t, groupID, 512)
				return `{"convoId":"` + groupID + `","msgId":"` + id + `","ciphertext":{"$bytes":"` +
					base64.RawStdEncoding.EncodeToString(ct) + `"},"epoch":0,"paddedSize":512}`
			}
			mustPostXRPC(t, g, "blue.catbird.mls.sendMessage", tokens[5], msg("01HZZZZZZZZZZZZZZZZZZZZZZA"))
			resp, out = postXRPC(t, g, "blue.catbird.mls.sendMessage", tokens[6], msg("01HZZZZZZZZZZZZZZZZZZZZZZB"))
			if resp.StatusCode != http.StatusTooManyRequests || errorName(t, out) != "RateLimitExceeded" || !strings.Contains(out, "large groups") {
				t.Fatalf("second message into a large group: %d %s", resp.StatusCode, out)
			}

			m := scrape(t, g)
			for _, c := range []struct {
				name   string
				labels []string
				want   float64
			}{
				{"cairn_pow_checks_total", []string{`outcome="missing"`}, 2},
				{"cairn_pow_checks_total", []string{`outcome="ok"`}, 1},
				{"cairn_pow_checks_total", []string{`outcome="replayed"`}, 1},
				{"cairn_ratelimit_adaptive_decisions_total", []string{`zone="create"`, `signal="new_account"`, `outcome="limited"`}, 1},
				{"cairn_ratelimit_adaptive_decisions_total", []string{`zone="send"`, `signal="large_group"`, `outcome="allowed"`}, 1},
				{"cairn_ratelimit_adaptive_decisions_total", []string{`zone="send"`, `signal="large_group"`, `outcome="limited"`}, 1},
			} {
				if got := metricValue(m, c.name, c.labels...); got != c.want {
					t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
				}
			}
			for _, leak := range []string{aliceDID, "aliceaaaa", groupID, stamp} {
				if strings.Contains(m, leak) {
					t.Errorf("metrics name %q", leak)
				}
				if strings.Contains(g.Logs(), leak) {
					t.Errorf("logs name %q", leak)
				}
			}
		})
	}
}

// signalsRedis returns, on the redis backend, the cairn app's redis line,
// a client, and the key prefix of aliceDID's signal records under the log
// hash key (deleted when the test ends); on memory, "", nil and "".
func signalsRedis(t *testing.T, backend, hashKey string) (line string, client *redis.Client, base string) {
	t.Helper()
	if backend != "redis" {
		return "", nil, ""
	}
	client, _ = testenv.Redis(t)
	hasher, err := redact.New([]byte(hashKey))
	testenv.Must(t, err, "hasher")
	base = "cairn:rl:sig|{|did|" + hasher.Hash(aliceDID) + "}|"
	t.Cleanup(func() { client.Del(context.Background(), base+"seen", base+"churn") })
	return "redis " + testenv.RedisURL(), client, base
}

// postWithStamp is postXRPC with a proof-of-work stamp.
func postWithStamp(t *testing.T, g *plainGateway, nsid, token, body, stamp string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.url("/xrpc/"+nsid), strings.NewReader(body))
	testenv.Must(t, err, "request")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set(pow.Header, stamp)
	resp, err := http.DefaultClient.Do(req)
	testenv.Must(t, err, "POST "+nsid)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	testenv.Must(t, err, "read "+nsid)
	return resp, string(out)
}

// twoLimitersCaddyfile has two cairn_rate_limit handlers with signals in
// one route, as an operator splitting limits by concern would write: both
// count churn in one hour, with different thresholds. %s: the PLC URL, the
// cairn app's redis line, the limiters' backend (twice).
const twoLimitersCaddyfile = `{
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
		cairn_rate_limit {
			backend %s
			signals {
				churn 3/1h
			}
			zone account {
				key did
				rate 100/1h
			}
		}
		cairn_rate_limit {
			backend %s
			signals {
				churn 3/1h
				new_account 1h
			}
			zone membership {
				key did
				rate 100/1h
				match nsid blue.catbird.mls.leaveConvo
				when high_churn rate 1/1h burst 1
			}
		}
		error 501
	}
	handle_errors {
		cairn_xrpc_errors
	}
}
http://127.0.0.1:{METRICS} {
	cairn_metrics
}
`

// TestTwoRateLimitersCountChurnOnce sends membership calls through two
// cairn_rate_limit handlers that both define signals, on memory and on
// Redis: each call counts once, so high churn (more than 3) first holds on
// the fourth call, which the modifier admits, and refuses the fifth.
// Counted twice, it would hold from the second and refuse the third. On
// Redis the account's churn counter reads 5 after five calls.
func TestTwoRateLimitersCountChurnOnce(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			hashKey := testenv.RandomName("churn-once-key-") + strings.Repeat("k", 32)
			redisLine, client, base := signalsRedis(t, backend, hashKey)
			plc := atprototest.NewPLC(t)
			text := fmt.Sprintf(twoLimitersCaddyfile, plc.URL, redisLine, backend, backend)
			g := startPlain(t, text, gatewaytest.Options{Env: []string{"CAIRN_LOG_HASH_KEY=" + hashKey}})
			now := freshIat(t, testLeeway, g)
			const leave = "blue.catbird.mls.leaveConvo"
			var want []atprototest.Token
			for range 5 {
				want = append(want, atprototest.Token{Key: "alice", Iss: aliceDID, Aud: "did:web:gateway.test", Lxm: leave, Iat: now, Exp: now + 60})
			}
			minted := atprototest.Mint(t, []atprototest.Key{{Name: "alice", Type: "k256"}}, want)
			plc.Publish(aliceDID, minted.Keys["alice"])
			body := `{"convoId":"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"}`
			for i, tok := range minted.Tokens[:4] {
				// 501: both limiters admitted and the route's end answered.
				if resp, out := postXRPC(t, g, leave, tok, body); resp.StatusCode != http.StatusNotImplemented {
					t.Fatalf("leaveConvo %d: %d %s, want 501 past both limiters", i+1, resp.StatusCode, out)
				}
			}
			resp, out := postXRPC(t, g, leave, minted.Tokens[4], body)
			if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(out, `\"membership\" for high_churn`) {
				t.Fatalf("fifth leaveConvo: %d %s, want 429 from membership's high_churn modifier", resp.StatusCode, out)
			}
			m := scrape(t, g)
			for _, c := range []struct {
				outcome string
				want    float64
			}{{"allowed", 1}, {"limited", 1}} {
				labels := []string{`zone="membership"`, `signal="high_churn"`, `outcome="` + c.outcome + `"`}
				if got := metricValue(m, "cairn_ratelimit_adaptive_decisions_total", labels...); got != c.want {
					t.Errorf("adaptive decisions %v = %v, want %v", labels, got, c.want)
				}
			}
			if client != nil {
				if got, err := client.Get(context.Background(), base+"churn").Int(); err != nil || got != 5 {
					t.Errorf("churn counter in Redis = %d, %v; want 5 (one per call)", got, err)
				}
			}
		})
	}
}

// TestRateLimitersMustAgreeOnChurnPeriod: two handlers on one backend
// whose churn periods differ cannot share the account's churn count, and
// validate says which option to align.
func TestRateLimitersMustAgreeOnChurnPeriod(t *testing.T) {
	text := strings.Replace(fmt.Sprintf(twoLimitersCaddyfile, "http://127.0.0.1:1", "", "memory", "memory"), "churn 3/1h\n\t\t\t\tnew_account", "churn 3/10m\n\t\t\t\tnew_account", 1)
	text = strings.NewReplacer("{ADMIN}", "0", "{PORT}", "1", "{METRICS}", "2").Replace(text)
	out, ok := validate(t, text)
	if ok || !strings.Contains(out, "churn period 10m0s differs from 1h0m0s") || !strings.Contains(out, "give them the same period") {
		t.Fatalf("validate with churn 3/1h and 3/10m: ok=%v\n%s", ok, out)
	}
}
