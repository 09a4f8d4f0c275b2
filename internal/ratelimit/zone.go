package ratelimit

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// KeyKind is what a zone counts requests by.
type KeyKind string

// The key kinds of a zone.
const (
	// KeyIP counts by the client IP (see IPKey: IPv6 grouped by /64).
	KeyIP KeyKind = "ip"
	// KeyDID counts by the verified caller DID, and by the client IP for a
	// request without one.
	KeyDID KeyKind = "did"
)

// ErrInvalidZone is returned, wrapped, for a zone that cannot be enforced.
var ErrInvalidZone = errors.New("invalid rate limit zone")

// Zone is one named rate limit as an operator configures it: a key kind, a
// rate, a burst, and the conditions a request must meet for the zone to
// apply. Every condition given must hold; a zone without conditions applies
// to every request.
type Zone struct {
	// Name identifies the zone in metrics and in the limiter's keys; it must
	// be unique within one set of Zones.
	Name string `json:"name"`
	// Key is "ip" or "did".
	Key KeyKind `json:"key"`
	// Rate is "<n>/<period>", for example "60/1m" (see ParseRate).
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
	// MatchMethods limits the zone to HTTP methods (case-insensitive).
	MatchMethods []string `json:"match_methods,omitempty"`
	// Otherwise applies the zone only to requests that no other zone of the
	// same key kind matched ("everything else"). Among several such zones
	// of one key kind, the first that matches applies.
	Otherwise bool `json:"otherwise,omitempty"`
	// Modifiers tighten the zone for requests that carry an adaptive
	// signal (a new account, high churn, a large group). Only did zones
	// take them.
	Modifiers []Modifier `json:"modifiers,omitempty"`
}

// Modifier tightens a zone while a signal holds: a request that carries
// the signal counts against the zone's own limit and also against this
// tighter one, in a bucket of its own per caller, so the tighter limit
// decides while the signal holds and the zone's own bucket is untouched
// when it stops.
type Modifier struct {
	// When is the signal: new_account, high_churn or large_group.
	When Signal `json:"when"`
	// Rate is "<n>/<period>", no looser than the zone's rate.
	Rate string `json:"rate"`
	// Burst is how many requests may come at once under the signal; 0
	// means the rate's n. It may not exceed the zone's burst.
	Burst int `json:"burst,omitempty"`
}

// modifier is a Modifier checked and ready to decide.
type modifier struct {
	signal Signal
	limit  Limit
	// prefix is the bucket's key before the caller's part: "<zone>|<signal>".
	prefix   string
	observer ZoneObserver
}

// zone is a Zone checked and ready to decide.
type zone struct {
	name      string
	key       KeyKind
	limit     Limit
	nsids     []string
	paths     []string
	methods   []string
	otherwise bool
	mods      []modifier
	observer  ZoneObserver
}

// compile checks z and returns its runtime form. Its errors name the zone
// and the field, for an operator reading `caddy validate`.
func (z *Zone) compile() (*zone, error) {
	if z.Name == "" || strings.ContainsAny(z.Name, " |{}") {
		return nil, fmt.Errorf("%w: zone name %q: use letters, digits, '-' or '_'", ErrInvalidZone, z.Name)
	}
	if z.Key != KeyIP && z.Key != KeyDID {
		return nil, fmt.Errorf("%w: zone %s: key %q: want ip or did", ErrInvalidZone, z.Name, z.Key)
	}
	rate, period, err := ParseRate(z.Rate)
	if err != nil {
		return nil, fmt.Errorf("zone %s: rate %q: %w", z.Name, z.Rate, err)
	}
	limit := Limit{Rate: rate, Period: period, Burst: z.Burst}
	if err := limit.Validate(); err != nil {
		return nil, fmt.Errorf("zone %s: %w", z.Name, err)
	}
	mods, err := z.compileModifiers(limit)
	if err != nil {
		return nil, err
	}
	methods := make([]string, len(z.MatchMethods))
	for i, m := range z.MatchMethods {
		methods[i] = strings.ToUpper(m)
	}
	return &zone{
		name:      z.Name,
		key:       z.Key,
		limit:     limit,
		nsids:     slices.Clone(z.MatchNSIDs),
		paths:     slices.Clone(z.MatchPaths),
		methods:   methods,
		otherwise: z.Otherwise,
		mods:      mods,
	}, nil
}

// compileModifiers checks z's modifiers against its own limit.
func (z *Zone) compileModifiers(base Limit) ([]modifier, error) {
	if len(z.Modifiers) > 0 && z.Key != KeyDID {
		return nil, fmt.Errorf("%w: zone %s: modifiers need key did (the signals are about a verified account)", ErrInvalidZone, z.Name)
	}
	var mods []modifier
	for _, m := range z.Modifiers {
		if m.When.String() == "none" {
			return nil, fmt.Errorf("%w: zone %s: a modifier needs a signal: new_account, high_churn or large_group", ErrInvalidZone, z.Name)
		}
		for _, o := range mods {
			if o.signal == m.When {
				return nil, fmt.Errorf("%w: zone %s: two modifiers for %s; keep one", ErrInvalidZone, z.Name, m.When)
			}
		}
		rate, period, err := ParseRate(m.Rate)
		if err != nil {
			return nil, fmt.Errorf("zone %s: when %s: %w", z.Name, m.When, err)
		}
		l := Limit{Rate: rate, Period: period, Burst: m.Burst}
		if err := l.Validate(); err != nil {
			return nil, fmt.Errorf("zone %s: when %s: %w", z.Name, m.When, err)
		}
		if l.Interval() < base.Interval() || l.EffectiveBurst() > base.EffectiveBurst() {
			return nil, fmt.Errorf("%w: zone %s: when %s: %s is looser than the zone's own %s; a modifier may only tighten",
				ErrInvalidZone, z.Name, m.When, l, base)
		}
		mods = append(mods, modifier{signal: m.When, limit: l, prefix: z.Name + "|" + m.When.String()})
	}
	return mods, nil
}

// matches reports whether the zone's conditions (all kinds given) hold for
// req, whose XRPC method is nsid when isXRPC.
func (z *zone) matches(req *Request, nsid string, isXRPC bool) bool {
	if len(z.nsids) > 0 {
		if !isXRPC || !matchesAny(z.nsids, nsid, matchNSID) {
			return false
		}
	}
	if len(z.paths) > 0 && !matchesAny(z.paths, req.Path, matchPath) {
		return false
	}
	if len(z.methods) > 0 && !slices.Contains(z.methods, req.Method) {
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
