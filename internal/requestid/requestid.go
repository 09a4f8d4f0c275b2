// Package requestid mints, validates and carries request IDs: the value of
// the X-Request-ID header that ties one request's log lines together across
// the gateway and the services behind it.
package requestid

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// Header is the HTTP header a request ID travels in.
const Header = "X-Request-ID"

// MinLength and MaxLength bound an accepted inbound ID.
const (
	MinLength = 8
	MaxLength = 128
)

// Valid reports whether an inbound ID may be reused: 8 to 128 characters of
// A-Z, a-z, 0-9, '.', '_' and '-'. Anything else (including values that could
// inject into logs or headers) is replaced by a fresh ID.
func Valid(id string) bool {
	if len(id) < MinLength || len(id) > MaxLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// New mints a fresh request ID: a UUIDv7, which sorts by creation time.
// IDs minted by one process are strictly increasing, as RFC 9562's method 3
// lays out: the 12 bits after the millisecond timestamp hold the fraction
// of the millisecond, and a clash with the previous ID moves it one step on.
//
// The 62 random bits keep the ID unguessable: nobody can predict the ID
// of another client's request, although its millisecond is public. They
// come from math/rand/v2's top-level generator, which since Go 1.22 is the
// runtime's per-thread ChaCha8 stream, seeded from the operating system's
// random source and rekeyed as it goes ("Secure Randomness in Go 1.22",
// go.dev/blog/chacha8rand): output an observer cannot predict without
// reading the process's memory, as crypto/rand's, but without crypto/rand's
// system call or lock, on a path that runs for every request
// (BenchmarkNew compares the two). The error is always nil; it is kept so
// that callers handle a failing source if one is ever used again.
func New() (string, error) {
	var u uuid.UUID
	t := nextV7Time()
	binary.BigEndian.PutUint64(u[0:8], uint64(t>>12)<<16|0x7000|uint64(t&0xfff))
	binary.BigEndian.PutUint64(u[8:16], rand.Uint64()>>2|1<<63) // variant 0b10
	return u.String(), nil
}

// lastV7 is the timestamp of the last minted ID: Unix milliseconds << 12 |
// the fraction of the millisecond in 1/4096ths (approximately).
var lastV7 atomic.Int64

func nextV7Time() int64 {
	nano := time.Now().UnixNano()
	milli := nano / 1e6
	now := milli<<12 | (nano-milli*1e6)>>8
	for {
		last := lastV7.Load()
		next := max(now, last+1)
		if lastV7.CompareAndSwap(last, next) {
			return next
		}
	}
}

// Resolve returns inbound if it is Valid, and a fresh ID otherwise.
func Resolve(inbound string) (string, error) {
	if Valid(inbound) {
		return inbound, nil
	}
	return New()
}

type contextKey struct{}

// With returns a copy of ctx carrying id.
func With(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, contextKey{}, id)
}

// From returns the request ID carried by ctx, or "".
func From(ctx context.Context) string {
	id, _ := ctx.Value(contextKey{}).(string)
	return id
}
