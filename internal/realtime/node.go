package realtime

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/cairn-chat/cairn-caddy/internal/atpauth"
)

// The notifiers a node can use, as configured.
const (
	// NotifierLocal wakes streams in process only: one node.
	NotifierLocal = "local"
	// NotifierPostgres uses the store's PostgreSQL LISTEN/NOTIFY.
	NotifierPostgres = "postgres"
	// NotifierRedis uses Redis pub/sub.
	NotifierRedis = "redis"
)

// ChooseNotifier turns the configured notifier ("" for the default) into
// the one a node uses, or says why the combination cannot work. On a store
// one node owns (SQLite) wake-ups stay in process and configuring a
// notifier is a mistake; on a shared PostgreSQL the default is its own
// LISTEN/NOTIFY, and redis needs a Redis client. It does no I/O, so
// configuration validation can call it.
func ChooseNotifier(configured string, sharedStore, haveRedis bool) (string, error) {
	switch configured {
	case "", NotifierPostgres, NotifierRedis:
	default:
		return "", fmt.Errorf("notifier %q: want %q or %q", configured, NotifierPostgres, NotifierRedis)
	}
	switch {
	case !sharedStore && configured != "":
		return "", fmt.Errorf("notifier %s: the embedded SQLite store serves one node, whose streams are woken in process; set database to share streams across nodes", configured)
	case !sharedStore:
		return NotifierLocal, nil
	case configured == NotifierRedis && !haveRedis:
		return "", errors.New("notifier redis needs the cairn redis option (or an expanded {$CAIRN_REDIS_URL})")
	case configured == "":
		return NotifierPostgres, nil
	}
	return configured, nil
}

// TicketReplayPrefix prefixes the Redis keys that remember redeemed tickets.
const TicketReplayPrefix = "cairn:ticket:"

// TicketKey derives the WebSocket ticket sealing key from a node secret
// (the log-hash key, which every node of a cluster shares), so a ticket
// issued by one node is redeemed by another without a second secret to
// distribute. The derivation is domain-separated: the ticket key reveals
// nothing about the secret's other uses.
func TicketKey(secret []byte) []byte {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("cairn realtime ticket key v1"))
	return mac.Sum(nil)
}

// NodeConfig configures a Node.
type NodeConfig struct {
	// Store is the delivery store the hub reads (whether its cursors are
	// ordered comes from its Traits). Required.
	Store Store
	// Notifier is a value ChooseNotifier returned.
	Notifier string
	// PostgresURL is the store's URL, for NotifierPostgres.
	PostgresURL string
	// Redis is the client for NotifierRedis, and remembers redeemed
	// tickets across the cluster when set (otherwise a ticket works once
	// per node).
	Redis *redis.Client
	// TicketReplay overrides where redeemed tickets are remembered.
	// Default: Redis when set, else in memory.
	TicketReplay atpauth.ReplayStore
	// TicketSkew is TicketConfig.Skew: how far the nodes' clocks may
	// disagree. Default DefaultTicketSkew.
	TicketSkew time.Duration
	// Secret is the node secret the ticket key is derived from
	// (TicketKey); at least 32 bytes.
	Secret []byte
	// Observer receives metrics counts. Default: none.
	Observer Observer
	// OnNotifierError, if set, is told of notifier connection trouble (for
	// a log line; the error names no identity).
	OnNotifierError func(error)
}

// Node is a process's realtime machinery: the hub over the store, the
// notifier that carries wake-ups between nodes, and the ticket service.
type Node struct {
	Hub     *Hub
	Tickets *Tickets

	notifier interface{ Close() error }
}

// StartNode connects the notifier (LISTEN on PostgreSQL, SUBSCRIBE on
// Redis) and builds the hub and tickets. Close the node to stop them.
func StartNode(ctx context.Context, cfg NodeConfig) (*Node, error) {
	if cfg.Store == nil {
		return nil, errors.New("realtime: NodeConfig.Store is required")
	}
	if len(cfg.Secret) < 32 {
		return nil, errors.New("realtime: NodeConfig.Secret must be at least 32 bytes")
	}
	onErr := cfg.OnNotifierError
	if onErr == nil {
		onErr = func(error) {}
	}
	n := &Node{}
	hcfg := Config{Store: cfg.Store, Observer: cfg.Observer}
	switch cfg.Notifier {
	case NotifierLocal, "":
	case NotifierPostgres:
		pn, err := NewPGNotifier(ctx, PGNotifierConfig{URL: cfg.PostgresURL, OnError: onErr})
		if err != nil {
			return nil, fmt.Errorf("realtime notifier: %w", err)
		}
		n.notifier, hcfg.Notifier = pn, pn
	case NotifierRedis:
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		rn, err := NewRedisNotifier(sctx, RedisNotifierConfig{Client: cfg.Redis, OnError: onErr})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("realtime notifier: %w", err)
		}
		n.notifier, hcfg.Notifier = rn, rn
	default:
		return nil, fmt.Errorf("realtime: unknown notifier %q", cfg.Notifier)
	}
	hub, err := New(hcfg)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("realtime hub: %w", err)
	}
	n.Hub = hub
	replay := cfg.TicketReplay
	if replay == nil && cfg.Redis != nil {
		replay = &atpauth.RedisReplayStore{Client: cfg.Redis, Prefix: TicketReplayPrefix}
	}
	if n.Tickets, err = NewTickets(TicketConfig{Key: TicketKey(cfg.Secret), Replay: replay, Skew: cfg.TicketSkew}); err != nil {
		n.Close()
		return nil, fmt.Errorf("realtime tickets: %w", err)
	}
	return n, nil
}

// Close closes the hub, ending every subscription, and the notifier.
func (n *Node) Close() error {
	var err error
	if n.Hub != nil {
		err = n.Hub.Close()
	}
	if n.notifier != nil {
		err = errors.Join(err, n.notifier.Close())
	}
	return err
}
