package push

import (
	"sync"
	"sync/atomic"
)

// Queue holds the conversations that changed since the sender's last
// round. It sits between the delivery service and the sender: Add never
// blocks and never fails the write that called it, and the queue holds at
// most its capacity of conversations however fast they change or however
// slow the providers are. A conversation already queued is not queued
// twice, so a busy conversation costs one entry. Past capacity, new
// conversations are dropped and counted: their devices miss one wake-up,
// and catch up on their next sync or wake-up.
type Queue struct {
	mu      sync.Mutex
	pending map[string]struct{}
	max     int
	ready   chan struct{}
	dropped atomic.Uint64
	// OnDrop, if set before use, is called for each dropped conversation
	// (a metric); it must not block.
	OnDrop func()
}

// NewQueue returns a queue holding at most capacity conversations.
func NewQueue(capacity int) *Queue {
	if capacity < 1 {
		capacity = 1
	}
	return &Queue{pending: make(map[string]struct{}), max: capacity, ready: make(chan struct{}, 1)}
}

// Add queues a changed conversation, reporting false when the queue is
// full and it was dropped. It is safe to call from any goroutine and
// returns at once.
func (q *Queue) Add(convoID string) bool {
	q.mu.Lock()
	_, queued := q.pending[convoID]
	full := !queued && len(q.pending) >= q.max
	if !queued && !full {
		q.pending[convoID] = struct{}{}
	}
	q.mu.Unlock()
	if full {
		q.dropped.Add(1)
		if q.OnDrop != nil {
			q.OnDrop()
		}
		return false
	}
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// Ready is signalled after an Add; the sender waits on it.
func (q *Queue) Ready() <-chan struct{} { return q.ready }

// Take removes and returns up to n queued conversations.
func (q *Queue) Take(n int) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]string, 0, min(n, len(q.pending)))
	for id := range q.pending {
		if len(out) == n {
			break
		}
		out = append(out, id)
		delete(q.pending, id)
	}
	return out
}

// Len reports how many conversations are queued.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pending)
}

// Cap reports the queue's capacity.
func (q *Queue) Cap() int { return q.max }

// Dropped reports how many conversations were dropped because the queue
// was full.
func (q *Queue) Dropped() uint64 { return q.dropped.Load() }
