package caddymodules

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/authfail"
	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/metrics"
	"github.com/cairn-chat/cairn-caddy/internal/tracing"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

// jtiReplayPrefix prefixes the Redis keys that remember used service-auth
// token IDs.
const jtiReplayPrefix = "cairn:jti:"

func init() {
	caddy.RegisterModule(new(Auth))
	httpcaddyfile.RegisterHandlerDirective("cairn_auth", parseAuth)
}

// userIDPlaceholder is Caddy's placeholder for the authenticated user; the
// access log's user_id field comes from it. cairn puts only the keyed hash
// of the DID there.
const userIDPlaceholder = "http.auth.user.id"

// Auth verifies atproto service-auth JWTs (Authorization: Bearer <jwt>): the
// signature against the issuer DID document's #atproto key (did:plc through
// the PLC directory, did:web over HTTPS), alg ES256K or ES256, aud equal to
// the service DID, exp and iat within the leeway and the lifetime cap, lxm
// equal to the requested method's NSID, and a single-use jti. Everything
// after it trusts only the identity it puts into the request context. A
// refusal is 401 with an XRPC error (AuthMissing, BadJwt, BadJwtSignature,
// JwtExpired, BadJwtAudience, BadJwtLexiconMethod, JwtReplayed, …); when the
// replay store or the issuer's DID host is unreachable it is 503 with
// Retry-After: auth fails closed.
//
// Caddyfile:
//
//	cairn_auth {
//	    service_did         did:web:{$CAIRN_DOMAIN}
//	    plc_url             https://plc.directory   # other values: development only
//	    leeway              5s
//	    max_token_lifetime  60s                     # at most 1h
//	    replay              auto|redis|memory
//	    lxm_optional                                # development only
//	}
type Auth struct {
	// ServiceDID is this service's DID, the only accepted audience (bare, or
	// as did#serviceId). Required.
	ServiceDID string `json:"service_did,omitempty"`
	// PLCURL overrides the cairn app's PLC directory for this handler. Any
	// value other than https://plc.directory is development only.
	PLCURL string `json:"plc_url,omitempty"`
	// Leeway absorbs clock skew in the exp and iat checks. Default 5s.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// MaxTokenLifetime is the largest exp - iat accepted. Default 60s, at
	// most 1h.
	MaxTokenLifetime caddy.Duration `json:"max_token_lifetime,omitempty"`
	// Replay is where used token IDs are remembered: "redis" (shared by all
	// nodes; requires redis in the cairn app), "memory" (this process), or
	// "auto" (the default: redis when configured).
	Replay string `json:"replay,omitempty"`
	// LXMOptional accepts tokens without an lxm claim. Development only.
	LXMOptional bool `json:"lxm_optional,omitempty"`

	verifier *atpauth.Verifier
	app      *App
	metrics  *metrics.Metrics
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*Auth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_auth",
		New: func() caddy.Module { return new(Auth) },
	}
}

