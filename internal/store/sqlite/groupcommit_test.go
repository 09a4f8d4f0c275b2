package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/store"
)

func openForGroupTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.Context(), Config{Path: filepath.Join(t.TempDir(), "g.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.write(t.Context(), func(tx writeTx) error {
		_, err := tx.ExecContext(t.Context(), `CREATE TABLE g (name TEXT PRIMARY KEY)`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

func rowsOf(t *testing.T, s *Store) []string {
	t.Helper()
	rows, err := s.r.QueryContext(t.Context(), `SELECT name FROM g ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}

// TestGroupCommit queues writes behind a write that holds the writer, so
// they commit as one group, and checks that they shared one transaction
// and that a failing, a panicking and a cancelled write each fail alone.
func TestGroupCommit(t *testing.T) {
	s := openForGroupTest(t)
	ctx := t.Context()
	hold, held := make(chan struct{}), make(chan struct{})
	var first error
	var wg sync.WaitGroup
	wg.Go(func() {
		first = s.write(ctx, func(tx writeTx) error {
			close(held)
			<-hold
			_, err := tx.ExecContext(ctx, `INSERT INTO g (name) VALUES ('first')`)
			return err
		})
	})
	<-held

	const n = 12
	errs := make([]error, n)
	seen := make([]int, n) // rows of this group visible to each write
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for i := range n {
		wg.Go(func() {
			wctx := ctx
			if i == 5 {
				wctx = cancelled
			}
			errs[i] = s.write(wctx, func(tx writeTx) error {
				if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM g WHERE name LIKE 'w%'`).Scan(&seen[i]); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO g (name) VALUES (?)`, fmt.Sprintf("w%02d", i)); err != nil {
					return err
				}
				switch i {
				case 3:
					return errors.New("refused")
				case 7:
					panic("boom")
				}
				return nil
			})
		})
	}
	// Release the writer once the others wait for it (the cancelled one
	// may have given up already). This waits for a state, not a time.
	for s.gc.waiting.Load() < n-1 {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()

	if first != nil {
		t.Fatalf("first write: %v", first)
	}
	for i, err := range errs {
		switch i {
		case 3:
			if err == nil || err.Error() != "refused" {
				t.Errorf("write 3: err = %v, want its own error", err)
			}
		case 5:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("write 5 (cancelled before it ran): err = %v", err)
			}
		case 7:
			if err == nil || !strings.Contains(err.Error(), "panicked") {
				t.Errorf("write 7: err = %v, want the panic as an error", err)
			}
		default:
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		}
	}
	got := rowsOf(t, s)
	want := []string{"first"}
	for i := range n {
		if i != 3 && i != 5 && i != 7 {
			want = append(want, fmt.Sprintf("w%02d", i))
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("rows = %v, want %v", got, want)
	}
	// Writes of one group see the rows of the writes before them in it,
	// uncommitted: they share a transaction. Every write was queued
	// before the writer came free, so all went in one group: the last to
	// run saw the rows of all the others that ran before it (the
	// cancelled write never ran; a refused write's row was visible until
	// its savepoint rolled back).
	if m := slices.Max(seen); m < n-4 {
		t.Errorf("the last write of the group saw %d rows of it, want at least %d: no group commit (seen %v)", m, n-4, seen)
	}
	// The writer's pool stats count the groups and the writes they carried
	// (the table's creation, the first write, and at least the n-1 writes
	// that were not cancelled), which makes the mean group size above 1.
	stats := s.PoolStats()
	if len(stats) != 2 || stats[0].Pool != "read" || stats[1].Pool != "write" {
		t.Fatalf("pool stats %+v, want the read pool and the writer", stats)
	}
	if w := stats[1]; w.GroupedWrites < n+1 || w.GroupedWrites <= w.Groups {
		t.Errorf("writer stats %+v: want at least %d grouped writes in fewer groups", w, n+1)
	}
}

// TestWriteIgnoresCancellationOnceStarted: a caller cancelled in the middle
// of its write still gets the write whole, rather than an interrupt that
// would roll back the group's transaction.
func TestWriteIgnoresCancellationOnceStarted(t *testing.T) {
	s := openForGroupTest(t)
	ctx, cancel := context.WithCancel(t.Context())
	err := s.write(ctx, func(tx writeTx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO g (name) VALUES ('a')`); err != nil {
			return err
		}
		cancel()
		_, err := tx.ExecContext(ctx, `INSERT INTO g (name) VALUES ('b')`)
		return err
	})
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	if got := rowsOf(t, s); strings.Join(got, ",") != "a,b" {
		t.Fatalf("rows = %v", got)
	}
}

// TestWriteAfterClose is refused, not hung.
func TestWriteAfterClose(t *testing.T) {
	s := openForGroupTest(t)
	s.Close()
	err := s.write(t.Context(), func(tx writeTx) error { return nil })
	if !errors.Is(err, errClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// TestWriteWhileLockedIsUnavailable: another process holding the database's
// write lock past the busy timeout makes a write fail as
// store.ErrUnavailable (a 503 for the client), with nothing written; once
// the lock is gone, writes go through again.
func TestWriteWhileLockedIsUnavailable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "locked.db")
	s, err := Open(t.Context(), Config{Path: path, BusyTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateConvo(t.Context(), store.NewConvo{ID: "c", CreatorDID: "did:plc:a", CipherSuite: "x",
		Members: []store.NewMember{{MemberDID: "did:plc:a", UserDID: "did:plc:a"}}}); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	if _, err := other.ExecContext(t.Context(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	msg := store.NewMessage{ConvoID: "c", MsgID: "m1", Ciphertext: make([]byte, 512), PaddedSize: 512}
	if _, err := s.AppendMessage(t.Context(), msg); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("append while another connection holds the lock: %v, want ErrUnavailable", err)
	}
	if _, err := other.ExecContext(t.Context(), `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	m, err := s.AppendMessage(t.Context(), msg)
	if err != nil || m.Seq != 1 {
		t.Fatalf("append after the lock is gone: seq %d, %v; want seq 1 (the refused append wrote nothing)", m.Seq, err)
	}
}
