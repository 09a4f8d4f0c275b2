package realtime

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const (
	alice = "did:plc:alice"
	bob   = "did:plc:bob"
	carol = "did:plc:carol"
)

// start is the cursor of the beginning of the event stream.
var start = (&position{}).encode()

// TestResumeBoundary resumes an all-conversations stream from the middle
// while two writers keep appending to two conversations: every event after
// the cursor arrives exactly once, in order within its conversation.
func TestResumeBoundary(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, Config{})
			e.convo("c1", alice, bob)
			e.convo("c2", alice, carol)
			for i := 1; i <= 10; i++ {
				e.send("c1", fmt.Sprintf("a%03d", i))
				e.send("c2", fmt.Sprintf("b%03d", i))
			}
			first := e.subscribe(Request{Identity: who(alice), Cursor: start})
			got, cursor := messages(t, first, 10)
			first.Close()

			var wg sync.WaitGroup
			for _, w := range []struct{ convo, prefix string }{{"c1", "a"}, {"c2", "b"}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 11; i <= 40; i++ {
						e.send(w.convo, fmt.Sprintf("%s%03d", w.prefix, i))
					}
				}()
			}
			second := e.subscribe(Request{Identity: who(alice), Cursor: cursor})
			rest, _ := messages(t, second, 70)
			wg.Wait()
			got = append(got, rest...)

			var c1, c2 []string
			for _, g := range got {
				if g[:3] == "c1/" {
					c1 = append(c1, g[3:])
				} else {
					c2 = append(c2, g[3:])
				}
			}
			if want := msgIDs("a", 1, 40); !slices.Equal(c1, want) {
				t.Errorf("c1 got %v\nwant %v", c1, want)
			}
			if want := msgIDs("b", 1, 40); !slices.Equal(c2, want) {
				t.Errorf("c2 got %v\nwant %v", c2, want)
			}
			select {
			case ev := <-second.Events():
				t.Errorf("extra event %+v", ev)
			default:
			}
		})
	}
}

// TestLiveFromPresent checks that a stream without a cursor carries what is
// written once it is live, and a commit arrives as a message.
func TestLiveFromPresent(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, Config{})
			e.convo("c1", alice, bob)
			e.send("c1", "old")
			s := e.subscribe(Request{Identity: who(bob), ConvoID: "c1"})
			<-s.Live()
			e.send("c1", "new")
			_, err := e.st.AppendCommit(context.Background(), "c1", store.NewCommit{Epoch: 0, Data: []byte("commit"), PaddedSize: 512})
			testenv.Must(t, err, "commit")
			e.hub.Notify("c1")
			ev := next(t, s)
			if b.settle > 0 && ev.Message.MsgID == "old" {
				// Starting at a settled point may replay the recent past.
				ev = next(t, s)
			}
			if ev.Message.MsgID != "new" || string(ev.Message.Ciphertext) != "ct-new" || ev.Message.Seq != 2 {
				t.Errorf("first live event %+v", ev.Message)
			}
			ev = next(t, s)
			if !ev.Message.IsCommit {
				t.Errorf("second live event %+v, want the commit", ev.Message)
			}
		})
	}
}

// TestFanOut sends to a conversation followed by many subscribers.
func TestFanOut(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			const n = 50
			e := newEnv(t, b, Config{MaxPerDID: n})
			e.convo("c1", alice, bob)
			var subs []*Subscription
			for i := 0; i < n; i++ {
				s := e.subscribe(Request{Identity: who(bob), ConvoID: "c1", Cursor: start})
				subs = append(subs, s)
			}
			for _, s := range subs {
				<-s.Live()
			}
			for i := 1; i <= 10; i++ {
				e.send("c1", fmt.Sprintf("m%03d", i))
			}
			want := msgIDs("c1/m", 1, 10)
			for i, s := range subs {
				if got, _ := messages(t, s, 10); !slices.Equal(got, want) {
					t.Fatalf("subscriber %d got %v", i, got)
				}
			}
			if e.hub.Open() != n {
				t.Errorf("open %d, want %d", e.hub.Open(), n)
			}
		})
	}
}

