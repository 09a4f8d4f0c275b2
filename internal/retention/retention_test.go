package retention

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

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
	open func(t *testing.T, now func() time.Time) store.Store
}

func backends() []backend {
	return []backend{
		{"sqlite", func(t *testing.T, now func() time.Time) store.Store {
			s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db"), Now: now})
			testenv.Must(t, err, "open sqlite")
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"postgres", func(t *testing.T, now func() time.Time) store.Store {
			s, err := postgres.Open(context.Background(), postgres.Config{URL: testenv.Postgres(t), Now: now})
			testenv.Must(t, err, "open postgres")
			t.Cleanup(func() { s.Close() })
			return s
		}},
	}
}

const day = 24 * time.Hour

// TestRunOncePurgesWhatAgedOut checks that the worker passes each retention
// age to its purge: with messages at 30 days and events at 7, a message of
// 10 days keeps its message row but loses its event row.
func TestRunOncePurgesWhatAgedOut(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			s := b.open(t, clk.Now)
			_, err := s.CreateConvo(ctx, store.NewConvo{ID: "c1", CreatorDID: "did:plc:alice", CipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
				Members: []store.NewMember{{MemberDID: "did:plc:alice", UserDID: "did:plc:alice", Role: store.RoleAdmin}}})
			testenv.Must(t, err, "create convo")
			// A rejoin request nobody answered expires with its TTL.
			_, err = s.MarkNeedsRejoin(ctx, &store.NewPendingAddition{ID: "rq", ConvoID: "c1", UserDID: "did:plc:alice", DeviceID: "a2",
				Rejoin: true, TTL: 7 * day}, "c1", "did:plc:alice#a2")
			testenv.Must(t, err, "queue a rejoin request")
			// A chat request unanswered past its 7-day expiry is closed
			// (its held message deleted) by the same pass.
			_, err = s.CreateChatRequest(ctx, store.ChatRequest{ID: "cr", SenderDID: "did:plc:sam", RecipientDID: "did:plc:alice",
				ExpiresAt: clk.Now().Add(7 * day)}, []store.HeldMessage{{Ciphertext: make([]byte, 512), PaddedSize: 512}}, []byte("pair"))
			testenv.Must(t, err, "send a chat request")
			send := func(id string) {
				_, err := s.AppendMessage(ctx, store.NewMessage{ConvoID: "c1", MsgID: id, Ciphertext: make([]byte, 64), PaddedSize: 64})
				testenv.Must(t, err, "send "+id)
			}
			send("old")
			clk.Advance(25 * day)
			send("middle")
			clk.Advance(10 * day) // old: 35 days, middle: 10 days

			w, err := New(s, Config{}, nil)
			testenv.Must(t, err, "new worker")
			r, err := w.RunOnce(ctx)
			testenv.Must(t, err, "run")
			if r.Skipped || r.Messages != 1 {
				t.Fatalf("report %+v: want exactly the 35-day-old message purged", r)
			}
			if r.Events < 2 {
				t.Errorf("report %+v: the events of both messages (35 and 10 days) are past 7 days", r)
			}
			if r.DeviceAdditions != 1 {
				t.Errorf("report %+v: want the 7-day rejoin request purged after 35 days", r)
			}
			if r.ChatRequests != 1 {
				t.Errorf("report %+v: want the expired chat request closed", r)
			}
			if cr, err := s.ChatRequest(ctx, "cr"); err != nil || cr.Status != store.ChatRequestExpired {
				t.Errorf("chat request after the pass: %+v, %v", cr, err)
			}
			if _, _, err := s.CloseChatRequest(ctx, "cr", store.ChatRequestAccepted); !errors.Is(err, store.ErrNotPending) {
				t.Errorf("accepting the expired chat request: %v, want ErrNotPending", err)
			}
			page, err := s.Messages(ctx, "c1", 0, 10)
			testenv.Must(t, err, "messages")
			if len(page.Messages) != 1 || page.Messages[0].MsgID != "middle" {
				t.Errorf("left %+v, want only the 10-day-old message", page.Messages)
			}

			again, err := w.RunOnce(ctx)
			testenv.Must(t, err, "second run")
			if again.Messages+again.Events+again.Welcomes+again.KeyPackages+again.Idempotency+again.DeviceAdditions+again.ChatRequests != 0 {
				t.Errorf("a second pass deleted more: %+v", again)
			}
		})
	}
}

