package ratelimit

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/xrpc"
)

func testHasher(t testing.TB) *redact.Hasher {
	t.Helper()
	h, err := redact.New([]byte(strings.Repeat("k", redact.MinKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// testRequest is a request from 192.0.2.1 without a verified caller.
func testRequest(method, path string) Request {
	nsid, _ := xrpc.NSIDFromPath(path)
	return Request{Method: method, Path: path, NSID: nsid, ClientIP: netip.MustParseAddr("192.0.2.1")}
}

// keyRecorder is a Limiter that notes every key it is asked about before
// passing the call on.
type keyRecorder struct {
	Limiter
	mu   sync.Mutex
	keys []string
}

func (k *keyRecorder) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	k.mu.Lock()
	k.keys = append(k.keys, key)
	k.mu.Unlock()
	return k.Limiter.Allow(ctx, key, l)
}

// zoneObserver counts a zone's decisions.
type zoneObserver struct{ allowed, limited int }

func (o *zoneObserver) Record(allowed bool, _ string) {
	if allowed {
		o.allowed++
	} else {
		o.limited++
	}
}

// runZoneCases is the zones' behaviour over one store: run by
// runLimiterSuite, so it holds on every backend.
func runZoneCases(t *testing.T, newHarness func(t *testing.T) suiteHarness) {
	ctx := context.Background()
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	alice := netip.MustParseAddr("2001:db8:1:2::99")
	aliceAgain := netip.MustParseAddr("2001:db8:1:2:ffff::1") // same /64
	bob := netip.MustParseAddr("198.51.100.7")

	newZones := func(t *testing.T, zones ...*Zone) (*Zones, *keyRecorder, map[string]*zoneObserver) {
		h := newHarness(t)
		rec := &keyRecorder{Limiter: h.lim}
		obs := map[string]*zoneObserver{}
		zs, err := NewZones(ZonesConfig{Zones: zones, Limiter: rec, Hasher: testHasher(t), Observer: func(zone string) ZoneObserver {
			obs[zone] = new(zoneObserver)
			return obs[zone]
		}})
		if err != nil {
			t.Fatal(err)
		}
		return zs, rec, obs
	}
	allow := func(t *testing.T, zs *Zones, req Request) Decision {
		t.Helper()
		d, err := zs.Allow(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	sendReq := func(ip netip.Addr, did string) Request {
		r := testRequest("POST", "/xrpc/blue.catbird.mls.sendMessage")
		r.ClientIP, r.DID = ip, did
		return r
	}

	t.Run("zones: keys are keyed hashes, never identities", func(t *testing.T) {
		zs, rec, _ := newZones(t,
			&Zone{Name: "ip", Key: KeyIP, Rate: "100/1h"},
			&Zone{Name: "did", Key: KeyDID, Rate: "100/1h"})
		allow(t, zs, sendReq(alice, did))
		allow(t, zs, sendReq(bob, ""))
		if len(rec.keys) != 4 {
			t.Fatalf("limiter asked about %d keys, want 4: %q", len(rec.keys), rec.keys)
		}
		for _, k := range rec.keys {
			for _, identity := range []string{did, "2001:db8", "198.51.100", "unknown"} {
				if strings.Contains(k, identity) {
					t.Errorf("key %q holds %q", k, identity)
				}
			}
			if !strings.Contains(k, redact.Prefix) {
				t.Errorf("key %q holds no keyed hash", k)
			}
		}
	})

	t.Run("zones: an IPv6 /64 is one client, a DID follows its account", func(t *testing.T) {
		zs, _, _ := newZones(t,
			&Zone{Name: "ip", Key: KeyIP, Rate: "2/1h", MatchPaths: []string{"/ip"}},
			&Zone{Name: "did", Key: KeyDID, Rate: "2/1h", MatchPaths: []string{"/did"}})
		ipReq := func(ip netip.Addr) Request { r := testRequest("GET", "/ip"); r.ClientIP = ip; return r }
		didReq := func(ip netip.Addr) Request { r := testRequest("GET", "/did"); r.ClientIP, r.DID = ip, did; return r }
		if !allow(t, zs, ipReq(alice)).Allowed || !allow(t, zs, ipReq(aliceAgain)).Allowed {
			t.Fatal("first two requests of the /64 refused")
		}
		if d := allow(t, zs, ipReq(aliceAgain)); d.Allowed || d.Zone != "ip" {
			t.Fatalf("third request of the /64 = %+v, want refused by zone ip", d)
		}
		if !allow(t, zs, ipReq(bob)).Allowed {
			t.Fatal("another address shares the /64's bucket")
		}
		if !allow(t, zs, didReq(alice)).Allowed || !allow(t, zs, didReq(bob)).Allowed {
			t.Fatal("the account's first two requests refused")
		}
		if d := allow(t, zs, didReq(netip.MustParseAddr("203.0.113.9"))); d.Allowed || d.Zone != "did" {
			t.Fatalf("the account's third request, from a new address = %+v, want refused by zone did", d)
		}
	})

	t.Run("zones: a did zone counts an unverified request by its IP", func(t *testing.T) {
		zs, _, _ := newZones(t, &Zone{Name: "did", Key: KeyDID, Rate: "1/1h"})
		if !allow(t, zs, sendReq(bob, "")).Allowed {
			t.Fatal("first unverified request refused")
		}
		if allow(t, zs, sendReq(bob, "")).Allowed {
			t.Fatal("second unverified request from one IP allowed")
		}
		if !allow(t, zs, sendReq(bob, did)).Allowed {
			t.Fatal("a verified caller from that IP shares the IP's bucket")
		}
		if !allow(t, zs, sendReq(netip.Addr{}, "")).Allowed || allow(t, zs, sendReq(netip.Addr{}, "")).Allowed {
			t.Fatal("requests without an address do not share one bucket")
		}
	})

	t.Run("zones: the first refusal stops, and allowed requests report the tightest zone", func(t *testing.T) {
		zs, _, obs := newZones(t,
			&Zone{Name: "wide", Key: KeyIP, Rate: "100/1h"},
			&Zone{Name: "narrow", Key: KeyIP, Rate: "100/1h", Burst: 2},
			&Zone{Name: "after", Key: KeyDID, Rate: "100/1h"})
		for i := 1; i <= 2; i++ {
			d := allow(t, zs, sendReq(bob, did))
			if !d.Allowed || !d.Matched || d.Zone != "" || d.Result.Limit.Burst != 2 || d.Result.Remaining != 2-i {
				t.Fatalf("request %d = %+v, want allowed with the narrow zone's %d remaining", i, d, 2-i)
			}
		}
		d := allow(t, zs, sendReq(bob, did))
		if d.Allowed || d.Zone != "narrow" || d.Result.RetryAfterSeconds() < 1 {
			t.Fatalf("third request = %+v, want refused by zone narrow with a Retry-After", d)
		}
		if obs["wide"].allowed != 3 || obs["narrow"].allowed != 2 || obs["narrow"].limited != 1 || obs["after"].allowed != 2 {
			t.Errorf("observed wide %+v narrow %+v after %+v; want the zone after the refusal not consulted", *obs["wide"], *obs["narrow"], *obs["after"])
		}
	})

	t.Run("zones: a request no zone applies to passes untouched", func(t *testing.T) {
		zs, rec, _ := newZones(t, &Zone{Name: "xrpc", Key: KeyIP, Rate: "1/1h", MatchPaths: []string{"/xrpc/*"}})
		for range 3 {
			if d := allow(t, zs, testRequest("GET", "/index.html")); !d.Allowed || d.Matched {
				t.Fatalf("unmatched request = %+v, want allowed and unmatched", d)
			}
		}
		if len(rec.keys) != 0 {
			t.Errorf("limiter consulted for an unmatched request: %q", rec.keys)
		}
	})
}
