// Package operatorauth authenticates operators — the people running a cairn
// deployment — for the operator API on the internal site.
//
// Two verifiers implement [Verifier]: [OIDCVerifier] checks OpenID Connect
// ID or access tokens (JWTs) from an identity provider found by issuer
// discovery, including an audience and a required group or role claim, and
// [StaticToken] accepts one shared secret stored only as a SHA-256 hash, for
// small installs without an identity provider.
//
// It is not the client authentication of the chat API (that is atpauth), and
// it knows nothing of Caddy: the cairn_operator_auth module calls Verify with
// the Authorization header and maps errors with authfail.XRPCError, the
// mapping it shares with atpauth.
package operatorauth

import "context"

// Verifier authenticates an operator from an Authorization header value
// ("Bearer <token>") or a bare token.
type Verifier interface {
	Verify(ctx context.Context, credential string) (*Operator, error)
}

// Operator is an authenticated operator.
type Operator struct {
	// Method is how the operator authenticated: "oidc" or "static".
	Method string
	// Subject is the identity provider's subject (sub) for OIDC, and
	// "static" for the static token.
	Subject string
}
