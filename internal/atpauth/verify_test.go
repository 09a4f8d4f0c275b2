package atpauth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"

	"github.com/cairn-chat/cairn-caddy/internal/authfail"
)

func newTestVerifier(t testing.TB, keys KeyResolver, mutate func(*Config)) *Verifier {
	t.Helper()
	cfg := Config{
		ServiceDID: testService,
		Keys:       keys,
		Replay:     longMemory(0, func() time.Time { return testNow }),
		Now:        func() time.Time { return testNow },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVerifyClaims(t *testing.T) {
	k256, p256, other := newK256(t), newP256(t), newK256(t)
	keys := &staticKeys{keys: map[string]atcrypto.PublicKey{
		testDID:                            pub(t, k256),
		"did:web:pds.example.com":          pub(t, p256),
		"did:plc:zzzzzzzzzzzzzzzzzzzzzzzz": pub(t, k256),
	}}
	type tc struct {
		name    string
		key     atcrypto.PrivateKey
		hdr     func(map[string]any)
		claims  func(map[string]any)
		cred    func(string) string
		want    error
		wantDID string
	}
	cases := []tc{
		{name: "valid k256", key: k256, wantDID: testDID},
		{name: "valid p256 did:web", key: p256, claims: func(c map[string]any) { c["iss"] = "did:web:pds.example.com" }, wantDID: "did:web:pds.example.com"},
		{name: "bare token", key: k256, cred: func(s string) string { return s }, wantDID: testDID},
		{name: "lower-case scheme", key: k256, cred: func(s string) string { return "bearer " + s }, wantDID: testDID},
		{name: "iss with fragment", key: k256, claims: func(c map[string]any) { c["iss"] = testDID + "#atproto_labeler" }, wantDID: testDID},
		{name: "sub ignored", key: k256, claims: func(c map[string]any) { c["sub"] = "did:plc:zzzzzzzzzzzzzzzzzzzzzzzz" }, wantDID: testDID},
		{name: "aud with service id", key: k256, claims: func(c map[string]any) { c["aud"] = testService + "#cairn_mls" }, wantDID: testDID},
		{name: "exp within leeway", key: k256, claims: func(c map[string]any) { c["iat"] = testNow.Unix() - 64; c["exp"] = testNow.Unix() - 4 }, wantDID: testDID},
		{name: "iat within leeway", key: k256, claims: func(c map[string]any) { c["iat"] = testNow.Unix() + 5; c["exp"] = testNow.Unix() + 65 }, wantDID: testDID},
		{name: "fractional dates", key: k256, claims: func(c map[string]any) {
			c["iat"] = float64(testNow.Unix()) + 0.5
			c["exp"] = float64(testNow.Unix()) + 30.25
		}, wantDID: testDID},

		{name: "empty credential", key: k256, cred: func(string) string { return "" }, want: ErrAuthMissing},
		{name: "basic scheme", key: k256, cred: func(s string) string { return "Basic " + s }, want: ErrAuthMissing},
		{name: "empty bearer", key: k256, cred: func(string) string { return "Bearer  " }, want: ErrAuthMissing},
		{name: "garbage", key: k256, cred: func(string) string { return "Bearer not.a.jwt" }, want: ErrMalformed},
		{name: "alg none", key: k256, hdr: func(h map[string]any) { h["alg"] = "none" }, want: ErrUnsupportedAlg},
		{name: "alg HS256", key: k256, hdr: func(h map[string]any) { h["alg"] = "HS256" }, want: ErrUnsupportedAlg},
		{name: "alg RS256", key: k256, hdr: func(h map[string]any) { h["alg"] = "RS256" }, want: ErrUnsupportedAlg},
		{name: "alg swapped to ES256", key: k256, hdr: func(h map[string]any) { h["alg"] = "ES256" }, want: ErrAlgKeyMismatch},
		{name: "typ at+jwt", key: k256, hdr: func(h map[string]any) { h["typ"] = "at+jwt" }, want: ErrBadType},
		{name: "typ refresh+jwt", key: k256, hdr: func(h map[string]any) { h["typ"] = "refresh+jwt" }, want: ErrBadType},
		{name: "typ dpop+jwt", key: k256, hdr: func(h map[string]any) { h["typ"] = "DPoP+JWT" }, want: ErrBadType},
		{name: "crit", key: k256, hdr: func(h map[string]any) { h["crit"] = []string{"b64"} }, want: ErrMalformed},
		{name: "iss not a DID", key: k256, claims: func(c map[string]any) { c["iss"] = "alice.example.com" }, want: ErrBadIssuer},
		{name: "iss did:key", key: k256, claims: func(c map[string]any) { c["iss"] = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme" }, want: ErrBadIssuer},
		{name: "iss empty fragment", key: k256, claims: func(c map[string]any) { c["iss"] = testDID + "#" }, want: ErrBadIssuer},
		{name: "iss unknown", key: k256, claims: func(c map[string]any) { c["iss"] = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa" }, want: ErrDIDNotFound},
		{name: "iss missing", key: k256, claims: func(c map[string]any) { delete(c, "iss") }, want: ErrBadClaims},
		{name: "iss a number", key: k256, claims: func(c map[string]any) { c["iss"] = 7 }, want: ErrMalformed},
		{name: "aud missing", key: k256, claims: func(c map[string]any) { delete(c, "aud") }, want: ErrBadClaims},
		{name: "aud array", key: k256, claims: func(c map[string]any) { c["aud"] = []string{testService} }, want: ErrMalformed},
		{name: "exp missing", key: k256, claims: func(c map[string]any) { delete(c, "exp") }, want: ErrBadClaims},
		{name: "iat missing", key: k256, claims: func(c map[string]any) { delete(c, "iat") }, want: ErrBadClaims},
		{name: "exp before iat", key: k256, claims: func(c map[string]any) { c["exp"] = testNow.Unix() - 1 }, want: ErrBadClaims},
		{name: "jti missing", key: k256, claims: func(c map[string]any) { delete(c, "jti") }, want: ErrBadClaims},
		{name: "jti too long", key: k256, claims: func(c map[string]any) { c["jti"] = strings.Repeat("a", 257) }, want: ErrBadClaims},
		{name: "signed by another key", key: other, want: ErrBadSignature},
		{name: "wrong aud", key: k256, claims: func(c map[string]any) { c["aud"] = "did:web:other.example.com" }, want: ErrBadAudience},
		{name: "aud prefix", key: k256, claims: func(c map[string]any) { c["aud"] = testService + "x" }, want: ErrBadAudience},
		{name: "aud empty fragment", key: k256, claims: func(c map[string]any) { c["aud"] = testService + "#" }, want: ErrBadAudience},
		{name: "expired", key: k256, claims: func(c map[string]any) { c["iat"] = testNow.Unix() - 66; c["exp"] = testNow.Unix() - 6 }, want: ErrExpired},
		{name: "iat in future", key: k256, claims: func(c map[string]any) { c["iat"] = testNow.Unix() + 6; c["exp"] = testNow.Unix() + 60 }, want: ErrNotYetValid},
		{name: "lifetime over cap", key: k256, claims: func(c map[string]any) { c["exp"] = testNow.Unix() + 61 }, want: ErrLifetimeTooLong},
		{name: "lxm missing", key: k256, claims: func(c map[string]any) { delete(c, "lxm") }, want: ErrBadLexiconMethod},
		{name: "lxm wrong", key: k256, claims: func(c map[string]any) { c["lxm"] = "blue.catbird.mls.getConvos" }, want: ErrBadLexiconMethod},
	}
	v := newTestVerifier(t, keys, nil)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr, claims := hdrFor(algOf(t, c.key)), goodClaims(fmt.Sprintf("jti-%d", i))
			if c.hdr != nil {
				c.hdr(hdr)
			}
			if c.claims != nil {
				c.claims(claims)
			}
			tok := sign(t, c.key, hdr, claims)
			cred := "Bearer " + tok
			if c.cred != nil {
				cred = c.cred(tok)
			}
			got, err := v.Verify(context.Background(), cred, testNSID)
			if c.want != nil {
				if !errors.Is(err, c.want) || got != nil {
					t.Fatalf("Verify = %v, %v; want %v", got, err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.DID != c.wantDID || got.Identity("").DID != c.wantDID {
				t.Fatalf("DID = %q, want %q", got.DID, c.wantDID)
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	k := newK256(t)
	v := newTestVerifier(t, &staticKeys{keys: map[string]atcrypto.PublicKey{testDID: pub(t, k)}}, nil)
	tok := sign(t, k, hdrFor(algES256K), goodClaims("once"))
	if _, err := v.Verify(context.Background(), tok, testNSID); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if _, err := v.Verify(context.Background(), tok, testNSID); !errors.Is(err, ErrReplayed) {
		t.Fatalf("second use: %v, want ErrReplayed", err)
	}
	// A malleated (high-S) copy of the same token is a valid signature,
	// and still refused as a replay because the jti is the same.
	if _, err := v.Verify(context.Background(), highS(t, tok), testNSID); !errors.Is(err, ErrReplayed) {
		t.Fatalf("high-S copy: %v, want ErrReplayed", err)
	}
	// A fresh high-S token is accepted, as by the reference verifier
	// (allowMalleableSig) and indigo's HashAndVerifyLenient.
	if _, err := v.Verify(context.Background(), highS(t, sign(t, k, hdrFor(algES256K), goodClaims("high-s"))), testNSID); err != nil {
		t.Fatalf("fresh high-S token: %v", err)
	}
	// The same jti from another issuer is another token.
	k2 := newK256(t)
	other := "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
	v.cfg.Keys.(*staticKeys).keys[other] = pub(t, k2)
	c := goodClaims("once")
	c["iss"] = other
	if _, err := v.Verify(context.Background(), sign(t, k2, hdrFor(algES256K), c), testNSID); err != nil {
		t.Fatalf("same jti, other issuer: %v", err)
	}
}

// highS returns tok with its K-256 signature's S replaced by n − S.
func highS(t *testing.T, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	n, _ := new(big.Int).SetString("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)
	s := new(big.Int).SetBytes(sig[32:])
	s.Sub(n, s)
	s.FillBytes(sig[32:])
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerifyLXMOptional(t *testing.T) {
	k := newK256(t)
	v := newTestVerifier(t, &staticKeys{keys: map[string]atcrypto.PublicKey{testDID: pub(t, k)}}, func(c *Config) { c.LXMOptional = true })
	c := goodClaims("no-lxm")
	delete(c, "lxm")
	if _, err := v.Verify(context.Background(), sign(t, k, hdrFor(algES256K), c), testNSID); err != nil {
		t.Fatalf("missing lxm with LXMOptional: %v", err)
	}
	c = goodClaims("wrong-lxm")
	c["lxm"] = "blue.catbird.mls.getConvos"
	if _, err := v.Verify(context.Background(), sign(t, k, hdrFor(algES256K), c), testNSID); !errors.Is(err, ErrBadLexiconMethod) {
		t.Fatalf("wrong lxm with LXMOptional: %v, want ErrBadLexiconMethod", err)
	}
}

func TestVerifyKeyRotation(t *testing.T) {
	oldKey, newKey := newK256(t), newP256(t)
	keys := &staticKeys{
		keys: map[string]atcrypto.PublicKey{testDID: pub(t, oldKey)},
		next: map[string]atcrypto.PublicKey{testDID: pub(t, newKey)},
	}
	v := newTestVerifier(t, keys, nil)
	if _, err := v.Verify(context.Background(), sign(t, newKey, hdrFor(algES256), goodClaims("rotated")), testNSID); err != nil {
		t.Fatalf("token signed by rotated key: %v", err)
	}
	if keys.refreshes != 1 {
		t.Fatalf("refreshes = %d, want 1", keys.refreshes)
	}
	// A token that fails with the fresh key too is refused after exactly
	// one more refresh.
	if _, err := v.Verify(context.Background(), sign(t, oldKey, hdrFor(algES256K), goodClaims("stale")), testNSID); !errors.Is(err, ErrAlgKeyMismatch) {
		t.Fatalf("token signed by the old key: %v, want ErrAlgKeyMismatch", err)
	}
	if keys.refreshes != 2 {
		t.Fatalf("refreshes = %d, want 2", keys.refreshes)
	}
}

// failingStore is a ReplayStore whose backend is down.
type failingStore struct{}

func (failingStore) Remember(context.Context, string, time.Time) (Recall, error) {
	return Recall{}, errors.New("connection refused")
}

func TestVerifyReplayStoreDownFailsClosed(t *testing.T) {
	k := newK256(t)
	v := newTestVerifier(t, &staticKeys{keys: map[string]atcrypto.PublicKey{testDID: pub(t, k)}}, func(c *Config) { c.Replay = failingStore{} })
	_, err := v.Verify(context.Background(), sign(t, k, hdrFor(algES256K), goodClaims("x")), testNSID)
	if !errors.Is(err, ErrReplayUnavailable) {
		t.Fatalf("Verify = %v, want ErrReplayUnavailable", err)
	}
	xe := authfail.XRPCError(err)
	if xe.Status != http.StatusServiceUnavailable || xe.Header.Get("Retry-After") == "" {
		t.Fatalf("XRPCError = %d %v, want 503 with Retry-After", xe.Status, xe.Header)
	}
}

func TestNewVerifierConfig(t *testing.T) {
	keys, replay := &staticKeys{}, NewMemoryReplayStore(1, nil)
	cases := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{ServiceDID: testService, Keys: keys, Replay: replay}, true},
		{"no service DID", Config{Keys: keys, Replay: replay}, false},
		{"service DID with fragment", Config{ServiceDID: testService + "#x", Keys: keys, Replay: replay}, false},
		{"not a DID", Config{ServiceDID: "chat.example.com", Keys: keys, Replay: replay}, false},
		{"lifetime 1h", Config{ServiceDID: testService, Keys: keys, Replay: replay, MaxTokenLifetime: time.Hour}, true},
		{"lifetime over 1h", Config{ServiceDID: testService, Keys: keys, Replay: replay, MaxTokenLifetime: time.Hour + time.Second}, false},
		{"no resolver", Config{ServiceDID: testService, Replay: replay}, false},
		{"no replay store", Config{ServiceDID: testService, Keys: keys}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := NewVerifier(c.cfg)
			if (err == nil) != c.ok {
				t.Fatalf("NewVerifier error = %v, want ok=%v", err, c.ok)
			}
			if c.ok && c.name == "defaults" && (v.cfg.Leeway != DefaultLeeway || v.cfg.MaxTokenLifetime != DefaultMaxTokenLifetime || v.cfg.LXMOptional) {
				t.Fatalf("defaults not applied: %+v", v.cfg)
			}
		})
	}
}

func TestErrorMapping(t *testing.T) {
	cases := []struct {
		err    error
		status int
		name   string
	}{
		{ErrAuthMissing, 401, "AuthMissing"},
		{ErrMalformed, 401, "BadJwt"},
		{ErrUnsupportedAlg, 401, "BadJwt"},
		{ErrBadType, 401, "BadJwtType"},
		{ErrBadClaims, 401, "BadJwt"},
		{ErrBadIssuer, 401, "BadJwtIss"},
		{ErrDIDNotFound, 401, "BadJwtIss"},
		{ErrDIDBlocked, 401, "BadJwtIss"},
		{ErrNoAtprotoKey, 401, "BadJwtIss"},
		{ErrDIDUnavailable, 503, "UpstreamFailure"},
		{ErrAlgKeyMismatch, 401, "BadJwtSignature"},
		{ErrBadSignature, 401, "BadJwtSignature"},
		{ErrExpired, 401, "JwtExpired"},
		{ErrNotYetValid, 401, "BadJwtIat"},
		{ErrLifetimeTooLong, 401, "BadJwtLifetime"},
		{ErrBadAudience, 401, "BadJwtAudience"},
		{ErrBadLexiconMethod, 401, "BadJwtLexiconMethod"},
		{ErrReplayed, 401, "JwtReplayed"},
		{ErrIssuedBeforeReplayMemory, 401, "JwtExpired"},
		{ErrReplayUnavailable, 503, "AuthUnavailable"},
		{errors.New("other"), 500, "InternalServerError"},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		wrapped := fmt.Errorf("context: %w", c.err)
		xe := authfail.XRPCError(wrapped)
		if xe.Status != c.status || xe.Name != c.name {
			t.Errorf("authfail.XRPCError(%v) = %d %s, want %d %s", c.err, xe.Status, xe.Name, c.status, c.name)
		}
		if !errors.Is(xe, c.err) {
			t.Errorf("authfail.XRPCError(%v) does not wrap the cause", c.err)
		}
		r := authfail.Reason(wrapped)
		if seen[r] {
			t.Errorf("reason %q used twice", r)
		}
		seen[r] = true
		if c.status == 401 && xe.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%v: 401 without WWW-Authenticate", c.err)
		}
	}
	if len(Reasons()) != len(seen) {
		t.Errorf("Reasons() has %d values, table has %d", len(Reasons()), len(seen))
	}
	for _, r := range Reasons() {
		if !seen[r] {
			t.Errorf("Reasons() lists %q, which no error produces", r)
		}
	}
}

// TestErrorsHoldNoIdentity makes sure a refusal's message names neither the
// caller's DID nor any part of the token, so errors can be logged.
func TestErrorsHoldNoIdentity(t *testing.T) {
	k := newK256(t)
	v := newTestVerifier(t, &staticKeys{keys: map[string]atcrypto.PublicKey{testDID: pub(t, newK256(t))}}, nil)
	tok := sign(t, k, hdrFor(algES256K), goodClaims("secret-jti"))
	_, err := v.Verify(context.Background(), tok, testNSID)
	if err == nil {
		t.Fatal("token signed by the wrong key was accepted")
	}
	for _, s := range append(strings.Split(tok, "."), testDID, "secret-jti") {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error %q contains %q", err, s)
		}
	}
}
