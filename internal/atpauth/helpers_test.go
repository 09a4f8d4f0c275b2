package atpauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/redis/go-redis/v9"
)

// testNow is the fixed instant the unit tests run at.
var testNow = time.Unix(1_800_000_000, 0)

const (
	testService = "did:web:chat.example.com"
	testNSID    = "blue.catbird.mls.sendMessage"
	testDID     = "did:plc:abcdefghijklmnopqrstuvwx"
)

// clock is an adjustable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// staticKeys is a KeyResolver over a fixed map; a forced refresh moves a DID
// to its entry in next, if any, and counts refreshes.
type staticKeys struct {
	mu        sync.Mutex
	keys      map[string]atcrypto.PublicKey
	next      map[string]atcrypto.PublicKey
	refreshes int
	err       error
}

func (s *staticKeys) SigningKey(_ context.Context, did string, force bool) (atcrypto.PublicKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if force {
		s.refreshes++
		if k, ok := s.next[did]; ok {
			s.keys[did] = k
		}
	}
	k, ok := s.keys[did]
	if !ok {
		return nil, ErrDIDNotFound
	}
	return k, nil
}

func newK256(t testing.TB) atcrypto.PrivateKeyExportable {
	t.Helper()
	k, err := atcrypto.GeneratePrivateKeyK256()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newP256(t testing.TB) atcrypto.PrivateKeyExportable {
	t.Helper()
	k, err := atcrypto.GeneratePrivateKeyP256()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func pub(t testing.TB, k atcrypto.PrivateKey) atcrypto.PublicKey {
	t.Helper()
	p, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func b64json(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// goodClaims are claims that pass every check at testNow.
func goodClaims(jti string) map[string]any {
	return map[string]any{
		"iss": testDID,
		"aud": testService,
		"iat": testNow.Unix(),
		"exp": testNow.Unix() + 60,
		"lxm": testNSID,
		"jti": jti,
	}
}

// sign mints a token with the given header and claims, signed by key.
func sign(t testing.TB, key atcrypto.PrivateKey, hdr, claims map[string]any) string {
	t.Helper()
	input := b64json(t, hdr) + "." + b64json(t, claims)
	sig, err := key.HashAndSign([]byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func algOf(t testing.TB, key atcrypto.PrivateKey) string {
	t.Helper()
	return keyAlg(pub(t, key))
}

func hdrFor(alg string) map[string]any { return map[string]any{"typ": "JWT", "alg": alg} }

// longMemory returns a memory store whose memory began an hour before
// testNow, when the tests' tokens are issued: a store that has been up a
// while.
func longMemory(maxEntries int, now func() time.Time) *MemoryReplayStore {
	s := NewMemoryReplayStore(maxEntries, now)
	s.since = testNow.Add(-time.Hour)
	return s
}

// redisSince records in the Redis at client, under prefix, that its memory
// began at since (a RedisReplayStore records Redis's clock; tests need a
// moment relative to testNow).
func redisSince(t testing.TB, client redis.Cmdable, prefix string, since time.Time) {
	t.Helper()
	ctx := context.Background()
	runID, err := runIDOf(client.Info(ctx, "server"))
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Set(ctx, prefix+RedisMemoryKey, formatMemory(since, runID), 0).Err(); err != nil {
		t.Fatalf("record Redis memory since %v: %v", since, err)
	}
}
