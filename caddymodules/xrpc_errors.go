package caddymodules

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func init() {
	caddy.RegisterModule(new(XRPCErrors))
	httpcaddyfile.RegisterHandlerDirective("cairn_xrpc_errors", parseXRPCErrors)
}

// XRPCErrors renders the error a handler returned as an XRPC error body,
// {"error":"Name","message":"…"}. Use it in `handle_errors`, so that errors
// raised by Caddy itself (an oversize body from request_body, a recovered
// panic, a failed upstream) reach XRPC clients in the format they parse. An
// *xrpc.Error keeps its name, message and headers; any other error keeps its
// status and gets a generic name, and its text — which may carry internal
// detail — is never sent.
//
// Caddyfile (inside handle_errors): `cairn_xrpc_errors`.
type XRPCErrors struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*XRPCErrors) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_xrpc_errors",
		New: func() caddy.Module { return new(XRPCErrors) },
	}
}

// Provision takes the module's logger.
func (x *XRPCErrors) Provision(ctx caddy.Context) error {
	x.logger = ctx.Logger()
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. A server fault is
// logged here, once, at error level with the request ID: with an error
// route configured, Caddy itself logs handler errors only at debug level.
func (x *XRPCErrors) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	err, _ := r.Context().Value(caddyhttp.ErrorCtxKey).(error)
	respondError(x.logger, w, r, caddyErrorToXRPC(err))
	return nil
}

// caddyErrorToXRPC turns an error a Caddy handler raised into the XRPC
// error to answer with: an *xrpc.Error as it is, a caddyhttp.HandlerError
// by its status, anything else a 500.
func caddyErrorToXRPC(err error) *xrpc.Error {
	var xe *xrpc.Error
	if errors.As(err, &xe) {
		return xe
	}
	status := http.StatusInternalServerError
	var he caddyhttp.HandlerError
	if errors.As(err, &he) && he.StatusCode >= 400 {
		status = he.StatusCode
	}
	return &xrpc.Error{Status: status, Name: genericErrorName(status), Message: http.StatusText(status), Err: err}
}

// genericErrorName names an error that did not come with an XRPC name, using
// the names atproto services use for the common statuses.
func genericErrorName(status int) string {
	switch {
	case status == http.StatusRequestEntityTooLarge:
		return "PayloadTooLarge"
	case status == http.StatusNotFound:
		return "NotFound"
	case status == http.StatusMethodNotAllowed:
		return "MethodNotAllowed"
	case status == http.StatusTooManyRequests:
		return "RateLimitExceeded"
	case status == http.StatusUnauthorized:
		return "AuthRequired"
	case status == http.StatusForbidden:
		return "Forbidden"
	case status == http.StatusNotImplemented:
		return "MethodNotImplemented"
	case status == http.StatusBadGateway, status == http.StatusGatewayTimeout:
		return "UpstreamFailure"
	case status == http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	case status >= 500:
		return "InternalServerError"
	default:
		return "InvalidRequest"
	}
}

func parseXRPCErrors(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(XRPCErrors)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (*XRPCErrors) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*XRPCErrors)(nil)
	_ caddyhttp.MiddlewareHandler = (*XRPCErrors)(nil)
	_ caddyfile.Unmarshaler       = (*XRPCErrors)(nil)
)
