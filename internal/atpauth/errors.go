package atpauth

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// failure is the type of every sentinel error of this package. It carries the
// HTTP status, the XRPC error name and the metric reason, so that the mapping
// from outcome to response lives in exactly one place: the table below.
type failure struct {
	status  int
	name    string // XRPC error name sent to the client
	reason  string // bounded metric label
	message string // sentence sent to the client; never holds token data
}

func (f *failure) Error() string { return f.message }

// Sentinel errors, one per reason a request can be refused. Each maps to one
// XRPC error name and HTTP status (see XRPCError) and one metric reason (see
// Reason). Errors returned by this package wrap exactly one of them.
var (
	// ErrAuthMissing: no credential, or not a Bearer credential.
	ErrAuthMissing error = &failure{http.StatusUnauthorized, "AuthMissing", "missing", "authentication required: send Authorization: Bearer <service-auth JWT>"}
	// ErrMalformed: the token is not a well-formed compact JWS with JSON
	// header and payload, or it is larger than MaxTokenSize.
	ErrMalformed error = &failure{http.StatusUnauthorized, "BadJwt", "malformed", "malformed JWT"}
	// ErrUnsupportedAlg: the header's alg is not ES256K or ES256 (for
	// example none, HS256 or RS256).
	ErrUnsupportedAlg error = &failure{http.StatusUnauthorized, "BadJwt", "bad_alg", "JWT alg must be ES256K or ES256"}
	// ErrBadType: the header's typ names another kind of token (at+jwt,
	// refresh+jwt, dpop+jwt).
	ErrBadType error = &failure{http.StatusUnauthorized, "BadJwtType", "bad_typ", "JWT typ is not a service-auth token"}
	// ErrBadClaims: a required claim (iss, aud, exp, iat, jti) is missing or
	// has the wrong type, or exp is before iat.
	ErrBadClaims error = &failure{http.StatusUnauthorized, "BadJwt", "bad_claims", "JWT claims missing or invalid: iss, aud, exp, iat and jti are required"}
	// ErrBadIssuer: iss is not a syntactically valid did:plc or did:web DID
	// (optionally with a #fragment).
	ErrBadIssuer error = &failure{http.StatusUnauthorized, "BadJwtIss", "bad_iss", "JWT iss is not a supported DID"}
	// ErrDIDNotFound: the issuer's DID document does not exist (or is
	// tombstoned), or is not a valid DID document for that DID.
	ErrDIDNotFound error = &failure{http.StatusUnauthorized, "BadJwtIss", "did_not_found", "could not resolve the JWT issuer's DID document"}
	// ErrDIDBlocked: resolving the issuer would reach a private, loopback,
	// link-local or otherwise non-public address, or is otherwise not
	// permitted (did:web with a port outside development).
	ErrDIDBlocked error = &failure{http.StatusUnauthorized, "BadJwtIss", "did_blocked", "the JWT issuer's DID document is not reachable from this service"}
	// ErrNoAtprotoKey: the issuer's DID document has no usable #atproto
	// verification method.
	ErrNoAtprotoKey error = &failure{http.StatusUnauthorized, "BadJwtIss", "no_key", "the JWT issuer's DID document has no usable #atproto key"}
	// ErrDIDUnavailable: the issuer's DID document could not be fetched for
	// a reason that may be temporary (timeout, connection failure, 5xx).
	ErrDIDUnavailable error = &failure{http.StatusServiceUnavailable, "UpstreamFailure", "did_unavailable", "could not fetch the JWT issuer's DID document; try again later"}
	// ErrAlgKeyMismatch: the header's alg does not match the type of the
	// issuer's #atproto key, even after a forced refresh of the document.
	ErrAlgKeyMismatch error = &failure{http.StatusUnauthorized, "BadJwtSignature", "alg_mismatch", "JWT alg does not match the issuer's key type"}
	// ErrBadSignature: the signature does not verify with the issuer's
	// #atproto key, even after a forced refresh of the document.
	ErrBadSignature error = &failure{http.StatusUnauthorized, "BadJwtSignature", "bad_signature", "JWT signature does not match the issuer's key"}
	// ErrExpired: exp + leeway is in the past.
	ErrExpired error = &failure{http.StatusUnauthorized, "JwtExpired", "expired", "JWT expired"}
	// ErrNotYetValid: iat − leeway is in the future (the issuer's clock is
	// ahead, or the token was minted for later use).
	ErrNotYetValid error = &failure{http.StatusUnauthorized, "BadJwtIat", "iat_future", "JWT iat is in the future"}
	// ErrLifetimeTooLong: exp − iat exceeds the configured maximum token
	// lifetime.
	ErrLifetimeTooLong error = &failure{http.StatusUnauthorized, "BadJwtLifetime", "lifetime", "JWT lifetime (exp - iat) exceeds this service's maximum"}
	// ErrBadAudience: aud is not this service's DID (bare or #serviceId).
	ErrBadAudience error = &failure{http.StatusUnauthorized, "BadJwtAudience", "bad_aud", "JWT audience does not match this service's DID"}
	// ErrBadLexiconMethod: lxm is missing (while required) or differs from
	// the called method's NSID.
	ErrBadLexiconMethod error = &failure{http.StatusUnauthorized, "BadJwtLexiconMethod", "bad_lxm", "JWT lxm must equal the NSID of the called method"}
	// ErrReplayed: the token's jti has been seen before.
	ErrReplayed error = &failure{http.StatusUnauthorized, "JwtReplayed", "replayed", "JWT has already been used; mint a new one per request"}
	// ErrReplayUnavailable: the replay store could not record the jti
	// (Redis unreachable, or the in-memory store full). Verification fails
	// closed rather than risk accepting a replay.
	ErrReplayUnavailable error = &failure{http.StatusServiceUnavailable, "AuthUnavailable", "replay_unavailable", "authentication temporarily unavailable; try again later"}
)

