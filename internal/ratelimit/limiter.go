package ratelimit

import "context"

// Limiter decides whether one more request for key fits within l.
//
// Keys are opaque: callers that apply different limits to the same subject
// (zones) must put the zone in the key, because state is kept per key, not
// per (key, limit). A Limiter returns an error wrapping ErrInvalidLimit for
// a Limit that fails Validate, and other errors only when its backend
// cannot answer.
type Limiter interface {
	Allow(ctx context.Context, key string, l Limit) (Result, error)
}

// LimiterFunc adapts a function to the Limiter interface.
type LimiterFunc func(ctx context.Context, key string, l Limit) (Result, error)

// Allow calls f.
func (f LimiterFunc) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	return f(ctx, key, l)
}
