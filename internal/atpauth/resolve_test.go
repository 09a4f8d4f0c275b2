package atpauth

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"github.com/mr-tron/base58"
)

func newTestResolver(t testing.TB, srv *didServer, clk *clock, mutate func(*ResolverConfig)) *Resolver {
	t.Helper()
	cfg := ResolverConfig{
		PLCURL:       srv.URL,
		AllowHTTP:    true,
		AllowedHosts: []string{"127.0.0.1", "localhost"},
		Now:          clk.Now,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolveKeyForms(t *testing.T) {
	srv := newDIDServer(t)
	r := newTestResolver(t, srv, newClock(testNow), nil)
	k256, p256 := pub(t, newK256(t)), pub(t, newP256(t))
	legacy := func(k atcrypto.PublicKey, compressed bool) string {
		if compressed {
			return "z" + base58.Encode(k.Bytes())
		}
		return "z" + base58.Encode(k.UncompressedBytes())
	}
	const (
		plcA = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	)
	cases := []struct {
		name string
		vm   func(did string) []verificationMethod
		want atcrypto.PublicKey
		err  error
	}{
		{"multikey k256", func(d string) []verificationMethod {
			return []verificationMethod{{ID: d + "#atproto", Type: "Multikey", Controller: d, PublicKeyMultibase: k256.Multibase()}}
		}, k256, nil},
		{"multikey p256, relative id", func(d string) []verificationMethod {
			return []verificationMethod{{ID: "#atproto", Type: "Multikey", Controller: d, PublicKeyMultibase: p256.Multibase()}}
		}, p256, nil},
		{"legacy k256 uncompressed", func(d string) []verificationMethod {
			return []verificationMethod{{ID: "#atproto", Type: "EcdsaSecp256k1VerificationKey2019", Controller: d, PublicKeyMultibase: legacy(k256, false)}}
		}, k256, nil},
		{"legacy k256 compressed", func(d string) []verificationMethod {
			return []verificationMethod{{ID: "#atproto", Type: "EcdsaSecp256k1VerificationKey2019", Controller: d, PublicKeyMultibase: legacy(k256, true)}}
		}, k256, nil},
		{"legacy p256 uncompressed", func(d string) []verificationMethod {
			return []verificationMethod{{ID: "#atproto", Type: "EcdsaSecp256r1VerificationKey2019", Controller: d, PublicKeyMultibase: legacy(p256, false)}}
		}, p256, nil},
		{"atproto key after another key", func(d string) []verificationMethod {
			return []verificationMethod{
				{ID: d + "#atproto_label", Type: "Multikey", Controller: d, PublicKeyMultibase: p256.Multibase()},
				{ID: d + "#atproto", Type: "Multikey", Controller: d, PublicKeyMultibase: k256.Multibase()},
			}
		}, k256, nil},
		{"no atproto key", func(d string) []verificationMethod {
			return []verificationMethod{{ID: d + "#atproto_label", Type: "Multikey", Controller: d, PublicKeyMultibase: k256.Multibase()}}
		}, nil, ErrNoAtprotoKey},
		{"no keys", func(string) []verificationMethod { return nil }, nil, ErrNoAtprotoKey},
		{"unknown key type", func(d string) []verificationMethod {
			return []verificationMethod{{ID: "#atproto", Type: "Ed25519VerificationKey2020", Controller: d, PublicKeyMultibase: k256.Multibase()}}
		}, nil, ErrNoAtprotoKey},
		{"legacy type with multicodec", func(d string) []verificationMethod {
			return []verificationMethod{{ID: "#atproto", Type: "EcdsaSecp256k1VerificationKey2019", Controller: d, PublicKeyMultibase: k256.Multibase()}}
		}, nil, ErrNoAtprotoKey},
		{"garbage multibase", func(d string) []verificationMethod {
			return []verificationMethod{{ID: "#atproto", Type: "Multikey", Controller: d, PublicKeyMultibase: "z0OIl"}}
		}, nil, ErrNoAtprotoKey},
		{"foreign controller", func(d string) []verificationMethod {
			return []verificationMethod{{ID: "#atproto", Type: "Multikey", Controller: plcA, PublicKeyMultibase: k256.Multibase()}}
		}, nil, ErrNoAtprotoKey},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			did := "did:plc:" + strings.Repeat(string(rune('b'+i)), 24)
			srv.set(did, didDoc(t, did, c.vm(did)...))
			got, err := r.SigningKey(context.Background(), did, false)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("SigningKey error = %v, want %v", err, c.err)
				}
				return
			}
			if err != nil || !got.Equal(c.want) {
				t.Fatalf("SigningKey = %v, %v; want the document's key", got, err)
			}
		})
	}
}

