package storetest

import (
	"fmt"
	"slices"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// testEventsAfterCursor interleaves writes on three conversations and reads
// the event stream back by cursor, filtered to two of them.
func testEventsAfterCursor(t *testing.T, b Backend) {
	e := b.env(t)
	for _, c := range []string{"a", "b", "x"} {
		e.newConvo(c, "did:plc:u")
	}
	cursorOf := map[string]int64{}
	for i := range 5 {
		for _, c := range []string{"a", "x", "b"} {
			id := fmt.Sprintf("%s%d", c, i)
			cursorOf[id] = e.send(c, 0, id).Cursor
		}
	}
	ch, err := e.s.AppendCommit(e.ctx, "b", store.NewCommit{Epoch: 0, MsgID: "b-commit", Data: padded("c"), PaddedSize: 512})
	must(t, err, "commit")
	// A replayed sendMessage answers from the stored row: the Change
	// must report what the row holds.
	stored, err := e.s.Message(e.ctx, "b", "b-commit")
	must(t, err, "read commit")
	if !stored.IsCommit || stored.Seq != ch.Seq || !stored.ReceivedAt.Equal(ch.ReceivedAt) || ch.ReceivedAt.IsZero() {
		t.Fatalf("change %+v, stored commit seq %d at %v", ch, stored.Seq, stored.ReceivedAt)
	}
	all := e.allEvents("a", "b")
	// 2 creation events + 10 messages + 1 commit.
	if len(all) != 13 {
		t.Fatalf("%d events, want 13: %+v", len(all), all)
	}
	var kinds []store.EventKind
	for i, ev := range all {
		if ev.ConvoID == "x" {
			t.Fatalf("event of unrequested convo: %+v", ev)
		}
		if i > 0 && ev.Cursor <= all[i-1].Cursor {
			t.Fatalf("cursors not increasing: %d then %d", all[i-1].Cursor, ev.Cursor)
		}
		kinds = append(kinds, ev.Kind)
		if ev.Kind == store.EventMessage && cursorOf[ev.MessageID] != ev.Cursor {
			t.Errorf("AppendMessage reported cursor %d for %s, the stream has %d", cursorOf[ev.MessageID], ev.MessageID, ev.Cursor)
		}
	}
	last := all[len(all)-1]
	if last.Kind != store.EventCommit || last.MessageID != "b-commit" || last.Epoch != 1 {
		t.Errorf("commit event = %+v", last)
	}
	if m, err := e.s.Message(e.ctx, "b", last.MessageID); err != nil || !m.IsCommit {
		t.Errorf("commit event does not resolve to a commit message: %+v %v", m, err)
	}
	if all[2].Kind != store.EventMessage || all[2].MessageID != "a0" {
		t.Errorf("first message event = %+v", all[2])
	}
	if !slices.Contains(kinds, store.EventMembership) {
		t.Error("no membership event for conversation creation")
	}
	// Resuming after any cursor yields exactly the suffix.
	for _, i := range []int{0, 5, 12} {
		rest, err := e.s.EventsAfter(e.ctx, []string{"a", "b"}, all[i].Cursor, 100)
		must(t, err, "resume")
		if !slices.Equal(rest, all[i+1:]) {
			t.Errorf("after cursor %d: got %d events, want %d", all[i].Cursor, len(rest), len(all)-i-1)
		}
	}
	if page, _ := e.s.EventsAfter(e.ctx, []string{"a", "b"}, 0, 4); len(page) != 4 || page[3] != all[3] {
		t.Errorf("limited page = %+v", page)
	}
	// Replaying resolves message events in one query per conversation.
	var ids []string
	for _, ev := range all {
		if ev.ConvoID == "b" && ev.MessageID != "" {
			ids = append(ids, ev.MessageID)
		}
	}
	msgs, err := e.s.MessagesByID(e.ctx, "b", append(ids, "purged-or-unknown"))
	must(t, err, "messages by id")
	if len(msgs) != 6 || msgs[0].MsgID != "b0" || !msgs[5].IsCommit {
		t.Errorf("messages by id = %d messages", len(msgs))
	}
	for i := 1; i < len(msgs); i++ {
		if msgs[i].Seq <= msgs[i-1].Seq {
			t.Errorf("messages by id out of seq order")
		}
	}
	if none, err := e.s.EventsAfter(e.ctx, nil, 0, 10); err != nil || len(none) != 0 {
		t.Errorf("no convos: %v %v", none, err)
	}
	h, err := e.s.EventHorizon(e.ctx)
	must(t, err, "horizon")
	if h.Oldest != 1 || h.Latest < last.Cursor {
		t.Errorf("horizon = %+v, want oldest 1, latest >= %d", h, last.Cursor)
	}
}