// TestSlowConsumer overflows a small buffer: the stream ends with
// ErrSlowConsumer, and resuming from the last cursor read loses nothing.
func TestSlowConsumer(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			obs := &countObserver{}
			e := newEnv(t, b, Config{BufferSize: 2, SlowAfter: time.Millisecond, Observer: obs})
			e.convo("c1", alice, bob)
			e.send("c1", "m001")
			s := e.subscribe(Request{Identity: who(bob), ConvoID: "c1", Cursor: start})
			<-s.Live()
			for i := 2; i <= 6; i++ {
				e.send("c1", fmt.Sprintf("m%03d", i))
			}
			if err := ended(t, s); !is(err, ErrSlowConsumer) {
				t.Fatalf("ended with %v, want ErrSlowConsumer", err)
			}
			var got []string
			var cursor string
			for ev := range s.Events() {
				got = append(got, ev.Message.MsgID)
				cursor = ev.Cursor
			}
			if len(got) != 2 || got[0] != "m001" {
				t.Fatalf("buffered %v, want the first two", got)
			}
			if obs.get("slow") != 1 {
				t.Errorf("slow-consumer drops %d, want 1", obs.get("slow"))
			}
			r := e.subscribe(Request{Identity: who(bob), ConvoID: "c1", Cursor: cursor})
			rest, _ := messages(t, r, 4)
			if want := msgIDs("c1/m", 3, 6); !slices.Equal(rest, want) {
				t.Errorf("resumed %v, want %v", rest, want)
			}
		})
	}
}

// TestBurstWithinBuffer sends more at once than the buffer holds to a
// client that keeps reading: it is not a slow consumer.
func TestBurstWithinBuffer(t *testing.T) {
	e := newEnv(t, backends()[0], Config{BufferSize: 2})
	e.convo("c1", alice, bob)
	s := e.subscribe(Request{Identity: who(bob), ConvoID: "c1"})
	<-s.Live()
	for i := 1; i <= 30; i++ {
		e.send("c1", fmt.Sprintf("m%03d", i))
	}
	got, last := messages(t, s, 30)
	if want := msgIDs("c1/m", 1, 30); !slices.Equal(got, want) {
		t.Errorf("got %v", got)
	}
	if p, err := decodeCursor(last); err != nil || len(p.Keys) != 0 || p.Floor == 0 {
		t.Errorf("a single-conversation cursor should be a bare floor: %+v %v", p, err)
	}
}

// TestMembershipRemoval removes a member: a single-conversation stream
// says so and ends; an all-conversations stream stops carrying that
// conversation and keeps the others.
func TestMembershipRemoval(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b, Config{})
			e.convo("c1", alice, bob)
			e.convo("c2", carol, bob)
			one := e.subscribe(Request{Identity: who(bob), ConvoID: "c1", Cursor: start})
			all := e.subscribe(Request{Identity: who(bob), Cursor: start})
			<-one.Live()
			<-all.Live()
			e.send("c1", "before")
			e.remove("c1", bob)
			e.send("c1", "after")
			e.send("c2", "other")

			if got, _ := messages(t, one, 1); got[0] != "c1/before" {
				t.Fatalf("single stream got %v", got)
			}
			if ev := next(t, one); ev.Type != EventRemoved || ev.ConvoID != "c1" || ev.DID != bob {
				t.Fatalf("single stream: %+v, want removal", ev)
			}
			if err := ended(t, one); !is(err, ErrRemoved) {
				t.Fatalf("single stream ended with %v", err)
			}
			if _, ok := <-one.Events(); ok {
				t.Fatal("single stream carried an event after the removal")
			}

			var seen []string
			for len(seen) < 3 {
				ev := next(t, all)
				switch ev.Type {
				case EventMessage:
					seen = append(seen, ev.ConvoID+"/"+ev.Message.MsgID)
				case EventRemoved:
					seen = append(seen, "removed:"+ev.ConvoID)
				}
			}
			// c2 events may interleave anywhere; c1's must stop at the removal.
			i := slices.Index(seen, "removed:c1")
			if i < 0 || slices.Index(seen, "c1/before") > i || slices.Contains(seen, "c1/after") || !slices.Contains(seen, "c2/other") {
				t.Fatalf("all stream saw %v", seen)
			}
			e.send("c2", "still")
			if got, _ := messages(t, all, 1); got[0] != "c2/still" {
				t.Errorf("all stream then got %v", got)
			}
		})
	}
}