// RetryAfter is the delay advertised in the Retry-After header of 503
// responses built by XRPCError.
const RetryAfter = 5 // seconds

// reasonInternal labels errors that do not come from this package.
const reasonInternal = "internal"

// Reasons returns every value Reason can return, for pre-registering metric
// label values.
func Reasons() []string {
	all := []error{ErrAuthMissing, ErrMalformed, ErrUnsupportedAlg, ErrBadType, ErrBadClaims,
		ErrBadIssuer, ErrDIDNotFound, ErrDIDBlocked, ErrNoAtprotoKey, ErrDIDUnavailable,
		ErrAlgKeyMismatch, ErrBadSignature, ErrExpired, ErrNotYetValid, ErrLifetimeTooLong,
		ErrBadAudience, ErrBadLexiconMethod, ErrReplayed, ErrReplayUnavailable}
	out := make([]string, 0, len(all)+1)
	for _, e := range all {
		out = append(out, e.(*failure).reason)
	}
	return append(out, reasonInternal)
}

// Reason returns a short, bounded label for err, suitable for a metric: one
// of the values listed by Reasons.
func Reason(err error) string {
	var f *failure
	if errors.As(err, &f) {
		return f.reason
	}
	return reasonInternal
}

// XRPCError converts an error from Verify into the XRPC error the client
// receives: 401 with the atproto error name for a refused token, 503 with
// Retry-After when a dependency (replay store, DID host) is unavailable, and
// 500 for anything else. The returned error's Err is err itself, which holds
// no token or DID and may be logged.
func XRPCError(err error) *xrpc.Error {
	var f *failure
	if !errors.As(err, &f) {
		return &xrpc.Error{Status: http.StatusInternalServerError, Name: "InternalServerError", Message: "internal error", Err: err}
	}
	xe := &xrpc.Error{Status: f.status, Name: f.name, Message: f.message, Err: err}
	switch f.status {
	case http.StatusServiceUnavailable:
		xe.Header = http.Header{"Retry-After": []string{strconv.Itoa(RetryAfter)}}
	case http.StatusUnauthorized:
		// RFC 6750 §3: a 401 names the scheme the client should use, and
		// says invalid_token when a token was sent but refused.
		challenge := `Bearer error="invalid_token"`
		if f == ErrAuthMissing {
			challenge = "Bearer"
		}
		xe.Header = http.Header{}
		xe.Header.Set("WWW-Authenticate", challenge)
	}
	return xe
}
