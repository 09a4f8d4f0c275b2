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
	"time"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
	"github.com/cairn-chat/cairn-caddy/internal/caller"
)

// Ticket defaults.
const (
	// DefaultTicketTTL is a ticket's lifetime.
	DefaultTicketTTL = 30 * time.Second
	// DefaultTicketSkew is TicketConfig.Skew's default.
	DefaultTicketSkew = 5 * time.Second
)

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

// TicketConfig configures Tickets. Key is required.
type TicketConfig struct {
	// Key is the secret tickets are sealed with (through a key derived from
	// it); at least 32 bytes. Nodes sharing a load balancer need the same
	// key.
	Key []byte
	// TTL is a ticket's lifetime. Default 30 s.
	TTL time.Duration
	// Replay remembers redeemed tickets (keys prefixed "ticket:"): the
	// Redis store that nodes behind one load balancer share for
	// service-auth tokens, or an in-process one. Default: an
	// atpauth.MemoryReplayStore.
	Replay atpauth.ReplayStore
	// Skew is how far the clocks of the nodes sharing Replay may disagree.
	// A ticket issued before Replay's memory began, or less than Skew
	// after, may have been redeemed already and is refused as expired.
	// Default 5 s.
	Skew time.Duration
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
	// own is a random id sealed into every ticket this value issues. With
	// the in-process replay store it made (ownReplay), whose memory began
	// before it issued anything, its own tickets need no check against
	// the start of that memory.
	own       string
	ownReplay bool
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
	if cfg.Skew <= 0 {
		cfg.Skew = DefaultTicketSkew
	}
	ownReplay := cfg.Replay == nil
	if ownReplay {
		cfg.Replay = atpauth.NewMemoryReplayStore(0, cfg.Now)
	}
	own := make([]byte, 8)
	if _, err := rand.Read(own); err != nil {
		return nil, fmt.Errorf("realtime: ticket issuer id: %w", err)
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
	return &Tickets{cfg: cfg, aead: aead, own: hex.EncodeToString(own), ownReplay: ownReplay}, nil
}

// Ticket is an opened ticket: what it grants, not yet used up (see
// Tickets.Redeem).
type Ticket struct {
	Identity caller.Identity
	// ConvoID is the conversation the ticket is bound to, or "".
	ConvoID   string
	ExpiresAt time.Time
	// issued is when the ticket was issued; id is its random id, the key
	// of its single use.
	issued time.Time
	id     string
	issuer string
}

// ticketClaims is a ticket's sealed content.
type ticketClaims struct {
	Sub     string `json:"sub"`
	Device  string `json:"dev,omitempty"`
	Iat     int64  `json:"iat"`
	Exp     int64  `json:"exp"`
	Jti     string `json:"jti"`
	Issuer  string `json:"iss"`
	ConvoID string `json:"convoId,omitempty"`
}

// ticketPad is the block the sealed claims are padded to (with JSON
// whitespace), so that tickets naming any usual DID and conversation have one
// length, which tells nothing about them.
const ticketPad = 256

// ticketAD binds a ticket to the method it opens; a sealed blob made for
// anything else does not open as a ticket.
const ticketAD = NSIDSubscribe

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
		Sub: id.DID, Device: id.DeviceID, Iat: now.UnixMilli(), Exp: exp.Unix(), Jti: hex.EncodeToString(jti), Issuer: t.own, ConvoID: convoID,
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
	sealed := t.aead.Seal(nonce, nonce, claims, []byte(ticketAD))
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
	raw, err := t.aead.Open(nil, sealed[:n], sealed[n:], []byte(ticketAD))
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
	return Ticket{Identity: caller.Identity{DID: c.Sub, DeviceID: c.Device}, ConvoID: c.ConvoID, ExpiresAt: exp,
		issued: time.UnixMilli(c.Iat), id: c.Jti, issuer: c.Issuer}, nil
}

// Redeem uses up an opened ticket: ErrTicketReplayed if it was used
// before (on any node sharing the replay store), ErrTicketExpired if it
// expired since it was opened or was issued before the replay store's
// memory began (within Skew), when its use could have been forgotten. Call it only once the ticket is about to
// serve: the WebSocket transport calls it when the upgrade is certain, so a
// request that is no upgrade leaves the ticket usable.
func (t *Tickets) Redeem(ctx context.Context, tk Ticket) error {
	if tk.id == "" {
		return ErrInvalidTicket
	}
	if !t.cfg.Now().Before(tk.ExpiresAt) {
		return ErrTicketExpired
	}
	rec, err := t.cfg.Replay.Remember(ctx, "ticket:"+tk.id, tk.ExpiresAt)
	if err != nil {
		return fmt.Errorf("check ticket replay: %w", err)
	}
	if !rec.Fresh {
		return ErrTicketReplayed
	}
	ownMemory := t.ownReplay && tk.issuer == t.own
	if !ownMemory && tk.issued.Before(rec.Since.Add(t.cfg.Skew)) {
		return fmt.Errorf("%w: issued before the replay memory began", ErrTicketExpired)
	}
	return nil
}