// TestJoinWhileSubscribed adds the subscriber to conversations while its
// all-conversations stream is open: the stream picks them up from the
// join on, and keeps its other conversations.
func TestJoinWhileSubscribed(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			// Advancing floors often puts the floor above a join's cursor.
			e := newEnv(t, b, Config{AdvanceEvery: time.Millisecond, SampleEvery: time.Millisecond})
			e.convo("c1", alice, carol)
			e.convo("c2", alice, bob)
			e.send("c2", "before-join")
			s := e.subscribe(Request{Identity: who(carol)})
			<-s.Live()
			e.convo("c3", alice, carol) // created with carol in it
			e.send("c3", "x1")
			_, err := e.st.AddMembers(context.Background(), "c2", []store.NewMember{{MemberDID: carol, UserDID: carol}}, nil)
			testenv.Must(t, err, "add carol")
			e.hub.Notify("c2")
			e.send("c2", "y1")
			e.send("c1", "z1")
			// When wake-ups coalesce, the join is found at the first
			// membership event the node had not scanned (c2's creation),
			// so c2's earlier message may come too: a member may read it
			// with getMessages anyway.
			var got []string
			for len(got) < 3 {
				m, _ := messages(t, s, 1)
				if m[0] != "c2/before-join" {
					got = append(got, m[0])
				}
			}
			slices.Sort(got)
			if want := []string{"c1/z1", "c2/y1", "c3/x1"}; !slices.Equal(got, want) {
				t.Errorf("got %v, want %v", got, want)
			}
			select {
			case ev := <-s.Events():
				t.Errorf("extra event %+v", ev)
			default:
			}
		})
	}
}

// TestCaps refuses subscriptions over the per-DID and global caps.
func TestCaps(t *testing.T) {
	b := backends()[0]
	obs := &countObserver{}
	e := newEnv(t, b, Config{MaxPerDID: 2, MaxConnections: 3, Observer: obs})
	e.convo("c1", alice, bob, carol)
	ctx := context.Background()
	a1 := e.subscribe(Request{Identity: who(alice)})
	e.subscribe(Request{Identity: who(alice)})
	if _, err := e.hub.Subscribe(ctx, Request{Identity: who(alice)}); !is(err, ErrTooManyConnections) {
		t.Fatalf("third for one DID: %v", err)
	}
	e.subscribe(Request{Identity: who(bob)})
	if _, err := e.hub.Subscribe(ctx, Request{Identity: who(carol)}); !is(err, ErrTooManyConnections) {
		t.Fatalf("over the global cap: %v", err)
	}
	a1.Close()
	e.subscribe(Request{Identity: who(carol)})
	if obs.get("refused") != 2 {
		t.Errorf("refused %d, want 2", obs.get("refused"))
	}
}

// TestSetLimits changes the caps of a running hub: open subscriptions
// stay, new ones follow the new caps, and zero restores the defaults.
func TestSetLimits(t *testing.T) {
	b := backends()[0]
	e := newEnv(t, b, Config{})
	e.convo("c1", alice, bob)
	ctx := context.Background()
	a1 := e.subscribe(Request{Identity: who(alice)})
	e.subscribe(Request{Identity: who(alice)})
	e.hub.SetLimits(1, 0)
	if _, err := e.hub.Subscribe(ctx, Request{Identity: who(alice)}); !is(err, ErrTooManyConnections) {
		t.Fatalf("over a lowered per-DID cap: %v", err)
	}
	if a1.Err() != nil {
		t.Fatalf("lowering the cap closed an open subscription: %v", a1.Err())
	}
	e.subscribe(Request{Identity: who(bob)})
	e.hub.SetLimits(0, 3)
	if _, err := e.hub.Subscribe(ctx, Request{Identity: who(bob)}); !is(err, ErrTooManyConnections) {
		t.Fatalf("over a lowered global cap: %v", err)
	}
	e.hub.SetLimits(0, 0)
	for range DefaultMaxPerDID - 2 {
		e.subscribe(Request{Identity: who(alice)})
	}
	if _, err := e.hub.Subscribe(ctx, Request{Identity: who(alice)}); !is(err, ErrTooManyConnections) {
		t.Fatalf("over the default per-DID cap of %d: %v", DefaultMaxPerDID, err)
	}
}

