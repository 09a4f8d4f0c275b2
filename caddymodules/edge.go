package caddymodules

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/secheaders"
)

func init() {
	caddy.RegisterModule(new(Edge))
	httpcaddyfile.RegisterHandlerDirective("cairn_edge", parseEdge)
}

// Edge runs the public edge in one handler: what cairn_request_id,
// cairn_security_headers and cairn_rate_limit do, in that order, with the
// same configuration and the same responses, in one pass and one route.
// The separate directives stay for sites that need other handlers between
// them.
//
// Against the three directives it saves, per request: two of Caddy's
// routes; the request copy that carries the ID in the context (the ID is
// read from {http.vars.request_id}, as error routes always did); the
// first application of the header policy, since the headers are written
// once, when the response header is, or when the chain ends without one
// (an error Caddy answers, a panic); and two response writer wrappers.
//
// Caddyfile:
//
//	cairn_edge {
//	    headers {            # optional: cairn_security_headers' options
//	        <Header-Name> <value>
//	        -<Header-Name>
//	        keep_xrpc_cache_control
//	    }
//	    rate_limit {         # optional: cairn_rate_limit's options; no limits without it
//	        preset edge
//	        zone <name> { … }
//	    }
//	}
type Edge struct {
	// Headers is the security header policy, as cairn_security_headers.
	Headers SecurityHeaders `json:"headers,omitzero"`
	// RateLimit holds the limits, as cairn_rate_limit; nil limits nothing.
	RateLimit *RateLimit `json:"rate_limit,omitempty"`

	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Edge) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_edge",
		New: func() caddy.Module { return new(Edge) },
	}
}

// Provision resolves the header policy and builds the zones, exactly as the
// separate handlers do.
func (e *Edge) Provision(ctx caddy.Context) error {
	e.logger = ctx.Logger()
	if err := e.Headers.Provision(ctx); err != nil {
		return fmt.Errorf("cairn_edge: %w", err)
	}
	if e.RateLimit != nil {
		if err := e.RateLimit.Provision(ctx); err != nil {
			return fmt.Errorf("cairn_edge: %w", err)
		}
		if names := e.RateLimit.zones.KeyedBy(ratelimit.KeyDID); len(names) > 0 {
			return fmt.Errorf("cairn_edge rate_limit: zones %s are keyed by did, but cairn_edge runs before cairn_auth and never sees a verified DID; put them in a cairn_rate_limit after cairn_auth (the edge preset holds the IP zones)", strings.Join(names, ", "))
		}
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ew := &edgeWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, policy: e.Headers.policy, path: r.URL.Path, overTLS: r.TLS != nil}
	// Whatever answers the request — the chain, a refusal below, or Caddy
	// for an error or a panic once this returns — finds the headers set.
	defer ew.applyOnce()

	if _, err := assignRequestID(w, r); err != nil {
		respondError(e.logger, ew, r, err)
		return nil
	}

	if rl := e.RateLimit; rl != nil {
		d, err := rl.zones.Allow(r.Context(), limitRequest(r))
		if err != nil {
			rl.backendFailure(ew, r, err)
			return nil
		}
		if !d.Allowed {
			rl.refuse(ew, r, d)
			return nil
		}
		if d.Matched {
			d.Result.SetHeaders(w.Header())
		}
	}
	return next.ServeHTTP(ew, r)
}

// edgeWriter applies the header policy once: when the final response
// header is written (so a handler that replaced the header map, a reverse
// proxy copying upstream headers say, cannot drop them or reintroduce
// Server), or before the response is hijacked or flushed, or when the
// chain ends without a response.
type edgeWriter struct {
	caddyhttp.ResponseWriterWrapper
	policy  *secheaders.Policy
	path    string
	overTLS bool
	applied bool
}

func (ew *edgeWriter) applyOnce() {
	if !ew.applied {
		ew.applied = true
		ew.policy.Apply(ew.ResponseWriterWrapper.Header(), ew.path, ew.overTLS)
	}
}

func (ew *edgeWriter) WriteHeader(status int) {
	// 1xx other than 101 are informational; the final header follows.
	if status >= 200 || status == http.StatusSwitchingProtocols {
		ew.applyOnce()
	}
	ew.ResponseWriterWrapper.WriteHeader(status)
}

func (ew *edgeWriter) Write(b []byte) (int, error) {
	ew.applyOnce()
	return ew.ResponseWriterWrapper.Write(b)
}

func (ew *edgeWriter) ReadFrom(r io.Reader) (int64, error) {
	ew.applyOnce()
	return ew.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError flushes through the response controller; a flush before any
// write sends the header, so the policy goes first.
func (ew *edgeWriter) FlushError() error {
	ew.applyOnce()
	return http.NewResponseController(ew.ResponseWriter).Flush()
}

// Flush implements http.Flusher.
func (ew *edgeWriter) Flush() { _ = ew.FlushError() }

// Hijack is used by WebSocket upgrades; the hijacker writes the upgrade
// response from the header map, so the policy goes in first.
func (ew *edgeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	ew.applyOnce()
	return http.NewResponseController(ew.ResponseWriter).Hijack()
}

func parseEdge(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Edge)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. The
// headers and rate_limit blocks take the options of
// cairn_security_headers and cairn_rate_limit.
func (e *Edge) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "headers":
			if err := e.Headers.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
				return err
			}
		case "rate_limit":
			if e.RateLimit != nil {
				return d.Errf("cairn_edge takes one rate_limit block; put every zone in it")
			}
			e.RateLimit = new(RateLimit)
			if err := e.RateLimit.UnmarshalCaddyfile(d.NewFromNextSegment()); err != nil {
				return err
			}
		default:
			return d.Errf("unrecognized cairn_edge option %q: want headers or rate_limit", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Edge)(nil)
	_ caddyhttp.MiddlewareHandler = (*Edge)(nil)
	_ caddyfile.Unmarshaler       = (*Edge)(nil)
	_ http.Hijacker               = (*edgeWriter)(nil)
	_ http.Flusher                = (*edgeWriter)(nil)
)
