package atpauth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/redis/go-redis/v9"

	"github.com/cairn-chat/cairn-caddy/internal/authfail"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// replayStoreSuite is the behaviour every ReplayStore must have. newStore
// returns a fresh, empty store whose clock is clk.
func replayStoreSuite(t *testing.T, newStore func(t *testing.T, clk *clock) ReplayStore) {
	ctx := context.Background()
	t.Run("first use fresh, second refused", func(t *testing.T) {
		clk := newClock(testNow)
		s := newStore(t, clk)
		until := testNow.Add(time.Minute)
		for i, want := range []bool{true, false, false} {
			rec, err := s.Remember(ctx, "k", until)
			if err != nil || rec.Fresh != want {
				t.Fatalf("use %d: Remember = %v, %v; want %v", i, rec, err, want)
			}
		}
		if rec, err := s.Remember(ctx, "other", until); err != nil || !rec.Fresh {
			t.Fatalf("other key: %v, %v", rec, err)
		}
	})
	t.Run("already expired is fresh and not stored", func(t *testing.T) {
		clk := newClock(testNow)
		s := newStore(t, clk)
		for i := 0; i < 2; i++ {
			if rec, err := s.Remember(ctx, "k", testNow.Add(-time.Second)); err != nil || !rec.Fresh {
				t.Fatalf("use %d: %v, %v", i, rec, err)
			}
		}
	})
	t.Run("concurrent uses: exactly one fresh", func(t *testing.T) {
		s := newStore(t, newClock(testNow))
		var wg sync.WaitGroup
		var fresh atomic.Int32
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec, err := s.Remember(ctx, "race", testNow.Add(time.Minute))
				if err != nil {
					t.Error(err)
				}
				if rec.Fresh {
					fresh.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := fresh.Load(); n != 1 {
			t.Fatalf("%d concurrent uses were fresh, want 1", n)
		}
	})
}

func TestMemoryReplayStore(t *testing.T) {
	replayStoreSuite(t, func(t *testing.T, clk *clock) ReplayStore {
		return NewMemoryReplayStore(100, clk.Now)
	})
}

func TestMemoryReplayStoreForgetsAtExpiry(t *testing.T) {
	clk := newClock(testNow)
	s := NewMemoryReplayStore(2, clk.Now)
	ctx := context.Background()
	remember := func(key string, until time.Time, want bool, wantErr error) {
		t.Helper()
		rec, err := s.Remember(ctx, key, until)
		if rec.Fresh != want || !errors.Is(err, wantErr) {
			t.Fatalf("Remember(%s) = %v, %v; want %v, %v", key, rec.Fresh, err, want, wantErr)
		}
	}
	remember("a", testNow.Add(10*time.Second), true, nil)
	remember("b", testNow.Add(20*time.Second), true, nil)
	// Full of unexpired IDs: refuse rather than forget one.
	remember("c", testNow.Add(30*time.Second), false, errReplayStoreFull)
	clk.Advance(10 * time.Second)
	// "a" expired and is evicted, making room.
	remember("c", testNow.Add(30*time.Second), true, nil)
	remember("b", testNow.Add(20*time.Second), false, nil)
	remember("a", testNow.Add(40*time.Second), false, errReplayStoreFull)
	clk.Advance(time.Minute)
	if n := s.Len(); n != 2 {
		t.Fatalf("Len before eviction = %d", n)
	}
	remember("a", testNow.Add(2*time.Minute), true, nil)
	if n := s.Len(); n != 1 {
		t.Fatalf("Len after eviction = %d, want 1", n)
	}
}

func TestRedisReplayStore(t *testing.T) {
	replayStoreSuite(t, func(t *testing.T, clk *clock) ReplayStore {
		client, prefix := testenv.Redis(t)
		return &RedisReplayStore{Client: client, Prefix: prefix, Now: clk.Now}
	})
}

func TestRedisReplayStoreExpiry(t *testing.T) {
	client, prefix := testenv.Redis(t)
	now := time.Now()
	s := &RedisReplayStore{Client: client, Prefix: prefix, Now: func() time.Time { return now }}
	ctx := context.Background()
	if _, err := s.Remember(ctx, "k", now.Add(65*time.Second)); err != nil {
		t.Fatal(err)
	}
	ttl, err := client.PTTL(ctx, prefix+"k").Result()
	if err != nil {
		t.Fatal(err)
	}
	// The key lives as long as the token can be valid, never shorter.
	if ttl <= 60*time.Second || ttl > 65*time.Second+time.Millisecond {
		t.Fatalf("PTTL = %s, want about 65s", ttl)
	}
}

// TestRedisUnreachableFailsClosed points a Verifier at a Redis that is not
// there: the token is refused with 503, never accepted.
func TestRedisUnreachableFailsClosed(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = client.Close() })
	k := newK256(t)
	v := newTestVerifier(t, &staticKeys{keys: map[string]atcrypto.PublicKey{testDID: pub(t, k)}}, func(c *Config) {
		c.Replay = &RedisReplayStore{Client: client, Prefix: "cairn-test:", Now: func() time.Time { return testNow }}
	})
	_, err := v.Verify(context.Background(), sign(t, k, hdrFor(algES256K), goodClaims("j")), testNSID)
	if !errors.Is(err, ErrReplayUnavailable) {
		t.Fatalf("Verify = %v, want ErrReplayUnavailable", err)
	}
	if xe := authfail.XRPCError(err); xe.Status != 503 || xe.Header.Get("Retry-After") == "" {
		t.Fatalf("XRPCError = %d %v", xe.Status, xe.Header)
	}
}

