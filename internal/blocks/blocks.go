// Package blocks reads Bluesky blocks (app.bsky.graph.block records) to
// tell which accounts of a set block one another: from the personal data
// servers of the accounts concerned, as their DID documents name them
// (Source), from a Bluesky AppView's app.bsky.graph.getRelationships
// (AppView), or from both (Combined).
//
// PDS requests go through the DID resolver's guarded HTTP client (no
// proxy, no redirects, no non-public addresses, a timeout); the AppView is
// one operator-configured address. What is read is cached in memory for a
// short TTL, concurrent reads share one request, and nothing is
// persisted.
package blocks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// Collection is the NSID of Bluesky block records.
const Collection = "app.bsky.graph.block"

// Defaults for the zero values of Config.
const (
	DefaultCacheTTL        = time.Minute
	DefaultMaxRecords      = 1000
	DefaultMaxCacheEntries = 10000
	// maxPageBytes bounds one listRecords or getRecord response.
	maxPageBytes = 1 << 20
	// pageSize is the listRecords limit asked for (the lexicon's maximum).
	pageSize = 100
	// parallel bounds the accounts read at once by one Among call.
	parallel = 8
)

// ErrUnavailable means the block records of an account could not be read:
// its DID document or its PDS did not answer usably. Callers decide
// whether that refuses the action (fail closed) or not.
var ErrUnavailable = errors.New("blocks: block source unavailable")

// ErrNoPDS is what a Locator answers for a DID that has no readable
// repository: its document does not exist, is malformed, or names no
// usable PDS. Such an account has no blocks to read. Only the account
// itself could arrange that, and it hides nothing but its own blocks: the
// blocks others make of it are read from their repositories.
var ErrNoPDS = errors.New("blocks: the DID names no readable repository")

// Relation is one block: Blocker's repository holds a block record whose
// subject is Blocked.
type Relation struct {
	Blocker   string
	Blocked   string
	CreatedAt time.Time
	// URI is the AT-URI of the block record.
	URI string
}

// Locator finds the PDS of a DID (ResolverLocator adapts atpauth's
// resolver). It answers ErrNoPDS for a DID without a readable repository,
// and any other error when the DID could not be resolved now.
type Locator interface {
	PDSEndpoint(ctx context.Context, did string) (string, error)
}