// TestAuthorization refuses a conversation the caller is not in, and a
// malformed cursor.
func TestAuthorization(t *testing.T) {
	b := backends()[0]
	e := newEnv(t, b, Config{})
	e.convo("c1", alice, bob)
	ctx := context.Background()
	if _, err := e.hub.Subscribe(ctx, Request{Identity: who(carol), ConvoID: "c1"}); !is(err, store.ErrNotMember) {
		t.Errorf("non-member: %v", err)
	}
	if _, err := e.hub.Subscribe(ctx, Request{Identity: who(carol), ConvoID: "nope"}); !is(err, store.ErrNotFound) {
		t.Errorf("unknown convo: %v", err)
	}
	if _, err := e.hub.Subscribe(ctx, Request{Identity: who(alice), Cursor: "!!"}); !is(err, ErrInvalidCursor) {
		t.Errorf("bad cursor: %v", err)
	}
	dev := caller.Identity{DID: alice, DeviceID: "phone"}
	if _, err := e.hub.Subscribe(ctx, Request{Identity: dev, ConvoID: "c1"}); err != nil {
		t.Errorf("device of a device-less member: %v", err)
	}
}

// TestCursorExpired resumes from before the retained event stream.
func TestCursorExpired(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			e := newEnv(t, b, Config{Now: clk.Now, Store: b.open(t, clk.Now)})
			e.convo("c1", alice, bob)
			e.send("c1", "m001")
			clk.Advance(10 * 24 * time.Hour)
			e.send("c1", "m002")
			if _, err := e.st.PurgeEvents(context.Background(), 7*24*time.Hour); err != nil {
				t.Fatal(err)
			}
			s := e.subscribe(Request{Identity: who(bob), ConvoID: "c1", Cursor: start})
			ev := next(t, s)
			if ev.Type != EventInfo || ev.Info != InfoCursorExpired || ev.Cursor == "" {
				t.Fatalf("first event %+v, want cursor-expired", ev)
			}
			<-s.Live()
			e.send("c1", "m003")
			if got, _ := messages(t, s, 1); got[0] != "c1/m003" {
				t.Errorf("then %v", got)
			}
		})
	}
}

// TestHubClose ends open subscriptions.
func TestHubClose(t *testing.T) {
	e := newEnv(t, backends()[0], Config{})
	s := e.subscribe(Request{Identity: who(alice)})
	e.hub.Close()
	if err := ended(t, s); !is(err, ErrHubClosed) {
		t.Errorf("ended with %v", err)
	}
	if _, err := e.hub.Subscribe(context.Background(), Request{Identity: who(alice)}); !is(err, ErrHubClosed) {
		t.Errorf("subscribe after close: %v", err)
	}
}

type countObserver struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *countObserver) add(k string, n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = make(map[string]int)
	}
	o.n[k] += n
}
func (o *countObserver) get(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[k]
}
func (o *countObserver) ConnOpened(tr string)             { o.add("open:"+tr, 1) }
func (o *countObserver) ConnClosed(tr string)             { o.add("open:"+tr, -1) }
func (o *countObserver) EventsDelivered(tr string, n int) { o.add("events:"+tr, n) }
func (o *countObserver) SlowConsumerDropped(string)       { o.add("slow", 1) }
func (o *countObserver) Replayed(tr string, n int)        { o.add("replayed:"+tr, n) }
func (o *countObserver) Refused(string)                   { o.add("refused", 1) }

// TestWakeAll: a notifier that lost announcements calls listeners with
// the empty id, and every subscription re-reads its conversations.
func TestWakeAll(t *testing.T) {
	n := NewLocalNotifier()
	e := newEnv(t, backends()[0], Config{Notifier: n})
	e.convo("c1", alice, bob)
	s := e.subscribe(Request{Identity: who(bob)})
	<-s.Live()
	_, err := e.st.AppendMessage(context.Background(), store.NewMessage{ConvoID: "c1", MsgID: "unannounced", Ciphertext: []byte("x"), PaddedSize: 512})
	testenv.Must(t, err, "append")
	testenv.Must(t, n.Publish(context.Background(), ""), "wake all")
	if got, _ := messages(t, s, 1); got[0] != "c1/unannounced" {
		t.Errorf("got %v", got)
	}
}

