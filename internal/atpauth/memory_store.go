package atpauth

import (
	"container/heap"
	"context"
	"errors"
	"sync"
	"time"
)

// DefaultMemoryReplayEntries is the capacity of a MemoryReplayStore created
// with a non-positive size.
const DefaultMemoryReplayEntries = 1 << 20

// errReplayStoreFull is returned when every slot of a MemoryReplayStore holds
// an unexpired token ID.
var errReplayStoreFull = errors.New("in-memory replay store is full of unexpired token IDs")

// MemoryReplayStore is a ReplayStore for a single gateway process. It holds
// at most a fixed number of token IDs and forgets each when it expires. When
// it is full of unexpired IDs it refuses new ones (failing closed) rather
// than forget an ID that could still be replayed. Its memory begins when it
// is created (at process start: the cairn app keeps one across reloads), so
// tokens issued before then are refused by the Verifier.
type MemoryReplayStore struct {
	max   int
	now   func() time.Time
	since time.Time

	mu      sync.Mutex
	entries map[string]time.Time
	byExp   expiryHeap
}

// NewMemoryReplayStore returns an empty store holding at most maxEntries
// token IDs (DefaultMemoryReplayEntries when maxEntries ≤ 0). now is the
// clock; nil means time.Now.
func NewMemoryReplayStore(maxEntries int, now func() time.Time) *MemoryReplayStore {
	if maxEntries <= 0 {
		maxEntries = DefaultMemoryReplayEntries
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplayStore{max: maxEntries, now: now, since: now(), entries: map[string]time.Time{}}
}

// Since returns when the store's memory began: when it was created.
func (s *MemoryReplayStore) Since() time.Time { return s.since }

// Remember implements ReplayStore.
func (s *MemoryReplayStore) Remember(_ context.Context, key string, until time.Time) (Recall, error) {
	fresh, err := s.remember(key, until)
	return Recall{Fresh: fresh, Since: s.since}, err
}

func (s *MemoryReplayStore) remember(key string, until time.Time) (bool, error) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.byExp) > 0 && !s.byExp[0].until.After(now) {
		e := heap.Pop(&s.byExp).(expiry)
		if u, ok := s.entries[e.key]; ok && u.Equal(e.until) {
			delete(s.entries, e.key)
		}
	}
	if u, ok := s.entries[key]; ok && u.After(now) {
		return false, nil
	}
	if !until.After(now) {
		// Already expired: nothing could replay it later, and the
		// verifier refuses expired tokens anyway.
		return true, nil
	}
	if len(s.entries) >= s.max {
		return false, errReplayStoreFull
	}
	s.entries[key] = until
	heap.Push(&s.byExp, expiry{key: key, until: until})
	return true, nil
}

// Len returns the number of token IDs currently held, expired or not.
func (s *MemoryReplayStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}

// expiry is one heap element: a key and when it stops mattering.
type expiry struct {
	key   string
	until time.Time
}

// expiryHeap is a min-heap of expiries, soonest first.
type expiryHeap []expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
