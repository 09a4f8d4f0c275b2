package caddymodules

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"time"

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
//	        when new_account|high_churn|large_group rate <n>/<period> [burst <n>]
//	                                     # tighter while the signal holds (key did only)
//	    }
//	    signals {                        # the adaptive signals `when` names
//	        new_account   7d             # first seen less than this ago
//	        forget        30d            # an account unseen this long is new again
//	        churn         20/1h          # more than 20 membership calls in an hour
//	        churn_methods <nsid|prefix.*>...
//	        large_group   500            # conversations of at least 500 members
//	    }
//	}
//
// With signals, a request from a verified caller is recorded (one store
// call: a keyed hash of the DID with its first-seen time, and a churn
// count) and the signals that hold travel in the request context, for the
// zones' modifiers, cairn_delivery's large-group check and its
// proof-of-work difficulty. Handlers on one backend share one recorder
// (App.SignalRecorder): a request passing several is recorded once, by
// the first, so a membership call counts as one churn call.
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
	// Signals defines the adaptive signals the zones' modifiers name; nil
	// records nothing.
	Signals *AdaptiveSignals `json:"signals,omitempty"`

	zones   *ratelimit.Zones
	metrics *metrics.Metrics
	logger  *zap.Logger
}

// AdaptiveSignals says when each adaptive signal holds; a zero threshold
// leaves its signal off (docs/rate-limiting.md, "Adaptive limits").
type AdaptiveSignals struct {
	// NewAccount: an account first seen less than this long ago is new.
	NewAccount caddy.Duration `json:"new_account,omitempty"`
	// Forget: an account not seen for this long is forgotten and counts
	// as new again. Default 30 days; at least NewAccount.
	Forget caddy.Duration `json:"forget,omitempty"`
	// Churn is "<n>/<period>": an account that makes more than n
	// membership calls in one period has high churn.
	Churn string `json:"churn,omitempty"`
	// ChurnMethods are the methods counted as membership calls; default
	// createConvo, addMembers, removeMember, leaveConvo,
	// processExternalCommit, rejoin and readdition.
	ChurnMethods []string `json:"churn_methods,omitempty"`
	// LargeGroup: a conversation of at least this many members is large.
	LargeGroup int `json:"large_group,omitempty"`
}

// config returns the signals as internal/ratelimit takes them.
func (s *AdaptiveSignals) config() (*ratelimit.SignalConfig, error) {
	cfg := &ratelimit.SignalConfig{
		NewAccount: time.Duration(s.NewAccount),
		Forget:     time.Duration(s.Forget),
		ChurnNSIDs: s.ChurnMethods,
		LargeGroup: s.LargeGroup,
	}
	if s.Churn != "" {
		n, period, err := ratelimit.ParseRate(s.Churn)
		if err != nil {
			return nil, fmt.Errorf("signals churn %q: want <calls>/<period> such as 20/1h: %w", s.Churn, err)
		}
		cfg.ChurnCalls, cfg.ChurnWindow = n, period
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("signals: %w", err)
	}
	return cfg, nil
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
	var (
		limiter  ratelimit.Limiter
		failover *ratelimit.Failover // nil: the signals are in memory too
		recorder *ratelimit.SignalRecorder
		sigCfg   *ratelimit.SignalConfig
	)
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
		if failover, err = app.SharedLimiter(policy); err != nil {
			return fmt.Errorf("cairn_rate_limit: %w", err)
		}
		limiter = failover
	default:
		return fmt.Errorf("cairn_rate_limit backend %q: want auto, memory or redis", rl.Backend)
	}
	if rl.Signals != nil {
		if sigCfg, err = rl.Signals.config(); err != nil {
			return fmt.Errorf("cairn_rate_limit: %w", err)
		}
		if recorder, err = app.SignalRecorder(failover); err != nil {
			return fmt.Errorf("cairn_rate_limit: %w", err)
		}
	}
	rl.zones, err = ratelimit.NewZones(ratelimit.ZonesConfig{
		Presets:  rl.Presets,
		Zones:    rl.Zones,
		Limiter:  limiter,
		Hasher:   app.Hasher(),
		Observer: func(zone string) ratelimit.ZoneObserver { return rl.metrics.RateLimitZone(zone) },
		Signals:  sigCfg,
		Recorder: recorder,
		ModifierObserver: func(zone string, s ratelimit.Signal) ratelimit.ZoneObserver {
			return rl.metrics.RateLimitModifier(zone, s.String())
		},
	})
	if err != nil {
		return fmt.Errorf("cairn_rate_limit: %w", err)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (rl *RateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	req := limitRequest(r)
	d, err := rl.zones.Allow(r.Context(), req)
	if err != nil {
		rl.backendFailure(w, r, err)
		return nil
	}
	if !d.Allowed {
		rl.refuse(w, r, d)
		return nil
	}
	rl.admitted(w, d)
	if rl.Signals != nil && req.DID != "" {
		// Later handlers (cairn_delivery) read the signals and decide the
		// large-group modifiers.
		r = r.WithContext(ratelimit.NewContext(r.Context(), rl.zones.Admission(req, d)))
	}
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
		Message: refusalMessage(d),
		Header:  h,
	})
}

