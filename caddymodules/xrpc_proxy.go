package caddymodules

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func init() {
	caddy.RegisterModule(new(XRPCProxy))
	httpcaddyfile.RegisterHandlerDirective("cairn_xrpc_proxy", parseXRPCProxy)
}

// XRPCProxy forwards XRPC calls (/xrpc/…), credentials included, to another
// atproto service such as a local PDS, so a client under development can talk
// to one origin. It is development-only: in production it would turn the
// gateway into an open relay for users' tokens, so the cairn app refuses to
// start with it unless `mode development` is set.
//
// Caddyfile: `cairn_xrpc_proxy <upstream-url>`.
type XRPCProxy struct {
	// Upstream is the base URL calls are forwarded to (http or https).
	Upstream string `json:"upstream,omitempty"`

	proxy  *httputil.ReverseProxy
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*XRPCProxy) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_xrpc_proxy",
		New: func() caddy.Module { return new(XRPCProxy) },
	}
}

// Provision refuses production mode and builds the proxy.
func (p *XRPCProxy) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	if err := app.RequireDevelopment("cairn_xrpc_proxy (a direct XRPC proxy)"); err != nil {
		return err
	}
	p.logger = app.ModuleLogger(ctx)
	target, err := url.Parse(p.Upstream)
	if err != nil || (target.Scheme != "http" && target.Scheme != "https") || target.Host == "" {
		return fmt.Errorf("cairn_xrpc_proxy upstream %q: want an absolute http:// or https:// URL", p.Upstream)
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			respondError(p.logger, w, r, &xrpc.Error{Status: http.StatusBadGateway, Name: "UpstreamFailure", Message: "the development upstream did not answer", Err: err})
		},
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (p *XRPCProxy) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if !strings.HasPrefix(r.URL.Path, xrpc.PathPrefix) {
		return next.ServeHTTP(w, r)
	}
	p.proxy.ServeHTTP(w, r)
	return nil
}

func parseXRPCProxy(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(XRPCProxy)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (p *XRPCProxy) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if !d.AllArgs(&p.Upstream) {
		return d.ArgErr()
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*XRPCProxy)(nil)
	_ caddyhttp.MiddlewareHandler = (*XRPCProxy)(nil)
	_ caddyfile.Unmarshaler       = (*XRPCProxy)(nil)
)
