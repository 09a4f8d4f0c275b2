package storetest

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

func testCreateConvo(t *testing.T, b Backend) {
	e := b.env(t)
	e.publish("did:plc:bob", "d1", 1, "kp")
	c, err := e.s.CreateConvo(e.ctx, store.NewConvo{
		ID: "g1", CreatorDID: "did:plc:alice", CipherSuite: suite, Name: "n", Description: "d", Epoch: 1,
		Members: []store.NewMember{
			{MemberDID: "did:plc:alice#d1", UserDID: "did:plc:alice", DeviceID: "d1", Role: store.RoleAdmin},
			{MemberDID: "did:plc:bob#d1", UserDID: "did:plc:bob", DeviceID: "d1", KeyPackageRef: "kp-did:plc:bob-d1-000"},
		},
		Welcome:   &store.NewWelcome{Data: []byte("welcome"), Recipients: []string{"did:plc:bob#d1"}},
		GroupInfo: []byte("gi1"),
	})
	must(t, err, "create")
	if want := store.Bucket(Epoch0); !c.CreatedAt.Equal(want) || !c.LastActivityAt.Equal(want) {
		t.Errorf("times = %v/%v, want bucketed %v", c.CreatedAt, c.LastActivityAt, want)
	}
	got, err := e.s.Convo(e.ctx, "g1")
	must(t, err, "read")
	if got.Epoch != 1 || got.LastSeq != 0 || got.Name != "n" || got.Description != "d" || got.CreatorDID != "did:plc:alice" || got.CipherSuite != suite {
		t.Errorf("convo = %+v", got)
	}
	ms, err := e.s.Members(e.ctx, []string{"g1"}, false)
	must(t, err, "members")
	if len(ms["g1"]) != 2 {
		t.Fatalf("members = %+v", ms)
	}
	admin, err := e.s.ActiveMember(e.ctx, "g1", "did:plc:alice#d1")
	must(t, err, "active member")
	if admin.Role != store.RoleAdmin || admin.UserDID != "did:plc:alice" || admin.DeviceID != "d1" {
		t.Errorf("admin = %+v", admin)
	}
	if _, err := e.s.ActiveMember(e.ctx, "g1", "did:plc:carol#d1"); !isErr(err, store.ErrNotMember) {
		t.Errorf("non-member: err = %v, want ErrNotMember", err)
	}
	if _, err := e.s.ActiveMember(e.ctx, "nope", "did:plc:alice#d1"); !isErr(err, store.ErrNotFound) {
		t.Errorf("unknown convo: err = %v, want ErrNotFound", err)
	}
	if _, err := e.s.Convo(e.ctx, "nope"); !isErr(err, store.ErrNotFound) {
		t.Errorf("unknown convo: err = %v, want ErrNotFound", err)
	}
	w, err := e.s.Welcome(e.ctx, "g1", []string{"did:plc:bob", "did:plc:bob#d1"})
	must(t, err, "welcome")
	if string(w.Data) != "welcome" || w.Epoch != 1 {
		t.Errorf("welcome = %+v", w)
	}
	gi, err := e.s.GroupInfo(e.ctx, "g1")
	must(t, err, "group info")
	if string(gi.Data) != "gi1" || gi.Epoch != 1 {
		t.Errorf("group info = %+v", gi)
	}
	// The named key package is consumed and recorded as used here.
	consumed, _, err := e.s.ConsumedKeyPackages(e.ctx, "did:plc:bob", "", 10)
	must(t, err, "consumed packages")
	if len(consumed) != 1 || consumed[0].UsedInConvo != "g1" {
		t.Errorf("consumed = %+v", consumed)
	}
	if _, err := e.s.CreateConvo(e.ctx, store.NewConvo{ID: "g1", CreatorDID: "did:plc:x", CipherSuite: suite}); !isErr(err, store.ErrConflict) {
		t.Errorf("duplicate id: err = %v, want ErrConflict", err)
	}
	evs := e.allEvents("g1")
	if len(evs) != 1 || evs[0].Kind != store.EventMembership || evs[0].Epoch != 1 {
		t.Errorf("events = %+v", evs)
	}
	ucs, err := e.s.UserConvos(e.ctx, "did:plc:bob")
	must(t, err, "user convos")
	if len(ucs) != 1 || ucs[0].ConvoID != "g1" || ucs[0].MemberCount != 2 || !slices.Equal(ucs[0].MemberDIDs, []string{"did:plc:bob#d1"}) {
		t.Errorf("user convos = %+v", ucs)
	}
}

