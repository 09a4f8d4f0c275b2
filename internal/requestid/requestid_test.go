package requestid

import (
	"context"
	"strings"
	"testing"
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
