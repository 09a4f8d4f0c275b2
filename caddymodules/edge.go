package caddymodules

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
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
// read from {http.vars.request_id}, as error routes always did); a
// context lookup for a caller there cannot be yet; and one response writer
// wrapper. The headers are written by the same writer as
// cairn_security_headers', once.
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
//	        admitted_headers on|off
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
		if e.RateLimit.Signals != nil {
			return fmt.Errorf("cairn_edge rate_limit: signals are about a verified account, and cairn_edge runs before cairn_auth; put them in a cairn_rate_limit after cairn_auth")
		}
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
	pw := e.Headers.writer(w, r)
	// Whatever answers the request — the chain, a refusal below, or Caddy
	// for an error or a panic once this returns — finds the headers set.
	defer pw.applyOnce()

	if _, err := assignRequestID(w, r); err != nil {
		respondError(e.logger, pw, r, err)
		return nil
	}

	if rl := e.RateLimit; rl != nil {
		// No caller: cairn_edge runs before cairn_auth (Provision refuses
		// DID zones).
		d, err := rl.zones.Allow(r.Context(), clientLimitRequest(r))
		if err != nil {
			rl.backendFailure(pw, r, err)
			return nil
		}
		if !d.Allowed {
			rl.refuse(pw, r, d)
			return nil
		}
		rl.admitted(w, d)
	}
	return next.ServeHTTP(pw, r)
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
)
