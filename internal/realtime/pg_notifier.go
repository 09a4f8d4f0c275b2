package realtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPGChannel is the PostgreSQL notification channel of PGNotifier.
const DefaultPGChannel = "cairn_realtime"

// PGNotifierConfig configures a PGNotifier. URL is required.
type PGNotifierConfig struct {
	// URL is the PostgreSQL connection URL (the store's).
	URL string
	// Channel is the LISTEN/NOTIFY channel. Default DefaultPGChannel.
	Channel string
	// Retry is the pause before reconnecting after a lost connection.
	// Default 1 s.
	Retry time.Duration
	// OnError, if set, is told of connection failures (for a log line;
	// the error names no identity).
	OnError func(error)
}

// PGNotifier carries wake-ups between nodes sharing one PostgreSQL with
// LISTEN/NOTIFY. The payload is "<node>:<convoId>": no event data, no
// identity. Publish calls local listeners at once and sends the id to
// the other nodes in the background, so the write path never waits on
// it; a node's own notifications are ignored when they come back.
type PGNotifier struct {
	cfg  PGNotifierConfig
	node string

	local *LocalNotifier

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	pending map[string]struct{}
	kick    chan struct{}
}

// NewPGNotifier connects, starts listening and returns the notifier. Close
// it to stop.
func NewPGNotifier(ctx context.Context, cfg PGNotifierConfig) (*PGNotifier, error) {
	if cfg.URL == "" {
		return nil, errors.New("realtime: PGNotifierConfig.URL is required")
	}
	if cfg.Channel == "" {
		cfg.Channel = DefaultPGChannel
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.OnError == nil {
		cfg.OnError = func(error) {}
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("node id: %w", err)
	}
	listen, err := pgx.Connect(ctx, cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("connect for LISTEN: %w", err)
	}
	if _, err := listen.Exec(ctx, "LISTEN "+pgx.Identifier{cfg.Channel}.Sanitize()); err != nil {
		listen.Close(context.Background())
		return nil, fmt.Errorf("LISTEN: %w", err)
	}
	n := &PGNotifier{
		cfg: cfg, node: hex.EncodeToString(id), local: NewLocalNotifier(),
		pending: make(map[string]struct{}), kick: make(chan struct{}, 1),
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(2)
	go n.listenLoop(listen)
	go n.publishLoop()
	return n, nil
}

// Publish implements Notifier.
func (n *PGNotifier) Publish(ctx context.Context, convoID string) error {
	_ = n.local.Publish(ctx, convoID)
	n.mu.Lock()
	n.pending[convoID] = struct{}{}
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
	return nil
}

// Listen implements Notifier.
func (n *PGNotifier) Listen(fn func(string)) (stop func()) { return n.local.Listen(fn) }

// Close stops listening and publishing.
func (n *PGNotifier) Close() error {
	n.cancel()
	n.wg.Wait()
	return nil
}

func (n *PGNotifier) listenLoop(conn *pgx.Conn) {
	defer n.wg.Done()
	for {
		err := n.receive(conn)
		conn.Close(context.Background())
		if n.ctx.Err() != nil {
			return
		}
		n.cfg.OnError(fmt.Errorf("realtime notifier: listen: %w", err))
		for conn = nil; conn == nil; {
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(n.cfg.Retry):
			}
			conn, err = n.relisten()
			if err != nil {
				n.cfg.OnError(fmt.Errorf("realtime notifier: reconnect: %w", err))
			}
		}
		// Announcements sent while we were away are lost: wake everything.
		_ = n.local.Publish(n.ctx, "")
	}
}

func (n *PGNotifier) relisten() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, n.cfg.URL)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{n.cfg.Channel}.Sanitize()); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

func (n *PGNotifier) receive(conn *pgx.Conn) error {
	for {
		note, err := conn.WaitForNotification(n.ctx)
		if err != nil {
			return err
		}
		node, convoID, ok := strings.Cut(note.Payload, ":")
		if !ok || node == n.node || convoID == "" {
			continue
		}
		_ = n.local.Publish(n.ctx, convoID)
	}
}

// publishLoop sends pending ids, coalesced, over its own connection.
func (n *PGNotifier) publishLoop() {
	defer n.wg.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.kick:
		}
		n.mu.Lock()
		ids := make([]string, 0, len(n.pending))
		for id := range n.pending {
			ids = append(ids, id)
		}
		clear(n.pending)
		n.mu.Unlock()
		for i, id := range ids {
			ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
			var err error
			if conn == nil {
				conn, err = pgx.Connect(ctx, n.cfg.URL)
			}
			if err == nil {
				_, err = conn.Exec(ctx, "SELECT pg_notify($1, $2)", n.cfg.Channel, n.node+":"+id)
			}
			cancel()
			if err == nil {
				continue
			}
			n.cfg.OnError(fmt.Errorf("realtime notifier: publish: %w", err))
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
			// Keep what was not sent and try again after a pause.
			n.mu.Lock()
			for _, id := range ids[i:] {
				n.pending[id] = struct{}{}
			}
			n.mu.Unlock()
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(n.cfg.Retry):
			}
			select {
			case n.kick <- struct{}{}:
			default:
			}
			break
		}
	}
}

var _ Notifier = (*PGNotifier)(nil)
