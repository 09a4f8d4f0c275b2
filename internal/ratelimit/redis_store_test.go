package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

func newTestRedisStore(t *testing.T) (*RedisStore, *redis.Client, string) {
	t.Helper()
	client, prefix := testenv.Redis(t)
	s, err := NewRedisStore(RedisConfig{Client: client, Prefix: prefix})
	testenv.Must(t, err, "new redis store")
	return s, client, prefix
}

func TestRedisStoreSuite(t *testing.T) {
	runLimiterSuite(t, func(t *testing.T) suiteHarness {
		s, _, _ := newTestRedisStore(t)
		start := time.Now()
		return suiteHarness{
			lim:     s,
			elapsed: func() time.Duration { return time.Since(start) },
			// Redis reports whole microseconds, rounded down.
			wait: func(d time.Duration) { time.Sleep(d + time.Microsecond) },
		}
	})
}

func TestRedisStoreKeysUnderPrefix(t *testing.T) {
	s, client, prefix := newTestRedisStore(t)
	l := Limit{Rate: 1, Period: time.Hour}
	mustAllow(t, s, "zone|192.0.2.1", l)
	ttl, err := client.TTL(context.Background(), prefix+"zone|192.0.2.1").Result()
	testenv.Must(t, err, "ttl")
	// The key expires as soon as it is idle again: after one interval.
	if ttl < 59*time.Minute || ttl > time.Hour {
		t.Fatalf("TTL of %q = %s, want about one hour", prefix+"zone|192.0.2.1", ttl)
	}
}

func TestRedisStoreIgnoresForeignValue(t *testing.T) {
	s, client, prefix := newTestRedisStore(t)
	testenv.Must(t, client.Set(context.Background(), prefix+"k", "not a number", time.Minute).Err(), "set")
	res := mustAllow(t, s, "k", Limit{Rate: 5, Period: time.Hour})
	if !res.Allowed || res.Remaining != 4 {
		t.Fatalf("Allow over a non-numeric value = %+v, want a fresh key's answer", res)
	}
}

// TestRedisStoreMatchesRedisRate runs the same request sequences through
// RedisStore and through redis_rate v10 itself, on the same Redis: the
// decisions are the same, and Remaining is the exact count, which
// redis_rate's float arithmetic sometimes reports one lower.
func TestRedisStoreMatchesRedisRate(t *testing.T) {
	s, client, prefix := newTestRedisStore(t)
	ref := redis_rate.NewLimiter(client)
	ctx := context.Background()
	limits := []Limit{
		{Rate: 60, Period: time.Hour, Burst: 6},
		{Rate: 3, Period: time.Hour, Burst: 3},
		{Rate: 7, Period: time.Hour, Burst: 7},
		{Rate: 7, Period: time.Minute, Burst: 4},
		{Rate: 100, Period: time.Hour, Burst: 1},
	}
	for i, l := range limits {
		refKey := fmt.Sprintf("%sref:%d", prefix, i) // redis_rate adds "rate:"
		t.Cleanup(func() { client.Del(context.Background(), "rate:"+refKey) })
		for n := 1; n <= l.Burst+2; n++ {
			got := mustAllow(t, s, fmt.Sprintf("ours:%d", i), l)
			want, err := ref.Allow(ctx, refKey, redis_rate.Limit{Rate: l.Rate, Period: l.Period, Burst: l.Burst})
			testenv.Must(t, err, "redis_rate allow")
			exact := max(l.Burst-n, 0)
			if got.Allowed != (want.Allowed == 1) || got.Remaining != exact ||
				(want.Remaining != exact && want.Remaining != exact-1) {
				t.Fatalf("%s request %d: ours allowed=%v remaining=%d; redis_rate allowed=%d remaining=%d; exact remaining %d",
					l, n, got.Allowed, got.Remaining, want.Allowed, want.Remaining, exact)
			}
		}
	}
}

// TestRedisStoreCombinedLimit is two gateway processes, each with its own
// client and store, sharing one Redis: together they admit one burst.
func TestRedisStoreCombinedLimit(t *testing.T) {
	_, _, prefix := newTestRedisStore(t)
	opts, err := redis.ParseURL(testenv.RedisURL())
	testenv.Must(t, err, "parse redis url")
	var nodes []*RedisStore
	for i := 0; i < 2; i++ {
		c := redis.NewClient(opts)
		t.Cleanup(func() { _ = c.Close() })
		s, err := NewRedisStore(RedisConfig{Client: c, Prefix: prefix})
		testenv.Must(t, err, "new redis store")
		nodes = append(nodes, s)
	}
	l := Limit{Rate: 100, Period: time.Hour, Burst: 10}
	admitted := []int{0, 0}
	for i := 0; i < 30; i++ {
		if mustAllow(t, nodes[i%2], "send|did:plc:alice", l).Allowed {
			admitted[i%2]++
		}
	}
	if admitted[0]+admitted[1] != 10 || admitted[0] != 5 {
		t.Fatalf("nodes admitted %v of 30 alternating requests, want 5 each: one combined burst of 10", admitted)
	}
}

func TestRedisStoreErrors(t *testing.T) {
	if _, err := NewRedisStore(RedisConfig{}); !errors.Is(err, ErrNoRedisClient) {
		t.Fatalf("NewRedisStore without a client: %v, want ErrNoRedisClient", err)
	}
	// Nothing listens on port 1; the error says where it came from.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	s, err := NewRedisStore(RedisConfig{Client: c})
	testenv.Must(t, err, "new redis store")
	_, err = s.Allow(context.Background(), "k", Limit{Rate: 1, Period: time.Second})
	if err == nil {
		t.Fatal("Allow against a closed port succeeded")
	}
	if errors.Is(err, ErrInvalidLimit) {
		t.Fatalf("backend error %v wraps ErrInvalidLimit", err)
	}
}