// testCreateConvoAtomic proves createConvo is one transaction: a failure on
// the last member leaves nothing behind.
func testCreateConvoAtomic(t *testing.T, b Backend) {
	e := b.env(t)
	tests := []struct {
		name    string
		members []store.NewMember
		want    error
	}{
		{"unknown key package", []store.NewMember{member("did:plc:a", "d1"), {MemberDID: "did:plc:b#d1", UserDID: "did:plc:b", KeyPackageRef: "missing"}}, store.ErrKeyPackageNotFound},
		{"duplicate member", []store.NewMember{member("did:plc:a", "d1"), member("did:plc:a", "d1")}, store.ErrAlreadyMember},
	}
	for _, tc := range tests {
		_, err := e.s.CreateConvo(e.ctx, store.NewConvo{ID: "atomic", CreatorDID: "did:plc:a", CipherSuite: suite,
			Members: tc.members, Welcome: &store.NewWelcome{Data: []byte("w"), Recipients: []string{"did:plc:b#d1"}}})
		if !isErr(err, tc.want) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if _, err := e.s.Convo(e.ctx, "atomic"); !isErr(err, store.ErrNotFound) {
			t.Fatalf("%s: convo exists after failed create (err = %v)", tc.name, err)
		}
		if evs, err := e.s.EventsAfter(e.ctx, []string{"atomic"}, 0, 10); err != nil || len(evs) != 0 {
			t.Fatalf("%s: events after failed create: %v %v", tc.name, evs, err)
		}
	}
	e.newConvo("atomic", "did:plc:a") // the id is still free
}

