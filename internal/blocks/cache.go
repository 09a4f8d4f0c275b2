package blocks

import (
	"sync"
	"time"
)

// ttlCache is a bounded in-memory map whose entries are fresh for ttl.
// When full, it drops expired entries first, then arbitrary ones: it is a
// short-lived cache in front of a network source, not a store.
type ttlCache[K comparable, V any] struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[K]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v  V
	at time.Time
}

func newTTLCache[K comparable, V any](ttl time.Duration, max int, now func() time.Time) *ttlCache[K, V] {
	return &ttlCache[K, V]{ttl: ttl, max: max, now: now, m: map[K]ttlEntry[V]{}}
}

// get returns k's value if it is fresh.
func (c *ttlCache[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || c.now().Sub(e.at) >= c.ttl {
		var zero V
		return zero, false
	}
	return e.v, true
}

// put stores v for k as of now, making room when the cache is full.
func (c *ttlCache[K, V]) put(k K, v V) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old, e := range c.m {
			if now.Sub(e.at) >= c.ttl {
				delete(c.m, old)
			}
		}
		for old := range c.m {
			if len(c.m) < c.max {
				break
			}
			delete(c.m, old)
		}
	}
	c.m[k] = ttlEntry[V]{v: v, at: now}
}
