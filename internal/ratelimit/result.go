package ratelimit

import (
	"net/http"
	"strconv"
	"time"
)

// Source says which path produced a Result. Its String values form a small,
// fixed set suitable as a metric label.
type Source uint8

// The paths a decision can take.
const (
	// SourceUnknown is the zero Source; no Limiter in this package returns it.
	SourceUnknown Source = iota
	// SourceLocal: the in-process MemoryStore decided, as configured.
	SourceLocal
	// SourceShared: the shared RedisStore decided.
	SourceShared
	// SourceFallback: the shared store was unreachable and the local store
	// decided instead (policy local).
	SourceFallback
	// SourceFailOpen: the shared store was unreachable and the request was
	// admitted without counting it (policy allow).
	SourceFailOpen
	// SourceFailClosed: the shared store was unreachable and the request was
	// refused without counting it (policy deny).
	SourceFailClosed
)

var sourceNames = [...]string{
	SourceUnknown:    "unknown",
	SourceLocal:      "local",
	SourceShared:     "shared",
	SourceFallback:   "local_fallback",
	SourceFailOpen:   "fail_open",
	SourceFailClosed: "fail_closed",
}

// String returns the metric label for s: "local", "shared",
// "local_fallback", "fail_open", "fail_closed" or "unknown".
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return sourceNames[SourceUnknown]
}

// Synthetic reports whether s decided without consulting any counter
// (fail-open or fail-closed), so Remaining and ResetAfter carry no
// information.
func (s Source) Synthetic() bool { return s == SourceFailOpen || s == SourceFailClosed }

// Result is the outcome of one Allow call.
type Result struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Limit is the limit applied, with Burst resolved (never zero).
	Limit Limit
	// Remaining is how many more requests the key could make right now,
	// back to back. It is zero when the request was refused.
	Remaining int
	// RetryAfter is how long until the key may make another request. It is
	// zero when the request was allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to its idle state, with
	// its whole burst available (Remaining == Limit.Burst).
	ResetAfter time.Duration
	// Source is the path that decided.
	Source Source
}

// RetryAfterSeconds returns RetryAfter in whole seconds, rounded up, as the
// Retry-After header wants it. It is at least 1 for a refusal and 0 for an
// admission.
func (r Result) RetryAfterSeconds() int {
	if r.Allowed {
		return 0
	}
	return max(ceilSeconds(r.RetryAfter), 1)
}

// ResetSeconds returns ResetAfter in whole seconds, rounded up, as the
// RateLimit-Reset header wants it.
func (r Result) ResetSeconds() int { return ceilSeconds(r.ResetAfter) }

func ceilSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// Header names set by SetHeaders.
const (
	HeaderRetryAfter = "Retry-After"
	HeaderLimit      = "RateLimit-Limit"
	HeaderRemaining  = "RateLimit-Remaining"
	HeaderReset      = "RateLimit-Reset"
)

// SetHeaders writes the rate-limit response headers for r into h:
// RateLimit-Limit (the burst, the most a key can spend at once),
// RateLimit-Remaining and RateLimit-Reset (seconds, rounded up), and, for a
// refusal, Retry-After (seconds, rounded up, at least 1). A synthetic result
// (fail-open or fail-closed) consulted no counter, so it gets only
// Retry-After, on refusal.
//
// It runs on every admitted request, so it writes the header map directly
// under canonical names and renders the numbers into one string whose
// substrings the three values share.
func (r Result) SetHeaders(h http.Header) {
	if !r.Source.Synthetic() {
		var buf [64]byte
		b := strconv.AppendInt(buf[:0], int64(r.Limit.EffectiveBurst()), 10)
		i := len(b)
		b = strconv.AppendInt(b, int64(r.Remaining), 10)
		j := len(b)
		b = strconv.AppendInt(b, int64(r.ResetSeconds()), 10)
		s := string(b)
		values := []string{s[:i], s[i:j], s[j:]}
		h[canonicalLimit] = values[0:1:1]
		h[canonicalRemaining] = values[1:2:2]
		h[canonicalReset] = values[2:3:3]
	}
	if !r.Allowed {
		h[canonicalRetryAfter] = []string{strconv.Itoa(r.RetryAfterSeconds())}
	}
}

// The header names in canonical form ("RateLimit-Limit" is
// "Ratelimit-Limit"), for direct map access.
var (
	canonicalLimit      = http.CanonicalHeaderKey(HeaderLimit)
	canonicalRemaining  = http.CanonicalHeaderKey(HeaderRemaining)
	canonicalReset      = http.CanonicalHeaderKey(HeaderReset)
	canonicalRetryAfter = http.CanonicalHeaderKey(HeaderRetryAfter)
)
