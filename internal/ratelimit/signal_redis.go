package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// observeScript records one request of an account and returns
// {age in ms, churn count}. KEYS: the first-seen record, the churn
// counter. ARGV: forget (ms), churn window (ms, 0 for none), 1 to count
// this request as churn. Time is Redis's own clock, so nodes agree.
//
// The first-seen record holds the time in milliseconds and lives for
// forget after the last request, so an account idle for longer counts as
// new again. The churn counter is a fixed window: it expires one window
// after its first call.
var observeScript = redis.NewScript(`
redis.replicate_commands()
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local first = tonumber(redis.call("GET", KEYS[1])) or now
redis.call("SET", KEYS[1], string.format("%d", first), "PX", ARGV[1])
local churn = 0
if tonumber(ARGV[2]) > 0 then
  if ARGV[3] == "1" then
    churn = redis.call("INCR", KEYS[2])
    if churn == 1 then
      redis.call("PEXPIRE", KEYS[2], ARGV[2])
    end
  else
    churn = tonumber(redis.call("GET", KEYS[2])) or 0
  end
end
return {now - first, churn}
`)

// RedisSignals is a SignalStore in Redis: every node using the same Redis
// and prefix sees one record per account. Each observation is one script
// call; records expire in Redis.
type RedisSignals struct {
	client  redis.Scripter
	prefix  string
	timeout time.Duration
}

// NewRedisSignals returns a RedisSignals over the client, prefix and
// timeout of cfg (the defaults as for a RedisStore). The keys are
// <prefix>sig|{<key>}|seen and …|churn; the braces keep both in one
// Redis Cluster slot.
func NewRedisSignals(cfg RedisConfig) (*RedisSignals, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &RedisSignals{client: cfg.Client, prefix: cfg.Prefix, timeout: cfg.Timeout}, nil
}

// Observe records one request of key in one round trip.
func (r *RedisSignals) Observe(ctx context.Context, key string, o Observation) (Observed, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	base := r.prefix + "sig|{" + key + "}|"
	churn := 0
	if o.Churn {
		churn = 1
	}
	reply, err := observeScript.Run(ctx, r.client, []string{base + "seen", base + "churn"},
		max(o.Forget.Milliseconds(), 1), o.ChurnWindow.Milliseconds(), churn).Int64Slice()
	if err != nil {
		return Observed{}, fmt.Errorf("redis adaptive signals: run script: %w", err)
	}
	if len(reply) != 2 {
		return Observed{}, fmt.Errorf("redis adaptive signals: unexpected script reply %v", reply)
	}
	return Observed{Age: time.Duration(reply[0]) * time.Millisecond, Churn: int(reply[1])}, nil
}
