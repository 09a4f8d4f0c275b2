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