// TestReplayAcrossVerifiersSharingRedis runs two Verifiers with separate
// Redis clients (as two gateway nodes would have) against one Redis: a token
// used on one is refused on the other.
func TestReplayAcrossVerifiersSharingRedis(t *testing.T) {
	c1, prefix := testenv.Redis(t)
	c2 := redis.NewClient(c1.Options())
	t.Cleanup(func() { _ = c2.Close() })
	k := newP256(t)
	keys := &staticKeys{keys: map[string]atcrypto.PublicKey{testDID: pub(t, k)}}
	redisSince(t, c1, prefix, testNow.Add(-time.Hour))
	node := func(c *redis.Client) *Verifier {
		return newTestVerifier(t, keys, func(cfg *Config) {
			cfg.Replay = &RedisReplayStore{Client: c, Prefix: prefix, Now: func() time.Time { return testNow }}
		})
	}
	n1, n2 := node(c1), node(c2)
	for i := 0; i < 3; i++ {
		tok := sign(t, k, hdrFor(algES256), goodClaims(fmt.Sprintf("cross-%d", i)))
		first, second := n1, n2
		if i%2 == 1 {
			first, second = n2, n1
		}
		if _, err := first.Verify(context.Background(), tok, testNSID); err != nil {
			t.Fatalf("token %d on first node: %v", i, err)
		}
		if _, err := second.Verify(context.Background(), tok, testNSID); !errors.Is(err, ErrReplayed) {
			t.Fatalf("token %d replayed on second node: %v, want ErrReplayed", i, err)
		}
	}
}

// TestVerifyRefusesTokensIssuedBeforeTheMemory: a store's memory begins at
// since; a token issued before since+Leeway may have been used before and
// is refused as JwtExpired (mint a new one), a later one is accepted.
func TestVerifyRefusesTokensIssuedBeforeTheMemory(t *testing.T) {
	k := newK256(t)
	keys := &staticKeys{keys: map[string]atcrypto.PublicKey{testDID: pub(t, k)}}
	since := testNow.Add(-DefaultLeeway)
	store := NewMemoryReplayStore(0, func() time.Time { return since })
	v := newTestVerifier(t, keys, func(c *Config) { c.Replay = store })
	for _, c := range []struct {
		iat  time.Time
		want error
	}{
		{since.Add(-time.Minute), ErrIssuedBeforeReplayMemory},
		{since, ErrIssuedBeforeReplayMemory},
		{since.Add(DefaultLeeway - time.Second), ErrIssuedBeforeReplayMemory},
		{since.Add(DefaultLeeway), nil},
	} {
		claims := goodClaims(fmt.Sprint("iat-", c.iat.Unix()))
		claims["iat"], claims["exp"] = c.iat.Unix(), c.iat.Add(time.Minute).Unix()
		_, err := v.Verify(context.Background(), sign(t, k, hdrFor(algES256K), claims), testNSID)
		if !errors.Is(err, c.want) && (c.want != nil || err != nil) {
			t.Errorf("iat %s after the memory began: %v, want %v", c.iat.Sub(since), err, c.want)
		}
		if c.want != nil {
			if xe := authfail.XRPCError(err); xe.Status != 401 || xe.Name != "JwtExpired" || !strings.Contains(xe.Message, "mint a new one") {
				t.Errorf("XRPCError = %d %s %q", xe.Status, xe.Name, xe.Message)
			}
		}
	}
}

