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
	// Signals, if set, defines the adaptive signals the zones' Modifiers
	// name; a Modifier whose signal it leaves off is a configuration error.
	// Validate fills in its defaults.
	Signals *SignalConfig
	// Recorder records the requests behind the signals in its store.
	// Required with Signals. Every Zones over one store must share one
	// Recorder, so that a request passing several is recorded once;
	// NewZones fails when Signals disagrees with what the others record
	// (see SignalRecorder).
	Recorder *SignalRecorder
	// ModifierObserver, if set, returns the observer of one zone's modifier
	// for one signal; it is called once per modifier by NewZones.
	ModifierObserver func(zone string, signal Signal) ZoneObserver
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
	local    *MemoryStore
	hasher   *redact.Hasher
	signals  *SignalConfig
	recorder *SignalRecorder
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
	zs := &Zones{limiter: cfg.Limiter, hasher: cfg.Hasher, signals: cfg.Signals, recorder: cfg.Recorder}
	zs.local, _ = cfg.Limiter.(*MemoryStore)
	if zs.signals != nil {
		if zs.recorder == nil {
			return nil, fmt.Errorf("%w: adaptive signals need a signal recorder", ErrInvalidZone)
		}
		if err := zs.signals.Validate(); err != nil {
			return nil, err
		}
		if err := zs.recorder.join(zs.signals); err != nil {
			return nil, err
		}
	}
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
		for i, m := range c.mods {
			if zs.signals == nil || !zs.signals.Enables(m.signal) {
				return nil, fmt.Errorf("%w: zone %s: `when %s` needs the %s signal defined in the handler's `signals` block", ErrInvalidZone, c.name, m.signal, m.signal)
			}
			if cfg.ModifierObserver != nil {
				c.mods[i].observer = cfg.ModifierObserver(c.name, m.signal)
			}
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
	// Signal is the signal whose modifier refused, or zero when the zone's
	// own limit refused (or nothing did).
	Signal Signal
	// Signals are the account signals that held for the request: empty
	// unless the zones have a `signals` configuration and the caller is
	// verified.
	Signals Signals
	// observed is the caller's record the signals were read from.
	observed Observed
}

// observe returns the record of req's caller, whose account key is key:
// the one an earlier Zones sharing the recorder made of this same request
// (its Admission is in ctx), so that a request passing two rate limiters
// is recorded once, or else a new one.
func (zs *Zones) observe(ctx context.Context, req *Request, key []byte) (Observed, error) {
	if a, ok := FromContext(ctx); ok && a.zones.recorder == zs.recorder && a.req.DID == req.DID {
		return a.observed, nil
	}
	return zs.recorder.record(ctx, string(key), req.NSID)
}

// Allow decides req in every zone that applies to it, in order, and stops
// at the first refusal. With adaptive signals configured and a verified
// caller, it first records the request in the signal store (one call, or
// none when ctx carries the Admission of an earlier Zones that shares the
// recorder and already recorded this request), and a zone's modifiers for the signals that hold decide after the
// zone's own limit. An error means the limiter could not decide (a shared
// store without a failover policy, or a cancelled context); the caller
// should fail closed.
func (zs *Zones) Allow(ctx context.Context, req Request) (Decision, error) {
	var buf [8]*zone
	zones := zs.applicable(&req, buf[:0])
	observe := zs.signals != nil && req.DID != ""
	if len(zones) == 0 && !observe {
		return Decision{Allowed: true}, nil
	}
	var keys zoneKeys
	zs.requestKeys(&keys, &req)
	var now int64
	if zs.local != nil {
		now = zs.local.now().UnixNano()
	}
	d := Decision{Matched: len(zones) > 0}
	if observe {
		o, err := zs.observe(ctx, &req, keys.account())
		if err != nil {
			return Decision{}, fmt.Errorf("adaptive signals: %w", err)
		}
		d.observed = o
		d.Signals = zs.signals.signalsFor(o)
	}
	first := true
	for _, z := range zones {
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
			return Decision{Matched: true, Result: res, Zone: z.name, Signals: d.Signals, observed: d.observed}, nil
		}
		d.tighten(res, &first)
		if len(z.mods) == 0 || d.Signals == 0 {
			continue
		}
		refused, err := zs.allowModifiers(ctx, z, &keys, d.Signals, &d, &first)
		if err != nil {
			return Decision{}, err
		}
		if refused {
			return d, nil
		}
	}
	d.Allowed = true
	return d, nil
}

