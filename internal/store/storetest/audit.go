package storetest

import (
	"bytes"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/store"
)

var testAuditKey = []byte("0123456789abcdef0123456789abcdef-storetest")

// auditLog returns the env's store as a store.AuditLog and an audit.Log
// over it on the env's clock.
func (e *env) auditLog() (store.AuditLog, *audit.Log) {
	e.t.Helper()
	al, ok := e.s.(store.AuditLog)
	if !ok {
		e.t.Fatalf("%T does not implement store.AuditLog", e.s)
	}
	l, err := audit.New(audit.Config{Store: al, Key: testAuditKey, Now: e.clock.Now})
	must(e.t, err, "audit.New")
	return al, l
}

func (e *env) record(l *audit.Log, n int) {
	e.t.Helper()
	for i := range n {
		must(e.t, l.Record(e.ctx, audit.Event{Type: audit.TypeOperatorAction, Actor: fmt.Sprintf("op%d", i%3),
			Metadata: map[string]any{"route": "status", "i": i}}), "record")
	}
}

func (e *env) verify(l *audit.Log) audit.Report {
	e.t.Helper()
	rep, err := l.Verify(e.ctx, nil)
	must(e.t, err, "verify")
	return rep
}

// testAuditAppendAndQuery: rows come back as written, chained, filtered
// and paged.
func testAuditAppendAndQuery(t *testing.T, b Backend) {
	e := b.env(t)
	al, l := e.auditLog()
	must(t, l.Record(e.ctx, audit.Event{Type: audit.TypeBanAdd, Actor: "alice", Target: "h:0011223344556677"}), "record ban")
	e.clock.Advance(time.Minute)
	e.record(l, 5)
	all, err := al.AuditRecords(e.ctx, store.AuditFilter{})
	must(t, err, "list")
	if len(all) != 6 || all[0].Seq != 6 || all[5].Seq != 1 {
		t.Fatalf("rows = %d, first seq %d; want 6 newest first", len(all), all[0].Seq)
	}
	first := all[5]
	if first.Type != audit.TypeBanAdd || first.Actor != "alice" || first.Target != "h:0011223344556677" ||
		string(first.Metadata) != "{}" || !first.Time.Equal(Epoch0.Truncate(time.Millisecond)) {
		t.Fatalf("first row = %+v", first)
	}
	if !bytes.Equal(first.MAC, audit.MAC(testAuditKey, nil, first)) {
		t.Fatal("first row's MAC is not chained to the genesis")
	}
	if !bytes.Equal(all[4].MAC, audit.MAC(testAuditKey, first.MAC, all[4])) {
		t.Fatal("second row's MAC is not chained to the first")
	}
	byType, err := al.AuditRecords(e.ctx, store.AuditFilter{Types: []string{audit.TypeBanAdd, "x.y"}})
	must(t, err, "by type")
	if len(byType) != 1 || byType[0].Seq != 1 {
		t.Fatalf("by type = %+v", byType)
	}
	byActor, err := al.AuditRecords(e.ctx, store.AuditFilter{Actor: "op1"})
	must(t, err, "by actor")
	if len(byActor) != 2 {
		t.Fatalf("by actor = %d rows, want 2", len(byActor))
	}
	since, err := al.AuditRecords(e.ctx, store.AuditFilter{Since: Epoch0.Add(time.Second)})
	must(t, err, "since")
	until, err := al.AuditRecords(e.ctx, store.AuditFilter{Until: Epoch0.Add(time.Second)})
	must(t, err, "until")
	if len(since) != 5 || len(until) != 1 {
		t.Fatalf("since = %d, until = %d; want 5, 1", len(since), len(until))
	}
	var seqs []int64
	for before := int64(0); ; {
		page, err := al.AuditRecords(e.ctx, store.AuditFilter{BeforeSeq: before, Limit: 4})
		must(t, err, "page")
		for _, r := range page {
			seqs = append(seqs, r.Seq)
		}
		if len(page) < 4 {
			break
		}
		before = page[len(page)-1].Seq
	}
	if !slices.Equal(seqs, []int64{6, 5, 4, 3, 2, 1}) {
		t.Fatalf("paged seqs = %v", seqs)
	}
	if rep := e.verify(l); rep.Problem != nil || rep.Rows != 6 || rep.Head.Seq != 6 {
		t.Fatalf("verify = %+v", rep)
	}
}

