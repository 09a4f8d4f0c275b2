package ratelimit

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/cairn-chat/cairn-caddy/internal/redact"
)

// Request is what the zones need to know of an HTTP request, as plain
// values the adapter reads from it.
type Request struct {
	// Method is the HTTP method.
	Method string
	// Path is the URL path.
	Path string
	// NSID is the XRPC method the path names (/xrpc/<nsid>), or empty when
	// the request is not an XRPC call.
	NSID string
	// ClientIP is the client address as the server determined it, trusted
	// proxies honoured and a forged X-Forwarded-For ignored. The zero Addr
	// (no address known) shares one bucket.
	ClientIP netip.Addr
	// DID is the verified caller's DID, or empty. Only an authenticator that
	// verified a token may fill it: nothing from an unverified token may
	// reach a key.
	DID string
}

// ZoneObserver records one zone's decisions, for a metric.
type ZoneObserver interface {
	Record(allowed bool, source string)
}

// ZonesConfig configures a Zones.
type ZonesConfig struct {
	// Presets adds the zones of each named preset (see PresetZones) before
	// Zones.
	Presets []string
	// Zones are the operator's zones.
	Zones []*Zone
	// Limiter decides; required.
	Limiter Limiter
	// Hasher turns the IP group and DID into the keyed hashes the limiter's
	// keys hold, so that neither Redis nor a memory dump holds an identity.
	// Required.
	Hasher *redact.Hasher
	// Observer, if set, returns the observer of the named zone; it is called
	// once per zone by NewZones.
	Observer func(zone string) ZoneObserver
}

// Zones is a set of zones over one limiter: it finds the zones that apply
// to a request, builds their keys, and decides. It is safe for concurrent
// use.
//
// The zones that apply to a request are every matching zone without
// Otherwise, then, for each key kind none of those covered, the first
// matching Otherwise zone.
type Zones struct {
	zones   []*zone
	limiter Limiter
	// local is limiter when it is a MemoryStore, which Zones calls
	// directly: no key string, one clock read per request.
	local  *MemoryStore
	hasher *redact.Hasher
}

// NewZones resolves the presets, checks every zone and returns the set.
// Its errors name the zone and the option at fault.
func NewZones(cfg ZonesConfig) (*Zones, error) {
	if cfg.Limiter == nil || cfg.Hasher == nil {
		return nil, fmt.Errorf("%w: zones need a limiter and a hasher", ErrInvalidZone)
	}
	var all []*Zone
	for _, p := range cfg.Presets {
		zones, err := PresetZones(p)
		if err != nil {
			return nil, err
		}
		all = append(all, zones...)
	}
	all = append(all, cfg.Zones...)
	if len(all) == 0 {
		return nil, fmt.Errorf("%w: no zones; add a `zone` block or a `preset` (public, edge, api)", ErrInvalidZone)
	}
	zs := &Zones{limiter: cfg.Limiter, hasher: cfg.Hasher}
	zs.local, _ = cfg.Limiter.(*MemoryStore)
	seen := map[string]bool{}
	for _, z := range all {
		c, err := z.compile()
		if err != nil {
			return nil, err
		}
		if seen[c.name] {
			return nil, fmt.Errorf("%w: zone %q is defined twice (a preset may already define it; rename yours)", ErrInvalidZone, c.name)
		}
		seen[c.name] = true
		if cfg.Observer != nil {
			c.observer = cfg.Observer(c.name)
		}
		zs.zones = append(zs.zones, c)
	}
	return zs, nil
}

// Decision is the outcome of Zones.Allow.
type Decision struct {
	// Allowed reports whether the request may proceed.
	Allowed bool
	// Matched reports whether any zone applied. A request no zone applies
	// to is allowed, with a zero Result.
	Matched bool
	// Result is the refusing zone's result, or, for an allowed request, the
	// tightest (fewest remaining) of the zones that applied; its SetHeaders
	// writes the response headers.
	Result Result
	// Zone names the refusing zone; empty when allowed.
	Zone string
}

