package blocks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
)

// RelationshipsNSID is the AppView method an AppView source asks: it
// enumerates the public relationships, blocks included, between one
// account and up to 30 others, and requires no authentication.
const RelationshipsNSID = "app.bsky.graph.getRelationships"

// Defaults of AppViewConfig.
const (
	// DefaultAppViewTimeout bounds one getRelationships request.
	DefaultAppViewTimeout = 10 * time.Second
	// DefaultMaxPairs bounds the account pairs an AppView source caches.
	DefaultMaxPairs = 100000
	// maxOthers is getRelationships' limit on others (its lexicon's
	// maxLength).
	maxOthers = 30
)

// Lexicon type names of getRelationships' union.
const (
	typeRelationship  = "app.bsky.graph.defs#relationship"
	typeNotFoundActor = "app.bsky.graph.defs#notFoundActor"
)

// errActorNotFound means the AppView does not know the primary account:
// the lexicon's ActorNotFound error, or, as the reference AppView answers,
// an output without "actor".
var errActorNotFound = errors.New("blocks: the AppView does not know the actor")

// AppViewConfig configures an AppView source. BaseURL is required.
type AppViewConfig struct {
	// BaseURL is the AppView's base URL, such as https://api.bsky.app
	// (ValidateAppViewURL's rules).
	BaseURL string
	// Client makes the requests. Default: a client with
	// DefaultAppViewTimeout that follows no redirects and uses no proxy.
	Client *http.Client
	// CacheTTL is how long a pair's relationship is reused. Default 1 min.
	CacheTTL time.Duration
	// MaxCacheEntries bounds the account pairs cached. Default 100000.
	MaxCacheEntries int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// AppView reads block relations from a Bluesky AppView's
// app.bsky.graph.getRelationships, which answers, for one account and up
// to 30 others, the AT-URI of the block record each way (the "blocking"
// and "blockedBy" fields). Only direct blocks (app.bsky.graph.block
// records) count, as for the PDS source; blocks through a moderation list
// ("blockingByList", "blockedByList") do not. The AppView knows no record
// dates, so relations carry none. It is safe for concurrent use.
type AppView struct {
	cfg    AppViewConfig
	flight singleflight.Group
	// cache holds each pair's relationship, keyed by the pair in
	// lexical order.
	cache *ttlCache[[2]string, pairBlocks]
}

// pairBlocks is the block record each way between a pair of accounts
// (lower, higher in lexical order): present with its URI, which may be
// empty if the AppView gave an unusable one.
type pairBlocks struct {
	lowBlocksHigh, highBlocksLow bool
	lowURI, highURI              string
}

// Edges is what getRelationships says about one other account: whether
// the actor blocks it and whether it blocks the actor, with the block
// records' URIs (empty when the AppView's was not a block record of the
// right repository).
type Edges struct {
	Blocking, BlockedBy       bool
	BlockingURI, BlockedByURI string
}

// NewAppView returns an AppView source for cfg, with defaults applied.
func NewAppView(cfg AppViewConfig) (*AppView, error) {
	base, err := ValidateAppViewURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	cfg.BaseURL = base
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout:       DefaultAppViewTimeout,
			Transport:     &http.Transport{Proxy: nil, ForceAttemptHTTP2: true, TLSHandshakeTimeout: 5 * time.Second},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.MaxCacheEntries <= 0 {
		cfg.MaxCacheEntries = DefaultMaxPairs
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &AppView{cfg: cfg, cache: newTTLCache[[2]string, pairBlocks](cfg.CacheTTL, cfg.MaxCacheEntries, cfg.Now)}, nil
}

// ValidateAppViewURL checks an AppView base URL and returns it without a
// trailing slash: https with a host, or http to a loopback address (an
// AppView on the same machine), with no credentials, query or fragment.
func ValidateAppViewURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	bad := func(why string) error {
		return fmt.Errorf("AppView URL %q: %s; want a base URL such as https://api.bsky.app", raw, why)
	}
	switch {
	case err != nil || u.Host == "" || !u.IsAbs():
		return "", bad("not an absolute URL with a host")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "":
		return "", bad("it may not carry credentials, a query or a fragment")
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return "", bad("plain http is allowed to a loopback address only")
	default:
		return "", bad("the scheme must be https")
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// pairKey orders a pair lexically; swapped reports whether a was the
// higher.
func pairKey(a, b string) (key [2]string, swapped bool) {
	if a < b {
		return [2]string{a, b}, false
	}
	return [2]string{b, a}, true
}

// pairOf turns what actor learned about other into the pair's entry.
func pairOf(actor, other string, e Edges) ([2]string, pairBlocks) {
	k, swapped := pairKey(actor, other)
	p := pairBlocks{lowBlocksHigh: e.Blocking, lowURI: e.BlockingURI, highBlocksLow: e.BlockedBy, highURI: e.BlockedByURI}
	if swapped {
		p = pairBlocks{lowBlocksHigh: e.BlockedBy, lowURI: e.BlockedByURI, highBlocksLow: e.Blocking, highURI: e.BlockingURI}
	}
	return k, p
}

// relations lists the pair's blocks.
func (p pairBlocks) relations(k [2]string) []Relation {
	var out []Relation
	if p.lowBlocksHigh {
		out = append(out, Relation{Blocker: k[0], Blocked: k[1], URI: p.lowURI})
	}
	if p.highBlocksLow {
		out = append(out, Relation{Blocker: k[1], Blocked: k[0], URI: p.highURI})
	}
	return out
}

// job is one getRelationships request.
type job struct {
	actor  string
	others []string
}

// Among returns the blocks between members of dids, in either direction,
// each once. Every pair is asked once (from its first account in dids),
// up to 30 at a time; a pair whose asking account the AppView does not
// know is asked again from its other account. It fails with
// ErrUnavailable if any request fails.
func (a *AppView) Among(ctx context.Context, dids []string) ([]Relation, error) {
	uniq := uniqueDIDs(dids)
	asks := make([]ask, 0, len(uniq))
	for i, x := range uniq {
		asks = append(asks, ask{actor: x, others: uniq[i+1:]})
	}
	return a.pairs(ctx, asks)
}

// Between returns the blocks, in either direction, between an account of
// added and an account of added or existing, each once: what an add of
// added to a conversation of existing must know, without the pairs of
// existing members among themselves. Each account of added asks about the
// others after it and every existing account, 30 at a time, so one
// newcomer to n members costs about n/30 requests where Among costs about
// n²/60. Failures and the cache are Among's.
func (a *AppView) Between(ctx context.Context, added, existing []string) ([]Relation, error) {
	news := uniqueDIDs(added)
	isNew := make(map[string]bool, len(news))
	for _, d := range news {
		isNew[d] = true
	}
	var olds []string
	for _, d := range uniqueDIDs(existing) {
		if !isNew[d] {
			olds = append(olds, d)
		}
	}
	asks := make([]ask, 0, len(news))
	for i, x := range news {
		asks = append(asks, ask{actor: x, others: append(slices.Clone(news[i+1:]), olds...)})
	}
	return a.pairs(ctx, asks)
}

// ask is an account and the accounts whose pairs with it are wanted, each
// pair named once across a call's asks.
type ask struct {
	actor  string
	others []string
}

// pairs returns the blocks of the pairs asks name, from the cache or the
// AppView: each pair asked from its ask's actor first, and a pair whose
// actor the AppView does not know asked again from its other account.
func (a *AppView) pairs(ctx context.Context, asks []ask) ([]Relation, error) {
	known := map[[2]string]pairBlocks{}
	pending := map[[2]string]bool{}
	// Round one: each actor asks about its pending pairs.
	var jobs []job
	for _, q := range asks {
		var others []string
		for _, y := range q.others {
			k, _ := pairKey(q.actor, y)
			if p, ok := a.cache.get(k); ok {
				known[k] = p
			} else if !pending[k] {
				pending[k] = true
				others = append(others, y)
			}
		}
		jobs = appendJobs(jobs, q.actor, others)
	}
	unknown, err := a.run(ctx, jobs, known, pending)
	if err != nil {
		return nil, err
	}
	// Round two: a pair whose asker the AppView does not know is asked
	// from the other account; a pair of two unknown accounts has no block
	// the AppView knows of.
	again := map[string][]string{}
	var order []string
	for _, q := range asks {
		if !unknown[q.actor] {
			continue
		}
		for _, y := range q.others {
			if k, _ := pairKey(q.actor, y); !unknown[y] && pending[k] {
				if _, ok := again[y]; !ok {
					order = append(order, y)
				}
				again[y] = append(again[y], q.actor)
			}
		}
	}
	jobs = jobs[:0]
	for _, y := range order {
		jobs = appendJobs(jobs, y, again[y])
	}
	if _, err := a.run(ctx, jobs, known, pending); err != nil {
		return nil, err
	}
	var out []Relation
	for k, p := range known {
		out = append(out, p.relations(k)...)
	}
	return out, nil
}

func uniqueDIDs(dids []string) []string {
	seen := make(map[string]bool, len(dids))
	var uniq []string
	for _, d := range dids {
		if !seen[d] {
			seen[d] = true
			uniq = append(uniq, d)
		}
	}
	return uniq
}

// appendJobs adds the requests of actor about others, 30 at a time.
func appendJobs(jobs []job, actor string, others []string) []job {
	for len(others) > 0 {
		n := min(len(others), maxOthers)
		jobs = append(jobs, job{actor: actor, others: others[:n:n]})
		others = others[n:]
	}
	return jobs
}

// run makes jobs, at most parallel at once, recording each pair learned in
// known and the cache and clearing it from pending. It returns the actors
// the AppView does not know.
func (a *AppView) run(ctx context.Context, jobs []job, known map[[2]string]pairBlocks, pending map[[2]string]bool) (map[string]bool, error) {
	results, errs := inParallel(jobs, func(j job) (map[string]Edges, error) { return a.relationships(ctx, j, false) })
	unknown := map[string]bool{}
	for i, j := range jobs {
		switch err := errs[i]; {
		case errors.Is(err, errActorNotFound):
			unknown[j.actor] = true
			continue
		case err != nil:
			return nil, err
		}
		for _, o := range j.others {
			k, p := pairOf(j.actor, o, results[i][o])
			known[k] = p
			delete(pending, k)
		}
	}
	return unknown, nil
}

// relationships asks the AppView about j (one request shared by
// concurrent callers, unless fresh) and caches each pair it answers.
func (a *AppView) relationships(ctx context.Context, j job, fresh bool) (map[string]Edges, error) {
	q := url.Values{"actor": {j.actor}, "others": j.others}
	u := a.cfg.BaseURL + "/xrpc/" + RelationshipsNSID + "?" + q.Encode()
	key := u
	if fresh {
		key = "fresh|" + u
	}
	ch := a.flight.DoChan(key, func() (any, error) {
		// One request serves every waiter: it must not die with the first
		// caller's context (the client has its own timeout).
		status, body, err := fetch(context.WithoutCancel(ctx), a.cfg.Client, u)
		if err != nil {
			return nil, err
		}
		if status == http.StatusBadRequest && xrpcErrorName(body) == "ActorNotFound" {
			return nil, errActorNotFound
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("%w: AppView answered %d", ErrUnavailable, status)
		}
		edges, known, err := ParseRelationships(j.actor, j.others, body)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		if !known {
			return nil, errActorNotFound
		}
		for _, o := range j.others {
			k, p := pairOf(j.actor, o, edges[o])
			a.cache.put(k, p)
		}
		return edges, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.(map[string]Edges), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// Verify asks the AppView, bypassing the cache, whether blocker blocks
// blocked; with uri, the block must be that record. The AppView learns of
// a block from the network some time after it is made, so a block made a
// moment ago may not verify yet. The cache is updated with what was read.
func (a *AppView) Verify(ctx context.Context, blocker, blocked, uri string) (Relation, bool, error) {
	edges, err := a.relationships(ctx, job{actor: blocker, others: []string{blocked}}, true)
	if errors.Is(err, errActorNotFound) {
		return Relation{}, false, nil
	}
	if err != nil {
		return Relation{}, false, err
	}
	e := edges[blocked]
	if !e.Blocking || (uri != "" && e.BlockingURI != uri) {
		return Relation{}, false, nil
	}
	return Relation{Blocker: blocker, Blocked: blocked, URI: e.BlockingURI}, true, nil
}

// relationshipsOutput is app.bsky.graph.getRelationships#output.
type relationshipsOutput struct {
	Actor         string            `json:"actor"`
	Relationships []json.RawMessage `json:"relationships"`
}

// relationshipView is a member of the output's union: an
// app.bsky.graph.defs#relationship or #notFoundActor.
type relationshipView struct {
	Type      string `json:"$type"`
	DID       string `json:"did"`
	Blocking  string `json:"blocking"`
	BlockedBy string `json:"blockedBy"`
	NotFound  bool   `json:"notFound"`
}

// ParseRelationships parses a getRelationships response to a request
// about actor and others. It returns the block edges between actor and
// each of others it names; entries about accounts not asked about, not
// found, or of an unknown type are skipped. known is false when the
// output names no actor: the reference AppView's answer for an actor it
// has not indexed. A response about another actor is an error.
func ParseRelationships(actor string, others []string, body []byte) (edges map[string]Edges, known bool, err error) {
	var out relationshipsOutput
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, false, fmt.Errorf("getRelationships response is not JSON: %w", err)
	}
	if out.Actor == "" {
		return map[string]Edges{}, false, nil
	}
	if out.Actor != actor {
		return nil, false, errors.New("getRelationships answered about another actor")
	}
	asked := make(map[string]bool, len(others))
	for _, o := range others {
		asked[o] = true
	}
	edges = map[string]Edges{}
	for _, raw := range out.Relationships {
		var v relationshipView
		if json.Unmarshal(raw, &v) != nil {
			continue
		}
		// The union's members carry $type; one without it is read as a
		// relationship if it names a DID, so a block is not missed for a
		// missing tag.
		if v.Type == typeNotFoundActor || v.NotFound || (v.Type != typeRelationship && v.Type != "") || !asked[v.DID] {
			continue
		}
		edges[v.DID] = Edges{
			Blocking: v.Blocking != "", BlockingURI: blockURIOf(v.Blocking, actor),
			BlockedBy: v.BlockedBy != "", BlockedByURI: blockURIOf(v.BlockedBy, v.DID),
		}
	}
	return edges, true, nil
}

// blockURIOf returns uri if it is a block record of repo, else "".
func blockURIOf(uri, repo string) string {
	if r, _, err := ParseBlockURI(uri); err == nil && r == repo {
		return uri
	}
	return ""
}
