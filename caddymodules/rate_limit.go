package caddymodules

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/metrics"
	"github.com/cairn-chat/cairn-caddy/internal/ratelimit"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func init() {
	caddy.RegisterModule(new(RateLimit))
	httpcaddyfile.RegisterHandlerDirective("cairn_rate_limit", parseRateLimit)
}

// Zone key kinds.
const (
	// KeyIP keys a zone by the client IP as Caddy determines it (honouring
	// trusted_proxies), IPv6 grouped by /64.
	KeyIP = "ip"
	// KeyDID keys a zone by the verified caller DID that cairn_auth put in
	// the request context, and by the client IP when there is none.
	KeyDID = "did"
)

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
// RateLimit-* headers of the tightest matching zone.
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
	Zones []*Zone `json:"zones,omitempty"`
	// Backend is "auto" (default: Redis when the cairn app has one, memory
	// otherwise), "memory" or "redis" (which requires Redis in the cairn app).
	Backend string `json:"backend,omitempty"`
	// OnBackendError is what happens while Redis is unreachable: "local"
	// (default), "allow" or "deny".
	OnBackendError string `json:"on_backend_error,omitempty"`

	zones   []*Zone
	limiter ratelimit.Limiter
	hasher  *redact.Hasher
	metrics *metrics.Metrics
	logger  *zap.Logger
}

// Zone is one named rate limit.
type Zone struct {
	// Name identifies the zone in metrics and in the limiter's keys; it must
	// be unique within the handler.
	Name string `json:"name"`
	// Key is "ip" or "did".
	Key string `json:"key"`
	// Rate is "<n>/<period>", for example "60/1m".
	Rate string `json:"rate"`
	// Burst is how many requests an idle key may make at once; 0 means the
	// rate's n.
	Burst int `json:"burst,omitempty"`
	// MatchNSIDs limits the zone to XRPC methods (/xrpc/<nsid>). An entry
	// ending in ".*" matches a namespace.
	MatchNSIDs []string `json:"match_nsids,omitempty"`
	// MatchPaths limits the zone to request paths. An entry ending in "*"
	// matches a prefix.
	MatchPaths []string `json:"match_paths,omitempty"`
	// MatchMethods limits the zone to HTTP methods.
	MatchMethods []string `json:"match_methods,omitempty"`
	// Otherwise applies the zone only to requests that no other zone of the
	// same key kind in this handler matched ("everything else"). Among
	// several such zones of one key kind, the first that matches applies.
	Otherwise bool `json:"otherwise,omitempty"`

	limit     ratelimit.Limit
	decisions *metrics.ZoneDecisions
}

// CaddyModule returns the Caddy module information.
func (*RateLimit) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cairn_rate_limit",
		New: func() caddy.Module { return new(RateLimit) },
	}
}

// Provision resolves presets and zones and builds the limiter.
func (rl *RateLimit) Provision(ctx caddy.Context) error {
	app, err := cairnApp(ctx)
	if err != nil {
		return err
	}
	rl.metrics = app.Metrics()
	rl.hasher = app.Hasher()
	rl.logger = app.ModuleLogger(ctx)

	rl.zones = nil
	for _, p := range rl.Presets {
		zones, err := presetZones(p)
		if err != nil {
			return err
		}
		rl.zones = append(rl.zones, zones...)
	}
	rl.zones = append(rl.zones, rl.Zones...)
	if len(rl.zones) == 0 {
		return fmt.Errorf("cairn_rate_limit: no zones; add a `zone` block or a `preset` (public, edge, api)")
	}
	seen := map[string]bool{}
	for _, z := range rl.zones {
		if err := z.provision(); err != nil {
			return fmt.Errorf("cairn_rate_limit: %w", err)
		}
		if seen[z.Name] {
			return fmt.Errorf("cairn_rate_limit: zone %q is defined twice (a preset may already define it; rename yours)", z.Name)
		}
		seen[z.Name] = true
		z.decisions = rl.metrics.RateLimitZone(z.Name)
	}

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
	switch rl.Backend {
	case backendMemory:
		rl.limiter = app.LocalLimiter()
	case backendRedis, backendAuto:
		if app.RedisClient() == nil {
			if rl.Backend == backendRedis {
				return fmt.Errorf("cairn_rate_limit backend redis: no Redis is configured; set `redis <url>` in the cairn global options")
			}
			rl.limiter = app.LocalLimiter()
			break
		}
		if rl.limiter, err = app.SharedLimiter(policy); err != nil {
			return fmt.Errorf("cairn_rate_limit: %w", err)
		}
	default:
		return fmt.Errorf("cairn_rate_limit backend %q: want auto, memory or redis", rl.Backend)
	}
	return nil
}