func TestResolveDocumentFailures(t *testing.T) {
	srv := newDIDServer(t)
	r := newTestResolver(t, srv, newClock(testNow), nil)
	k := pub(t, newK256(t)).Multibase()
	big := didDoc(t, "did:plc:cccccccccccccccccccccccc", verificationMethod{ID: "#atproto", Type: "Multikey", PublicKeyMultibase: k + strings.Repeat(" ", MaxDIDDocumentSize)})
	cases := []struct {
		name   string
		did    string
		doc    []byte
		status int
		want   error
	}{
		{"not found", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", nil, 0, ErrDIDNotFound},
		{"tombstoned", "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", nil, http.StatusGone, ErrDIDNotFound},
		{"too large", "did:plc:cccccccccccccccccccccccc", big, 0, ErrDIDNotFound},
		{"id mismatch", "did:plc:dddddddddddddddddddddddd", multikeyDoc(t, "did:plc:eeeeeeeeeeeeeeeeeeeeeeee", k), 0, ErrDIDNotFound},
		{"not JSON", "did:plc:ffffffffffffffffffffffff", []byte("<html>"), 0, ErrDIDNotFound},
		{"server error", "did:plc:gggggggggggggggggggggggg", nil, http.StatusInternalServerError, ErrDIDUnavailable},
		{"rate limited", "did:plc:hhhhhhhhhhhhhhhhhhhhhhhh", nil, http.StatusTooManyRequests, ErrDIDUnavailable},
		{"redirect", "did:plc:iiiiiiiiiiiiiiiiiiiiiiii", nil, http.StatusFound, ErrDIDNotFound},
		{"malformed plc", "did:plc:short", nil, 0, ErrBadIssuer},
		{"plc with path", "did:plc:aaaaaaaaaaaaaaaaaaaaaaa/", nil, 0, ErrBadIssuer},
		{"unsupported method", "did:key:zQ3sh", nil, 0, ErrBadIssuer},
		{"web with path", "did:web:localhost:user:alice", nil, 0, ErrBadIssuer},
		{"web port not allowed", "did:web:example.com%3A8443", nil, 0, ErrDIDBlocked},
		{"web bad port", "did:web:localhost%3A8x", nil, 0, ErrBadIssuer},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.doc != nil {
				srv.set(c.did, c.doc)
			}
			if c.status != 0 {
				srv.setStatus(c.did, c.status)
			}
			_, err := r.SigningKey(context.Background(), c.did, false)
			if !errors.Is(err, c.want) {
				t.Fatalf("SigningKey error = %v, want %v", err, c.want)
			}
		})
	}
}

func TestResolveCaching(t *testing.T) {
	srv := newDIDServer(t)
	clk := newClock(testNow)
	r := newTestResolver(t, srv, clk, nil)
	ctx := context.Background()
	did := "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	k1, k2 := pub(t, newK256(t)), pub(t, newP256(t))
	srv.set(did, multikeyDoc(t, did, k1.Multibase()))

	mustKey := func(force bool, want atcrypto.PublicKey, hits int) {
		t.Helper()
		got, err := r.SigningKey(ctx, did, force)
		if err != nil || !got.Equal(want) {
			t.Fatalf("SigningKey(force=%v) = %v, %v", force, got, err)
		}
		if n := srv.hitCount(did); n != hits {
			t.Fatalf("fetches = %d, want %d", n, hits)
		}
	}
	mustKey(false, k1, 1)
	mustKey(false, k1, 1) // cached
	srv.set(did, multikeyDoc(t, did, k2.Multibase()))
	mustKey(true, k1, 1) // forced refresh too soon after the fetch: cached
	clk.Advance(DefaultMinRefreshInterval)
	mustKey(true, k2, 2) // forced refresh fetches
	mustKey(false, k2, 2)
	clk.Advance(DefaultCacheTTL)
	mustKey(false, k2, 3) // TTL expired

	// The host goes down: the stale key is served until MaxStale.
	srv.setStatus(did, http.StatusServiceUnavailable)
	clk.Advance(DefaultCacheTTL)
	mustKey(false, k2, 4)
	clk.Advance(DefaultMaxStale)
	if _, err := r.SigningKey(ctx, did, false); !errors.Is(err, ErrDIDUnavailable) {
		t.Fatalf("past MaxStale: %v, want ErrDIDUnavailable", err)
	}

	// Negative results are cached for NegativeCacheTTL.
	gone := "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
	for i := 0; i < 3; i++ {
		if _, err := r.SigningKey(ctx, gone, false); !errors.Is(err, ErrDIDNotFound) {
			t.Fatalf("unknown DID: %v", err)
		}
	}
	if n := srv.hitCount(gone); n != 1 {
		t.Fatalf("fetches of unknown DID = %d, want 1", n)
	}
	srv.set(gone, multikeyDoc(t, gone, k1.Multibase()))
	clk.Advance(DefaultNegativeCacheTTL)
	if _, err := r.SigningKey(ctx, gone, false); err != nil {
		t.Fatalf("DID created after the negative TTL: %v", err)
	}
}

