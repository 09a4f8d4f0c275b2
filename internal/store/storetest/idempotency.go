package storetest

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

const sendNSID = "blue.catbird.mls.sendMessage"

// sendOnce is a sendMessage-shaped write: append and answer with the seq.
func sendOnce(convo, msgID string, calls *atomic.Int32) func(ctx context.Context, tx store.Writer) ([]byte, error) {
	return func(ctx context.Context, tx store.Writer) ([]byte, error) {
		calls.Add(1)
		m, err := tx.AppendMessage(ctx, store.NewMessage{ConvoID: convo, MsgID: msgID, Ciphertext: padded(msgID), PaddedSize: 512})
		if err != nil {
			return nil, err
		}
		return []byte(`{"seq":` + strconv.FormatInt(m.Seq, 10) + `}`), nil
	}
}

func testIdempotency(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a", "did:plc:b")
	var calls atomic.Int32
	key := store.IdempotencyKey{CallerDID: "did:plc:a", NSID: sendNSID, Key: "k1"}
	resp, replayed, err := e.s.Idempotent(e.ctx, key, []byte("h1"), sendOnce("c", "m1", &calls))
	must(t, err, "first")
	if replayed || string(resp) != `{"seq":1}` {
		t.Fatalf("first = %s replayed=%v", resp, replayed)
	}
	e.send("c", 0, "between")

	tests := []struct {
		name         string
		key          store.IdempotencyKey
		hash         string
		msgID        string
		wantResp     string
		wantReplayed bool
		wantErr      error
	}{
		{"retry returns the original", key, "h1", "m1", `{"seq":1}`, true, nil},
		{"retry without hash", key, "", "m1", `{"seq":1}`, true, nil},
		{"same key, other request", key, "h2", "m1", "", false, store.ErrConflict},
		{"same key, other caller", store.IdempotencyKey{CallerDID: "did:plc:b", NSID: sendNSID, Key: "k1"}, "h1", "m2", `{"seq":3}`, false, nil},
		{"same key, other endpoint", store.IdempotencyKey{CallerDID: "did:plc:a", NSID: "blue.catbird.mls.addMembers", Key: "k1"}, "h1", "m3", `{"seq":4}`, false, nil},
	}
	for _, tc := range tests {
		before := calls.Load()
		resp, replayed, err := e.s.Idempotent(e.ctx, tc.key, []byte(tc.hash), sendOnce("c", tc.msgID, &calls))
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.wantErr)
		}
		if string(resp) != tc.wantResp || replayed != tc.wantReplayed {
			t.Errorf("%s: resp %s replayed %v, want %s %v", tc.name, resp, replayed, tc.wantResp, tc.wantReplayed)
		}
		if ran := calls.Load() != before; ran == tc.wantReplayed && tc.wantErr == nil {
			t.Errorf("%s: fn ran = %v", tc.name, ran)
		}
	}
	if msgs := e.allMessages("c"); len(msgs) != 4 {
		t.Errorf("%d messages stored, want 4: retries must change nothing", len(msgs))
	}

	// A failing write records nothing and keeps nothing it wrote.
	failKey := store.IdempotencyKey{CallerDID: "did:plc:a", NSID: sendNSID, Key: "fails"}
	boom := errors.New("boom")
	_, _, err = e.s.Idempotent(e.ctx, failKey, nil, func(ctx context.Context, tx store.Writer) ([]byte, error) {
		if _, err := tx.AppendMessage(ctx, store.NewMessage{ConvoID: "c", MsgID: "doomed", Ciphertext: padded("d"), PaddedSize: 512}); err != nil {
			return nil, err
		}
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("failing fn: err = %v", err)
	}
	if _, err := e.s.Message(e.ctx, "c", "doomed"); !isErr(err, store.ErrNotFound) {
		t.Errorf("write of a failed idempotent call persisted: %v", err)
	}
	resp, replayed, err = e.s.Idempotent(e.ctx, failKey, nil, sendOnce("c", "doomed", &calls))
	must(t, err, "retry after failure")
	if replayed || string(resp) != `{"seq":5}` {
		t.Errorf("retry after failure = %s replayed %v, want a fresh run with seq 5 (no seq burnt)", resp, replayed)
	}

	// createConvo through Idempotent: a retry does not fail on the existing id.
	ckey := store.IdempotencyKey{CallerDID: "did:plc:a", NSID: "blue.catbird.mls.createConvo", Key: "cc"}
	create := func(ctx context.Context, tx store.Writer) ([]byte, error) {
		c, err := tx.CreateConvo(ctx, store.NewConvo{ID: "made", CreatorDID: "did:plc:a", CipherSuite: suite,
			Members: []store.NewMember{member("did:plc:a", "d1"), member("did:plc:b", "d1")}})
		if err != nil {
			return nil, err
		}
		return []byte(c.ID), nil
	}
	for i := range 2 {
		resp, replayed, err := e.s.Idempotent(e.ctx, ckey, []byte("same"), create)
		must(t, err, "create convo idempotently")
		if string(resp) != "made" || replayed != (i == 1) {
			t.Errorf("create #%d = %s replayed %v", i, resp, replayed)
		}
	}
}

// testIdempotencyConcurrent fires the same keyed write from many goroutines
// at once: it takes effect once and every caller gets the same response.
func testIdempotencyConcurrent(t *testing.T, b Backend) {
	e := b.env(t)
	e.newConvo("c", "did:plc:a")
	key := store.IdempotencyKey{CallerDID: "did:plc:a", NSID: sendNSID, Key: "race"}
	const n = 10
	var calls atomic.Int32
	var wg sync.WaitGroup
	resps := make([]string, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			r, _, err := e.s.Idempotent(e.ctx, key, []byte("h"), sendOnce("c", "only", &calls))
			resps[i], errs[i] = string(r), err
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if resps[i] != `{"seq":1}` {
			t.Errorf("caller %d got %s", i, resps[i])
		}
	}
	if msgs := e.allMessages("c"); len(msgs) != 1 {
		t.Errorf("%d messages, want 1", len(msgs))
	}
}
