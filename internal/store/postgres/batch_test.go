package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// TestAppendBatches sends many appends at once into several conversations,
// with refusals mixed in, so that they commit in batches: each refused
// append gets its own error while the rest of its batch commits, each
// conversation's seq stays gapless, and a msg_id raced by two appends is
// stored once.
func TestAppendBatches(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: testenv.Postgres(t), MaxConns: 4})
	testenv.Must(t, err, "open")
	defer s.Close()
	convos := []string{"c3", "c1", "c4", "c2"}
	for _, c := range convos {
		_, err := s.CreateConvo(ctx, store.NewConvo{ID: c, CreatorDID: "did:plc:a", CipherSuite: "x",
			Members: []store.NewMember{{MemberDID: "did:plc:a#d", UserDID: "did:plc:a", DeviceID: "d"}}})
		testenv.Must(t, err, "create "+c)
	}
	member := &store.MemberCheck{MemberDIDs: []string{"did:plc:a#d", "did:plc:a"}}
	stranger := &store.MemberCheck{MemberDIDs: []string{"did:plc:z"}, AnyRowOf: "did:plc:z"}

	const n = 400
	type outcome struct {
		convo string
		seq   int64
		err   error
		want  error
	}
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c := convos[i%len(convos)]
			m := store.NewMessage{ConvoID: c, MsgID: fmt.Sprintf("m%d", i), Ciphertext: make([]byte, 512), PaddedSize: 512, Member: member}
			var want error
			switch {
			case i%10 == 3:
				m.Epoch, want = 7, store.ErrFutureEpoch
			case i%10 == 5:
				m.Member, want = stranger, store.ErrNotMember
			case i%20 == 7 || i%20 == 11:
				// Two appends race for one msg_id of one conversation
				// (i%4 is 3 for both): one is stored, the other is a
				// conflict, in the same batch or across two.
				m.MsgID = fmt.Sprintf("dup%d", i/20)
				want = errRace
			}
			msg, err := s.AppendMessage(ctx, m)
			out[i] = outcome{convo: c, seq: msg.Seq, err: err, want: want}
		})
	}
	wg.Wait()

	seqs := map[string][]int64{}
	raced := map[string]int{}
	for i, o := range out {
		switch {
		case o.want == errRace:
			key := fmt.Sprintf("dup%d", i/20)
			if o.err == nil {
				raced[key]++
				seqs[o.convo] = append(seqs[o.convo], o.seq)
			} else if !errors.Is(o.err, store.ErrConflict) {
				t.Errorf("append %d (raced msg_id): %v, want success or ErrConflict", i, o.err)
			}
		case o.want != nil:
			if !errors.Is(o.err, o.want) {
				t.Errorf("append %d: %v, want %v", i, o.err, o.want)
			}
		case o.err != nil:
			t.Errorf("append %d: %v", i, o.err)
		default:
			seqs[o.convo] = append(seqs[o.convo], o.seq)
		}
	}
	for key, stored := range raced {
		if stored != 1 {
			t.Errorf("msg_id %s stored %d times", key, stored)
		}
	}
	for c, got := range seqs {
		slices.Sort(got)
		for j, seq := range got {
			if seq != int64(j+1) {
				t.Fatalf("convo %s: seqs %v, want 1..%d without a gap", c, got, len(got))
			}
		}
		page, err := s.Messages(ctx, c, 0, 1000)
		testenv.Must(t, err, "read "+c)
		if len(page.Messages) != len(got) {
			t.Errorf("convo %s: %d messages stored, %d acknowledged", c, len(page.Messages), len(got))
		}
	}
	if s.appends.grouped.Load() == 0 {
		t.Error("no append was committed in a batch: the test did not exercise batching")
	}
}

// TestAppendBatchThatFails: a statement that fails aborts its batch's
// transaction; the batch then runs one append at a time, so only the bad
// append fails and the others are stored, in order, without a gap.
func TestAppendBatchThatFails(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, Config{URL: testenv.Postgres(t)})
	testenv.Must(t, err, "open")
	defer s.Close()
	_, err = s.CreateConvo(ctx, store.NewConvo{ID: "c", CreatorDID: "did:plc:a", CipherSuite: "x",
		Members: []store.NewMember{{MemberDID: "did:plc:a", UserDID: "did:plc:a"}}})
	testenv.Must(t, err, "create")
	pending := func(msgID string) *pendingAppend {
		return &pendingAppend{ctx: ctx, done: make(chan struct{}),
			m: store.NewMessage{ConvoID: "c", MsgID: msgID, Ciphertext: make([]byte, 512), PaddedSize: 512}}
	}
	// A msg_id PostgreSQL cannot store as text fails its statement.
	batch := []*pendingAppend{pending("m1"), pending("bad\xff"), pending("m2")}
	s.appends.run(batch)
	if s.appends.rerun.Load() != 1 {
		t.Fatalf("batches rerun one at a time: %d, want 1", s.appends.rerun.Load())
	}
	if batch[1].err == nil {
		t.Error("the bad append was stored")
	}
	if batch[0].err != nil || batch[2].err != nil || batch[0].out.Seq != 1 || batch[2].out.Seq != 2 {
		t.Fatalf("the good appends: seq %d (%v), seq %d (%v); want 1 and 2", batch[0].out.Seq, batch[0].err, batch[2].out.Seq, batch[2].err)
	}
}

// errRace marks an append whose msg_id another append races for.
var errRace = errors.New("raced")
