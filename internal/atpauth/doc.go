// Package atpauth verifies atproto inter-service authentication tokens: the
// short-lived JWTs a client's PDS signs with the account's #atproto key and
// the client presents as "Authorization: Bearer <jwt>".
//
// A [Verifier] checks a token as the atproto XRPC specification describes,
// plus three rules the reference verifiers leave out: a cap on the token
// lifetime (exp − iat), a required lexicon method (lxm) equal to the called
// endpoint's NSID, and a single-use token ID (jti) remembered in a
// [ReplayStore] until the token can no longer be valid. The issuer's signing
// key comes from its DID document, fetched by a [Resolver] (did:plc through a
// PLC directory, did:web through the host's /.well-known/did.json) with
// caching, request coalescing and guards against server-side request forgery.
//
// Every refusal wraps one of the package's sentinel errors, each an
// authfail.Failure; authfail.XRPCError and authfail.Reason turn any error
// returned here into the XRPC response and a bounded metric label. Errors never contain the token or the caller's DID, so they
// are safe to log.
//
// The package knows nothing of Caddy or HTTP routing: the cairn_auth module
// extracts the Authorization header and the endpoint NSID, calls
// [Verifier.Verify] and puts the identity [Verified.Identity] returns (with
// the device rule applied) into the request context.
package atpauth