// Allow decides req in every zone that applies to it, in order, and stops
// at the first refusal. An error means the limiter could not decide (a
// shared store without a failover policy, or a cancelled context); the
// caller should fail closed.
func (zs *Zones) Allow(ctx context.Context, req Request) (Decision, error) {
	var buf [8]*zone
	zones := zs.applicable(&req, buf[:0])
	if len(zones) == 0 {
		return Decision{Allowed: true}, nil
	}
	var keys zoneKeys
	zs.requestKeys(&keys, &req)
	var now int64
	if zs.local != nil {
		now = zs.local.now().UnixNano()
	}
	d := Decision{Matched: true}
	for i, z := range zones {
		var res Result
		if zs.local != nil {
			var buf [64 + len(keys.buf)]byte
			res = zs.local.allowKey(append(append(buf[:0], z.name...), keys.forZone(z)...), now, z.limit)
		} else {
			// The concatenation is the only allocation: Go reads string(…)
			// of a byte slice in place when it is an operand of +.
			var err error
			res, err = zs.limiter.Allow(ctx, z.name+string(keys.forZone(z)), z.limit)
			if err != nil {
				return Decision{}, fmt.Errorf("rate limit zone %s: %w", z.name, err)
			}
		}
		if z.observer != nil {
			z.observer.Record(res.Allowed, res.Source.String())
		}
		if !res.Allowed {
			return Decision{Matched: true, Result: res, Zone: z.name}, nil
		}
		if i == 0 || res.Remaining < d.Result.Remaining {
			d.Result = res
		}
	}
	d.Allowed = true
	return d, nil
}

// KeyedBy returns the names of the zones whose key is kind, in order. A
// handler that runs before authentication uses it to refuse DID zones,
// which would never see a verified caller there.
func (zs *Zones) KeyedBy(kind KeyKind) []string {
	var names []string
	for _, z := range zs.zones {
		if z.key == kind {
			names = append(names, z.name)
		}
	}
	return names
}

// Applicable returns the names of the zones that apply to req, in the
// order Allow decides them.
func (zs *Zones) Applicable(req Request) []string {
	var names []string
	for _, z := range zs.applicable(&req, nil) {
		names = append(names, z.name)
	}
	return names
}

// applicable appends to out the zones that apply to req.
func (zs *Zones) applicable(req *Request, out []*zone) []*zone {
	nsid, isXRPC := req.NSID, req.NSID != ""
	var coveredIP, coveredDID bool
	for _, z := range zs.zones {
		if !z.otherwise && z.matches(req, nsid, isXRPC) {
			out = append(out, z)
			if z.key == KeyIP {
				coveredIP = true
			} else {
				coveredDID = true
			}
		}
	}
	for _, z := range zs.zones {
		if !z.otherwise {
			continue
		}
		covered := &coveredDID
		if z.key == KeyIP {
			covered = &coveredIP
		}
		if !*covered && z.matches(req, nsid, isXRPC) {
			out = append(out, z)
			*covered = true
		}
	}
	return out
}

// zoneKeys are the identity parts of a request's limiter keys: "|ip|" or
// "|did|" and a keyed hash. They never carry a raw identity: they hold the
// keyed hash of the IP group or DID. Each is hashed once per request,
// whatever the number of zones, into a buffer on the caller's stack.
type zoneKeys struct {
	buf [len("|ip|") + len("|did|") + 2*redact.HashLen]byte
	// buf[:ipEnd] is the IP part; buf[ipEnd:didEnd] the DID part, empty
	// when the caller is not verified.
	ipEnd, didEnd int
}

func (zs *Zones) requestKeys(k *zoneKeys, req *Request) {
	var ipKey [64]byte
	ip := ipKey[:0]
	if req.ClientIP.IsValid() {
		ip = AppendIPKey(ip, req.ClientIP)
	} else {
		// A request without an address (a unix socket, a test) shares one
		// bucket rather than none.
		ip = append(ip, "unknown"...)
	}
	b := append(k.buf[:0], "|ip|"...)
	b = zs.hasher.AppendHash(b, string(ip))
	k.ipEnd, k.didEnd = len(b), len(b)
	if req.DID != "" {
		b = zs.hasher.AppendHash(append(b, "|did|"...), req.DID)
		k.didEnd = len(b)
	}
}

// forZone returns the key suffix for z: the DID for a did zone when the
// caller is verified, the IP group otherwise.
func (k *zoneKeys) forZone(z *zone) []byte {
	if z.key == KeyDID && k.didEnd > k.ipEnd {
		return k.buf[k.ipEnd:k.didEnd]
	}
	return k.buf[:k.ipEnd]
}
