package mlswire

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// readJSON decodes a test-vector file from testdata.
func readJSON(t testing.TB, name string, v any) {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// unhex decodes a hex string from a test vector.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex in vector: %v", err)
	}
	return b
}

// TestDeserializationVectors checks the varint codec against the mlswg
// deserialization vectors: each header decodes to its length, uses every
// byte, and re-encodes to the same bytes.
func TestDeserializationVectors(t *testing.T) {
	var vectors []struct {
		Header string `json:"vlbytes_header"`
		Length uint64 `json:"length"`
	}
	readJSON(t, "deserialization.json", &vectors)
	if len(vectors) == 0 {
		t.Fatal("no vectors")
	}
	for _, v := range vectors {
		b := unhex(t, v.Header)
		got, n, err := consumeVarint(b)
		if err != nil || got != v.Length || n != len(b) {
			t.Errorf("decode %s = (%d, %d, %v), want (%d, %d, nil)", v.Header, got, n, err, v.Length, len(b))
		}
		enc, err := appendVarint(nil, v.Length)
		if err != nil || !bytes.Equal(enc, b) {
			t.Errorf("encode %d = %x, %v; want %s", v.Length, enc, err, v.Header)
		}
	}
}

func TestVarintInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrTruncated},
		{"two-byte form cut", "40", ErrTruncated},
		{"four-byte form cut", "800000", ErrTruncated},
		{"0b11 prefix", "c0", ErrInvalidVarint},
		{"0b11 prefix long", "ffffffffffffffff", ErrInvalidVarint},
		{"non-minimal 0 in two bytes", "4000", ErrInvalidVarint},
		{"non-minimal 63 in two bytes", "403f", ErrInvalidVarint},
		{"non-minimal 0 in four bytes", "80000000", ErrInvalidVarint},
		{"non-minimal 16383 in four bytes", "80003fff", ErrInvalidVarint},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := consumeVarint(unhex(t, tt.in))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := appendVarint(nil, MaxVarint+1); !errors.Is(err, ErrMalformed) {
		t.Fatalf("encode MaxVarint+1: err = %v, want ErrMalformed", err)
	}
}

// TestVectorLengthBeyondInput checks that a vector header claiming more
// bytes than remain is ErrTruncated, not an allocation.
func TestVectorLengthBeyondInput(t *testing.T) {
	var e Extension
	err := Unmarshal(unhex(t, "0001bfffffff00"), &e)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
}

func FuzzVarint(f *testing.F) {
	for _, s := range []string{"00", "3f", "4040", "7fff", "80004000", "bfffffff", "c0", "4000", "80000000"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n, err := consumeVarint(b)
		if err != nil {
			return
		}
		enc, err := appendVarint(nil, v)
		if err != nil {
			t.Fatalf("decoded %d but cannot encode: %v", v, err)
		}
		if !bytes.Equal(enc, b[:n]) {
			t.Fatalf("%x decoded to %d, re-encodes to %x", b[:n], v, enc)
		}
	})
}
