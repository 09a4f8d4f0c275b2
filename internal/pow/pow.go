// Package pow verifies hashcash-style proof-of-work stamps that an operator
// may require before expensive first actions (docs/rate-limiting.md).
//
// A stamp is the header value
//
//	v1:<bits>:<unix seconds>:<nonce>:<counter>
//
// (nonce: 16 random bytes in base64url; counter: a decimal the client
// increments). It proves bits of work when SHA-256 over
// "cairn-pow v1\x00" + caller DID + "\x00" + method NSID + "\x00" + stamp
// starts with bits zero bits. The DID and method are in the hash, not the
// header, so a stamp is bound to both without carrying an identity. The
// verifier refuses a stamp older than its maximum age or from the future,
// with fewer bits than required, or already used (single use through an
// atpauth.ReplayStore, memory or Redis), and one dated before that replay
// memory began (plus the clock skew), which it cannot vouch for.
package pow

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
)

// Header is the request header that carries a stamp.
const Header = "X-Cairn-PoW"

// MaxBits bounds a stamp's declared difficulty.
const MaxBits = 32

// Refusals, each naming what the client must do.
var (
	ErrMissing      = errors.New("pow: stamp required")
	ErrMalformed    = errors.New("pow: malformed stamp")
	ErrInsufficient = errors.New("pow: stamp has too little work")
	ErrExpired      = errors.New("pow: stamp expired or from the future")
	ErrReplayed     = errors.New("pow: stamp already used")
	ErrUnavailable  = errors.New("pow: replay memory unavailable")
)

// Stamp is a parsed stamp.
type Stamp struct {
	Bits    int
	Time    time.Time
	Nonce   []byte
	Counter uint64
	raw     string
}

// Parse reads a stamp header value.
func Parse(s string) (Stamp, error) {
	if len(s) > 128 {
		return Stamp{}, fmt.Errorf("%w: longer than 128 characters", ErrMalformed)
	}
	f := strings.Split(s, ":")
	if len(f) != 5 || f[0] != "v1" {
		return Stamp{}, fmt.Errorf("%w: want v1:<bits>:<unix>:<nonce>:<counter>", ErrMalformed)
	}
	b, err := strconv.Atoi(f[1])
	if err != nil || b < 0 || b > MaxBits || f[1] != strconv.Itoa(b) {
		return Stamp{}, fmt.Errorf("%w: bits must be 0 to %d", ErrMalformed, MaxBits)
	}
	ts, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || ts < 0 || f[2] != strconv.FormatInt(ts, 10) {
		return Stamp{}, fmt.Errorf("%w: time must be Unix seconds", ErrMalformed)
	}
	nonce, err := base64.RawURLEncoding.DecodeString(f[3])
	if err != nil || len(nonce) != 16 {
		return Stamp{}, fmt.Errorf("%w: nonce must be 16 bytes in base64url", ErrMalformed)
	}
	c, err := strconv.ParseUint(f[4], 10, 64)
	if err != nil || f[4] != strconv.FormatUint(c, 10) {
		return Stamp{}, fmt.Errorf("%w: counter must be a decimal", ErrMalformed)
	}
	return Stamp{Bits: b, Time: time.Unix(ts, 0).UTC(), Nonce: nonce, Counter: c, raw: s}, nil
}

// String is the stamp's header value.
func (s Stamp) String() string { return s.raw }

func digest(did, nsid, stamp string) [32]byte {
	return sha256.Sum256([]byte("cairn-pow v1\x00" + did + "\x00" + nsid + "\x00" + stamp))
}

func leadingZeros(d [32]byte) int {
	n := 0
	for _, b := range d {
		if b != 0 {
			return n + bits.LeadingZeros8(b)
		}
		n += 8
	}
	return n
}

// Work reports how many leading zero bits the stamp's digest has for
// this caller and method.
func (s Stamp) Work(did, nsid string) int { return leadingZeros(digest(did, nsid, s.raw)) }

// Solve makes a stamp of bits for the caller and method, as a client
// would: it tries counters until the digest has enough zero bits.
func Solve(did, nsid string, difficulty int, now time.Time) (string, error) {
	if difficulty < 0 || difficulty > MaxBits {
		return "", fmt.Errorf("pow: difficulty must be 0 to %d", MaxBits)
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("pow nonce: %w", err)
	}
	prefix := fmt.Sprintf("v1:%d:%d:%s:", difficulty, now.Unix(), base64.RawURLEncoding.EncodeToString(nonce))
	for c := uint64(0); ; c++ {
		s := prefix + strconv.FormatUint(c, 10)
		if leadingZeros(digest(did, nsid, s)) >= difficulty {
			return s, nil
		}
	}
}

// Verifier checks stamps.
type Verifier struct {
	// MaxAge is how long a stamp is accepted after its time; default
	// DefaultMaxAge.
	MaxAge time.Duration
	// Skew is how far in the future a stamp's time may be; default
	// DefaultSkew.
	Skew time.Duration
	// Replay remembers used stamps until they expire.
	Replay atpauth.ReplayStore
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// DefaultMaxAge and DefaultSkew are a Verifier's defaults.
const (
	DefaultMaxAge = 5 * time.Minute
	DefaultSkew   = 30 * time.Second
)

// Window returns how long a stamp is accepted after its time: MaxAge, or
// DefaultMaxAge.
func (v *Verifier) Window() time.Duration {
	if v.MaxAge <= 0 {
		return DefaultMaxAge
	}
	return v.MaxAge
}

// Verify checks the header value for the caller and method at the required
// difficulty, and uses the stamp up.
func (v *Verifier) Verify(ctx context.Context, header, did, nsid string, required int) error {
	if header == "" {
		return ErrMissing
	}
	s, err := Parse(header)
	if err != nil {
		return err
	}
	now, maxAge, skew := time.Now(), v.Window(), v.Skew
	if v.Now != nil {
		now = v.Now()
	}
	if skew <= 0 {
		skew = DefaultSkew
	}
	if s.Time.Before(now.Add(-maxAge)) || s.Time.After(now.Add(skew)) {
		return ErrExpired
	}
	if s.Bits < required || s.Work(did, nsid) < s.Bits {
		return ErrInsufficient
	}
	d := digest(did, nsid, header)
	r, err := v.Replay.Remember(ctx, "pow:"+base64.RawURLEncoding.EncodeToString(d[:]), s.Time.Add(maxAge))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !r.Fresh {
		return ErrReplayed
	}
	// A stamp dated before the replay memory began (plus the skew it may
	// have been used ahead of its time) may have been used while that
	// memory did not exist: a restart of a memory store, a flushed Redis.
	if s.Time.Before(r.Since.Add(skew)) {
		return fmt.Errorf("%w: the stamp predates the replay memory (since %s); solve a new one", ErrExpired, r.Since.UTC().Format(time.RFC3339))
	}
	return nil
}
