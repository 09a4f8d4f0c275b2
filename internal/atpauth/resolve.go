package atpauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bluesky-social/indigo/atproto/atcrypto"
	"golang.org/x/sync/singleflight"
)

// Resolver defaults, used for zero fields of ResolverConfig.
const (
	DefaultPLCURL             = "https://plc.directory"
	DefaultResolveTimeout     = 5 * time.Second
	DefaultCacheTTL           = 15 * time.Minute
	DefaultNegativeCacheTTL   = time.Minute
	DefaultMaxStale           = 24 * time.Hour
	DefaultMinRefreshInterval = 10 * time.Second
	DefaultMaxCacheEntries    = 10000
)

// ResolverConfig configures a Resolver. The zero value is the production
// configuration: did:plc through https://plc.directory, did:web over HTTPS
// only, and no request to a non-public address.
type ResolverConfig struct {
	// PLCURL is the base URL of the PLC directory that resolves did:plc.
	// The operator chooses it, so requests to it are not subject to the
	// public-address guard (a local mirror is allowed). Default
	// https://plc.directory.
	PLCURL string
	// Timeout bounds each document fetch, from dial to the last byte of
	// the body. Default 5s.
	Timeout time.Duration
	// CacheTTL is how long a resolved key is used without fetching the
	// document again. Key rotation within the TTL is still picked up: a
	// signature failure forces a refresh. Default 15m.
	CacheTTL time.Duration
	// NegativeCacheTTL is how long a DID that does not exist, has no usable
	// #atproto key or points at a blocked address is remembered as such.
	// Default 1m.
	NegativeCacheTTL time.Duration
	// MaxStale is how long past CacheTTL a key is still used when the
	// document cannot be fetched because its host is unavailable (for
	// example during a PLC directory outage). Default 24h.
	MaxStale time.Duration
	// MinRefreshInterval limits forced refreshes: a document fetched less
	// than this long ago is not fetched again, so tokens with bad
	// signatures cannot make the service hammer the PLC directory or a
	// did:web host. Default 10s.
	MinRefreshInterval time.Duration
	// MaxCacheEntries bounds the number of cached DIDs. Default 10000.
	MaxCacheEntries int

	// AllowHTTP fetches did:web documents over plain http instead of
	// https. Development only.
	AllowHTTP bool
	// AllowedHosts are did:web host names (without port) that may be
	// fetched even though they resolve to non-public addresses, and that
	// may carry a port (did:web:localhost%3A8080). Development and tests
	// only; production leaves it empty.
	AllowedHosts []string

	// Now returns the current time; default time.Now.
	Now func() time.Time
}

// Resolver finds the #atproto signing key of a did:plc or did:web DID. It
// caches keys (and failures) with TTLs, coalesces concurrent lookups of the
// same DID, and refuses did:web hosts that resolve to non-public addresses.
// It is safe for concurrent use.
type Resolver struct {
	cfg     ResolverConfig
	plcBase *url.URL
	allow   map[string]bool
	plc     *http.Client
	web     *http.Client
	flight  singleflight.Group

	mu    sync.Mutex
	cache map[string]*cacheEntry
}

// cacheEntry is the outcome of one fetch of a DID document: a key, or a
// permanent failure (err) remembered for NegativeCacheTTL.
type cacheEntry struct {
	key       atcrypto.PublicKey
	pds       string
	err       error
	fetchedAt time.Time
}

