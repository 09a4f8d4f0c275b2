package realtime

import (
	"context"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// shallowStore runs the store reads the hub makes on a short-lived
// goroutine of their own. A stream's goroutines live as long as the
// connection, and a goroutine's stack keeps the size its deepest call
// needed until a garbage collection finds it mostly unused: one call into
// the SQLite driver (C translated to Go, with large frames) would leave
// tens of kilobytes on every open stream. Spawning a goroutine costs about
// a microsecond, against tens of microseconds for the read.
type shallowStore struct {
	Store
}

// detached runs fn on a new goroutine and waits for it.
func detached[T any](fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := fn()
		ch <- result{v, err}
	}()
	r := <-ch
	return r.v, r.err
}

func (s shallowStore) EventsAfter(ctx context.Context, convoIDs []string, after int64, limit int) ([]store.Event, error) {
	return detached(func() ([]store.Event, error) { return s.Store.EventsAfter(ctx, convoIDs, after, limit) })
}

func (s shallowStore) EventHorizon(ctx context.Context) (store.EventHorizon, error) {
	return detached(func() (store.EventHorizon, error) { return s.Store.EventHorizon(ctx) })
}

func (s shallowStore) MessagesByID(ctx context.Context, convoID string, msgIDs []string) ([]store.Message, error) {
	return detached(func() ([]store.Message, error) { return s.Store.MessagesByID(ctx, convoID, msgIDs) })
}

func (s shallowStore) ActiveMember(ctx context.Context, convoID, memberDID string) (store.Member, error) {
	return detached(func() (store.Member, error) { return s.Store.ActiveMember(ctx, convoID, memberDID) })
}

func (s shallowStore) Members(ctx context.Context, convoIDs []string, includeLeft bool) (map[string][]store.Member, error) {
	return detached(func() (map[string][]store.Member, error) { return s.Store.Members(ctx, convoIDs, includeLeft) })
}

func (s shallowStore) UserConvos(ctx context.Context, userDID string) ([]store.UserConvo, error) {
	return detached(func() ([]store.UserConvo, error) { return s.Store.UserConvos(ctx, userDID) })
}
