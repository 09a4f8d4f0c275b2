package atpauth

import (
	"net/http"

	"github.com/cairn-chat/cairn-caddy/internal/authfail"
)

// Sentinel errors, one per reason a request can be refused. Each is an
// *authfail.Failure: authfail.XRPCError maps it to one XRPC error name and
// HTTP status, authfail.Reason to one metric reason. Errors returned by this
// package wrap exactly one of them.
var (
	// ErrAuthMissing: no credential, or not a Bearer credential.
	ErrAuthMissing error = authfail.New(http.StatusUnauthorized, "AuthMissing", authfail.ReasonMissing, "authentication required: send Authorization: Bearer <service-auth JWT>")
	// ErrMalformed: the token is not a well-formed compact JWS with JSON
	// header and payload, or it is larger than MaxTokenSize.
	ErrMalformed error = authfail.New(http.StatusUnauthorized, "BadJwt", "malformed", "malformed JWT")
	// ErrUnsupportedAlg: the header's alg is not ES256K or ES256 (for
	// example none, HS256 or RS256).
	ErrUnsupportedAlg error = authfail.New(http.StatusUnauthorized, "BadJwt", "bad_alg", "JWT alg must be ES256K or ES256")
	// ErrBadType: the header's typ names another kind of token (at+jwt,
	// refresh+jwt, dpop+jwt).
	ErrBadType error = authfail.New(http.StatusUnauthorized, "BadJwtType", "bad_typ", "JWT typ is not a service-auth token")
	// ErrBadClaims: a required claim (iss, aud, exp, iat, jti) is missing or
	// has the wrong type, or exp is before iat.
	ErrBadClaims error = authfail.New(http.StatusUnauthorized, "BadJwt", "bad_claims", "JWT claims missing or invalid: iss, aud, exp, iat and jti are required")
	// ErrBadIssuer: iss is not a syntactically valid did:plc or did:web DID
	// (optionally with a #fragment).
	ErrBadIssuer error = authfail.New(http.StatusUnauthorized, "BadJwtIss", "bad_iss", "JWT iss is not a supported DID")
	// ErrDIDNotFound: the issuer's DID document does not exist (or is
	// tombstoned), or is not a valid DID document for that DID.
	ErrDIDNotFound error = authfail.New(http.StatusUnauthorized, "BadJwtIss", "did_not_found", "could not resolve the JWT issuer's DID document")
	// ErrDIDBlocked: resolving the issuer would reach a private, loopback,
	// link-local or otherwise non-public address, or is otherwise not
	// permitted (did:web with a port outside development).
	ErrDIDBlocked error = authfail.New(http.StatusUnauthorized, "BadJwtIss", "did_blocked", "the JWT issuer's DID document is not reachable from this service")
	// ErrNoAtprotoKey: the issuer's DID document has no usable #atproto
	// verification method.
	ErrNoAtprotoKey error = authfail.New(http.StatusUnauthorized, "BadJwtIss", "no_key", "the JWT issuer's DID document has no usable #atproto key")
	// ErrDIDUnavailable: the issuer's DID document could not be fetched for
	// a reason that may be temporary (timeout, connection failure, 5xx).
	ErrDIDUnavailable error = authfail.New(http.StatusServiceUnavailable, "UpstreamFailure", "did_unavailable", "could not fetch the JWT issuer's DID document; try again later")
	// ErrAlgKeyMismatch: the header's alg does not match the type of the
	// issuer's #atproto key, even after a forced refresh of the document.
	ErrAlgKeyMismatch error = authfail.New(http.StatusUnauthorized, "BadJwtSignature", "alg_mismatch", "JWT alg does not match the issuer's key type")
	// ErrBadSignature: the signature does not verify with the issuer's
	// #atproto key, even after a forced refresh of the document.
	ErrBadSignature error = authfail.New(http.StatusUnauthorized, "BadJwtSignature", "bad_signature", "JWT signature does not match the issuer's key")
	// ErrExpired: exp + leeway is in the past.
	ErrExpired error = authfail.New(http.StatusUnauthorized, "JwtExpired", "expired", "JWT expired")
	// ErrNotYetValid: iat − leeway is in the future (the issuer's clock is
	// ahead, or the token was minted for later use).
	ErrNotYetValid error = authfail.New(http.StatusUnauthorized, "BadJwtIat", "iat_future", "JWT iat is in the future")
	// ErrLifetimeTooLong: exp − iat exceeds the configured maximum token
	// lifetime.
	ErrLifetimeTooLong error = authfail.New(http.StatusUnauthorized, "BadJwtLifetime", "lifetime", "JWT lifetime (exp - iat) exceeds this service's maximum")
	// ErrBadAudience: aud is not this service's DID (bare or #serviceId).
	ErrBadAudience error = authfail.New(http.StatusUnauthorized, "BadJwtAudience", "bad_aud", "JWT audience does not match this service's DID")
	// ErrBadLexiconMethod: lxm is missing (while required) or differs from
	// the called method's NSID.
	ErrBadLexiconMethod error = authfail.New(http.StatusUnauthorized, "BadJwtLexiconMethod", "bad_lxm", "JWT lxm must equal the NSID of the called method")
	// ErrReplayed: the token's jti has been seen before.
	ErrReplayed error = authfail.New(http.StatusUnauthorized, "JwtReplayed", "replayed", "JWT has already been used; mint a new one per request")
	// ErrIssuedBeforeReplayMemory: iat is earlier than Leeway after the
	// replay store's memory began (the gateway restarted with the memory
	// store; Redis restarted, failed over or was flushed), so the token may
	// have been used already and its single use cannot be vouched for. The
	// name is JwtExpired because clients already answer it by minting a
	// new token, which is what they must do; the message says why.
	ErrIssuedBeforeReplayMemory error = authfail.New(http.StatusUnauthorized, "JwtExpired", "before_replay_memory", "JWT was issued before this service's replay protection (re)started and may have been used already; mint a new one")
	// ErrReplayUnavailable: the replay store could not record the jti
	// (Redis unreachable, or the in-memory store full). Verification fails
	// closed rather than risk accepting a replay.
	ErrReplayUnavailable error = authfail.New(http.StatusServiceUnavailable, "AuthUnavailable", "replay_unavailable", "authentication temporarily unavailable; try again later")
)

// Reasons returns every value authfail.Reason can return for this
// package's errors, and authfail.ReasonInternal, for pre-registering metric
// label values.
func Reasons() []string {
	all := []error{ErrAuthMissing, ErrMalformed, ErrUnsupportedAlg, ErrBadType, ErrBadClaims,
		ErrBadIssuer, ErrDIDNotFound, ErrDIDBlocked, ErrNoAtprotoKey, ErrDIDUnavailable,
		ErrAlgKeyMismatch, ErrBadSignature, ErrExpired, ErrNotYetValid, ErrLifetimeTooLong,
		ErrBadAudience, ErrBadLexiconMethod, ErrReplayed, ErrIssuedBeforeReplayMemory, ErrReplayUnavailable}
	out := make([]string, 0, len(all)+1)
	for _, e := range all {
		out = append(out, authfail.Reason(e))
	}
	return append(out, authfail.ReasonInternal)
}
