package ratelimit

import (
	"fmt"
	"hash/maphash"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestMemoryStoreSuite(t *testing.T) {
	runLimiterSuite(t, func(t *testing.T) suiteHarness {
		clk := newFakeClock()
		return suiteHarness{
			lim:     NewMemoryStore(MemoryConfig{Now: clk.Now}),
			elapsed: func() time.Duration { return 0 },
			wait:    clk.Advance,
		}
	})
}

func TestMemoryStoreRefill(t *testing.T) {
	l := Limit{Rate: 60, Period: time.Minute, Burst: 6} // the unauthenticated per-IP preset
	tests := []struct {
		name          string
		spend         int           // requests made at t0
		wait          time.Duration // then the clock advances
		wantAllowed   bool          // for the next request
		wantRemaining int
		wantRetry     time.Duration
		wantReset     time.Duration
	}{
		{name: "burst spent, no wait", spend: 6, wait: 0, wantRetry: time.Second, wantReset: 6 * time.Second},
		{name: "burst spent, almost one interval", spend: 6, wait: 999 * time.Millisecond, wantRetry: time.Millisecond, wantReset: 5001 * time.Millisecond},
		{name: "burst spent, one interval", spend: 6, wait: time.Second, wantAllowed: true, wantRemaining: 0, wantReset: 6 * time.Second},
		{name: "burst spent, three intervals", spend: 6, wait: 3 * time.Second, wantAllowed: true, wantRemaining: 2, wantReset: 4 * time.Second},
		{name: "burst spent, fully idle", spend: 6, wait: 6 * time.Second, wantAllowed: true, wantRemaining: 5, wantReset: time.Second},
		{name: "burst spent, long idle", spend: 6, wait: time.Hour, wantAllowed: true, wantRemaining: 5, wantReset: time.Second},
		{name: "half spent, half interval", spend: 3, wait: 500 * time.Millisecond, wantAllowed: true, wantRemaining: 2, wantReset: 3500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			m := NewMemoryStore(MemoryConfig{Now: clk.Now})
			for i := 0; i < tt.spend; i++ {
				mustAllow(t, m, "k", l)
			}
			clk.Advance(tt.wait)
			res := mustAllow(t, m, "k", l)
			want := Result{Allowed: tt.wantAllowed, Limit: l, Remaining: tt.wantRemaining,
				RetryAfter: tt.wantRetry, ResetAfter: tt.wantReset, Source: SourceLocal}
			if res != want {
				t.Fatalf("after spending %d and waiting %s: got %+v, want %+v", tt.spend, tt.wait, res, want)
			}
		})
	}
}

func TestMemoryStoreSustainedRate(t *testing.T) {
	// Over a long run at twice the rate, exactly burst + elapsed/interval
	// requests are admitted.
	clk := newFakeClock()
	m := NewMemoryStore(MemoryConfig{Now: clk.Now})
	l := Limit{Rate: 10, Period: time.Second, Burst: 5}
	allowed := 0
	for i := 0; i < 2000; i++ { // 2000 requests, one every 50ms: 100s
		if mustAllow(t, m, "k", l).Allowed {
			allowed++
		}
		clk.Advance(50 * time.Millisecond)
	}
	if want := 5 + 1000 - 1; allowed < want || allowed > want+1 {
		t.Fatalf("admitted %d of 2000 over 100s at 10/s burst 5, want %d or %d", allowed, want, want+1)
	}
}

func TestMemoryStoreSweepsIdleKeys(t *testing.T) {
	clk := newFakeClock()
	m := NewMemoryStore(MemoryConfig{Now: clk.Now, SweepInterval: time.Minute})
	short := Limit{Rate: 1, Period: time.Second}
	long := Limit{Rate: 1, Period: time.Hour}
	for i := 0; i < 1000; i++ {
		mustAllow(t, m, fmt.Sprintf("short:%d", i), short)
	}
	for i := 0; i < 10; i++ {
		mustAllow(t, m, fmt.Sprintf("long:%d", i), long)
	}
	if got := m.Len(); got != 1010 {
		t.Fatalf("Len = %d after 1010 keys, want 1010", got)
	}
	clk.Advance(time.Minute)
	// Sweeps are lazy: touch every shard once.
	for i := 0; i < 100*memShards; i++ {
		mustAllow(t, m, fmt.Sprintf("touch:%d", i), short)
	}
	clk.Advance(2 * time.Second)
	if got := m.Len(); got < 10 || got > 10+100*memShards {
		t.Fatalf("Len = %d, want the 10 live long keys plus at most the touch keys", got)
	}
	// The long keys survived the sweep with their state.
	for i := 0; i < 10; i++ {
		if res := mustAllow(t, m, fmt.Sprintf("long:%d", i), long); res.Allowed {
			t.Fatalf("long:%d admitted after the sweep; its state was lost", i)
		}
	}
}

func TestMemoryStoreBoundedKeys(t *testing.T) {
	tests := []struct {
		name    string
		maxKeys int
		keys    int
		period  time.Duration
	}{
		{name: "live keys", maxKeys: 4 * memShards, keys: 100 * memShards, period: time.Hour},
		{name: "idle keys", maxKeys: 4 * memShards, keys: 100 * memShards, period: time.Millisecond},
		{name: "cap below shard count", maxKeys: 1, keys: 10 * memShards, period: time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newFakeClock()
			m := NewMemoryStore(MemoryConfig{Now: clk.Now, MaxKeys: tt.maxKeys})
			l := Limit{Rate: 1, Period: tt.period}
			for i := 0; i < tt.keys; i++ {
				if res := mustAllow(t, m, fmt.Sprintf("k%d", i), l); !res.Allowed {
					t.Fatalf("new key k%d refused: a full store must evict, not refuse", i)
				}
				clk.Advance(time.Millisecond)
			}
			limit := max(tt.maxKeys, memShards) // at least one key per shard
			if got := m.Len(); got > limit {
				t.Fatalf("Len = %d, want at most %d", got, limit)
			}
		})
	}
}

func TestMemoryStoreEvictsClosestToIdle(t *testing.T) {
	// With one key per shard, a newcomer in a full shard evicts the only
	// other key there. With evictSample candidates the victim is the one
	// whose TAT is earliest, so a key that spent a lot keeps its state.
	clk := newFakeClock()
	m := NewMemoryStore(MemoryConfig{Now: clk.Now, MaxKeys: 2 * memShards})
	l := Limit{Rate: 1, Period: time.Minute, Burst: 10}
	// Find two keys in the same shard as "heavy".
	shardOf := func(k string) uint64 { return hashKey(m, k) % memShards }
	var same []string
	for i := 0; len(same) < 2; i++ {
		if k := fmt.Sprintf("k%d", i); shardOf(k) == shardOf("heavy") {
			same = append(same, k)
		}
	}
	for i := 0; i < 10; i++ {
		mustAllow(t, m, "heavy", l)
	}
	mustAllow(t, m, same[0], l) // light: one request
	mustAllow(t, m, same[1], l) // shard full: evicts the light key, not heavy
	if res := mustAllow(t, m, "heavy", l); res.Allowed {
		t.Fatalf("heavy key admitted: its state was evicted instead of the lighter key's")
	}
}

// hashKey is the hash MemoryStore files key under.
func hashKey(m *MemoryStore, key string) uint64 { return maphash.String(m.seed, key) }
