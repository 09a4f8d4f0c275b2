package ratelimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// adaptiveBackend is one limiter and signal store over the same backend,
// and a way to let time pass on its clock.
type adaptiveBackend struct {
	lim     Limiter
	signals SignalStore
	// wait lets at least d pass on the backend's clock.
	wait func(d time.Duration)
}

// adaptiveBackends are the memory backends on a fake clock and the Redis
// backends on Redis's clock (real Redis through testenv).
var adaptiveBackends = []struct {
	name string
	open func(t *testing.T) adaptiveBackend
}{
	{"memory", func(t *testing.T) adaptiveBackend {
		c := newFakeClock()
		return adaptiveBackend{
			lim:     NewMemoryStore(MemoryConfig{Now: c.Now}),
			signals: NewMemorySignals(MemoryConfig{Now: c.Now}),
			wait:    c.Advance,
		}
	}},
	{"redis", func(t *testing.T) adaptiveBackend {
		client, prefix := testenv.Redis(t)
		lim, err := NewRedisStore(RedisConfig{Client: client, Prefix: prefix})
		testenv.Must(t, err, "redis store")
		sig, err := NewRedisSignals(RedisConfig{Client: client, Prefix: prefix})
		testenv.Must(t, err, "redis signals")
		return adaptiveBackend{lim: lim, signals: sig, wait: func(d time.Duration) { time.Sleep(d + time.Millisecond) }}
	}},
}

func TestSignalStores(t *testing.T) {
	ctx := context.Background()
	for _, b := range adaptiveBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("first seen and remembered", func(t *testing.T) {
				be := b.open(t)
				o := Observation{Forget: time.Hour}
				first, err := be.signals.Observe(ctx, "|did|a", o)
				testenv.Must(t, err, "observe")
				if first.Age > time.Second || first.Churn != 0 {
					t.Fatalf("first sighting = %+v, want age about 0 and no churn", first)
				}
				be.wait(50 * time.Millisecond)
				again, err := be.signals.Observe(ctx, "|did|a", o)
				testenv.Must(t, err, "observe")
				if again.Age < 50*time.Millisecond {
					t.Fatalf("second sighting age %s, want at least the 50ms waited", again.Age)
				}
				other, err := be.signals.Observe(ctx, "|did|b", o)
				testenv.Must(t, err, "observe")
				if other.Age >= 50*time.Millisecond {
					t.Fatalf("another account's first sighting has age %s", other.Age)
				}
			})
			t.Run("forgotten after forget", func(t *testing.T) {
				be := b.open(t)
				o := Observation{Forget: 100 * time.Millisecond}
				_, err := be.signals.Observe(ctx, "|did|a", o)
				testenv.Must(t, err, "observe")
				be.wait(200 * time.Millisecond)
				got, err := be.signals.Observe(ctx, "|did|a", o)
				testenv.Must(t, err, "observe")
				if got.Age >= 100*time.Millisecond {
					t.Fatalf("age after being forgotten = %s, want a fresh record", got.Age)
				}
			})
			t.Run("churn counted in windows", func(t *testing.T) {
				be := b.open(t)
				churn := Observation{Forget: time.Hour, ChurnWindow: 150 * time.Millisecond, Churn: true}
				quiet := churn
				quiet.Churn = false
				for i := 1; i <= 3; i++ {
					got, err := be.signals.Observe(ctx, "|did|a", churn)
					testenv.Must(t, err, "observe")
					if got.Churn != i {
						t.Fatalf("churn call %d counted %d", i, got.Churn)
					}
				}
				got, err := be.signals.Observe(ctx, "|did|a", quiet)
				testenv.Must(t, err, "observe")
				if got.Churn != 3 {
					t.Fatalf("a quiet call reads churn %d, want 3 (and counts nothing)", got.Churn)
				}
				be.wait(300 * time.Millisecond)
				got, err = be.signals.Observe(ctx, "|did|a", churn)
				testenv.Must(t, err, "observe")
				if got.Churn != 1 {
					t.Fatalf("first churn call of a new window counted %d, want 1", got.Churn)
				}
			})
		})
	}
}

