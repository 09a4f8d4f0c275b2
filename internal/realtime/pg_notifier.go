package realtime

import (
	"context"
	"errors"
	"fmt"
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
	cfg   PGNotifierConfig
	relay *relay

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// pub is the publishing connection, used only by the relay's
	// goroutine; nil until needed and after a failure.
	pub *pgx.Conn
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
	listen, err := pgx.Connect(ctx, cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("connect for LISTEN: %w", err)
	}
	if _, err := listen.Exec(ctx, "LISTEN "+pgx.Identifier{cfg.Channel}.Sanitize()); err != nil {
		listen.Close(context.Background())
		return nil, fmt.Errorf("LISTEN: %w", err)
	}
	n := &PGNotifier{cfg: cfg}
	if n.relay, err = newRelay(n.send, cfg.OnError, cfg.Retry); err != nil {
		listen.Close(context.Background())
		return nil, err
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(2)
	go n.listenLoop(listen)
	go func() {
		defer n.wg.Done()
		n.relay.run(n.ctx)
		if n.pub != nil {
			n.pub.Close(context.Background())
		}
	}()
	return n, nil
}

// Publish implements Notifier.
func (n *PGNotifier) Publish(ctx context.Context, convoID string) error {
	n.relay.publish(ctx, convoID)
	return nil
}

// Listen implements Notifier.
func (n *PGNotifier) Listen(fn func(string)) (stop func()) { return n.relay.local.Listen(fn) }

// Close stops listening and publishing.
func (n *PGNotifier) Close() error {
	n.cancel()
	n.wg.Wait()
	return nil
}

// send notifies the channel over the publishing connection, opening it
// when needed and dropping it after a failure.
func (n *PGNotifier) send(ctx context.Context, payload string) error {
	var err error
	if n.pub == nil {
		if n.pub, err = pgx.Connect(ctx, n.cfg.URL); err != nil {
			n.pub = nil
			return err
		}
	}
	if _, err = n.pub.Exec(ctx, "SELECT pg_notify($1, $2)", n.cfg.Channel, payload); err != nil {
		n.pub.Close(context.Background())
		n.pub = nil
	}
	return err
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
		n.relay.lost(n.ctx)
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
		n.relay.received(n.ctx, note.Payload)
	}
}

var _ Notifier = (*PGNotifier)(nil)
