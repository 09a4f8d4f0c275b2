package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for RedisConfig.
const (
	// DefaultRedisPrefix is put before every key a RedisStore writes.
	DefaultRedisPrefix = "cairn:rl:"
	// DefaultRedisTimeout bounds one decision's round trip to Redis.
	DefaultRedisTimeout = 500 * time.Millisecond
)

// ErrNoRedisClient is returned by NewRedisStore when RedisConfig.Client is
// nil.
var ErrNoRedisClient = errors.New("redis rate limit: no Redis client configured")

// allowScript is redis_rate v10's allowN script (itself from
// github.com/rwz/redis-gcra, MIT) with the cost fixed at 1 and the key taken
// as given, so callers choose the whole key prefix. Keeping its arithmetic
// unchanged keeps RedisStore's decisions identical to redis_rate's and to
// MemoryStore's. Time is Redis's own clock, so nodes with skewed clocks
// still agree.
//
// It returns {allowed, remaining, retry_after, reset_after}, the durations
// as strings of seconds.
var allowScript = redis.NewScript(`
-- this script has side-effects, so it requires replicate commands mode
redis.replicate_commands()

local rate_limit_key = KEYS[1]
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local period = tonumber(ARGV[3])

local emission_interval = period / rate
local burst_offset = emission_interval * burst

-- seconds since 2017-01-01 keep enough float precision until 2048
local jan_1_2017 = 1483228800
local now = redis.call("TIME")
now = (now[1] - jan_1_2017) + (now[2] / 1000000)

local tat = redis.call("GET", rate_limit_key)
if not tat then
  tat = now
else
  tat = tonumber(tat)
end
tat = math.max(tat, now)

local new_tat = tat + emission_interval
local allow_at = new_tat - burst_offset
local diff = now - allow_at
local remaining = diff / emission_interval

if remaining < 0 then
  return {0, 0, tostring(diff * -1), tostring(tat - now)}
end

local reset_after = new_tat - now
if reset_after > 0 then
  redis.call("SET", rate_limit_key, new_tat, "EX", math.ceil(reset_after))
end
return {1, remaining, "0", tostring(reset_after)}
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
	if cfg.Client == nil {
		return nil, ErrNoRedisClient
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultRedisPrefix
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultRedisTimeout
	}
	return &RedisStore{client: cfg.Client, prefix: cfg.Prefix, timeout: cfg.Timeout}, nil
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
		burst, l.Rate, l.Period.Seconds()).Slice()
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
func parseReply(reply []any) (Result, error) {
	if len(reply) != 4 {
		return Result{}, fmt.Errorf("unexpected script reply %v", reply)
	}
	allowed, ok1 := reply[0].(int64)
	remaining, ok2 := reply[1].(int64)
	retry, ok3 := reply[2].(string)
	reset, ok4 := reply[3].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 {
		return Result{}, fmt.Errorf("unexpected script reply %v", reply)
	}
	retryAfter, err := parseSeconds(retry)
	if err != nil {
		return Result{}, fmt.Errorf("parse retry_after: %w", err)
	}
	resetAfter, err := parseSeconds(reset)
	if err != nil {
		return Result{}, fmt.Errorf("parse reset_after: %w", err)
	}
	return Result{
		Allowed:    allowed == 1,
		Remaining:  int(remaining),
		RetryAfter: retryAfter,
		ResetAfter: resetAfter,
	}, nil
}

func parseSeconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(f * float64(time.Second)), nil
}
