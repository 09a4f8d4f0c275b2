package caddymodules

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/authfail"
	"github.com/cairn-chat/cairn-caddy/internal/metrics"
	"github.com/cairn-chat/cairn-caddy/internal/operatorauth"
	"github.com/cairn-chat/cairn-caddy/internal/worker"
)

func init() {
	caddy.RegisterModule(new(OperatorAuth))
	httpcaddyfile.RegisterHandlerDirective("cairn_operator_auth", parseOperatorAuth)
}

// OperatorAuth guards the operator API on the internal site. It accepts an
// OpenID Connect ID or access token from the operators' identity provider
// (issuer discovery, JWKS, audience, and a required group or role claim),
// and, for small installs, a static operator token stored only as its
// SHA-256 hash and compared in constant time. With both configured, either
// is accepted. Successes (per operator) and refusals (per source address,
// as its keyed hash) are written to the audit log, aggregated per minute.
// A refusal is 401 (403 for a valid token without the role)
// with an XRPC error body; when the provider cannot be reached, 503.
//
// Caddyfile:
//
//	cairn_operator_auth {
//	    oidc {
//	        issuer        https://sso.example.com/realms/ops
//	        audience      cairn-operator
//	        role_claim    realm_access.roles      # default: groups
//	        required_role cairn-admin
//	        allow_http_issuer                     # development only
//	    }
//	    static_token_hash sha256:<64 hex>         # from `cairn-caddy operator-token`
//	    static_token_name ops-team                # the audit log's actor; default static
//	}
type OperatorAuth struct {
	// OIDC configures verification of tokens from an identity provider.
	OIDC *OperatorOIDC `json:"oidc,omitempty"`
	// StaticTokenHash is "sha256:<64 hex>" of the static operator token.
	// Placeholders are expanded ({env.CAIRN_OPERATOR_TOKEN_HASH}).
	StaticTokenHash string `json:"static_token_hash,omitempty"`
	// StaticTokenName names whoever holds the static token, as the actor
	// of its audit log rows. Default "static".
	StaticTokenName string `json:"static_token_name,omitempty"`

	verifiers []operatorauth.Verifier
	app       *App
	metrics   *metrics.Metrics
	logger    *zap.Logger
}