func TestRedisSignalsKeysHoldNoIdentity(t *testing.T) {
	client, prefix := testenv.Redis(t)
	sig, err := NewRedisSignals(RedisConfig{Client: client, Prefix: prefix})
	testenv.Must(t, err, "redis signals")
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	zs, err := NewZones(ZonesConfig{
		Zones:    []*Zone{{Name: "z", Key: KeyDID, Rate: "10/1m"}},
		Limiter:  NewMemoryStore(MemoryConfig{}),
		Hasher:   testHasher(t),
		Signals:  &SignalConfig{NewAccount: time.Hour, ChurnCalls: 5, ChurnWindow: time.Hour},
		Recorder: NewSignalRecorder(sig),
	})
	testenv.Must(t, err, "zones")
	req := testRequest("POST", "/xrpc/blue.catbird.mls.addMembers")
	req.DID = did
	_, err = zs.Allow(context.Background(), req)
	testenv.Must(t, err, "allow")
	keys, err := client.Keys(context.Background(), prefix+"*").Result()
	testenv.Must(t, err, "keys")
	if len(keys) != 2 {
		t.Fatalf("keys %v, want the first-seen record and the churn counter", keys)
	}
	for _, k := range keys {
		if strings.Contains(k, did) || strings.Contains(k, "ewvi7") {
			t.Fatalf("Redis key %q holds the DID", k)
		}
		ttl, err := client.PTTL(context.Background(), k).Result()
		testenv.Must(t, err, "pttl")
		if ttl <= 0 || ttl > DefaultForget {
			t.Fatalf("key %q TTL %s, want it to expire", k, ttl)
		}
	}
}

