// Package certstoretest is the conformance suite of the certmagic.Storage
// contract as certmagic relies on it. Every storage cairn-caddy ships must
// pass it; it also runs against certmagic's own FileStorage, which proves
// the suite asks for what certmagic's reference implementation does.
//
// It is imported only from tests.
package certstoretest

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// Run runs the suite. newStorage returns an empty storage for one subtest.
func Run(t *testing.T, newStorage func(t *testing.T) certmagic.Storage) {
	t.Run("StoreLoad", func(t *testing.T) { testStoreLoad(t, newStorage(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newStorage(t)) })
	t.Run("ExistsStat", func(t *testing.T) { testExistsStat(t, newStorage(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, newStorage(t)) })
	t.Run("List", func(t *testing.T) { testList(t, newStorage(t)) })
	t.Run("Lock", func(t *testing.T) { testLock(t, newStorage(t)) })
	t.Run("LockExclusive", func(t *testing.T) { testLockExclusive(t, newStorage(t)) })
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustStore(t *testing.T, s certmagic.Storage, key, value string) {
	t.Helper()
	if err := s.Store(ctx(t), key, []byte(value)); err != nil {
		t.Fatalf("Store(%q): %v", key, err)
	}
}

func testStoreLoad(t *testing.T, s certmagic.Storage) {
	mustStore(t, s, "suite/a/one.crt", "first")
	mustStore(t, s, "suite/a/one.crt", "second value")
	got, err := s.Load(ctx(t), "suite/a/one.crt")
	if err != nil || string(got) != "second value" {
		t.Fatalf("Load after overwrite = %q, %v; want %q", got, err, "second value")
	}
	empty := "suite/empty"
	mustStore(t, s, empty, "")
	if got, err := s.Load(ctx(t), empty); err != nil || len(got) != 0 {
		t.Fatalf("Load(empty) = %q, %v", got, err)
	}
	// Binary values survive unchanged.
	bin := string([]byte{0, 1, 2, 0xff, '\n', 0})
	mustStore(t, s, "suite/bin", bin)
	if got, err := s.Load(ctx(t), "suite/bin"); err != nil || string(got) != bin {
		t.Fatalf("Load(bin) = %x, %v", got, err)
	}
}

func testMissing(t *testing.T, s certmagic.Storage) {
	mustStore(t, s, "suite/present", "x")
	if _, err := s.Load(ctx(t), "suite/absent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(absent) error = %v, want fs.ErrNotExist", err)
	}
	if _, err := s.Stat(ctx(t), "suite/absent"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat(absent) error = %v, want fs.ErrNotExist", err)
	}
	if _, err := s.List(ctx(t), "suite/absent", false); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("List(absent) error = %v, want fs.ErrNotExist", err)
	}
	if s.Exists(ctx(t), "suite/absent") {
		t.Error("Exists(absent) = true")
	}
	if err := s.Delete(ctx(t), "suite/absent"); err != nil {
		t.Errorf("Delete(absent) = %v, want nil", err)
	}
}

func testExistsStat(t *testing.T, s certmagic.Storage) {
	before := time.Now().Add(-time.Minute)
	mustStore(t, s, "suite/dir/leaf.key", "12345")
	if !s.Exists(ctx(t), "suite/dir/leaf.key") || !s.Exists(ctx(t), "suite/dir") {
		t.Fatal("Exists is false for a stored key or its directory")
	}
	info, err := s.Stat(ctx(t), "suite/dir/leaf.key")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "suite/dir/leaf.key" || !info.IsTerminal || info.Size != 5 || info.Modified.Before(before) {
		t.Errorf("Stat(leaf) = %+v; want terminal, size 5, modified now", info)
	}
	info, err = s.Stat(ctx(t), "suite/dir")
	if err != nil {
		t.Fatal(err)
	}
	if info.Key != "suite/dir" || info.IsTerminal {
		t.Errorf("Stat(dir) = %+v; want a non-terminal key", info)
	}
}

func testDelete(t *testing.T, s certmagic.Storage) {
	for _, k := range []string{"suite/d/x/1", "suite/d/x/2", "suite/d/y", "suite/dx", "suite/d.keep"} {
		mustStore(t, s, k, k)
	}
	if err := s.Delete(ctx(t), "suite/d/y"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx(t), "suite/d/y") {
		t.Error("a deleted key still exists")
	}
	// Deleting a directory deletes what is below it, and nothing that only
	// shares its name as a string prefix.
	if err := s.Delete(ctx(t), "suite/d"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"suite/d/x/1", "suite/d/x/2", "suite/d/x", "suite/d"} {
		if s.Exists(ctx(t), k) {
			t.Errorf("%s exists after deleting its directory", k)
		}
	}
	for _, k := range []string{"suite/dx", "suite/d.keep"} {
		if got, err := s.Load(ctx(t), k); err != nil || string(got) != k {
			t.Errorf("%s = %q, %v after deleting a sibling directory", k, got, err)
		}
	}
}

func testList(t *testing.T, s certmagic.Storage) {
	for _, k := range []string{
		"suite/certs/ca/a.example/a.example.crt",
		"suite/certs/ca/a.example/a.example.key",
		"suite/certs/ca/b.example/b.example.crt",
		"suite/certs/other.json",
		"suite/certsx/not-below",
		"suite/certs_/not-below-either",
	} {
		mustStore(t, s, k, "v")
	}
	cases := []struct {
		dir       string
		recursive bool
		want      []string
	}{
		{"suite/certs", false, []string{"suite/certs/ca", "suite/certs/other.json"}},
		{"suite/certs/", false, []string{"suite/certs/ca", "suite/certs/other.json"}},
		{"suite/certs/ca", false, []string{"suite/certs/ca/a.example", "suite/certs/ca/b.example"}},
		{"suite/certs", true, []string{
			"suite/certs/ca",
			"suite/certs/ca/a.example",
			"suite/certs/ca/a.example/a.example.crt",
			"suite/certs/ca/a.example/a.example.key",
			"suite/certs/ca/b.example",
			"suite/certs/ca/b.example/b.example.crt",
			"suite/certs/other.json",
		}},
		{"suite/certs/ca/b.example", true, []string{"suite/certs/ca/b.example/b.example.crt"}},
		// A value lists no children.
		{"suite/certs/other.json", false, nil},
	}
	for _, c := range cases {
		got, err := s.List(ctx(t), c.dir, c.recursive)
		if err != nil {
			t.Errorf("List(%q, %v): %v", c.dir, c.recursive, err)
			continue
		}
		sort.Strings(got)
		if !slices.Equal(got, c.want) {
			t.Errorf("List(%q, %v) = %q\nwant %q", c.dir, c.recursive, got, c.want)
		}
	}
}

func testLock(t *testing.T, s certmagic.Storage) {
	if err := s.Lock(ctx(t), "suite-lock"); err != nil {
		t.Fatal(err)
	}
	// Another name is independent.
	if err := s.Lock(ctx(t), "suite-other"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlock(ctx(t), "suite-other"); err != nil {
		t.Fatal(err)
	}
	// A held lock blocks until the caller gives up.
	short, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := s.Lock(short, "suite-lock"); err == nil {
		t.Fatal("Lock of a held lock succeeded")
	}
	if err := s.Unlock(ctx(t), "suite-lock"); err != nil {
		t.Fatal(err)
	}
	if err := s.Lock(ctx(t), "suite-lock"); err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	if err := s.Unlock(ctx(t), "suite-lock"); err != nil {
		t.Fatal(err)
	}
}

// testLockExclusive runs critical sections from several goroutines and
// checks that no two overlap.
func testLockExclusive(t *testing.T, s certmagic.Storage) {
	var inside, overlaps atomic.Int32
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 {
				if err := s.Lock(ctx(t), "suite-exclusive"); err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
				inside.Add(-1)
				if err := s.Unlock(ctx(t), "suite-exclusive"); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d critical sections overlapped", n)
	}
}
