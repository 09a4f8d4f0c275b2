package atpauth

import (
	"context"
	"errors"
	"fmt"
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
			fresh, err := s.Remember(ctx, "k", until)
			if err != nil || fresh != want {
				t.Fatalf("use %d: Remember = %v, %v; want %v", i, fresh, err, want)
			}
		}
		if fresh, err := s.Remember(ctx, "other", until); err != nil || !fresh {
			t.Fatalf("other key: %v, %v", fresh, err)
		}
	})
	t.Run("already expired is fresh and not stored", func(t *testing.T) {
		clk := newClock(testNow)
		s := newStore(t, clk)
		for i := 0; i < 2; i++ {
			if fresh, err := s.Remember(ctx, "k", testNow.Add(-time.Second)); err != nil || !fresh {
				t.Fatalf("use %d: %v, %v", i, fresh, err)
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
				ok, err := s.Remember(ctx, "race", testNow.Add(time.Minute))
				if err != nil {
					t.Error(err)
				}
				if ok {
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
		fresh, err := s.Remember(ctx, key, until)
		if fresh != want || !errors.Is(err, wantErr) {
			t.Fatalf("Remember(%s) = %v, %v; want %v, %v", key, fresh, err, want, wantErr)
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
