package atpauth

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisReplayTimeout bounds one Redis round trip of a
// RedisReplayStore with a zero Timeout.
const DefaultRedisReplayTimeout = time.Second

// RedisMemoryKey is the key, under a RedisReplayStore's Prefix, that records
// when Redis's memory of used token IDs began and which Redis server process
// (INFO's run_id) began it. Token ID keys are hex digests and never collide
// with it.
const RedisMemoryKey = "memory-since"

// RedisReplayStore is a ReplayStore shared by every gateway node through
// Redis: each token ID is a key set with SET NX and an expiry, so a token
// replayed on another node is refused. Keys hold no identity: the Verifier
// passes a hash of issuer and jti.
//
// It detects that Redis lost its memory, not only that Redis is down. In
// the same pipeline as each SET NX (so ordered after it, on the same server)
// it reads RedisMemoryKey and the server's run_id. The key is missing after
// a flush or a restart without persistence; the run_id differs from the one
// recorded after any restart (a snapshot may predate the last writes) or a
// failover to a replica (which may have missed them). Either way the memory
// begins anew: the store records the present with the current run_id, and
// reports it as Recall.Since, so every node sharing the Redis refuses tokens
// issued before it. A missing key on first use is indistinguishable from a
// flush and is treated the same way. The moment recorded is read from
// Redis's clock, so gateway clocks must agree with it within the Verifier's
// leeway.
//
// It needs one Redis primary (with or without replicas), not a Redis
// Cluster, whose keys and run_ids live on several servers, and a
// maxmemory-policy that does not evict the keys (noeviction).
type RedisReplayStore struct {
	// Client is the Redis client. Required.
	Client redis.Cmdable
	// Prefix is prepended to every key, e.g. "cairn:jti:".
	Prefix string
	// Timeout bounds each Redis call. Default 1s.
	Timeout time.Duration
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Remember implements ReplayStore with one pipeline: SET key 1 NX PX ttl,
// GET of RedisMemoryKey and INFO server; and, when Redis's memory was lost,
// a second call recording that it begins now. Any Redis error is returned:
// the caller must then treat the token as possibly replayed.
func (s *RedisReplayStore) Remember(ctx context.Context, key string, until time.Time) (Recall, error) {
	if s.Client == nil {
		return Recall{}, fmt.Errorf("redis replay store has no client")
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	pipe := s.Client.Pipeline()
	var set *redis.BoolCmd
	// An already expired token cannot be replayed later (and the
	// verifier refuses it anyway): nothing to record.
	if ttl := until.Sub(s.now()); ttl > 0 {
		// Redis expiries have millisecond resolution; round up so the
		// key never outlives the token by less than nothing.
		set = pipe.SetNX(ctx, s.Prefix+key, 1, ttl.Truncate(time.Millisecond)+time.Millisecond)
	}
	mem := pipe.Get(ctx, s.Prefix+RedisMemoryKey)
	info := pipe.Info(ctx, "server")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return Recall{}, fmt.Errorf("redis replay pipeline: %w", err)
	}
	rec := Recall{Fresh: true}
	if set != nil {
		fresh, err := set.Result()
		if err != nil {
			return Recall{}, fmt.Errorf("redis SET NX: %w", err)
		}
		rec.Fresh = fresh
	}
	runID, err := runIDOf(info)
	if err != nil {
		return Recall{}, err
	}
	recorded, err := mem.Result()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return Recall{}, fmt.Errorf("redis GET %s: %w", RedisMemoryKey, err)
	default:
		if since, id, ok := parseMemory(recorded); ok && id == runID {
			rec.Since = since
			return rec, nil
		}
	}
	// Flushed, restarted or failed over since the record (or never
	// recorded): the memory begins now, after this call's SET NX. "Now" is
	// Redis's clock, read by the script that writes the record, so no loss
	// can fall between the moment recorded and the write.
	ms, err := beginMemory.Run(ctx, s.Client, []string{s.Prefix + RedisMemoryKey}, runID).Int64()
	if err != nil {
		return Recall{}, fmt.Errorf("redis record %s: %w", RedisMemoryKey, err)
	}
	rec.Since = time.UnixMilli(ms)
	return rec, nil
}

// beginMemory records that Redis's memory begins now, by Redis's clock, with
// the run_id given, and returns that time in Unix milliseconds. A script runs
// atomically, so nothing is lost between reading the clock and the write.
var beginMemory = redis.NewScript(`
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], string.format('%d', ms) .. ' ' .. ARGV[1])
return ms
`)

// Begin records, if Redis holds no record of it (or one of another run_id),
// that its memory of used token IDs begins now, and returns when it began. Remember does the same
// on first use; calling Begin when a gateway starts moves the refusal of
// earlier tokens from the first request to the start.
func (s *RedisReplayStore) Begin(ctx context.Context) (time.Time, error) {
	// An until in the past records no key, only the memory's start.
	rec, err := s.Remember(ctx, "", time.Time{})
	return rec.Since, err
}

func (s *RedisReplayStore) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *RedisReplayStore) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultRedisReplayTimeout
}

// runIDOf reads the run_id from an INFO server reply.
func runIDOf(info *redis.StringCmd) (string, error) {
	text, err := info.Result()
	if err != nil {
		return "", fmt.Errorf("redis INFO server: %w", err)
	}
	for _, line := range strings.Split(text, "\n") {
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok && id != "" {
			return id, nil
		}
	}
	return "", errors.New("redis INFO server: no run_id")
}

// formatMemory and parseMemory encode RedisMemoryKey's value: the start of
// the memory in Unix milliseconds and the run_id, separated by a space.
func formatMemory(since time.Time, runID string) string {
	return strconv.FormatInt(since.UnixMilli(), 10) + " " + runID
}

func parseMemory(v string) (time.Time, string, bool) {
	ms, runID, ok := strings.Cut(v, " ")
	if !ok || runID == "" {
		return time.Time{}, "", false
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != ms {
		return time.Time{}, "", false
	}
	return time.UnixMilli(n), runID, true
}