// TestRedisReplayStoreDetectsLostMemory runs the store against a Redis of
// its own: the memory begins at first use; a FLUSHALL, a restart without
// persistence and a restart that restores a snapshot (same keys, new
// run_id) each move it to a moment after the loss, the same for every store
// sharing that Redis; while nothing is lost it stays put; an outage is an
// error, not a loss.
func TestRedisReplayStoreDetectsLostMemory(t *testing.T) {
	rs := testenv.StartRedisServer(t)
	ctx := context.Background()
	node := func() *RedisReplayStore {
		c := redis.NewClient(&redis.Options{Addr: rs.Addr(), MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		return &RedisReplayStore{Client: c, Prefix: "cairn:jti:"}
	}
	a, b := node(), node()
	remember := func(s *RedisReplayStore, key string, fresh bool) time.Time {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			rec, err := s.Remember(ctx, key, time.Now().Add(time.Minute))
			if err != nil && time.Now().Before(deadline) {
				// A pooled connection broken by a restart; not a loss.
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil || rec.Fresh != fresh {
				t.Fatalf("Remember(%s) = %+v, %v; want fresh %v", key, rec, err, fresh)
			}
			return rec.Since
		}
	}
	same := func(what string, got, want time.Time) {
		t.Helper()
		if !got.Equal(want) {
			t.Fatalf("%s: memory since %v, want %v", what, got, want)
		}
	}
	// lost checks that the memory now begins after before, on both stores.
	lost := func(what string, before time.Time, onA, onB string) time.Time {
		t.Helper()
		since := remember(b, onA, true) // forgotten: fresh, but the memory says so
		if since.Before(before) {
			t.Fatalf("%s: memory since %v, before the loss at %v", what, since, before)
		}
		same(what+", on A", remember(a, onB, true), since)
		return since
	}

	before := time.Now().Truncate(time.Millisecond)
	start := remember(a, "k1", true)
	if start.Before(before) {
		t.Fatalf("memory since %v, before its first use at %v", start, before)
	}
	same("k1 again on B", remember(b, "k1", false), start)
	same("k2 on B", remember(b, "k2", true), start)

	before = time.Now().Truncate(time.Millisecond)
	if err := rs.Client(t).FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	flushed := lost("after FLUSHALL", before, "k1", "k2")
	same("k1 again on A", remember(a, "k1", false), flushed)

	before = time.Now().Truncate(time.Millisecond)
	rs.Restart(t, false)
	lost("after a restart without persistence", before, "k1", "k2")

	// A restart that keeps the data (a snapshot, which can miss the last
	// writes) is a new process: its run_id differs.
	rs.Save(t)
	remember(a, "k3", true)
	before = time.Now().Truncate(time.Millisecond)
	rs.Restart(t, true)
	reloaded := lost("after a restart from a snapshot", before, "k3", "k4")
	same("k2 (in the snapshot) on A", remember(a, "k2", false), reloaded)

	rs.Stop(t)
	if _, err := a.Remember(ctx, "k5", time.Now().Add(time.Minute)); err == nil {
		t.Fatal("Remember with Redis down succeeded")
	}
}

// FuzzParseMemory feeds arbitrary values of the Redis memory record to its
// parser: it never panics, accepts only "<ms> <run_id>", and what it
// accepts formats back to the same value.
func FuzzParseMemory(f *testing.F) {
	for _, seed := range []string{formatMemory(testNow, "abc123"), "", " ", "1 ", " x", "-1 x", "9223372036854775807 id", "12.5 id", "1 a b", "x y"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		since, runID, ok := parseMemory(v)
		if !ok {
			return
		}
		if runID == "" || since.UnixMilli() < 0 {
			t.Fatalf("parseMemory(%q) = %v, %q", v, since, runID)
		}
		if again := formatMemory(since, runID); again != v {
			t.Fatalf("parseMemory(%q) formats back as %q", v, again)
		}
	})
}
