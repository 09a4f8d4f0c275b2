package ratelimit

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/testenv"
)

// countingSignals counts the Observe calls that reach a SignalStore.
type countingSignals struct {
	SignalStore
	calls int
}

func (c *countingSignals) Observe(ctx context.Context, key string, o Observation) (Observed, error) {
	c.calls++
	return c.SignalStore.Observe(ctx, key, o)
}

// TestSharedRecorderCountsARequestOnce passes each membership call through
// two Zones that share a recorder, as two cairn_rate_limit handlers in one
// route do: the second reads the first's record from the Admission in the
// context, so the store sees one observation and the churn count grows by
// one per call, on memory and on Redis.
func TestSharedRecorderCountsARequestOnce(t *testing.T) {
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	for _, b := range adaptiveBackends {
		t.Run(b.name, func(t *testing.T) {
			be := b.open(t)
			counted := &countingSignals{SignalStore: be.signals}
			rec := NewSignalRecorder(counted)
			hasher := testHasher(t)
			newZones := func(name string, cfg SignalConfig) *Zones {
				zs, err := NewZones(ZonesConfig{
					Zones:   []*Zone{{Name: name, Key: KeyDID, Rate: "100/1h", Modifiers: []Modifier{{When: SignalHighChurn, Rate: "100/1h"}}}},
					Limiter: be.lim, Hasher: hasher, Signals: &cfg, Recorder: rec,
				})
				testenv.Must(t, err, "zones "+name)
				return zs
			}
			// The handlers may disagree on the threshold, not on the window.
			first := newZones("first", SignalConfig{ChurnCalls: 3, ChurnWindow: time.Hour})
			second := newZones("second", SignalConfig{ChurnCalls: 5, ChurnWindow: time.Hour})
			req := testRequest("POST", "/xrpc/blue.catbird.mls.addMembers")
			req.DID = did
			for i := 1; i <= 6; i++ {
				ctx := context.Background()
				d1, err := first.Allow(ctx, req)
				testenv.Must(t, err, "first allow")
				ctx = NewContext(ctx, first.Admission(req, d1))
				d2, err := second.Allow(ctx, req)
				testenv.Must(t, err, "second allow")
				if counted.calls != i {
					t.Fatalf("after call %d the store was asked %d times, want %d", i, counted.calls, i)
				}
				if got, want := d1.Signals.Has(SignalHighChurn), i > 3; got != want {
					t.Fatalf("call %d: first's high_churn = %v, want %v", i, got, want)
				}
				if got, want := d2.Signals.Has(SignalHighChurn), i > 5; got != want {
					t.Fatalf("call %d: second's high_churn = %v, want %v (a double count would turn it on at call 3)", i, got, want)
				}
			}
			// Another caller's admission in the context is not reused.
			other := req
			other.DID = "did:plc:someoneelseentirelyxxxxx"
			ctx := NewContext(context.Background(), first.Admission(req, Decision{}))
			if _, err := second.Allow(ctx, other); err != nil || counted.calls != 7 {
				t.Fatalf("another caller's request: %v, %d store calls, want it recorded (7)", err, counted.calls)
			}
		})
	}
}

