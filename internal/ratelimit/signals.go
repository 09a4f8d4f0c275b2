package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Signal is one adaptive signal about a verified caller or the
// conversation it acts in. Zones tighten under a signal through their
// Modifiers, and the proof-of-work gate raises its difficulty. Its String
// values form a small, fixed set suitable as a metric label.
type Signal uint8

// The adaptive signals.
const (
	// SignalNewAccount: the account was first seen recently.
	SignalNewAccount Signal = iota + 1
	// SignalHighChurn: the account made many membership calls (joins,
	// leaves, adds, removals) in the churn window.
	SignalHighChurn
	// SignalLargeGroup: the conversation the call acts in has many members.
	// Only the delivery service knows a conversation's size, so this signal
	// is decided by Admission.AllowGroup, not by Zones.Allow.
	SignalLargeGroup
)

var signalNames = [...]string{"", "new_account", "high_churn", "large_group"}

// ErrInvalidSignal is returned, wrapped, for an unknown signal name or a
// signal configuration that cannot be enforced.
var ErrInvalidSignal = errors.New("invalid adaptive signal")

// ParseSignal parses a signal as written in configuration: new_account,
// high_churn or large_group.
func ParseSignal(s string) (Signal, error) {
	for sig := SignalNewAccount; sig <= SignalLargeGroup; sig++ {
		if signalNames[sig] == s {
			return sig, nil
		}
	}
	return 0, fmt.Errorf("%w: %q: want new_account, high_churn or large_group", ErrInvalidSignal, s)
}

// String returns the signal as written in configuration and in metric
// labels; "none" for the zero Signal.
func (s Signal) String() string {
	if s > 0 && int(s) < len(signalNames) {
		return signalNames[s]
	}
	return "none"
}

