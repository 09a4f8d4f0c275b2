package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for RedisConfig.
const (
	// DefaultRedisPrefix is put before every key a RedisStore writes.
	DefaultRedisPrefix = "cairn:rl:"
	// DefaultRedisTimeout bounds one decision's round trip to Redis.
	DefaultRedisTimeout = 250 * time.Millisecond
)

// ErrNoRedisClient is returned by NewRedisStore when RedisConfig.Client is
// nil.
var ErrNoRedisClient = errors.New("redis rate limit: no Redis client configured")

// allowScript is redis_rate v10's allowN script (itself from
// github.com/rwz/redis-gcra, MIT) with the cost fixed at 1, the key taken as
// given so callers choose the whole prefix, and the arithmetic done in
// integer microseconds instead of floating-point seconds. The float version
// loses a request in Remaining for common limits such as 100/1m (0.6 s is
// not a binary fraction, so a fresh key reports 98 left, not 99); in
// integers every value is exact and identical to MemoryStore's. Time is
// Redis's own clock, so nodes with skewed clocks still agree.
//
// ARGV: burst, interval in microseconds. It returns {allowed (0|1),
// remaining, retry_after, reset_after}, the durations in microseconds. The
// state is the key's TAT in microseconds since 2017-01-01, which stays
// exact in a Lua double for centuries.
var allowScript = redis.NewScript(`
-- this script has side effects and reads TIME: replicate effects, not the script
redis.replicate_commands()

local key = KEYS[1]
local burst = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])

local t = redis.call("TIME")
local now = (tonumber(t[1]) - 1483228800) * 1000000 + tonumber(t[2])

-- a missing key, or one holding anything but a number, is idle
local tat = tonumber(redis.call("GET", key)) or now
if tat < now then
  tat = now
end

local new_tat = tat + interval
local diff = now - (new_tat - interval * burst)
if diff < 0 then
  return {0, 0, -diff, tat - now}
end

local reset_after = new_tat - now
redis.call("SET", key, string.format("%d", new_tat), "PX", math.ceil(reset_after / 1000))
return {1, math.floor(diff / interval), 0, reset_after}
`)

// RedisConfig configures a RedisStore.
type RedisConfig struct {
	// Client is the Redis connection, shared with the rest of the process.
	// Required.
	Client redis.Scripter
	// Prefix is put before every key; empty means DefaultRedisPrefix. Nodes
	// that must share limits must use the same prefix.
	Prefix string
	// Timeout bounds each decision's round trip; zero means
	// DefaultRedisTimeout. A shorter deadline on the caller's context wins.
	Timeout time.Duration
}

// RedisStore is a Limiter whose state lives in Redis, so every node using
// the same Redis and prefix enforces one combined limit. Each decision is
// one script call (EVALSHA, falling back to EVAL once after a Redis
// restart), and each key expires in Redis as soon as it is idle.
type RedisStore struct {
	client  redis.Scripter
	prefix  string
	timeout time.Duration
}

// NewRedisStore returns a RedisStore configured by cfg.
func NewRedisStore(cfg RedisConfig) (*RedisStore, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &RedisStore{client: cfg.Client, prefix: cfg.Prefix, timeout: cfg.Timeout}, nil
}

// withDefaults returns cfg with its zero values replaced by the defaults,
// or ErrNoRedisClient.
func (cfg RedisConfig) withDefaults() (RedisConfig, error) {
	if cfg.Client == nil {
		return cfg, ErrNoRedisClient
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultRedisPrefix
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRedisTimeout
	}
	return cfg, nil
}

// Allow decides one request for key under l in one round trip to Redis.
func (r *RedisStore) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	if err := l.Validate(); err != nil {
		return Result{}, fmt.Errorf("redis rate limit: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()

	burst := l.EffectiveBurst()
	reply, err := allowScript.Run(ctx, r.client, []string{r.prefix + key},
		burst, l.Interval().Microseconds()).Int64Slice()
	if err != nil {
		return Result{}, fmt.Errorf("redis rate limit: run script: %w", err)
	}
	res, err := parseReply(reply)
	if err != nil {
		return Result{}, fmt.Errorf("redis rate limit: %w", err)
	}
	res.Limit = l
	res.Limit.Burst = burst
	res.Source = SourceShared
	return res, nil
}

// parseReply decodes allowScript's reply.
func parseReply(reply []int64) (Result, error) {
	if len(reply) != 4 {
		return Result{}, fmt.Errorf("unexpected script reply %v", reply)
	}
	return Result{
		Allowed:    reply[0] == 1,
		Remaining:  int(reply[1]),
		RetryAfter: time.Duration(reply[2]) * time.Microsecond,
		ResetAfter: time.Duration(reply[3]) * time.Microsecond,
	}, nil
}
