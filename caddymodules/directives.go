package caddymodules

import "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

// The directive order of cairn's handlers, registered in one place so the
// pipeline reads top to bottom: request ID first (everything after it logs
// with the ID), then XRPC accounting (so refusals are counted), security
// headers (so every response, refusals included, carries them), the rate
// limiter (before any expensive work), and the terminal handlers beside
// Caddy's own. Registering several directives "before" one standard directive
// keeps them in the order registered.
func init() {
	httpcaddyfile.RegisterDirectiveOrder("cairn_request_id", httpcaddyfile.Before, "tracing")
	httpcaddyfile.RegisterDirectiveOrder("cairn_xrpc_metrics", httpcaddyfile.Before, "tracing")
	httpcaddyfile.RegisterDirectiveOrder("cairn_security_headers", httpcaddyfile.Before, "tracing")
	httpcaddyfile.RegisterDirectiveOrder("cairn_rate_limit", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("cairn_auth", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterDirectiveOrder("cairn_delivery", httpcaddyfile.Before, "abort")
	httpcaddyfile.RegisterDirectiveOrder("cairn_xrpc_errors", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterDirectiveOrder("cairn_metrics", httpcaddyfile.Before, "metrics")
	httpcaddyfile.RegisterDirectiveOrder("cairn_xrpc_proxy", httpcaddyfile.Before, "reverse_proxy")
}