// refusalMessage says which limit refused, and under which signal.
func refusalMessage(d ratelimit.Decision) string {
	zone := strconv.Quote(d.Zone)
	if d.Signal != 0 {
		zone += " for " + d.Signal.String()
	}
	return fmt.Sprintf("rate limit %s exceeded (%s); retry in %d s", zone, d.Result.Limit, d.Result.RetryAfterSeconds())
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
		case "signals":
			if rl.Signals != nil {
				return d.Errf("cairn_rate_limit takes one signals block")
			}
			rl.Signals = new(AdaptiveSignals)
			if err := unmarshalSignals(d, rl.Signals); err != nil {
				return err
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
		case "when":
			m, err := unmarshalModifier(d)
			if err != nil {
				return err
			}
			z.Modifiers = append(z.Modifiers, m)
		default:
			return d.Errf("unrecognized zone option %q", d.Val())
		}
	}
	return nil
}

// unmarshalModifier reads `when <signal> rate <n>/<period> [burst <n>]`.
func unmarshalModifier(d *caddyfile.Dispenser) (ratelimit.Modifier, error) {
	var m ratelimit.Modifier
	args := d.RemainingArgs()
	if len(args) == 0 {
		return m, d.Errf("when needs a signal and a rate: when new_account rate 20/1m [burst 5]")
	}
	sig, err := ratelimit.ParseSignal(args[0])
	if err != nil {
		return m, d.Errf("when: %v", err)
	}
	m.When = sig
	rest := args[1:]
	if len(rest)%2 != 0 {
		return m, d.Errf("when %s: options come in pairs: rate <n>/<period> [burst <n>]", sig)
	}
	for i := 0; i < len(rest); i += 2 {
		switch rest[i] {
		case "rate":
			m.Rate = rest[i+1]
		case "burst":
			n, err := positiveInt(rest[i+1])
			if err != nil {
				return m, d.Errf("when %s burst %q: %v", sig, rest[i+1], err)
			}
			m.Burst = n
		default:
			return m, d.Errf("when %s: unrecognized option %q: want rate or burst", sig, rest[i])
		}
	}
	if m.Rate == "" {
		return m, d.Errf("when %s needs a rate: when %s rate <n>/<period>", sig, sig)
	}
	return m, nil
}

// unmarshalSignals reads the signals block.
func unmarshalSignals(d *caddyfile.Dispenser, s *AdaptiveSignals) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "new_account", "forget":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("signals %s %q: want a positive duration such as 7d or 48h", opt, v)
			}
			if opt == "new_account" {
				s.NewAccount = caddy.Duration(dur)
			} else {
				s.Forget = caddy.Duration(dur)
			}
		case "churn":
			if !d.AllArgs(&s.Churn) {
				return d.ArgErr()
			}
		case "churn_methods":
			s.ChurnMethods = append(s.ChurnMethods, d.RemainingArgs()...)
			if len(s.ChurnMethods) == 0 {
				return d.Errf("signals churn_methods needs at least one NSID")
			}
		case "large_group":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := positiveInt(v)
			if err != nil || n == 0 {
				return d.Errf("signals large_group %q: want a member count such as 500", v)
			}
			s.LargeGroup = n
		default:
			return d.Errf("unrecognized signals option %q: want new_account, forget, churn, churn_methods or large_group", opt)
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
