package realtime

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/caller"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

const suite = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519"

// guard bounds how long a test waits for something that should happen at
// once; it only keeps a broken test from hanging, it asserts no timing.
const guard = 20 * time.Second

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type backend struct {
	name string
	// settle is the Config.Settle the tests use for the backend; zero
	// for a backend whose traits say its cursors are ordered.
	settle time.Duration
	open   func(t *testing.T, now func() time.Time) store.Store
}

func backends() []backend {
	return []backend{
		{"sqlite", 0, func(t *testing.T, now func() time.Time) store.Store {
			s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db"), Now: now})
			testenv.Must(t, err, "open sqlite")
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"postgres", 2 * time.Second, func(t *testing.T, now func() time.Time) store.Store {
			s, err := postgres.Open(context.Background(), postgres.Config{URL: testenv.Postgres(t), Now: now})
			testenv.Must(t, err, "open postgres")
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
}

// env is a store and a hub over it.
type env struct {
	t   *testing.T
	st  store.Store
	hub *Hub
}

func newEnv(t *testing.T, b backend, cfg Config) *env {
	t.Helper()
	if cfg.Store == nil {
		cfg.Store = b.open(t, cfg.Now)
	}
	if cfg.Settle == 0 {
		cfg.Settle = b.settle
	}
	st, ok := cfg.Store.(store.Store)
	if !ok {
		t.Fatalf("the test store %T does not write", cfg.Store)
	}
	h, err := New(cfg)
	testenv.Must(t, err, "new hub")
	t.Cleanup(func() { h.Close() })
	return &env{t: t, st: st, hub: h}
}

func who(did string) caller.Identity { return caller.Identity{DID: did} }

// convo creates a conversation with the given user DIDs as members.
func (e *env) convo(id string, dids ...string) {
	e.t.Helper()
	var ms []store.NewMember
	for i, d := range dids {
		role := store.RoleMember
		if i == 0 {
			role = store.RoleAdmin
		}
		ms = append(ms, store.NewMember{MemberDID: d, UserDID: d, Role: role})
	}
	_, err := e.st.CreateConvo(context.Background(), store.NewConvo{ID: id, CreatorDID: dids[0], CipherSuite: suite, Members: ms})
	testenv.Must(e.t, err, "create convo "+id)
	e.hub.Notify(id)
}

// send appends a message and wakes the hub, as delivery's OnChange does.
func (e *env) send(convoID, msgID string) {
	e.t.Helper()
	_, err := e.st.AppendMessage(context.Background(), store.NewMessage{ConvoID: convoID, MsgID: msgID, Ciphertext: []byte("ct-" + msgID), PaddedSize: 512})
	testenv.Must(e.t, err, "send "+msgID)
	e.hub.Notify(convoID)
}

func (e *env) remove(convoID, did string) {
	e.t.Helper()
	_, err := e.st.RemoveMembers(context.Background(), convoID, []string{did}, store.Removed, nil)
	testenv.Must(e.t, err, "remove member")
	e.hub.Notify(convoID)
}

func (e *env) subscribe(req Request) *Subscription {
	e.t.Helper()
	s, err := e.hub.Subscribe(context.Background(), req)
	testenv.Must(e.t, err, "subscribe")
	e.t.Cleanup(s.Close)
	return s
}

// next returns the subscription's next event, failing if it ends first.
func next(t *testing.T, s *Subscription) Event {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if !ok {
			t.Fatalf("stream ended early: %v", s.Err())
		}
		return *ev
	case <-time.After(guard):
		t.Fatal("no event")
	}
	return Event{}
}

// messages reads n message events and returns "convo/msgId" for each.
func messages(t *testing.T, s *Subscription, n int) ([]string, string) {
	t.Helper()
	var out []string
	var last string
	for len(out) < n {
		ev := next(t, s)
		if ev.Type != EventMessage {
			t.Fatalf("event %d: type %d (%q), want a message", len(out), ev.Type, ev.Info)
		}
		out = append(out, ev.ConvoID+"/"+ev.Message.MsgID)
		last = ev.Cursor
	}
	return out, last
}

// ended waits for the subscription to end and returns its error.
func ended(t *testing.T, s *Subscription) error {
	t.Helper()
	select {
	case <-s.Done():
		return s.Err()
	case <-time.After(guard):
		t.Fatal("stream did not end")
	}
	return nil
}

func msgIDs(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return out
}

func is(err, target error) bool { return errors.Is(err, target) }

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func mustBase64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