// TestObserverCounts checks the metrics hooks over a real SSE stream.
func TestObserverCounts(t *testing.T) {
	obs := &countObserver{}
	e := newEnv(t, backends()[0], Config{Observer: obs})
	ts := e.serve(ServerConfig{})
	e.convo("c1", alice, bob)
	e.send("c1", "m001")
	e.send("c1", "m002")
	resp, s := openSSE(t, ts, bob, "cursor="+start, nil)
	s.messageIDs(t, 2)
	e.send("c1", "m003")
	s.messageIDs(t, 1)
	if obs.get("open:sse") != 1 || obs.get("replayed:sse") != 2 || obs.get("events:sse") != 3 {
		t.Errorf("counts %v", obs.n)
	}
	resp.Body.Close()
	for obs.get("open:sse") != 0 {
		time.Sleep(time.Millisecond) // polls for the close; asserts no timing
	}
}

// TestFreshStreamAfterIdle opens streams without a cursor after a quiet spell
// longer than every window of the hub (Settle, SampleEvery, AdvanceEvery),
// with earlier streams having come and gone, on two nodes sharing the store:
// each starts at the present, so an event posted before it opened is not
// delivered. Only a cursor replays it.
func TestFreshStreamAfterIdle(t *testing.T) {
	const settle, tick = 200 * time.Millisecond, 20 * time.Millisecond
	// Longer than Settle plus the staleness bound plus an advance period,
	// with room to spare: the bug replayed from a sample of any age.
	const idle = 3 * (settle + 3*tick)
	for _, b := range backends() {
		for _, scope := range []string{"one", "all"} {
			t.Run(b.name+"/"+scope, func(t *testing.T) {
				cfg := Config{SampleEvery: tick, AdvanceEvery: tick}
				if b.settle > 0 {
					cfg.Settle = settle
				}
				n1 := newEnv(t, b, cfg)
				cfg.Store = n1.st
				n2 := newEnv(t, b, cfg)
				n1.convo("c1", alice, bob)
				n2.hub.Notify("c1")
				req := Request{Identity: who(bob)}
				if scope == "one" {
					req.ConvoID = "c1"
				}

				// Earlier streams on both nodes, then silence. A fresh stream
				// starts at a settled point, so once the node's hub is older
				// than Settle (a slow machine) it may first replay the
				// earlier warm-up: read up to this node's own and keep its
				// cursor.
				var cursor string
				for i, n := range []*env{n1, n2} {
					s := n.subscribe(req)
					<-s.Live()
					warm := fmt.Sprintf("warm-%d", i)
					n.send("c1", warm)
					for got := ""; got != "c1/"+warm; {
						var ids []string
						ids, cursor = messages(t, s, 1)
						got = ids[0]
						if got != "c1/"+warm && (i == 0 || got != "c1/warm-0") {
							t.Fatalf("warm-up stream on node %d delivered %s, want c1/%s", i+1, got, warm)
						}
					}
					s.Close()
				}
				n1.send("c1", "before")
				time.Sleep(idle)

				fresh := []*Subscription{n1.subscribe(req), n2.subscribe(req)}
				for _, s := range fresh {
					<-s.Live()
				}
				n1.send("c1", "after")
				n2.hub.Notify("c1")
				for i, s := range fresh {
					if got, _ := messages(t, s, 1); got[0] != "c1/after" {
						t.Errorf("node %d: a fresh stream's first event is %s, want c1/after", i+1, got[0])
					}
				}

				resumed := n2.subscribe(Request{Identity: who(bob), ConvoID: req.ConvoID, Cursor: cursor})
				if got, _ := messages(t, resumed, 2); !slices.Equal(got, []string{"c1/before", "c1/after"}) {
					t.Errorf("resumed from a cursor: %v, want the event before and after", got)
				}
			})
		}
	}
}
