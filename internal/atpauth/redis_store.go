package atpauth

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisReplayTimeout bounds one Redis round trip of a
// RedisReplayStore with a zero Timeout.
const DefaultRedisReplayTimeout = time.Second

// RedisReplayStore is a ReplayStore shared by every gateway node through
// Redis: each token ID is a key set with SET NX and an expiry, so a token
// replayed on another node is refused. Keys hold no identity: the Verifier
// passes a hash of issuer and jti.
type RedisReplayStore struct {
	// Client is the Redis client (a *redis.Client, *redis.ClusterClient
	// or ring). Required.
	Client redis.Cmdable
	// Prefix is prepended to every key, e.g. "cairn:jti:".
	Prefix string
	// Timeout bounds each Redis call. Default 1s.
	Timeout time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Remember implements ReplayStore with one SET key 1 NX PX ttl. Any Redis
// error is returned: the caller must then treat the token as possibly
// replayed.
func (s *RedisReplayStore) Remember(ctx context.Context, key string, until time.Time) (bool, error) {
	if s.Client == nil {
		return false, fmt.Errorf("redis replay store has no client")
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	ttl := until.Sub(now())
	if ttl <= 0 {
		return true, nil
	}
	// Redis expiries have millisecond resolution; round up so the key
	// never outlives the token by less than nothing.
	ttl = ttl.Truncate(time.Millisecond) + time.Millisecond
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultRedisReplayTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fresh, err := s.Client.SetNX(ctx, s.Prefix+key, 1, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("redis SET NX: %w", err)
	}
	return fresh, nil
}
