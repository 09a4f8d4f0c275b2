package realtime

import (
	"context"
	"crypto/cipher"
	"crypto/hkdf"
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

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
)

// DefaultTicketTTL is a ticket's lifetime.
const DefaultTicketTTL = 30 * time.Second

// Ticket errors.
var (
	// ErrInvalidTicket means the ticket is malformed, not sealed by this
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
	// Key is the secret tickets are sealed with (through a key derived from
	// it); at least 32 bytes. Nodes sharing a load balancer need the same
	// key.
	Key []byte
	// TTL is a ticket's lifetime. Default 30 s.
	TTL time.Duration
	// Replay remembers redeemed tickets. Default: a MemoryReplayStore.
	Replay ReplayStore
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Tickets issues and redeems the short-lived tickets that authenticate
// WebSocket subscriptions. A ticket is bound to the caller's DID and device
// and, optionally, one conversation; it works once.
//
// A ticket travels in a URL, which proxies and CDNs log, so it is opaque:
// its claims are sealed with XChaCha20-Poly1305 (golang.org/x/crypto, a
// maintained AEAD; 192-bit random nonces, so no bound on tickets per key)
// and padded to a multiple of ticketPad bytes, and the ticket text is the
// nonce and the ciphertext in base64url. It names no DID and no
// conversation, and its length says little about theirs. Sealing rather
// than a random handle kept server-side means any node holding the key
// redeems a ticket another issued, with or without Redis, and issuing
// stores nothing.
type Tickets struct {
	cfg  TicketConfig
	aead cipher.AEAD
}

// ticketKeyInfo labels the key derived from TicketConfig.Key.
const ticketKeyInfo = "cairn realtime ticket aead v2"

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
	key, err := hkdf.Key(sha256.New, cfg.Key, nil, ticketKeyInfo, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("realtime: derive ticket key: %w", err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("realtime: ticket cipher: %w", err)
	}
	cfg.Key = nil
	return &Tickets{cfg: cfg, aead: aead}, nil
}

// Ticket is an opened ticket: what it grants, not yet used up (see
// Tickets.Redeem).
type Ticket struct {
	Identity caller.Identity
	// ConvoID is the conversation the ticket is bound to, or "".
	ConvoID   string
	ExpiresAt time.Time
	// id is the ticket's random id, the key of its single use.
	id string
}

// ticketClaims is a ticket's sealed content.
type ticketClaims struct {
	Sub     string `json:"sub"`
	Device  string `json:"dev,omitempty"`
	Exp     int64  `json:"exp"`
	Jti     string `json:"jti"`
	ConvoID string `json:"convoId,omitempty"`
}

// ticketPad is the block the sealed claims are padded to (with JSON
// whitespace), so a ticket's length hides the exact length of the DID and
// conversation it names.
const ticketPad = 64

// ticketAD binds a ticket to the method it opens; a sealed blob made for
// anything else does not open as a ticket.
var ticketAD = []byte(NSIDSubscribe)

// Issue returns a ticket for id, bound to convoID if it is not empty, and
// its expiry. Check membership before issuing one for a conversation.
func (t *Tickets) Issue(id caller.Identity, convoID string) (string, time.Time, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", time.Time{}, fmt.Errorf("ticket id: %w", err)
	}
	exp := t.cfg.Now().Add(t.cfg.TTL).Truncate(time.Second)
	claims, err := json.Marshal(ticketClaims{
		Sub: id.DID, Device: id.DeviceID, Exp: exp.Unix(), Jti: hex.EncodeToString(jti), ConvoID: convoID,
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("encode ticket: %w", err)
	}
	if r := len(claims) % ticketPad; r != 0 {
		claims = append(claims, strings.Repeat(" ", ticketPad-r)...)
	}
	nonce := make([]byte, t.aead.NonceSize(), t.aead.NonceSize()+len(claims)+t.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", time.Time{}, fmt.Errorf("ticket nonce: %w", err)
	}
	sealed := t.aead.Seal(nonce, nonce, claims, ticketAD)
	return base64.RawURLEncoding.EncodeToString(sealed), exp, nil
}

// maxTicketLen bounds a ticket's length before any work is done on it.
const maxTicketLen = 2048

// Open decrypts and checks a ticket without using it up: ErrInvalidTicket
// or ErrTicketExpired if it cannot be used. Redeem uses it up.
func (t *Tickets) Open(ticket string) (Ticket, error) {
	if len(ticket) > maxTicketLen {
		return Ticket{}, ErrInvalidTicket
	}
	sealed, err := base64.RawURLEncoding.DecodeString(ticket)
	if err != nil || len(sealed) < t.aead.NonceSize()+t.aead.Overhead() {
		return Ticket{}, ErrInvalidTicket
	}
	n := t.aead.NonceSize()
	raw, err := t.aead.Open(nil, sealed[:n], sealed[n:], ticketAD)
	if err != nil {
		return Ticket{}, ErrInvalidTicket
	}
	var c ticketClaims
	if err := json.Unmarshal(raw, &c); err != nil || c.Sub == "" || c.Jti == "" {
		return Ticket{}, ErrInvalidTicket
	}
	exp := time.Unix(c.Exp, 0)
	if !t.cfg.Now().Before(exp) {
		return Ticket{}, ErrTicketExpired
	}
	return Ticket{Identity: caller.Identity{DID: c.Sub, DeviceID: c.Device}, ConvoID: c.ConvoID, ExpiresAt: exp, id: c.Jti}, nil
}

// Redeem uses up an opened ticket: ErrTicketReplayed if it was used
// before (on any node sharing the replay store), ErrTicketExpired if it
// expired since it was opened. Call it only once the ticket is about to
// serve: the WebSocket transport calls it when the upgrade is certain, so a
// request that is no upgrade leaves the ticket usable.
func (t *Tickets) Redeem(ctx context.Context, tk Ticket) error {
	if tk.id == "" {
		return ErrInvalidTicket
	}
	if !t.cfg.Now().Before(tk.ExpiresAt) {
		return ErrTicketExpired
	}
	fresh, err := t.cfg.Replay.Remember(ctx, "ticket:"+tk.id, tk.ExpiresAt)
	if err != nil {
		return fmt.Errorf("check ticket replay: %w", err)
	}
	if !fresh {
		return ErrTicketReplayed
	}
	return nil
}
