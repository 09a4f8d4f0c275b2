package worker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/worker"
)

func TestGroupStartsEveryWorkerAndStopWaitsForThem(t *testing.T) {
	var g worker.Group
	started := make(chan string, 2)
	var returned atomic.Int32
	w := func(name string) worker.Worker {
		return worker.Func{WorkerName: name, Fn: func(ctx context.Context) {
			started <- name
			<-ctx.Done()
			returned.Add(1)
		}}
	}
	if err := g.Start(w("a"), w("b")); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{<-started: true, <-started: true}
	if !got["a"] || !got["b"] {
		t.Fatalf("started %v, want a and b", got)
	}
	if err := g.Start(w("c")); err == nil {
		t.Error("a second Start of a running group succeeded")
	}
	g.Stop()
	if n := returned.Load(); n != 2 {
		t.Fatalf("Stop returned with %d of 2 workers returned", n)
	}
	g.Stop() // idempotent
}

func TestStopOnANeverStartedGroupReturns(t *testing.T) {
	var g worker.Group
	g.Stop()
}

func TestAPanickingWorkerIsReportedAndTheOthersRun(t *testing.T) {
	panicked := make(chan error, 1)
	g := worker.Group{OnPanic: func(name string, err error) { panicked <- err }}
	running := make(chan struct{})
	if err := g.Start(
		worker.Func{WorkerName: "broken", Fn: func(context.Context) { panic("boom") }},
		worker.Func{WorkerName: "fine", Fn: func(ctx context.Context) { close(running); <-ctx.Done() }},
	); err != nil {
		t.Fatal(err)
	}
	err := <-panicked
	if err == nil || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic report %v: want the worker's name and the panic", err)
	}
	<-running
	g.Stop()
}