// NewResolver returns a Resolver for cfg, with defaults applied.
func NewResolver(cfg ResolverConfig) (*Resolver, error) {
	if cfg.PLCURL == "" {
		cfg.PLCURL = DefaultPLCURL
	}
	base, err := url.Parse(strings.TrimRight(cfg.PLCURL, "/"))
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" || base.RawQuery != "" || base.Fragment != "" {
		return nil, fmt.Errorf("atpauth: PLC URL must be an absolute http(s) URL without query or fragment")
	}
	setDefault(&cfg.Timeout, DefaultResolveTimeout)
	setDefault(&cfg.CacheTTL, DefaultCacheTTL)
	setDefault(&cfg.NegativeCacheTTL, DefaultNegativeCacheTTL)
	setDefault(&cfg.MaxStale, DefaultMaxStale)
	setDefault(&cfg.MinRefreshInterval, DefaultMinRefreshInterval)
	if cfg.MaxCacheEntries <= 0 {
		cfg.MaxCacheEntries = DefaultMaxCacheEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Resolver{cfg: cfg, plcBase: base, allow: map[string]bool{}, cache: map[string]*cacheEntry{}}
	for _, h := range cfg.AllowedHosts {
		r.allow[strings.ToLower(strings.Trim(h, "[]"))] = true
	}
	dialer := net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	r.plc = newHTTPClient(cfg.Timeout, dialer.DialContext)
	r.web = newHTTPClient(cfg.Timeout, guardedDialer(dialer, r.allow))
	return r, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// newHTTPClient returns a client that ignores proxy settings (a proxy would
// defeat the address guard), follows no redirects and gives up after
// timeout.
func newHTTPClient(timeout time.Duration, dial func(context.Context, string, string) (net.Conn, error)) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           dial,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConns:          64,
			MaxIdleConnsPerHost:   8,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// SigningKey returns the #atproto public key of did, which must be a bare
// did:plc or did:web DID (no fragment). A cached key is returned while it is
// fresh; forceRefresh fetches the document again unless it was fetched less
// than MinRefreshInterval ago. Failures wrap ErrBadIssuer, ErrDIDNotFound,
// ErrDIDBlocked, ErrNoAtprotoKey or ErrDIDUnavailable.
func (r *Resolver) SigningKey(ctx context.Context, did string, forceRefresh bool) (atcrypto.PublicKey, error) {
	e, err := r.lookup(ctx, did, forceRefresh)
	if err != nil {
		return nil, err
	}
	return e.key, nil
}

// PDSEndpoint returns the base URL (scheme and host) of the personal data
// server that did's document names as its #atproto_pds service, from the
// same cache as SigningKey. An http:// endpoint is accepted only with
// AllowHTTP. Failures wrap the errors of SigningKey; a document without a
// usable PDS endpoint is ErrDIDNotFound.
func (r *Resolver) PDSEndpoint(ctx context.Context, did string) (string, error) {
	e, err := r.lookup(ctx, did, false)
	if err != nil {
		return "", err
	}
	if e.pds == "" || (strings.HasPrefix(e.pds, "http://") && !r.cfg.AllowHTTP) {
		return "", fmt.Errorf("%w: no usable #atproto_pds service", ErrDIDNotFound)
	}
	return e.pds, nil
}

// GuardedClient returns the HTTP client the resolver fetches did:web
// documents with: no proxy, no redirects, the resolver's timeout, and
// connections to non-public addresses refused (except AllowedHosts). Use it
// for any request to a host named by a DID document, such as a PDS.
func (r *Resolver) GuardedClient() *http.Client { return r.web }

// lookup returns the cache entry of did, fetching the document when the
// cached one is stale (see SigningKey). The entry returned has no error.
func (r *Resolver) lookup(ctx context.Context, did string, forceRefresh bool) (*cacheEntry, error) {
	now := r.cfg.Now()
	r.mu.Lock()
	e := r.cache[did]
	r.mu.Unlock()
	if e != nil {
		age := now.Sub(e.fetchedAt)
		ttl := r.cfg.CacheTTL
		if e.err != nil {
			ttl = r.cfg.NegativeCacheTTL
		}
		if age < ttl && (!forceRefresh || age < r.cfg.MinRefreshInterval) {
			if e.err != nil {
				return nil, e.err
			}
			return e, nil
		}
	}

	ch := r.flight.DoChan(did, func() (any, error) {
		// The fetch serves every waiter, so it must not die with the
		// first caller's context; it has its own timeout.
		//
		// A lookup that missed the cache can reach here just after another
		// flight for the same DID finished and stored its result: use that
		// result rather than fetch the document twice.
		r.mu.Lock()
		done := r.cache[did]
		r.mu.Unlock()
		if done != nil && !done.fetchedAt.Before(now) {
			return done, done.err
		}
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		defer cancel()
		return r.fetch(fctx, did)
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrDIDUnavailable, ctx.Err())
	}
	if res.Err == nil {
		return res.Val.(*cacheEntry), nil
	}
	if errors.Is(res.Err, ErrDIDUnavailable) && e != nil && e.key != nil && now.Sub(e.fetchedAt) < r.cfg.CacheTTL+r.cfg.MaxStale {
		return e, nil
	}
	return nil, res.Err
}

// fetch downloads and parses did's document and records the outcome in the
// cache. Temporary failures are not cached.
func (r *Resolver) fetch(ctx context.Context, did string) (*cacheEntry, error) {
	key, pds, err := r.fetchDocument(ctx, did)
	if err != nil && errors.Is(err, ErrDIDUnavailable) {
		return nil, err
	}
	e := &cacheEntry{key: key, pds: pds, err: err, fetchedAt: r.cfg.Now()}
	r.store(did, e)
	return e, err
}

// fetchDocument downloads did's document and returns its #atproto key and
// its #atproto_pds endpoint ("" if none).
func (r *Resolver) fetchDocument(ctx context.Context, did string) (atcrypto.PublicKey, string, error) {
	var (
		client *http.Client
		u      string
	)
	switch {
	case strings.HasPrefix(did, "did:plc:"):
		if !validPLC(did) {
			return nil, "", fmt.Errorf("%w: malformed did:plc", ErrBadIssuer)
		}
		client, u = r.plc, r.plcBase.String()+"/"+did
	case strings.HasPrefix(did, "did:web:"):
		host, err := r.webHost(did)
		if err != nil {
			return nil, "", err
		}
		scheme := "https"
		if r.cfg.AllowHTTP {
			scheme = "http"
		}
		client, u = r.web, scheme+"://"+host+"/.well-known/did.json"
	default:
		return nil, "", fmt.Errorf("%w: unsupported DID method", ErrBadIssuer)
	}
	body, err := get(ctx, client, u)
	if err != nil {
		return nil, "", err
	}
	key, err := atprotoKeyFromDocument(did, body)
	if err != nil {
		return nil, "", err
	}
	return key, pdsFromDocument(did, body), nil
}

// get fetches u and returns its body, at most MaxDIDDocumentSize bytes. Its
// errors never contain the URL, which would name the DID.
func get(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: build request", ErrBadIssuer)
	}
	req.Header.Set("Accept", "application/did+ld+json, application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, classifyFetchError(err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, fmt.Errorf("%w: DID document host answered %d", ErrDIDUnavailable, resp.StatusCode)
	default:
		return nil, fmt.Errorf("%w: DID document host answered %d", ErrDIDNotFound, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxDIDDocumentSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read DID document: %w", ErrDIDUnavailable, classifyFetchError(err))
	}
	if len(body) > MaxDIDDocumentSize {
		return nil, fmt.Errorf("%w: DID document larger than %d bytes", ErrDIDNotFound, MaxDIDDocumentSize)
	}
	return body, nil
}

// classifyFetchError maps a transport error to a sentinel, dropping the
// underlying message: it would name the host, and so the DID.
func classifyFetchError(err error) error {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, errBlockedAddress):
		return fmt.Errorf("%w: %w", ErrDIDBlocked, errBlockedAddress)
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return fmt.Errorf("%w: host name does not exist", ErrDIDNotFound)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return fmt.Errorf("%w: timed out", ErrDIDUnavailable)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%w: canceled", ErrDIDUnavailable)
	default:
		return fmt.Errorf("%w: request failed", ErrDIDUnavailable)
	}
}