func (z *Zone) provision() error {
	if z.Name == "" || strings.ContainsAny(z.Name, " |{}") {
		return fmt.Errorf("zone name %q: use letters, digits, '-' or '_'", z.Name)
	}
	if z.Key != KeyIP && z.Key != KeyDID {
		return fmt.Errorf("zone %s: key %q: want ip or did", z.Name, z.Key)
	}
	rate, period, err := ratelimit.ParseRate(z.Rate)
	if err != nil {
		return fmt.Errorf("zone %s: rate %q: %w", z.Name, z.Rate, err)
	}
	z.limit = ratelimit.Limit{Rate: rate, Period: period, Burst: z.Burst}
	if err := z.limit.Validate(); err != nil {
		return fmt.Errorf("zone %s: %w", z.Name, err)
	}
	for i, m := range z.MatchMethods {
		z.MatchMethods[i] = strings.ToUpper(m)
	}
	return nil
}

// matches reports whether the zone's conditions (all kinds given) hold.
func (z *Zone) matches(r *http.Request, nsid string, isXRPC bool) bool {
	if len(z.MatchNSIDs) > 0 {
		if !isXRPC || !matchesAny(z.MatchNSIDs, nsid, matchNSID) {
			return false
		}
	}
	if len(z.MatchPaths) > 0 && !matchesAny(z.MatchPaths, r.URL.Path, matchPath) {
		return false
	}
	if len(z.MatchMethods) > 0 && !slices.Contains(z.MatchMethods, r.Method) {
		return false
	}
	return true
}

func matchesAny(patterns []string, s string, match func(pattern, s string) bool) bool {
	for _, p := range patterns {
		if match(p, s) {
			return true
		}
	}
	return false
}

func matchNSID(pattern, nsid string) bool {
	if ns, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(nsid, ns)
	}
	return pattern == nsid
}

func matchPath(pattern, path string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(path, prefix)
	}
	return pattern == path
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (rl *RateLimit) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	var buf [8]*Zone
	zones := rl.applicableZones(r, buf[:0])
	if len(zones) == 0 {
		return next.ServeHTTP(w, r)
	}
	var keys zoneKeys
	rl.requestKeys(&keys, r)
	var tightest ratelimit.Result
	for i, z := range zones {
		// The concatenation is the only allocation: Go reads string(…) of
		// a byte slice in place when it is an operand of +.
		res, err := rl.limiter.Allow(r.Context(), z.Name+string(keys.forZone(z)), z.limit)
		if err != nil {
			return rl.backendFailure(w, r, err)
		}
		z.decisions.Record(res.Allowed, res.Source.String())
		if !res.Allowed {
			return rl.refuse(w, z, res)
		}
		if i == 0 || res.Remaining < tightest.Remaining {
			tightest = res
		}
	}
	tightest.SetHeaders(w.Header())
	return next.ServeHTTP(w, r)
}

// applicableZones appends to out the zones that apply to r: every matching
// zone without `otherwise`, then, for each key kind none of those covered,
// the first matching `otherwise` zone.
func (rl *RateLimit) applicableZones(r *http.Request, out []*Zone) []*Zone {
	nsid, isXRPC := xrpc.NSIDFromPath(r.URL.Path)
	var coveredIP, coveredDID bool
	for _, z := range rl.zones {
		if !z.Otherwise && z.matches(r, nsid, isXRPC) {
			out = append(out, z)
			if z.Key == KeyIP {
				coveredIP = true
			} else {
				coveredDID = true
			}
		}
	}
	for _, z := range rl.zones {
		if !z.Otherwise {
			continue
		}
		covered := &coveredDID
		if z.Key == KeyIP {
			covered = &coveredIP
		}
		if !*covered && z.matches(r, nsid, isXRPC) {
			out = append(out, z)
			*covered = true
		}
	}
	return out
}

