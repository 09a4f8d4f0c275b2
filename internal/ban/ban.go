// Package ban bars accounts from the delivery service. A ban is stored
// only as the keyed hash of the account's DID (internal/redact), so the
// table names no one; the delivery handler asks [List.Banned] for every
// verified caller and refuses a banned one.
//
// Each node keeps the set of banned hashes in memory and reloads it from
// the store when it is older than the refresh interval, so a ban added on
// one node reaches every node within that interval; the node that changed
// it applies it at once. When the set cannot be reloaded for longer than
// the staleness bound, Banned fails (the caller refuses the request):
// bans fail closed.
//
// It knows nothing of HTTP or Caddy.
package ban

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// Defaults of Config.
const (
	DefaultRefresh  = 10 * time.Second
	DefaultMaxStale = time.Minute
)

// ErrInvalidDID means a string given as a DID is not one.
var ErrInvalidDID = errors.New("not a DID: want did:<method>:<identifier>")

// Config configures a List.
type Config struct {
	// Store holds the bans.
	Store store.Bans
	// Hasher is the keyed hash bans are stored under.
	Hasher *redact.Hasher
	// Refresh is how old the cached set may be before it is reloaded.
	// Default 10 s.
	Refresh time.Duration
	// MaxStale is how long a set that cannot be reloaded is still used;
	// past it Banned fails. Default 1 min.
	MaxStale time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// List is the ban list of one node, cached.
type List struct {
	store    store.Bans
	hasher   *redact.Hasher
	refresh  time.Duration
	maxStale time.Duration
	now      func() time.Time

	mu     sync.Mutex
	set    map[string]struct{}
	loaded time.Time // zero: never loaded, or invalidated
	good   time.Time // when the set was last loaded successfully
	// refreshing is set while one caller reloads the set; gen counts
	// invalidations, so a reload that raced a change is not trusted.
	refreshing bool
	gen        uint64
}

// New returns the List for cfg.
func New(cfg Config) (*List, error) {
	if cfg.Store == nil || cfg.Hasher == nil {
		return nil, errors.New("ban: a store and a hasher are required")
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.MaxStale < cfg.Refresh {
		cfg.MaxStale = max(DefaultMaxStale, cfg.Refresh)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &List{store: cfg.Store, hasher: cfg.Hasher, refresh: cfg.Refresh, maxStale: cfg.MaxStale, now: cfg.Now}, nil
}

// CheckDID accepts the shape of a DID without a fragment:
// did:<lower-case method>:<identifier>, at most 2048 bytes.
func CheckDID(did string) error {
	if len(did) > 2048 || !strings.HasPrefix(did, "did:") {
		return ErrInvalidDID
	}
	method, id, ok := strings.Cut(did[len("did:"):], ":")
	if !ok || method == "" || id == "" || strings.HasSuffix(id, ":") {
		return ErrInvalidDID
	}
	for _, r := range method {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return ErrInvalidDID
		}
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:%-", r)) {
			return ErrInvalidDID
		}
	}
	return nil
}

// Hash returns the keyed hash a ban of did is stored under.
func (l *List) Hash(did string) string { return l.hasher.Hash(did) }

// Banned reports whether did is banned. One caller at a time reloads a
// stale set; the others answer from the set they have while it is within
// the staleness bound, so a slow database does not queue every request.
func (l *List) Banned(ctx context.Context, did string) (bool, error) {
	h := l.hasher.Hash(did)
	l.mu.Lock()
	now := l.now()
	usable := !l.good.IsZero() && now.Sub(l.good) < l.maxStale
	if (!l.loaded.IsZero() && now.Sub(l.loaded) < l.refresh) || (l.refreshing && usable) {
		_, banned := l.set[h]
		l.mu.Unlock()
		return banned, nil
	}
	l.refreshing = true
	gen := l.gen
	l.mu.Unlock()

	bans, err := l.store.Bans(ctx)

	l.mu.Lock()
	defer l.mu.Unlock()
	l.refreshing = false
	if err != nil {
		if l.good.IsZero() || l.now().Sub(l.good) >= l.maxStale {
			return false, fmt.Errorf("ban list: %w", err)
		}
		// Keep answering from the recent set; the next call retries.
	} else {
		set := make(map[string]struct{}, len(bans))
		for _, b := range bans {
			set[b.Hash] = struct{}{}
		}
		l.set, l.good = set, now
		if gen == l.gen {
			l.loaded = now
		} // else a change raced the read: the next call reads again
	}
	_, banned := l.set[h]
	return banned, nil
}

// Add bans did. added is false if it was banned already.
func (l *List) Add(ctx context.Context, did string) (hash string, added bool, err error) {
	if err := CheckDID(did); err != nil {
		return "", false, err
	}
	hash = l.hasher.Hash(did)
	added, err = l.store.AddBan(ctx, hash)
	l.invalidate()
	return hash, added, err
}

// Remove lifts the ban stored under hash. removed is false if there was
// none.
func (l *List) Remove(ctx context.Context, hash string) (bool, error) {
	removed, err := l.store.RemoveBan(ctx, hash)
	l.invalidate()
	return removed, err
}

// Bans lists the bans, oldest first, from the store.
func (l *List) Bans(ctx context.Context) ([]store.Ban, error) { return l.store.Bans(ctx) }

// invalidate makes the next Banned reload the set, keeping the old one in
// case the store cannot be reached.
func (l *List) invalidate() {
	l.mu.Lock()
	l.loaded = time.Time{}
	l.gen++
	l.mu.Unlock()
}
