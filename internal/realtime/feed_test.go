package realtime

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// countingStore counts the message reads the hub makes.
type countingStore struct {
	store.Store
	messageReads atomic.Int64
}

func (c *countingStore) MessagesByID(ctx context.Context, convoID string, ids []string) ([]store.Message, error) {
	c.messageReads.Add(1)
	return c.Store.MessagesByID(ctx, convoID, ids)
}

// TestFanOutReadsTheStoreOncePerWakeUp follows one conversation with many
// streams: each message reaches every stream, in order, while the store is
// read about once per message, not once per stream. A feed of two events
// also exercises trimming, and a stream resuming from before the feed's
// range reads the store itself and misses nothing.
func TestFanOutReadsTheStoreOncePerWakeUp(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			st := &countingStore{Store: b.open(t, nil)}
			e := newEnv(t, b, Config{Store: st, FeedSize: 2})
			const streams, messages = 40, 6
			dids := make([]string, streams)
			for i := range dids {
				dids[i] = fmt.Sprintf("did:plc:member%02d", i)
			}
			e.convo("c", dids...)
			subs := make([]*Subscription, streams)
			for i, d := range dids {
				subs[i] = e.subscribe(Request{Identity: who(d), ConvoID: "c"})
				<-subs[i].Live()
			}
			start := subs[0].Cursor()
			before := st.messageReads.Load()
			for m := range messages {
				id := fmt.Sprintf("m%d", m)
				e.send("c", id)
				for i, s := range subs {
					if ev := next(t, s); ev.Type != EventMessage || ev.Message.MsgID != id {
						t.Fatalf("stream %d: got %+v, want message %s", i, ev, id)
					}
				}
			}
			// Each wake-up is one feed read; a read that started just before
			// a later wake-up can make one more. Per stream it would be 240.
			if reads := st.messageReads.Load() - before; reads > 2*messages {
				t.Errorf("%d message reads for %d messages to %d streams, want at most %d", reads, messages, streams, 2*messages)
			}

			late := e.subscribe(Request{Identity: who(dids[0]), ConvoID: "c", Cursor: start})
			for m := range messages {
				if ev := next(t, late); ev.Type != EventMessage || ev.Message.MsgID != fmt.Sprintf("m%d", m) {
					t.Fatalf("resumed stream: got %+v, want message m%d", ev, m)
				}
			}
		})
	}
}