// testAuditConcurrentAppends: appends racing from several stores (nodes)
// make one gapless chain that verifies.
func testAuditConcurrentAppends(t *testing.T, b Backend) {
	e := b.env(t)
	_, l := e.auditLog()
	// A second store on the same data: another node on PostgreSQL, another
	// process on SQLite.
	node2, err := b.Open(e.ctx, e.data, e.clock.Now)
	must(t, err, "open a second node")
	defer node2.Close()
	l2, err := audit.New(audit.Config{Store: node2.(store.AuditLog), Key: testAuditKey, Now: e.clock.Now})
	must(t, err, "audit.New")
	logs := []*audit.Log{l, l2}
	const writers, each = 6, 10
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range each {
				if err := logs[i%len(logs)].Record(e.ctx, audit.Event{Type: audit.TypeOperatorAction, Actor: fmt.Sprint(i),
					Metadata: map[string]any{"j": j}}); err != nil {
					t.Errorf("record: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if rep := e.verify(l); rep.Problem != nil || rep.Rows != writers*each {
		t.Fatalf("verify after concurrent appends = %+v, want %d rows and no problem", rep, writers*each)
	}
}

// testAuditPrune: pruning removes an old prefix, anchors the chain at the
// last pruned row, records itself, and the rest still verifies.
func testAuditPrune(t *testing.T, b Backend) {
	e := b.env(t)
	al, l := e.auditLog()
	e.record(l, 5) // rows 1-5 at Epoch0
	e.clock.Advance(48 * time.Hour)
	e.record(l, 3) // rows 6-8
	n, err := l.Prune(e.ctx, 24*time.Hour)
	must(t, err, "prune")
	if n != 5 {
		t.Fatalf("pruned %d, want 5", n)
	}
	anchor, err := al.AuditAnchor(e.ctx)
	must(t, err, "anchor")
	if anchor.Seq != 5 || len(anchor.MAC) == 0 {
		t.Fatalf("anchor = %+v, want seq 5", anchor)
	}
	rep := e.verify(l)
	if rep.Problem != nil || rep.Rows != 4 || rep.Anchor.Seq != 5 || rep.Head.Seq != 9 {
		t.Fatalf("verify after prune = %+v (problem %+v)", rep, rep.Problem)
	}
	// Nothing old is left: a second prune deletes nothing and records
	// nothing.
	if n, err := l.Prune(e.ctx, 24*time.Hour); err != nil || n != 0 {
		t.Fatalf("second prune = %d, %v", n, err)
	}
	// Everything goes: the chain continues from the anchor.
	e.clock.Advance(48 * time.Hour)
	if n, err := l.Prune(e.ctx, 24*time.Hour); err != nil || n != 4 {
		t.Fatalf("third prune = %d, %v; want 4", n, err)
	}
	e.record(l, 1)
	if rep := e.verify(l); rep.Problem != nil || rep.Anchor.Seq != 9 || rep.Head.Seq != 11 {
		t.Fatalf("verify after pruning everything = %+v (problem %+v)", rep, rep.Problem)
	}
}

// testAuditTamper edits the database behind the store's back and checks
// that Verify names the first row altered, deleted or inserted.
func testAuditTamper(t *testing.T, b Backend) {
	if b.Exec == nil {
		t.Fatal("Backend.Exec is required for the tamper test")
	}
	cases := []struct {
		name  string
		stmts []string
		seq   int64
		kind  string
	}{
		{"update actor", []string{`UPDATE audit_log SET actor = 'mallory' WHERE seq = 3`}, 3, audit.ProblemAltered},
		{"update metadata", []string{`UPDATE audit_log SET metadata = '{"route":"nothing"}' WHERE seq = 4`}, 4, audit.ProblemAltered},
		{"delete a row", []string{`DELETE FROM audit_log WHERE seq = 2`}, 2, audit.ProblemDeleted},
		{"delete the first row", []string{`DELETE FROM audit_log WHERE seq = 1`}, 1, audit.ProblemDeleted},
		{"insert a forged row", []string{`INSERT INTO audit_log (seq, at, event_type, actor, target, metadata, ip, mac)
			SELECT 6, at, 'ban.remove', 'mallory', target, metadata, ip, mac FROM audit_log WHERE seq = 5`}, 6, audit.ProblemAltered},
		{"delete then insert a replacement", []string{`DELETE FROM audit_log WHERE seq = 3`,
			`INSERT INTO audit_log (seq, at, event_type, actor, target, metadata, ip, mac)
			SELECT 3, at, event_type, 'mallory', target, metadata, ip, mac FROM audit_log WHERE seq = 2`}, 3, audit.ProblemAltered},
		{"delete a prefix and move the anchor", []string{`DELETE FROM audit_log WHERE seq <= 2`,
			`UPDATE audit_anchor SET seq = 2, mac = (SELECT mac FROM audit_log WHERE seq = 3) WHERE id = 1`}, 3, audit.ProblemAltered},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := b.env(t)
			_, l := e.auditLog()
			e.record(l, 5)
			if rep := e.verify(l); rep.Problem != nil {
				t.Fatalf("untouched chain: %+v", rep.Problem)
			}
			for _, s := range tc.stmts {
				b.Exec(t, e.data, s)
			}
			rep := e.verify(l)
			if rep.Problem == nil || rep.Problem.Seq != tc.seq || rep.Problem.Kind != tc.kind {
				t.Fatalf("verify = %+v, want %s at row %d", rep.Problem, tc.kind, tc.seq)
			}
		})
	}
	t.Run("anchor moved with its MAC", func(t *testing.T) {
		// A prefix deleted with the anchor set exactly as a prune would
		// set it: only the missing audit.prune row gives it away.
		e := b.env(t)
		_, l := e.auditLog()
		e.record(l, 5)
		b.Exec(t, e.data, `UPDATE audit_anchor SET seq = 2, mac = (SELECT mac FROM audit_log WHERE seq = 2) WHERE id = 1`)
		b.Exec(t, e.data, `DELETE FROM audit_log WHERE seq <= 2`)
		rep := e.verify(l)
		if rep.Problem == nil || rep.Problem.Kind != audit.ProblemAnchor || rep.Problem.Seq != 2 {
			t.Fatalf("verify = %+v, want an anchor problem at row 2", rep.Problem)
		}
	})
	t.Run("wrong key", func(t *testing.T) {
		e := b.env(t)
		al, l := e.auditLog()
		e.record(l, 2)
		rep, err := audit.Verify(e.ctx, al, []byte("another key, another key, another key!"), nil)
		must(t, err, "verify")
		if rep.Problem == nil || rep.Problem.Seq != 1 {
			t.Fatalf("verify with another key = %+v", rep.Problem)
		}
	})
}

