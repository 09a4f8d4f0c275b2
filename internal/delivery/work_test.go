package delivery_test

import (
	"context"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/delivery"
	"github.com/cairn-chat/cairn-caddy/internal/pow"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
)

// withStamp makes the env's next requests carry stamp (none when empty).
func (e *env) withStamp(stamp string) {
	e.prepare = func(r *http.Request) *http.Request {
		if stamp != "" {
			r.Header.Set(pow.Header, stamp)
		}
		return r
	}
}

// solveChallenge answers a 428 as a client does: it reads the challenge
// header and solves it for its own DID.
func solveChallenge(t *testing.T, r resp, did string, now time.Time) string {
	t.Helper()
	ch, err := pow.ParseChallenge(r.header.Get(pow.ChallengeHeader))
	if err != nil {
		t.Fatalf("challenge of %s: %v", r.raw, err)
	}
	stamp, err := ch.Solve(did, now)
	if err != nil {
		t.Fatal(err)
	}
	return stamp
}

func TestProofOfWork(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			extra := 0
			var checks []string
			e := newEnv(t, b.open, func(c *delivery.Config) {
				c.ProofOfWork = &delivery.ProofOfWork{
					// The replay memory began before the test's stamps.
					Verifier:        &pow.Verifier{Replay: atpauth.NewMemoryReplayStore(1000, func() time.Time { return c.Now().Add(-time.Hour) }), Now: c.Now},
					Bits:            8,
					FirstKeyPackage: true,
					Extra:           func(context.Context) int { return extra },
					OnCheck:         func(reason string) { checks = append(checks, reason) },
				}
			})
			now := e.clock.Now()
			const create = "blue.catbird.mls.createConvo"
			createBody := func(g string) obj {
				return obj{"groupId": g, "cipherSuite": suite.String(), "idempotencyKey": "create-" + g}
			}

			// No stamp: 428 with a challenge naming the difficulty and method.
			r := e.post(alice, "createConvo", createBody(newGroup(t)))
			r.isErr(t, http.StatusPreconditionRequired, "ProofOfWorkRequired")
			if got := r.header.Get(pow.DifficultyHeader); got != "8" {
				t.Errorf("%s = %q, want 8", pow.DifficultyHeader, got)
			}
			if got := r.header.Get(pow.ChallengeHeader); got != "v1; bits=8; method="+create+"; max-age=300" {
				t.Errorf("%s = %q", pow.ChallengeHeader, got)
			}
			if strings.Contains(string(r.raw), alice.DID) || strings.Contains(r.header.Get(pow.ChallengeHeader), alice.DID) {
				t.Errorf("the challenge names the caller: %s", r.raw)
			}
			good := solveChallenge(t, r, alice.DID, now)

			forMallory, _ := pow.Solve(mallory.DID, create, 8, now)
			forOther, _ := pow.Solve(alice.DID, "blue.catbird.mls.addMembers", 8, now)
			expired, _ := pow.Solve(alice.DID, create, 8, now.Add(-10*time.Minute))
			tooEasy := ""
			for tooEasy == "" { // a stamp declaring fewer bits than required
				s, _ := pow.Solve(alice.DID, create, 2, now)
				if st, _ := pow.Parse(s); st.Work(alice.DID, create) < 8 {
					tooEasy = s
				}
			}
			for _, tc := range []struct{ name, stamp, want string }{
				{"malformed", "v1:8:x", "InvalidProofOfWork"},
				{"another caller's", forMallory, "InvalidProofOfWork"},
				{"another method's", forOther, "InvalidProofOfWork"},
				{"too little work", tooEasy, "InvalidProofOfWork"},
				{"expired", expired, "ProofOfWorkExpired"},
			} {
				e.withStamp(tc.stamp)
				r := e.post(alice, "createConvo", createBody(newGroup(t)))
				r.isErr(t, http.StatusPreconditionRequired, tc.want)
				if r.header.Get(pow.ChallengeHeader) == "" {
					t.Errorf("%s: no challenge header", tc.name)
				}
			}

			// The solved stamp works once.
			e.withStamp(good)
			e.post(alice, "createConvo", createBody(newGroup(t))).must(t, http.StatusOK)
			e.post(alice, "createConvo", createBody(newGroup(t))).isErr(t, http.StatusPreconditionRequired, "ProofOfWorkReplayed")

			// Adaptive signals raise the difficulty: an 8-bit stamp no longer
			// does, the challenge's does.
			extra = 4
			e.withStamp("")
			r = e.post(alice, "createConvo", createBody(newGroup(t)))
			if got := r.header.Get(pow.DifficultyHeader); got != "12" {
				t.Fatalf("difficulty with 4 extra bits = %q, want 12", got)
			}
			weak := ""
			for weak == "" {
				s, _ := pow.Solve(alice.DID, create, 8, now)
				if st, _ := pow.Parse(s); st.Work(alice.DID, create) < 12 {
					weak = s
				}
			}
			e.withStamp(weak)
			e.post(alice, "createConvo", createBody(newGroup(t))).isErr(t, http.StatusPreconditionRequired, "InvalidProofOfWork")
			e.withStamp(solveChallenge(t, r, alice.DID, now))
			e.post(alice, "createConvo", createBody(newGroup(t))).must(t, http.StatusOK)
			extra = 0

			// Methods that need no work pass without a stamp.
			e.withStamp("")
			e.get(alice, "getConvos", url.Values{}).must(t, http.StatusOK)

			// The first key-package publication of an account needs work;
			// later ones do not.
			kp := newKeyPackage(t, "did:plc:bob#b1", now, 24*time.Hour)
			r = e.post(bob, "publishKeyPackage", obj{"keyPackage": kp.b64(), "cipherSuite": suite.String(), "idempotencyKey": "p1"})
			r.isErr(t, http.StatusPreconditionRequired, "ProofOfWorkRequired")
			if !strings.Contains(r.header.Get(pow.ChallengeHeader), "method=blue.catbird.mls.publishKeyPackage;") {
				t.Fatalf("challenge %q", r.header.Get(pow.ChallengeHeader))
			}
			e.withStamp(solveChallenge(t, r, bob.DID, now))
			e.post(bob, "publishKeyPackage", obj{"keyPackage": kp.b64(), "cipherSuite": suite.String(), "idempotencyKey": "p1"}).must(t, http.StatusOK)
			e.withStamp("")
			kp2 := newKeyPackage(t, "did:plc:bob#b1", now, 24*time.Hour)
			e.post(bob, "publishKeyPackages", obj{"keyPackages": []obj{{"keyPackage": kp2.b64(), "cipherSuite": suite.String(), "expires": now.Add(23 * time.Hour).Format(time.RFC3339)}}}).must(t, http.StatusOK)

			want := []string{"missing", "malformed", "insufficient", "insufficient", "insufficient", "expired", "ok", "replayed", "missing", "insufficient", "ok", "missing", "ok"}
			if strings.Join(checks, ",") != strings.Join(want, ",") {
				t.Fatalf("checks %v, want %v", checks, want)
			}
		})
	}
}

