package realtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisChannel is the Redis pub/sub channel of RedisNotifier.
const DefaultRedisChannel = "cairn:realtime"

// RedisNotifierConfig configures a RedisNotifier. Client is required.
type RedisNotifierConfig struct {
	// Client is the Redis client (the cairn app's).
	Client *redis.Client
	// Channel is the pub/sub channel. Default DefaultRedisChannel.
	Channel string
	// Retry is the pause before publishing again after a failure.
	// Default 1 s.
	Retry time.Duration
	// OnError, if set, is told of failures and of a subscription
	// re-established after a lost connection (for a log line; the error
	// names no identity).
	OnError func(error)
}

// RedisNotifier carries wake-ups between nodes through a Redis pub/sub
// channel, for clusters where PostgreSQL LISTEN cannot be used (behind a
// pooler in transaction mode, say). Like PGNotifier, the payload is
// "<node>:<convoId>", local listeners hear a Publish at once, the other
// nodes in the background, and a subscription re-established after a lost
// connection wakes every stream, since announcements may have been missed.
type RedisNotifier struct {
	cfg    RedisNotifierConfig
	relay  *relay
	pubsub *redis.PubSub

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewRedisNotifier subscribes and returns the notifier. Close it to stop.
func NewRedisNotifier(ctx context.Context, cfg RedisNotifierConfig) (*RedisNotifier, error) {
	if cfg.Client == nil {
		return nil, errors.New("realtime: RedisNotifierConfig.Client is required")
	}
	if cfg.Channel == "" {
		cfg.Channel = DefaultRedisChannel
	}
	if cfg.OnError == nil {
		cfg.OnError = func(error) {}
	}
	n := &RedisNotifier{cfg: cfg}
	var err error
	n.relay, err = newRelay(func(ctx context.Context, payload string) error {
		return cfg.Client.Publish(ctx, cfg.Channel, payload).Err()
	}, cfg.OnError, cfg.Retry)
	if err != nil {
		return nil, err
	}
	n.pubsub = cfg.Client.Subscribe(ctx, cfg.Channel)
	// The first reply confirms the subscription; any later confirmation
	// is a re-subscription after a lost connection.
	if _, err := n.pubsub.Receive(ctx); err != nil {
		n.pubsub.Close()
		return nil, fmt.Errorf("SUBSCRIBE %s: %w", cfg.Channel, err)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	messages := n.pubsub.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(15 * time.Second))
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		n.relay.run(n.ctx)
	}()
	go func() {
		defer n.wg.Done()
		for m := range messages {
			switch m := m.(type) {
			case *redis.Message:
				n.relay.received(n.ctx, m.Payload)
			case *redis.Subscription:
				if m.Kind == "subscribe" {
					n.cfg.OnError(errors.New("realtime notifier: Redis subscription re-established after a lost connection; waking every stream"))
					n.relay.lost(n.ctx)
				}
			}
		}
	}()
	return n, nil
}

// Publish implements Notifier.
func (n *RedisNotifier) Publish(ctx context.Context, convoID string) error {
	n.relay.publish(ctx, convoID)
	return nil
}

// Listen implements Notifier.
func (n *RedisNotifier) Listen(fn func(string)) (stop func()) { return n.relay.local.Listen(fn) }

// Close unsubscribes and stops publishing.
func (n *RedisNotifier) Close() error {
	n.cancel()
	err := n.pubsub.Close()
	n.wg.Wait()
	return err
}

var _ Notifier = (*RedisNotifier)(nil)
