package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

const day = 24 * time.Hour

func testPurgeMessages(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a")
	e.send("c", 0, "old")
	_, err := e.s.AppendCommit(e.ctx, "c", store.NewCommit{Epoch: 0, Data: padded("commit"), PaddedSize: 512})
	must(t, err, "commit")
	e.clock.Advance(20 * day)
	e.send("c", 1, "recent")
	_, err = e.s.AppendMessage(e.ctx, store.NewMessage{ConvoID: "c", MsgID: "short", Epoch: 1, Ciphertext: padded("s"),
		PaddedSize: 512, ExpiresAt: e.clock.Now().Add(day)})
	must(t, err, "expiring message")
	e.clock.Advance(11 * day)
	n, err := e.s.PurgeMessages(e.ctx, 30*day)
	must(t, err, "purge")
	if n != 3 {
		t.Errorf("purged %d, want 3 (old, commit, expired short)", n)
	}
	msgs := e.allMessages("c")
	if len(msgs) != 1 || msgs[0].MsgID != "recent" {
		t.Errorf("left = %+v", msgs)
	}
	if cs, err := e.s.Commits(e.ctx, "c", 0, -1); err != nil || len(cs) != 0 {
		t.Errorf("commit rows outlived their message: %+v %v", cs, err)
	}
	// Purging leaves the counter alone: seq is never reused.
	if m := e.send("c", 1, "next"); m.Seq != 5 {
		t.Errorf("seq after purge = %d, want 5", m.Seq)
	}
	if p, _ := e.s.Messages(e.ctx, "c", 0, 10); p.ConvoLastSeq != 5 {
		t.Errorf("ConvoLastSeq = %d", p.ConvoLastSeq)
	}
}

func testPurgeEvents(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a")
	for i := range 3 {
		e.send("c", 0, fmt.Sprintf("old%d", i))
	}
	e.clock.Advance(6 * day)
	e.send("c", 0, "new")
	e.clock.Advance(2 * day)
	before := e.allEvents("c")
	n, err := e.s.PurgeEvents(e.ctx, 7*day)
	must(t, err, "purge")
	if n != 4 {
		t.Errorf("purged %d, want 4 (creation + 3 old)", n)
	}
	after := e.allEvents("c")
	if len(after) != 1 || after[0].MessageID != "new" {
		t.Fatalf("left = %+v", after)
	}
	h, err := e.s.EventHorizon(e.ctx)
	must(t, err, "horizon")
	if h.Oldest != before[3].Cursor+1 || h.Latest != after[0].Cursor {
		t.Errorf("horizon = %+v, want oldest %d latest %d", h, before[3].Cursor+1, after[0].Cursor)
	}
	// The horizon survives an empty table, and cursors are never reused.
	e.clock.Advance(8 * day)
	_, err = e.s.PurgeEvents(e.ctx, 7*day)
	must(t, err, "purge all")
	h2, err := e.s.EventHorizon(e.ctx)
	must(t, err, "horizon")
	if h2.Oldest != after[0].Cursor+1 || h2.Latest != after[0].Cursor {
		t.Errorf("horizon after emptying = %+v", h2)
	}
	e.send("c", 0, "later")
	if evs := e.allEvents("c"); len(evs) != 1 || evs[0].Cursor <= after[0].Cursor {
		t.Errorf("cursor reused after purge: %+v", evs)
	}
}

func testPurgeWelcomes(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a")
	add := func(epoch int64, who string) {
		_, err := e.s.AddMembers(e.ctx, "c", []store.NewMember{member(who, "d1")},
			&store.NewCommit{Epoch: epoch, Data: padded(who), PaddedSize: 512,
				Welcome: &store.NewWelcome{Data: []byte("w-" + who), Recipients: []string{who + "#d1"}}})
		must(t, err, "add "+who)
	}
	add(0, "did:plc:consumed-old")
	add(1, "did:plc:consumed-new")
	add(2, "did:plc:pending")
	must(t, e.s.ConfirmWelcome(e.ctx, "c", []string{"did:plc:consumed-old#d1"}), "confirm old")
	e.clock.Advance(23 * time.Hour)
	must(t, e.s.ConfirmWelcome(e.ctx, "c", []string{"did:plc:consumed-new#d1"}), "confirm new")
	e.clock.Advance(2 * time.Hour)
	n, err := e.s.PurgeWelcomes(e.ctx, day, 30*day)
	must(t, err, "purge")
	if n != 1 {
		t.Errorf("purged %d, want 1", n)
	}
	if _, err := e.s.Welcome(e.ctx, "c", []string{"did:plc:pending#d1"}); err != nil {
		t.Errorf("pending welcome purged: %v", err)
	}
	// The consumed-new one is still confirmable (retry) until it ages out.
	if err := e.s.ConfirmWelcome(e.ctx, "c", []string{"did:plc:consumed-new#d1"}); err != nil {
		t.Errorf("young consumed welcome purged: %v", err)
	}
	if err := e.s.ConfirmWelcome(e.ctx, "c", []string{"did:plc:consumed-old#d1"}); !isErr(err, store.ErrNotFound) {
		t.Errorf("old consumed welcome kept: %v", err)
	}
	e.clock.Advance(30 * day)
	n, err = e.s.PurgeWelcomes(e.ctx, day, 30*day)
	must(t, err, "purge unconsumed")
	if n != 2 {
		t.Errorf("second purge removed %d, want 2", n)
	}
	if _, err := e.s.Welcome(e.ctx, "c", []string{"did:plc:pending#d1"}); !isErr(err, store.ErrNotFound) {
		t.Errorf("stale unconsumed welcome kept: %v", err)
	}
}

func testPurgeKeyPackages(t *testing.T, b Backend) {
	e := b.env(t)
	put := func(ref, dev string, lastResort bool, ttl time.Duration) {
		must(t, e.s.PutKeyPackage(e.ctx, e.keyPackage("did:plc:a", dev, ref, lastResort, ttl), 0), "put "+ref)
	}
	put("expiring", "d1", false, time.Hour)
	put("claimed", "d2", false, 90*day)
	if _, err := e.s.ClaimKeyPackages(e.ctx, []string{"did:plc:a"}, suite); err != nil {
		t.Fatal(err)
	}
	// "expiring" was claimed too (oldest on d1); publish more on d1.
	for i := range 5 {
		e.clock.Advance(time.Second)
		put(fmt.Sprintf("d1-%d", i), "d1", false, 90*day)
	}
	put("lr", "d1", true, 90*day)
	e.clock.Advance(8 * day)
	n, err := e.s.PurgeKeyPackages(e.ctx, 7*day, 3)
	must(t, err, "purge")
	// expiring + claimed (consumed > 7 d ago), then d1-0 and d1-1 over the cap of 3.
	if n != 4 {
		t.Errorf("purged %d, want 4", n)
	}
	refs, err := e.s.AvailableKeyPackageRefs(e.ctx, "did:plc:a", "d1")
	must(t, err, "refs")
	if fmt.Sprint(refs) != "[d1-2 d1-3 d1-4 lr]" {
		t.Errorf("left on d1 = %v, want the newest 3 and the last resort", refs)
	}
	if st, _ := e.s.KeyPackageStats(e.ctx, "did:plc:a", ""); st.Total != 4 {
		t.Errorf("stats after purge = %+v", st)
	}
}