// Provision builds the verifier from the cairn app's shared resolver and
// replay store.
func (a *Auth) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	a.app, a.metrics, a.logger = app, app.Metrics(), app.ModuleLogger(ctx)
	if a.ServiceDID == "" {
		return fmt.Errorf("cairn_auth: service_did is required (this service's DID, e.g. did:web:chat.example.com)")
	}
	if a.LXMOptional {
		if err := app.RequireDevelopment("cairn_auth lxm_optional"); err != nil {
			return err
		}
	}
	plc := app.PLCURL
	if a.PLCURL != "" && a.PLCURL != plc {
		if a.PLCURL != DefaultPLCURL {
			if err := app.RequireDevelopment("cairn_auth plc_url (a PLC directory override)"); err != nil {
				return err
			}
		}
		plc = a.PLCURL
	}
	resolver, err := app.DIDResolver(plc)
	if err != nil {
		return fmt.Errorf("cairn_auth: %w", err)
	}
	if a.Replay == "" {
		a.Replay = backendAuto
	}
	replay, err := app.ReplayStore(a.Replay, jtiReplayPrefix)
	if err != nil {
		return fmt.Errorf("cairn_auth replay: %w", err)
	}
	a.verifier, err = atpauth.NewVerifier(atpauth.Config{
		ServiceDID:       a.ServiceDID,
		Leeway:           time.Duration(a.Leeway),
		MaxTokenLifetime: time.Duration(a.MaxTokenLifetime),
		LXMOptional:      a.LXMOptional,
		Keys:             resolver,
		Replay:           replay,
	})
	if err != nil {
		return fmt.Errorf("cairn_auth: %w", err)
	}
	a.metrics.PreregisterAuthReasons("client", append(atpauth.Reasons(), "ok"))
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
//
// Its frame stays on the stack of every event stream's connection for as
// long as the stream is open, so it only calls: the verification and its
// refusals live in authenticate, whose frame is gone once it returns.
func (a *Auth) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	ctx, ok := a.authenticate(w, r)
	if !ok {
		return nil
	}
	return next.ServeHTTP(w, r.WithContext(ctx))
}

// authenticate verifies r's service-auth token and returns r's context
// carrying the caller, or answers r with the refusal and reports false.
func (a *Auth) authenticate(w http.ResponseWriter, r *http.Request) (context.Context, bool) {
	nsid, _ := xrpc.NSIDFromPath(r.URL.Path)
	traced, span := startSpan(r, "cairn.auth", attribute.String(tracing.NSIDKey, xrpc.LabelFor(nsid)))
	v, err := a.verifier.Verify(traced.Context(), r.Header.Get("Authorization"), nsid)
	reason := authReason(err)
	span.SetAttributes(attribute.String(tracing.AuthReasonKey, reason))
	span.End()
	if err != nil {
		a.metrics.AuthOutcome("client", reason)
		if errors.Is(err, atpauth.ErrReplayUnavailable) {
			a.metrics.BackendError("redis", "replay")
		}
		xe := authfail.XRPCError(err)
		if !xe.ServerFault() {
			if c := requestLogger(a.logger, r).Check(zap.DebugLevel, "refused a service-auth token"); c != nil {
				c.Write(zap.String("reason", reason))
			}
		}
		respondError(a.logger, w, r, xe, zap.String("reason", reason))
		return nil, false
	}
	a.metrics.AuthOutcome("client", reason)

	id := v.Identity(r.Header.Get(atpauth.DeviceHeader))
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set(userIDPlaceholder, a.app.Redact(id.DID))
	}
	return caller.With(r.Context(), id), true
}

// authReason is an auth outcome as its metric and span show it: "ok", or
// the verifier's fixed failure reason.
func authReason(err error) string {
	if err == nil {
		return "ok"
	}
	return authfail.Reason(err)
}

func parseAuth(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Auth)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (a *Auth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
		switch opt {
		case "service_did":
			if !d.AllArgs(&a.ServiceDID) {
				return d.ArgErr()
			}
		case "plc_url":
			if !d.AllArgs(&a.PLCURL) {
				return d.ArgErr()
			}
		case "replay":
			if !d.AllArgs(&a.Replay) {
				return d.ArgErr()
			}
		case "leeway", "max_token_lifetime":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(s)
			if err != nil || dur <= 0 {
				return d.Errf("%s %q: want a positive duration such as 5s", opt, s)
			}
			if opt == "leeway" {
				a.Leeway = caddy.Duration(dur)
			} else {
				a.MaxTokenLifetime = caddy.Duration(dur)
			}
		case "lxm_optional":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.LXMOptional = true
		default:
			return d.Errf("unrecognized cairn_auth option %q", opt)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Auth)(nil)
	_ caddyhttp.MiddlewareHandler = (*Auth)(nil)
	_ caddyfile.Unmarshaler       = (*Auth)(nil)
)