// zoneKeys are the identity parts of a request's limiter keys: "|ip|" or
// "|did|" and a keyed hash. They never carry a raw identity: they hold the
// keyed hash of the IP group or DID, so neither Redis nor a memory dump
// holds identities. Each is hashed once per request, whatever the number of
// zones, into a buffer on the caller's stack.
type zoneKeys struct {
	buf [len("|ip|") + len("|did|") + 2*redact.HashLen]byte
	// buf[:ipEnd] is the IP part; buf[ipEnd:didEnd] the DID part, empty
	// when the caller is not verified.
	ipEnd, didEnd int
}

func (rl *RateLimit) requestKeys(k *zoneKeys, r *http.Request) {
	var ipKey [64]byte
	b := append(k.buf[:0], "|ip|"...)
	b = rl.hasher.AppendHash(b, string(appendClientIPKey(ipKey[:0], r)))
	k.ipEnd, k.didEnd = len(b), len(b)
	if id, ok := caller.From(r.Context()); ok {
		b = rl.hasher.AppendHash(append(b, "|did|"...), id.DID)
		k.didEnd = len(b)
	}
}

// forZone returns the key suffix for z: the DID for a did zone when the
// caller is verified, the IP group otherwise.
func (k *zoneKeys) forZone(z *Zone) []byte {
	if z.Key == KeyDID && k.didEnd > k.ipEnd {
		return k.buf[k.ipEnd:k.didEnd]
	}
	return k.buf[:k.ipEnd]
}

func (rl *RateLimit) refuse(w http.ResponseWriter, z *Zone, res ratelimit.Result) error {
	h := http.Header{}
	res.SetHeaders(h)
	xrpc.WriteError(w, &xrpc.Error{
		Status:  http.StatusTooManyRequests,
		Name:    "RateLimitExceeded",
		Message: fmt.Sprintf("rate limit %q exceeded (%s); retry in %d s", z.Name, z.limit, res.RetryAfterSeconds()),
		Header:  h,
	})
	return nil
}

// backendFailure answers a limiter error that no failover policy absorbed
// (the memory store does not fail; this is a shared store without a policy
// result). It fails closed.
func (rl *RateLimit) backendFailure(w http.ResponseWriter, r *http.Request, err error) error {
	rl.metrics.BackendError("ratelimit", "allow")
	requestLogger(rl.logger, r).Error("rate limiter failed; refusing the request", zap.Error(err))
	xrpc.WriteError(w, &xrpc.Error{
		Status:  http.StatusServiceUnavailable,
		Name:    "ServiceUnavailable",
		Message: "the rate limiter is unavailable; retry shortly",
		Header:  http.Header{"Retry-After": {"1"}},
		Err:     err,
	})
	return nil
}

// appendClientIPKey appends the rate-limit key of the request's client IP,
// as Caddy determined it (trusted proxies honoured; a forged
// X-Forwarded-For from an untrusted peer ignored).
func appendClientIPKey(dst []byte, r *http.Request) []byte {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		// Caddy always sets the variable; a request without one (a unit
		// test, a unix socket) shares one bucket rather than none.
		return append(dst, "unknown"...)
	}
	return ratelimit.AppendIPKey(dst, addr)
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
		case "zone":
			z := new(Zone)
			if !d.AllArgs(&z.Name) {
				return d.Errf("zone needs a name: zone <name> { … }")
			}
			if err := z.unmarshalCaddyfile(d); err != nil {
				return err
			}
			rl.Zones = append(rl.Zones, z)
		default:
			return d.Errf("unrecognized cairn_rate_limit option %q", d.Val())
		}
	}
	return nil
}

func (z *Zone) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "key":
			if !d.AllArgs(&z.Key) {
				return d.ArgErr()
			}
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
