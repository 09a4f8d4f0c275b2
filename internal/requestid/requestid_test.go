package requestid

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestValid(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"abcdefgh", true},
		{"A1.b2_c3-D4", true},
		{"0190b8c2-7f4e-7a3b-9c1d-2e3f4a5b6c7d", true},
		{strings.Repeat("a", 128), true},
		{"abcdefg", false},                // 7 characters
		{strings.Repeat("a", 129), false}, // too long
		{"abcd efgh", false},              // space
		{"abcdefgh\nX-Evil: 1", false},    // header/log injection
		{"abcdefgh\"}", false},            // JSON break-out
		{"did:plc:abcdefgh", false},       // ':' is not allowed
		{"ünïcödé-id", false},             // non-ASCII
	} {
		if got := Valid(tc.id); got != tc.want {
			t.Errorf("Valid(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

func TestResolveKeepsValidAndReplacesInvalid(t *testing.T) {
	if got, _ := Resolve("client-id-12345"); got != "client-id-12345" {
		t.Errorf("valid inbound ID replaced by %q", got)
	}
	got, err := Resolve("bad id")
	if err != nil || got == "bad id" || !Valid(got) {
		t.Errorf("invalid inbound ID gave %q, %v; want a fresh valid ID", got, err)
	}
	a, _ := New()
	b, _ := New()
	if a == b {
		t.Error("two minted IDs are equal")
	}
}

func TestNewMintsIncreasingUUIDv7(t *testing.T) {
	before := time.Now().UnixMilli()
	prev := ""
	for i := 0; i < 10000; i++ {
		id, err := New()
		if err != nil {
			t.Fatal(err)
		}
		u, err := uuid.Parse(id)
		if err != nil || u.Version() != 7 || u.Variant() != uuid.RFC4122 || !Valid(id) {
			t.Fatalf("%q: not a UUIDv7 (%v)", id, err)
		}
		if id <= prev {
			t.Fatalf("IDs not increasing: %s then %s", prev, id)
		}
		prev = id
	}
	u := uuid.MustParse(prev)
	sec, nsec := u.Time().UnixTime()
	if got := sec*1000 + nsec/1e6; got < before || got > time.Now().UnixMilli()+1 {
		t.Errorf("timestamp %d ms, minted between %d and now", got, before)
	}
}

// BenchmarkNew compares New with what the peer stack's
// {http.request.uuid} costs: google/uuid's UUIDv4 from crypto/rand.
func BenchmarkNew(b *testing.B) {
	b.Run("cairn_v7", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := New(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uuid_v4_crypto_rand", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = uuid.New().String()
		}
	})
}

func TestContext(t *testing.T) {
	if From(context.Background()) != "" {
		t.Error("empty context has an ID")
	}
	if got := From(With(context.Background(), "abcdefgh")); got != "abcdefgh" {
		t.Errorf("From = %q", got)
	}
}

func FuzzValid(f *testing.F) {
	f.Add("abcdefgh")
	f.Add("abc\r\ndef")
	f.Fuzz(func(t *testing.T, s string) {
		if Valid(s) && strings.ContainsAny(s, " \r\n\t\"\\:/{}") {
			t.Fatalf("Valid accepted %q", s)
		}
	})
}
