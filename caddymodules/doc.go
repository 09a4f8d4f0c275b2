// Package caddymodules adapts cairn's domain packages to Caddy: it registers
// the modules, provisions and validates their configuration, and parses their
// Caddyfile syntax. The work itself happens in internal/; nothing here should
// hold logic that a test could exercise without Caddy.
//
// # The error path
//
// A cairn handler answers its own errors. It writes the XRPC error body
// {"error":"Name","message":"…"} through respondError (or, in a domain
// handler, xrpc.RespondError with the ServerErrorFunc its adapter gave it)
// and returns nil; it never returns an error for Caddy to render, and never
// writes part of a response and then returns an error. Every server fault
// (a 5xx other than 501 MethodNotImplemented, which clients can ask for at
// will) is logged exactly once, at error level, with the request ID, the
// status, the XRPC error name and the cause, and never an identity.
//
// Handlers do not return errors to Caddy because Caddy would log them in
// the wrong way for this service: with a handle_errors route (which every
// site needs, for the errors Caddy's own handlers raise) it logs a handler
// error only at debug level, and its error log carries the whole request,
// query string and client address included.
//
// cairn_xrpc_errors, inside handle_errors, renders the errors Caddy's own
// handlers raise (request_body limits, reverse_proxy failures, recovered
// panics, the error directive) as XRPC bodies, and logs their server faults
// on the same terms.
package caddymodules
