package push_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-chat/cairn-caddy/internal/push"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/postgres"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

var backends = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"sqlite", func(t *testing.T) store.Store {
		s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db")})
		must(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}},
	{"postgres", func(t *testing.T) store.Store {
		s, err := postgres.Open(t.Context(), postgres.Config{URL: testenv.Postgres(t)})
		must(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// recorder is a provider that records the tokens it was asked to wake.
type recorder struct {
	mu    sync.Mutex
	woken []string
	gone  map[string]bool
}

func (r *recorder) Send(_ context.Context, tok []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.woken = append(r.woken, string(tok))
	if r.gone[string(tok)] {
		return push.ErrUnregistered
	}
	return nil
}

type outcomes struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *outcomes) PushOutcome(provider, outcome string) {
	o.mu.Lock()
	o.n[provider+"/"+outcome]++
	o.mu.Unlock()
}

// setup makes two conversations: alice (devices a1, a2) and bob (b1) in
// c1, alice and carol (c1) in c2, each device with a token.
func setup(t *testing.T, s store.Store, sealer *push.Sealer) {
	t.Helper()
	ctx := t.Context()
	m := func(user, dev string) store.NewMember {
		return store.NewMember{MemberDID: user + "#" + dev, UserDID: user, DeviceID: dev}
	}
	_, err := s.CreateConvo(ctx, store.NewConvo{ID: "c1", CreatorDID: "did:plc:alice", CipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
		Members: []store.NewMember{m("did:plc:alice", "a1"), m("did:plc:alice", "a2"), m("did:plc:bob", "b1")}})
	must(t, err)
	_, err = s.CreateConvo(ctx, store.NewConvo{ID: "c2", CreatorDID: "did:plc:alice", CipherSuite: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519",
		Members: []store.NewMember{m("did:plc:alice", "a1"), m("did:plc:carol", "c1")}})
	must(t, err)
	for _, d := range [][2]string{{"did:plc:alice", "a1"}, {"did:plc:alice", "a2"}, {"did:plc:bob", "b1"}, {"did:plc:carol", "c1"}} {
		_, err := s.RegisterDevice(ctx, store.Device{OwnerDID: d[0], DeviceID: d[1], Name: d[1]}, 10)
		must(t, err)
		sealed, err := sealer.Seal(d[0], d[1], push.ProviderAPNs, []byte("tok-"+d[1]))
		must(t, err)
		must(t, s.PutPushToken(ctx, store.PushToken{OwnerDID: d[0], DeviceID: d[1], Provider: push.ProviderAPNs, Sealed: sealed}))
	}
}

// TestSenderWakesEachDeviceOnce: many changes to two conversations within
// one round wake each member device once; a token the provider reports
// gone is deleted.
func TestSenderWakesEachDeviceOnce(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.open(t)
			k, _ := push.GenerateKeys()
			sealer, _ := push.NewSealer(k.Seal)
			setup(t, s, sealer)
			rec := &recorder{gone: map[string]bool{"tok-b1": true}}
			obs := &outcomes{n: map[string]int{}}
			q := push.NewQueue(16)
			snd := &push.Sender{Queue: q, Store: s, Sealer: sealer, Providers: map[string]push.Provider{push.ProviderAPNs: rec}, Observer: obs}
			for range 50 {
				q.Add("c1")
				q.Add("c2")
			}
			snd.Flush(t.Context())
			slices.Sort(rec.woken)
			if want := []string{"tok-a1", "tok-a2", "tok-b1", "tok-c1"}; !slices.Equal(rec.woken, want) {
				t.Fatalf("woken %v, want %v (each device once)", rec.woken, want)
			}
			if obs.n["apns/sent"] != 3 || obs.n["apns/unregistered"] != 1 {
				t.Errorf("outcomes %v", obs.n)
			}
			// bob's token is gone: the next round does not wake b1.
			rec.woken = nil
			q.Add("c1")
			snd.Flush(t.Context())
			slices.Sort(rec.woken)
			if want := []string{"tok-a1", "tok-a2"}; !slices.Equal(rec.woken, want) {
				t.Fatalf("after the unregistered token: woken %v, want %v", rec.woken, want)
			}
			// A deleted device is not woken.
			_, err := s.DeleteDevice(t.Context(), "did:plc:alice", "a2")
			must(t, err)
			rec.woken = nil
			q.Add("c1")
			snd.Flush(t.Context())
			if strings.Join(rec.woken, ",") != "tok-a1" {
				t.Fatalf("after deleting a2: woken %v", rec.woken)
			}
		})
	}
}