// testSeqGapless hammers one conversation with 50 concurrent senders and
// proves seq is exactly 1..N, the counter is N, and event cursors follow
// seq order.
func testSeqGapless(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("busy", "did:plc:a")
	const senders, each = 50, 4
	var wg sync.WaitGroup
	errs := make(chan error, senders*each)
	start := make(chan struct{})
	for s := range senders {
		wg.Go(func() {
			<-start
			for i := range each {
				id := fmt.Sprintf("m-%02d-%d", s, i)
				if _, err := e.s.AppendMessage(e.ctx, store.NewMessage{ConvoID: "busy", MsgID: id, Ciphertext: padded(id), PaddedSize: 512}); err != nil {
					errs <- fmt.Errorf("%s: %w", id, err)
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const n = senders * each
	msgs := e.allMessages("busy")
	if len(msgs) != n {
		t.Fatalf("got %d messages, want %d", len(msgs), n)
	}
	seqOf := map[string]int64{}
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("message %d has seq %d: not exactly 1..%d", i, m.Seq, n)
		}
		if string(m.Ciphertext[:len(m.MsgID)]) != m.MsgID {
			t.Fatalf("seq %d holds ciphertext of another message", m.Seq)
		}
		seqOf[m.MsgID] = m.Seq
	}
	c, err := e.s.Convo(e.ctx, "busy")
	must(t, err, "convo")
	if c.LastSeq != n {
		t.Fatalf("counter = %d, want %d", c.LastSeq, n)
	}
	var last int64
	count := 0
	for _, ev := range e.allEvents("busy") {
		if ev.Kind != store.EventMessage {
			continue
		}
		count++
		if seqOf[ev.MessageID] <= last {
			t.Fatalf("event cursor %d (seq %d) is out of seq order after seq %d", ev.Cursor, seqOf[ev.MessageID], last)
		}
		last = seqOf[ev.MessageID]
	}
	if count != n {
		t.Fatalf("%d message events, want %d", count, n)
	}
}

func testAppendMessageRules(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a")
	e.clock.Advance(1100 * time.Millisecond)
	m := e.send("c", 0, "first")
	if want := store.Bucket(e.clock.Now()); !m.ReceivedAt.Equal(want) || m.ReceivedAt.UnixMilli()%2000 != 0 {
		t.Errorf("ReceivedAt = %v, want 2 s bucket %v", m.ReceivedAt, want)
	}
	got, err := e.s.Message(e.ctx, "c", "first")
	must(t, err, "read message")
	if got.Seq != 1 || got.IsCommit || got.PaddedSize != 512 || !got.ReceivedAt.Equal(m.ReceivedAt) {
		t.Errorf("message = %+v", got)
	}
	tests := []struct {
		name string
		msg  store.NewMessage
		want error
	}{
		{"unknown convo", store.NewMessage{ConvoID: "zz", MsgID: "x", Ciphertext: padded("x"), PaddedSize: 512}, store.ErrNotFound},
		{"future epoch", store.NewMessage{ConvoID: "c", MsgID: "y", Epoch: 1, Ciphertext: padded("y"), PaddedSize: 512}, store.ErrFutureEpoch},
		{"message id taken", store.NewMessage{ConvoID: "c", MsgID: "first", Ciphertext: padded("z"), PaddedSize: 512}, store.ErrConflict},
	}
	for _, tc := range tests {
		if _, err := e.s.AppendMessage(e.ctx, tc.msg); !isErr(err, tc.want) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	// Failed appends burn no seq.
	if m := e.send("c", 0, "second"); m.Seq != 2 {
		t.Errorf("seq after failures = %d, want 2", m.Seq)
	}

	// The membership check rides on the append. "c" has did:plc:a#d1;
	// did:plc:b#d1 joins and leaves.
	_, err = e.s.AddMembers(e.ctx, "c", []store.NewMember{member("did:plc:b", "d1")}, nil)
	must(t, err, "add b")
	_, err = e.s.RemoveMembers(e.ctx, "c", []string{"did:plc:b#d1"}, store.Removed, nil)
	must(t, err, "remove b")
	seq := int64(2)
	for _, tc := range []struct {
		name  string
		check store.MemberCheck
		epoch int64
		want  error
	}{
		{"device row", store.MemberCheck{MemberDIDs: []string{"did:plc:a#d1", "did:plc:a"}}, 0, nil},
		{"any row of the user", store.MemberCheck{MemberDIDs: []string{"did:plc:a"}, AnyRowOf: "did:plc:a"}, 0, nil},
		{"another device of a member", store.MemberCheck{MemberDIDs: []string{"did:plc:a#d2", "did:plc:a"}}, 0, store.ErrNotMember},
		{"never a member", store.MemberCheck{MemberDIDs: []string{"did:plc:z"}, AnyRowOf: "did:plc:z"}, 0, store.ErrNotMember},
		{"left", store.MemberCheck{MemberDIDs: []string{"did:plc:b#d1"}, AnyRowOf: "did:plc:b"}, 0, store.ErrNotMember},
		{"non-member, future epoch", store.MemberCheck{MemberDIDs: []string{"did:plc:z"}}, 5, store.ErrNotMember},
		{"member, future epoch", store.MemberCheck{MemberDIDs: []string{"did:plc:a#d1"}}, 5, store.ErrFutureEpoch},
	} {
		msgID := "checked-" + strings.ReplaceAll(tc.name, " ", "-")
		m, err := e.s.AppendMessage(e.ctx, store.NewMessage{ConvoID: "c", MsgID: msgID, Epoch: tc.epoch,
			Ciphertext: padded(msgID), PaddedSize: 512, Member: &tc.check})
		if tc.want != nil {
			if !isErr(err, tc.want) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
			}
			continue
		}
		seq++
		if err != nil || m.Seq != seq {
			t.Errorf("%s: seq %d, err %v; want seq %d", tc.name, m.Seq, err, seq)
		}
	}
	check := store.MemberCheck{MemberDIDs: []string{"did:plc:a#d1"}}
	if _, err := e.s.AppendMessage(e.ctx, store.NewMessage{ConvoID: "zz", MsgID: "x", Ciphertext: padded("x"), PaddedSize: 512, Member: &check}); !isErr(err, store.ErrNotFound) {
		t.Errorf("checked append to an unknown convo: err = %v, want ErrNotFound", err)
	}
	if m := e.send("c", 0, "after-checks"); m.Seq != seq+1 {
		t.Errorf("seq after checked appends = %d, want %d", m.Seq, seq+1)
	}
	if _, err := e.s.Message(e.ctx, "c", "nope"); !isErr(err, store.ErrNotFound) {
		t.Errorf("unknown message: err = %v", err)
	}
}

// testEpochCAS races committers on each epoch: exactly one wins, the rest
// get ErrStaleEpoch, and only the winner's Welcome and group info persist.
func testEpochCAS(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("cas", "did:plc:a")
	const epochs, racers = 4, 6
	for epoch := range int64(epochs) {
		var wg sync.WaitGroup
		results := make([]error, racers)
		start := make(chan struct{})
		for r := range racers {
			wg.Go(func() {
				<-start
				_, results[r] = e.s.AppendCommit(e.ctx, "cas", store.NewCommit{
					Epoch: epoch, Data: padded(fmt.Sprintf("commit-%d-%d", epoch, r)), PaddedSize: 512,
					GroupInfo: []byte(fmt.Sprintf("gi-%d-%d", epoch, r)),
					Welcome:   &store.NewWelcome{Data: []byte(fmt.Sprintf("w-%d-%d", epoch, r)), Recipients: []string{fmt.Sprintf("did:plc:r%d#d", r)}},
				})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for r, err := range results {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("epoch %d: racers %d and %d both won", epoch, winner, r)
			case err == nil:
				winner = r
			case !isErr(err, store.ErrStaleEpoch):
				t.Fatalf("epoch %d racer %d: err = %v, want ErrStaleEpoch", epoch, r, err)
			}
		}
		if winner < 0 {
			t.Fatalf("epoch %d: nobody won", epoch)
		}
		gi, err := e.s.GroupInfo(e.ctx, "cas")
		must(t, err, "group info")
		if want := fmt.Sprintf("gi-%d-%d", epoch, winner); string(gi.Data) != want || gi.Epoch != epoch+1 {
			t.Fatalf("group info = %q@%d, want %q@%d", gi.Data, gi.Epoch, want, epoch+1)
		}
		for r := range racers {
			_, err := e.s.Welcome(e.ctx, "cas", []string{fmt.Sprintf("did:plc:r%d#d", r)})
			if r == winner && err != nil {
				t.Fatalf("epoch %d: winner's Welcome missing: %v", epoch, err)
			}
			if r != winner && err == nil {
				_ = e.s.ConfirmWelcome(e.ctx, "cas", []string{fmt.Sprintf("did:plc:r%d#d", r)})
			}
		}
		must(t, e.s.ConfirmWelcome(e.ctx, "cas", []string{fmt.Sprintf("did:plc:r%d#d", winner)}), "confirm")
	}
	c, err := e.s.Convo(e.ctx, "cas")
	must(t, err, "convo")
	if c.Epoch != epochs || c.LastSeq != epochs {
		t.Fatalf("epoch/seq = %d/%d, want %d/%d", c.Epoch, c.LastSeq, epochs, epochs)
	}
	commits, err := e.s.Commits(e.ctx, "cas", 0, -1)
	must(t, err, "commits")
	if len(commits) != epochs {
		t.Fatalf("%d commits, want %d", len(commits), epochs)
	}
	for i, cm := range commits {
		if cm.Epoch != int64(i) || cm.Seq != int64(i+1) {
			t.Errorf("commit %d = epoch %d seq %d", i, cm.Epoch, cm.Seq)
		}
	}
	if sub, _ := e.s.Commits(e.ctx, "cas", 1, 2); len(sub) != 2 || sub[0].Epoch != 1 {
		t.Errorf("commits 1..2 = %+v", sub)
	}
	for _, m := range e.allMessages("cas") {
		if !m.IsCommit || m.Epoch != m.Seq-1 {
			t.Errorf("message %+v: want a commit of epoch seq-1", m)
		}
	}
	evs := e.allEvents("cas")
	var commitsSeen int64
	for _, ev := range evs {
		if ev.Kind == store.EventCommit {
			commitsSeen++
			if ev.Epoch != commitsSeen {
				t.Errorf("commit event %d carries epoch %d", commitsSeen, ev.Epoch)
			}
		}
	}
	if commitsSeen != epochs {
		t.Errorf("%d commit events, want %d", commitsSeen, epochs)
	}
	if _, err := e.s.AppendCommit(e.ctx, "nope", store.NewCommit{Epoch: 0, Data: padded("x")}); !isErr(err, store.ErrNotFound) {
		t.Errorf("unknown convo: err = %v, want ErrNotFound", err)
	}
	// Messages may still carry an older epoch, never a future one.
	if _, err := e.s.AppendMessage(e.ctx, store.NewMessage{ConvoID: "cas", MsgID: "old", Epoch: epochs - 1, Ciphertext: padded("o"), PaddedSize: 512}); err != nil {
		t.Errorf("message from previous epoch: %v", err)
	}
}

func testAddMembersAtomic(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a", "did:plc:b")
	// One of the new members is already in: nothing is added, the epoch
	// does not move.
	_, err := e.s.AddMembers(e.ctx, "c", []store.NewMember{member("did:plc:c", "d1"), member("did:plc:b", "d1")},
		&store.NewCommit{Epoch: 0, Data: padded("add"), PaddedSize: 512})
	if !isErr(err, store.ErrAlreadyMember) {
		t.Fatalf("err = %v, want ErrAlreadyMember", err)
	}
	if _, err := e.s.ActiveMember(e.ctx, "c", "did:plc:c#d1"); !isErr(err, store.ErrNotMember) {
		t.Fatalf("partial add persisted: %v", err)
	}
	if c, _ := e.s.Convo(e.ctx, "c"); c.Epoch != 0 || c.LastSeq != 0 {
		t.Fatalf("failed add moved the convo: %+v", c)
	}
	// Racing adds for the same epoch: one wins, the loser adds nobody.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			_, errs[i] = e.s.AddMembers(e.ctx, "c", []store.NewMember{member(fmt.Sprintf("did:plc:n%d", i), "d1")},
				&store.NewCommit{Epoch: 0, Data: padded(fmt.Sprintf("add-%d", i)), PaddedSize: 512,
					Welcome: &store.NewWelcome{Data: []byte("w"), Recipients: []string{fmt.Sprintf("did:plc:n%d#d1", i)}}})
		})
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		_, merr := e.s.ActiveMember(e.ctx, "c", fmt.Sprintf("did:plc:n%d#d1", i))
		switch {
		case err == nil:
			won++
			must(t, merr, "winner's member row")
		case isErr(err, store.ErrStaleEpoch):
			if !isErr(merr, store.ErrNotMember) {
				t.Errorf("loser %d was added anyway", i)
			}
			if _, werr := e.s.Welcome(e.ctx, "c", []string{fmt.Sprintf("did:plc:n%d#d1", i)}); werr == nil {
				t.Errorf("loser %d's Welcome was stored", i)
			}
		default:
			t.Fatalf("add %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d adds won, want 1", won)
	}
	ch, err := e.s.AddMembers(e.ctx, "c", []store.NewMember{member("did:plc:late", "d1")}, nil)
	must(t, err, "add without commit")
	if ch.Epoch != 1 || ch.Seq != 0 || len(ch.Cursors) != 1 {
		t.Errorf("change = %+v", ch)
	}
	if _, err := e.s.AddMembers(e.ctx, "zz", []store.NewMember{member("did:plc:x", "d1")}, nil); !isErr(err, store.ErrNotFound) {
		t.Errorf("unknown convo: %v", err)
	}
}

func testRemoveAndRejoin(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a")
	_, err := e.s.AddMembers(e.ctx, "c", []store.NewMember{member("did:plc:b", "phone"), member("did:plc:b", "laptop")}, nil)
	must(t, err, "add b's devices")
	must(t, e.s.SetRole(e.ctx, "c", "did:plc:b", store.RoleModerator), "set role")
	for _, dev := range []string{"phone", "laptop"} {
		m, err := e.s.ActiveMember(e.ctx, "c", "did:plc:b#"+dev)
		must(t, err, "member")
		if m.Role != store.RoleModerator {
			t.Errorf("%s role = %s, want moderator on every device", dev, m.Role)
		}
	}
	if err := e.s.SetRole(e.ctx, "c", "did:plc:zed", store.RoleAdmin); !isErr(err, store.ErrNotMember) {
		t.Errorf("set role of non-member: %v", err)
	}
	// Removing by user DID removes every device, with the commit.
	ch, err := e.s.RemoveMembers(e.ctx, "c", []string{"did:plc:b"}, store.Removed, &store.NewCommit{Epoch: 0, Data: padded("rm"), PaddedSize: 512})
	must(t, err, "remove")
	if ch.Epoch != 1 || ch.Seq != 1 || len(ch.Cursors) != 2 {
		t.Errorf("change = %+v", ch)
	}
	for _, dev := range []string{"phone", "laptop"} {
		if _, err := e.s.ActiveMember(e.ctx, "c", "did:plc:b#"+dev); !isErr(err, store.ErrNotMember) {
			t.Errorf("%s still active: %v", dev, err)
		}
	}
	if _, err := e.s.RemoveMembers(e.ctx, "c", []string{"did:plc:b"}, store.Removed, nil); !isErr(err, store.ErrNotMember) {
		t.Errorf("second removal: %v, want ErrNotMember", err)
	}
	all, err := e.s.Members(e.ctx, []string{"c"}, true)
	must(t, err, "members incl. left")
	left := 0
	for _, m := range all["c"] {
		if !bucketed(m.JoinedAt) {
			t.Errorf("JoinedAt %v not bucketed", m.JoinedAt)
		}
		if !m.LeftAt.IsZero() {
			left++
			if !bucketed(m.LeftAt) {
				t.Errorf("LeftAt %v not bucketed", m.LeftAt)
			}
		}
	}
	if left != 2 {
		t.Errorf("%d left rows, want 2", left)
	}
	if ucs, _ := e.s.UserConvos(e.ctx, "did:plc:b"); len(ucs) != 0 {
		t.Errorf("removed user still lists %v", ucs)
	}
	// Rejoin reactivates the row.
	_, err = e.s.AddMembers(e.ctx, "c", []store.NewMember{member("did:plc:b", "phone")}, nil)
	must(t, err, "rejoin")
	if m, err := e.s.ActiveMember(e.ctx, "c", "did:plc:b#phone"); err != nil || m.Role != store.RoleMember || !m.LeftAt.IsZero() {
		t.Errorf("rejoined = %+v, %v", m, err)
	}
}

// testActiveMemberCount: the count is the number of active member rows
// Members returns, one per device, through adds, a removal and a rejoin;
// other conversations and left rows do not count; an unknown conversation
// has none.
func testActiveMemberCount(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a", "did:plc:c")
	e.newConvo("other", "did:plc:a", "did:plc:b", "did:plc:z")
	check := func(step string, want int) {
		t.Helper()
		n, err := e.s.ActiveMemberCount(e.ctx, "c")
		must(t, err, "count "+step)
		ms, err := e.s.Members(e.ctx, []string{"c"}, false)
		must(t, err, "members "+step)
		if n != want || n != len(ms["c"]) {
			t.Errorf("%s: ActiveMemberCount = %d, Members has %d, want %d", step, n, len(ms["c"]), want)
		}
	}
	check("created", 2)
	_, err := e.s.AddMembers(e.ctx, "c", []store.NewMember{member("did:plc:b", "phone"), member("did:plc:b", "laptop")}, nil)
	must(t, err, "add b's devices")
	check("b's two devices added", 4)
	_, err = e.s.RemoveMembers(e.ctx, "c", []string{"did:plc:b"}, store.Removed, nil)
	must(t, err, "remove b")
	check("b removed", 2)
	_, err = e.s.AddMembers(e.ctx, "c", []store.NewMember{member("did:plc:b", "phone")}, nil)
	must(t, err, "rejoin b")
	check("b's phone back", 3)
	if n, err := e.s.ActiveMemberCount(e.ctx, "nope"); err != nil || n != 0 {
		t.Errorf("unknown conversation: %d, %v; want 0, nil", n, err)
	}
}

func testGroupInfo(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a")
	if _, err := e.s.GroupInfo(e.ctx, "c"); !isErr(err, store.ErrNotFound) {
		t.Errorf("no group info yet: %v", err)
	}
	must(t, e.s.PutGroupInfo(e.ctx, "c", 0, []byte("g0")), "put epoch 0")
	_, err := e.s.AppendCommit(e.ctx, "c", store.NewCommit{Epoch: 0, Data: padded("c0"), PaddedSize: 512})
	must(t, err, "commit")
	tests := []struct {
		name  string
		epoch int64
		want  error
	}{
		{"stale", 0, store.ErrStaleEpoch},
		{"future", 2, store.ErrStaleEpoch},
		{"current", 1, nil},
	}
	for _, tc := range tests {
		if err := e.s.PutGroupInfo(e.ctx, "c", tc.epoch, []byte(tc.name)); !isErr(err, tc.want) && !(err == nil && tc.want == nil) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	gi, err := e.s.GroupInfo(e.ctx, "c")
	must(t, err, "read")
	if string(gi.Data) != "current" || gi.Epoch != 1 {
		t.Errorf("group info = %q@%d", gi.Data, gi.Epoch)
	}
	if err := e.s.PutGroupInfo(e.ctx, "zz", 0, []byte("x")); !isErr(err, store.ErrNotFound) {
		t.Errorf("unknown convo: %v", err)
	}
}

func testWelcome(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a")
	_, err := e.s.AddMembers(e.ctx, "c", []store.NewMember{member("did:plc:b", "d1"), member("did:plc:c", "d1")},
		&store.NewCommit{Epoch: 0, Data: padded("add"), PaddedSize: 512,
			Welcome: &store.NewWelcome{Data: []byte("w1"), Recipients: []string{"did:plc:b#d1", "did:plc:c#d1"}}})
	must(t, err, "add")
	for _, r := range []string{"did:plc:b#d1", "did:plc:c#d1"} {
		w, err := e.s.Welcome(e.ctx, "c", []string{r})
		must(t, err, "welcome for "+r)
		if string(w.Data) != "w1" || w.Epoch != 1 {
			t.Errorf("welcome = %+v", w)
		}
	}
	must(t, e.s.ConfirmWelcome(e.ctx, "c", []string{"did:plc:b#d1"}), "confirm")
	must(t, e.s.ConfirmWelcome(e.ctx, "c", []string{"did:plc:b#d1"}), "confirm retry")
	if _, err := e.s.Welcome(e.ctx, "c", []string{"did:plc:b#d1"}); !isErr(err, store.ErrNotFound) {
		t.Errorf("consumed welcome still served: %v", err)
	}
	if _, err := e.s.Welcome(e.ctx, "c", []string{"did:plc:c#d1"}); err != nil {
		t.Errorf("other recipient lost its welcome: %v", err)
	}
	if err := e.s.ConfirmWelcome(e.ctx, "c", []string{"did:plc:zz"}); !isErr(err, store.ErrNotFound) {
		t.Errorf("confirm without welcome: %v", err)
	}
}

func testConvoPagination(t *testing.T, b Backend) {
	e := b.env(t)
	const n = 7
	for i := range n {
		e.newConvo(fmt.Sprintf("c%d", i), "did:plc:a", "did:plc:b")
		e.clock.Advance(3 * time.Second)
	}
	e.newConvo("other", "did:plc:z")
	// Activity moves c2 to the front; leaving c6 drops it from a's list.
	e.send("c2", 0, "bump")
	_, err := e.s.RemoveMembers(e.ctx, "c6", []string{"did:plc:a"}, store.Removed, nil)
	must(t, err, "leave c6")
	want := []string{"c2", "c5", "c4", "c3", "c1", "c0"}
	var got []string
	cursor := ""
	pages := 0
	for {
		cs, next, err := e.s.ConvosForUser(e.ctx, "did:plc:a", cursor, 4)
		must(t, err, "page")
		pages++
		for _, c := range cs {
			got = append(got, c.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(got, want) || pages != 2 {
		t.Fatalf("pages = %d, convos = %v, want %v in 2 pages", pages, got, want)
	}
	// Ties in the activity bucket break by id, stably.
	for i := range 3 {
		e.newConvo(fmt.Sprintf("tie%d", i), "did:plc:t")
	}
	var ties []string
	cursor = ""
	for {
		cs, next, err := e.s.ConvosForUser(e.ctx, "did:plc:t", cursor, 1)
		must(t, err, "tie page")
		for _, c := range cs {
			ties = append(ties, c.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(ties, []string{"tie2", "tie1", "tie0"}) {
		t.Errorf("ties = %v", ties)
	}
	if _, _, err := e.s.ConvosForUser(e.ctx, "did:plc:a", "!!not-a-cursor", 4); !isErr(err, store.ErrInvalidCursor) {
		t.Errorf("bad cursor: %v, want ErrInvalidCursor", err)
	}
}

func testMessagePagination(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a")
	for i := range 10 {
		e.send("c", 0, fmt.Sprintf("m%d", i))
	}
	tests := []struct {
		since   int64
		limit   int
		wantSeq []int64
	}{
		{0, 4, []int64{1, 2, 3, 4}},
		{4, 4, []int64{5, 6, 7, 8}},
		{8, 4, []int64{9, 10}},
		{10, 4, nil},
		{3, 1, []int64{4}},
	}
	for _, tc := range tests {
		p, err := e.s.Messages(e.ctx, "c", tc.since, tc.limit)
		must(t, err, "page")
		var seqs []int64
		for _, m := range p.Messages {
			seqs = append(seqs, m.Seq)
		}
		if !slices.Equal(seqs, tc.wantSeq) || p.ConvoLastSeq != 10 || p.ConvoEpoch != 0 {
			t.Errorf("since %d limit %d: seqs %v last %d, want %v last 10", tc.since, tc.limit, seqs, p.ConvoLastSeq, tc.wantSeq)
		}
	}
	if _, err := e.s.Messages(e.ctx, "zz", 0, 10); !isErr(err, store.ErrNotFound) {
		t.Errorf("unknown convo: %v", err)
	}
}
