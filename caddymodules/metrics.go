package caddymodules

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func init() {
	caddy.RegisterModule(new(Metrics))
	httpcaddyfile.RegisterHandlerDirective("cairn_metrics", parseMetrics)
}

// Metrics serves Prometheus metrics: cairn's collectors, Caddy's own metrics
// and the Go runtime and process metrics. Serve it only on an internal site
// (Caddyfile.example binds it to 127.0.0.1:9180); the public site must not
// route to it. Every label is bounded; none is ever an identity.
//
// Caddyfile:
//
//	cairn_metrics {
//	    bearer_token <token>   # optional: require Authorization: Bearer <token>
//	}
type Metrics struct {
	// BearerToken, when set, is required as "Authorization: Bearer <token>".
	// Placeholders are expanded, so {env.CAIRN_METRICS_TOKEN} works.
	BearerToken string `json:"bearer_token,omitempty"`

	tokenHash [sha256.Size]byte
	needToken bool
	handler   http.Handler
	logger    *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Metrics) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_metrics",
		New: func() caddy.Module { return new(Metrics) },
	}
}

// Provision builds the exposition handler.
func (m *Metrics) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	if tok := caddy.NewReplacer().ReplaceAll(m.BearerToken, ""); tok != "" {
		m.tokenHash = sha256.Sum256([]byte(tok))
		m.needToken = true
	} else if m.BearerToken != "" {
		return fmt.Errorf("cairn_metrics bearer_token %q expands to an empty value", m.BearerToken)
	}
	m.logger = app.ModuleLogger(ctx)
	gatherers := prometheus.Gatherers{ctx.GetMetricsRegistry(), app.Metrics().Registry}
	m.handler = promhttp.HandlerFor(gatherers, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if m.needToken {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(tok))
		if !ok || subtle.ConstantTimeCompare(sum[:], m.tokenHash[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="cairn metrics"`)
			respondError(m.logger, w, r, xrpc.Errorf(http.StatusUnauthorized, "AuthRequired", "a valid bearer token is required for metrics"))
			return nil
		}
	}
	m.handler.ServeHTTP(w, r)
	return nil
}

func parseMetrics(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Metrics)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (m *Metrics) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "bearer_token":
			if !d.AllArgs(&m.BearerToken) {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized cairn_metrics option %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Metrics)(nil)
	_ caddyhttp.MiddlewareHandler = (*Metrics)(nil)
	_ caddyfile.Unmarshaler       = (*Metrics)(nil)
)
