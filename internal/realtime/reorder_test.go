package realtime

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// lateStore hides chosen event cursors from reads, as PostgreSQL does for
// an event whose transaction drew its cursor but has not committed yet.
// ordered is the OrderedCursors its traits claim.
type lateStore struct {
	store.Store
	ordered bool
	mu      sync.Mutex
	hidden  map[int64]bool
}

func (l *lateStore) Traits() store.Traits {
	tr := l.Store.Traits()
	tr.OrderedCursors = l.ordered
	return tr
}

func (l *lateStore) hide(c int64) { l.mu.Lock(); l.hidden[c] = true; l.mu.Unlock() }
func (l *lateStore) show(c int64) { l.mu.Lock(); delete(l.hidden, c); l.mu.Unlock() }

func (l *lateStore) EventsAfter(ctx context.Context, convoIDs []string, after int64, limit int) ([]store.Event, error) {
	evs, err := l.Store.EventsAfter(ctx, convoIDs, after, limit)
	l.mu.Lock()
	defer l.mu.Unlock()
	out := evs[:0]
	for _, ev := range evs {
		if l.hidden[ev.Cursor] {
			// Rows after a hidden one in the same conversation cannot be
			// visible either (one conversation commits in order).
			break
		}
		out = append(out, ev)
	}
	return out, err
}

// TestLateCommitAcrossConversations: an event of c2 with a lower cursor
// becomes visible after an event of c1 was delivered. The live stream
// still delivers it, and so does a stream resumed from the cursor handed
// out with c1's event — as long as the late commit lands within Settle.
func TestLateCommitAcrossConversations(t *testing.T) {
	t.Run("within settle", func(t *testing.T) { testLateCommit(t, 30*time.Second) })
	// A store whose traits wrongly claim ordered cursors: the live stream
	// still delivers the late event; only resume cursors may not.
	t.Run("settle zero", func(t *testing.T) { testLateCommit(t, 0) })
}

func testLateCommit(t *testing.T, settle time.Duration) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := backends()[0]
	ls := &lateStore{Store: b.open(t, clk.Now), ordered: settle == 0, hidden: make(map[int64]bool)}
	e := newEnv(t, b, Config{Store: ls, Now: clk.Now, Settle: settle, SampleEvery: time.Nanosecond, AdvanceEvery: time.Millisecond})
	e.convo("c1", alice, carol)
	e.convo("c2", bob, carol)
	live := e.subscribe(Request{Identity: who(carol), Cursor: start})
	<-live.Live()

	ctx := context.Background()
	late, err := ls.AppendMessage(ctx, store.NewMessage{ConvoID: "c2", MsgID: "late", Ciphertext: []byte("x"), PaddedSize: 512})
	testenv.Must(t, err, "append late")
	ls.hide(late.Cursor)
	e.send("c1", "early")
	_, cursor := messages(t, live, 1)

	// Time passes, but less than Settle: floors may not pass the late one.
	clk.Advance(10 * time.Second)
	e.send("c1", "early2")
	_, cursor2 := messages(t, live, 1)

	ls.show(late.Cursor)
	e.hub.Notify("c2")
	if got, _ := messages(t, live, 1); got[0] != "c2/late" {
		t.Fatalf("live stream got %v, want the late event", got)
	}
	if settle == 0 {
		return
	}
	for _, c := range []struct {
		cursor string
		want   []string
	}{
		{cursor, []string{"c1/early2", "c2/late"}},
		{cursor2, []string{"c2/late"}},
	} {
		resumed := e.subscribe(Request{Identity: who(carol), Cursor: c.cursor})
		<-resumed.Live()
		if n := len(resumed.Events()); n != len(c.want) {
			t.Errorf("resumed from %q: %d events replayed, want %d", c.cursor, n, len(c.want))
		}
		got, _ := messages(t, resumed, len(c.want))
		slices.Sort(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("resumed from %q: %v, want %v", c.cursor, got, c.want)
		}
		resumed.Close()
	}
}
