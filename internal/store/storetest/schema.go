package storetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

// testSchemaHasNoSender proves by introspection that messages keep exactly
// the minimal columns and that no message, commit or event table has a
// sender-like column.
func testSchemaHasNoSender(t *testing.T, b Backend) {
	e := b.env(t)
	insp, ok := e.s.(SchemaInspector)
	if !ok {
		t.Fatalf("%T does not implement storetest.SchemaInspector", e.s)
	}
	want := map[string][]string{
		"messages": {"ciphertext", "convo_id", "epoch", "expires_at", "msg_id", "padded_size", "received_bucket", "seq"},
		"events":   {"convo_id", "created_bucket", "cursor", "epoch", "kind", "message_id"},
		"commits":  {"convo_id", "epoch", "seq"},
	}
	forbidden := []string{"sender", "sent", "author", "from", "by", "did", "user", "member", "device", "ip", "addr"}
	for table, cols := range want {
		got, err := insp.TableColumns(e.ctx, table)
		must(t, err, "introspect "+table)
		slices.Sort(got)
		if !slices.Equal(got, cols) {
			t.Errorf("%s columns = %v, want exactly %v", table, got, cols)
		}
		for _, c := range got {
			for _, part := range strings.Split(strings.ToLower(c), "_") {
				if slices.Contains(forbidden, part) || strings.Contains(part, "sender") {
					t.Errorf("%s has sender-like column %q", table, c)
				}
			}
		}
	}
}

func testMigrationsIdempotent(t *testing.T, b Backend) {
	clock := NewClock(Epoch0)
	data := b.NewData(t)
	ctx := t.Context()
	s1, err := b.Open(ctx, data, clock.Now)
	must(t, err, "first open")
	e := &env{t: t, ctx: ctx, s: s1, clock: clock}
	e.newConvo("reopen", "did:plc:alice")
	e.send("reopen", 0, "m1")
	must(t, s1.Close(), "close")
	for i := range 2 {
		s, err := b.Open(ctx, data, clock.Now)
		must(t, err, "reopen")
		page, err := s.Messages(ctx, "reopen", 0, 10)
		must(t, err, "read after reopen")
		if len(page.Messages) != 1+i || page.ConvoLastSeq != int64(1+i) {
			t.Fatalf("reopen %d: got %d messages, last seq %d; want %d", i, len(page.Messages), page.ConvoLastSeq, 1+i)
		}
		// The counter survives: the next seq continues, it does not restart.
		m, err := s.AppendMessage(ctx, store.NewMessage{ConvoID: "reopen", MsgID: "again" + string(rune('a'+i)), Ciphertext: padded("x"), PaddedSize: 512})
		must(t, err, "append after reopen")
		if m.Seq != int64(2+i) {
			t.Fatalf("seq after reopen = %d, want %d", m.Seq, 2+i)
		}
		must(t, s.Close(), "close")
	}
}

func testMigrationsConcurrent(t *testing.T, b Backend) {
	clock := NewClock(Epoch0)
	data := b.NewData(t)
	ctx := t.Context()
	const n = 3
	stores := make([]store.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = b.Open(ctx, data, clock.Now)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent open %d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	// Every store works on the same, once-migrated schema.
	_, err := stores[0].CreateConvo(ctx, store.NewConvo{ID: "c", CreatorDID: "did:plc:a", CipherSuite: suite,
		Members: []store.NewMember{member("did:plc:a", "d1")}})
	must(t, err, "create on store 0")
	c, err := stores[n-1].Convo(ctx, "c")
	must(t, err, "read on last store")
	if c.CreatorDID != "did:plc:a" {
		t.Fatalf("creator = %q", c.CreatorDID)
	}
}

func testTryLock(t *testing.T, b Backend) {
	e := b.env(t)
	unlock, ok, err := e.s.TryLock(e.ctx, "retention")
	must(t, err, "first lock")
	if !ok {
		t.Fatal("first TryLock: not acquired")
	}
	if _, ok, err := e.s.TryLock(e.ctx, "retention"); err != nil || ok {
		t.Fatalf("second TryLock while held: ok=%v err=%v, want false, nil", ok, err)
	}
	// A store that says several nodes may share it must exclude them.
	if e.s.Traits().MultiNode {
		node2, err := b.Open(e.ctx, e.data, e.clock.Now)
		must(t, err, "open a second node")
		defer node2.Close()
		if _, ok, err := node2.TryLock(e.ctx, "retention"); err != nil || ok {
			t.Fatalf("TryLock on another node while held: ok=%v err=%v, want false, nil", ok, err)
		}
		defer func() {
			u, ok, err := node2.TryLock(e.ctx, "retention")
			if err != nil || !ok {
				t.Errorf("other node after unlock: ok=%v err=%v", ok, err)
				return
			}
			u()
		}()
	}
	other, ok, err := e.s.TryLock(e.ctx, "keypackages")
	if err != nil || !ok {
		t.Fatalf("other name: ok=%v err=%v", ok, err)
	}
	other()
	unlock()
	unlock() // a second call is harmless
	again, ok, err := e.s.TryLock(e.ctx, "retention")
	if err != nil || !ok {
		t.Fatalf("after unlock: ok=%v err=%v", ok, err)
	}
	again()
}

func testPurgeIdempotency(t *testing.T, b Backend) {
	e := b.env(t)
	run := func(key string) bool {
		_, replayed, err := e.s.Idempotent(e.ctx, store.IdempotencyKey{CallerDID: "did:plc:a", NSID: "n", Key: key}, nil,
			func(ctx context.Context, tx store.Writer) ([]byte, error) { return []byte(key), nil })
		must(t, err, "idempotent")
		return replayed
	}
	run("old")
	e.clock.Advance(23 * time.Hour)
	run("new")
	e.clock.Advance(2 * time.Hour)
	n, err := e.s.PurgeIdempotency(e.ctx, 24*time.Hour)
	must(t, err, "purge")
	if n != 1 {
		t.Fatalf("purged %d, want 1", n)
	}
	if !run("new") {
		t.Error("record younger than 24 h was purged")
	}
	if run("old") {
		t.Error("record older than 24 h still replays")
	}
}

func isErr(err, target error) bool { return errors.Is(err, target) }

// testTraits: a backend names itself, and its traits are a fixed value,
// the same on every store opened on the same data.
func testTraits(t *testing.T, b Backend) {
	e := b.env(t)
	tr := e.s.Traits()
	if tr.Backend == "" {
		t.Fatalf("traits %+v name no backend", tr)
	}
	node2, err := b.Open(e.ctx, e.data, e.clock.Now)
	must(t, err, "open a second store")
	defer node2.Close()
	if got := node2.Traits(); got != tr {
		t.Fatalf("second store's traits %+v, first's %+v", got, tr)
	}
}

// exactColumns checks by introspection that each table of want has
// exactly its listed columns (sorted), and returns the columns found.
func (e *env) exactColumns(want map[string][]string) map[string][]string {
	e.t.Helper()
	insp, ok := e.s.(SchemaInspector)
	if !ok {
		e.t.Fatalf("%T does not implement storetest.SchemaInspector", e.s)
	}
	found := map[string][]string{}
	for table, cols := range want {
		got, err := insp.TableColumns(e.ctx, table)
		must(e.t, err, "introspect "+table)
		slices.Sort(got)
		if !slices.Equal(got, cols) {
			e.t.Errorf("%s columns = %v, want exactly %v", table, got, cols)
		}
		found[table] = got
	}
	return found
}
