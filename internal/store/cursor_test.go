package store

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCursorRoundTrip(t *testing.T) {
	tests := []PageCursor{
		{At: time.Date(2026, 3, 1, 12, 0, 2, 0, time.UTC), ID: "abc"},
		{At: time.UnixMilli(0).UTC(), ID: "id:with:colons"},
	}
	for _, c := range tests {
		got, ok, err := DecodeCursor(EncodeCursor(c))
		if err != nil || !ok || got != c {
			t.Errorf("round trip of %+v = %+v, %v, %v", c, got, ok, err)
		}
	}
}

func TestDecodeCursorRejects(t *testing.T) {
	tests := []string{
		"!!", "bm9jb2xvbg", "eDphYmM", "MTIzOg", // bad base64, no colon, bad number, empty id
		base64.RawURLEncoding.EncodeToString([]byte("1:a\x00")), // NUL in the id
		base64.RawURLEncoding.EncodeToString([]byte("1:\xff")),  // id not UTF-8
	}
	for _, s := range tests {
		if _, _, err := DecodeCursor(s); !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("DecodeCursor(%q) err = %v, want ErrInvalidCursor", s, err)
		}
	}
	if _, ok, err := DecodeCursor(""); ok || err != nil {
		t.Errorf("empty cursor: ok=%v err=%v", ok, err)
	}
}

func TestIdempotencyDigestIsScoped(t *testing.T) {
	base := IdempotencyKey{CallerDID: "did:plc:a", NSID: "n", Key: "k"}
	others := []IdempotencyKey{
		{CallerDID: "did:plc:b", NSID: "n", Key: "k"},
		{CallerDID: "did:plc:a", NSID: "m", Key: "k"},
		{CallerDID: "did:plc:a", NSID: "n", Key: "j"},
		{CallerDID: "did:plc:a", NSID: "nk", Key: ""}, // no ambiguity from concatenation
	}
	for _, o := range others {
		if bytes.Equal(base.Digest(), o.Digest()) {
			t.Errorf("%+v and %+v share a digest", base, o)
		}
	}
	if !bytes.Equal(base.Digest(), base.Digest()) {
		t.Error("digest not deterministic")
	}
}

func TestBucket(t *testing.T) {
	in := time.Date(2026, 3, 1, 12, 0, 3, 999_000_000, time.FixedZone("x", 3600))
	if got, want := Bucket(in), time.Date(2026, 3, 1, 11, 0, 2, 0, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("Bucket = %v, want %v", got, want)
	}
}

// FuzzDecodeCursor: no string makes DecodeCursor panic; what it refuses is
// ErrInvalidCursor; what it accepts re-encodes to a cursor that decodes
// the same, with an id that stored text can hold (UTF-8, no NUL).
func FuzzDecodeCursor(f *testing.F) {
	f.Add("")
	f.Add(EncodeCursor(PageCursor{At: time.Date(2026, 3, 1, 12, 0, 2, 0, time.UTC), ID: "abc"}))
	f.Add(EncodeCursor(PageCursor{At: time.UnixMilli(-1).UTC(), ID: "id:with:colons"}))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("9223372036854775807:x")))
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("1:a\x00")))
	f.Fuzz(func(t *testing.T, s string) {
		c, ok, err := DecodeCursor(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidCursor) || ok {
				t.Fatalf("DecodeCursor(%q) = ok %v, err %v; want ErrInvalidCursor", s, ok, err)
			}
			return
		}
		if ok != (s != "") {
			t.Fatalf("DecodeCursor(%q): ok %v", s, ok)
		}
		if !ok {
			return
		}
		if !utf8.ValidString(c.ID) || strings.ContainsRune(c.ID, 0) {
			t.Fatalf("DecodeCursor(%q) accepted id %q", s, c.ID)
		}
		again, ok, err := DecodeCursor(EncodeCursor(c))
		if err != nil || !ok || !again.At.Equal(c.At) || again.ID != c.ID {
			t.Fatalf("%q: %+v re-decodes as %+v, %v, %v", s, c, again, ok, err)
		}
	})
}
