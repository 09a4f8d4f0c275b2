package realtime

import (
	"context"
	"sync"
)

// Notifier carries wake-ups between the nodes that share a store. A
// wake-up is only a conversation id: subscribers read the events
// themselves, so a lost or duplicated wake-up costs a read, never an event
// (a subscription also re-reads on resume).
//
// The in-process LocalNotifier serves a single node (the embedded SQLite
// default). A multi-node implementation (PostgreSQL LISTEN/NOTIFY, Redis
// pub/sub) publishes to the shared channel and calls every listener for
// ids received from any node, its own included.
type Notifier interface {
	// Publish announces that convoID has new committed events. It must not
	// block for long: it is called on the write path, after the commit.
	Publish(ctx context.Context, convoID string) error
	// Listen calls fn with every announced conversation id until stop is
	// called. fn must not block. A notifier that may have lost
	// announcements (a dropped connection) calls fn with the empty id once
	// it is back: every subscription then re-reads all its conversations.
	Listen(fn func(convoID string)) (stop func())
}

// LocalNotifier is the in-process Notifier: Publish calls the listeners
// directly.
type LocalNotifier struct {
	mu        sync.RWMutex
	next      int
	listeners map[int]func(string)
}

// NewLocalNotifier returns an in-process Notifier.
func NewLocalNotifier() *LocalNotifier {
	return &LocalNotifier{listeners: make(map[int]func(string))}
}

// Publish calls every listener with convoID.
func (n *LocalNotifier) Publish(_ context.Context, convoID string) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	for _, fn := range n.listeners {
		fn(convoID)
	}
	return nil
}

// Listen registers fn.
func (n *LocalNotifier) Listen(fn func(string)) (stop func()) {
	n.mu.Lock()
	id := n.next
	n.next++
	n.listeners[id] = fn
	n.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			n.mu.Lock()
			delete(n.listeners, id)
			n.mu.Unlock()
		})
	}
}

var _ Notifier = (*LocalNotifier)(nil)
