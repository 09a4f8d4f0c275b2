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

	"github.com/cairn-chat/cairn-caddy/internal/secheaders"
)

func init() {
	caddy.RegisterModule(new(SecurityHeaders))
	httpcaddyfile.RegisterHandlerDirective("cairn_security_headers", parseSecurityHeaders)
}

// SecurityHeaders sets the security headers of every response — including
// error responses, 429s and Caddy's error routes — and removes the Server
// header. Defaults: a strict Content-Security-Policy, HSTS for a year with
// subdomains, X-Frame-Options DENY, nosniff, Referrer-Policy
// strict-origin-when-cross-origin and a Permissions-Policy that denies camera,
// microphone and geolocation. XRPC responses (/xrpc/…) also get
// Cache-Control: no-store.
//
// Caddyfile:
//
//	cairn_security_headers {
//	    <Header-Name> <value>    # override or add a header
//	    -<Header-Name>           # remove a default header
//	    keep_xrpc_cache_control  # leave Cache-Control on XRPC responses alone
//	}
type SecurityHeaders struct {
	// Set overrides default headers or adds new ones, by name.
	Set map[string]string `json:"set,omitempty"`
	// Remove drops default headers by name.
	Remove []string `json:"remove,omitempty"`
	// KeepXRPCCacheControl leaves Cache-Control on XRPC responses to the
	// handlers instead of forcing no-store.
	KeepXRPCCacheControl bool `json:"keep_xrpc_cache_control,omitempty"`

	policy *secheaders.Policy
}

// CaddyModule returns the Caddy module information.
func (*SecurityHeaders) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_security_headers",
		New: func() caddy.Module { return new(SecurityHeaders) },
	}
}

// Provision resolves the header policy.
func (s *SecurityHeaders) Provision(caddy.Context) error {
	p, err := secheaders.New(secheaders.Config{Set: s.Set, Remove: s.Remove, KeepXRPCCacheControl: s.KeepXRPCCacheControl})
	if err != nil {
		return fmt.Errorf("cairn_security_headers: %w", err)
	}
	s.policy = p
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler. The headers go into the
// response header map before the rest of the chain runs, so they are there
// even when a later handler returns an error and Caddy writes the error
// response; they are applied once more when the response header is written,
// so a handler that replaces headers (a reverse proxy copying upstream
// headers, say) cannot drop them or reintroduce Server.
func (s *SecurityHeaders) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	path := r.URL.Path
	overTLS := r.TLS != nil
	s.policy.Apply(w.Header(), path, overTLS)
	return next.ServeHTTP(&headerWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, policy: s.policy, path: path, overTLS: overTLS}, r)
}

// headerWriter re-applies the policy when the final response header is
// written.
type headerWriter struct {
	caddyhttp.ResponseWriterWrapper
	policy  *secheaders.Policy
	path    string
	overTLS bool
	written bool
}

func (hw *headerWriter) WriteHeader(status int) {
	if !hw.written && status >= 200 {
		hw.written = true
		hw.policy.Apply(hw.ResponseWriterWrapper.Header(), hw.path, hw.overTLS)
	}
	hw.ResponseWriterWrapper.WriteHeader(status)
}

func (hw *headerWriter) Write(b []byte) (int, error) {
	if !hw.written {
		hw.WriteHeader(http.StatusOK)
	}
	return hw.ResponseWriterWrapper.Write(b)
}

func (hw *headerWriter) ReadFrom(r io.Reader) (int64, error) {
	if !hw.written {
		hw.WriteHeader(http.StatusOK)
	}
	return hw.ResponseWriterWrapper.ReadFrom(r)
}

// Hijack is used by WebSocket upgrades; the upgrade response is written by
// the hijacker, so the headers already in the map are what it sends.
func (hw *headerWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(hw.ResponseWriter).Hijack()
}

func parseSecurityHeaders(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(SecurityHeaders)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (s *SecurityHeaders) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		name := d.Val()
		switch {
		case name == "keep_xrpc_cache_control":
			if d.NextArg() {
				return d.ArgErr()
			}
			s.KeepXRPCCacheControl = true
		case strings.HasPrefix(name, "-"):
			if d.NextArg() {
				return d.Errf("removing header %s takes no value", name)
			}
			s.Remove = append(s.Remove, strings.TrimPrefix(name, "-"))
		default:
			if !d.NextArg() {
				return d.Errf("header %s needs a value (write -%s to remove it)", name, name)
			}
			value := d.Val()
			if d.NextArg() {
				return d.Errf("header %s takes one value; quote values with spaces", name)
			}
			if s.Set == nil {
				s.Set = map[string]string{}
			}
			s.Set[name] = value
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*SecurityHeaders)(nil)
	_ caddyhttp.MiddlewareHandler = (*SecurityHeaders)(nil)
	_ caddyfile.Unmarshaler       = (*SecurityHeaders)(nil)
	_ http.Hijacker               = (*headerWriter)(nil)
)
