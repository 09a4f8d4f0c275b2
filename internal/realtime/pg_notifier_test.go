package realtime

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// TestPGNotifierAcrossNodes runs two hubs, each with its own store pool
// and notifier, on one PostgreSQL database, as two gateway nodes would: a
// subscriber on node B receives, in order, what is written through node A.
func TestPGNotifierAcrossNodes(t *testing.T) {
	url := testenv.Postgres(t)
	testAcrossNodes(t, url, func() Notifier {
		n, err := NewPGNotifier(context.Background(), PGNotifierConfig{URL: url})
		testenv.Must(t, err, "notifier")
		t.Cleanup(func() { n.Close() })
		return n
	})
}

// testAcrossNodes runs two hubs on the PostgreSQL database at url, each
// with its own store pool and a notifier from newNotifier: a subscriber on
// node B receives, in order, what is written through node A.
func testAcrossNodes(t *testing.T, url string, newNotifier func() Notifier) {
	ctx := context.Background()
	node := func() *env {
		st, err := postgres.Open(ctx, postgres.Config{URL: url})
		testenv.Must(t, err, "open store")
		t.Cleanup(func() { st.Close() })
		return newEnv(t, backend{settle: 2 * time.Second}, Config{Store: st, Notifier: newNotifier()})
	}
	a, b := node(), node()
	a.convo("c1", alice, bob)

	onA := a.subscribe(Request{Identity: who(alice), ConvoID: "c1"})
	onB := b.subscribe(Request{Identity: who(bob), ConvoID: "c1"})
	<-onA.Live()
	<-onB.Live()
	for i := 1; i <= 20; i++ {
		a.send("c1", fmt.Sprintf("m%03d", i))
	}
	want := msgIDs("c1/m", 1, 20)
	if got, _ := messages(t, onB, 20); !slices.Equal(got, want) {
		t.Errorf("node B got %v", got)
	}
	if got, _ := messages(t, onA, 20); !slices.Equal(got, want) {
		t.Errorf("node A got %v", got)
	}
}

// TestPGNotifierPayload checks what crosses the wire and that a node
// hears its own announcements once.
func TestPGNotifierPayload(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	a, err := NewPGNotifier(ctx, PGNotifierConfig{URL: url})
	testenv.Must(t, err, "notifier A")
	defer a.Close()
	b, err := NewPGNotifier(ctx, PGNotifierConfig{URL: url})
	testenv.Must(t, err, "notifier B")
	defer b.Close()
	gotA, gotB := make(chan string, 8), make(chan string, 8)
	defer a.Listen(func(c string) { gotA <- c })()
	defer b.Listen(func(c string) { gotB <- c })()

	testenv.Must(t, a.Publish(ctx, "convo-1"), "publish")
	for name, ch := range map[string]chan string{"A": gotA, "B": gotB} {
		select {
		case c := <-ch:
			if c != "convo-1" {
				t.Errorf("%s heard %q", name, c)
			}
		case <-time.After(guard):
			t.Fatalf("%s heard nothing", name)
		}
	}
	// A round trip through B proves A's own notification has come back
	// by now; A must not have heard it twice.
	testenv.Must(t, b.Publish(ctx, "convo-2"), "publish")
	select {
	case c := <-gotA:
		if c != "convo-2" {
			t.Errorf("A heard %q, want only convo-2 next", c)
		}
	case <-time.After(guard):
		t.Fatal("A heard nothing from B")
	}
}
