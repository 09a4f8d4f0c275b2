package caddymodules

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/requestid"
)

func init() {
	caddy.RegisterModule(new(RequestID))
	httpcaddyfile.RegisterHandlerDirective("cairn_request_id", parseRequestID)
}

// requestIDVar is the request variable holding the ID, readable in config as
// {http.vars.request_id}.
const requestIDVar = "request_id"

// RequestID gives every request an ID. It reuses a well-formed inbound
// X-Request-ID (8–128 characters of A-Z a-z 0-9 . _ -) and otherwise mints a
// UUIDv7. The ID is echoed in the response, forwarded upstream in the request
// header, exposed as {http.vars.request_id} and as a context value, and added
// to the access log entry and to every log line cairn's modules write for the
// request.
//
// Caddyfile: `cairn_request_id` (no options).
type RequestID struct {
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*RequestID) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_request_id",
		New: func() caddy.Module { return new(RequestID) },
	}
}

// Provision takes the module's logger.
func (rid *RequestID) Provision(ctx caddy.Context) error {
	rid.logger = ctx.Logger()
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (rid *RequestID) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	id, err := assignRequestID(w, r)
	if err != nil {
		respondError(rid.logger, w, r, err)
		return nil
	}
	return next.ServeHTTP(w, r.WithContext(requestid.With(r.Context(), id)))
}

// requestIDHeader is requestid.Header in canonical form, for direct header
// map access (Header.Get and Set canonicalise, and allocate, on every call).
var requestIDHeader = http.CanonicalHeaderKey(requestid.Header)

// requestLogger returns base with the request's ID attached, for every log
// line a cairn module writes about a request. It reads the ID from the
// context cairn_request_id passed on or, in an error route (which sees the
// request as the server received it), from the request variable.
func requestLogger(base *zap.Logger, r *http.Request) *zap.Logger {
	id := requestid.From(r.Context())
	if id == "" {
		id, _ = caddyhttp.GetVar(r.Context(), requestIDVar).(string)
	}
	if id != "" {
		return base.With(zap.String(requestIDVar, id))
	}
	return base
}

func parseRequestID(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(RequestID)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (*RequestID) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("cairn_request_id takes no options")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*RequestID)(nil)
	_ caddyhttp.MiddlewareHandler = (*RequestID)(nil)
	_ caddyfile.Unmarshaler       = (*RequestID)(nil)
)

// assignRequestID resolves the request's ID (the inbound X-Request-ID when
// valid, else a new one) and stamps it where the rest of the pipeline reads
// it: both header maps, the request_id variable and the access log's extra
// fields. cairn_request_id and cairn_edge share it.
func assignRequestID(w http.ResponseWriter, r *http.Request) (string, error) {
	var inbound string
	if v := r.Header[requestIDHeader]; len(v) > 0 {
		inbound = v[0]
	}
	id, err := requestid.Resolve(inbound)
	if err != nil {
		return "", err
	}
	// One value slice serves both header maps: net/http and Caddy only read
	// or replace header values, never write into the slices.
	value := []string{id}
	r.Header[requestIDHeader] = value
	w.Header()[requestIDHeader] = value
	caddyhttp.SetVar(r.Context(), requestIDVar, id)
	if accessLogged(r) {
		if extra, ok := r.Context().Value(caddyhttp.ExtraLogFieldsCtxKey).(*caddyhttp.ExtraLogFields); ok {
			extra.Set(zap.String(requestIDVar, id))
		}
	}
	return id, nil
}

// accessLogged reports whether the server handling r may write an access
// log entry for it, the reader of the extra log fields. Setting one costs
// three allocations (ExtraLogFields.Set builds a fresh sync.Map on every
// call), so a server without access logs (no `log` in its sites) is spared
// them; cairn's own log lines take the ID from the request variable (see
// requestLogger). Outside a Caddy server (a test) it answers true.
func accessLogged(r *http.Request) bool {
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return !ok || srv == nil || srv.Logs != nil
}
