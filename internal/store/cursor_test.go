package store

import (
	"bytes"
	"errors"
	"testing"
	"time"
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
	tests := []string{"!!", "bm9jb2xvbg", "eDphYmM", "MTIzOg"} // bad base64, no colon, bad number, empty id
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
