package operatorauth

import (
	"net/http"
	"strings"

	"github.com/cairn-chat/cairn-caddy/internal/authfail"
)

// Sentinel errors, one per reason an operator request is refused. Each is an
// *authfail.Failure, which authfail.XRPCError and authfail.Reason map.
var (
	// ErrAuthMissing: no credential, or not a Bearer credential.
	ErrAuthMissing error = authfail.New(http.StatusUnauthorized, "AuthMissing", authfail.ReasonMissing, "authentication required: send Authorization: Bearer <token>")
	// ErrInvalidToken: malformed token, bad signature, unknown key, wrong
	// issuer or unsupported algorithm, or a static token that does not
	// match.
	ErrInvalidToken error = authfail.New(http.StatusUnauthorized, "InvalidToken", "invalid", "invalid operator token")
	// ErrExpired: the token has expired.
	ErrExpired error = authfail.New(http.StatusUnauthorized, "ExpiredToken", "expired", "operator token expired")
	// ErrBadAudience: the token was not issued for this service's client
	// ID or audience.
	ErrBadAudience error = authfail.New(http.StatusUnauthorized, "InvalidToken", "bad_aud", "operator token audience does not match")
	// ErrForbidden: the token is valid but lacks the required group or
	// role.
	ErrForbidden error = authfail.New(http.StatusForbidden, "Forbidden", "forbidden", "operator role required")
	// ErrUnavailable: the identity provider (discovery or JWKS) could not
	// be reached. Verification fails closed.
	ErrUnavailable error = authfail.New(http.StatusServiceUnavailable, "AuthUnavailable", "unavailable", "operator authentication temporarily unavailable; try again later")
)

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
