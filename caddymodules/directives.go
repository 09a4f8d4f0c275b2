package caddymodules

import "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

// directiveOrder is where each of cairn's handler directives runs, relative
// to Caddy's standard directives; it is the only place cairn registers a
// directive order. The list reads as the pipeline does: request ID first
// (everything after it logs with the ID), then XRPC accounting (so refusals
// are counted), security headers (so every response, refusals included,
// carries them), the rate limiter (before any expensive work), the
// authenticators, and the terminal handlers beside Caddy's own. Directives
// registered "before" one standard directive keep the order listed here.
var directiveOrder = []struct {
	directive string
	position  httpcaddyfile.Positional
	standard  string
}{
	{"cairn_request_id", httpcaddyfile.Before, "tracing"},
	{"cairn_xrpc_metrics", httpcaddyfile.Before, "tracing"},
	{"cairn_security_headers", httpcaddyfile.Before, "tracing"},
	{"cairn_edge", httpcaddyfile.Before, "tracing"},
	{"cairn_rate_limit", httpcaddyfile.Before, "basic_auth"},
	{"cairn_auth", httpcaddyfile.Before, "basic_auth"},
	{"cairn_operator_auth", httpcaddyfile.Before, "basic_auth"},
	{"cairn_delivery", httpcaddyfile.Before, "abort"},
	{"cairn_operator_api", httpcaddyfile.Before, "abort"},
	{"cairn_did_document", httpcaddyfile.Before, "abort"},
	{"cairn_xrpc_errors", httpcaddyfile.Before, "respond"},
	{"cairn_metrics", httpcaddyfile.Before, "metrics"},
	{"cairn_xrpc_proxy", httpcaddyfile.Before, "reverse_proxy"},
	{"cairn_web", httpcaddyfile.Before, "file_server"},
}

func init() {
	for _, d := range directiveOrder {
		httpcaddyfile.RegisterDirectiveOrder(d.directive, d.position, d.standard)
	}
}
