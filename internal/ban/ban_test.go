package ban_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/ban"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
)

var key = []byte("ban-test-key-ban-test-key-ban-test-key!!")

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// flaky is a store.Bans whose Bans can be made to fail.
type flaky struct {
	inner store.Bans
	fail  bool
}

func (f *flaky) AddBan(ctx context.Context, h string) (bool, error) { return f.inner.AddBan(ctx, h) }
func (f *flaky) RemoveBan(ctx context.Context, h string) (bool, error) {
	return f.inner.RemoveBan(ctx, h)
}

func (f *flaky) Bans(ctx context.Context) ([]store.Ban, error) {
	if f.fail {
		return nil, errors.New("database down")
	}
	return f.inner.Bans(ctx)
}

func newLists(t *testing.T) (*ban.List, *ban.List, *flaky, *clock) {
	t.Helper()
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h, _ := redact.New(key)
	c := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	f := &flaky{inner: s}
	a, err := ban.New(ban.Config{Store: f, Hasher: h, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ban.New(ban.Config{Store: s, Hasher: h, Now: c.now})
	return a, b, f, c
}

func TestBanReachesOtherNodesWithinRefresh(t *testing.T) {
	node1, node2, _, c := newLists(t)
	ctx := t.Context()
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	if banned, err := node2.Banned(ctx, did); err != nil || banned {
		t.Fatalf("before: %v, %v", banned, err)
	}
	hash, added, err := node1.Add(ctx, did)
	if err != nil || !added || hash != node1.Hash(did) || strings.Contains(hash, "ewvi7") {
		t.Fatalf("Add = %q, %v, %v", hash, added, err)
	}
	if banned, _ := node1.Banned(ctx, did); !banned {
		t.Fatal("the node that banned does not refuse at once")
	}
	if banned, _ := node2.Banned(ctx, did); banned {
		t.Fatal("node 2 reloaded before its refresh interval")
	}
	c.add(ban.DefaultRefresh)
	if banned, _ := node2.Banned(ctx, did); !banned {
		t.Fatal("node 2 does not refuse after its refresh interval")
	}
	if _, added, _ := node1.Add(ctx, did); added {
		t.Fatal("second Add reported added")
	}
	if removed, err := node1.Remove(ctx, hash); err != nil || !removed {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	if banned, _ := node1.Banned(ctx, did); banned {
		t.Fatal("still banned after Remove")
	}
}

func TestBannedFailsClosedWhenStale(t *testing.T) {
	l, _, f, c := newLists(t)
	ctx := t.Context()
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	if _, _, err := l.Add(ctx, did); err != nil {
		t.Fatal(err)
	}
	if banned, _ := l.Banned(ctx, did); !banned {
		t.Fatal("not banned")
	}
	f.fail = true
	c.add(ban.DefaultRefresh)
	if banned, err := l.Banned(ctx, did); err != nil || !banned {
		t.Fatalf("within the staleness bound: %v, %v; want the cached answer", banned, err)
	}
	c.add(ban.DefaultMaxStale)
	if _, err := l.Banned(ctx, "did:plc:someoneelse"); err == nil {
		t.Fatal("a set older than the staleness bound was used: bans must fail closed")
	}
	f.fail = false
	if banned, err := l.Banned(ctx, did); err != nil || !banned {
		t.Fatalf("after recovery: %v, %v", banned, err)
	}
}

func TestCheckDID(t *testing.T) {
	for _, ok := range []string{"did:plc:ewvi7nxzyoun6zhxrhs64oiz", "did:web:example.com", "did:web:localhost%3A8080"} {
		if err := ban.CheckDID(ok); err != nil {
			t.Errorf("CheckDID(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "did:", "did:plc", "did:plc:", "did:PLC:x", "did:plc:x#dev", "did:plc:a b", "alice.example.com", "did:web:x:", strings.Repeat("did:plc:x", 300)} {
		if err := ban.CheckDID(bad); err == nil {
			t.Errorf("CheckDID(%q) accepted", bad)
		}
	}
}

func FuzzCheckDID(f *testing.F) {
	for _, s := range []string{"did:plc:abc", "did:web:a.b", "did:x:y#z", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ban.CheckDID(s) != nil {
			return
		}
		if !strings.HasPrefix(s, "did:") || strings.ContainsAny(s, "#/? \n") || len(s) > 2048 {
			t.Fatalf("accepted %q", s)
		}
	})
}
