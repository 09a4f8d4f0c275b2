package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// MemorySignals is a SignalStore in process memory, sharded and bounded
// like MemoryStore: a record is a 64-bit keyed hash of the key, the first
// and last time it was seen and its churn window. Records are dropped once
// forgotten, lazily, and a full shard drops the record seen longest ago.
type MemorySignals struct {
	seed       maphash.Seed
	now        func() time.Time
	sweepEvery int64
	shardCap   int
	shards     [memShards]signalShard
}

type signalShard struct {
	mu        sync.Mutex
	records   map[uint64]signalRecord
	nextSweep int64
}

// signalRecord is one account's record, in Unix nanoseconds.
type signalRecord struct {
	first, forgetAt int64
	churnStart      int64
	churn           int
}

// NewMemorySignals returns a MemorySignals bounded and clocked by cfg, as
// a MemoryStore would be.
func NewMemorySignals(cfg MemoryConfig) *MemorySignals {
	cfg = cfg.withDefaults()
	m := &MemorySignals{
		seed:       maphash.MakeSeed(),
		now:        cfg.Now,
		sweepEvery: int64(cfg.SweepInterval),
		shardCap:   cfg.shardCap(),
	}
	for i := range m.shards {
		m.shards[i].records = make(map[uint64]signalRecord)
	}
	return m
}

// Observe records one request of key and returns its record. It does not
// fail.
func (m *MemorySignals) Observe(_ context.Context, key string, o Observation) (Observed, error) {
	now := m.now().UnixNano()
	h := maphash.String(m.seed, key)
	s := &m.shards[h%memShards]

	s.mu.Lock()
	defer s.mu.Unlock()
	if now >= s.nextSweep {
		for k, r := range s.records {
			if r.forgetAt <= now {
				delete(s.records, k)
			}
		}
		s.nextSweep = now + m.sweepEvery
	}
	r, known := s.records[h]
	if !known || r.forgetAt <= now {
		if !known && len(s.records) >= m.shardCap {
			s.evict()
		}
		r = signalRecord{first: now}
	}
	r.forgetAt = now + int64(o.Forget)
	if o.ChurnWindow > 0 {
		if r.churnStart+int64(o.ChurnWindow) <= now {
			r.churnStart, r.churn = now, 0
		}
		if o.Churn {
			r.churn++
		}
	}
	s.records[h] = r
	return Observed{Age: time.Duration(now - r.first), Churn: r.churn}, nil
}

// evict drops the sampled record due to be forgotten soonest. The caller
// holds s.mu.
func (s *signalShard) evict() {
	var (
		victim uint64
		at     int64
		seen   int
	)
	for h, r := range s.records {
		if seen == 0 || r.forgetAt < at {
			victim, at = h, r.forgetAt
		}
		if seen++; seen >= evictSample {
			break
		}
	}
	delete(s.records, victim)
}
