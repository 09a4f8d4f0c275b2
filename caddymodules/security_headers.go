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

// ServeHTTP implements caddyhttp.MiddlewareHandler. The headers are
// written once: when the final response header is (so a handler that
// replaced the header map, a reverse proxy copying upstream headers say,
// cannot drop them or reintroduce Server), before the response is
// hijacked or flushed, or, when the chain ends without a response (an
// error Caddy answers, a panic), as ServeHTTP returns.
func (s *SecurityHeaders) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	pw := s.writer(w, r)
	// Whatever answers the request — the chain, or Caddy for an error or a
	// panic once this returns — finds the headers set.
	defer pw.applyOnce()
	return next.ServeHTTP(pw, r)
}

// writer returns the response writer that applies the policy to r's
// response.
func (s *SecurityHeaders) writer(w http.ResponseWriter, r *http.Request) *policyWriter {
	return &policyWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, policy: s.policy, path: r.URL.Path, overTLS: r.TLS != nil}
}

// policyWriter applies the header policy once: when the final response
// header is written, before the response is hijacked or flushed, or when
// applyOnce is called as the handler returns.
type policyWriter struct {
	caddyhttp.ResponseWriterWrapper
	policy  *secheaders.Policy
	path    string
	overTLS bool
	applied bool
}

func (pw *policyWriter) applyOnce() {
	if !pw.applied {
		pw.applied = true
		pw.policy.Apply(pw.ResponseWriterWrapper.Header(), pw.path, pw.overTLS)
	}
}

func (pw *policyWriter) WriteHeader(status int) {
	// 1xx other than 101 are informational; the final header follows.
	if status >= 200 || status == http.StatusSwitchingProtocols {
		pw.applyOnce()
	}
	pw.ResponseWriterWrapper.WriteHeader(status)
}

func (pw *policyWriter) Write(b []byte) (int, error) {
	pw.applyOnce()
	return pw.ResponseWriterWrapper.Write(b)
}

func (pw *policyWriter) ReadFrom(r io.Reader) (int64, error) {
	pw.applyOnce()
	return pw.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError flushes through the response controller; a flush before any
// write sends the header, so the policy goes first.
func (pw *policyWriter) FlushError() error {
	pw.applyOnce()
	return http.NewResponseController(pw.ResponseWriter).Flush()
}

// Flush implements http.Flusher.
func (pw *policyWriter) Flush() { _ = pw.FlushError() }

// Hijack is used by WebSocket upgrades; the hijacker writes the upgrade
// response from the header map, so the policy goes in first.
func (pw *policyWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	pw.applyOnce()
	return http.NewResponseController(pw.ResponseWriter).Hijack()
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
	_ http.Hijacker               = (*policyWriter)(nil)
	_ http.Flusher                = (*policyWriter)(nil)
)
