// Package worker runs a node's background workers: retention today, and
// later the backup scheduler, audit pruning and the push sender. A Worker
// is anything with a name that runs until its context ends; a Group starts
// a set of them and stops them together, waiting until each has returned.
//
// A worker that must run on one node of a cluster at a time takes a store
// lock itself (store.TryLock, as retention does each pass): the group only
// runs what it is given. It knows nothing of Caddy; the cairn app owns one
// group and starts it from its Start.
package worker

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
)

// Worker is one background task.
type Worker interface {
	// Name names the worker in logs and metrics; a short constant such as
	// "retention".
	Name() string
	// Run works until ctx is done, then returns promptly. It handles its
	// own errors (logs, metrics, retries): nothing reads a result.
	Run(ctx context.Context)
}

// Func adapts a function to a Worker.
type Func struct {
	WorkerName string
	Fn         func(ctx context.Context)
}

// Name implements Worker.
func (f Func) Name() string { return f.WorkerName }

// Run implements Worker.
func (f Func) Run(ctx context.Context) { f.Fn(ctx) }

// Group runs workers until it is stopped. The zero value is ready to use.
type Group struct {
	// OnPanic, if set, is told when a worker panics (the panic is
	// recovered, so one broken worker does not take the process down; it
	// stays stopped until the next start).
	OnPanic func(name string, err error)

	mu      sync.Mutex
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// Start runs each worker in its own goroutine. Starting a group that runs
// already is an error.
func (g *Group) Start(workers ...Worker) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cancel != nil {
		return fmt.Errorf("worker group: already started")
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	for _, w := range workers {
		g.running.Go(func() { g.run(ctx, w) })
	}
	return nil
}

func (g *Group) run(ctx context.Context, w Worker) {
	defer func() {
		if r := recover(); r != nil && g.OnPanic != nil {
			g.OnPanic(w.Name(), fmt.Errorf("worker %s panicked: %v\n%s", w.Name(), r, debug.Stack()))
		}
	}()
	w.Run(ctx)
}

// Stop cancels every worker's context and waits for all of them to
// return. It is safe to call more than once, and on a group never started.
func (g *Group) Stop() {
	g.mu.Lock()
	cancel := g.cancel
	g.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	g.running.Wait()
}
