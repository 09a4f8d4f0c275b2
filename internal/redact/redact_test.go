package redact

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func testHasher(t *testing.T, fill byte) *Hasher {
	t.Helper()
	h, err := New(bytes.Repeat([]byte{fill}, MinKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestHashShapeAndKeying(t *testing.T) {
	a, b := testHasher(t, 1), testHasher(t, 2)
	did := "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	got := a.Hash(did)
	if !regexp.MustCompile(`^h:[0-9a-f]{16}$`).MatchString(got) {
		t.Fatalf("Hash = %q, want h: and 16 hex characters", got)
	}
	if strings.Contains(got, "ewvi7") {
		t.Fatalf("hash %q leaks its input", got)
	}
	if a.Hash(did) != got {
		t.Fatal("hash is not stable under one key")
	}
	if b.Hash(did) == got {
		t.Fatal("two keys gave the same hash: the key is not used")
	}
	if a.Hash("did:plc:other") == got {
		t.Fatal("two inputs collided")
	}
	if a.Hash("") != "" {
		t.Fatal("empty input must stay empty")
	}
}

func TestNewRejectsShortKeys(t *testing.T) {
	if _, err := New(make([]byte, MinKeySize-1)); err == nil {
		t.Fatal("New accepted a 31-byte key")
	}
}

func BenchmarkHash(b *testing.B) {
	h, _ := New(bytes.Repeat([]byte{7}, MinKeySize))
	b.ReportAllocs()
	for b.Loop() {
		h.Hash("did:plc:ewvi7nxzyoun6zhxrhs64oiz")
	}
}

func TestAppendHashMatchesHash(t *testing.T) {
	h := testHasher(t, 3)
	for _, v := range []string{"did:plc:ewvi7nxzyoun6zhxrhs64oiz", "203.0.113.7", strings.Repeat("x", 5000)} {
		got := string(h.AppendHash([]byte("prefix|"), v))
		if want := "prefix|" + h.Hash(v); got != want {
			t.Errorf("AppendHash = %q, want %q", got, want)
		}
	}
}
