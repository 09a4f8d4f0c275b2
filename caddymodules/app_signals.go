package caddymodules

import (
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
)

// signalsPoolKey names the process's in-memory adaptive-signal records.
const signalsPoolKey = "cairn.ratelimit.signals"

// LocalSignals returns the process's in-memory records of the adaptive
// rate-limit signals (first seen, churn), shared by every cairn_rate_limit
// handler and kept across reloads, so a reload does not make every account
// new again.
func (a *App) LocalSignals() *ratelimit.MemorySignals {
	// The constructor cannot fail.
	s, _ := shared(a, signalsPoolKey, func() (*ratelimit.MemorySignals, func() error, error) {
		return ratelimit.NewMemorySignals(ratelimit.MemoryConfig{}), nil, nil
	})
	return s
}

// SharedSignals returns the signal records in the app's Redis, falling
// back to LocalSignals while the limiter f finds Redis down or a call
// fails. It must only be called when RedisClient is not nil.
func (a *App) SharedSignals(f *ratelimit.Failover) (ratelimit.SignalStore, error) {
	shared, err := ratelimit.NewRedisSignals(ratelimit.RedisConfig{Client: a.redis, Prefix: "cairn:rl:"})
	if err != nil {
		return nil, err
	}
	return &ratelimit.SignalFailover{
		Shared:  shared,
		Local:   a.LocalSignals(),
		Up:      f.Up,
		OnError: func(error) { a.metrics.BackendError("redis", "signals") },
	}, nil
}

// SignalRecorder returns the recorder of the adaptive signals kept in
// memory (f nil: LocalSignals) or in Redis (SharedSignals over f), made
// by the first cairn_rate_limit handler of this config that asks and
// shared by the rest, so that a request passing two handlers with
// `signals` is recorded once: a membership call counts as one churn call.
// The recorder belongs to this config (its handlers' signals blocks decide
// what it records); the records themselves outlive reloads.
func (a *App) SignalRecorder(f *ratelimit.Failover) (*ratelimit.SignalRecorder, error) {
	a.limitersMu.Lock()
	defer a.limitersMu.Unlock()
	backend := backendMemory
	if f != nil {
		backend = backendRedis
	}
	if r, ok := a.recorders[backend]; ok {
		return r, nil
	}
	var store ratelimit.SignalStore = a.LocalSignals()
	if f != nil {
		var err error
		if store, err = a.SharedSignals(f); err != nil {
			return nil, err
		}
	}
	r := ratelimit.NewSignalRecorder(store)
	if a.recorders == nil {
		a.recorders = map[string]*ratelimit.SignalRecorder{}
	}
	a.recorders[backend] = r
	return r, nil
}