// MarshalText writes the signal's name, for JSON configuration.
func (s Signal) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a signal's name, for JSON configuration.
func (s *Signal) UnmarshalText(b []byte) error {
	v, err := ParseSignal(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Signals is the set of signals that hold for one request.
type Signals uint8

// Has reports whether sig holds.
func (s Signals) Has(sig Signal) bool { return s&(1<<sig) != 0 }

// With returns s with sig added.
func (s Signals) With(sig Signal) Signals { return s | 1<<sig }

// List returns the signals that hold, in the order of their constants.
func (s Signals) List() []Signal {
	var out []Signal
	for sig := SignalNewAccount; sig <= SignalLargeGroup; sig++ {
		if s.Has(sig) {
			out = append(out, sig)
		}
	}
	return out
}

// DefaultForget is how long a SignalConfig remembers an account it has not
// seen since, when Forget is zero.
const DefaultForget = 30 * 24 * time.Hour

// DefaultChurnNSIDs are the membership methods a SignalConfig counts as
// churn when ChurnNSIDs is empty: every call that joins, leaves, adds or
// removes.
var DefaultChurnNSIDs = []string{
	"blue.catbird.mls.createConvo",
	"blue.catbird.mls.addMembers",
	"blue.catbird.mls.removeMember",
	"blue.catbird.mls.leaveConvo",
	"blue.catbird.mls.processExternalCommit",
	"blue.catbird.mls.rejoin",
	"blue.catbird.mls.readdition",
}

// SignalConfig says when each signal holds. A zero threshold leaves its
// signal off.
type SignalConfig struct {
	// NewAccount: an account first seen less than this long ago is new.
	NewAccount time.Duration
	// Forget is how long an account's record is kept after it was last
	// seen; an account unseen for longer counts as new again. Zero means
	// DefaultForget; it must be at least NewAccount.
	Forget time.Duration
	// ChurnCalls and ChurnWindow: an account that made more than ChurnCalls
	// membership calls within one ChurnWindow (fixed windows starting at
	// its first such call) has high churn.
	ChurnCalls  int
	ChurnWindow time.Duration
	// ChurnNSIDs are the methods counted as churn, entries ending in ".*"
	// matching a namespace; empty means DefaultChurnNSIDs.
	ChurnNSIDs []string
	// LargeGroup: a conversation with at least this many members is large.
	LargeGroup int
}

// Enables reports whether c turns sig on.
func (c *SignalConfig) Enables(sig Signal) bool {
	switch sig {
	case SignalNewAccount:
		return c.NewAccount > 0
	case SignalHighChurn:
		return c.ChurnCalls > 0
	case SignalLargeGroup:
		return c.LargeGroup > 0
	}
	return false
}

// Validate checks c, with messages an operator can act on; it fills in
// the defaults of Forget and ChurnNSIDs.
func (c *SignalConfig) Validate() error {
	if c.Forget == 0 {
		c.Forget = DefaultForget
	}
	if len(c.ChurnNSIDs) == 0 {
		c.ChurnNSIDs = slices.Clone(DefaultChurnNSIDs)
	}
	switch {
	case c.NewAccount < 0 || c.NewAccount > 365*24*time.Hour:
		return fmt.Errorf("%w: new_account %s must be between 0 (off) and 365 days", ErrInvalidSignal, c.NewAccount)
	case c.Forget < c.NewAccount:
		return fmt.Errorf("%w: forget %s is shorter than new_account %s; an account would count as new again while still new", ErrInvalidSignal, c.Forget, c.NewAccount)
	case c.Forget > 365*24*time.Hour:
		return fmt.Errorf("%w: forget %s must be at most 365 days", ErrInvalidSignal, c.Forget)
	case c.ChurnCalls < 0 || c.ChurnCalls > MaxRate:
		return fmt.Errorf("%w: churn calls %d must be between 0 (off) and %d", ErrInvalidSignal, c.ChurnCalls, MaxRate)
	case c.ChurnCalls > 0 && (c.ChurnWindow < time.Second || c.ChurnWindow > MaxBurstWindow):
		return fmt.Errorf("%w: churn window %s must be between 1s and %s", ErrInvalidSignal, c.ChurnWindow, MaxBurstWindow)
	case c.LargeGroup < 0:
		return fmt.Errorf("%w: large_group %d must be 0 (off) or a member count", ErrInvalidSignal, c.LargeGroup)
	}
	return nil
}

// Observation is what a SignalStore records of one request.
type Observation struct {
	// Churn counts the request as a membership call.
	Churn bool
	// ChurnWindow is the length of a churn window; zero keeps no count.
	ChurnWindow time.Duration
	// Forget is how long the account's record lives after this request.
	Forget time.Duration
}

// Observed is what a SignalStore knows of an account after recording a
// request.
type Observed struct {
	// Age is the time since the account was first seen (zero on its first
	// request, or after it was forgotten).
	Age time.Duration
	// Churn is the number of membership calls in the current window, this
	// request included.
	Churn int
}

// SignalStore keeps the per-account records behind the new-account and
// high-churn signals. key is opaque to it, and is always a keyed hash.
// MemorySignals and RedisSignals pass one suite.
type SignalStore interface {
	Observe(ctx context.Context, key string, o Observation) (Observed, error)
}

// signalsFor decides which account signals hold for a record.
func (c *SignalConfig) signalsFor(o Observed) Signals {
	var s Signals
	if c.NewAccount > 0 && o.Age < c.NewAccount {
		s = s.With(SignalNewAccount)
	}
	if c.ChurnCalls > 0 && o.Churn > c.ChurnCalls {
		s = s.With(SignalHighChurn)
	}
	return s
}

// SignalFailover is a SignalStore that records in a shared store while it
// answers and in a local one while it does not, as Failover does for
// decisions under PolicyLocal: signals tighten limits, so losing them would
// loosen limits during an outage.
type SignalFailover struct {
	// Shared is normally a RedisSignals.
	Shared SignalStore
	// Local is used while Shared fails, normally a MemorySignals.
	Local SignalStore
	// Up, if set, reports whether the shared backend is believed
	// reachable (Failover.Up); while it reports false, Shared is not tried,
	// so a dead Redis adds no latency.
	Up func() bool
	// OnError, if set, is told of each shared-store error, for a metric.
	OnError func(error)
}

// Observe records in Shared, or in Local when Shared is down or fails.
func (f *SignalFailover) Observe(ctx context.Context, key string, o Observation) (Observed, error) {
	if f.Up == nil || f.Up() {
		got, err := f.Shared.Observe(ctx, key, o)
		if err == nil {
			return got, nil
		}
		if ctx.Err() != nil {
			return Observed{}, fmt.Errorf("adaptive signals: %w", err)
		}
		if f.OnError != nil {
			f.OnError(err)
		}
	}
	return f.Local.Observe(ctx, key, o)
}
