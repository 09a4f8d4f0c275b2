package delivery

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/pow"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// DefaultWorkMethods are the methods ProofOfWork gates when Methods is
// empty: the expensive first actions of a spammer. sendChatRequest is
// gated as soon as it is served.
var DefaultWorkMethods = []string{Namespace + "createConvo", Namespace + "sendChatRequest"}

// keyPackagePublishers are the methods that publish key packages: gated
// by ProofOfWork.FirstKeyPackage for an account that has none yet.
var keyPackagePublishers = []string{Namespace + "publishKeyPackage", Namespace + "publishKeyPackages", Namespace + "registerDevice"}

// ProofOfWork asks for a hashcash-style stamp (internal/pow) before the
// expensive first actions of an account.
type ProofOfWork struct {
	// Verifier checks stamps and remembers used ones. Required.
	Verifier *pow.Verifier
	// Bits is the base difficulty, 1 to pow.MaxBits.
	Bits int
	// Methods always require a stamp; empty means DefaultWorkMethods.
	Methods []string
	// FirstKeyPackage requires a stamp for publishKeyPackage(s) and
	// registerDevice while the account has no key package on record.
	FirstKeyPackage bool
	// Extra, if set, returns the bits to add for this request (the
	// adaptive signals a rate limiter recorded); the sum is capped at
	// pow.MaxBits.
	Extra func(ctx context.Context) int
	// OnCheck, if set, is told the outcome of every check (pow.Reason),
	// for a metric.
	OnCheck func(reason string)
}

// validate checks w and fills in its defaults.
func (w *ProofOfWork) validate() error {
	if w.Verifier == nil {
		return fmt.Errorf("delivery: ProofOfWork.Verifier is required")
	}
	if w.Bits < 1 || w.Bits > pow.MaxBits {
		return fmt.Errorf("delivery: proof-of-work difficulty %d must be 1 to %d bits", w.Bits, pow.MaxBits)
	}
	if len(w.Methods) == 0 {
		w.Methods = slices.Clone(DefaultWorkMethods)
	}
	return nil
}

// requireWork checks the stamp of a call that needs one, and uses it up.
// A call that needs none passes untouched.
func (s *Service) requireWork(ctx context.Context, r *http.Request, nsid string, id caller.Identity) error {
	w := s.cfg.ProofOfWork
	if w == nil {
		return nil
	}
	need := slices.Contains(w.Methods, nsid)
	if !need && w.FirstKeyPackage && slices.Contains(keyPackagePublishers, nsid) {
		st, err := s.cfg.Store.KeyPackageStats(ctx, id.DID, "")
		if err != nil {
			return fmt.Errorf("read key package stats: %w", err)
		}
		need = st.Total == 0
	}
	if !need {
		return nil
	}
	bits := w.Bits
	if w.Extra != nil {
		bits = min(bits+w.Extra(ctx), pow.MaxBits)
	}
	err := w.Verifier.Verify(ctx, r.Header.Get(pow.Header), id.DID, nsid, bits)
	if w.OnCheck != nil {
		w.OnCheck(pow.Reason(err))
	}
	if err == nil {
		return nil
	}
	h := http.Header{}
	pow.Challenge{Bits: bits, NSID: nsid, MaxAge: w.Verifier.Window()}.SetHeaders(h)
	if pow.Reason(err) == "unavailable" {
		h.Set("Retry-After", "1")
		return &xrpc.Error{Status: http.StatusServiceUnavailable, Name: "ServiceUnavailable",
			Message: "the proof-of-work replay memory is unavailable; retry shortly", Header: h, Err: err}
	}
	return &xrpc.Error{Status: http.StatusPreconditionRequired, Name: pow.ErrorName(err),
		Message: fmt.Sprintf("%s requires proof of work: %s; send a stamp of %d bits in %s (see %s)",
			nsid, workProblem(err), bits, pow.Header, pow.ChallengeHeader),
		Header: h}
}

// workProblem says what was wrong with the stamp, for the message.
func workProblem(err error) string {
	switch pow.Reason(err) {
	case "missing":
		return "no stamp was sent"
	case "malformed":
		return "the stamp is malformed"
	case "insufficient":
		return "the stamp has too little work for this caller, method and difficulty"
	case "expired":
		return "the stamp is expired or from the future"
	case "replayed":
		return "the stamp was already used"
	}
	return "the stamp was refused"
}

// admitGroup decides the rate limiter's large-group modifiers for a call
// in convoID, when a rate limiter earlier in the chain has them: only then
// is the conversation's size counted (its active member rows, one per
// device, as large_group is documented).
func (s *Service) admitGroup(ctx context.Context, convoID string) error {
	a, ok := ratelimit.FromContext(ctx)
	if !ok || a.LargeGroupThreshold() == 0 {
		return nil
	}
	members, err := s.cfg.Store.ActiveMemberCount(ctx, convoID)
	if err != nil {
		return fmt.Errorf("count members: %w", err)
	}
	d, err := a.AllowGroup(ctx, members)
	if err != nil {
		return &xrpc.Error{Status: http.StatusServiceUnavailable, Name: "ServiceUnavailable",
			Message: "the rate limiter is unavailable; retry shortly", Header: http.Header{"Retry-After": {"1"}},
			Err: fmt.Errorf("large-group rate limit: %w", err)}
	}
	if d.Allowed {
		return nil
	}
	h := http.Header{}
	d.Result.SetHeaders(h)
	return &xrpc.Error{Status: http.StatusTooManyRequests, Name: "RateLimitExceeded",
		Message: fmt.Sprintf("rate limit %q for large groups exceeded (%s); retry in %d s", d.Zone, d.Result.Limit, d.Result.RetryAfterSeconds()),
		Header:  h}
}
