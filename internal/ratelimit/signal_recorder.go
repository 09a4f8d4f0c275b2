package ratelimit

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// SignalRecorder records the requests of verified callers in one
// SignalStore for every Zones that uses it. Zones over one store must
// share one SignalRecorder: a request that passes two of them is then
// recorded once, by the first (the second reads the record from the
// first's Admission in the request context), so a membership call counts
// as one churn call however many handlers see it.
//
// The Zones sharing a recorder may set different thresholds (how new is
// new, how many churn calls are too many, how large is large): those are
// read from the shared record. They must agree on what the record is:
// how long an account is remembered (forget, among the configurations
// that turn new_account on) and what one churn window is and counts (its
// length and methods, among those that turn high_churn on). Joining with a
// configuration that disagrees is an error. A request is recorded for
// every signal any of them turns on.
type SignalRecorder struct {
	store SignalStore
	// mu serializes join; record reads plan without it.
	mu   sync.Mutex
	plan atomic.Pointer[recordPlan]
}

// recordPlan is what a SignalRecorder records of each request: the union
// of the configurations that joined it.
type recordPlan struct {
	forget time.Duration
	// forgetSet reports that a configuration with new_account set forget;
	// until then forget is the longest of the others'.
	forgetSet bool
	// window is the churn window; zero counts no churn.
	window time.Duration
	nsids  []string
}

// NewSignalRecorder returns a recorder over store. It records nothing
// until a Zones with signals joins it (NewZones).
func NewSignalRecorder(store SignalStore) *SignalRecorder {
	r := &SignalRecorder{store: store}
	r.plan.Store(&recordPlan{forget: DefaultForget})
	return r
}

// join adds what c needs recorded, or says how c disagrees with the
// configurations that joined before it. c must be valid.
func (r *SignalRecorder) join(c *SignalConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := *r.plan.Load()
	switch {
	case c.NewAccount > 0 && p.forgetSet && c.Forget != p.forget:
		return fmt.Errorf("%w: forget %s differs from forget %s of another signals block that uses new_account on the same backend; they share one record per account, so give them the same forget", ErrInvalidSignal, c.Forget, p.forget)
	case c.NewAccount > 0:
		p.forget, p.forgetSet = c.Forget, true
	case !p.forgetSet:
		p.forget = max(p.forget, c.Forget)
	}
	if c.ChurnCalls > 0 {
		if p.window != 0 && c.ChurnWindow != p.window {
			return fmt.Errorf("%w: churn period %s differs from %s of another signals block on the same backend; churn is counted once per account, so give them the same period (the call counts may differ)", ErrInvalidSignal, c.ChurnWindow, p.window)
		}
		nsids := slices.Clone(c.ChurnNSIDs)
		slices.Sort(nsids)
		nsids = slices.Compact(nsids)
		if p.window != 0 && !slices.Equal(nsids, p.nsids) {
			return fmt.Errorf("%w: churn_methods %v differ from %v of another signals block on the same backend; churn is counted once per account, so give them the same churn_methods", ErrInvalidSignal, nsids, p.nsids)
		}
		p.window, p.nsids = c.ChurnWindow, nsids
	}
	r.plan.Store(&p)
	return nil
}

// record records one request for nsid by the account whose keyed hash is
// key.
func (r *SignalRecorder) record(ctx context.Context, key, nsid string) (Observed, error) {
	p := r.plan.Load()
	o := Observation{Forget: p.forget}
	if p.window > 0 {
		o.ChurnWindow = p.window
		o.Churn = nsid != "" && matchesAny(p.nsids, nsid, matchNSID)
	}
	return r.store.Observe(ctx, key, o)
}