func TestAdaptiveZones(t *testing.T) {
	ctx := context.Background()
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	for _, b := range adaptiveBackends {
		t.Run(b.name, func(t *testing.T) {
			newZones := func(t *testing.T, be adaptiveBackend, cfg SignalConfig, z *Zone, obs *zoneObserver) *Zones {
				t.Helper()
				zs, err := NewZones(ZonesConfig{
					Zones: []*Zone{z}, Limiter: be.lim, Hasher: testHasher(t),
					Signals: &cfg, Recorder: NewSignalRecorder(be.signals),
					ModifierObserver: func(string, Signal) ZoneObserver { return obs },
				})
				testenv.Must(t, err, "zones")
				return zs
			}
			call := func(nsid string) Request {
				r := testRequest("POST", "/xrpc/"+nsid)
				r.DID = did
				return r
			}
			t.Run("new account is held to the tighter limit until it is not new", func(t *testing.T) {
				be := b.open(t)
				obs := &zoneObserver{}
				zs := newZones(t, be, SignalConfig{NewAccount: 300 * time.Millisecond},
					&Zone{Name: "send", Key: KeyDID, Rate: "100/1h", Modifiers: []Modifier{{When: SignalNewAccount, Rate: "2/1h"}}}, obs)
				req := call("blue.catbird.mls.sendMessage")
				for i := range 2 {
					d, err := zs.Allow(ctx, req)
					testenv.Must(t, err, "allow")
					if !d.Allowed || !d.Signals.Has(SignalNewAccount) {
						t.Fatalf("request %d of a new account = %+v, want allowed with new_account", i, d)
					}
				}
				d, err := zs.Allow(ctx, req)
				testenv.Must(t, err, "allow")
				if d.Allowed || d.Zone != "send" || d.Signal != SignalNewAccount || d.Result.Limit.Rate != 2 {
					t.Fatalf("third request of a new account = %+v, want refused by send's new_account modifier", d)
				}
				if obs.allowed != 2 || obs.limited != 1 {
					t.Fatalf("modifier observer counted %+v, want 2 allowed and 1 limited", *obs)
				}
				be.wait(400 * time.Millisecond)
				d, err = zs.Allow(ctx, req)
				testenv.Must(t, err, "allow")
				if !d.Allowed || d.Signals.Has(SignalNewAccount) {
					t.Fatalf("once no longer new = %+v, want allowed under the zone's own limit", d)
				}
				// An unverified request carries no signal and is not recorded.
				anon := testRequest("POST", "/xrpc/blue.catbird.mls.sendMessage")
				if d, err := zs.Allow(ctx, anon); err != nil || d.Signals != 0 {
					t.Fatalf("unverified request = %+v, %v, want no signals", d, err)
				}
			})
			t.Run("high churn tightens after the threshold", func(t *testing.T) {
				be := b.open(t)
				zs := newZones(t, be, SignalConfig{ChurnCalls: 3, ChurnWindow: time.Hour},
					&Zone{Name: "membership", Key: KeyDID, Rate: "100/1h", Modifiers: []Modifier{{When: SignalHighChurn, Rate: "1/1h"}}}, &zoneObserver{})
				// Reads do not count as churn.
				for range 5 {
					d, err := zs.Allow(ctx, call("blue.catbird.mls.getConvos"))
					testenv.Must(t, err, "allow")
					if d.Signals.Has(SignalHighChurn) {
						t.Fatal("reads counted as churn")
					}
				}
				for i := 1; i <= 3; i++ {
					d, err := zs.Allow(ctx, call("blue.catbird.mls.addMembers"))
					testenv.Must(t, err, "allow")
					if !d.Allowed || d.Signals.Has(SignalHighChurn) {
						t.Fatalf("membership call %d = %+v, want allowed without high churn", i, d)
					}
				}
				d, err := zs.Allow(ctx, call("blue.catbird.mls.leaveConvo"))
				testenv.Must(t, err, "allow")
				if !d.Allowed || !d.Signals.Has(SignalHighChurn) {
					t.Fatalf("fourth membership call = %+v, want allowed (modifier's first) with high churn", d)
				}
				d, err = zs.Allow(ctx, call("blue.catbird.mls.removeMember"))
				testenv.Must(t, err, "allow")
				if d.Allowed || d.Signal != SignalHighChurn {
					t.Fatalf("fifth membership call = %+v, want refused by the high_churn modifier", d)
				}
			})
			t.Run("large group checked once the size is known", func(t *testing.T) {
				be := b.open(t)
				zs := newZones(t, be, SignalConfig{LargeGroup: 100},
					&Zone{Name: "send", Key: KeyDID, Rate: "100/1h", Modifiers: []Modifier{{When: SignalLargeGroup, Rate: "1/1h"}}}, &zoneObserver{})
				req := call("blue.catbird.mls.sendMessage")
				d, err := zs.Allow(ctx, req)
				testenv.Must(t, err, "allow")
				a := zs.Admission(req, d)
				for range 3 {
					if g, err := a.AllowGroup(ctx, 99); err != nil || !g.Allowed || g.Matched {
						t.Fatalf("a 99-member group = %+v, %v, want allowed untouched", g, err)
					}
				}
				if g, err := a.AllowGroup(ctx, 100); err != nil || !g.Allowed || !g.Matched || !g.Signals.Has(SignalLargeGroup) {
					t.Fatalf("first call in a 100-member group = %+v, %v, want allowed by the modifier", g, err)
				}
				g, err := a.AllowGroup(ctx, 5000)
				testenv.Must(t, err, "allow group")
				if g.Allowed || g.Signal != SignalLargeGroup || g.Zone != "send" {
					t.Fatalf("second call in a large group = %+v, want refused by send's large_group modifier", g)
				}
				ctxA := NewContext(ctx, a)
				if got, ok := FromContext(ctxA); !ok || got != a {
					t.Fatal("the admission did not travel in the context")
				}
			})
		})
	}
}

