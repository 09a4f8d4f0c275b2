// Package ratelimit is the GCRA (generic cell rate algorithm) limiter behind
// the cairn_rate_limit Caddy module.
//
// A [Limiter] decides one request at a time for an opaque key under a
// [Limit]. Two backends share one behaviour: [MemoryStore] keeps state in
// process (one node, or a fallback), [RedisStore] keeps it in Redis so that
// several gateway nodes enforce one combined limit. [Failover] puts the two
// together and decides what happens when Redis is unreachable.
//
// The algorithm and its burst semantics are those of
// github.com/go-redis/redis_rate/v10, computed in integer microseconds on
// both backends, so the same Limit gives the same decisions and the same
// numbers on either.
//
// [Zones] is what the cairn_rate_limit handler calls once per request: named
// zones (operators' own and the documented presets, [PresetZones]), each a
// [Limit] keyed by client IP or verified DID with match conditions and
// "otherwise" fallbacks. It turns a [Request] — plain values the adapter
// reads from the HTTP request — into the zones that apply, builds their keys
// from keyed hashes (never a raw IP or DID), and decides.
//
// The package knows nothing of Caddy: the adapter supplies the client IP as
// Caddy's trusted-proxies logic determined it and the DID only from a
// verified token, and it writes the response.
package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidLimit is returned, wrapped, for a Limit or rate string that the
// limiter cannot enforce.
var ErrInvalidLimit = errors.New("invalid rate limit")

// Bounds on a Limit. They keep the arithmetic within int64 nanoseconds and
// reject configurations that are almost certainly typos.
const (
	// MaxRate is the largest accepted Rate.
	MaxRate = 1_000_000
	// MaxBurst is the largest accepted Burst.
	MaxBurst = 1_000_000
	// MinPeriod is the shortest accepted Period.
	MinPeriod = time.Millisecond
	// MaxPeriod is the longest accepted Period.
	MaxPeriod = 24 * time.Hour
	// MinInterval is the shortest accepted time between two requests at the
	// sustained rate (Period/Rate); Redis clocks have microsecond resolution.
	MinInterval = time.Microsecond
	// MaxBurstWindow is the longest accepted time for a spent burst to refill
	// (Burst*Period/Rate).
	MaxBurstWindow = 7 * 24 * time.Hour
)

// Limit is a GCRA limit: Rate requests per Period sustained, of which up to
// Burst may arrive at once.
//
// The semantics are exactly those of redis_rate v10: a key that has been
// idle for long enough admits Burst requests back to back, then one more
// every Period/Rate. Burst 0 means Burst = Rate, so "60/1m" with no burst
// admits 60 requests at once and then one per second.
type Limit struct {
	// Rate is the number of requests admitted per Period once a burst is
	// spent.
	Rate int
	// Period is the window Rate is counted over.
	Period time.Duration
	// Burst is the number of requests admitted back to back by an idle key.
	// Zero means Rate.
	Burst int
}

// EffectiveBurst returns Burst, or Rate when Burst is zero.
func (l Limit) EffectiveBurst() int {
	if l.Burst == 0 {
		return l.Rate
	}
	return l.Burst
}

// Interval returns the time between two requests at the sustained rate,
// Period/Rate truncated to a whole microsecond, the resolution both
// backends compute in. It is zero for a Limit with no Rate.
func (l Limit) Interval() time.Duration {
	if l.Rate <= 0 {
		return 0
	}
	return (l.Period / time.Duration(l.Rate)).Truncate(time.Microsecond)
}

// String renders the limit as "rate/period burst N", the way an operator
// writes it.
func (l Limit) String() string {
	return fmt.Sprintf("%d/%s burst %d", l.Rate, l.Period, l.EffectiveBurst())
}

// Validate reports whether the limiter can enforce l. Its errors wrap
// ErrInvalidLimit and are written for an operator reading `caddy validate`.
func (l Limit) Validate() error {
	switch {
	case l.Rate < 1 || l.Rate > MaxRate:
		return fmt.Errorf("%w: rate %d must be between 1 and %d", ErrInvalidLimit, l.Rate, MaxRate)
	case l.Period < MinPeriod || l.Period > MaxPeriod:
		return fmt.Errorf("%w: period %s must be between %s and %s", ErrInvalidLimit, l.Period, MinPeriod, MaxPeriod)
	case l.Burst < 0 || l.Burst > MaxBurst:
		return fmt.Errorf("%w: burst %d must be between 0 (meaning the rate) and %d", ErrInvalidLimit, l.Burst, MaxBurst)
	}
	interval := l.Interval()
	if interval < MinInterval {
		return fmt.Errorf("%w: %d/%s allows one request every %s; the limiter's resolution is %s, so lower the rate or lengthen the period",
			ErrInvalidLimit, l.Rate, l.Period, l.Period/time.Duration(l.Rate), MinInterval)
	}
	if b := int64(l.EffectiveBurst()); b > int64(MaxBurstWindow/interval) {
		return fmt.Errorf("%w: a burst of %d at %d/%s takes longer than %s to refill; lower the burst or raise the rate",
			ErrInvalidLimit, b, l.Rate, l.Period, MaxBurstWindow)
	}
	return nil
}

// ParseRate parses a rate written as "<requests>/<period>", such as "60/1m",
// "3/1h", "100/1s" or "10/30s". The period is a Go duration ("1m30s") or a
// bare unit ("s", "m", "h") meaning one of it. The result is checked against
// the same bounds as Limit.Validate, with the default burst; errors wrap
// ErrInvalidLimit.
func ParseRate(s string) (rate int, period time.Duration, err error) {
	n, p, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("%w: rate %q must look like 60/1m (requests/period)", ErrInvalidLimit, s)
	}
	if n == "" || strings.TrimLeft(n, "0123456789") != "" {
		return 0, 0, fmt.Errorf("%w: rate %q: %q is not a whole number of requests", ErrInvalidLimit, s, n)
	}
	rate, err = strconv.Atoi(n)
	if err != nil || rate < 1 || rate > MaxRate {
		return 0, 0, fmt.Errorf("%w: rate %q: the number of requests must be between 1 and %d", ErrInvalidLimit, s, MaxRate)
	}
	switch p {
	case "s", "m", "h":
		p = "1" + p
	}
	period, err = time.ParseDuration(p)
	if err != nil || strings.HasPrefix(p, "-") || strings.HasPrefix(p, "+") {
		return 0, 0, fmt.Errorf("%w: rate %q: %q is not a period such as 1s, 30s, 1m or 1h", ErrInvalidLimit, s, p)
	}
	if err := (Limit{Rate: rate, Period: period}).Validate(); err != nil {
		return 0, 0, fmt.Errorf("rate %q: %w", s, err)
	}
	return rate, period, nil
}