// Config configures a Source. Locator and Client are required.
type Config struct {
	// Locator resolves a DID to its PDS base URL.
	Locator Locator
	// Client makes the requests to PDSes; it must refuse non-public
	// addresses and redirects (atpauth.Resolver.GuardedClient).
	Client *http.Client
	// CacheTTL is how long an account's blocks are reused. Default 1 min.
	CacheTTL time.Duration
	// MaxRecords bounds the block records read per account (blocks past it
	// are not seen). Default 1000.
	MaxRecords int
	// MaxCacheEntries bounds the accounts cached. Default 10000.
	MaxCacheEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Source reads block relations. It is safe for concurrent use.
type Source struct {
	cfg    Config
	flight singleflight.Group
	// cache holds each account's outgoing blocks.
	cache *ttlCache[string, []Relation]
}

// New returns a Source for cfg, with defaults applied.
func New(cfg Config) (*Source, error) {
	if cfg.Locator == nil || cfg.Client == nil {
		return nil, errors.New("blocks: Config.Locator and Config.Client are required")
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = DefaultMaxRecords
	}
	if cfg.MaxCacheEntries <= 0 {
		cfg.MaxCacheEntries = DefaultMaxCacheEntries
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Source{cfg: cfg, cache: newTTLCache[string, []Relation](cfg.CacheTTL, cfg.MaxCacheEntries, cfg.Now)}, nil
}

// Among returns the blocks between members of dids, in either direction,
// each once. It fails with ErrUnavailable if any account's blocks could not
// be read.
func (s *Source) Among(ctx context.Context, dids []string) ([]Relation, error) {
	uniq := uniqueDIDs(dids)
	set := make(map[string]bool, len(uniq))
	for _, d := range uniq {
		set[d] = true
	}
	return s.filtered(ctx, uniq, func(r Relation) bool { return set[r.Blocked] })
}

// Between returns the blocks, in either direction, between an account of
// added and an account of added or existing, each once: what an add of
// added to a conversation of existing must know. Every account's
// repository is still read (an existing member's block of a newcomer is
// in the member's repository), from the cache when fresh enough; only the
// pairs of existing members among themselves are left out. It fails with
// ErrUnavailable if any account's blocks could not be read.
func (s *Source) Between(ctx context.Context, added, existing []string) ([]Relation, error) {
	isNew := map[string]bool{}
	for _, d := range added {
		isNew[d] = true
	}
	set := map[string]bool{}
	for _, d := range existing {
		set[d] = true
	}
	for d := range isNew {
		set[d] = true
	}
	return s.filtered(ctx, uniqueDIDs(append(slices.Clone(added), existing...)), func(r Relation) bool {
		return set[r.Blocked] && (isNew[r.Blocker] || isNew[r.Blocked])
	})
}

// filtered reads the outgoing blocks of every account of uniq and returns
// those keep accepts (never a self-block), each once.
func (s *Source) filtered(ctx context.Context, uniq []string, keep func(Relation) bool) ([]Relation, error) {
	results, errs := inParallel(uniq, func(d string) ([]Relation, error) { return s.outgoing(ctx, d, false) })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []Relation
	seen := map[[2]string]bool{}
	for _, rs := range results {
		for _, r := range rs {
			k := [2]string{r.Blocker, r.Blocked}
			if keep(r) && r.Blocked != r.Blocker && !seen[k] {
				seen[k] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// Verify reads, bypassing the cache, whether blocker's repository holds a
// block of blocked. With uri (an AT-URI of a block record) it reads that
// record only, which must be in blocker's repository. The cache is updated
// with what was read.
func (s *Source) Verify(ctx context.Context, blocker, blocked, uri string) (Relation, bool, error) {
	if uri != "" {
		repo, rkey, err := ParseBlockURI(uri)
		if err != nil || repo != blocker {
			return Relation{}, false, nil
		}
		r, found, err := s.getRecord(ctx, blocker, rkey)
		if err != nil || !found || r.Blocked != blocked {
			return Relation{}, false, err
		}
		return r, true, nil
	}
	rs, err := s.outgoing(ctx, blocker, true)
	if err != nil {
		return Relation{}, false, err
	}
	for _, r := range rs {
		if r.Blocked == blocked {
			return r, true, nil
		}
	}
	return Relation{}, false, nil
}

// outgoing returns the blocks did's repository holds, from the cache
// unless fresh is set.
func (s *Source) outgoing(ctx context.Context, did string, fresh bool) ([]Relation, error) {
	if !fresh {
		if rs, ok := s.cache.get(did); ok {
			return rs, nil
		}
	}
	key := did
	if fresh {
		key = "fresh|" + did
	}
	ch := s.flight.DoChan(key, func() (any, error) {
		// One fetch serves every waiter: it must not die with the first
		// caller's context (the client has its own timeout).
		rs, err := s.list(context.WithoutCancel(ctx), did)
		if err != nil {
			return nil, err
		}
		s.cache.put(did, rs)
		return rs, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]Relation), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// list pages through did's block records, up to MaxRecords.
func (s *Source) list(ctx context.Context, did string) ([]Relation, error) {
	base, err := s.cfg.Locator.PDSEndpoint(ctx, did)
	if errors.Is(err, ErrNoPDS) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: resolve the PDS: %w", ErrUnavailable, err)
	}
	var out []Relation
	cursor := ""
	for len(out) < s.cfg.MaxRecords {
		q := url.Values{"repo": {did}, "collection": {Collection}, "limit": {fmt.Sprint(pageSize)}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		body, found, err := s.get(ctx, base+"/xrpc/com.atproto.repo.listRecords?"+q.Encode())
		if err != nil {
			return nil, err
		}
		if !found {
			return out, nil // no such repository on its PDS: no blocks
		}
		page, err := ParseListRecords(did, body)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		out = append(out, page.Blocks...)
		if page.Cursor == "" || page.Cursor == cursor || len(page.Blocks) == 0 {
			break
		}
		cursor = page.Cursor
	}
	if len(out) > s.cfg.MaxRecords {
		out = out[:s.cfg.MaxRecords]
	}
	return out, nil
}

// getRecord reads one block record of repo.
func (s *Source) getRecord(ctx context.Context, repo, rkey string) (Relation, bool, error) {
	base, err := s.cfg.Locator.PDSEndpoint(ctx, repo)
	if errors.Is(err, ErrNoPDS) {
		return Relation{}, false, nil
	}
	if err != nil {
		return Relation{}, false, fmt.Errorf("%w: resolve the PDS: %w", ErrUnavailable, err)
	}
	q := url.Values{"repo": {repo}, "collection": {Collection}, "rkey": {rkey}}
	body, found, err := s.get(ctx, base+"/xrpc/com.atproto.repo.getRecord?"+q.Encode())
	if err != nil || !found {
		return Relation{}, false, err
	}
	r, err := ParseRecord(repo, body)
	if err != nil {
		return Relation{}, false, nil
	}
	return r, true, nil
}

// get fetches u. found is false for the PDS's 400 RecordNotFound or
// RepoNotFound (or a 404); other failures are ErrUnavailable. Errors never
// contain the URL, which names the DID.
func (s *Source) get(ctx context.Context, u string) (body []byte, found bool, err error) {
	status, body, err := fetch(ctx, s.cfg.Client, u)
	if err != nil {
		return nil, false, err
	}
	switch {
	case status == http.StatusOK:
		return body, true, nil
	case status == http.StatusNotFound:
		return nil, false, nil
	case status == http.StatusBadRequest:
		if name := xrpcErrorName(body); name == "RecordNotFound" || name == "RepoNotFound" {
			return nil, false, nil
		}
	}
	return nil, false, fmt.Errorf("%w: PDS answered %d", ErrUnavailable, status)
}

// fetch GETs u as JSON through client, reading at most maxPageBytes.
// Errors are ErrUnavailable and never contain the URL, which names DIDs.
func fetch(ctx context.Context, client *http.Client, u string) (status int, body []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: build request", ErrUnavailable)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: request failed", ErrUnavailable)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(io.LimitReader(resp.Body, maxPageBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: read response", ErrUnavailable)
	}
	if len(body) > maxPageBytes {
		return 0, nil, fmt.Errorf("%w: response larger than %d bytes", ErrUnavailable, maxPageBytes)
	}
	return resp.StatusCode, body, nil
}

// xrpcErrorName returns the error name of an XRPC error body, or "".
func xrpcErrorName(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Error
}

// Page is one parsed listRecords page of block records.
type Page struct {
	Blocks []Relation
	Cursor string
}

// listOutput is com.atproto.repo.listRecords#output.
type listOutput struct {
	Cursor  string         `json:"cursor"`
	Records []recordOutput `json:"records"`
}

// recordOutput is a listRecords#record or getRecord#output.
type recordOutput struct {
	URI   string          `json:"uri"`
	Value json.RawMessage `json:"value"`
}

// blockValue is an app.bsky.graph.block record.
type blockValue struct {
	Type      string `json:"$type"`
	Subject   string `json:"subject"`
	CreatedAt string `json:"createdAt"`
}

// ParseListRecords parses a listRecords response for repo's block
// collection. Records that are not well-formed blocks of repo are skipped.
func ParseListRecords(repo string, body []byte) (Page, error) {
	var out listOutput
	if err := json.Unmarshal(body, &out); err != nil {
		return Page{}, fmt.Errorf("listRecords response is not JSON: %w", err)
	}
	p := Page{Cursor: out.Cursor}
	if len(p.Cursor) > 512 {
		return Page{}, errors.New("listRecords cursor too long")
	}
	for _, r := range out.Records {
		if rel, ok := relation(repo, r); ok {
			p.Blocks = append(p.Blocks, rel)
		}
	}
	return p, nil
}

// ParseRecord parses a getRecord response for one of repo's block records.
func ParseRecord(repo string, body []byte) (Relation, error) {
	var r recordOutput
	if err := json.Unmarshal(body, &r); err != nil {
		return Relation{}, fmt.Errorf("getRecord response is not JSON: %w", err)
	}
	rel, ok := relation(repo, r)
	if !ok {
		return Relation{}, errors.New("not a block record of the repository")
	}
	return rel, nil
}

func relation(repo string, r recordOutput) (Relation, bool) {
	uriRepo, _, err := ParseBlockURI(r.URI)
	if err != nil || uriRepo != repo {
		return Relation{}, false
	}
	var v blockValue
	if json.Unmarshal(r.Value, &v) != nil || v.Type != Collection || !strings.HasPrefix(v.Subject, "did:") || len(v.Subject) > 2048 {
		return Relation{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, v.CreatedAt)
	if err != nil {
		t = time.Time{}
	}
	return Relation{Blocker: repo, Blocked: v.Subject, CreatedAt: t.UTC(), URI: r.URI}, true
}

// ParseBlockURI splits an AT-URI of a block record,
// at://<did>/app.bsky.graph.block/<rkey>, into the repository DID and the
// record key.
func ParseBlockURI(uri string) (repo, rkey string, err error) {
	rest, ok := strings.CutPrefix(uri, "at://")
	if !ok || len(uri) > 8192 {
		return "", "", errors.New("not an at:// URI")
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !strings.HasPrefix(parts[0], "did:") || parts[1] != Collection {
		return "", "", errors.New("not a block record URI")
	}
	if !validRecordKey(parts[2]) {
		return "", "", errors.New("invalid record key")
	}
	return parts[0], parts[2], nil
}

// validRecordKey applies the atproto record-key syntax: 1-512 characters
// of A-Za-z0-9 . - _ : ~, not "." or "..".
func validRecordKey(k string) bool {
	if k == "" || len(k) > 512 || k == "." || k == ".." {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_:~", c) >= 0) {
			return false
		}
	}
	return true
}

// inParallel calls fn for each item, at most parallel at once, and returns
// the results and errors by the items' indexes.
func inParallel[T, R any](items []T, fn func(T) (R, error)) ([]R, []error) {
	results := make([]R, len(items))
	errs := make([]error, len(items))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, item := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			results[i], errs[i] = fn(item)
		}()
	}
	wg.Wait()
	return results, errs
}