func TestModifierConfigErrors(t *testing.T) {
	lim := NewMemoryStore(MemoryConfig{})
	signals := &SignalConfig{NewAccount: time.Hour, ChurnCalls: 10, ChurnWindow: time.Hour}
	cases := []struct {
		name    string
		zone    Zone
		signals *SignalConfig
		want    string
	}{
		{"looser rate", Zone{Name: "z", Key: KeyDID, Rate: "10/1m", Modifiers: []Modifier{{When: SignalNewAccount, Rate: "20/1m"}}}, signals, "looser"},
		{"looser burst", Zone{Name: "z", Key: KeyDID, Rate: "10/1m", Burst: 2, Modifiers: []Modifier{{When: SignalNewAccount, Rate: "5/1m"}}}, signals, "looser"},
		{"ip zone", Zone{Name: "z", Key: KeyIP, Rate: "10/1m", Modifiers: []Modifier{{When: SignalNewAccount, Rate: "1/1m"}}}, signals, "key did"},
		{"signal not defined", Zone{Name: "z", Key: KeyDID, Rate: "10/1m", Modifiers: []Modifier{{When: SignalLargeGroup, Rate: "1/1m"}}}, signals, "large_group signal"},
		{"no signals block", Zone{Name: "z", Key: KeyDID, Rate: "10/1m", Modifiers: []Modifier{{When: SignalNewAccount, Rate: "1/1m"}}}, nil, "signals"},
		{"twice", Zone{Name: "z", Key: KeyDID, Rate: "10/1m", Modifiers: []Modifier{{When: SignalNewAccount, Rate: "1/1m"}, {When: SignalNewAccount, Rate: "2/1m"}}}, signals, "two modifiers"},
		{"bad rate", Zone{Name: "z", Key: KeyDID, Rate: "10/1m", Modifiers: []Modifier{{When: SignalNewAccount, Rate: "x"}}}, signals, "rate"},
		{"no signal", Zone{Name: "z", Key: KeyDID, Rate: "10/1m", Modifiers: []Modifier{{Rate: "1/1m"}}}, signals, "needs a signal"},
		{"forget shorter than new", Zone{Name: "z", Key: KeyDID, Rate: "10/1m"}, &SignalConfig{NewAccount: 48 * time.Hour, Forget: time.Hour}, "forget"},
		{"churn without window", Zone{Name: "z", Key: KeyDID, Rate: "10/1m"}, &SignalConfig{ChurnCalls: 3}, "churn window"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var sig *SignalConfig
			if tc.signals != nil {
				c := *tc.signals
				sig = &c
			}
			z := tc.zone
			_, err := NewZones(ZonesConfig{Zones: []*Zone{&z}, Limiter: lim, Hasher: testHasher(t), Signals: sig, Recorder: NewSignalRecorder(NewMemorySignals(MemoryConfig{}))})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidZone) && !errors.Is(err, ErrInvalidLimit) && !errors.Is(err, ErrInvalidSignal) {
				t.Fatalf("error %v wraps none of the package's sentinels", err)
			}
		})
	}
}

func TestParseSignal(t *testing.T) {
	for _, s := range []Signal{SignalNewAccount, SignalHighChurn, SignalLargeGroup} {
		got, err := ParseSignal(s.String())
		if err != nil || got != s {
			t.Fatalf("ParseSignal(%q) = %v, %v", s, got, err)
		}
	}
	if _, err := ParseSignal("none"); !errors.Is(err, ErrInvalidSignal) {
		t.Fatalf("ParseSignal(none) = %v, want ErrInvalidSignal", err)
	}
}

// failingSignals always fails, like an unreachable Redis.
type failingSignals struct{}

func (failingSignals) Observe(context.Context, string, Observation) (Observed, error) {
	return Observed{}, errors.New("connection refused")
}

func TestSignalFailoverRecordsLocally(t *testing.T) {
	local := NewMemorySignals(MemoryConfig{})
	var errs int
	f := &SignalFailover{Shared: failingSignals{}, Local: local, OnError: func(error) { errs++ }}
	o := Observation{Forget: time.Hour, ChurnWindow: time.Hour, Churn: true}
	for i := 1; i <= 2; i++ {
		got, err := f.Observe(context.Background(), "k", o)
		if err != nil || got.Churn != i {
			t.Fatalf("observation %d = %+v, %v, want the local record", i, got, err)
		}
	}
	if errs != 2 {
		t.Fatalf("OnError called %d times, want 2", errs)
	}
	down := &SignalFailover{Shared: failingSignals{}, Local: local, Up: func() bool { return false }, OnError: func(error) { t.Fatal("shared store tried while down") }}
	if _, err := down.Observe(context.Background(), "k", o); err != nil {
		t.Fatal(err)
	}
}
