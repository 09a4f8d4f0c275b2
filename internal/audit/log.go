package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// DefaultRetention is how long audit rows are kept by default.
const DefaultRetention = 90 * 24 * time.Hour

// MinKeySize is the shortest audit key accepted.
const MinKeySize = redact.MinKeySize

// IP policies: what Record keeps of an event's IP.
const (
	// IPOff keeps nothing (the default).
	IPOff = "off"
	// IPHash keeps the keyed hash of the address (internal/redact).
	IPHash = "hash"
	// IPTruncate keeps the network: /24 of an IPv4, /48 of an IPv6
	// address.
	IPTruncate = "truncate"
)

// Config configures a Log.
type Config struct {
	// Store holds the chain.
	Store store.AuditLog
	// Key is the MAC key, at least MinKeySize bytes, kept outside the
	// database.
	Key []byte
	// IP is IPOff (or ""), IPHash or IPTruncate.
	IP string
	// Hasher hashes addresses under IPHash.
	Hasher *redact.Hasher
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Log is the audit log: a Recorder over a store.AuditLog that chains every
// row, and verifies and prunes the chain.
type Log struct {
	store  store.AuditLog
	key    []byte
	ip     string
	hasher *redact.Hasher
	now    func() time.Time
}

var _ Recorder = (*Log)(nil)

// New returns the Log for cfg.
func New(cfg Config) (*Log, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: a store is required")
	}
	if len(cfg.Key) < MinKeySize {
		return nil, fmt.Errorf("audit: the key must be at least %d bytes", MinKeySize)
	}
	if err := ValidIPPolicy(cfg.IP); err != nil {
		return nil, err
	}
	if cfg.IP == IPHash && cfg.Hasher == nil {
		return nil, errors.New("audit: ip hash needs a hasher")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Log{store: cfg.Store, key: cfg.Key, ip: cfg.IP, hasher: cfg.Hasher, now: cfg.Now}, nil
}

// ValidIPPolicy accepts "", IPOff, IPHash and IPTruncate.
func ValidIPPolicy(p string) error {
	switch p {
	case "", IPOff, IPHash, IPTruncate:
		return nil
	}
	return fmt.Errorf("audit ip %q: want %q, %q or %q", p, IPOff, IPHash, IPTruncate)
}

// Record appends e to the chain.
func (l *Log) Record(ctx context.Context, e Event) error {
	if err := e.validate(); err != nil {
		return err
	}
	meta := []byte("{}")
	if len(e.Metadata) > 0 {
		var err error
		// encoding/json sorts map keys: the bytes are deterministic.
		if meta, err = json.Marshal(e.Metadata); err != nil {
			return fmt.Errorf("%w: metadata: %v", ErrInvalidEvent, err)
		}
	}
	rec := store.AuditRecord{
		Time:     l.now().UTC().Truncate(time.Millisecond),
		Type:     e.Type,
		Actor:    e.Actor,
		Target:   e.Target,
		Metadata: meta,
		IP:       l.storedIP(e.IP),
	}
	_, err := l.store.AppendAudit(ctx, func(prev store.AuditLink) (store.AuditRecord, error) {
		r := rec
		r.Seq = prev.Seq + 1
		r.MAC = MAC(l.key, prev.MAC, r)
		return r, nil
	})
	if err != nil {
		return fmt.Errorf("audit %s: %w", e.Type, err)
	}
	return nil
}

// storedIP applies the IP policy.
func (l *Log) storedIP(ip string) string {
	if ip == "" {
		return ""
	}
	switch l.ip {
	case IPHash:
		return l.hasher.Hash(ip)
	case IPTruncate:
		return TruncateIP(ip)
	}
	return ""
}

// TruncateIP returns the /24 network of an IPv4 address or the /48 of an
// IPv6 address, and "" for anything that is not an address.
func TruncateIP(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// Prune deletes rows older than olderThan, keeping the chain verifiable
// from its new anchor, and records the prune itself. It returns how many
// rows went.
func (l *Log) Prune(ctx context.Context, olderThan time.Duration) (int64, error) {
	n, anchor, err := l.store.PruneAudit(ctx, olderThan)
	if err != nil {
		return n, fmt.Errorf("prune audit log: %w", err)
	}
	if n == 0 {
		return 0, nil
	}
	return n, l.Record(ctx, Event{Type: TypeAuditPrune, Metadata: map[string]any{"rows": n, "through": anchor.Seq}})
}