// testBans: add, list, remove, idempotently, by hash only.
func testBans(t *testing.T, b Backend) {
	e := b.env(t)
	bs, ok := e.s.(store.Bans)
	if !ok {
		t.Fatalf("%T does not implement store.Bans", e.s)
	}
	added, err := bs.AddBan(e.ctx, "h:00000000000000aa")
	must(t, err, "add")
	if !added {
		t.Fatal("first add: added = false")
	}
	if added, err := bs.AddBan(e.ctx, "h:00000000000000aa"); err != nil || added {
		t.Fatalf("second add = %v, %v; want false, nil", added, err)
	}
	e.clock.Advance(time.Minute)
	_, err = bs.AddBan(e.ctx, "h:00000000000000bb")
	must(t, err, "add second")
	list, err := bs.Bans(e.ctx)
	must(t, err, "list")
	if len(list) != 2 || list[0].Hash != "h:00000000000000aa" || list[1].Hash != "h:00000000000000bb" || !bucketed(list[0].CreatedAt) {
		t.Fatalf("bans = %+v", list)
	}
	if removed, err := bs.RemoveBan(e.ctx, "h:00000000000000aa"); err != nil || !removed {
		t.Fatalf("remove = %v, %v", removed, err)
	}
	if removed, err := bs.RemoveBan(e.ctx, "h:00000000000000aa"); err != nil || removed {
		t.Fatalf("second remove = %v, %v; want false, nil", removed, err)
	}
	if list, _ := bs.Bans(e.ctx); len(list) != 1 {
		t.Fatalf("bans after remove = %+v", list)
	}
}

// testAuditAndBanSchema proves by introspection that the audit and ban
// tables keep exactly their documented columns: no raw DID column, no
// address column beyond the optional audit ip.
func testAuditAndBanSchema(t *testing.T, b Backend) {
	b.env(t).exactColumns(map[string][]string{
		"audit_log":    {"actor", "at", "event_type", "ip", "mac", "metadata", "seq", "target"},
		"audit_anchor": {"id", "mac", "seq"},
		"bans":         {"created_at", "did_hash"},
	})
}
