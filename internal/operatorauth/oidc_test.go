package operatorauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/cairn-chat/cairn-caddy/internal/authfail"
)

var testNow = time.Unix(1_800_000_000, 0)

const (
	testAudience = "cairn-operator"
	testRole     = "cairn-admins"
)

// issuer is a local OpenID Connect provider: discovery and JWKS over TLS,
// with keys minted by the test.
type issuer struct {
	srv    *httptest.Server
	rsaKey *rsa.PrivateKey
	ecKey  *ecdsa.PrivateKey
	down   atomic.Bool
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	iss := &issuer{rsaKey: rk, ecKey: ek}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if iss.down.Load() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		writeJSON(w, map[string]any{
			"issuer":                                iss.srv.URL,
			"jwks_uri":                              iss.srv.URL + "/jwks",
			"authorization_endpoint":                iss.srv.URL + "/auth",
			"token_endpoint":                        iss.srv.URL + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &rk.PublicKey, KeyID: "rsa-1", Algorithm: "RS256", Use: "sig"},
			{Key: &ek.PublicKey, KeyID: "ec-1", Algorithm: "ES256", Use: "sig"},
		}})
	})
	iss.srv = httptest.NewTLSServer(mux)
	t.Cleanup(iss.srv.Close)
	return iss
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// claims returns valid claims for the test operator.
func (iss *issuer) claims() map[string]any {
	return map[string]any{
		"iss":    iss.srv.URL,
		"sub":    "operator-1",
		"aud":    testAudience,
		"iat":    testNow.Unix(),
		"exp":    testNow.Add(5 * time.Minute).Unix(),
		"groups": []string{"staff", testRole},
	}
}

func sign(t *testing.T, alg jose.SignatureAlgorithm, key crypto.Signer, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (iss *issuer) verifier(t *testing.T, mutate func(*OIDCConfig)) *OIDCVerifier {
	t.Helper()
	cfg := OIDCConfig{
		Issuer:       iss.srv.URL,
		Audience:     testAudience,
		RequiredRole: testRole,
		HTTPClient:   iss.srv.Client(),
		Now:          func() time.Time { return testNow },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	v, err := NewOIDCVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOIDCVerify(t *testing.T) {
	iss := newIssuer(t)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rs := func(mutate func(map[string]any)) string {
		c := iss.claims()
		if mutate != nil {
			mutate(c)
		}
		return sign(t, jose.RS256, iss.rsaKey, "rsa-1", c)
	}
	cases := []struct {
		name   string
		cfg    func(*OIDCConfig)
		cred   string
		want   error
		status int
	}{
		{name: "valid RS256", cred: "Bearer " + rs(nil)},
		{name: "valid ES256", cred: "Bearer " + sign(t, jose.ES256, iss.ecKey, "ec-1", iss.claims())},
		{name: "bare token", cred: rs(nil)},
		{name: "audience among several", cred: rs(func(c map[string]any) { c["aud"] = []string{"account", testAudience} })},
		{name: "role as a string", cred: rs(func(c map[string]any) { c["groups"] = testRole })},
		{name: "keycloak nested roles", cfg: func(c *OIDCConfig) { c.RoleClaim = "realm_access.roles" },
			cred: rs(func(c map[string]any) { c["realm_access"] = map[string]any{"roles": []string{testRole}} })},
		{name: "claim name with dots", cfg: func(c *OIDCConfig) { c.RoleClaim = "https://cairn.example/roles" },
			cred: rs(func(c map[string]any) { c["https://cairn.example/roles"] = []string{testRole} })},

		{name: "missing", cred: "", want: ErrAuthMissing, status: 401},
		{name: "basic", cred: "Basic b3A6cHc=", want: ErrAuthMissing, status: 401},
		{name: "expired", cred: rs(func(c map[string]any) { c["exp"] = testNow.Add(-time.Second).Unix() }), want: ErrExpired, status: 401},
		{name: "wrong audience", cred: rs(func(c map[string]any) { c["aud"] = "someone-else" }), want: ErrBadAudience, status: 401},
		{name: "missing role", cred: rs(func(c map[string]any) { c["groups"] = []string{"staff"} }), want: ErrForbidden, status: 403},
		{name: "no role claim", cred: rs(func(c map[string]any) { delete(c, "groups") }), want: ErrForbidden, status: 403},
		{name: "nested path through a string", cfg: func(c *OIDCConfig) { c.RoleClaim = "groups.x" }, cred: rs(nil), want: ErrForbidden, status: 403},
		{name: "bad signature", cred: sign(t, jose.RS256, otherKey, "rsa-1", iss.claims()), want: ErrInvalidToken, status: 401},
		{name: "unknown kid", cred: sign(t, jose.RS256, otherKey, "rsa-9", iss.claims()), want: ErrInvalidToken, status: 401},
		{name: "tampered", cred: tamper(t, rs(nil)), want: ErrInvalidToken, status: 401},
		{name: "other issuer", cred: rs(func(c map[string]any) { c["iss"] = "https://evil.example" }), want: ErrInvalidToken, status: 401},
		{name: "alg none", cred: none(t, iss.claims()), want: ErrInvalidToken, status: 401},
		{name: "alg not allowed", cfg: func(c *OIDCConfig) { c.SigningAlgs = []string{"ES256"} }, cred: rs(nil), want: ErrInvalidToken, status: 401},
		{name: "garbage", cred: "Bearer x.y.z", want: ErrInvalidToken, status: 401},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := iss.verifier(t, c.cfg)
			op, err := v.Verify(context.Background(), c.cred)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if op.Method != "oidc" || op.Subject != "operator-1" {
					t.Fatalf("operator = %+v", op)
				}
				return
			}
			if !errors.Is(err, c.want) || op != nil {
				t.Fatalf("Verify = %+v, %v; want %v", op, err, c.want)
			}
			if xe := authfail.XRPCError(err); xe.Status != c.status {
				t.Fatalf("status = %d, want %d", xe.Status, c.status)
			}
		})
	}
}

