package pow_test

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/pow"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const (
	did    = "did:plc:alice"
	create = "blue.catbird.mls.createConvo"
)

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	v := &pow.Verifier{Replay: memorySince(now.Add(-time.Hour), clock), Now: clock}
	stamp, err := pow.Solve(did, create, 12, now)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := v.Verify(ctx, stamp, did, create, 12); err != nil {
		t.Fatalf("a fresh stamp: %v", err)
	}
	if err := v.Verify(ctx, stamp, did, create, 12); !errors.Is(err, pow.ErrReplayed) {
		t.Errorf("the same stamp again: %v, want ErrReplayed", err)
	}
	other, _ := pow.Solve(did, create, 12, now)
	cases := []struct {
		name, header, did, nsid string
		required                int
		want                    error
	}{
		{"missing", "", did, create, 12, pow.ErrMissing},
		{"malformed", "v1:12:x", did, create, 12, pow.ErrMalformed},
		{"too little declared work", other, did, create, 16, pow.ErrInsufficient},
		{"another caller", other, "did:plc:mallory", create, 12, pow.ErrInsufficient},
		{"another method", other, did, "blue.catbird.mls.sendChatRequest", 12, pow.ErrInsufficient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := v.Verify(ctx, tc.header, tc.did, tc.nsid, tc.required); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	old, _ := pow.Solve(did, create, 4, now.Add(-10*time.Minute))
	if err := v.Verify(ctx, old, did, create, 4); !errors.Is(err, pow.ErrExpired) {
		t.Errorf("an old stamp: %v, want ErrExpired", err)
	}
	future, _ := pow.Solve(did, create, 4, now.Add(time.Hour))
	if err := v.Verify(ctx, future, did, create, 4); !errors.Is(err, pow.ErrExpired) {
		t.Errorf("a future stamp: %v, want ErrExpired", err)
	}
	// A stamp claiming more bits than its digest has is refused.
	parts := strings.Split(other, ":")
	parts[1] = "30"
	if err := v.Verify(ctx, strings.Join(parts, ":"), did, create, 12); !errors.Is(err, pow.ErrInsufficient) {
		t.Errorf("an inflated claim: %v, want ErrInsufficient", err)
	}
}

// memorySince is a memory replay store whose memory began at since.
func memorySince(since time.Time, clock func() time.Time) *atpauth.MemoryReplayStore {
	first := true
	return atpauth.NewMemoryReplayStore(1<<20, func() time.Time {
		if first {
			first = false
			return since
		}
		return clock()
	})
}

func TestVerifyRefusesStampsOlderThanTheReplayMemory(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	// The memory began 10 s ago (a restart): a stamp dated before that,
	// or within the skew after it, may have been used already.
	v := &pow.Verifier{Replay: memorySince(now.Add(-10*time.Second), clock), Now: clock, Skew: 5 * time.Second}
	for _, age := range []time.Duration{time.Minute, 6 * time.Second} {
		old, _ := pow.Solve(did, create, 4, now.Add(-age))
		if err := v.Verify(t.Context(), old, did, create, 4); !errors.Is(err, pow.ErrExpired) {
			t.Errorf("a stamp %s old against a memory 10 s old: %v, want ErrExpired", age, err)
		}
	}
	fresh, _ := pow.Solve(did, create, 4, now.Add(-4*time.Second))
	if err := v.Verify(t.Context(), fresh, did, create, 4); err != nil {
		t.Errorf("a stamp dated after the memory began plus the skew: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("v1:12:1800000000:AAAAAAAAAAAAAAAAAAAAAA:42")
	f.Add("v1:99:0:x:0")
	f.Add("v2::::")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := pow.Parse(s)
		if err != nil {
			if !errors.Is(err, pow.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if st.String() != s || st.Bits > pow.MaxBits || len(st.Nonce) != 16 {
			t.Fatalf("accepted %q as %+v", s, st)
		}
	})
}

// BenchmarkSolve is the client's cost per difficulty (expected 2^bits
// hashes); BenchmarkVerify the server's, one hash plus the replay check.
func BenchmarkSolve(b *testing.B) {
	for _, bits := range []int{8, 12, 16, 20} {
		b.Run(fmt.Sprintf("bits=%d", bits), func(b *testing.B) {
			for b.Loop() {
				if _, err := pow.Solve(did, create, bits, time.Now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	b.Run("memory", func(b *testing.B) {
		benchmarkVerify(b, memorySince(time.Now().Add(-time.Hour), time.Now))
	})
	b.Run("redis", func(b *testing.B) {
		client, prefix := testenv.Redis(b)
		replay := &atpauth.RedisReplayStore{Client: client, Prefix: prefix}
		if _, err := replay.Begin(b.Context()); err != nil {
			b.Fatal(err)
		}
		// Stamps must be dated at least the skew (1 s) after the memory
		// began, in whole seconds.
		time.Sleep(2 * time.Second)
		benchmarkVerify(b, replay)
	})
}

// benchmarkVerify verifies distinct fresh stamps: the parse, one SHA-256
// and the replay store's Remember, the whole server cost at any difficulty.
func benchmarkVerify(b *testing.B, replay atpauth.ReplayStore) {
	now := time.Now()
	v := &pow.Verifier{Replay: replay, Skew: time.Second}
	stamps := make([]string, 20000)
	for i := range stamps {
		stamps[i], _ = pow.Solve(did, create, 4, now)
	}
	i := 0
	for b.Loop() {
		if err := v.Verify(b.Context(), stamps[i%len(stamps)], did, create, 4); err != nil && i < len(stamps) {
			b.Fatal(err)
		}
		i++
	}
}

// TestJSSolver solves challenges with test/mls/pow.mjs, the solver a ts-mls
// client carries, and verifies its stamps here.
func TestJSSolver(t *testing.T) {
	node := testenv.Tool(t, "node")
	now := time.Now()
	v := &pow.Verifier{Replay: memorySince(now.Add(-time.Hour), time.Now)}
	for _, bits := range []int{0, 8, 12} {
		ch := pow.Challenge{Bits: bits, NSID: create, MaxAge: 5 * time.Minute}
		out, err := exec.Command(node, "../../test/mls/pow.mjs", did, ch.String()).Output()
		if err != nil {
			t.Fatalf("node pow.mjs: %v", err)
		}
		stamp := strings.TrimSpace(string(out))
		if err := v.Verify(t.Context(), stamp, did, create, bits); err != nil {
			t.Fatalf("the JS solver's %d-bit stamp %q: %v", bits, stamp, err)
		}
	}
}

func TestChallenge(t *testing.T) {
	ch := pow.Challenge{Bits: 12, NSID: create, MaxAge: 5 * time.Minute}
	got, err := pow.ParseChallenge(ch.String())
	if err != nil || got != ch {
		t.Fatalf("ParseChallenge(%q) = %+v, %v", ch.String(), got, err)
	}
	// Unknown keys are ignored; spacing is free.
	if got, err := pow.ParseChallenge("v1;bits=12;method=" + create + ";max-age=300;hint=x"); err != nil || got != ch {
		t.Fatalf("with an unknown key: %+v, %v", got, err)
	}
	for _, bad := range []string{"", "v2; bits=1; method=m; max-age=1", "v1; bits=1; method=m", "v1; bits=33; method=m; max-age=1",
		"v1; bits=1; bits=2; method=m; max-age=1", "v1; bits=1; method=m; max-age=0", "v1; bits; method=m; max-age=1"} {
		if _, err := pow.ParseChallenge(bad); !errors.Is(err, pow.ErrMalformedChallenge) {
			t.Errorf("ParseChallenge(%q) = %v, want ErrMalformedChallenge", bad, err)
		}
	}
	now := time.Unix(1_800_000_000, 0)
	stamp, err := ch.Solve(did, now)
	if err != nil {
		t.Fatal(err)
	}
	v := &pow.Verifier{Replay: memorySince(now.Add(-time.Hour), func() time.Time { return now }), Now: func() time.Time { return now }}
	if err := v.Verify(t.Context(), stamp, did, create, 12); err != nil {
		t.Fatalf("the challenge's solution: %v", err)
	}
}

func TestReasonsAndNames(t *testing.T) {
	for _, tc := range []struct {
		err          error
		reason, name string
	}{
		{pow.ErrMissing, "missing", "ProofOfWorkRequired"},
		{fmt.Errorf("%w: x", pow.ErrMalformed), "malformed", "InvalidProofOfWork"},
		{pow.ErrInsufficient, "insufficient", "InvalidProofOfWork"},
		{pow.ErrExpired, "expired", "ProofOfWorkExpired"},
		{pow.ErrReplayed, "replayed", "ProofOfWorkReplayed"},
		{pow.ErrUnavailable, "unavailable", "ProofOfWorkRequired"},
	} {
		if got := pow.Reason(tc.err); got != tc.reason {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.reason)
		}
		if got := pow.ErrorName(tc.err); got != tc.name {
			t.Errorf("ErrorName(%v) = %q, want %q", tc.err, got, tc.name)
		}
	}
}

func FuzzParseChallenge(f *testing.F) {
	f.Add("v1; bits=12; method=blue.catbird.mls.createConvo; max-age=300")
	f.Add("v1;bits=0;method=m;max-age=1;x=y")
	f.Add("v1; bits=-1")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := pow.ParseChallenge(s)
		if err != nil {
			if !errors.Is(err, pow.ErrMalformedChallenge) {
				t.Fatalf("error %v is not ErrMalformedChallenge", err)
			}
			return
		}
		if c.Bits < 0 || c.Bits > pow.MaxBits || c.NSID == "" || c.MaxAge <= 0 {
			t.Fatalf("accepted %q as %+v", s, c)
		}
		again, err := pow.ParseChallenge(c.String())
		if err != nil || again != c {
			t.Fatalf("%+v does not round-trip: %+v, %v", c, again, err)
		}
	})
}
