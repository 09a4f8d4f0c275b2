package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Policy says what a Failover does while its shared store is unreachable.
type Policy uint8

// The backend-error policies, as written after on_backend_error.
const (
	// PolicyLocal limits from the local store until the shared store is
	// back. It is the zero value and the default.
	PolicyLocal Policy = iota
	// PolicyAllow admits every request (fail open).
	PolicyAllow
	// PolicyDeny refuses every request (fail closed).
	PolicyDeny
)

// ErrInvalidPolicy is returned, wrapped, by ParsePolicy.
var ErrInvalidPolicy = errors.New("invalid backend error policy")

// ParsePolicy parses "local", "allow" or "deny".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "local":
		return PolicyLocal, nil
	case "allow":
		return PolicyAllow, nil
	case "deny":
		return PolicyDeny, nil
	}
	return 0, fmt.Errorf("%w: %q must be local, allow or deny", ErrInvalidPolicy, s)
}

// String returns the policy as written in configuration.
func (p Policy) String() string {
	switch p {
	case PolicyLocal:
		return "local"
	case PolicyAllow:
		return "allow"
	case PolicyDeny:
		return "deny"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// DefaultProbeInterval is how often a Failover tries its shared store again
// while it is down.
const DefaultProbeInterval = time.Second

// ErrNoSharedStore is returned by NewFailover when FailoverConfig.Shared is
// nil.
var ErrNoSharedStore = errors.New("rate limit failover: no shared store configured")

// FailoverConfig configures a Failover.
type FailoverConfig struct {
	// Shared is the store every node shares, normally a RedisStore.
	// Required.
	Shared Limiter
	// Local decides under PolicyLocal while Shared is down; nil means a
	// MemoryStore with default settings and the Failover's clock.
	Local Limiter
	// Policy is what to do while Shared is down.
	Policy Policy
	// ProbeInterval is the least time between two attempts to reach Shared
	// while it is down; zero means DefaultProbeInterval. Requests in between
	// do not touch Shared at all.
	ProbeInterval time.Duration
	// OnTransition, if set, is called exactly once when Shared goes down
	// (up false, with the error that revealed it) and exactly once when it
	// answers again (up true, nil error); never once per request. Calls are
	// serialised and made with an internal lock held, so it must be quick
	// (log, set a gauge) and must not call back into the Failover.
	OnTransition func(up bool, err error)
	// Now is the clock for probe pacing; nil means time.Now.
	Now func() time.Time
}

// Failover is a Limiter that decides with a shared store while it answers
// and applies a Policy while it does not. Each Result's Source says which
// path decided, for counting in a metric.
//
// It assumes Shared is up until a call fails. After that, at most one
// request per ProbeInterval is sent to Shared (a probe, decided by Shared
// if it answers); every other request goes straight to the policy. The
// first probe that succeeds switches the Failover back to Shared.
type Failover struct {
	shared, local Limiter
	policy        Policy
	probeEvery    time.Duration
	onTransition  func(up bool, err error)
	now           func() time.Time

	down      atomic.Bool
	mu        sync.Mutex // serialises transitions, probe claims and callbacks
	lastProbe time.Time
}

// NewFailover returns a Failover configured by cfg.
func NewFailover(cfg FailoverConfig) (*Failover, error) {
	if cfg.Shared == nil {
		return nil, ErrNoSharedStore
	}
	if cfg.Policy > PolicyDeny {
		return nil, fmt.Errorf("rate limit failover: %w: %s", ErrInvalidPolicy, cfg.Policy)
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Local == nil && cfg.Policy == PolicyLocal {
		cfg.Local = NewMemoryStore(MemoryConfig{Now: cfg.Now})
	}
	return &Failover{
		shared:       cfg.Shared,
		local:        cfg.Local,
		policy:       cfg.Policy,
		probeEvery:   cfg.ProbeInterval,
		onTransition: cfg.OnTransition,
		now:          cfg.Now,
	}, nil
}

// Up reports whether the shared store is believed reachable.
func (f *Failover) Up() bool { return !f.down.Load() }

// Allow decides one request for key under l. It returns an error only for
// an invalid Limit, a cancelled or expired caller context, or a failing
// local store; an unreachable shared store is handled by the policy.
func (f *Failover) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	if err := l.Validate(); err != nil {
		return Result{}, fmt.Errorf("rate limit failover: %w", err)
	}
	probing := false
	if f.down.Load() {
		if probing = f.claimProbe(); !probing {
			return f.fallback(ctx, key, l)
		}
	}
	res, err := f.shared.Allow(ctx, key, l)
	if err == nil {
		if probing {
			f.markUp()
		}
		res.Source = SourceShared
		return res, nil
	}
	if ctx.Err() != nil {
		// The caller gave up; that says nothing about the shared store.
		return Result{}, fmt.Errorf("rate limit failover: %w", err)
	}
	f.markDown(err)
	return f.fallback(ctx, key, l)
}

// claimProbe reports whether this request should try the shared store,
// which is true for at most one request per probe interval.
func (f *Failover) claimProbe() bool {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.down.Load() {
		// Another probe brought the store back in the meantime.
		return true
	}
	if now.Sub(f.lastProbe) < f.probeEvery {
		return false
	}
	f.lastProbe = now
	return true
}

func (f *Failover) markDown(err error) {
	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastProbe = now
	if f.down.Load() {
		return
	}
	f.down.Store(true)
	if f.onTransition != nil {
		f.onTransition(false, err)
	}
}

func (f *Failover) markUp() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.down.Load() {
		return
	}
	f.down.Store(false)
	if f.onTransition != nil {
		f.onTransition(true, nil)
	}
}

// fallback decides by policy while the shared store is down.
func (f *Failover) fallback(ctx context.Context, key string, l Limit) (Result, error) {
	lim := l
	lim.Burst = l.EffectiveBurst()
	switch f.policy {
	case PolicyAllow:
		return Result{Allowed: true, Limit: lim, Source: SourceFailOpen}, nil
	case PolicyDeny:
		return Result{Limit: lim, RetryAfter: f.probeEvery, Source: SourceFailClosed}, nil
	}
	res, err := f.local.Allow(ctx, key, l)
	if err != nil {
		return Result{}, fmt.Errorf("rate limit failover: local store: %w", err)
	}
	res.Source = SourceFallback
	return res, nil
}
