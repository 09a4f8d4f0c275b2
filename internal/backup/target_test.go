package backup

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { r.Rows.Close() }

// runTargetSuite is the conformance suite every Target passes.
func runTargetSuite(t *testing.T, newTarget func(t *testing.T) Target) {
	ctx := context.Background()
	t.Run("empty", func(t *testing.T) {
		as, err := newTarget(t).List(ctx)
		testenv.Must(t, err, "list")
		if len(as) != 0 {
			t.Errorf("a new target lists %v", as)
		}
	})
	t.Run("put open list delete prune", func(t *testing.T) {
		tg := newTarget(t)
		t0 := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
		var names []string
		for i := range 4 {
			name := ArchiveName(t0.Add(time.Duration(i) * 24 * time.Hour))
			names = append(names, name)
			testenv.Must(t, tg.Put(ctx, name, bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 1000+i))), "put")
		}
		as, err := tg.List(ctx)
		testenv.Must(t, err, "list")
		if len(as) != 4 || as[0].Name != names[3] || as[3].Name != names[0] || as[0].Size != 1003 || !as[3].Created.Equal(t0) {
			t.Fatalf("list = %+v", as)
		}
		r, err := tg.Open(ctx, names[1])
		testenv.Must(t, err, "open")
		got, err := io.ReadAll(r)
		r.Close()
		testenv.Must(t, err, "read")
		if !bytes.Equal(got, bytes.Repeat([]byte{1}, 1001)) {
			t.Errorf("read back %d bytes, wrong content", len(got))
		}
		deleted, err := Prune(ctx, tg, 2)
		testenv.Must(t, err, "prune")
		if len(deleted) != 2 || deleted[0] != names[1] || deleted[1] != names[0] {
			t.Errorf("pruned %v", deleted)
		}
		if as, _ := tg.List(ctx); len(as) != 2 {
			t.Errorf("after prune: %v", as)
		}
		if _, err := tg.Open(ctx, names[0]); !errors.Is(err, ErrNoArchive) {
			t.Errorf("open a pruned archive: %v, want ErrNoArchive", err)
		}
	})
	t.Run("a failed put leaves nothing", func(t *testing.T) {
		tg := newTarget(t)
		name := ArchiveName(time.Now())
		err := tg.Put(ctx, name, io.MultiReader(bytes.NewReader(make([]byte, 100<<10)), failingReader{}))
		if err == nil {
			t.Fatal("put from a failing reader succeeded")
		}
		if as, _ := tg.List(ctx); len(as) != 0 {
			t.Errorf("a failed put left %v", as)
		}
	})
	t.Run("refuses other names", func(t *testing.T) {
		tg := newTarget(t)
		for _, name := range []string{"../x.cbk", "cairn-x.cbk", "notes.txt", "cairn-20261130T030000Z.cbk/../../etc"} {
			if err := tg.Put(ctx, name, bytes.NewReader(nil)); err == nil {
				t.Errorf("put %q succeeded", name)
			}
			if _, err := tg.Open(ctx, name); err == nil {
				t.Errorf("open %q succeeded", name)
			}
		}
	})
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestDirTarget(t *testing.T) {
	runTargetSuite(t, func(t *testing.T) Target { return Dir{Path: t.TempDir() + "/backups"} })
}
