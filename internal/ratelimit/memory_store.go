package ratelimit

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// Defaults for MemoryConfig.
const (
	// DefaultMaxKeys bounds a MemoryStore to roughly 1M tracked keys.
	DefaultMaxKeys = 1 << 20
	// DefaultSweepInterval is how often each shard drops idle keys.
	DefaultSweepInterval = time.Minute
)

// memShards is the number of independently locked shards. A power of two, so
// the shard is a mask of the key's hash.
const memShards = 64

// evictSample is how many entries a full shard looks at to choose a victim.
const evictSample = 8

// MemoryConfig configures a MemoryStore. The zero value is ready to use.
type MemoryConfig struct {
	// MaxKeys bounds the number of keys tracked at once; zero means
	// DefaultMaxKeys. It is rounded up to a multiple of the shard count (64). When a shard is full, admitting a new key first drops
	// an idle key or, failing that, the sampled key closest to idle, which
	// then starts over with a full burst. Memory is about MaxKeys times the
	// bytes per key reported by BenchmarkMemoryStoreBytesPerKey.
	MaxKeys int
	// SweepInterval is how often each shard drops its idle keys, lazily on
	// the next request that reaches it; zero means DefaultSweepInterval.
	SweepInterval time.Duration
	// Now is the clock; nil means time.Now. Tests inject a fake clock.
	Now func() time.Time
}

// MemoryStore is a Limiter that keeps GCRA state in process memory.
//
// A key costs one map entry: a 64-bit keyed hash of the key and its
// theoretical arrival time (TAT). Keys are hashed with a per-store random
// seed, so colliding keys cannot be chosen from outside; two keys that
// collide by chance share one limit, which among a million keys happens
// with a probability of about 3 in 10^8. A key whose TAT is
// in the past is indistinguishable from an unknown key, so idle keys are
// dropped by a lazy per-shard sweep without changing any decision. There is
// no background goroutine and nothing to close.
type MemoryStore struct {
	seed       maphash.Seed
	now        func() time.Time
	sweepEvery int64
	shardCap   int
	shards     [memShards]memShard
}

type memShard struct {
	mu        sync.Mutex
	tats      map[uint64]int64
	nextSweep int64
	// Pad to a cache line so neighbouring shard locks do not contend.
	_ [40]byte
}

// withDefaults returns cfg with its zero values replaced by the defaults.
func (cfg MemoryConfig) withDefaults() MemoryConfig {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg
}

// shardCap is how many keys one of the memShards shards holds.
func (cfg MemoryConfig) shardCap() int { return max((cfg.MaxKeys+memShards-1)/memShards, 1) }

// NewMemoryStore returns a MemoryStore configured by cfg.
func NewMemoryStore(cfg MemoryConfig) *MemoryStore {
	cfg = cfg.withDefaults()
	m := &MemoryStore{
		seed:       maphash.MakeSeed(),
		now:        cfg.Now,
		sweepEvery: int64(cfg.SweepInterval),
		shardCap:   cfg.shardCap(),
	}
	for i := range m.shards {
		m.shards[i].tats = make(map[uint64]int64)
	}
	return m
}

// Allow decides one request for key under l. It fails only for an invalid
// Limit.
func (m *MemoryStore) Allow(_ context.Context, key string, l Limit) (Result, error) {
	if err := l.Validate(); err != nil {
		return Result{}, fmt.Errorf("memory rate limit: %w", err)
	}
	return m.decide(maphash.String(m.seed, key), m.now().UnixNano(), l), nil
}

// allowKey is Allow for Zones: the key as bytes (hashed where they lie, so
// no key string is built), the time read once for all of a request's zones,
// and a Limit that Zones validated when it compiled the zone.
func (m *MemoryStore) allowKey(key []byte, now int64, l Limit) Result {
	return m.decide(maphash.Bytes(m.seed, key), now, l)
}

// decide runs GCRA at now for the key whose hash is h.
func (m *MemoryStore) decide(h uint64, now int64, l Limit) Result {
	s := &m.shards[h%memShards]

	s.mu.Lock()
	if now >= s.nextSweep {
		s.sweep(now)
		s.nextSweep = now + m.sweepEvery
	}
	tat, known := s.tats[h]
	newTAT, res := gcra(tat, now, l)
	if res.Allowed {
		if !known && len(s.tats) >= m.shardCap {
			s.evict(now)
		}
		s.tats[h] = newTAT
	}
	s.mu.Unlock()

	res.Source = SourceLocal
	return res
}

// Len returns the number of keys currently tracked, idle ones not yet swept
// included.
func (m *MemoryStore) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.tats)
		s.mu.Unlock()
	}
	return n
}

// sweep drops every idle key of the shard. The caller holds s.mu.
func (s *memShard) sweep(now int64) {
	for h, tat := range s.tats {
		if tat <= now {
			delete(s.tats, h)
		}
	}
}

// evict makes room in a full shard: it samples a few entries (map iteration
// starts at a random position), drops the idle ones among them, and if none
// was idle drops the one closest to idle, which loses the least state. The
// caller holds s.mu.
func (s *memShard) evict(now int64) {
	var (
		victim     uint64
		victimTAT  int64
		haveVictim bool
		dropped    bool
		seen       int
	)
	for h, tat := range s.tats {
		switch {
		case tat <= now:
			delete(s.tats, h)
			dropped = true
		case !haveVictim || tat < victimTAT:
			victim, victimTAT, haveVictim = h, tat, true
		}
		if seen++; seen >= evictSample {
			break
		}
	}
	if !dropped && haveVictim {
		delete(s.tats, victim)
	}
}
