package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cairn-chat/cairn-caddy/internal/audit"
	"github.com/cairn-chat/cairn-caddy/internal/redact"
	"github.com/cairn-chat/cairn-caddy/internal/store"
	"github.com/cairn-chat/cairn-caddy/internal/store/sqlite"
)

var key = []byte("audit-test-key-audit-test-key-audit-test")

func newLog(t *testing.T, ip string) (*audit.Log, store.AuditLog) {
	t.Helper()
	s, err := sqlite.Open(t.Context(), sqlite.Config{Path: filepath.Join(t.TempDir(), "cairn.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h, err := redact.New(key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(audit.Config{Store: s, Key: key, IP: ip, Hasher: h})
	if err != nil {
		t.Fatal(err)
	}
	return l, s
}

func TestNewRefuses(t *testing.T) {
	for name, cfg := range map[string]audit.Config{
		"no store":  {Key: key},
		"short key": {Store: (*sqlite.Store)(nil), Key: []byte("short")},
		"bad ip":    {Store: (*sqlite.Store)(nil), Key: key, IP: "full"},
		"no hasher": {Store: (*sqlite.Store)(nil), Key: key, IP: audit.IPHash},
	} {
		if _, err := audit.New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestRecordRefusesBadEvents(t *testing.T) {
	l, _ := newLog(t, "")
	for _, e := range []audit.Event{
		{},
		{Type: "Ban.Add"},
		{Type: "ban add"},
		{Type: "ban.add", Actor: strings.Repeat("a", 513)},
		{Type: "ban.add", Metadata: map[string]any{"f": func() {}}},
	} {
		if err := l.Record(t.Context(), e); !errors.Is(err, audit.ErrInvalidEvent) {
			t.Errorf("Record(%+v) = %v, want ErrInvalidEvent", e.Type, err)
		}
	}
}

func TestIPPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy, ip string
		want       func(string) bool
	}{
		{"", "192.0.2.7", func(s string) bool { return s == "" }},
		{audit.IPOff, "192.0.2.7", func(s string) bool { return s == "" }},
		{audit.IPTruncate, "192.0.2.7", func(s string) bool { return s == "192.0.2.0/24" }},
		{audit.IPTruncate, "2001:db8:1:2::9", func(s string) bool { return s == "2001:db8:1::/48" }},
		{audit.IPTruncate, "not-an-ip", func(s string) bool { return s == "" }},
		{audit.IPHash, "192.0.2.7", func(s string) bool { return strings.HasPrefix(s, redact.Prefix) && !strings.Contains(s, "192") }},
	} {
		l, s := newLog(t, tc.policy)
		if err := l.Record(t.Context(), audit.Event{Type: audit.TypeOperatorAction, IP: tc.ip}); err != nil {
			t.Fatal(err)
		}
		rows, err := s.AuditRecords(t.Context(), store.AuditFilter{})
		if err != nil || len(rows) != 1 {
			t.Fatalf("rows = %v, %v", rows, err)
		}
		if !tc.want(rows[0].IP) {
			t.Errorf("policy %q, ip %q: stored %q", tc.policy, tc.ip, rows[0].IP)
		}
	}
}

func TestAggregatorBoundsAFlood(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := audit.NewAggregator(func() time.Time { return now })
	for i := range 100_000 {
		a.Failure("h:source"+string(rune('a'+i%3)), "invalid")
	}
	for i := range 2000 {
		a.Failure("h:many"+strings.Repeat("x", i%1500)+string(rune(i)), "missing")
	}
	a.Success("alice", "oidc")
	a.Success("alice", "oidc")
	var got []audit.Event
	rec := audit.RecorderFunc(func(_ context.Context, e audit.Event) error { got = append(got, e); return nil })
	if err := a.Flush(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	if len(got) > 1024+2 {
		t.Fatalf("a flood wrote %d rows, want at most 1026", len(got))
	}
	var total int64
	var ok bool
	for _, e := range got {
		total += e.Metadata["count"].(int64)
		if e.Type == audit.TypeOperatorAuthOK && e.Actor == "alice" && e.Metadata["count"].(int64) == 2 && e.Metadata["method"] == "oidc" {
			ok = true
		}
		if e.Type == audit.TypeOperatorAuthFailed && e.Actor != "" {
			t.Errorf("failure row has an actor: %+v", e)
		}
	}
	if total != 100_000+2000+2 {
		t.Errorf("counts add up to %d, want %d: nothing may be lost", total, 100_000+2000+2)
	}
	if !ok {
		t.Error("no aggregated success row for alice")
	}
	got = nil
	if err := a.Flush(t.Context(), rec); err != nil || len(got) != 0 {
		t.Fatalf("second flush wrote %d rows (%v), want none", len(got), err)
	}
}

func TestMetadataIsSortedJSON(t *testing.T) {
	l, s := newLog(t, "")
	if err := l.Record(t.Context(), audit.Event{Type: audit.TypeRetentionPurge, Metadata: map[string]any{"messages": 3, "events": 1}}); err != nil {
		t.Fatal(err)
	}
	rows, _ := s.AuditRecords(t.Context(), store.AuditFilter{})
	if string(rows[0].Metadata) != `{"events":1,"messages":3}` || !json.Valid(rows[0].Metadata) {
		t.Fatalf("metadata = %s", rows[0].Metadata)
	}
}

func TestCheckKey(t *testing.T) {
	l, s := newLog(t, "")
	ctx := t.Context()
	if err := l.CheckKey(ctx); err != nil {
		t.Fatalf("empty log: %v", err)
	}
	other, err := audit.New(audit.Config{Store: s, Key: []byte("another-key-another-key-another-key-!!")})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := l.Record(ctx, audit.Event{Type: audit.TypeConfigLoad}); err != nil {
			t.Fatal(err)
		}
		if err := l.CheckKey(ctx); err != nil {
			t.Fatalf("row %d, same key: %v", i+1, err)
		}
		if err := other.CheckKey(ctx); !errors.Is(err, audit.ErrKeyMismatch) {
			t.Fatalf("row %d, another key: %v, want ErrKeyMismatch", i+1, err)
		}
	}
}