// tighten keeps res as the decision's result when it has fewer remaining.
func (d *Decision) tighten(res Result, first *bool) {
	if *first || res.Remaining < d.Result.Remaining {
		d.Result = res
	}
	*first = false
}

// allowModifiers decides z's modifiers whose signal is in sigs. It
// reports a refusal by filling d and returning true.
func (zs *Zones) allowModifiers(ctx context.Context, z *zone, keys *zoneKeys, sigs Signals, d *Decision, first *bool) (bool, error) {
	for _, m := range z.mods {
		if !sigs.Has(m.signal) {
			continue
		}
		res, err := zs.limiter.Allow(ctx, m.prefix+string(keys.forZone(z)), m.limit)
		if err != nil {
			return false, fmt.Errorf("rate limit zone %s when %s: %w", z.name, m.signal, err)
		}
		if m.observer != nil {
			m.observer.Record(res.Allowed, res.Source.String())
		}
		if !res.Allowed {
			*d = Decision{Matched: true, Result: res, Zone: z.name, Signal: m.signal, Signals: d.Signals, observed: d.observed}
			return true, nil
		}
		d.tighten(res, first)
	}
	return false, nil
}

// Admission is what Zones.Allow learned of one admitted request and the
// check that only a later handler can make: the account's signals, for
// the proof-of-work gate's difficulty, and the large-group modifiers,
// which need the size of the conversation the call acts in. Handlers pass
// it on in the request context (NewContext).
type Admission struct {
	// Signals are the account signals that held.
	Signals  Signals
	zones    *Zones
	req      Request
	observed Observed
}

// Admission returns the Admission of req after Allow decided d.
func (zs *Zones) Admission(req Request, d Decision) *Admission {
	return &Admission{Signals: d.Signals, zones: zs, req: req, observed: d.observed}
}

// LargeGroupThreshold is the member count from which a conversation is
// large, or 0 when the large_group signal is off.
func (a *Admission) LargeGroupThreshold() int {
	if a == nil || a.zones.signals == nil {
		return 0
	}
	return a.zones.signals.LargeGroup
}

// AllowGroup decides the large_group modifiers of the zones that applied
// to the request, now that the conversation it acts in is known to have
// members members. A conversation below the threshold, or zones without
// such modifiers, allow with Matched false.
func (a *Admission) AllowGroup(ctx context.Context, members int) (Decision, error) {
	if t := a.LargeGroupThreshold(); t == 0 || members < t {
		return Decision{Allowed: true, Signals: a.Signals}, nil
	}
	var buf [8]*zone
	zones := a.zones.applicable(&a.req, buf[:0])
	var keys zoneKeys
	a.zones.requestKeys(&keys, &a.req)
	sigs := a.Signals.With(SignalLargeGroup)
	d := Decision{Allowed: true, Signals: sigs}
	first := true
	for _, z := range zones {
		if !z.hasModifier(SignalLargeGroup) {
			continue
		}
		d.Matched = true
		refused, err := a.zones.allowModifiers(ctx, z, &keys, Signals(0).With(SignalLargeGroup), &d, &first)
		if err != nil {
			return Decision{}, err
		}
		if refused {
			return d, nil
		}
	}
	return d, nil
}

func (z *zone) hasModifier(sig Signal) bool {
	for _, m := range z.mods {
		if m.signal == sig {
			return true
		}
	}
	return false
}

type admissionKey struct{}

// NewContext returns ctx carrying a.
func NewContext(ctx context.Context, a *Admission) context.Context {
	return context.WithValue(ctx, admissionKey{}, a)
}

// FromContext returns the Admission a rate-limit handler earlier in the
// chain put in ctx.
func FromContext(ctx context.Context) (*Admission, bool) {
	a, ok := ctx.Value(admissionKey{}).(*Admission)
	return a, ok && a != nil
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

// account returns the DID part ("|did|<hash>"); empty when the caller is
// not verified.
func (k *zoneKeys) account() []byte { return k.buf[k.ipEnd:k.didEnd] }

// forZone returns the key suffix for z: the DID for a did zone when the
// caller is verified, the IP group otherwise.
func (k *zoneKeys) forZone(z *zone) []byte {
	if z.key == KeyDID && k.didEnd > k.ipEnd {
		return k.buf[k.ipEnd:k.didEnd]
	}
	return k.buf[:k.ipEnd]
}