// store records e for did, making room when the cache is full.
func (r *Resolver) store(did string, e *cacheEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cache[did]; !ok && len(r.cache) >= r.cfg.MaxCacheEntries {
		now := r.cfg.Now()
		for k, old := range r.cache {
			limit := r.cfg.CacheTTL + r.cfg.MaxStale
			if old.err != nil {
				limit = r.cfg.NegativeCacheTTL
			}
			if now.Sub(old.fetchedAt) >= limit {
				delete(r.cache, k)
			}
		}
		// Still full of live entries: drop an arbitrary one. It only
		// costs a fetch later.
		for k := range r.cache {
			if len(r.cache) < r.cfg.MaxCacheEntries {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[did] = e
}

// validPLC reports whether did is "did:plc:" followed by 24 base32
// characters.
func validPLC(did string) bool {
	id := strings.TrimPrefix(did, "did:plc:")
	if len(id) != 24 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// webHost returns the host[:port] a did:web DID names. atproto allows only
// host-level did:web (no path). A port ("%3A8080") is accepted only for an
// allowed development host.
func (r *Resolver) webHost(did string) (string, error) {
	id := strings.TrimPrefix(did, "did:web:")
	host, port, hasPort := strings.Cut(id, "%3A")
	if !hasPort {
		host, port, hasPort = strings.Cut(id, "%3a")
	}
	if !validHostname(host) {
		return "", fmt.Errorf("%w: malformed did:web host", ErrBadIssuer)
	}
	if !hasPort {
		return host, nil
	}
	if !r.allow[strings.ToLower(host)] {
		return "", fmt.Errorf("%w: did:web with a port outside the development allow-list", ErrDIDBlocked)
	}
	if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return "", fmt.Errorf("%w: malformed did:web port", ErrBadIssuer)
	}
	return host + ":" + port, nil
}

// validHostname reports whether h is a DNS host name (or dotted IPv4
// literal): labels of letters, digits and hyphens, at most 253 bytes.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
