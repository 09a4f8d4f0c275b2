package caddymodules

import (
	"fmt"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/metrics"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func init() {
	caddy.RegisterModule(new(RateLimit))
	httpcaddyfile.RegisterHandlerDirective("cairn_rate_limit", parseRateLimit)
}

// Backends of the limiter.
const (
	backendAuto   = "auto"
	backendMemory = "memory"
	backendRedis  = "redis"
)

// RateLimit applies GCRA rate limits in named zones. Each zone has a key
// (the client IP, or the verified DID), a rate, a burst and optional match
// conditions; a request is refused when any zone that matches it is out of
// quota. Zones run where the handler stands in the chain: put the per-IP
// zones before cairn_auth (cheap protection before any expensive work) and
// the per-DID zones after it.
//
// A refusal is HTTP 429 with Retry-After (whole seconds, rounded up),
// RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset, and the XRPC body
// {"error":"RateLimitExceeded","message":…}. Allowed responses carry the
// RateLimit-* headers of the tightest matching zone, unless
// admitted_headers is off.
//
// With Redis configured in the cairn app, limits are shared by every gateway
// node; when Redis is unreachable, on_backend_error decides: "local" (the
// default) limits from process memory, "allow" admits, "deny" refuses.
//
// Caddyfile:
//
//	cairn_rate_limit {
//	    preset  public|edge|api        # documented default zones; repeatable
//	    backend auto|memory|redis      # default auto: redis if configured
//	    on_backend_error local|allow|deny
//	    admitted_headers on|off        # default on: RateLimit-* on allowed responses too
//	    zone <name> {
//	        key    ip|did
//	        rate   <n>/<period>          # e.g. 60/1m, 3/1h
//	        burst  <n>                   # default: the rate's n
//	        match  nsid <nsid|prefix.*>...
//	        match  path <path|prefix*>...
//	        match  method <METHOD>...
//	        otherwise                    # only when no other zone of this key kind matched;
//	                                     # the first matching otherwise zone wins
//	    }
//	}
type RateLimit struct {
	// Presets adds the documented default zones of each named preset
	// ("public", "edge", "api") before Zones.
	Presets []string `json:"presets,omitempty"`
	// Zones are the operator's zones.
	Zones []*ratelimit.Zone `json:"zones,omitempty"`
	// Backend is "auto" (default: Redis when the cairn app has one, memory
	// otherwise), "memory" or "redis" (which requires Redis in the cairn app).
	Backend string `json:"backend,omitempty"`
	// OnBackendError is what happens while Redis is unreachable: "local"
	// (default), "allow" or "deny".
	OnBackendError string `json:"on_backend_error,omitempty"`
	// OmitAdmittedHeaders leaves the RateLimit-* headers off allowed
	// responses (75 bytes or so on each); refusals always carry them.
	OmitAdmittedHeaders bool `json:"omit_admitted_headers,omitempty"`

	zones   *ratelimit.Zones
	metrics *metrics.Metrics
	logger  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (*RateLimit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_rate_limit",
		New: func() caddy.Module { return new(RateLimit) },
	}
}