func TestProofOfWorkConfig(t *testing.T) {
	s := openSQLite(t, time.Now)
	v := &pow.Verifier{Replay: atpauth.NewMemoryReplayStore(10, time.Now)}
	for _, w := range []delivery.ProofOfWork{{Bits: 8}, {Verifier: v, Bits: 0}, {Verifier: v, Bits: pow.MaxBits + 1}} {
		if _, err := delivery.New(delivery.Config{Store: s, ProofOfWork: &w}); err == nil {
			t.Errorf("config %+v accepted", w)
		}
	}
}

func TestLargeGroupLimit(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.open)
			hasher, err := redact.New([]byte(strings.Repeat("k", redact.MinKeySize)))
			if err != nil {
				t.Fatal(err)
			}
			zs, err := ratelimit.NewZones(ratelimit.ZonesConfig{
				Zones: []*ratelimit.Zone{{Name: "send", Key: ratelimit.KeyDID, Rate: "100/1h",
					MatchNSIDs: []string{"blue.catbird.mls.sendMessage"},
					Modifiers:  []ratelimit.Modifier{{When: ratelimit.SignalLargeGroup, Rate: "1/1h"}}}},
				Limiter: ratelimit.NewMemoryStore(ratelimit.MemoryConfig{}), Hasher: hasher,
				Signals: &ratelimit.SignalConfig{LargeGroup: 3}, Recorder: ratelimit.NewSignalRecorder(ratelimit.NewMemorySignals(ratelimit.MemoryConfig{})),
			})
			if err != nil {
				t.Fatal(err)
			}
			// The gateway's rate limiter runs first and leaves its admission
			// in the context; this stands in for it.
			e.prepare = func(r *http.Request) *http.Request {
				req := ratelimit.Request{Method: r.Method, Path: r.URL.Path, NSID: strings.TrimPrefix(r.URL.Path, "/xrpc/"),
					ClientIP: netip.MustParseAddr("192.0.2.1"), DID: alice.DID}
				d, err := zs.Allow(r.Context(), req)
				if err != nil || !d.Allowed {
					t.Fatalf("rate limit = %+v, %v", d, err)
				}
				return r.WithContext(ratelimit.NewContext(r.Context(), zs.Admission(req, d)))
			}
			small := e.createConvo(t, alice, bob)
			for i := range 3 {
				e.send(alice, small, 0, "01HZZZZZZZZZZZZZZZZZZZZZZ"+string(rune('A'+i))).must(t, http.StatusOK)
			}
			large := e.createConvo(t, alice, bob, carol)
			e.send(alice, large, 0, "01HZZZZZZZZZZZZZZZZZZZZZZX").must(t, http.StatusOK)
			r := e.send(alice, large, 0, "01HZZZZZZZZZZZZZZZZZZZZZZY")
			r.isErr(t, http.StatusTooManyRequests, "RateLimitExceeded")
			if r.header.Get("Retry-After") == "" || !strings.Contains(string(r.raw), "large groups") {
				t.Fatalf("refusal %v %s", r.header, r.raw)
			}
		})
	}
}
