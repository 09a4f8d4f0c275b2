package audit

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultWindow is the aggregation window of authentication events.
const DefaultWindow = time.Minute

// maxSources bounds the distinct keys of each type one window holds;
// beyond it, further sources are counted in one overflow row, so memory and rows stay bounded
// whatever a flood does.
const maxSources = 1024

// Aggregator counts repeated events (operator authentication successes per
// operator, failures per source) and writes one row per key per window, so
// a flood of failed logins cannot fill the table.
type Aggregator struct {
	now func() time.Time

	mu      sync.Mutex
	start   time.Time
	entries map[aggKey]*aggEntry
	// perType counts the keys of each type, bounded separately so a flood
	// of failures cannot crowd out the successes.
	perType map[string]int
	dropped int64
}

type aggKey struct{ typ, actor, target string }

type aggEntry struct {
	count   int64
	method  string
	reasons map[string]int64
}

// NewAggregator returns an empty Aggregator; now defaults to time.Now.
func NewAggregator(now func() time.Time) *Aggregator {
	if now == nil {
		now = time.Now
	}
	return &Aggregator{now: now, entries: map[aggKey]*aggEntry{}, perType: map[string]int{}}
}

// Success counts an operator's successful authentication by method.
func (a *Aggregator) Success(operator, method string) {
	a.add(aggKey{TypeOperatorAuthOK, operator, ""}, method, "")
}

// Failure counts a refused credential from source (already a keyed hash,
// or "" when unknown) for reason.
func (a *Aggregator) Failure(source, reason string) {
	a.add(aggKey{TypeOperatorAuthFailed, "", source}, "", reason)
}

func (a *Aggregator) add(k aggKey, method, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.entries) == 0 {
		a.start = a.now()
	}
	e := a.entries[k]
	if e == nil {
		if a.perType[k.typ] >= maxSources {
			a.dropped++
			return
		}
		e = &aggEntry{method: method}
		a.entries[k] = e
		a.perType[k.typ]++
	}
	e.count++
	if reason != "" {
		if e.reasons == nil {
			e.reasons = map[string]int64{}
		}
		if len(e.reasons) < 16 {
			e.reasons[reason]++
		}
	}
}

// Flush records one event per key counted since the last flush, and one
// for the sources dropped over the bound. Counts of events it could not
// record are lost; the first error is returned.
func (a *Aggregator) Flush(ctx context.Context, rec Recorder) error {
	a.mu.Lock()
	entries, dropped, start := a.entries, a.dropped, a.start
	a.entries, a.dropped, a.perType = map[aggKey]*aggEntry{}, 0, map[string]int{}
	a.mu.Unlock()
	if len(entries) == 0 && dropped == 0 {
		return nil
	}
	end := a.now().UTC().Format(time.RFC3339)
	window := func(m map[string]any) map[string]any {
		m["window_start"], m["window_end"] = start.UTC().Format(time.RFC3339), end
		return m
	}
	keys := make([]aggKey, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y aggKey) int {
		if x.typ != y.typ {
			return strings.Compare(x.typ, y.typ)
		}
		if x.actor != y.actor {
			return strings.Compare(x.actor, y.actor)
		}
		return strings.Compare(x.target, y.target)
	})
	var first error
	for _, k := range keys {
		e := entries[k]
		m := window(map[string]any{"count": e.count})
		if e.method != "" {
			m["method"] = e.method
		}
		if e.reasons != nil {
			m["reasons"] = e.reasons
		}
		if err := rec.Record(ctx, Event{Type: k.typ, Actor: k.actor, Target: k.target, Metadata: m}); err != nil && first == nil {
			first = err
		}
	}
	if dropped > 0 {
		err := rec.Record(ctx, Event{Type: TypeOperatorAuthFailed, Target: "overflow",
			Metadata: window(map[string]any{"count": dropped, "sources_over_bound": true})})
		if err != nil && first == nil {
			first = err
		}
	}
	return first
}
