// Benchmarks for both limiter backends. Run them with
//
//	go test -run '^$' -bench . -benchmem ./internal/ratelimit
//
// Each reports decisions/s over 1M distinct keys; BenchmarkMemoryStoreBytes
// reports the memory store's bytes per tracked key. The Redis benchmarks
// need Redis at CAIRN_TEST_REDIS_URL (default redis://127.0.0.1:6379/0) and
// are skipped without it.
package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const benchKeyCount = 1_000_000

// benchKeys returns n distinct keys shaped like the adapter's: zone and
// IPv4 address.
func benchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("ip|10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)
	}
	return keys
}

// benchDecisions runs lim over keys, one key per decision, serially and
// from parallel goroutines (parallelism times GOMAXPROCS of them, as many
// concurrent requests would), and reports decisions per second.
func benchDecisions(b *testing.B, lim Limiter, keys []string, l Limit, parallelism int) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := lim.Allow(ctx, keys[i%len(keys)], l); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(parallelism)
		b.RunParallel(func(pb *testing.PB) {
			i := rand.IntN(len(keys))
			for pb.Next() {
				if _, err := lim.Allow(ctx, keys[i], l); err != nil {
					b.Error(err)
					return
				}
				if i++; i == len(keys) {
					i = 0
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
}

func BenchmarkMemoryStoreAllow(b *testing.B) {
	keys := benchKeys(benchKeyCount)
	m := NewMemoryStore(MemoryConfig{MaxKeys: 2 * benchKeyCount})
	l := Limit{Rate: 100, Period: time.Minute} // keys stay tracked for a minute
	for _, k := range keys {                   // steady state: every key tracked
		if _, err := m.Allow(context.Background(), k, l); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	benchDecisions(b, m, keys, l, 1)
}

// BenchmarkMemoryStoreAllowFull measures the eviction path: the store holds
// a quarter of the keys, so most decisions evict.
func BenchmarkMemoryStoreAllowFull(b *testing.B) {
	keys := benchKeys(benchKeyCount)
	m := NewMemoryStore(MemoryConfig{MaxKeys: benchKeyCount / 4})
	benchDecisions(b, m, keys, Limit{Rate: 100, Period: time.Minute}, 1)
}

func BenchmarkRedisStoreAllow(b *testing.B) {
	client, prefix := testenv.Redis(b)
	s, err := NewRedisStore(RedisConfig{Client: client, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	keys := benchKeys(benchKeyCount)
	b.ResetTimer()
	// Keys expire 10ms after their last request, so the benchmark leaves
	// nothing behind in Redis; the script's work is the same. Requests wait
	// on the network, so many run at once.
	benchDecisions(b, s, keys, Limit{Rate: 100, Period: time.Second}, 16)
}

func BenchmarkMemoryStoreBytesPerKey(b *testing.B) {
	keys := benchKeys(benchKeyCount)
	l := Limit{Rate: 1, Period: time.Hour}
	ctx := context.Background()
	var perKey float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()

		m := NewMemoryStore(MemoryConfig{MaxKeys: 2 * benchKeyCount})
		for _, k := range keys {
			if _, err := m.Allow(ctx, k, l); err != nil {
				b.Fatal(err)
			}
		}

		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		if n := m.Len(); n != len(keys) {
			b.Fatalf("store tracks %d keys, want %d", n, len(keys))
		}
		perKey = float64(after.HeapAlloc-before.HeapAlloc) / float64(len(keys))
		runtime.KeepAlive(m)
		b.StartTimer()
	}
	b.ReportMetric(perKey, "bytes/key")
}

// BenchmarkZonesSignals is the cost adaptive signals add to one verified
// request through the api preset: the zones alone, then with signals
// recorded in memory and in Redis (one more script call per request).
func BenchmarkZonesSignals(b *testing.B) {
	hasher := testHasher(b)
	run := func(b *testing.B, lim Limiter, cfg *SignalConfig, store SignalStore) {
		zs, err := NewZones(ZonesConfig{Presets: []string{"api"}, Limiter: lim, Hasher: hasher, Signals: cfg, Recorder: NewSignalRecorder(store)})
		if err != nil {
			b.Fatal(err)
		}
		req := Request{Method: "POST", Path: "/xrpc/blue.catbird.mls.sendMessage", NSID: "blue.catbird.mls.sendMessage"}
		dids := make([]string, 1000)
		for i := range dids {
			dids[i] = fmt.Sprintf("did:plc:bench%04d", i)
		}
		i := 0
		for b.Loop() {
			req.DID = dids[i%len(dids)]
			if _, err := zs.Allow(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	signals := func() *SignalConfig {
		return &SignalConfig{NewAccount: 7 * 24 * time.Hour, ChurnCalls: 20, ChurnWindow: time.Hour}
	}
	b.Run("memory/none", func(b *testing.B) { run(b, NewMemoryStore(MemoryConfig{}), nil, nil) })
	b.Run("memory/signals", func(b *testing.B) {
		run(b, NewMemoryStore(MemoryConfig{}), signals(), NewMemorySignals(MemoryConfig{}))
	})
	b.Run("redis/none", func(b *testing.B) {
		client, prefix := testenv.Redis(b)
		s, _ := NewRedisStore(RedisConfig{Client: client, Prefix: prefix})
		run(b, s, nil, nil)
	})
	b.Run("redis/signals", func(b *testing.B) {
		client, prefix := testenv.Redis(b)
		s, _ := NewRedisStore(RedisConfig{Client: client, Prefix: prefix})
		sig, _ := NewRedisSignals(RedisConfig{Client: client, Prefix: prefix})
		run(b, s, signals(), sig)
	})
}