// TestRecorderRecordsTheUnionOfSignals: a request through a handler that
// uses only new_account still counts as churn for a handler sharing the
// recorder that uses high_churn, since churn is the account's, not the
// handler's.
func TestRecorderRecordsTheUnionOfSignals(t *testing.T) {
	rec := NewSignalRecorder(NewMemorySignals(MemoryConfig{}))
	lim := NewMemoryStore(MemoryConfig{})
	hasher := testHasher(t)
	zone := func(name string) []*Zone { return []*Zone{{Name: name, Key: KeyDID, Rate: "100/1h"}} }
	fresh, err := NewZones(ZonesConfig{Zones: zone("fresh"), Limiter: lim, Hasher: hasher, Recorder: rec,
		Signals: &SignalConfig{NewAccount: time.Hour}})
	testenv.Must(t, err, "fresh")
	churn, err := NewZones(ZonesConfig{Zones: zone("churn"), Limiter: lim, Hasher: hasher, Recorder: rec,
		Signals: &SignalConfig{ChurnCalls: 2, ChurnWindow: time.Hour}})
	testenv.Must(t, err, "churn")
	req := testRequest("POST", "/xrpc/blue.catbird.mls.leaveConvo")
	req.DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	for range 2 {
		d, err := fresh.Allow(context.Background(), req)
		testenv.Must(t, err, "fresh allow")
		if !d.Signals.Has(SignalNewAccount) || d.Signals.Has(SignalHighChurn) {
			t.Fatalf("through fresh: signals %v, want new_account only (fresh does not use churn)", d.Signals.List())
		}
	}
	d, err := churn.Allow(context.Background(), req)
	testenv.Must(t, err, "churn allow")
	if !d.Signals.Has(SignalHighChurn) || d.Signals.Has(SignalNewAccount) {
		t.Fatalf("third leave, through churn: signals %v, want high_churn only", d.Signals.List())
	}
}

// TestRecorderRefusesDisagreeingRecords: configurations sharing a recorder
// must agree on what one record is; the error says what to align.
func TestRecorderRefusesDisagreeingRecords(t *testing.T) {
	for _, tc := range []struct {
		name          string
		first, second SignalConfig
		want          string
	}{
		{"churn period", SignalConfig{ChurnCalls: 3, ChurnWindow: time.Hour}, SignalConfig{ChurnCalls: 3, ChurnWindow: 10 * time.Minute},
			"churn period 10m0s differs from 1h0m0s"},
		{"churn methods", SignalConfig{ChurnCalls: 3, ChurnWindow: time.Hour},
			SignalConfig{ChurnCalls: 3, ChurnWindow: time.Hour, ChurnNSIDs: []string{"blue.catbird.mls.addMembers"}},
			"give them the same churn_methods"},
		{"forget", SignalConfig{NewAccount: time.Hour, Forget: 2 * time.Hour}, SignalConfig{NewAccount: time.Hour, Forget: 3 * time.Hour},
			"forget 3h0m0s differs from forget 2h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := NewSignalRecorder(NewMemorySignals(MemoryConfig{}))
			zones := func(c SignalConfig) error {
				_, err := NewZones(ZonesConfig{Zones: []*Zone{{Name: "z", Key: KeyDID, Rate: "1/1s"}},
					Limiter: NewMemoryStore(MemoryConfig{}), Hasher: testHasher(t), Signals: &c, Recorder: rec})
				return err
			}
			testenv.Must(t, zones(tc.first), "first")
			err := zones(tc.second)
			if err == nil || !errors.Is(err, ErrInvalidSignal) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("second configuration: %v, want ErrInvalidSignal mentioning %q", err, tc.want)
			}
		})
	}
	// Agreeing configurations join, in any order of methods, and a block
	// without new_account does not constrain forget.
	rec := NewSignalRecorder(NewMemorySignals(MemoryConfig{}))
	methods := []string{"blue.catbird.mls.leaveConvo", "blue.catbird.mls.addMembers"}
	for _, c := range []SignalConfig{
		{ChurnCalls: 3, ChurnWindow: time.Hour, ChurnNSIDs: methods, Forget: 48 * time.Hour},
		{ChurnCalls: 9, ChurnWindow: time.Hour, ChurnNSIDs: []string{methods[1], methods[0]}, NewAccount: time.Hour, Forget: 2 * time.Hour},
		{LargeGroup: 10},
	} {
		_, err := NewZones(ZonesConfig{Zones: []*Zone{{Name: "z", Key: KeyDID, Rate: "1/1s"}},
			Limiter: NewMemoryStore(MemoryConfig{}), Hasher: testHasher(t), Signals: &c, Recorder: rec})
		testenv.Must(t, err, "agreeing configuration")
	}
	if p := rec.plan.Load(); p.forget != 2*time.Hour || p.window != time.Hour || len(p.nsids) != 2 {
		t.Fatalf("plan %+v, want forget 2h (new_account's), window 1h, two methods", *p)
	}
}