// TestOneNodeAtATime holds the retention lock from a second store instance
// on the same PostgreSQL database, as another gateway node would.
func TestOneNodeAtATime(t *testing.T) {
	ctx := context.Background()
	url := testenv.Postgres(t)
	a, err := postgres.Open(ctx, postgres.Config{URL: url})
	testenv.Must(t, err, "open node A")
	defer a.Close()
	b, err := postgres.Open(ctx, postgres.Config{URL: url})
	testenv.Must(t, err, "open node B")
	defer b.Close()

	unlock, ok, err := b.TryLock(ctx, LockName)
	if err != nil || !ok {
		t.Fatalf("node B could not take the lock: %v %v", ok, err)
	}
	w, _ := New(a, Config{}, nil)
	r, err := w.RunOnce(ctx)
	if err != nil || !r.Skipped {
		t.Fatalf("node A ran while B held the lock: %+v %v", r, err)
	}
	unlock()
	if r, err := w.RunOnce(ctx); err != nil || r.Skipped {
		t.Fatalf("node A skipped after B released the lock: %+v %v", r, err)
	}
}

func TestConfigValidation(t *testing.T) {
	if err := (Config{Messages: day, Events: 2 * day}).Validate(); err == nil {
		t.Error("events outliving messages accepted")
	}
	if err := (Config{Interval: time.Millisecond}).Validate(); err == nil {
		t.Error("a sub-second interval accepted")
	}
	w, err := New(&nopStore{}, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := w.Config(); c.Messages != DefaultMessages || c.Events != DefaultEvents || c.ConsumedWelcomes != DefaultConsumedWelcomes || c.Idempotency != DefaultIdempotency || c.KeyPackagesPerDevice != DefaultKeyPackagesPerDev {
		t.Errorf("defaults not applied: %+v", c)
	}
}

// nopStore satisfies store.Maintenance for the configuration test only.
type nopStore struct{ store.Maintenance }

// TestPrunesTheAuditLog checks that a pass prunes the audit log after
// Config.Audit (90 days by default) through the audit package, so the
// chain still verifies.
func TestPrunesTheAuditLog(t *testing.T) {
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			s := b.open(t, clk.Now)
			log, err := audit.New(audit.Config{Store: s.(store.AuditLog), Key: []byte("retention-test-key-retention-test-key"), Now: clk.Now})
			testenv.Must(t, err, "audit log")
			for range 3 {
				testenv.Must(t, log.Record(ctx, audit.Event{Type: audit.TypeConfigLoad}), "record")
			}
			clk.Advance(89 * day)
			testenv.Must(t, log.Record(ctx, audit.Event{Type: audit.TypeConfigLoad}), "record")
			clk.Advance(2 * day)
			w, err := New(s, Config{}, nil)
			testenv.Must(t, err, "new worker")
			w.PruneAudit(log)
			r, err := w.RunOnce(ctx)
			testenv.Must(t, err, "run")
			if r.Audit != 3 {
				t.Fatalf("report %+v: want the three 91-day-old audit rows pruned", r)
			}
			rep, err := log.Verify(ctx, nil)
			testenv.Must(t, err, "verify")
			if rep.Problem != nil || rep.Anchor.Seq != 3 || rep.Rows != 2 {
				t.Fatalf("verify after the pass = %+v (%+v)", rep, rep.Problem)
			}
		})
	}
}
