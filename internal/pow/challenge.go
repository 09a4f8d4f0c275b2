package pow

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Response headers of a refusal that asks for work.
const (
	// ChallengeHeader says what to solve:
	// "v1; bits=<n>; method=<nsid>; max-age=<seconds>".
	ChallengeHeader = "X-Cairn-PoW-Challenge"
	// DifficultyHeader repeats the bits alone, for a client that only
	// needs the number.
	DifficultyHeader = "X-Cairn-PoW-Difficulty"
)

// Challenge is what a refused client must solve: a stamp of Bits for the
// method, hashed with its own DID (which the challenge does not carry),
// no older than MaxAge when it is sent.
type Challenge struct {
	Bits   int
	NSID   string
	MaxAge time.Duration
}

// String renders the challenge as its header value.
func (c Challenge) String() string {
	return fmt.Sprintf("v1; bits=%d; method=%s; max-age=%d", c.Bits, c.NSID, int64(c.MaxAge/time.Second))
}

// SetHeaders writes the challenge headers into h.
func (c Challenge) SetHeaders(h http.Header) {
	h.Set(ChallengeHeader, c.String())
	h.Set(DifficultyHeader, strconv.Itoa(c.Bits))
}

// ErrMalformedChallenge is returned, wrapped, by ParseChallenge.
var ErrMalformedChallenge = errors.New("pow: malformed challenge")

// ParseChallenge reads a ChallengeHeader value, as a client does.
func ParseChallenge(s string) (Challenge, error) {
	if len(s) > 512 {
		return Challenge{}, fmt.Errorf("%w: longer than 512 characters", ErrMalformedChallenge)
	}
	parts := strings.Split(s, ";")
	if strings.TrimSpace(parts[0]) != "v1" {
		return Challenge{}, fmt.Errorf("%w: want v1; bits=<n>; method=<nsid>; max-age=<s>", ErrMalformedChallenge)
	}
	c := Challenge{Bits: -1}
	var haveAge bool
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return Challenge{}, fmt.Errorf("%w: %q is not key=value", ErrMalformedChallenge, p)
		}
		switch k {
		case "bits":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > MaxBits || c.Bits >= 0 {
				return Challenge{}, fmt.Errorf("%w: bits must be given once, 0 to %d", ErrMalformedChallenge, MaxBits)
			}
			c.Bits = n
		case "method":
			if v == "" || c.NSID != "" || strings.ContainsAny(v, " \x00") {
				return Challenge{}, fmt.Errorf("%w: method must be given once, an NSID", ErrMalformedChallenge)
			}
			c.NSID = v
		case "max-age":
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n <= 0 || haveAge {
				return Challenge{}, fmt.Errorf("%w: max-age must be given once, positive seconds", ErrMalformedChallenge)
			}
			c.MaxAge, haveAge = time.Duration(n)*time.Second, true
		}
		// Unknown keys are ignored, so the server can add some.
	}
	if c.Bits < 0 || c.NSID == "" || !haveAge {
		return Challenge{}, fmt.Errorf("%w: bits, method and max-age are required", ErrMalformedChallenge)
	}
	return c, nil
}

// Solve makes a stamp for the challenge, as a client with did would.
func (c Challenge) Solve(did string, now time.Time) (string, error) {
	return Solve(did, c.NSID, c.Bits, now)
}

// Reason names a Verify error from a fixed set, for a metric label and a
// log field: missing, malformed, insufficient, expired, replayed,
// unavailable, or other.
func Reason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrMissing):
		return "missing"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrInsufficient):
		return "insufficient"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrReplayed):
		return "replayed"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	}
	return "other"
}

// Reasons lists every value Reason returns, for metrics to pre-register.
func Reasons() []string {
	return []string{"ok", "missing", "malformed", "insufficient", "expired", "replayed", "unavailable", "other"}
}

// ErrorName is the XRPC error name a refusal for err carries:
// ProofOfWorkRequired (no stamp), InvalidProofOfWork (malformed, or too
// little work for this caller, method and difficulty), ProofOfWorkExpired,
// ProofOfWorkReplayed.
func ErrorName(err error) string {
	switch {
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrInsufficient):
		return "InvalidProofOfWork"
	case errors.Is(err, ErrExpired):
		return "ProofOfWorkExpired"
	case errors.Is(err, ErrReplayed):
		return "ProofOfWorkReplayed"
	}
	return "ProofOfWorkRequired"
}
