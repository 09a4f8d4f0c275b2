package atpauth

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// benchTokens mints n distinct tokens (distinct jti) for testDID with key.
func benchTokens(b *testing.B, key atcrypto.PrivateKey, n int) []string {
	b.Helper()
	alg := algOf(b, key)
	toks := make([]string, n)
	for i := range toks {
		toks[i] = "Bearer " + sign(b, key, hdrFor(alg), goodClaims("bench-"+strconv.Itoa(i)))
	}
	return toks
}

// BenchmarkVerify measures full verifications with a warm DID cache and the
// in-memory replay store (or Redis, in the /redis variants) next to the bare
// signature verification of the same token, in the same run. Each iteration
// times one Verify and then one bare verify, so load on the machine affects
// both alike. It reports verify-ns/op, bare-ns/op, x_bare (their ratio: the
// cost of authentication over the signature check alone) and verifies/s;
// the standard ns/op covers both operations.
func BenchmarkVerify(b *testing.B) {
	for _, kc := range []struct {
		name string
		gen  func(testing.TB) atcrypto.PrivateKeyExportable
	}{{"ES256K", newK256}, {"ES256", newP256}} {
		for _, store := range []string{"memory", "redis"} {
			b.Run(kc.name+"/"+store, func(b *testing.B) {
				benchVerify(b, kc.gen(b), store)
			})
		}
	}
}

func benchVerify(b *testing.B, priv atcrypto.PrivateKeyExportable, store string) {
	srv := newDIDServer(b)
	clk := newClock(testNow)
	res := newTestResolver(b, srv, clk, nil)
	srv.set(testDID, multikeyDoc(b, testDID, pub(b, priv).Multibase()))
	var replay ReplayStore = longMemory(b.N+1, clk.Now)
	if store == "redis" {
		client, prefix := testenv.Redis(b)
		redisSince(b, client, prefix, testNow.Add(-time.Hour))
		replay = &RedisReplayStore{Client: client, Prefix: prefix, Now: clk.Now}
	}
	v, err := NewVerifier(Config{ServiceDID: testService, Keys: res, Replay: replay, Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := res.SigningKey(ctx, testDID, false); err != nil { // warm the cache
		b.Fatal(err)
	}
	toks := benchTokens(b, priv, b.N)
	parsed := make([]*token, b.N)
	for i := range parsed {
		if parsed[i], err = parseToken(toks[i][len("Bearer "):]); err != nil {
			b.Fatal(err)
		}
	}
	key := pub(b, priv)

	var verifyTime, bareTime time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := v.Verify(ctx, toks[i], testNSID); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := checkSignature(key, parsed[i]); err != nil {
			b.Fatal(err)
		}
		bareTime += time.Since(t1)
		verifyTime += t1.Sub(t0)
	}
	b.StopTimer()
	verifyNs := float64(verifyTime.Nanoseconds()) / float64(b.N)
	bareNs := float64(bareTime.Nanoseconds()) / float64(b.N)
	b.ReportMetric(verifyNs, "verify-ns/op")
	b.ReportMetric(bareNs, "bare-ns/op")
	b.ReportMetric(verifyNs/bareNs, "x_bare")
	b.ReportMetric(1e9/verifyNs, "verifies/s")
}

// BenchmarkBareVerify is the signature verification alone, for reference.
func BenchmarkBareVerify(b *testing.B) {
	for _, kc := range []struct {
		name string
		gen  func(testing.TB) atcrypto.PrivateKeyExportable
	}{{"ES256K", newK256}, {"ES256", newP256}} {
		b.Run(kc.name, func(b *testing.B) {
			priv := kc.gen(b)
			key := pub(b, priv)
			tok, err := parseToken(sign(b, priv, hdrFor(algOf(b, priv)), goodClaims("bare")))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := checkSignature(key, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRedisReplayStore is the replay check alone: one pipeline (SET NX,
// GET of the memory record, INFO server) per token.
func BenchmarkRedisReplayStore(b *testing.B) {
	client, prefix := testenv.Redis(b)
	s := &RedisReplayStore{Client: client, Prefix: prefix}
	ctx := context.Background()
	until := time.Now().Add(time.Minute)
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprintf("%032x", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rec, err := s.Remember(ctx, keys[i], until); err != nil || !rec.Fresh {
			b.Fatal(rec, err)
		}
	}
}

// BenchmarkMemoryReplayStore is the in-memory replay check alone.
func BenchmarkMemoryReplayStore(b *testing.B) {
	now := time.Now()
	s := NewMemoryReplayStore(b.N+1, func() time.Time { return now })
	ctx := context.Background()
	until := now.Add(time.Minute)
	keys := make([]string, b.N)
	for i := range keys {
		keys[i] = fmt.Sprintf("%032x", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if rec, err := s.Remember(ctx, keys[i], until); err != nil || !rec.Fresh {
			b.Fatal(rec, err)
		}
	}
}