// Provision builds the limiter and the zones.
func (rl *RateLimit) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	rl.metrics = app.Metrics()
	rl.logger = app.ModuleLogger(ctx)

	if rl.Backend == "" {
		rl.Backend = backendAuto
	}
	if rl.OnBackendError == "" {
		rl.OnBackendError = "local"
	}
	policy, err := ratelimit.ParsePolicy(rl.OnBackendError)
	if err != nil {
		return fmt.Errorf("cairn_rate_limit on_backend_error %q: want local, allow or deny", rl.OnBackendError)
	}
	var limiter ratelimit.Limiter
	switch rl.Backend {
	case backendMemory:
		limiter = app.LocalLimiter()
	case backendRedis, backendAuto:
		if app.RedisClient() == nil {
			if rl.Backend == backendRedis {
				return fmt.Errorf("cairn_rate_limit backend redis: no Redis is configured; set `redis <url>` in the cairn global options")
			}
			limiter = app.LocalLimiter()
			break
		}
		if limiter, err = app.SharedLimiter(policy); err != nil {
			return fmt.Errorf("cairn_rate_limit: %w", err)
		}
	default:
		return fmt.Errorf("cairn_rate_limit backend %q: want auto, memory or redis", rl.Backend)
	}
	rl.zones, err = ratelimit.NewZones(ratelimit.ZonesConfig{
		Presets:  rl.Presets,
		Zones:    rl.Zones,
		Limiter:  limiter,
		Hasher:   app.Hasher(),
		Observer: func(zone string) ratelimit.ZoneObserver { return rl.metrics.RateLimitZone(zone) },
	})
	if err != nil {
		return fmt.Errorf("cairn_rate_limit: %w", err)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (rl *RateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	d, err := rl.zones.Allow(r.Context(), limitRequest(r))
	if err != nil {
		rl.backendFailure(w, r, err)
		return nil
	}
	if !d.Allowed {
		rl.refuse(w, r, d)
		return nil
	}
	rl.admitted(w, d)
	return next.ServeHTTP(w, r)
}

// admitted writes the RateLimit-* headers of an allowed request, unless
// they are configured off.
func (rl *RateLimit) admitted(w http.ResponseWriter, d ratelimit.Decision) {
	if d.Matched && !rl.OmitAdmittedHeaders {
		d.Result.SetHeaders(w.Header())
	}
}

// limitRequest is what the zones read of r: the method, path and XRPC
// method, the client IP as Caddy determined it (trusted proxies honoured; a
// forged X-Forwarded-For from an untrusted peer ignored), and the caller
// cairn_auth verified, if any.
func limitRequest(r *http.Request) ratelimit.Request {
	req := clientLimitRequest(r)
	if id, ok := caller.From(r.Context()); ok {
		req.DID = id.DID
	}
	return req
}

// clientLimitRequest is limitRequest without the caller, for a handler
// that runs before authentication.
func clientLimitRequest(r *http.Request) ratelimit.Request {
	req := ratelimit.Request{Method: r.Method, Path: r.URL.Path}
	req.NSID, _ = xrpc.NSIDFromPath(r.URL.Path)
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok {
		// Caddy always sets the variable; without one (a unit test, a unix
		// socket) the zero Addr shares one bucket.
		req.ClientIP, _ = netip.ParseAddr(ip)
	}
	return req
}

func (rl *RateLimit) refuse(w http.ResponseWriter, r *http.Request, d ratelimit.Decision) {
	h := http.Header{}
	d.Result.SetHeaders(h)
	respondError(rl.logger, w, r, &xrpc.Error{
		Status:  http.StatusTooManyRequests,
		Name:    "RateLimitExceeded",
		Message: fmt.Sprintf("rate limit %q exceeded (%s); retry in %d s", d.Zone, d.Result.Limit, d.Result.RetryAfterSeconds()),
		Header:  h,
	})
}

// backendFailure answers a limiter error that no failover policy absorbed
// (the memory store does not fail; this is a shared store without a policy
// result). It fails closed.
func (rl *RateLimit) backendFailure(w http.ResponseWriter, r *http.Request, err error) {
	rl.metrics.BackendError("ratelimit", "allow")
	respondError(rl.logger, w, r, &xrpc.Error{
		Status:  http.StatusServiceUnavailable,
		Name:    "ServiceUnavailable",
		Message: "the rate limiter is unavailable; retry shortly",
		Header:  http.Header{"Retry-After": {"1"}},
		Err:     fmt.Errorf("rate limiter failed; refusing the request: %w", err),
	})
}

func parseRateLimit(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(RateLimit)
	return m, m.UnmarshalCaddyfile(h.Dispenser)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (rl *RateLimit) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "preset":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.Errf("preset needs a name: public, edge or api")
			}
			rl.Presets = append(rl.Presets, names...)
		case "backend":
			if !d.AllArgs(&rl.Backend) {
				return d.ArgErr()
			}
		case "on_backend_error":
			if !d.AllArgs(&rl.OnBackendError) {
				return d.ArgErr()
			}
		case "admitted_headers":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			switch v {
			case "on":
				rl.OmitAdmittedHeaders = false
			case "off":
				rl.OmitAdmittedHeaders = true
			default:
				return d.Errf("admitted_headers %q: want on or off", v)
			}
		case "zone":
			z := new(ratelimit.Zone)
			if !d.AllArgs(&z.Name) {
				return d.Errf("zone needs a name: zone <name> { … }")
			}
			if err := unmarshalZone(d, z); err != nil {
				return err
			}
			rl.Zones = append(rl.Zones, z)
		default:
			return d.Errf("unrecognized cairn_rate_limit option %q", d.Val())
		}
	}
	return nil
}

func unmarshalZone(d *caddyfile.Dispenser, z *ratelimit.Zone) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "key":
			var key string
			if !d.AllArgs(&key) {
				return d.ArgErr()
			}
			z.Key = ratelimit.KeyKind(key)
		case "rate":
			if !d.AllArgs(&z.Rate) {
				return d.ArgErr()
			}
		case "burst":
			var s string
			if !d.AllArgs(&s) {
				return d.ArgErr()
			}
			n, err := positiveInt(s)
			if err != nil {
				return d.Errf("burst %q: %v", s, err)
			}
			z.Burst = n
		case "match":
			if !d.NextArg() {
				return d.Errf("match needs a kind: nsid, path or method")
			}
			kind := d.Val()
			values := d.RemainingArgs()
			if len(values) == 0 {
				return d.Errf("match %s needs at least one value", kind)
			}
			switch kind {
			case "nsid":
				z.MatchNSIDs = append(z.MatchNSIDs, values...)
			case "path":
				z.MatchPaths = append(z.MatchPaths, values...)
			case "method":
				z.MatchMethods = append(z.MatchMethods, values...)
			default:
				return d.Errf("match %q: want nsid, path or method", kind)
			}
		case "otherwise":
			if d.NextArg() {
				return d.ArgErr()
			}
			z.Otherwise = true
		default:
			return d.Errf("unrecognized zone option %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*RateLimit)(nil)
	_ caddyhttp.MiddlewareHandler = (*RateLimit)(nil)
	_ caddyfile.Unmarshaler       = (*RateLimit)(nil)
)