func tamper(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	c["sub"] = "operator-2"
	b, _ = json.Marshal(c)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(b) + "." + parts[2]
}

func none(t *testing.T, claims map[string]any) string {
	t.Helper()
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT", "kid": "rsa-1"})
	p, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

func TestOIDCProviderDownFailsClosedThenRecovers(t *testing.T) {
	iss := newIssuer(t)
	iss.down.Store(true)
	v := iss.verifier(t, nil)
	tok := sign(t, jose.RS256, iss.rsaKey, "rsa-1", iss.claims())
	_, err := v.Verify(context.Background(), tok)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("provider down: %v, want ErrUnavailable", err)
	}
	if xe := authfail.XRPCError(err); xe.Status != 503 || xe.Header.Get("Retry-After") == "" {
		t.Fatalf("XRPCError = %d %v", xe.Status, xe.Header)
	}
	iss.down.Store(false)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("provider back: %v", err)
	}
}

func TestOIDCResponseSizeCap(t *testing.T) {
	iss := newIssuer(t)
	v := iss.verifier(t, func(c *OIDCConfig) { c.MaxResponseSize = 64 })
	if err := v.Discover(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("oversized discovery document: %v, want ErrUnavailable", err)
	}
}

func TestNewOIDCVerifierConfig(t *testing.T) {
	ok := OIDCConfig{Issuer: "https://sso.example.com/realms/ops", Audience: "a", RequiredRole: "r"}
	cases := []struct {
		name   string
		mutate func(*OIDCConfig)
		ok     bool
	}{
		{"valid", func(*OIDCConfig) {}, true},
		{"http issuer", func(c *OIDCConfig) { c.Issuer = "http://sso.example.com" }, false},
		{"http issuer allowed", func(c *OIDCConfig) { c.Issuer = "http://localhost:8080"; c.AllowHTTPIssuer = true }, true},
		{"no issuer", func(c *OIDCConfig) { c.Issuer = "" }, false},
		{"no audience", func(c *OIDCConfig) { c.Audience = "" }, false},
		{"no role", func(c *OIDCConfig) { c.RequiredRole = "" }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok
			c.mutate(&cfg)
			if _, err := NewOIDCVerifier(cfg); (err == nil) != c.ok {
				t.Fatalf("NewOIDCVerifier error = %v, want ok=%v", err, c.ok)
			}
		})
	}
}
