package realtime

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// TestRedisNotifierAcrossNodes: two hubs on one PostgreSQL database,
// woken through Redis pub/sub instead of LISTEN/NOTIFY; a subscriber on
// node B receives, in order, what is written through node A.
func TestRedisNotifierAcrossNodes(t *testing.T) {
	client, prefix := testenv.Redis(t)
	testAcrossNodes(t, testenv.Postgres(t), func() Notifier {
		n, err := NewRedisNotifier(context.Background(), RedisNotifierConfig{Client: client, Channel: prefix + "realtime"})
		testenv.Must(t, err, "notifier")
		t.Cleanup(func() { n.Close() })
		return n
	})
}

// TestRedisNotifierPayloadAndReconnect checks what crosses the channel,
// that a node hears its own announcements once, and that after Redis drops
// the subscription the notifier resubscribes, wakes every listener (""),
// and carries announcements again.
func TestRedisNotifierPayloadAndReconnect(t *testing.T) {
	ctx := context.Background()
	client, prefix := testenv.Redis(t)
	channel := prefix + "realtime"
	spy := client.Subscribe(ctx, channel)
	defer spy.Close()
	if _, err := spy.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := NewRedisNotifier(ctx, RedisNotifierConfig{Client: client, Channel: channel})
	testenv.Must(t, err, "notifier A")
	defer a.Close()
	b, err := NewRedisNotifier(ctx, RedisNotifierConfig{Client: client, Channel: channel})
	testenv.Must(t, err, "notifier B")
	defer b.Close()
	gotA, gotB := make(chan string, 8), make(chan string, 8)
	defer a.Listen(func(c string) { gotA <- c })()
	defer b.Listen(func(c string) { gotB <- c })()
	hear := func(name string, ch chan string, want string) {
		t.Helper()
		select {
		case c := <-ch:
			if c != want {
				t.Fatalf("%s heard %q, want %q", name, c, want)
			}
		case <-time.After(guard):
			t.Fatalf("%s heard nothing, want %q", name, want)
		}
	}

	testenv.Must(t, a.Publish(ctx, "convo-1"), "publish")
	hear("A", gotA, "convo-1")
	hear("B", gotB, "convo-1")
	msg, err := spy.ReceiveMessage(ctx)
	testenv.Must(t, err, "spy")
	if node, convo, _ := strings.Cut(msg.Payload, ":"); convo != "convo-1" || len(node) != 16 {
		t.Errorf("payload %q, want <16 hex node id>:convo-1 and nothing else", msg.Payload)
	}
	// A round trip through B proves A's own announcement has come back by
	// now; A must not have heard it twice.
	testenv.Must(t, b.Publish(ctx, "convo-2"), "publish")
	hear("A", gotA, "convo-2")
	hear("B", gotB, "convo-2")

	// Drop every pub/sub connection: the notifiers resubscribe and wake
	// everything, since announcements may have been lost meanwhile.
	testenv.Must(t, client.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(), "CLIENT KILL")
	hear("A", gotA, "")
	hear("B", gotB, "")
	testenv.Must(t, a.Publish(ctx, "convo-3"), "publish")
	hear("A", gotA, "convo-3")
	hear("B", gotB, "convo-3")
}

// TestNotifiersWakeTheirOwnNodeInPublish checks that the fan-out on the
// node that committed a message does not wait for a round trip through
// PostgreSQL or Redis: every notifier has called this node's listeners
// by the time Publish returns (the other nodes hear it through the
// shared channel).
func TestNotifiersWakeTheirOwnNodeInPublish(t *testing.T) {
	ctx := context.Background()
	client, prefix := testenv.Redis(t)
	redisN, err := NewRedisNotifier(ctx, RedisNotifierConfig{Client: client, Channel: prefix + "realtime"})
	testenv.Must(t, err, "redis notifier")
	defer redisN.Close()
	pgN, err := NewPGNotifier(ctx, PGNotifierConfig{URL: testenv.Postgres(t)})
	testenv.Must(t, err, "postgres notifier")
	defer pgN.Close()
	for name, n := range map[string]Notifier{"local": NewLocalNotifier(), "redis": redisN, "postgres": pgN} {
		heard := make(chan string, 1)
		stop := n.Listen(func(c string) {
			if c == "" {
				return // a reconnect's "re-read everything", not the publish
			}
			select {
			case heard <- c:
			default:
			}
		})
		testenv.Must(t, n.Publish(ctx, "convo-1"), name+" publish")
		select {
		case c := <-heard:
			if c != "convo-1" {
				t.Errorf("%s: heard %q", name, c)
			}
		default:
			t.Errorf("%s: Publish returned before this node's listener was called", name)
		}
		stop()
	}
}
