package operatorauth

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// failure is the type of the package's sentinel errors; it carries the
// response each maps to, so the mapping lives in one table.
type failure struct {
	status  int
	name    string
	reason  string
	message string
}

func (f *failure) Error() string { return f.message }

// Sentinel errors, one per reason an operator request is refused.
var (
	// ErrAuthMissing: no credential, or not a Bearer credential.
	ErrAuthMissing error = &failure{http.StatusUnauthorized, "AuthMissing", "missing", "authentication required: send Authorization: Bearer <token>"}
	// ErrInvalidToken: malformed token, bad signature, unknown key, wrong
	// issuer or unsupported algorithm, or a static token that does not
	// match.
	ErrInvalidToken error = &failure{http.StatusUnauthorized, "InvalidToken", "invalid", "invalid operator token"}
	// ErrExpired: the token has expired.
	ErrExpired error = &failure{http.StatusUnauthorized, "ExpiredToken", "expired", "operator token expired"}
	// ErrBadAudience: the token was not issued for this service's client
	// ID or audience.
	ErrBadAudience error = &failure{http.StatusUnauthorized, "InvalidToken", "bad_aud", "operator token audience does not match"}
	// ErrForbidden: the token is valid but lacks the required group or
	// role.
	ErrForbidden error = &failure{http.StatusForbidden, "Forbidden", "forbidden", "operator role required"}
	// ErrUnavailable: the identity provider (discovery or JWKS) could not
	// be reached. Verification fails closed.
	ErrUnavailable error = &failure{http.StatusServiceUnavailable, "AuthUnavailable", "unavailable", "operator authentication temporarily unavailable; try again later"}
)

// RetryAfter is the Retry-After delay, in seconds, of 503 responses.
const RetryAfter = 5

// Reason returns a bounded metric label for err.
func Reason(err error) string {
	var f *failure
	if errors.As(err, &f) {
		return f.reason
	}
	return "internal"
}

// XRPCError converts an error from a Verifier into the XRPC error sent to
// the client: 401, 403, or 503 with Retry-After; 500 for anything else.
func XRPCError(err error) *xrpc.Error {
	var f *failure
	if !errors.As(err, &f) {
		return &xrpc.Error{Status: http.StatusInternalServerError, Name: "InternalServerError", Message: "internal error", Err: err}
	}
	xe := &xrpc.Error{Status: f.status, Name: f.name, Message: f.message, Err: err, Header: http.Header{}}
	switch f.status {
	case http.StatusServiceUnavailable:
		xe.Header.Set("Retry-After", strconv.Itoa(RetryAfter))
	case http.StatusUnauthorized:
		if f == ErrAuthMissing {
			xe.Header.Set("WWW-Authenticate", "Bearer")
		} else {
			xe.Header.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
	case http.StatusForbidden:
		xe.Header.Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
	}
	return xe
}

// bearerToken extracts the token from an Authorization header value, or
// returns a bare token unchanged.
func bearerToken(credential string) (string, error) {
	credential = strings.TrimSpace(credential)
	if credential == "" || strings.EqualFold(credential, "Bearer") {
		return "", ErrAuthMissing
	}
	scheme, tok, ok := strings.Cut(credential, " ")
	if !ok {
		return credential, nil
	}
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", ErrAuthMissing
	}
	return tok, nil
}