func TestResolveCacheBounded(t *testing.T) {
	srv := newDIDServer(t)
	r := newTestResolver(t, srv, newClock(testNow), func(c *ResolverConfig) { c.MaxCacheEntries = 3 })
	k := pub(t, newK256(t)).Multibase()
	for _, c := range "abcdefgh" {
		did := "did:plc:" + strings.Repeat(string(c), 24)
		srv.set(did, multikeyDoc(t, did, k))
		if _, err := r.SigningKey(context.Background(), did, false); err != nil {
			t.Fatal(err)
		}
		if n := len(r.cache); n > 3 {
			t.Fatalf("cache holds %d entries, max 3", n)
		}
	}
}

func TestResolveCoalescesConcurrentLookups(t *testing.T) {
	srv := newDIDServer(t)
	r := newTestResolver(t, srv, newClock(testNow), nil)
	did := "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	srv.set(did, multikeyDoc(t, did, pub(t, newK256(t)).Multibase()))
	release := make(chan struct{})
	srv.block = release

	const n = 16
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			defer done.Done()
			started.Done()
			_, err := r.SigningKey(context.Background(), did, false)
			errs <- err
		}()
	}
	started.Wait()
	close(release)
	done.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Every lookup either joined the one in-flight fetch or found its
	// result in the cache.
	if hits := srv.hitCount(did); hits != 1 {
		t.Fatalf("fetches = %d, want 1", hits)
	}
}

func TestResolveCallerCancelDoesNotAbortSharedFetch(t *testing.T) {
	srv := newDIDServer(t)
	r := newTestResolver(t, srv, newClock(testNow), nil)
	did := "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	srv.set(did, multikeyDoc(t, did, pub(t, newK256(t)).Multibase()))
	release := make(chan struct{})
	srv.block = release
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.SigningKey(ctx, did, false); !errors.Is(err, ErrDIDUnavailable) {
		t.Fatalf("cancelled caller: %v, want ErrDIDUnavailable", err)
	}
	close(release)
	if _, err := r.SigningKey(context.Background(), did, false); err != nil {
		t.Fatalf("later caller: %v", err)
	}
}

func TestResolveTimeout(t *testing.T) {
	srv := newDIDServer(t)
	r := newTestResolver(t, srv, newClock(testNow), func(c *ResolverConfig) { c.Timeout = 50 * time.Millisecond })
	did := "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	srv.block = make(chan struct{}) // never released: the host hangs
	if _, err := r.SigningKey(context.Background(), did, false); !errors.Is(err, ErrDIDUnavailable) {
		t.Fatalf("hanging host: %v, want ErrDIDUnavailable", err)
	}
}

// TestResolveRefusesNonPublicTargets proves the address guard works at dial
// time: did:web names whose host resolves to loopback are refused, whatever
// the name, unless the name is on the development allow-list.
func TestResolveRefusesNonPublicTargets(t *testing.T) {
	srv := newDIDServer(t)
	k := pub(t, newK256(t)).Multibase()
	ctx := context.Background()

	// Production: no allow-list, https only. did:web:localhost must be
	// refused before any connection is made.
	prod := newTestResolver(t, srv, newClock(testNow), func(c *ResolverConfig) { c.AllowHTTP = false; c.AllowedHosts = nil })
	for _, did := range []string{"did:web:localhost", "did:web:127.0.0.1", "did:web:127.1.2.3", "did:web:0.0.0.0", "did:web:169.254.169.254", "did:web:10.0.0.1"} {
		_, err := prod.SigningKey(ctx, did, false)
		if !errors.Is(err, ErrDIDBlocked) || !errors.Is(err, errBlockedAddress) {
			t.Errorf("%s: %v, want ErrDIDBlocked by the dial guard", did, err)
		}
	}

	// Development, allowing only "localhost": the same server reached as
	// 127.0.0.1 is still refused, because the guard checks addresses and
	// only exempts allow-listed names.
	dev := newTestResolver(t, srv, newClock(testNow), func(c *ResolverConfig) { c.AllowedHosts = []string{"localhost", "127.0.0.1"} })
	byName := srv.webDID(t, "localhost")
	srv.set(byName, multikeyDoc(t, byName, k))
	if _, err := dev.SigningKey(ctx, byName, false); err != nil {
		t.Fatalf("allow-listed host: %v", err)
	}
	devNameOnly := newTestResolver(t, srv, newClock(testNow), func(c *ResolverConfig) { c.AllowedHosts = []string{"localhost"} })
	byIP := srv.webDID(t, "127.0.0.1")
	srv.set(byIP, multikeyDoc(t, byIP, k))
	if _, err := devNameOnly.SigningKey(ctx, byIP, false); !errors.Is(err, ErrDIDBlocked) {
		t.Fatalf("host not on the allow-list: %v, want ErrDIDBlocked", err)
	}
	if n := srv.hitCount(byIP); n != 0 {
		t.Fatalf("blocked host was contacted %d times", n)
	}
}

