// Package operator is the operator API: JSON over HTTP under /operator/v1/,
// served on the internal site behind cairn_operator_auth, and called by
// the cairn-caddy operator commands. Errors use the XRPC error body
// ({"error":"Name","message":"…"}).
//
// Every call is audited before it runs: [API] records one
// audit.TypeOperatorAction row naming the operator and the route, and
// refuses the call (503 AuditUnavailable) if that row cannot be written.
// A call without an authenticated operator in its context is refused
// (401): the API fails closed if it is ever routed without
// cairn_operator_auth.
//
// It knows nothing of Caddy: the cairn_operator_api module builds an API
// from the cairn app's state and serves it.
//
// # Adding a route
//
// Write a [HandlerFunc] in a file named for its concept (backups.go,
// identity.go), and mount it with [API.Handle] under a pattern of
// net/http's ServeMux ("GET /operator/v1/backups"), either in routes (for
// routes every API has) or from the code that builds the API (for routes
// whose parts are optional). Return an *xrpc.Error for a refusal; any
// other error becomes a 500 with nothing of its cause in the body. A route
// that changes state records its own typed audit event through the
// Recorder in its closure, as bans.go does; document the route in
// docs/operations.md.
package operator
