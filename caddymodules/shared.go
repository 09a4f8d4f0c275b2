package caddymodules

import "github.com/caddyserver/caddy/v2"

// sharedState holds what must outlive a config reload: Redis clients (keyed
// by URL), the store, the realtime node and the metrics collectors. A
// caddy.UsagePool is Caddy's idiom for this (the reverse proxy keeps its
// upstream hosts the same way): each config holds a reference while it is
// loaded, and the value is destroyed when the last config using it is
// unloaded.
var sharedState = caddy.NewUsagePool()

const (
	metricsPoolKey      = "cairn.metrics"
	localLimiterPoolKey = "cairn.ratelimit.memory"
	logHasherPoolKey    = "cairn.log-hasher"
	replayPoolKey       = "cairn.auth.replay"
	resolverPoolPrefix  = "cairn.auth.resolver:"
	storePoolPrefix     = "cairn.store:"
)

// shared returns the process-wide value under key, building it on first use,
// and records this app's reference so Cleanup releases it. build returns the
// value and how to destroy it (nil when nothing needs closing).
func shared[T any](a *App, key string, build func() (T, func() error, error)) (T, error) {
	v, _, err := sharedState.LoadOrNew(key, func() (caddy.Destructor, error) {
		val, destroy, err := build()
		if err != nil {
			return nil, err
		}
		return destructible[T]{val, destroy}, nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	a.poolMu.Lock()
	a.poolKeys = append(a.poolKeys, key)
	a.poolMu.Unlock()
	return v.(destructible[T]).v, nil
}

// destructible wraps a shared value for the usage pool.
type destructible[T any] struct {
	v       T
	destroy func() error
}

// Destruct is part of caddy.Destructor.
func (d destructible[T]) Destruct() error {
	if d.destroy == nil {
		return nil
	}
	return d.destroy()
}
