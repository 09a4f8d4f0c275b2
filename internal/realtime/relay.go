package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"
)

// relay is what the multi-node notifiers share: the node's id, the local
// listeners, and the publishing side. Publish wakes this node's listeners
// at once and queues the id for the other nodes; one goroutine sends the
// queue, coalesced (a conversation woken ten times while a send is under
// way goes out once), and keeps what failed for the next attempt, so the
// write path never waits on the network.
type relay struct {
	node    string
	local   *LocalNotifier
	send    func(ctx context.Context, payload string) error
	onError func(error)
	retry   time.Duration

	mu      sync.Mutex
	pending map[string]struct{}
	kick    chan struct{}
}

// newRelay returns a relay with a fresh random node id; run must be
// started for it to send.
func newRelay(send func(ctx context.Context, payload string) error, onError func(error), retry time.Duration) (*relay, error) {
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("node id: %w", err)
	}
	if onError == nil {
		onError = func(error) {}
	}
	if retry <= 0 {
		retry = time.Second
	}
	return &relay{
		node: hex.EncodeToString(id), local: NewLocalNotifier(), send: send, onError: onError, retry: retry,
		pending: make(map[string]struct{}), kick: make(chan struct{}, 1),
	}, nil
}

// publish wakes the local listeners and queues convoID for the others.
func (r *relay) publish(ctx context.Context, convoID string) {
	_ = r.local.Publish(ctx, convoID)
	r.mu.Lock()
	r.pending[convoID] = struct{}{}
	r.mu.Unlock()
	r.wake()
}

func (r *relay) wake() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// received handles a payload from the shared channel: "<node>:<convoId>".
// A node's own payloads coming back, and malformed ones, are dropped.
func (r *relay) received(ctx context.Context, payload string) {
	node, convoID, ok := strings.Cut(payload, ":")
	if !ok || node == r.node || convoID == "" {
		return
	}
	_ = r.local.Publish(ctx, convoID)
}

// lost tells the local listeners that announcements may have been missed
// (the connection to the channel was down): every subscription re-reads.
func (r *relay) lost(ctx context.Context) { _ = r.local.Publish(ctx, "") }

// run sends the queue until ctx ends.
func (r *relay) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		r.mu.Lock()
		ids := make([]string, 0, len(r.pending))
		for id := range r.pending {
			ids = append(ids, id)
		}
		clear(r.pending)
		r.mu.Unlock()
		for i, id := range ids {
			sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := r.send(sctx, r.node+":"+id)
			cancel()
			if err == nil {
				continue
			}
			r.onError(fmt.Errorf("realtime notifier: publish: %w", err))
			// Keep what was not sent and try again after a pause.
			r.mu.Lock()
			for _, id := range ids[i:] {
				r.pending[id] = struct{}{}
			}
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(r.retry):
			}
			r.wake()
			break
		}
	}
}