func TestPublicAddress(t *testing.T) {
	cases := map[string]bool{
		"8.8.8.8":              true,
		"1.1.1.1":              true,
		"2606:4700::1111":      true,
		"127.0.0.1":            false,
		"127.255.0.1":          false,
		"::1":                  false,
		"10.1.2.3":             false,
		"172.16.0.1":           false,
		"192.168.1.1":          false,
		"169.254.169.254":      false,
		"fe80::1":              false,
		"fc00::1":              false,
		"0.0.0.0":              false,
		"::":                   false,
		"224.0.0.1":            false,
		"ff02::1":              false,
		"100.64.0.1":           false,
		"255.255.255.255":      false,
		"::ffff:127.0.0.1":     false,
		"::ffff:10.0.0.1":      false,
		"64:ff9b::7f00:1":      false,
		"198.18.0.1":           false,
		"2001:db8::1":          false,
		"::ffff:8.8.8.8":       true,
		"fd00:ec2::254":        false,
		"192.0.0.170":          false,
		"2002:7f00:0001::":     false,
		"240.0.0.1":            false,
		"203.0.113.9":          false,
		"2a00:1450:4001::200e": true,
	}
	for s, want := range cases {
		if got := publicAddress(netip.MustParseAddr(s)); got != want {
			t.Errorf("publicAddress(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestNewResolverRejectsBadPLCURL(t *testing.T) {
	for _, u := range []string{"ftp://plc.example", "plc.directory", "https://plc.example/?x=1", "https://"} {
		if _, err := NewResolver(ResolverConfig{PLCURL: u}); err == nil {
			t.Errorf("NewResolver accepted PLC URL %q", u)
		}
	}
}

// FuzzDIDDocument: a DID document is whatever the DID's PLC entry or
// did:web server sends, so no body makes atprotoKeyFromDocument panic; a
// refusal is ErrDIDNotFound or ErrNoAtprotoKey, and an acceptance returns a
// key.
func FuzzDIDDocument(f *testing.F) {
	k256 := pub(f, newK256(f))
	f.Add(multikeyDoc(f, testDID, k256.Multibase()))
	f.Add(didDoc(f, testDID, verificationMethod{ID: "#atproto", Type: "EcdsaSecp256k1VerificationKey2019", Controller: testDID, PublicKeyMultibase: "zQ3s"}))
	f.Add(didDoc(f, testDID, verificationMethod{ID: "#atproto", Type: "Multikey", Controller: "did:plc:other", PublicKeyMultibase: k256.Multibase()}))
	f.Add(didDoc(f, testDID))
	f.Add([]byte(`{"id":"` + testDID + `","verificationMethod":[{"id":"#atproto","type":"Multikey","publicKeyMultibase":"z"}]}`))
	f.Add([]byte(`{"id":"` + testDID + `","verificationMethod":{}}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, body []byte) {
		key, err := atprotoKeyFromDocument(testDID, body)
		switch {
		case err != nil && !errors.Is(err, ErrDIDNotFound) && !errors.Is(err, ErrNoAtprotoKey):
			t.Fatalf("%q: %v, want ErrDIDNotFound or ErrNoAtprotoKey", body, err)
		case err != nil && key != nil:
			t.Fatalf("%q: a key and an error %v", body, err)
		case err == nil && key == nil:
			t.Fatalf("%q: accepted without a key", body)
		}
	})
}