// OperatorOIDC is the identity-provider part of OperatorAuth.
type OperatorOIDC struct {
	// Issuer is the provider's issuer URL as in its discovery document.
	Issuer string `json:"issuer"`
	// Audience is the client ID or API audience the token must carry.
	Audience string `json:"audience"`
	// RoleClaim is the claim (or dot path) holding groups or roles.
	// Default "groups".
	RoleClaim string `json:"role_claim,omitempty"`
	// RequiredRole must be among RoleClaim's values.
	RequiredRole string `json:"required_role"`
	// AllowHTTPIssuer permits an http:// issuer. Development only.
	AllowHTTPIssuer bool `json:"allow_http_issuer,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (*OperatorAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_operator_auth",
		New: func() caddy.Module { return new(OperatorAuth) },
	}
}

// Provision builds the verifiers.
func (o *OperatorAuth) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	o.metrics, o.logger = app.Metrics(), app.ModuleLogger(ctx)
	// Authentication successes and failures go to the audit log, which
	// lives in the store.
	app.UseStore()
	o.app = app
	repl := caddy.NewReplacer()
	o.verifiers = nil
	if o.OIDC != nil {
		if o.OIDC.AllowHTTPIssuer {
			if err := app.RequireDevelopment("cairn_operator_auth allow_http_issuer"); err != nil {
				return err
			}
		}
		v, err := operatorauth.NewOIDCVerifier(operatorauth.OIDCConfig{
			Issuer:          repl.ReplaceAll(o.OIDC.Issuer, ""),
			Audience:        repl.ReplaceAll(o.OIDC.Audience, ""),
			RoleClaim:       o.OIDC.RoleClaim,
			RequiredRole:    o.OIDC.RequiredRole,
			AllowHTTPIssuer: o.OIDC.AllowHTTPIssuer,
		})
		if err != nil {
			return fmt.Errorf("cairn_operator_auth oidc: %w", err)
		}
		// Discover when the server starts (not here: validate runs
		// Provision, and must not reach the network), and do not fail
		// start-up: a provider that is down is retried on each request
		// until it answers.
		logger := o.logger
		app.AddWorker(worker.Func{WorkerName: "oidc-discovery", Fn: func(ctx context.Context) {
			dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := v.Discover(dctx); err != nil && ctx.Err() == nil {
				logger.Warn("OIDC discovery failed; operator tokens are refused until the provider answers", zap.Error(err))
			}
		}})
		o.verifiers = append(o.verifiers, v)
	}
	if hash := repl.ReplaceAll(o.StaticTokenHash, ""); hash != "" {
		st, err := operatorauth.ParseStaticTokenHash(hash)
		if err != nil {
			return fmt.Errorf("cairn_operator_auth static_token_hash: %w (generate one with `cairn-caddy operator-token`)", err)
		}
		st.Name = o.StaticTokenName
		o.verifiers = append(o.verifiers, st)
	} else if o.StaticTokenHash != "" {
		return fmt.Errorf("cairn_operator_auth static_token_hash %q expands to an empty value", o.StaticTokenHash)
	}
	if len(o.verifiers) == 0 {
		return fmt.Errorf("cairn_operator_auth: configure `oidc { … }`, `static_token_hash`, or both")
	}
	o.metrics.PreregisterAuthReasons("operator", []string{"ok", "missing", "invalid", "expired", "bad_aud", "forbidden", "unavailable", "internal"})
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (o *OperatorAuth) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	credential := r.Header.Get("Authorization")
	var firstErr error
	for _, v := range o.verifiers {
		op, err := v.Verify(r.Context(), credential)
		if err == nil {
			o.metrics.AuthOutcome("operator", "ok")
			if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
				repl.Set(userIDPlaceholder, "operator:"+op.Method)
			}
			if p := o.app.operatorPlane(); p != nil {
				p.auth.Success(op.Subject, op.Method)
			}
			return next.ServeHTTP(w, r.WithContext(operatorauth.NewContext(r.Context(), op)))
		}
		// Prefer the most telling refusal: a verifier that recognised the
		// token (forbidden, expired) over one that did not.
		if firstErr == nil || errors.Is(firstErr, operatorauth.ErrInvalidToken) {
			firstErr = err
		}
	}
	reason := authfail.Reason(firstErr)
	o.metrics.AuthOutcome("operator", reason)
	xe := authfail.XRPCError(firstErr)
	if p := o.app.operatorPlane(); p != nil {
		// Aggregated per source (the keyed hash of the client address)
		// per window: a flood writes one row per source.
		ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
		p.auth.Failure(o.app.hasher.Hash(ip), reason)
	}
	if !xe.ServerFault() {
		if c := requestLogger(o.logger, r).Check(zap.InfoLevel, "refused an operator request"); c != nil {
			c.Write(zap.String("reason", reason))
		}
	}
	respondError(o.logger, w, r, xe, zap.String("reason", reason))
	return nil
}

func parseOperatorAuth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(OperatorAuth)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (o *OperatorAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "static_token_hash":
			if !d.AllArgs(&o.StaticTokenHash) {
				return d.ArgErr()
			}
		case "static_token_name":
			if !d.AllArgs(&o.StaticTokenName) {
				return d.ArgErr()
			}
			if n := o.StaticTokenName; n == "" || len(n) > 128 || strings.ContainsAny(n, " \t\r\n") {
				return d.Errf("static_token_name %q: want 1 to 128 characters without spaces", n)
			}
		case "oidc":
			o.OIDC = new(OperatorOIDC)
			for nesting := d.Nesting(); d.NextBlock(nesting); {
				opt := d.Val()
				switch opt {
				case "issuer", "audience", "role_claim", "required_role":
					var v string
					if !d.AllArgs(&v) {
						return d.ArgErr()
					}
					switch opt {
					case "issuer":
						o.OIDC.Issuer = v
					case "audience":
						o.OIDC.Audience = v
					case "role_claim":
						o.OIDC.RoleClaim = v
					case "required_role":
						o.OIDC.RequiredRole = v
					}
				case "allow_http_issuer":
					if d.NextArg() {
						return d.ArgErr()
					}
					o.OIDC.AllowHTTPIssuer = true
				default:
					return d.Errf("unrecognized oidc option %q", opt)
				}
			}
		default:
			return d.Errf("unrecognized cairn_operator_auth option %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*OperatorAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*OperatorAuth)(nil)
	_ caddyfile.Unmarshaler       = (*OperatorAuth)(nil)
)
