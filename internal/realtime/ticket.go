package realtime

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
)

// DefaultTicketTTL is a ticket's lifetime.
const DefaultTicketTTL = 30 * time.Second

// Ticket errors.
var (
	// ErrInvalidTicket means the ticket is malformed, not signed by this
	// server's key, or for another method.
	ErrInvalidTicket = errors.New("realtime: invalid ticket")
	// ErrTicketExpired means the ticket's lifetime has passed.
	ErrTicketExpired = errors.New("realtime: ticket expired")
	// ErrTicketReplayed means the ticket was already redeemed.
	ErrTicketReplayed = errors.New("realtime: ticket already used")
)

// ReplayStore remembers redeemed ticket ids until they expire, so a ticket
// works once. It has the shape of atpauth.ReplayStore, so the Redis store
// that nodes behind one load balancer share for service-auth tokens serves
// here too (ticket keys are prefixed "ticket:"); the memory store serves a
// single node.
type ReplayStore interface {
	// Remember records key as used until the time until, and reports
	// whether it was fresh (not already recorded and unexpired). Of two
	// concurrent calls with one key, exactly one reports fresh.
	Remember(ctx context.Context, key string, until time.Time) (fresh bool, err error)
}

// MemoryReplayStore is an in-process ReplayStore.
type MemoryReplayStore struct {
	now  func() time.Time
	mu   sync.Mutex
	ids  map[string]time.Time
	next int
}

// NewMemoryReplayStore returns an empty MemoryReplayStore using clock now
// (nil for time.Now).
func NewMemoryReplayStore(now func() time.Time) *MemoryReplayStore {
	if now == nil {
		now = time.Now
	}
	return &MemoryReplayStore{now: now, ids: make(map[string]time.Time), next: 1024}
}

// Remember implements ReplayStore. Expired keys are pruned whenever the
// set has doubled since the last pruning, so it holds about one ticket
// lifetime's worth at amortized constant cost.
func (m *MemoryReplayStore) Remember(_ context.Context, key string, until time.Time) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if exp, ok := m.ids[key]; ok && now.Before(exp) {
		return false, nil
	}
	if len(m.ids) >= m.next {
		for k, exp := range m.ids {
			if !now.Before(exp) {
				delete(m.ids, k)
			}
		}
		m.next = max(1024, 2*len(m.ids))
	}
	m.ids[key] = until
	return true, nil
}

// TicketConfig configures Tickets. Key is required.
type TicketConfig struct {
	// Key signs tickets (HMAC-SHA256); at least 32 bytes. Nodes sharing a
	// load balancer need the same key.
	Key []byte
	// TTL is a ticket's lifetime. Default 30 s.
	TTL time.Duration
	// Replay remembers redeemed tickets. Default: a MemoryReplayStore.
	Replay ReplayStore
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Tickets issues and redeems the short-lived tickets that authenticate
// WebSocket subscriptions. A ticket is a JWT (HS256) bound to the caller's
// DID and device and, optionally, one conversation; it works once.
type Tickets struct {
	cfg TicketConfig
}

// NewTickets returns Tickets for cfg.
func NewTickets(cfg TicketConfig) (*Tickets, error) {
	if len(cfg.Key) < 32 {
		return nil, errors.New("realtime: TicketConfig.Key must be at least 32 bytes")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTicketTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Replay == nil {
		cfg.Replay = NewMemoryReplayStore(cfg.Now)
	}
	cfg.Key = append([]byte(nil), cfg.Key...)
	return &Tickets{cfg: cfg}, nil
}

// Ticket is a redeemed ticket.
type Ticket struct {
	Identity caller.Identity
	// ConvoID is the conversation the ticket is bound to, or "".
	ConvoID   string
	ExpiresAt time.Time
}

type ticketClaims struct {
	Sub     string `json:"sub"`
	Device  string `json:"dev,omitempty"`
	Aud     string `json:"aud"`
	Iat     int64  `json:"iat"`
	Exp     int64  `json:"exp"`
	Jti     string `json:"jti"`
	ConvoID string `json:"convoId,omitempty"`
}

// ticketHeader is the one JOSE header tickets carry; anything else is
// refused rather than interpreted.
var ticketHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// Issue returns a ticket for id, bound to convoID if it is not empty, and
// its expiry. Check membership before issuing one for a conversation.
func (t *Tickets) Issue(id caller.Identity, convoID string) (string, time.Time, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", time.Time{}, fmt.Errorf("ticket id: %w", err)
	}
	now := t.cfg.Now()
	exp := now.Add(t.cfg.TTL).Truncate(time.Second)
	claims, err := json.Marshal(ticketClaims{
		Sub: id.DID, Device: id.DeviceID, Aud: NSIDSubscribe, Iat: now.Unix(), Exp: exp.Unix(),
		Jti: hex.EncodeToString(jti), ConvoID: convoID,
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode ticket: %w", err)
	}
	signing := ticketHeader + "." + base64.RawURLEncoding.EncodeToString(claims)
	return signing + "." + t.sign(signing), exp, nil
}

func (t *Tickets) sign(s string) string {
	mac := hmac.New(sha256.New, t.cfg.Key)
	mac.Write([]byte(s))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// maxTicketLen bounds a ticket's length before any work is done on it.
const maxTicketLen = 2048

// Redeem verifies a ticket and consumes it: ErrInvalidTicket,
// ErrTicketExpired or ErrTicketReplayed if it cannot be used.
func (t *Tickets) Redeem(ctx context.Context, ticket string) (Ticket, error) {
	if len(ticket) > maxTicketLen {
		return Ticket{}, ErrInvalidTicket
	}
	head, rest, ok := strings.Cut(ticket, ".")
	if !ok || head != ticketHeader {
		return Ticket{}, ErrInvalidTicket
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(t.sign(head+"."+payload))) {
		return Ticket{}, ErrInvalidTicket
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Ticket{}, ErrInvalidTicket
	}
	var c ticketClaims
	if err := json.Unmarshal(raw, &c); err != nil || c.Sub == "" || c.Jti == "" || c.Aud != NSIDSubscribe {
		return Ticket{}, ErrInvalidTicket
	}
	exp := time.Unix(c.Exp, 0)
	if !t.cfg.Now().Before(exp) {
		return Ticket{}, ErrTicketExpired
	}
	fresh, err := t.cfg.Replay.Remember(ctx, "ticket:"+c.Jti, exp)
	if err != nil {
		return Ticket{}, fmt.Errorf("check ticket replay: %w", err)
	}
	if !fresh {
		return Ticket{}, ErrTicketReplayed
	}
	return Ticket{Identity: caller.Identity{DID: c.Sub, DeviceID: c.Device}, ConvoID: c.ConvoID, ExpiresAt: exp}, nil
}
