package operatorauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDC defaults, used for zero fields of OIDCConfig.
const (
	DefaultRoleClaim       = "groups"
	DefaultOIDCTimeout     = 10 * time.Second
	DefaultMaxResponseSize = 1 << 20
)

// OIDCConfig configures an OIDCVerifier.
type OIDCConfig struct {
	// Issuer is the identity provider's issuer URL, exactly as in its
	// discovery document (e.g. https://sso.example.com/realms/ops for
	// Keycloak, https://auth.example.com/application/o/cairn/ for
	// Authentik). Required; https unless AllowHTTPIssuer.
	Issuer string
	// Audience is the client ID (for ID tokens) or API audience (for
	// access tokens) that must appear in the token's aud. Required.
	Audience string
	// RoleClaim is the claim holding the operator's groups or roles: a
	// top-level claim name, or a dot-separated path into nested objects
	// (Keycloak: "realm_access.roles"). A claim name that itself contains
	// dots (e.g. "https://example.com/roles") is matched first. The value
	// may be a string or an array of strings. Default "groups".
	RoleClaim string
	// RequiredRole must be one of RoleClaim's values. Required.
	RequiredRole string
	// SigningAlgs restricts the accepted JWS algorithms. Default: the
	// algorithms the provider advertises (RS256 if it advertises none).
	SigningAlgs []string
	// Timeout bounds each request to the provider. Default 10s.
	Timeout time.Duration
	// MaxResponseSize caps discovery and JWKS responses. Default 1 MiB.
	MaxResponseSize int64
	// HTTPClient, if set, is used for discovery and JWKS (tests pass the
	// client of a local TLS server). Its transport is wrapped with the
	// response-size cap, and Timeout applies when it has none.
	HTTPClient *http.Client
	// AllowHTTPIssuer permits an http:// issuer. Development only.
	AllowHTTPIssuer bool
	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// OIDCVerifier verifies operator tokens issued by an OpenID Connect
// provider. Discovery happens on first use (and is retried on later calls
// until it succeeds), so a provider that is down at start-up does not stop
// the server; tokens are refused with ErrUnavailable meanwhile. It is safe
// for concurrent use.
type OIDCVerifier struct {
	cfg    OIDCConfig
	client *http.Client

	mu  sync.Mutex
	idv *oidc.IDTokenVerifier
}

// NewOIDCVerifier checks cfg and returns a verifier. It does no I/O; call
// Discover to check the provider eagerly.
func NewOIDCVerifier(cfg OIDCConfig) (*OIDCVerifier, error) {
	u, err := url.Parse(cfg.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && cfg.AllowHTTPIssuer)) {
		return nil, fmt.Errorf("operatorauth: OIDC issuer must be an absolute https URL")
	}
	if cfg.Audience == "" {
		return nil, fmt.Errorf("operatorauth: OIDC audience (client ID) is required")
	}
	if cfg.RequiredRole == "" {
		return nil, fmt.Errorf("operatorauth: OIDC required role is required")
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = DefaultRoleClaim
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultOIDCTimeout
	}
	if cfg.MaxResponseSize <= 0 {
		cfg.MaxResponseSize = DefaultMaxResponseSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client := &http.Client{Timeout: cfg.Timeout}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		client = &c
		if client.Timeout <= 0 {
			client.Timeout = cfg.Timeout
		}
	}
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	client.Transport = &limitTransport{base: base, max: cfg.MaxResponseSize}
	return &OIDCVerifier{cfg: cfg, client: client}, nil
}

// Discover fetches the provider's discovery document if it has not been
// fetched yet. Failures wrap ErrUnavailable.
func (v *OIDCVerifier) Discover(ctx context.Context) error {
	_, err := v.verifier(ctx)
	return err
}

func (v *OIDCVerifier) verifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.idv != nil {
		return v.idv, nil
	}
	dctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, v.client), v.cfg.Timeout)
	defer cancel()
	p, err := oidc.NewProvider(dctx, v.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: OIDC discovery: %w", ErrUnavailable, err)
	}
	// Key-set fetches outlive this call; they use the client (with its
	// timeout) on a background context.
	v.idv = p.VerifierContext(oidc.ClientContext(context.Background(), v.client), &oidc.Config{
		SkipClientIDCheck:    true, // checked below, to tell audience failures apart
		SupportedSigningAlgs: v.cfg.SigningAlgs,
		Now:                  v.cfg.Now,
	})
	return v.idv, nil
}

// Verify implements Verifier: signature (JWKS), issuer, expiry, audience,
// and the required role, in that order.
func (v *OIDCVerifier) Verify(ctx context.Context, credential string) (*Operator, error) {
	raw, err := bearerToken(credential)
	if err != nil {
		return nil, err
	}
	idv, err := v.verifier(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := idv.Verify(ctx, raw)
	if err != nil {
		return nil, classify(err)
	}
	if !slices.Contains(tok.Audience, v.cfg.Audience) {
		return nil, fmt.Errorf("%w", ErrBadAudience)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrInvalidToken, err)
	}
	if !hasRole(claims, v.cfg.RoleClaim, v.cfg.RequiredRole) {
		return nil, fmt.Errorf("%w: claim %s lacks the required role", ErrForbidden, v.cfg.RoleClaim)
	}
	return &Operator{Method: "oidc", Subject: tok.Subject}, nil
}

// classify maps a go-oidc verification error to a sentinel.
func classify(err error) error {
	var expired *oidc.TokenExpiredError
	var netErr net.Error
	var urlErr *url.Error
	switch {
	case errors.As(err, &expired):
		return fmt.Errorf("%w: %w", ErrExpired, err)
	case errors.Is(err, errTooLarge), errors.As(err, &netErr), errors.As(err, &urlErr):
		return fmt.Errorf("%w: fetch keys: %w", ErrUnavailable, err)
	default:
		return fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
}

// hasRole reports whether the claim at path contains role.
func hasRole(claims map[string]any, path, role string) bool {
	val, ok := claims[path]
	if !ok {
		var cur any = claims
		for _, part := range strings.Split(path, ".") {
			obj, isObj := cur.(map[string]any)
			if !isObj {
				return false
			}
			if cur, ok = obj[part]; !ok {
				return false
			}
		}
		val = cur
	}
	switch vv := val.(type) {
	case string:
		return vv == role
	case []any:
		for _, e := range vv {
			if s, ok := e.(string); ok && s == role {
				return true
			}
		}
	}
	return false
}

// errTooLarge is returned when a provider response exceeds the size cap.
var errTooLarge = errors.New("identity provider response too large")

// limitTransport caps the size of every response body.
type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{r: resp.Body, left: t.max}
	return resp, nil
}

// limitedBody reads at most left bytes and then fails with errTooLarge,
// rather than silently truncating a JSON document.
type limitedBody struct {
	r    io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Probe for more data: exactly max bytes is fine.
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			return 0, errTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.r.Close() }
